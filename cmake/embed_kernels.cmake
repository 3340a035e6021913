# Generates a C file that embeds cl/*.cl as string arrays (clopt__kernel_sources).
# Usage: cmake -DOUT=file.c -DSOURCES="a.cl;b.cl" -P embed_kernels.cmake
string(REPLACE "|" ";" SOURCES "${SOURCES}")
set(body "")
set(table "")
set(i 0)
foreach(src IN LISTS SOURCES)
  get_filename_component(stem "${src}" NAME_WE)
  file(READ "${src}" hex HEX)
  string(LENGTH "${hex}" hexlen)
  math(EXPR len "${hexlen} / 2")
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(APPEND body "static const char src_${i}[] = {${bytes} 0};\n")
  string(APPEND table "    {\"${stem}\", src_${i}, ${len}},\n")
  math(EXPR i "${i} + 1")
endforeach()
file(WRITE "${OUT}.tmp" "/* Generated from the cl/ kernel sources by cmake/embed_kernels.cmake. Do not edit. */\n"
  "#include \"backend/opencl/ocl_internal.h\"\n${body}\n"
  "const clopt__kernel_source clopt__kernel_sources[] = {\n${table}    {0, 0, 0},\n};\n")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUT}.tmp")
