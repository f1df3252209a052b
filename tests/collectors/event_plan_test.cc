#include "pmu/collectors/event_plan.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <cstring>

#include "fake_perf.h"
#include "pmu/collectors/cpu_counters.h"
#include "pmu/collectors/topology.h"

namespace pmu::collectors {
namespace {

using pmu::testing::FakePerf;

std::vector<config::EventSpec> Specs(
    std::initializer_list<std::tuple<const char*, const char*, const char*>> list) {
  std::vector<config::EventSpec> out;
  for (auto [name, event, group] : list) out.push_back({name, event, group, 0, 0});
  return out;
}

TEST(EventPlan, UnsupportedHardwareEventIsKeptWithAReason) {
  FakePerf perf;
  perf.FailOpen(PERF_TYPE_HARDWARE, PERF_COUNT_HW_CPU_CYCLES, -1, ENOENT);
  auto plan =
      BuildEventPlan(Specs({{"cycles", "cycles", ""}, {"cs", "context-switches", ""}}), perf, 0);
  ASSERT_EQ(plan.events.size(), 2u);
  EXPECT_FALSE(plan.events[0].supported);
  EXPECT_NE(plan.events[0].unsupported_reason.find("no hardware PMU, e.g. a virtual machine?"),
            std::string::npos)
      << plan.events[0].unsupported_reason;
  EXPECT_TRUE(plan.events[1].supported);
  ASSERT_EQ(plan.groups.size(), 1u);
  EXPECT_EQ(plan.groups[0].members, std::vector<size_t>{1});
  EXPECT_EQ(perf.open_count(), 0u) << "probe fds must be closed";
}

TEST(EventPlan, PermissionErrorNamesParanoidAndCapability) {
  FakePerf perf;
  perf.FailOpen(PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CONTEXT_SWITCHES, -1, EACCES);
  auto plan = BuildEventPlan(Specs({{"cs", "context-switches", ""}}), perf, 0);
  ASSERT_FALSE(plan.events[0].supported);
  const auto& why = plan.events[0].unsupported_reason;
  EXPECT_NE(why.find("perf_event_paranoid is "), std::string::npos) << why;
  EXPECT_NE(why.find("CAP_PERFMON"), std::string::npos) << why;
}

TEST(EventPlan, UnknownEventIsUnsupportedNotFatal) {
  FakePerf perf;
  auto plan = BuildEventPlan(Specs({{"x", "no_such_event_xyz", ""}, {"cs", "cs", ""}}), perf, 0);
  EXPECT_FALSE(plan.events[0].supported);
  EXPECT_NE(plan.events[0].unsupported_reason.find("--list-events"), std::string::npos);
  EXPECT_EQ(plan.SupportedCount(), 1u);
}

TEST(EventPlan, NamedGroupsShareOneLeaderAndLoneEventsCountAlone) {
  FakePerf perf;
  auto plan = BuildEventPlan(Specs({{"a", "context-switches", "g"},
                                    {"b", "cpu-clock", ""},
                                    {"c", "page-faults", "g"},
                                    {"d", "cpu-migrations", "h"}}),
                             perf, 0);
  ASSERT_EQ(plan.groups.size(), 3u);
  EXPECT_EQ(plan.groups[0].name, "g");
  EXPECT_EQ(plan.groups[0].members, (std::vector<size_t>{0, 2}));
  EXPECT_EQ(plan.groups[1].name, "b");
  EXPECT_EQ(plan.groups[2].members, std::vector<size_t>{3});
  EXPECT_EQ(plan.events[2].group, 0);

  CpuCounters counters(perf, plan, 0, 1);
  EXPECT_EQ(counters.open_groups(), 3u);
  EXPECT_EQ(counters.open_fds(), 4u);
  std::vector<GroupSample> samples;
  EXPECT_EQ(counters.ReadAll([&](const GroupSample& s) { samples.push_back(s); }), 0u);
  ASSERT_EQ(samples.size(), 3u);
  EXPECT_EQ(samples[0].count, 2u);
  EXPECT_EQ(samples[0].cpu, 0);
  EXPECT_EQ(samples[0].values[1], 2 * samples[0].values[0]);
}

TEST(EventPlan, OneCpuFailingDoesNotStopTheOthers) {
  FakePerf perf;
  auto plan = BuildEventPlan(Specs({{"cs", "context-switches", ""}}), perf, 0);
  perf.FailOpen(PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CONTEXT_SWITCHES, 1, EBUSY);
  CpuCounters cpu0(perf, plan, 0, 1);
  CpuCounters cpu1(perf, plan, 1, 1);
  EXPECT_EQ(cpu0.open_groups(), 1u);
  EXPECT_EQ(cpu1.open_groups(), 0u);
}

TEST(EventPlan, PartiallyOpenedGroupIsClosedAgain) {
  FakePerf perf;
  auto plan =
      BuildEventPlan(Specs({{"a", "context-switches", "g"}, {"b", "page-faults", "g"}}), perf, 0);
  perf.FailOpen(PERF_TYPE_SOFTWARE, PERF_COUNT_SW_PAGE_FAULTS, 0, EINVAL);
  {
    CpuCounters cpu0(perf, plan, 0, 1);
    EXPECT_EQ(cpu0.open_groups(), 0u);
  }
  EXPECT_EQ(perf.open_count(), 0u);
}

TEST(EventPlan, OversizedGroupIsRejected) {
  FakePerf perf;
  std::vector<config::EventSpec> specs;
  for (size_t i = 0; i <= kMaxGroupEvents; ++i) {
    specs.push_back({"e" + std::to_string(i), "context-switches", "big", 0, 0});
  }
  EXPECT_THROW(BuildEventPlan(specs, perf, 0), std::runtime_error);
}

TEST(EventPlan, BusyAndInvalidErrorsNameTheEventAndErrno) {
  FakePerf perf;
  perf.FailOpen(PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CONTEXT_SWITCHES, -1, EBUSY);
  perf.FailOpen(PERF_TYPE_SOFTWARE, PERF_COUNT_SW_PAGE_FAULTS, -1, EINVAL);
  auto plan =
      BuildEventPlan(Specs({{"cs", "context-switches", ""}, {"pf", "page-faults", ""}}), perf, 0);
  EXPECT_NE(plan.events[0].unsupported_reason.find("'context-switches'"), std::string::npos);
  EXPECT_NE(plan.events[0].unsupported_reason.find(std::strerror(EBUSY)), std::string::npos)
      << plan.events[0].unsupported_reason;
  EXPECT_NE(plan.events[1].unsupported_reason.find(std::strerror(EINVAL)), std::string::npos);
}

TEST(EventPlan, FdLimitIsRaisedTowardTheHardLimitOrExplained) {
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  if (saved.rlim_max != RLIM_INFINITY && saved.rlim_max < 4096) {
    GTEST_SKIP() << "hard RLIMIT_NOFILE " << saved.rlim_max << " is too small to test with";
  }
  rlimit low = saved;
  low.rlim_cur = 512;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  // 8 CPUs x 100 events + 256 > 512: raised.
  EXPECT_GE(EnsureFdLimit(8, 100), 8u * 100 + 256);
  rlimit now{};
  getrlimit(RLIMIT_NOFILE, &now);
  EXPECT_GE(now.rlim_cur, 8u * 100 + 256);
  // Beyond the hard limit: a clear error with the numbers.
  low.rlim_cur = 512;
  low.rlim_max = 2048;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  try {
    EnsureFdLimit(64, 100);
    ADD_FAILURE() << "no error for 6656 fds under a hard limit of 2048";
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("needs 6656 file descriptors"), std::string::npos) << what;
    EXPECT_NE(what.find("hard limit 2048"), std::string::npos) << what;
    EXPECT_NE(what.find("LimitNOFILE"), std::string::npos) << what;
  }
  // Lowering the hard limit is permanent for unprivileged processes; as root
  // the test restores it.
  setrlimit(RLIMIT_NOFILE, &saved);
}

TEST(Topology, ReadsFakeSysfsTrees) {
  const std::string data = PMU_TEST_DATA_DIR;
  EXPECT_EQ(OnlineCpus(data + "/topology/two_cpus"), (std::vector<int>{0, 1}));
  EXPECT_EQ(OnlineCpus(data + "/topology/holes"), (std::vector<int>{0, 2, 3, 8}));
  EXPECT_EQ(PossibleCpus(data + "/topology/holes").size(), 16u);
  EXPECT_THROW(OnlineCpus(data + "/no/such/root"), std::runtime_error);
}

TEST(Topology, RealHostHasCpuZeroOnline) {
  auto online = OnlineCpus("/");
  ASSERT_FALSE(online.empty());
  EXPECT_EQ(online.front(), 0);
}

}  // namespace
}  // namespace pmu::collectors
