#include "pmu/rseq/membarrier.h"

#include <gtest/gtest.h>
#include <sched.h>

#include <cerrno>

#include "pmu/rseq/abi.h"

namespace pmu::rseq {
namespace {

TEST(Membarrier, FenceEveryAllowedCpu) {
  // main() registered while single-threaded.
  if (!MembarrierRseqAvailable()) {
    GTEST_SKIP() << "MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ not available on this kernel";
  }
  EXPECT_TRUE(RegisterMembarrierRseq());  // idempotent
  for (int cpu = 0; cpu < PossibleCpuCount(); ++cpu) {
    EXPECT_EQ(CpuFenceRseq(cpu), 0) << "cpu " << cpu;
    EXPECT_TRUE(QuiesceCpu(cpu));
  }
}

TEST(Membarrier, QuiesceRestoresAffinity) {
  cpu_set_t before;
  ASSERT_EQ(sched_getaffinity(0, sizeof(before), &before), 0);
  for (int cpu = 0; cpu < PossibleCpuCount(); ++cpu) {
    if (CPU_ISSET(static_cast<std::size_t>(cpu), &before)) {
      EXPECT_TRUE(QuiesceCpu(cpu));
    }
  }
  cpu_set_t after;
  ASSERT_EQ(sched_getaffinity(0, sizeof(after), &after), 0);
  EXPECT_TRUE(CPU_EQUAL(&before, &after));
}

}  // namespace
}  // namespace pmu::rseq
