# Hardening for builds that ship (every build type but Debug, sanitizer builds
# excepted): the flags Debian's dpkg-buildflags gives with hardening=+all,
# spelt out because Debian 12's dpkg (1.21) does not yet add
# -fstack-clash-protection and -fcf-protection. PIE is the compiler default
# on Debian and is requested explicitly for other toolchains.
#
#   -fstack-protector-strong   canaries in functions with arrays or address-taken locals
#   -D_FORTIFY_SOURCE=2        glibc's checked memcpy/snprintf/read... (__*_chk)
#   -fstack-clash-protection   probes large stack allocations page by page
#   -fcf-protection            CET endbr64 landing pads and shadow-stack marking (x86)
#   -Wl,-z,relro -Wl,-z,now    full RELRO: GOT read-only after start (BIND_NOW)
#
# tests/packaging (packaging.hardening) checks the built binary for them.
option(PMU_HARDENING "Build with Debian's hardening flags (not in Debug or sanitizer builds)" ON)

include(CheckCXXCompilerFlag)
include(CheckPIESupported)

function(pmu_enable_hardening)
  string(TOUPPER "${CMAKE_BUILD_TYPE}" build_type)
  if(NOT PMU_HARDENING OR build_type STREQUAL "DEBUG" OR NOT PMU_SANITIZE STREQUAL "")
    message(STATUS "Hardening flags: off")
    return()
  endif()
  set(flags -fstack-protector-strong)
  # Fortification needs optimisation; CMake's non-Debug types all have -O.
  # -U first: some toolchains predefine a different level.
  list(APPEND flags -U_FORTIFY_SOURCE -D_FORTIFY_SOURCE=2)
  foreach(flag -fstack-clash-protection -fcf-protection)
    string(MAKE_C_IDENTIFIER "PMU_HAS${flag}" var)
    check_cxx_compiler_flag(${flag} ${var})
    if(${var})
      list(APPEND flags ${flag})
    endif()
  endforeach()
  add_compile_options(${flags})
  add_link_options(-Wl,-z,relro -Wl,-z,now)
  check_pie_supported(LANGUAGES C CXX)
  set(CMAKE_POSITION_INDEPENDENT_CODE ON PARENT_SCOPE)
  message(STATUS "Hardening flags: ${flags} -Wl,-z,relro -Wl,-z,now, PIE")
endfunction()

pmu_enable_hardening()
