// cpufreq's scaling_cur_freq of one CPU.
#include "fuzz_support.h"
#include "pmu/collectors/kernel_stats.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pmu::fuzz::WriteFakeFile("sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq", data, size);
  pmu::collectors::ParseCpufreq(pmu::fuzz::FakeRoot(), {0});
  return 0;
}
