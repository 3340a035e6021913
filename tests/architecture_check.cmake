# The CTest architecture/layers: keeps docs/architecture.md in step with the tree and holds the
# layers to their include rules. Run as cmake -DROOT=<source dir> -P architecture_check.cmake;
# fails listing every breach.
set(errors "")
file(READ ${ROOT}/docs/architecture.md doc)

# Every path the document names exists (a path with a <placeholder> is a pattern: skipped).
string(REGEX MATCHALL "(src|cl|include|tools|tests|docs|cmake)/[A-Za-z0-9_./<>-]*" paths "${doc}")
list(REMOVE_DUPLICATES paths)
foreach(p IN LISTS paths)
  string(REGEX REPLACE "[.]+$" "" p "${p}")
  if(NOT p MATCHES "<" AND NOT EXISTS ${ROOT}/${p})
    list(APPEND errors "docs/architecture.md names ${p}, which does not exist")
  endif()
endforeach()

# Every folder of src/ (and of src/backend/) is named in the document.
file(GLOB dirs LIST_DIRECTORIES true ${ROOT}/src/* ${ROOT}/src/backend/*)
foreach(d IN LISTS dirs)
  if(IS_DIRECTORY ${d})
    file(RELATIVE_PATH rel ${ROOT} ${d})
    string(FIND "${doc}" "${rel}/" at)
    if(at EQUAL -1)
      list(APPEND errors "docs/architecture.md does not name the folder ${rel}/")
    endif()
  endif()
endforeach()

# Include rules: a layer includes no header of a layer above it (FOLDER: files; BAD: a regular
# expression that no #include line of them may match).
function(forbid folder bad why)
  file(GLOB_RECURSE files ${ROOT}/${folder}/*.c ${ROOT}/${folder}/*.h)
  foreach(f IN LISTS files)
    file(STRINGS ${f} lines REGEX "^[ \t]*#[ \t]*include")
    foreach(l IN LISTS lines)
      if(l MATCHES "${bad}")
        file(RELATIVE_PATH rel ${ROOT} ${f})
        list(APPEND errors "${rel}: '${l}': ${why}")
      endif()
    endforeach()
  endforeach()
  set(errors "${errors}" PARENT_SCOPE)
endfunction()
forbid(src/core "optim|io_internal|/io/|host_internal|ocl_internal"
       "the core knows the layers above only through its hooks, and backends by their table")
forbid(src/backend "core_internal|optim|io_internal"
       "a backend includes backend_internal.h, not the core's or the layers' headers")
forbid(src/io "optim_internal|loss_scale_internal"
       "src/io reaches optimizers through src/optim/optim_access.h")
forbid(src/optim "io_internal|/io/|tool_internal" "the optimizer layer is below src/io")
forbid(src/io "tool_internal" "src/io is below src/tool")

# A wrapper's inner optimizer is its own: reached elsewhere only through clopt__wrapper_ops.
file(GLOB_RECURSE files ${ROOT}/src/*.c ${ROOT}/src/*.h)
foreach(f IN LISTS files)
  if(NOT f MATCHES "/src/optim/loss_scale[^/]*$")
    file(STRINGS ${f} lines REGEX "o->inner|loss_scale_sync")
    if(lines)
      file(RELATIVE_PATH rel ${ROOT} ${f})
      list(APPEND errors "${rel}: reaches a LossScaleOptimizer's inner optimizer directly")
    endif()
  endif()
endforeach()

if(errors)
  list(JOIN errors "\n  " text)
  message(FATAL_ERROR "architecture check failed:\n  ${text}")
endif()
message(STATUS "architecture check: docs/architecture.md and the layers agree with the tree")
