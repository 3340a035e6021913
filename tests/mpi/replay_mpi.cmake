# `mpiexec -n N clopt replay --mpi` against `clopt replay` in one process: every rank's output
# (--output with {rank}) must be byte for byte the one-process output (host replicas: bitwise).
# cmake -DMPIEXEC=... -DTOOL=... -DCASE=... -DN=... -DOUT=<dir> -P replay_mpi.cmake
file(MAKE_DIRECTORY ${OUT})
get_filename_component(name ${CASE} NAME_WE)
execute_process(COMMAND ${TOOL} replay --device host --output ${OUT}/${name}.one.json ${CASE}
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "one-process replay failed (${rc})")
endif()
execute_process(COMMAND ${MPIEXEC} -n ${N} --oversubscribe ${TOOL} replay --mpi --device host
                        --output ${OUT}/${name}.rank{rank}.json ${CASE}
                RESULT_VARIABLE rc TIMEOUT 100)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "mpiexec -n ${N} clopt replay --mpi failed (${rc})")
endif()
file(READ ${OUT}/${name}.one.json want)
math(EXPR last "${N} - 1")
foreach(r RANGE ${last})
  file(READ ${OUT}/${name}.rank${r}.json got)
  if(NOT got STREQUAL want)
    message(FATAL_ERROR "rank ${r}'s output differs from the one-process replay")
  endif()
endforeach()
# Two replicas on each rank (--device host,host): N/2 ranks, the same output.
math(EXPR half "${N} / 2")
math(EXPR even "${N} % 2")
if(even EQUAL 0)
  execute_process(COMMAND ${MPIEXEC} -n ${half} --oversubscribe ${TOOL} replay --mpi
                          --device host,host --output ${OUT}/${name}.two{rank}.json ${CASE}
                  RESULT_VARIABLE rc TIMEOUT 100)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "mpiexec -n ${half} clopt replay --mpi --device host,host failed (${rc})")
  endif()
  math(EXPR last "${half} - 1")
  foreach(r RANGE ${last})
    file(READ ${OUT}/${name}.two${r}.json got)
    if(NOT got STREQUAL want)
      message(FATAL_ERROR "rank ${r} (two replicas)'s output differs from the one-process replay")
    endif()
  endforeach()
endif()
# A case whose replicas are not the ranks: refused on every rank, no hang.
math(EXPR wrong "${N} + 1")
execute_process(COMMAND ${MPIEXEC} -n ${wrong} --oversubscribe ${TOOL} replay --mpi --device host
                        ${CASE}
                RESULT_VARIABLE rc ERROR_VARIABLE err TIMEOUT 60)
if(rc EQUAL 0 OR NOT err MATCHES "ranks but")
  message(FATAL_ERROR "replay --mpi on ${wrong} ranks of a ${N}-replica case: ${rc} ${err}")
endif()
