// Aggregator against scripted readings: multiplex scaling, exact integers,
// fd generations, stale and backwards readings, starved groups, per-CPU
// interval records and host slots assembled only from complete ticks.
#include "pmu/sampling/aggregator.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "plans.h"
#include "pmu/sampling/interval.h"

namespace pmu::sampling {
namespace {

using collectors::GroupSample;
using testing::Reading;
using testing::TwoEventPlan;

TEST(Aggregator, ScalesEachIntervalByItsOwnEnabledOverRunning) {
  Aggregator agg(TwoEventPlan(), 2);
  agg.Ingest(Reading(0, 1, 100, 10, 1000, 1000));  // ratio 1: +100
  agg.Ingest(Reading(0, 1, 150, 20, 2000, 1500));  // +50 * 1000/500 = +100
  agg.Ingest(Reading(0, 1, 250, 30, 3000, 2500));  // ratio 1: +100
  auto snap = agg.TakeSnapshot();
  ASSERT_EQ(snap.cpus.size(), 1u);
  EXPECT_DOUBLE_EQ(snap.cpus[0].events[0].count(), 300);
  EXPECT_EQ(snap.cpus[0].events[0].exact, 200u) << "only the multiplexed interval is scaled";
  EXPECT_DOUBLE_EQ(snap.cpus[0].events[0].scaled, 100);
  EXPECT_DOUBLE_EQ(snap.cpus[0].events[1].count(), 40);
  EXPECT_EQ(snap.cpus[0].events[0].enabled_ns, 3000u);
  EXPECT_EQ(snap.cpus[0].events[0].running_ns, 2500u);
  EXPECT_DOUBLE_EQ(snap.cpus[0].events[0].last_running_ratio, 1.0);
}

TEST(Aggregator, UnscaledCountsStayExactIntegers) {
  // task-clock read 1000912513.9999999 when every interval was scaled by an
  // enabled/running ratio of exactly 1 in floating point.
  Aggregator agg(TwoEventPlan(), 1);
  uint64_t value = 0;
  uint64_t time = 0;
  for (int i = 0; i < 1000; ++i) {
    value += 1000912513 / 1000 + static_cast<uint64_t>(i % 7);
    time += 100'000'003;
    agg.Ingest(Reading(0, 1, value, value, time, time));
  }
  const EventTotals t = agg.TakeSnapshot().cpus[0].events[0];
  EXPECT_EQ(t.scaled, 0.0);
  EXPECT_EQ(t.exact, value);
  EXPECT_EQ(t.count(), static_cast<double>(value));
}

TEST(Aggregator, IntervalWithZeroRunningCarriesItsCountToTheNextOne) {
  Aggregator agg(TwoEventPlan(), 1);
  agg.Ingest(Reading(0, 1, 100, 0, 1000, 1000));
  agg.Ingest(Reading(0, 1, 100, 0, 2000, 1000));  // enabled but never scheduled
  auto t = agg.TakeSnapshot().cpus[0].events[0];
  EXPECT_DOUBLE_EQ(t.count(), 100);
  EXPECT_DOUBLE_EQ(t.last_running_ratio, 0.0);
  EXPECT_EQ(t.enabled_ns, 2000u);
  EXPECT_EQ(t.running_ns, 1000u);
  // Times that did not move while the value did (an mmap page whose times
  // are stale between sched-ins): nothing is lost, the next interval with
  // running time takes the count.
  agg.Ingest(Reading(0, 1, 600, 0, 2000, 1000));
  agg.Ingest(Reading(0, 1, 1000, 0, 3000, 2000));
  EXPECT_DOUBLE_EQ(agg.TakeSnapshot().cpus[0].events[0].count(), 1000);
}

TEST(Aggregator, TotalsStayMonotonicWhenFdsAreReopened) {
  Aggregator agg(TwoEventPlan(), 1);
  agg.Ingest(Reading(0, 1, 1000, 0, 1000, 1000));
  agg.Ingest(Reading(0, 2, 10, 0, 100, 100));  // new fds count from zero again
  agg.Ingest(Reading(0, 2, 30, 0, 200, 200));
  EXPECT_DOUBLE_EQ(agg.TakeSnapshot().cpus[0].events[0].count(), 1030);
}

TEST(Aggregator, BackwardsReadingOnTheSameFdResynchronisesAndAddsNothing) {
  // Before: a lower reading on the same generation was taken for a new fd
  // and its whole count added again (200000 exported for a true 100500).
  Aggregator agg(TwoEventPlan(), 1);
  agg.Ingest(Reading(0, 1, 100000, 0, 1000, 1000));
  agg.Ingest(Reading(0, 1, 100500, 0, 2000, 2000));
  agg.Ingest(Reading(0, 1, 99500, 0, 3000, 3000));  // backwards: resync
  EXPECT_DOUBLE_EQ(agg.TakeSnapshot().cpus[0].events[0].count(), 100500);
  agg.Ingest(Reading(0, 1, 100000, 0, 4000, 4000));  // +500 from the new baseline
  const CpuTotals cpu = agg.TakeSnapshot().cpus[0];
  EXPECT_DOUBLE_EQ(cpu.events[0].count(), 101000);
  EXPECT_EQ(cpu.resyncs, 1u);
}

TEST(Aggregator, OlderReadingsAreStaleAndDropped) {
  Aggregator agg(TwoEventPlan(), 1);
  GroupSample newer = Reading(0, 1, 2000, 0, 2000, 2000);
  GroupSample older = Reading(0, 1, 1000, 0, 1000, 1000);
  std::swap(newer.seq, older.seq);  // `older` really came first
  agg.Ingest(newer);
  agg.Ingest(older);  // arrives late, from another ring
  GroupSample old_generation = Reading(0, 0, 5, 0, 5, 5);
  agg.Ingest(old_generation);
  const CpuTotals cpu = agg.TakeSnapshot().cpus[0];
  EXPECT_DOUBLE_EQ(cpu.events[0].count(), 2000);
  EXPECT_EQ(cpu.stale, 2u);
  EXPECT_EQ(cpu.resyncs, 0u);
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
  old_agg.Ingest(Reading(0, 1, 90, 10, 1000, 1000));  // a resync, carried over too
  auto next_plan = TwoEventPlan();
  next_plan->events[1].attr.config = 8;  // same name, different event: starts over
  Aggregator next(next_plan, 1);
  next.Seed(old_agg.TakeSnapshot());
  next.Ingest(Reading(0, 2, 5, 1, 100, 100));  // fresh fds count from zero
  const CpuTotals cpu = next.TakeSnapshot().cpus.at(0);
  EXPECT_DOUBLE_EQ(cpu.events[0].count(), 105);
  EXPECT_DOUBLE_EQ(cpu.events[1].count(), 1);
  EXPECT_EQ(cpu.events[0].enabled_ns, 1100u);
  EXPECT_EQ(cpu.group_samples, 3u);
  EXPECT_EQ(cpu.resyncs, 1u);
}

TEST(Aggregator, GroupNeverScheduledIsFlaggedStarvedAndRecovers) {
  Aggregator agg(TwoEventPlan(), 1);
  agg.Ingest(Reading(0, 1, 10, 10, 1000, 1000));
  for (uint64_t i = 2; i <= 1 + kStarvedIntervals; ++i) {
    agg.Ingest(Reading(0, 1, 10, 10, 1000 * i, 1000));  // enabled, never running
  }
  auto snap = agg.TakeSnapshot();
  ASSERT_EQ(snap.cpus[0].group_starved.size(), 1u);
  EXPECT_TRUE(snap.cpus[0].group_starved[0]);
  agg.Ingest(Reading(0, 1, 20, 20, 10000, 2000));
  EXPECT_FALSE(agg.TakeSnapshot().cpus[0].group_starved[0]);
}

struct Recorder : RoundObserver {
  std::vector<IntervalRecord> records;
  std::vector<std::vector<double>> deltas;
  struct Host {
    uint64_t tick;
    std::vector<int> cpus;
    std::vector<int64_t> durations;
    double first_delta;
  };
  std::vector<Host> hosts;
  std::vector<uint64_t> incomplete;
  void OnInterval(const IntervalRecord& r) override {
    records.push_back(r);
    deltas.emplace_back(r.event_deltas.begin(), r.event_deltas.end());
  }
  void OnHostInterval(const HostInterval& h) override {
    Host host{h.tick, {}, {}, 0};
    for (const IntervalRecord& r : h.cpus) {
      host.cpus.push_back(r.cpu);
      host.durations.push_back(r.end_ns - r.start_ns);
      host.first_delta += r.event_deltas[0];
    }
    hosts.push_back(host);
  }
  void OnHostIntervalIncomplete(uint64_t tick) override { incomplete.push_back(tick); }
  void EndRound() override {}
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
  EXPECT_EQ(rec.records[0].slots, 1u);
  EXPECT_DOUBLE_EQ(rec.deltas[0][0], 100);
  EXPECT_DOUBLE_EQ(rec.deltas[0][1], 50);
  EXPECT_TRUE(std::isnan(rec.deltas[0][2])) << "unsupported event: unknown, not zero";
  agg.Ingest(reading(3, 300, 150, 3000, 1500));  // did not run: unknown
  agg.EndRound();
  ASSERT_EQ(rec.records.size(), 2u);
  EXPECT_TRUE(std::isnan(rec.deltas[1][0]));
}

// Two groups per tick, for ticks split across drains.
std::shared_ptr<collectors::EventPlan> TwoGroupPlan() {
  auto plan = std::make_shared<collectors::EventPlan>();
  plan->events.resize(2);
  plan->events[0].name = "a";
  plan->events[0].supported = true;
  plan->events[0].group = 0;
  plan->events[1].name = "b";
  plan->events[1].supported = true;
  plan->events[1].group = 1;
  plan->groups = {{"a", {0}}, {"b", {1}}};
  return plan;
}

GroupSample TickOf(int cpu, uint32_t group, uint64_t tick, uint64_t value, int64_t ns) {
  GroupSample s;
  s.cpu = cpu;
  s.group = group;
  s.generation = 1;
  s.seq = tick;
  s.tick = tick;
  s.groups_in_tick = 2;
  s.count = 1;
  s.values[0] = value;
  s.time_enabled = static_cast<uint64_t>(ns);
  s.time_running = static_cast<uint64_t>(ns);
  s.timestamp_ns = ns;
  return s;
}

TEST(Aggregator, HostSlotsAreBuiltOnlyFromCompleteTicksOfEveryCpu) {
  Aggregator agg(TwoGroupPlan(), 2);
  Recorder rec;
  agg.AddObserver(&rec);
  agg.SetCpuActive(0, true, 0);
  agg.SetCpuActive(1, true, 0);
  constexpr int64_t kMs = 1'000'000;
  // Slot 1 primes both CPUs (no interval yet).
  for (int cpu : {0, 1}) {
    for (uint32_t g : {0u, 1u}) agg.Ingest(TickOf(cpu, g, 1, 0, 100 * kMs));
  }
  agg.EndRound();
  // Slot 2: CPU 0's tick is split across two drains (before: a host value
  // with a duration of microseconds and a whole interval's deltas).
  agg.Ingest(TickOf(0, 0, 2, 1000, 200 * kMs));
  agg.Ingest(TickOf(1, 0, 2, 3000, 201 * kMs));
  agg.Ingest(TickOf(1, 1, 2, 3000, 201 * kMs));
  agg.EndRound();
  EXPECT_TRUE(rec.hosts.empty()) << "slot 2 is not complete before CPU 0's second group";
  agg.Ingest(TickOf(0, 1, 2, 1000, 200 * kMs));
  agg.EndRound();
  ASSERT_EQ(rec.hosts.size(), 1u);
  EXPECT_EQ(rec.hosts[0].tick, 2u);
  EXPECT_EQ(rec.hosts[0].cpus, (std::vector<int>{0, 1}));
  EXPECT_EQ(rec.hosts[0].durations, (std::vector<int64_t>{100 * kMs, 101 * kMs}));
  EXPECT_DOUBLE_EQ(rec.hosts[0].first_delta, 4000);
  // Slot 3: CPU 1 misses it (its next tick is slot 4): incomplete, not a
  // host value made of CPU 0 alone.
  for (uint32_t g : {0u, 1u}) agg.Ingest(TickOf(0, g, 3, 2000, 300 * kMs));
  for (uint32_t g : {0u, 1u}) agg.Ingest(TickOf(0, g, 4, 3000, 400 * kMs));
  for (uint32_t g : {0u, 1u}) agg.Ingest(TickOf(1, g, 4, 5000, 401 * kMs));
  agg.EndRound();
  EXPECT_EQ(rec.incomplete, (std::vector<uint64_t>{3, 4}))
      << "slot 4: CPU 1's record covers two slots";
  EXPECT_EQ(rec.hosts.size(), 1u);
  // CPU 1 goes offline: slot 5 needs CPU 0 only.
  agg.SetCpuActive(1, false, 0);
  for (uint32_t g : {0u, 1u}) agg.Ingest(TickOf(0, g, 5, 4000, 500 * kMs));
  agg.EndRound();
  ASSERT_EQ(rec.hosts.size(), 2u);
  EXPECT_EQ(rec.hosts[1].cpus, (std::vector<int>{0}));
}

}  // namespace
}  // namespace pmu::sampling
