# The `package_consumer` test: cmake -P run.cmake with
#   BUILD_DIR (a built clopt tree), SOURCE_DIR (this directory), WORK_DIR (scratch, recreated),
#   CONFIG, C_COMPILER, GENERATOR, LIBDIR, SANITIZE (may be empty), PKG_CONFIG (may be empty).
# 1. cmake --install into WORK_DIR/prefix and check the installed files;
# 2. configure, build and run this directory's project with find_package(clopt) (shared and
#    static targets);
# 3. compile main.c with the flags `pkg-config --cflags --libs clopt` gives, and run it.
cmake_minimum_required(VERSION 3.20)

function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  message(STATUS "${what}:\n${out}${err}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}): ${ARGN}")
  endif()
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")
if(NOT CONFIG)
  set(CONFIG Release)
endif()
set(san_flags "")
if(SANITIZE)
  set(san_flags "-fsanitize=${SANITIZE} -fno-omit-frame-pointer")
endif()

run("install" "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${prefix}" --config "${CONFIG}")
foreach(f include/clopt.h include/clopt/export.h include/clopt/version.h
          include/clopt/optimizer.h include/clopt/clopt_cl.h
          ${LIBDIR}/libclopt.so ${LIBDIR}/libclopt.a ${LIBDIR}/pkgconfig/clopt.pc
          ${LIBDIR}/cmake/clopt/cloptConfig.cmake ${LIBDIR}/cmake/clopt/cloptConfigVersion.cmake
          ${LIBDIR}/cmake/clopt/cloptTargets.cmake bin/clopt)
  if(NOT EXISTS "${prefix}/${f}")
    message(FATAL_ERROR "not installed: ${f}")
  endif()
endforeach()
file(GLOB internal "${prefix}/include/clopt/*_internal.h")
if(internal)
  message(FATAL_ERROR "internal headers installed: ${internal}")
endif()
file(GLOB sonames "${prefix}/${LIBDIR}/libclopt.so.*")
if(NOT sonames)
  message(FATAL_ERROR "no versioned libclopt.so.* installed")
endif()

# find_package(clopt)
set(build "${WORK_DIR}/build")
run("configure consumer" "${CMAKE_COMMAND}" -S "${SOURCE_DIR}" -B "${build}" -G "${GENERATOR}"
    "-DCMAKE_C_COMPILER=${C_COMPILER}" "-DCMAKE_BUILD_TYPE=${CONFIG}"
    "-DCMAKE_PREFIX_PATH=${prefix}" "-DCMAKE_C_FLAGS=${san_flags}"
    "-DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF")
file(STRINGS "${build}/CMakeCache.txt" found REGEX "^clopt_DIR:")
string(FIND "${found}" "${prefix}/" at)
if(at EQUAL -1)
  message(FATAL_ERROR "find_package(clopt) did not pick the scratch prefix: ${found}")
endif()
run("build consumer" "${CMAKE_COMMAND}" --build "${build}" --config "${CONFIG}")
run("run consumer (clopt::clopt)" "${build}/consumer")
run("run consumer (clopt::clopt_static)" "${build}/consumer_static")

# pkg-config
if(NOT PKG_CONFIG)
  message(FATAL_ERROR "pkg-config not found")
endif()
set(ENV{PKG_CONFIG_PATH} "${prefix}/${LIBDIR}/pkgconfig")
execute_process(COMMAND "${PKG_CONFIG}" --cflags --libs clopt RESULT_VARIABLE rc
                OUTPUT_VARIABLE pc_flags ERROR_VARIABLE err OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pkg-config --cflags --libs clopt failed: ${err}")
endif()
message(STATUS "pkg-config --cflags --libs clopt: ${pc_flags}")
string(FIND "${pc_flags}" "-I${prefix}/include" at)
if(at EQUAL -1 OR NOT pc_flags MATCHES "-lclopt")
  message(FATAL_ERROR "unexpected pkg-config flags: ${pc_flags}")
endif()
execute_process(COMMAND "${PKG_CONFIG}" --static --libs clopt OUTPUT_VARIABLE pc_static
                OUTPUT_STRIP_TRAILING_WHITESPACE)
foreach(lib -ljansson -lOpenCL -lm -lpthread)
  if(NOT pc_static MATCHES "${lib}")
    message(FATAL_ERROR "pkg-config --static --libs clopt lacks ${lib}: ${pc_static}")
  endif()
endforeach()
separate_arguments(pc_list UNIX_COMMAND "${pc_flags}")
separate_arguments(san_list UNIX_COMMAND "${san_flags}")
run("compile with pkg-config" "${C_COMPILER}" ${san_list} -std=c11 -Wall -Werror
    "${SOURCE_DIR}/main.c" -o "${WORK_DIR}/consumer_pc" ${pc_list} -lm
    "-Wl,-rpath,${prefix}/${LIBDIR}")
run("run consumer (pkg-config)" "${WORK_DIR}/consumer_pc")
