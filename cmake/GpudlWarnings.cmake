# Warning and sanitizer flags shared by every libgpudl target, as an interface target.
add_library(gpudl_warnings INTERFACE)
target_compile_options(gpudl_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wold-style-cast>
  $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra>
  # A switch over an enum names every enumerator and has no default (switches over enums in
  # this code are written so), so a new kind that some switch misses fails the build.
  $<$<COMPILE_LANGUAGE:CXX>:-Werror=switch>
  $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Werror=switch>
  # Error messages name files relative to the source tree, not the build machine's path.
  $<$<COMPILE_LANGUAGE:CXX>:-fmacro-prefix-map=${PROJECT_SOURCE_DIR}/=>
  $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-fmacro-prefix-map=${PROJECT_SOURCE_DIR}/=>)
if(GPUDL_SANITIZE)
  target_compile_options(gpudl_warnings INTERFACE
    $<$<COMPILE_LANGUAGE:CXX>:-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined>)
  target_link_options(gpudl_warnings INTERFACE -fsanitize=address,undefined)
endif()
