# Finds OpenBLAS with its CBLAS header and defines the imported target OpenBLAS::OpenBLAS.
#
# Debian's libopenblas-dev puts cblas.h under an openblas-pthread (or openblas64) folder.
# Sets OpenBLAS_FOUND, OpenBLAS_INCLUDE_DIR, OpenBLAS_LIBRARY.
find_path(OpenBLAS_INCLUDE_DIR cblas.h
  HINTS ${OpenBLAS_ROOT} $ENV{OpenBLAS_ROOT}
  PATH_SUFFIXES include include/openblas openblas-pthread openblas-openmp openblas
                x86_64-linux-gnu/openblas-pthread aarch64-linux-gnu/openblas-pthread)
find_library(OpenBLAS_LIBRARY NAMES openblas HINTS ${OpenBLAS_ROOT} $ENV{OpenBLAS_ROOT}
  PATH_SUFFIXES lib lib64 openblas-pthread)

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(OpenBLAS REQUIRED_VARS OpenBLAS_LIBRARY OpenBLAS_INCLUDE_DIR
  REASON_FAILURE_MESSAGE "install it with: apt-get install libopenblas-dev")

if(OpenBLAS_FOUND AND NOT TARGET OpenBLAS::OpenBLAS)
  add_library(OpenBLAS::OpenBLAS UNKNOWN IMPORTED)
  set_target_properties(OpenBLAS::OpenBLAS PROPERTIES
    IMPORTED_LOCATION "${OpenBLAS_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${OpenBLAS_INCLUDE_DIR}")
endif()
mark_as_advanced(OpenBLAS_INCLUDE_DIR OpenBLAS_LIBRARY)
