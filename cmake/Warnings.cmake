# One INTERFACE target carries the project's warning set; every project target
# links it privately so third-party headers are unaffected (they are -isystem).
add_library(pmu_warnings INTERFACE)
add_library(pmu::warnings ALIAS pmu_warnings)
target_compile_options(pmu_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion
  -Wnon-virtual-dtor -Wold-style-cast -Wcast-align -Wunused -Woverloaded-virtual
  -Wnull-dereference -Wdouble-promotion -Wformat=2 -Wimplicit-fallthrough
  -Wmisleading-indentation -Wduplicated-cond -Wlogical-op)
if(PMU_WERROR)
  target_compile_options(pmu_warnings INTERFACE -Werror)
endif()
# GCC 12 reports -Wrestrict false positives inside libstdc++'s
# std::string operator+ at -O2 and above (GCC bug 105329, fixed in GCC 13);
# without this a Release build with PMU_WERROR fails on correct code.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_GREATER_EQUAL 12
   AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  target_compile_options(pmu_warnings INTERFACE -Wno-restrict)
endif()
