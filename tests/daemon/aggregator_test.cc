#include "pmu/daemon/aggregator.h"

#include <gtest/gtest.h>

#include <prometheus/text_serializer.h>

#include <cmath>
#include <limits>
#include <sstream>

#include "pmu/daemon/exporter.h"
#include "test_support.h"

namespace pmu::daemon {
namespace {

using pmu::testing::RunCommand;
using pmu::testing::RunResult;

using collectors::GroupSample;

std::shared_ptr<collectors::EventPlan> TwoEventPlan() {
  auto plan = std::make_shared<collectors::EventPlan>();
  plan->events.resize(3);
  plan->events[0].name = "a";
  plan->events[0].supported = true;
  plan->events[0].group = 0;
  plan->events[1].name = "b";
  plan->events[1].supported = true;
  plan->events[1].group = 0;
  plan->events[2].name = "hw";
  plan->events[2].supported = false;
  plan->groups.push_back({"g", {0, 1}});
  return plan;
}

GroupSample Reading(int cpu, uint32_t gen, uint64_t a, uint64_t b, uint64_t enabled,
                    uint64_t running) {
  GroupSample s;
  s.cpu = cpu;
  s.generation = gen;
  s.count = 2;
  s.values[0] = a;
  s.values[1] = b;
  s.time_enabled = enabled;
  s.time_running = running;
  return s;
}

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
  std::string text = SerializeText(BuildFamilies(agg.TakeSnapshot()));
  EXPECT_NE(text.find("pmu_event_group_starved{cpu=\"0\",group=\"g\"} 0"), std::string::npos);
}

struct Recorder : IntervalObserver {
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

// Our text writer against prometheus-cpp's TextSerializer as the reference:
// the same lines, label escaping and special values included (number
// formatting may differ in spelling, not in value).
TEST(Exporter, TextWriterAgreesWithPrometheusCppAndEscapesHelp) {
  using prometheus::ClientMetric;
  using prometheus::MetricFamily;
  std::vector<MetricFamily> families(3);
  families[0].name = "a_total";
  families[0].help = "help with \\ backslash\nand newline";
  families[0].type = prometheus::MetricType::Counter;
  ClientMetric c;
  c.label = {{"cpu", "0"}, {"event", "quote\" back\\ nl\n"}};
  c.counter.value = 1234567890123.0;
  families[0].metric.push_back(c);
  c.label = {};
  c.counter.value = 0.1;
  families[0].metric.push_back(c);
  families[1].name = "g";
  families[1].help = "gauge";
  families[1].type = prometheus::MetricType::Gauge;
  ClientMetric g;
  g.label = {{"k", "nan"}};
  g.gauge.value = std::numeric_limits<double>::quiet_NaN();
  families[1].metric.push_back(g);
  g.label = {{"k", "inf"}};
  g.gauge.value = -std::numeric_limits<double>::infinity();
  families[1].metric.push_back(g);
  families[2].name = "h";
  families[2].help = "histogram";
  families[2].type = prometheus::MetricType::Histogram;
  ClientMetric h;
  h.label = {{"cpu", "1"}};
  h.histogram.sample_count = 3;
  h.histogram.sample_sum = 2.5;
  h.histogram.bucket = {{1, 0.25}, {2, 1}, {3, std::numeric_limits<double>::infinity()}};
  families[2].metric.push_back(h);

  std::ostringstream reference;
  prometheus::TextSerializer().Serialize(reference, families);
  // Sample lines as key -> value (prometheus-cpp orders a histogram's lines
  // differently and spells NaN "Nan"; values must agree exactly).
  auto samples = [](const std::string& text) {
    std::map<std::string, double> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
      // Skips comments and the stray second half of prometheus-cpp's HELP.
      if (line.empty() || line[0] == '#' || line.rfind("and ", 0) == 0) continue;
      const size_t sp = line.rfind(' ');
      out[line.substr(0, sp)] = std::strtod(line.c_str() + sp + 1, nullptr);
    }
    return out;
  };
  const std::string ours_text = SerializeText(families);
  const auto ours = samples(ours_text);
  const auto theirs = samples(reference.str());
  ASSERT_EQ(ours.size(), 9u) << ours_text;
  ASSERT_EQ(ours.size(), theirs.size()) << ours_text << "\n---\n" << reference.str();
  for (const auto& [key, value] : theirs) {
    auto it = ours.find(key);
    ASSERT_NE(it, ours.end()) << key << " missing from:\n" << ours_text;
    if (std::isnan(value)) {
      EXPECT_TRUE(std::isnan(it->second)) << key;
    } else {
      EXPECT_EQ(it->second, value) << key;
    }
  }
  // HELP escapes backslash and newline as the text format requires
  // (prometheus-cpp 1.0.1 writes them raw, breaking the line).
  EXPECT_NE(ours_text.find("# HELP a_total help with \\\\ backslash\\nand newline\n"),
            std::string::npos)
      << ours_text;
  // Numeric label values are spelt as the Go client spells them.
  std::vector<MetricFamily> bounds(1);
  bounds[0].name = "b";
  bounds[0].help = "bounds";
  bounds[0].type = prometheus::MetricType::Histogram;
  ClientMetric bm;
  bm.histogram.bucket = {{0, 0.0002}, {0, 1e-05}, {0, 0.25}, {0, 100}, {0, 1e6}, {0, 123456}};
  bounds[0].metric.push_back(bm);
  const std::string bounds_text = SerializeText(bounds);
  for (const char* le : {"le=\"0.0002\"", "le=\"1e-05\"", "le=\"0.25\"", "le=\"100\"",
                         "le=\"1e+06\"", "le=\"123456\""}) {
    EXPECT_NE(bounds_text.find(le), std::string::npos) << le << " in\n" << bounds_text;
  }
  RunResult check = RunCommand({"promtool", "check", "metrics"}, ours_text);
  EXPECT_EQ(check.status, 0) << check.out << check.err;
}

TEST(Exporter, UnsupportedEventsAreNeverExportedAsCounts) {
  Aggregator agg(TwoEventPlan(), 1);
  agg.Ingest(Reading(0, 1, 100, 10, 1000, 1000));
  std::string text = SerializeText(BuildFamilies(agg.TakeSnapshot()));
  EXPECT_NE(text.find("pmu_event_supported{event=\"hw\"} 0"), std::string::npos) << text;
  EXPECT_NE(text.find("pmu_events_total{cpu=\"0\",event=\"a\"} 100"), std::string::npos) << text;
  EXPECT_EQ(text.find("pmu_events_total{cpu=\"0\",event=\"hw\"}"), std::string::npos) << text;
  EXPECT_NE(text.find("pmu_exporter_build_info{"), std::string::npos);
}

}  // namespace
}  // namespace pmu::daemon
