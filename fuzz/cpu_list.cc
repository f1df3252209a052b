// sysfs CPU lists (/sys/devices/system/cpu/online, possible).
#include <stdexcept>

#include "fuzz_support.h"
#include "pmu/collectors/topology.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pmu::fuzz::WriteFakeFile("sys/devices/system/cpu/online", data, size);
  try {
    pmu::collectors::OnlineCpus(pmu::fuzz::FakeRoot());
  } catch (const std::runtime_error&) {
  }
  return 0;
}
