#include "pmu/rseq/per_cpu_counter.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace pmu::rseq {
namespace {

TEST(PerCpuCounter, SingleThreadSumIsExact) {
  PerCpuCounter counter;
  for (int i = 0; i < 100000; ++i) counter.Add(3);
  EXPECT_EQ(counter.Sum(), 300000u);
  if (CurrentMode() != Mode::kUnavailable) {
    EXPECT_EQ(counter.fallbacks(), 0u);
  }
}

TEST(PerCpuCounter, ValueOnCpuSumsToTotal) {
  PerCpuCounter counter(PossibleCpuCount());
  counter.Add(7);
  std::uint64_t total = 0;
  for (int cpu = 0; cpu < counter.num_cpus(); ++cpu) total += counter.ValueOnCpu(cpu);
  EXPECT_EQ(total, 7u);
}

TEST(PerCpuCounter, ManyThreadsSumIsExact) {
  PerCpuCounter counter;
  const unsigned threads = 4 * std::max(1u, std::thread::hardware_concurrency());
  constexpr int kPerThread = 200000;
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) {
    pool.emplace_back([&counter] {
      ThreadRegistration registration;
      for (int i = 0; i < kPerThread; ++i) counter.Add(1);
    });
  }
  for (auto& t : pool) t.join();
  EXPECT_EQ(counter.Sum(), std::uint64_t{threads} * kPerThread);
}

TEST(PerCpuCounter, TooFewSlotsFallsBackCorrectly) {
  // One slot on a multi-CPU machine: CPUs >= 1 take the atomic path.
  PerCpuCounter counter(1);
  std::vector<std::thread> pool;
  for (int t = 0; t < 4; ++t) {
    pool.emplace_back([&counter] {
      for (int i = 0; i < 50000; ++i) counter.Add(1);
    });
  }
  for (auto& t : pool) t.join();
  EXPECT_EQ(counter.Sum(), 200000u);
}

}  // namespace
}  // namespace pmu::rseq
