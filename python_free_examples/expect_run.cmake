# Runs one example driver and checks its exit status and output, for the command-line tests:
#   cmake -DEXPECT=ok|error -DPATTERN=<regex> -P expect_run.cmake -- <program> [arguments...]
# ok: exit 0 and PATTERN found in stdout (and STDERR_PATTERN in stderr, when given). error: a
# non-zero exit status (not a crash), stderr of exactly one line, and that line matching
# PATTERN. CTest's own PASS_REGULAR_EXPRESSION ignores the exit status, which is half of what
# these tests are about.
cmake_minimum_required(VERSION 3.25)

# The command is rebuilt as bracket arguments, since expanding a list would drop an empty
# argument (as in `--seed ""`).
set(command "")
set(shown "")
set(seen_separator FALSE)
math(EXPR last "${CMAKE_ARGC} - 1")
foreach(i RANGE 1 ${last})
  if(seen_separator)
    string(APPEND command " [==[${CMAKE_ARGV${i}}]==]")
    string(APPEND shown " '${CMAKE_ARGV${i}}'")
  elseif(CMAKE_ARGV${i} STREQUAL "--")
    set(seen_separator TRUE)
  endif()
endforeach()
if(command STREQUAL "")
  message(FATAL_ERROR "expect_run: no command after --")
endif()
if(NOT EXPECT MATCHES "^(ok|error)$")
  message(FATAL_ERROR "expect_run: EXPECT must be ok or error, got '${EXPECT}'")
endif()

cmake_language(EVAL CODE
  "execute_process(COMMAND ${command} RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE err)")
message(STATUS "ran: ${shown}\nexit status: ${status}\nstdout:\n${out}\nstderr:\n${err}")

if(EXPECT STREQUAL "ok")
  if(NOT status STREQUAL "0")
    message(FATAL_ERROR "expected exit status 0, got '${status}'")
  endif()
  if(NOT out MATCHES "${PATTERN}")
    message(FATAL_ERROR "stdout does not match '${PATTERN}'")
  endif()
  if(DEFINED STDERR_PATTERN AND NOT err MATCHES "${STDERR_PATTERN}")
    message(FATAL_ERROR "stderr does not match '${STDERR_PATTERN}'")
  endif()
else()
  if(NOT status MATCHES "^[1-9][0-9]*$")
    message(FATAL_ERROR "expected a non-zero exit status, got '${status}'")
  endif()
  if(NOT err MATCHES "^[^\n]*\n$")
    message(FATAL_ERROR "expected one line on stderr")
  endif()
  string(STRIP "${err}" line)
  if(NOT line MATCHES "${PATTERN}")
    message(FATAL_ERROR "stderr '${line}' does not match '${PATTERN}'")
  endif()
endif()
