# Turns one file into one C source holding its bytes as an array, for files the binary serves
# (api/nodes.html, nodes.js, nodes.css). Run at build time by add_custom_command, so the
# binary and the file cannot drift (as cmake/embed_lua.cmake does for the Lua scripts).
# Inputs: -DIN=<file> -DOUT=<file.c> -DNAME=<C identifier>
# Output: const char NAME[] (the bytes plus a NUL), const size_t NAME_len (without the NUL), and
# const char NAME_etag[]: a strong ETag (quoted, the first 32 hex digits of the file's SHA-256),
# so an HTTP cache can revalidate the file and sees a new one when the binary changes.
file(READ ${IN} hex HEX)
file(SHA256 ${IN} sha)
string(SUBSTRING "${sha}" 0 32 etag)
string(LENGTH "${hex}" hexlen)
math(EXPR len "${hexlen} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," arr "${hex}")
get_filename_component(src ${IN} NAME)
set(body "/* Generated from ${src} by cmake/embed_file.cmake: do not edit. */\n#include <stddef.h>\n\n")
string(APPEND body "extern const char ${NAME}[];\nextern const size_t ${NAME}_len;\n")
string(APPEND body "extern const char ${NAME}_etag[];\n")
string(APPEND body "const char ${NAME}[] = {${arr}0x00};\nconst size_t ${NAME}_len = ${len};\n")
string(APPEND body "const char ${NAME}_etag[] = \"\\\"${etag}\\\"\";\n")
file(WRITE ${OUT}.tmp "${body}")
configure_file(${OUT}.tmp ${OUT} COPYONLY)
