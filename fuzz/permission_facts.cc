// /proc/self/status (CapEff, Seccomp) and perf_event_paranoid, as the
// permission diagnosis reads them.
#include <cerrno>
#include <string_view>

#include "fuzz_support.h"
#include "pmu/collectors/permission.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pmu::collectors::PermissionFacts facts;
  pmu::collectors::ParseProcStatus(std::string_view(reinterpret_cast<const char*>(data), size),
                                   facts);
  pmu::fuzz::WriteFakeFile("proc/sys/kernel/perf_event_paranoid", data, size);
  pmu::fuzz::WriteFakeFile("proc/self/status", data, size);
  const auto read = pmu::collectors::ReadPermissionFacts(pmu::fuzz::FakeRoot());
  pmu::collectors::DescribePermissionDenied(EACCES, read);
  pmu::collectors::DescribePermissionDenied(EPERM, read);
  return 0;
}
