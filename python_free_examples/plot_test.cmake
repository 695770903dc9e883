# Tests scripts/plot_metrics.py under the build's Python:
#   cmake -DMODE=runs|optimizers|errors -DPYTHON=<python3> -DSCRIPT=<plot_metrics.py> -DDIR=<folder>
#         -P plot_test.cmake [-- <program> [arguments...]]
# runs: the program (a driver on the Trainer) trains with --metrics DIR/run.jsonl, and the
# script draws that file twice, as two named runs, over a stale DIR/runs.png.
# optimizers: the program (optimizers_demo) writes its CSVs with --out DIR/optimizers, and the
# script draws the normalised one to DIR/optimizers.png.
# Both then check that the PNG was replaced by a real one (PNG signature, a few KiB at least).
# errors: bad inputs and arguments each give their exit status (1: input, 2: usage) and one
# line on stderr naming the file (and line), and leave an existing PNG as it was.
# Every mode checks that no temporary file is left beside the PNG.
cmake_minimum_required(VERSION 3.25)

foreach(var MODE PYTHON SCRIPT DIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "plot_test: usage: cmake -DMODE=runs|optimizers|errors -DPYTHON=<python3> "
                        "-DSCRIPT=<plot_metrics.py> -DDIR=<folder> -P plot_test.cmake [-- <program> ...]")
  endif()
endforeach()
if(NOT EXISTS "${PYTHON}")
  cmake_path(GET PYTHON PARENT_PATH bin)
  cmake_path(GET bin PARENT_PATH env)
  cmake_path(GET env PARENT_PATH build)
  message(FATAL_ERROR "plot_test: ${PYTHON} does not exist: run scripts/pyenv.sh ${build} first "
                      "(it makes the build's virtual environment with matplotlib)")
endif()

include(${CMAKE_CURRENT_LIST_DIR}/command_after_separator.cmake)

file(REMOVE_RECURSE "${DIR}")
file(MAKE_DIRECTORY "${DIR}")

function(run_program)
  execute_process(COMMAND ${command} ${ARGN} RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT status STREQUAL "0")
    message(FATAL_ERROR "plot_test: '${command} ${ARGN}' exited with '${status}':\n${out}\n${err}")
  endif()
endfunction()

# plot(<status> <stderr variable> <arguments...>): runs the script, expects that exit status.
function(plot expected err_var)
  execute_process(COMMAND "${PYTHON}" "${SCRIPT}" ${ARGN} RESULT_VARIABLE status OUTPUT_VARIABLE out
                  ERROR_VARIABLE err)
  message(STATUS "plot_metrics.py ${ARGN}\n  exit status ${status}\n  stdout: ${out}  stderr: ${err}")
  if(NOT status STREQUAL "${expected}")
    message(FATAL_ERROR "plot_test: expected exit status ${expected}, got '${status}'")
  endif()
  set(${err_var} "${err}" PARENT_SCOPE)
endfunction()

function(check_no_temporaries)
  file(GLOB left LIST_DIRECTORIES false "${DIR}/.*.tmp")
  if(left)
    message(FATAL_ERROR "plot_test: temporary files left behind: ${left}")
  endif()
endfunction()

function(check_png png)
  file(SIZE "${png}" size)
  file(READ "${png}" signature LIMIT 8 HEX)
  message(STATUS "${png}: ${size} bytes, starts ${signature}")
  if(NOT signature STREQUAL "89504e470d0a1a0a")
    message(FATAL_ERROR "plot_test: ${png} does not start with the PNG signature (got ${signature})")
  endif()
  # A figure of axes, curves and text; the stale stand-in written before is 6 bytes.
  if(size LESS 4096)
    message(FATAL_ERROR "plot_test: ${png} is only ${size} bytes")
  endif()
  check_no_temporaries()
endfunction()

if(MODE STREQUAL "runs")
  set(metrics "${DIR}/run.jsonl")
  run_program(--metrics "${metrics}")
  set(png "${DIR}/runs.png")
  file(WRITE "${png}" "stale\n")
  plot(0 err "first=${metrics}" "second=${metrics}" --out "${png}")
  check_png("${png}")
elseif(MODE STREQUAL "optimizers")
  run_program(--out "${DIR}/optimizers")
  set(png "${DIR}/optimizers.png")
  file(WRITE "${png}" "stale\n")
  plot(0 err --optimizers "${DIR}/optimizers_normalised.csv" --out "${png}")
  check_png("${png}")
elseif(MODE STREQUAL "errors")
  set(png "${DIR}/kept.png")
  file(WRITE "${png}" "kept\n")
  set(good "${DIR}/good.jsonl")
  file(WRITE "${good}" "{\"event\":\"epoch\",\"epoch\":1,\"step\":4,\"train_loss\":2.3,\"seconds\":0.1}\n")
  file(WRITE "${DIR}/not_jsonl.jsonl"
       "{\"event\":\"epoch\",\"epoch\":1,\"step\":4,\"train_loss\":2.3,\"seconds\":0.1}\nepoch 1 loss 2.3\n")
  file(WRITE "${DIR}/no_epochs.jsonl" "{\"event\":\"final\",\"test_loss\":1.5,\"seconds\":2.0}\n")
  file(WRITE "${DIR}/bad_field.jsonl"
       "{\"event\":\"epoch\",\"epoch\":1,\"step\":4,\"train_loss\":2.3,\"seconds\":0.1}\n{\"event\":\"epoch\",\"epoch\":2,\"step\":8,\"train_loss\":\"low\",\"seconds\":0.1}\n")
  file(WRITE "${DIR}/bad.csv" "iteration,sgd,adam\n0,2.7,2.7\n1,2.1\n")
  # <exit status>|<regex on the one stderr line>|<arguments...>, all separated by |
  set(cases
    "1|^plot_metrics: error: [^\n]*/not_jsonl.jsonl:2: not a JSON record: |${DIR}/not_jsonl.jsonl"
    "1|^plot_metrics: error: [^\n]*/no_epochs.jsonl: no epoch records |${DIR}/no_epochs.jsonl"
    "1|^plot_metrics: error: [^\n]*/bad_field.jsonl:2: epoch record: \"train_loss\" should be a number, got \"low\"$|${DIR}/bad_field.jsonl"
    "1|^plot_metrics: error: [^\n]*/missing.jsonl: cannot read: No such file or directory$|${DIR}/missing.jsonl"
    "1|^plot_metrics: error: [^\n]*/bad.csv:3: 2 fields where the header has 3$|--optimizers|${DIR}/bad.csv"
    "1|^plot_metrics: error: --out: folder '/nonexistent/plots' of '/nonexistent/plots/kept.png' does not exist$|${good}|--out|/nonexistent/plots/kept.png"
    "2|^plot_metrics: error: the following arguments are required: --out \\(see --help\\)$|${good}"
    "2|^plot_metrics: error: --out: expected a .png file name, got '[^\n]*/kept.pdf'$|${good}|--out|${DIR}/kept.pdf"
    "2|^plot_metrics: error: two runs named 'good' |${good}|${good}")
  foreach(case IN LISTS cases)
    string(REPLACE "|" ";" fields "${case}")
    list(POP_FRONT fields expected pattern)
    if(NOT "--out" IN_LIST fields AND NOT pattern MATCHES "required: --out")
      list(APPEND fields --out "${png}")
    endif()
    plot(${expected} err ${fields})
    if(NOT err MATCHES "^[^\n]*\n$")
      message(FATAL_ERROR "plot_test: expected one line on stderr")
    endif()
    string(STRIP "${err}" line)
    if(NOT line MATCHES "${pattern}")
      message(FATAL_ERROR "plot_test: stderr '${line}' does not match '${pattern}'")
    endif()
    file(READ "${png}" kept)
    if(NOT kept STREQUAL "kept\n")
      message(FATAL_ERROR "plot_test: a failed run changed ${png}")
    endif()
    check_no_temporaries()
  endforeach()
else()
  message(FATAL_ERROR "plot_test: MODE must be runs, optimizers or errors, got '${MODE}'")
endif()
