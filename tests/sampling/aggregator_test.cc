#include "pmu/sampling/aggregator.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "pmu/sampling/interval.h"
#include "plans.h"

namespace pmu::sampling {
namespace {

using collectors::GroupSample;
using testing::Reading;
using testing::TwoEventPlan;

TEST(Aggregator, ScalesEachIntervalByItsOwnEnabledOverRunning) {
  Aggregator agg(TwoEventPlan(), 2);
  agg.Ingest(Reading(0, 1, 100, 10, 1000, 1000));   // ratio 1: +100
  agg.Ingest(Reading(0, 1, 150, 20, 2000, 1500));   // +50 * 1000/500 = +100
  agg.Ingest(Reading(0, 1, 250, 30, 3000, 2500));   // ratio 1: +100
  auto snap = agg.TakeSnapshot();
  ASSERT_EQ(snap.cpus.size(), 1u);
  EXPECT_DOUBLE_EQ(snap.cpus[0].events[0].count, 300);
  EXPECT_DOUBLE_EQ(snap.cpus[0].events[1].count, 40);
  EXPECT_DOUBLE_EQ(snap.cpus[0].events[0].enabled_seconds, 3000e-9);
  EXPECT_DOUBLE_EQ(snap.cpus[0].events[0].running_seconds, 2500e-9);
  EXPECT_DOUBLE_EQ(snap.cpus[0].events[0].last_running_ratio, 1.0);
}

TEST(Aggregator, IntervalWithZeroRunningAddsNothingButTimeEnabled) {
  Aggregator agg(TwoEventPlan(), 1);
  agg.Ingest(Reading(0, 1, 100, 0, 1000, 1000));
  agg.Ingest(Reading(0, 1, 100, 0, 2000, 1000));  // enabled but never scheduled
  auto t = agg.TakeSnapshot().cpus[0].events[0];
  EXPECT_DOUBLE_EQ(t.count, 100);
  EXPECT_DOUBLE_EQ(t.last_running_ratio, 0.0);
  EXPECT_DOUBLE_EQ(t.enabled_seconds, 2000e-9);
  EXPECT_DOUBLE_EQ(t.running_seconds, 1000e-9);
}

TEST(Aggregator, TotalsStayMonotonicWhenFdsAreReopened) {
  Aggregator agg(TwoEventPlan(), 1);
  agg.Ingest(Reading(0, 1, 1000, 0, 1000, 1000));
  agg.Ingest(Reading(0, 2, 10, 0, 100, 100));  // new fds count from zero again
  agg.Ingest(Reading(0, 2, 30, 0, 200, 200));
  EXPECT_DOUBLE_EQ(agg.TakeSnapshot().cpus[0].events[0].count, 1030);
}

TEST(Aggregator, CounterGoingBackwardsIsTreatedAsRestartNotNegative) {
  Aggregator agg(TwoEventPlan(), 1);
  agg.Ingest(Reading(0, 1, 1000, 0, 1000, 1000));
  agg.Ingest(Reading(0, 1, 5, 0, 10, 10));
  EXPECT_DOUBLE_EQ(agg.TakeSnapshot().cpus[0].events[0].count, 1005);
}

TEST(Aggregator, IgnoresOutOfRangeCpusAndGroups) {
  Aggregator agg(TwoEventPlan(), 1);
  agg.Ingest(Reading(5, 1, 1, 1, 1, 1));
  auto bad_group = Reading(0, 1, 1, 1, 1, 1);
  bad_group.group = 9;
  agg.Ingest(bad_group);
  EXPECT_TRUE(agg.TakeSnapshot().cpus.empty());
}

TEST(Aggregator, SeedCarriesTotalsOfEventsWithTheSameNameAndEncoding) {
  auto old_plan = TwoEventPlan();
  old_plan->events[1].attr.config = 7;
  Aggregator old_agg(old_plan, 1);
  old_agg.Ingest(Reading(0, 1, 100, 10, 1000, 1000));
  auto next_plan = TwoEventPlan();
  next_plan->events[1].attr.config = 8;  // same name, different event: starts over
  Aggregator next(next_plan, 1);
  next.Seed(old_agg.TakeSnapshot());
  next.Ingest(Reading(0, 2, 5, 1, 100, 100));  // fresh fds count from zero
  auto t = next.TakeSnapshot().cpus.at(0).events;
  EXPECT_DOUBLE_EQ(t[0].count, 105);
  EXPECT_DOUBLE_EQ(t[1].count, 1);
  EXPECT_DOUBLE_EQ(t[0].enabled_seconds, 1100e-9);
}

TEST(Aggregator, GroupNeverScheduledIsFlaggedStarvedAndRecovers) {
  Aggregator agg(TwoEventPlan(), 1);
  agg.Ingest(Reading(0, 1, 10, 10, 1000, 1000));
  for (uint64_t i = 2; i <= 1 + kStarvedIntervals; ++i) {
    auto s = Reading(0, 1, 10, 10, 1000 * i, 1000);  // enabled, never running
    s.tick = i;
    agg.Ingest(s);
  }
  auto snap = agg.TakeSnapshot();
  ASSERT_EQ(snap.cpus[0].group_starved.size(), 1u);
  EXPECT_TRUE(snap.cpus[0].group_starved[0]);
  auto s = Reading(0, 1, 20, 20, 10000, 2000);
  s.tick = 10;
  agg.Ingest(s);
  EXPECT_FALSE(agg.TakeSnapshot().cpus[0].group_starved[0]);
}

struct Recorder : RoundObserver {
  void EndRound() override {}
  std::vector<IntervalRecord> records;
  std::vector<std::vector<double>> deltas;
  void OnInterval(const IntervalRecord& r) override {
    records.push_back(r);
    deltas.emplace_back(r.event_deltas.begin(), r.event_deltas.end());
  }
};

TEST(Aggregator, IntervalRecordsCarryScaledDeltasPerTick) {
  Aggregator agg(TwoEventPlan(), 1);
  Recorder rec;
  agg.AddObserver(&rec);
  auto reading = [](uint64_t tick, int64_t t, uint64_t a, uint64_t e, uint64_t r) {
    auto s = Reading(0, 1, a, a / 2, e, r);
    s.tick = tick;
    s.timestamp_ns = t;
    return s;
  };
  agg.Ingest(reading(1, 100, 100, 1000, 1000));  // first reading: no start, no record
  agg.EndRound();
  EXPECT_TRUE(rec.records.empty());
  agg.Ingest(reading(2, 200, 150, 2000, 1500));  // +50 scaled x2 = 100
  agg.EndRound();
  ASSERT_EQ(rec.records.size(), 1u);
  EXPECT_EQ(rec.records[0].start_ns, 100);
  EXPECT_EQ(rec.records[0].end_ns, 200);
  EXPECT_DOUBLE_EQ(rec.deltas[0][0], 100);
  EXPECT_DOUBLE_EQ(rec.deltas[0][1], 50);
  EXPECT_TRUE(std::isnan(rec.deltas[0][2])) << "unsupported event: unknown, not zero";
  agg.Ingest(reading(3, 300, 150, 3000, 1500));  // did not run: unknown
  agg.EndRound();
  ASSERT_EQ(rec.records.size(), 2u);
  EXPECT_TRUE(std::isnan(rec.deltas[1][0]));
}

}  // namespace
}  // namespace pmu::sampling
