// Compiled (not run) with aarch64-linux-gnu-g++ by check_aarch64.sh: it
// instantiates every aarch64 critical section through the public headers.
#include <cstdint>

#include "pmu/rseq/counter_read.h"
#include "pmu/rseq/per_cpu_counter.h"
#include "pmu/rseq/per_cpu_ring.h"

#if !defined(__aarch64__)
#error "this file is only meant for the aarch64 cross compiler"
#endif
static_assert(pmu::rseq::detail::arch::kSectionsSupported);

namespace aarch64_check {
struct Sample {
  std::uint64_t words[5];
};
struct Small {
  std::uint32_t a, b, c;
};
}  // namespace aarch64_check
using aarch64_check::Sample;
using aarch64_check::Small;

int AArch64CompileCheck(pmu::rseq::PerCpuCounter& counter, pmu::rseq::PerCpuRing<Sample>& ring,
                        pmu::rseq::PerCpuRing<Small>& small) {
  counter.Add(3);
  int pushed = ring.TryPush(Sample{}).status == pmu::rseq::PushStatus::kPushed ? 1 : 0;
  pushed += ring.TryPushOnCpu(0, Sample{}).status == pmu::rseq::PushStatus::kPushed ? 1 : 0;
  pushed += small.TryPush(Small{1, 2, 3}).status == pmu::rseq::PushStatus::kPushed ? 1 : 0;
  pmu::rseq::CounterReadResult result;
  const perf_event_mmap_page* page = nullptr;
  pmu::rseq::ReadCountersOnCpu(0, {&page, 1}, &result);
  return pushed + static_cast<int>(ring.DrainAll([](int, const Sample&) {}));
}
