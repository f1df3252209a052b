// /proc/softirqs (a header of CPU columns, one row per softirq).
#include "fuzz_support.h"
#include "pmu/collectors/kernel_stats.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pmu::fuzz::WriteFakeFile("proc/softirqs", data, size);
  pmu::collectors::ParseSoftirqs(pmu::fuzz::FakeRoot());
  return 0;
}
