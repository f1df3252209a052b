# Every dependency comes from Debian packages (scripts/install-deps.sh).
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)
find_package(prometheus-cpp CONFIG REQUIRED)
find_package(tomlplusplus CONFIG REQUIRED)
find_package(spdlog CONFIG REQUIRED)
find_package(OpenSSL 3 REQUIRED)
find_package(ZLIB REQUIRED)
pkg_check_modules(LIBSYSTEMD REQUIRED IMPORTED_TARGET libsystemd)

find_path(PFM_INCLUDE_DIR perfmon/pfmlib_perf_event.h REQUIRED)
find_library(PFM_LIBRARY pfm REQUIRED)
add_library(pfm::pfm UNKNOWN IMPORTED)
set_target_properties(pfm::pfm PROPERTIES IMPORTED_LOCATION ${PFM_LIBRARY}
                      INTERFACE_INCLUDE_DIRECTORIES ${PFM_INCLUDE_DIR})
