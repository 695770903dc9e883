# Checks that a driver stopped by --minutes resumes to the very weights of an uninterrupted run:
#   cmake -DDIR=<scratch folder> -P resume_by_time.cmake -- <program> [arguments...]
# One run trains to the end with --checkpoint whole.safetensors. Another starts with a time
# limit so small that it stops after its first step (each stop writes --checkpoint), and is
# resumed with the same limit until a run ends without hitting it; its final checkpoint must be
# byte for byte the uninterrupted one (weights, optimizer state, carried state, progress).
cmake_minimum_required(VERSION 3.25)

include(${CMAKE_CURRENT_LIST_DIR}/command_after_separator.cmake)
if(NOT command OR NOT DIR)
  message(FATAL_ERROR "resume_by_time: usage: cmake -DDIR=<folder> -P resume_by_time.cmake -- <program> ...")
endif()
file(REMOVE_RECURSE "${DIR}")
file(MAKE_DIRECTORY "${DIR}")

function(run label)
  execute_process(COMMAND ${command} ${ARGN} RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT status STREQUAL "0")
    message(FATAL_ERROR "${label} exited with '${status}':\n${out}\n${err}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

run("the uninterrupted run" --checkpoint "${DIR}/whole.safetensors")
# A limit far below one step: it is checked after every step, so each run takes exactly one.
set(limit --minutes 0.000000001 --checkpoint "${DIR}/stopped.safetensors")
run("the first stopped run" ${limit})
if(NOT last_output MATCHES "time limit")
  message(FATAL_ERROR "the first run was not stopped by --minutes:\n${last_output}")
endif()
set(resumes 0)
while(last_output MATCHES "time limit")
  math(EXPR resumes "${resumes} + 1")
  if(resumes GREATER 400)
    message(FATAL_ERROR "still stopping by time after ${resumes} resumes")
  endif()
  run("resume ${resumes}" ${limit} --resume "${DIR}/stopped.safetensors")
endwhile()
message(STATUS "finished after ${resumes} resumes")
execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files "${DIR}/whole.safetensors" "${DIR}/stopped.safetensors"
                RESULT_VARIABLE differ)
if(NOT differ STREQUAL "0")
  message(FATAL_ERROR "the checkpoint after ${resumes} resumes differs from the uninterrupted run's")
endif()
