# Installs libgpudl as a relocatable CMake package: find_package(gpudl) + gpudl::gpudl.
include(CMakePackageConfigHelpers)

install(TARGETS gpudl EXPORT gpudlTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
foreach(dir core kernels layers)
  install(DIRECTORY ${dir}/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/gpudl/${dir}
          FILES_MATCHING PATTERN "*.h" PATTERN "*.inc" PATTERN "cpu" EXCLUDE PATTERN "cuda" EXCLUDE)
endforeach()
install(FILES "${GPUDL_BUILD_INCLUDE_DIR}/gpudl/gpudl.h" "${GPUDL_BUILD_INCLUDE_DIR}/gpudl/config.h"
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/gpudl)

set(GPUDL_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/gpudl)
install(EXPORT gpudlTargets NAMESPACE gpudl:: DESTINATION ${GPUDL_CMAKE_DIR})
configure_package_config_file(cmake/gpudlConfig.cmake.in
  "${PROJECT_BINARY_DIR}/gpudlConfig.cmake" INSTALL_DESTINATION ${GPUDL_CMAKE_DIR})
write_basic_package_version_file("${PROJECT_BINARY_DIR}/gpudlConfigVersion.cmake"
  COMPATIBILITY SameMinorVersion)
install(FILES "${PROJECT_BINARY_DIR}/gpudlConfig.cmake" "${PROJECT_BINARY_DIR}/gpudlConfigVersion.cmake"
        DESTINATION ${GPUDL_CMAKE_DIR})
