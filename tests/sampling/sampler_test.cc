// CpuSampler and Pipeline against fakes: the rdpmc path end to end with fake
// perf pages and a fake counter array, the fallback to read() when a counter
// leaves the PMU, and misattribution checks.
#include "pmu/sampling/cpu_sampler.h"

#include <gtest/gtest.h>

#include <cstring>
#include <thread>

#include "fake_perf.h"
#include "pmu/collectors/event_plan.h"
#include "test_support.h"

namespace pmu::sampling {
namespace {

using collectors::GroupSample;
using collectors::ReadPath;

std::vector<config::EventSpec> TwoEventGroup() {
  return {{"a", "context-switches", "g", 0, 0}, {"b", "page-faults", "g", 0, 0}};
}

// Fake pages for the fds of one group: counter i is rdpmc index i + 1 and
// reads as offset + fake_counters[i].
struct FakePmu {
  std::vector<perf_event_mmap_page> pages = std::vector<perf_event_mmap_page>(2);
  volatile uint64_t counters[2] = {1000, 2000};
  std::map<int, size_t> fd_slot;

  FakePmu() {
    for (size_t i = 0; i < pages.size(); ++i) {
      std::memset(&pages[i], 0, sizeof(pages[i]));
      pages[i].index = static_cast<uint32_t>(i + 1);
      pages[i].offset = 500;
      pages[i].time_enabled = 7000;
      pages[i].time_running = 7000;
      pages[i].cap_user_rdpmc = 1;
      pages[i].pmc_width = 48;
    }
  }
  void Attach(testing::FakePerf& perf) {
    perf.map_page = [this](int fd) -> const perf_event_mmap_page* {
      if (!fd_slot.count(fd)) fd_slot[fd] = fd_slot.size();
      return &pages.at(fd_slot[fd]);
    };
    // read() agrees with rdpmc (start-up validation).
    perf.read_values = [this](int, uint64_t* values, size_t members) {
      for (size_t i = 0; i < members && i < 2; ++i) values[i] = 500 + counters[i];
    };
  }
};

std::vector<GroupSample> DrainAll(SampleRing& ring, size_t* misfiled) {
  std::vector<GroupSample> out;
  ring.DrainAll([&](int cpu, const GroupSample& s) {
    if (s.read_cpu != cpu) ++*misfiled;
    out.push_back(s);
  });
  return out;
}

TEST(CpuSampler, RdpmcPathEndToEndWithFakePagesThenFallsBackToRead) {
#if !defined(__x86_64__)
  GTEST_SKIP() << "the rdpmc path exists on x86-64 only";
#endif
  testing::FakePerf perf;
  FakePmu pmu;
  pmu.Attach(perf);
  auto plan = collectors::BuildEventPlan(TwoEventGroup(), perf, 0);
  ASSERT_EQ(plan.groups.size(), 1u);
  SampleRing ring(2, 64);
  SamplerOptions options;
  options.pmc = rseq::PmcSource::Fake(pmu.counters);
  CpuSampler sampler(std::make_unique<collectors::CpuCounters>(perf, plan, 0, 1), ring, options);
  testing::ScopedPin pin(0);
  ASSERT_TRUE(pin.pinned());
  sampler.ValidateRdpmc();  // what the sampler thread does on its CPU
  for (int i = 0; i < 3; ++i) sampler.Tick(1);
  size_t misfiled = 0;
  auto samples = DrainAll(ring, &misfiled);
  ASSERT_EQ(samples.size(), 3u);
  for (const auto& s : samples) {
    EXPECT_EQ(s.path, ReadPath::kRdpmc);
    EXPECT_EQ(s.cpu, 0);
    EXPECT_EQ(s.count, 2u);
    EXPECT_EQ(s.values[0], 1500u);
    EXPECT_EQ(s.values[1], 2500u);
    EXPECT_EQ(s.time_enabled, 7000u);
  }
  EXPECT_EQ(sampler.stats().path, ReadPath::kRdpmc);

  // The counter is taken off the PMU (index 0): the next ticks use read().
  pmu.pages[1].index = 0;
  pmu.counters[0] = 3000;
  for (int i = 0; i < 3; ++i) sampler.Tick(1);
  samples = DrainAll(ring, &misfiled);
  ASSERT_EQ(samples.size(), 3u);
  EXPECT_NE(samples.back().path, ReadPath::kRdpmc);
  EXPECT_EQ(samples.back().values[0], 3500u) << "read() must agree with the counter";
  EXPECT_GE(sampler.stats().rdpmc_fallbacks, 1u);
  EXPECT_EQ(misfiled, 0u);
}

TEST(CpuSampler, RdpmcIsNotUsedWhenReadDisagrees) {
#if !defined(__x86_64__)
  GTEST_SKIP() << "the rdpmc path exists on x86-64 only";
#endif
  testing::FakePerf perf;
  FakePmu pmu;
  pmu.Attach(perf);
  perf.read_values = [](int, uint64_t* values, size_t members) {
    for (size_t i = 0; i < members; ++i) values[i] = 10;  // far below the rdpmc value
  };
  auto plan = collectors::BuildEventPlan(TwoEventGroup(), perf, 0);
  SampleRing ring(2, 64);
  SamplerOptions options;
  options.pmc = rseq::PmcSource::Fake(pmu.counters);
  CpuSampler sampler(std::make_unique<collectors::CpuCounters>(perf, plan, 0, 1), ring, options);
  testing::ScopedPin pin(0);
  ASSERT_TRUE(pin.pinned());
  sampler.ValidateRdpmc();
  for (int i = 0; i < 3; ++i) sampler.Tick(1);
  size_t misfiled = 0;
  const auto samples = DrainAll(ring, &misfiled);
  ASSERT_EQ(samples.size(), 3u);
  for (const auto& s : samples) EXPECT_EQ(s.path, ReadPath::kLocalRead);
}

TEST(CpuSampler, ReadOnItsOwnCpuIsLocalAndFromElsewhereRemote) {
  testing::FakePerf perf;  // no pages: read() paths only
  auto plan = collectors::BuildEventPlan(TwoEventGroup(), perf, 0);
  SampleRing ring(2, 64);
  CpuSampler sampler(std::make_unique<collectors::CpuCounters>(perf, plan, 0, 1), ring, {});
  size_t misfiled = 0;
  {
    testing::ScopedPin pin(0);
    ASSERT_TRUE(pin.pinned());
    sampler.Tick(1);
  }
  auto samples = DrainAll(ring, &misfiled);
  ASSERT_EQ(samples.size(), 1u);
  EXPECT_EQ(samples[0].path, ReadPath::kLocalRead);
  EXPECT_EQ(samples[0].read_cpu, 0);
  if (std::thread::hardware_concurrency() < 2) GTEST_SKIP() << "needs a second CPU";
  {
    testing::ScopedPin pin(1);
    ASSERT_TRUE(pin.pinned());
    sampler.Tick(1);
  }
  samples = DrainAll(ring, &misfiled);
  ASSERT_EQ(samples.size(), 1u);
  EXPECT_EQ(samples[0].path, ReadPath::kRemoteRead);
  EXPECT_EQ(samples[0].cpu, 0) << "values of CPU 0's fds stay CPU 0's";
  EXPECT_EQ(samples[0].read_cpu, 1);
  EXPECT_EQ(misfiled, 0u);
}

TEST(CpuSampler, ReadErrorsAreCountedByErrno) {
  testing::FakePerf perf;
  auto plan = collectors::BuildEventPlan(TwoEventGroup(), perf, 0);
  SampleRing ring(2, 64);
  auto counters = std::make_unique<collectors::CpuCounters>(perf, plan, 0, 1);
  const int leader = counters->groups()[0]->fds().front();
  CpuSampler sampler(std::move(counters), ring, {});
  perf.Close(leader);  // reads now fail with EBADF
  sampler.Tick(1);
  EXPECT_EQ(sampler.stats().read_errors[EBADF], 1u);
}

}  // namespace
}  // namespace pmu::sampling
