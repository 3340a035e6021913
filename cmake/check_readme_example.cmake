# cmake -DREADME=README.md -DEXAMPLE=examples/readme_example.c -P check_readme_example.cmake
# Fails unless README.md holds the example's source verbatim (inside its ```c block), so the
# README's API example is code that compiles and runs.
file(READ "${README}" readme)
file(READ "${EXAMPLE}" example)
string(FIND "${readme}" "```c\n${example}```" at)
if(at EQUAL -1)
  message(FATAL_ERROR "${README} does not hold ${EXAMPLE} verbatim in a ```c block: "
                      "copy the file into the README's API example")
endif()
