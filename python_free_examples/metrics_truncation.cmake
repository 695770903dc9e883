# Checks that an example driver starts its --metrics file afresh on a fresh run:
#   cmake -DMETRICS=<file> -P metrics_truncation.cmake -- <program> [arguments...]
# The file is seeded with a stale line, the driver runs twice with --metrics <file>; after the
# first run the stale line must be gone, and the second run must leave exactly as many lines
# as the first (an appending driver would double them).
cmake_minimum_required(VERSION 3.25)

include(${CMAKE_CURRENT_LIST_DIR}/command_after_separator.cmake)
if(NOT command OR NOT METRICS)
  message(FATAL_ERROR "metrics_truncation: usage: cmake -DMETRICS=<file> -P metrics_truncation.cmake -- <program> ...")
endif()

function(run_once label out_lines)
  execute_process(COMMAND ${command} --metrics "${METRICS}" RESULT_VARIABLE status OUTPUT_VARIABLE out
                  ERROR_VARIABLE err)
  if(NOT status STREQUAL "0")
    message(FATAL_ERROR "${label} run exited with '${status}':\n${out}\n${err}")
  endif()
  file(STRINGS "${METRICS}" lines)
  list(LENGTH lines n)
  message(STATUS "${label} run: ${n} metrics lines")
  if(n EQUAL 0)
    message(FATAL_ERROR "${label} run wrote no metrics")
  endif()
  foreach(line IN LISTS lines)
    if(line MATCHES "stale")
      message(FATAL_ERROR "${label} run kept the line of an earlier run: ${line}")
    endif()
  endforeach()
  set(${out_lines} ${n} PARENT_SCOPE)
endfunction()

file(WRITE "${METRICS}" "{\"event\": \"stale record of an earlier run\"}\n")
run_once("first" first)
run_once("second" second)
if(NOT first EQUAL second)
  message(FATAL_ERROR "the second fresh run left ${second} lines where the first left ${first}: it appended")
endif()
