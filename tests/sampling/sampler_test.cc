// CpuSampler against fakes: the rdpmc path end to end against a fake that
// behaves like the kernel (FakeKernelPmu: page times stale without
// cap_user_time, index 0 while scheduled out, rdpmc reading 0 when disabled
// per counter, counters wrapping at pmc_width), the validation every switch
// to rdpmc goes through, a real rdpmc fault survived, and the read() paths.
#include <gtest/gtest.h>
#include <pmu/rseq/read_fault.h>

#include <cstring>
#include <thread>

#include "fake_kernel_pmu.h"
#include "fake_perf.h"
#include "pmu/collectors/event_plan.h"
#include "pmu/sampling/cpu_sampler.h"
#include "test_support.h"

namespace pmu::sampling {
namespace {

using collectors::GroupSample;
using collectors::ReadPath;
using testing::FakeKernelPmu;

std::vector<config::EventSpec> TwoEventGroup() {
  return {{"a", "context-switches", "g", 0, 0}, {"b", "page-faults", "g", 0, 0}};
}

std::vector<GroupSample> DrainAll(SampleRing& ring, size_t* misfiled) {
  std::vector<GroupSample> out;
  ring.DrainAll([&](int cpu, const GroupSample& s) {
    if (s.read_cpu != cpu) ++*misfiled;
    out.push_back(s);
  });
  return out;
}

// One group of two events on CPU 0 of a FakeKernelPmu, read by a sampler
// whose rdpmc goes to the fake's counters.
struct KernelRig {
  explicit KernelRig(FakeKernelPmu::Options options, bool fake_rdpmc = true)
      : pmu(options), plan(collectors::BuildEventPlan(TwoEventGroup(), pmu, 0)), ring(2, 1024) {
    SamplerOptions sampler_options;
    sampler_options.pmc =
        fake_rdpmc ? rseq::PmcSource::Fake(pmu.counters()) : rseq::PmcSource::Hardware();
    sampler = std::make_unique<CpuSampler>(
        std::make_unique<collectors::CpuCounters>(pmu, plan, 0, 1), ring, sampler_options);
    a = plan.events[0].attr.config;
    b = plan.events[1].attr.config;
  }
  // Counts, ticks once, returns the reading.
  GroupSample CountAndTick(uint64_t n) {
    pmu.Count(0, a, n);
    pmu.Count(0, b, 2 * n);
    sampler->Tick(++slot);
    size_t misfiled = 0;
    auto samples = DrainAll(ring, &misfiled);
    EXPECT_EQ(samples.size(), 1u);
    EXPECT_EQ(misfiled, 0u);
    return samples.empty() ? GroupSample{} : samples.back();
  }

  FakeKernelPmu pmu;
  collectors::EventPlan plan;
  SampleRing ring;
  std::unique_ptr<CpuSampler> sampler;
  uint64_t a = 0, b = 0, slot = 0;
};

TEST(CpuSampler, RdpmcPathEndToEndAgainstTheKernelModelThenFallsBackToRead) {
#if !defined(__x86_64__)
  GTEST_SKIP() << "the rdpmc path exists on x86-64 only";
#endif
  // A 32-bit counter (ARM's are 32 bits) wraps within the test: each
  // overflow updates the page, and the sign-extended raw value stays right.
  KernelRig rig({.cap_user_time = true, .pmc_width = 32});
  testing::ScopedPin pin(0);
  ASSERT_TRUE(pin.pinned());
  for (uint64_t step :
       {uint64_t{1000}, uint64_t{1'000'000'000}, uint64_t{1'000'000'000}, uint64_t{5}}) {
    // Time enough for the step to be a plausible count.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const GroupSample s = rig.CountAndTick(step);
    EXPECT_EQ(s.path, ReadPath::kRdpmc);
    EXPECT_EQ(s.values[0], rig.pmu.TrueCount(0, rig.a));
    EXPECT_EQ(s.values[1], rig.pmu.TrueCount(0, rig.b));
  }
  // The events leave the PMU (index 0): the next ticks use read().
  rig.pmu.ScheduleOut(0);
  const GroupSample s = rig.CountAndTick(7);
  EXPECT_EQ(s.path, ReadPath::kLocalRead);
  EXPECT_EQ(s.values[0], rig.pmu.TrueCount(0, rig.a));
  EXPECT_GE(rig.sampler->stats().rdpmc_fallbacks, 1u);
}

TEST(CpuSampler, RdpmcIsNotUsedWhereThePageTimesAreStale) {
  // Without cap_user_time (paravirtual clocks) the page's times move only at
  // sched-in: rdpmc readings would pair a current count with old times.
  KernelRig rig({.cap_user_time = false});
  testing::ScopedPin pin(0);
  ASSERT_TRUE(pin.pinned());
  for (int i = 0; i < 3; ++i) {
    const GroupSample s = rig.CountAndTick(1000);
    EXPECT_EQ(s.path, ReadPath::kLocalRead);
    EXPECT_EQ(s.values[0], rig.pmu.TrueCount(0, rig.a));
  }
}

TEST(CpuSampler, RdpmcDisabledPerCounterIsNeverUsedNotEvenAtTheRecheck) {
  // rdpmc reads 0 while the page still says cap_user_rdpmc: an unvalidated
  // switch to rdpmc exported the page offset (about 2^47).
  KernelRig rig({.cap_user_time = true});
  rig.pmu.DisableUserRdpmcPerCounter(true);
  testing::ScopedPin pin(0);
  ASSERT_TRUE(pin.pinned());
  for (uint64_t i = 0; i < 3 * CpuSampler::kRdpmcRecheckTicks; ++i) {
    const GroupSample s = rig.CountAndTick(10);
    ASSERT_NE(s.path, ReadPath::kRdpmc) << "tick " << i;
    ASSERT_EQ(s.values[0], rig.pmu.TrueCount(0, rig.a)) << "tick " << i;
  }
}

TEST(CpuSampler, ARealRdpmcFaultIsSurvivedAndTheGroupReadsWithRead) {
#if !defined(__x86_64__)
  GTEST_SKIP() << "the rdpmc path exists on x86-64 only";
#endif
  if (testing::UserRdpmcWorks()) {
    GTEST_SKIP() << "rdpmc does not fault on this host (user rdpmc is enabled): the fault "
                    "path is exercised where it is switched off (make hw-check does so)";
  }
  ASSERT_TRUE(rseq::InstallReadFaultHandler());
  // Pages that promise rdpmc, read by the real instruction, which faults here.
  KernelRig rig({.cap_user_time = true}, /*fake_rdpmc=*/false);
  testing::ScopedPin pin(0);
  ASSERT_TRUE(pin.pinned());
  for (uint64_t i = 0; i < CpuSampler::kRdpmcRecheckTicks + 2; ++i) {
    const GroupSample s = rig.CountAndTick(10);
    EXPECT_EQ(s.path, ReadPath::kLocalRead);
    EXPECT_EQ(s.values[0], rig.pmu.TrueCount(0, rig.a));
  }
  EXPECT_EQ(rig.sampler->stats().rdpmc_faults, 2u) << "the first validation and the recheck";
  rseq::RemoveReadFaultHandler();
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
