# Writes a man page from a program's --help: the page's own sections (EXTRA, roff with
# @VERSION@) around the help text, which is the flag table's rendering, so the page says what
# --help says. Run by CMakeLists.txt at build time: cmake -DPROG= -DPAGE= -DVERSION= -DEXTRA=
# -DOUT= -P man.cmake
execute_process(COMMAND ${PROG} --help OUTPUT_VARIABLE help RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${PROG} --help exited ${rc}")
endif()
# roff: a backslash is \e; a line starting with . or ' would be a request.
string(REPLACE "\\" "\\e" help "${help}")
string(REGEX REPLACE "(^|\n)([.'])" "\\1\\\\&\\2" help "${help}")
string(REPLACE "-" "\\-" help "${help}")
file(READ ${EXTRA} page)
string(REPLACE "@VERSION@" "${VERSION}" page "${page}")
string(REPLACE "@HELP@" ".nf\n${help}.fi" page "${page}")
file(WRITE ${OUT} "${page}")
