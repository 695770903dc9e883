# For the test scripts run as `cmake -D... -P script.cmake -- program args...`: sets `command`
# to the list of words after the "--".
set(command "")
set(_gpudl_after_separator FALSE)
math(EXPR _gpudl_last "${CMAKE_ARGC} - 1")
foreach(_gpudl_i RANGE 1 ${_gpudl_last})
  if(_gpudl_after_separator)
    list(APPEND command "${CMAKE_ARGV${_gpudl_i}}")
  elseif("${CMAKE_ARGV${_gpudl_i}}" STREQUAL "--")
    set(_gpudl_after_separator TRUE)
  endif()
endforeach()
