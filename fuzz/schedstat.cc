// /proc/schedstat (version line, cpuN and domain lines).
#include "fuzz_support.h"
#include "pmu/collectors/kernel_stats.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pmu::fuzz::WriteFakeFile("proc/schedstat", data, size);
  pmu::collectors::ParseSchedstat(pmu::fuzz::FakeRoot());
  return 0;
}
