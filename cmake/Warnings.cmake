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
