// /proc/stat as the kernel-statistics reader parses it.
#include "fuzz_support.h"
#include "pmu/collectors/kernel_stats.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pmu::fuzz::WriteFakeFile("proc/stat", data, size);
  pmu::collectors::ParseProcStat(pmu::fuzz::FakeRoot(), 100);
  return 0;
}
