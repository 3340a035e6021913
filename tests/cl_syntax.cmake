# Compiles one kernel file as the OpenCL backend builds it (cl/scalars.cl, cl/common.cl, then the
# file) with clang's OpenCL front end, syntax only, in every form the backend may build: the CPU
# and the work-group (GPU) forms (CLOPT_CPU 1, 0), every DTYPE (0 float32, 1 float64, 2 float16,
# 3 bfloat16), and DEVICE_STEP 0 and 1 (the latter unless NO_DEVICE_STEP: multi-pass classes,
# whose launches never take device-decided steps). A machine with POCL's CPU device only never
# builds the work-group forms; this catches a kernel that would not compile on a GPU.
# Usage: cmake -DCLANG=clang -DCL_DIR=cl -DNAME=adam -DOUT=dir [-DNO_DEVICE_STEP=1] -P cl_syntax.cmake
file(READ "${CL_DIR}/scalars.cl" scalars)
file(READ "${CL_DIR}/common.cl" common)
file(READ "${CL_DIR}/${NAME}.cl" body)
set(src "${OUT}/${NAME}.cl")
file(WRITE "${src}" "${scalars}\n${common}\n${body}")
set(steps 0 1)
if(NO_DEVICE_STEP)
  set(steps 0)
endif()
set(failed "")
foreach(cpu 0 1)
  foreach(dtype 0 1 2 3)
    foreach(step ${steps})
      execute_process(
        COMMAND ${CLANG} -x cl -cl-std=CL1.2 -Xclang -finclude-default-header -fsyntax-only
                -DDTYPE=${dtype} -DCHUNK=256 -DCLOPT_CPU=${cpu} -DDEVICE_STEP=${step} ${src}
        RESULT_VARIABLE rc ERROR_VARIABLE err OUTPUT_QUIET)
      if(NOT rc EQUAL 0)
        message(SEND_ERROR "${NAME}.cl, CLOPT_CPU=${cpu} DTYPE=${dtype} DEVICE_STEP=${step}:\n${err}")
      endif()
    endforeach()
  endforeach()
endforeach()
