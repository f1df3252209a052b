// Groups open disabled and are enabled whole: on the kernel-faithful fake, a
// member opened into a group that already counts is not scheduled until the
// group is next scheduled in, so it would count nothing; EventGroup's members
// all count from the same moment.
#include "pmu/collectors/event_group.h"

#include <gtest/gtest.h>

#include "fake_kernel_pmu.h"

namespace pmu::collectors {
namespace {

EventPlan TwoSoftwareEvents() {
  EventPlan plan;
  for (uint64_t config : {uint64_t{10}, uint64_t{11}}) {
    PlannedEvent ev;
    ev.name = "e" + std::to_string(config);
    ev.attr.size = sizeof(perf_event_attr);
    ev.attr.type = PERF_TYPE_RAW;
    ev.attr.config = config;
    ev.supported = true;
    ev.group = 0;
    plan.events.push_back(ev);
  }
  plan.groups.push_back({"g", {0, 1}});
  return plan;
}

TEST(EventGroup, MemberAddedToACountingGroupCountsNothingOnTheFake) {
  testing::FakeKernelPmu pmu({});
  perf_event_attr leader{};
  leader.size = sizeof(leader);
  leader.config = 10;
  const int lfd = pmu.Open(&leader, -1, 0, -1, 0);  // enabled at once
  perf_event_attr member = leader;
  member.config = 11;
  ASSERT_GE(pmu.Open(&member, -1, 0, lfd, 0), 0);
  pmu.Count(0, 10, 100);
  pmu.Count(0, 11, 100);
  EXPECT_EQ(pmu.TrueCount(0, 10), 100u);
  EXPECT_EQ(pmu.TrueCount(0, 11), 0u);  // the kernel would not have scheduled it yet
}

TEST(EventGroup, OpenedDisabledThenEnabledWholeEveryMemberCounts) {
  testing::FakeKernelPmu pmu({});
  const EventPlan plan = TwoSoftwareEvents();
  EventGroup::OpenError error;
  auto group = EventGroup::Open(pmu, plan, 0, 0, &error);
  ASSERT_NE(group, nullptr) << error.message;
  pmu.Count(0, 10, 100);
  pmu.Count(0, 11, 250);
  GroupSample s;
  ASSERT_EQ(group->Read(&s), 0);
  EXPECT_EQ(s.count, 2u);
  EXPECT_EQ(s.values[0], 100u);
  EXPECT_EQ(s.values[1], 250u);
  EXPECT_GT(s.time_enabled, 0u);
  EXPECT_EQ(s.time_enabled, s.time_running);
}

}  // namespace
}  // namespace pmu::collectors
