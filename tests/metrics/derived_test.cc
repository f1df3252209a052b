// Tests of DerivedEngine with synthetic interval records and /proc/stat
// parses: exact histogram counts, host vs cpu scope, per_second, skips (zero
// denominator, NaN, counters going backwards), disabled metrics logged once,
// built-in defaults, reload carry-over, and promtool on the exposition.
#include "pmu/metrics/derived.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "log_capture.h"
#include "pmu/metrics/exposition.h"
#include "test_support.h"

namespace pmu::metrics {
namespace {

using config::DerivedScope;
using config::DerivedSpec;
using sampling::IntervalRecord;
using Collected = FamilyCollector::CollectedSample;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr int64_t kMs = 1'000'000;

// A plan of named events; `unsupported` ones carry a reason.
collectors::EventPlan Plan(const std::vector<std::string>& supported,
                           const std::vector<std::string>& unsupported = {}) {
  collectors::EventPlan plan;
  for (const std::string& name : supported) {
    collectors::PlannedEvent e;
    e.name = name;
    e.event = name;
    e.supported = true;
    plan.events.push_back(e);
  }
  for (const std::string& name : unsupported) {
    collectors::PlannedEvent e;
    e.name = name;
    e.event = name;
    e.unsupported_reason = "no hardware PMU";
    plan.events.push_back(e);
  }
  return plan;
}

DerivedSpec Ratio(std::string name, std::vector<std::string> numerator,
                  std::vector<std::string> denominator, std::vector<double> buckets,
                  DerivedScope scope = DerivedScope::kHost) {
  DerivedSpec spec;
  spec.name = std::move(name);
  spec.numerator = std::move(numerator);
  spec.denominator = std::move(denominator);
  spec.buckets = std::move(buckets);
  spec.scope = scope;
  return spec;
}

DerivedSpec Rate(std::string name, std::vector<std::string> numerator, DerivedScope scope) {
  DerivedSpec spec;
  spec.name = std::move(name);
  spec.numerator = std::move(numerator);
  spec.per_second = true;
  spec.scope = scope;
  return spec;
}

config::Config WithDerived(std::vector<DerivedSpec> derived) {
  config::Config config = config::DefaultConfig();
  config.derived = std::move(derived);
  return config;
}

// Delivers one record with `deltas` (indexed like the plan) lasting `ms`.
void Deliver(DerivedEngine& engine, int cpu, std::vector<double> deltas, int64_t ms = 10) {
  IntervalRecord record;
  record.cpu = cpu;
  record.start_ns = 1000 * kMs;
  record.end_ns = record.start_ns + ms * kMs;
  record.event_deltas = deltas;
  engine.OnInterval(record);
}

struct CpuPart {
  int cpu;
  std::vector<double> deltas;
  int64_t ms = 10;
};

// One complete schedule slot, as the aggregator delivers it: every CPU's
// record, then the host slot made of them.
void Slot(DerivedEngine& engine, const std::vector<CpuPart>& parts) {
  std::vector<IntervalRecord> records;
  for (const CpuPart& part : parts) {
    IntervalRecord record;
    record.cpu = part.cpu;
    record.slots = 1;
    record.start_ns = 1000 * kMs;
    record.end_ns = record.start_ns + part.ms * kMs;
    record.event_deltas = part.deltas;
    engine.OnInterval(record);
    records.push_back(record);
  }
  engine.OnHostInterval({1, records});
  engine.EndRound();
}

// The engine's families as the exposition would write them now.
FamilyCollector Collect(const DerivedEngine& engine) {
  ExportSnapshot snapshot;
  snapshot.derived = engine.TakeSnapshot();
  FamilyCollector out;
  DerivedFamilies()->Write(snapshot, out);
  return out;
}

std::string Text(const DerivedEngine& engine) {
  ExportSnapshot snapshot;
  snapshot.derived = engine.TakeSnapshot();
  std::string text;
  TextWriter writer(text);
  DerivedFamilies()->Write(snapshot, writer);
  return text;
}

// The sample of family `name` whose labels are exactly `labels`.
const Collected* Sample(const FamilyCollector& families, const std::string& name,
                        const std::map<std::string, std::string>& labels = {}) {
  return families.Find(name, labels);
}

// Non-cumulative counts per bucket, +Inf last.
std::vector<uint64_t> BucketCounts(const Collected& m) {
  const auto counts = m.histogram->counts();
  return {counts.begin(), counts.end()};
}

double Skipped(const FamilyCollector& families, const std::string& name) {
  return families.Value("pmu_exporter_derived_skipped_total", {{"name", name}}).value_or(-1);
}

// ---------------------------------------------------------------------------

TEST(DerivedEngineTest, CpuScopeHistogramCountsEveryIntervalExactly) {
  const auto plan = Plan({"inst", "cyc"});
  DerivedEngine engine(
      WithDerived({Ratio("ipc", {"inst"}, {"cyc"}, {0.5, 1, 2}, DerivedScope::kCpu)}), plan,
      {0, 1});
  // cpu 0: 0.25 and 0.5 (on a bound: le="0.5"), 0.75, 3 (+Inf); cpu 1: 1.5.
  Deliver(engine, 0, {25, 100});
  Deliver(engine, 0, {50, 100});
  Deliver(engine, 0, {75, 100});
  Deliver(engine, 0, {300, 100});
  Deliver(engine, 1, {150, 100});
  const auto families = Collect(engine);

  const Collected* cpu0 = Sample(families, "pmu_derived_ipc", {{"cpu", "0"}});
  ASSERT_NE(cpu0, nullptr);
  EXPECT_EQ(BucketCounts(*cpu0), (std::vector<uint64_t>{2, 1, 0, 1}));
  EXPECT_EQ(cpu0->histogram->count(), 4u);
  EXPECT_DOUBLE_EQ(cpu0->histogram->sum(), 0.25 + 0.5 + 0.75 + 3);
  ASSERT_EQ(cpu0->histogram->counts().size(), 4u);  // three bounds and +Inf
  const Collected* cpu1 = Sample(families, "pmu_derived_ipc", {{"cpu", "1"}});
  ASSERT_NE(cpu1, nullptr);
  EXPECT_EQ(BucketCounts(*cpu1), (std::vector<uint64_t>{0, 0, 1, 0}));

  EXPECT_DOUBLE_EQ(Sample(families, "pmu_derived_ipc_last", {{"cpu", "0"}})->value, 3);
  EXPECT_DOUBLE_EQ(Sample(families, "pmu_derived_ipc_last", {{"cpu", "1"}})->value, 1.5);
  EXPECT_EQ(Skipped(families, "ipc"), 0);
  const auto* ipc = families.Find("pmu_derived_ipc");
  ASSERT_NE(ipc, nullptr);
  EXPECT_EQ(ipc->type, MetricType::kHistogram);
}

TEST(DerivedEngineTest, CpuScopeSeriesExistBeforeTheFirstValue) {
  const auto plan = Plan({"inst", "cyc"});
  DerivedEngine engine(WithDerived({Ratio("ipc", {"inst"}, {"cyc"}, {1}, DerivedScope::kCpu)}),
                       plan, {0, 3});
  const auto families = Collect(engine);
  ASSERT_NE(Sample(families, "pmu_derived_ipc", {{"cpu", "3"}}), nullptr);
  EXPECT_EQ(Sample(families, "pmu_derived_ipc", {{"cpu", "3"}})->histogram->count(), 0u);
  EXPECT_EQ(families.Find("pmu_derived_ipc_last"), nullptr);  // no value yet: no gauge
}

TEST(DerivedEngineTest, HostScopeSumsTheCpusOfOneSlot) {
  const auto plan = Plan({"inst", "cyc"});
  DerivedEngine engine(WithDerived({Ratio("ipc", {"inst"}, {"cyc"}, {1, 2, 3})}), plan, {0, 1});
  // Slot 1: (10 + 60) / (10 + 20) = 2.333 (the mean of the CPUs' ratios would be 2).
  Slot(engine, {{0, {10, 10}}, {1, {60, 20}}});
  engine.EndRound();  // an empty round observes nothing
  // Slot 2 (only CPU 1 sampled): 0.5.
  Slot(engine, {{1, {5, 10}}});
  // A slot the aggregator could not assemble is a skip, not a value.
  engine.OnHostIntervalIncomplete(3);
  const auto families = Collect(engine);
  const Collected* host = Sample(families, "pmu_derived_ipc");
  ASSERT_NE(host, nullptr);
  EXPECT_TRUE(host->labels.empty());
  EXPECT_EQ(host->histogram->count(), 2u);
  EXPECT_EQ(BucketCounts(*host), (std::vector<uint64_t>{1, 0, 1, 0}));
  EXPECT_DOUBLE_EQ(host->histogram->sum(), 70.0 / 30.0 + 0.5);
  EXPECT_DOUBLE_EQ(Sample(families, "pmu_derived_ipc_last")->value, 0.5);
  EXPECT_EQ(Sample(families, "pmu_derived_ipc", {{"cpu", "0"}}), nullptr);
  EXPECT_EQ(Skipped(families, "ipc"), 1);
}

TEST(DerivedEngineTest, ZeroDenominatorAndNaNAreSkippedAndCounted) {
  const auto plan = Plan({"a", "b"});
  DerivedEngine engine(WithDerived({Ratio("per_cpu", {"a"}, {"b"}, {1}, DerivedScope::kCpu),
                                    Ratio("host", {"a"}, {"b"}, {1})}),
                       plan, {0, 1});
  Slot(engine, {{0, {5, 0}}});     // zero denominator (host too)
  Slot(engine, {{0, {kNaN, 4}}});  // numerator did not run (host too)
  // Denominator did not run; Inf: the host slot contains NaN -> skipped.
  Slot(engine, {{0, {1, kNaN}}, {1, {std::numeric_limits<double>::infinity(), 1}}});
  Slot(engine, {{0, {0, 0}}, {1, {0, 0}}});  // 0 / 0 everywhere
  Slot(engine, {{1, {3, 4}}});               // per_cpu 0.75 and host 0.75

  const auto families = Collect(engine);
  EXPECT_EQ(Skipped(families, "per_cpu"), 6);  // 3 + 1 in the first slots, 2 in the fourth
  EXPECT_EQ(Skipped(families, "host"), 4);
  EXPECT_EQ(Sample(families, "pmu_derived_per_cpu", {{"cpu", "0"}})->histogram->count(), 0u);
  EXPECT_EQ(Sample(families, "pmu_derived_per_cpu", {{"cpu", "1"}})->histogram->count(), 1u);
  EXPECT_EQ(Sample(families, "pmu_derived_host")->histogram->count(), 1u);
  EXPECT_EQ(Sample(families, "pmu_derived_per_cpu_last", {{"cpu", "0"}}), nullptr);
  const std::string text = Text(engine);
  EXPECT_EQ(text.find("NaN"), std::string::npos) << text;
  EXPECT_EQ(text.find("Inf\n"), std::string::npos) << text;  // +Inf only as a le label
}

TEST(DerivedEngineTest, PerSecondDividesByTheIntervalsDuration) {
  const auto plan = Plan({"cs"});
  DerivedEngine engine(WithDerived({Rate("cs_cpu", {"cs"}, DerivedScope::kCpu),
                                    Rate("cs_host", {"cs"}, DerivedScope::kHost)}),
                       plan, {0, 1});
  // Each CPU's own rate over its own interval: cpu 0 100 in 100 ms
  // (1000/s), cpu 1 50 in 125 ms (400/s): the host rate is 1400/s.
  Slot(engine, {{0, {100}, 100}, {1, {50}, 125}});
  Deliver(engine, 0, {100}, 100);
  Slot(engine, {{1, {7}, 0}});  // zero duration: skipped
  const auto families = Collect(engine);
  EXPECT_DOUBLE_EQ(Sample(families, "pmu_derived_cs_host_last")->value, 1400);
  EXPECT_EQ(Sample(families, "pmu_derived_cs_host")->histogram->count(), 1u);
  EXPECT_DOUBLE_EQ(Sample(families, "pmu_derived_cs_cpu_last", {{"cpu", "0"}})->value, 1000);
  EXPECT_EQ(Sample(families, "pmu_derived_cs_cpu", {{"cpu", "0"}})->histogram->count(), 2u);
  EXPECT_EQ(Skipped(families, "cs_cpu"), 1);
  EXPECT_EQ(Skipped(families, "cs_host"), 1);
  // Default per-second buckets: 1-2-5 steps from 1 to 1e6.
  const auto& bounds = Sample(families, "pmu_derived_cs_host")->histogram->bounds();
  ASSERT_EQ(bounds.size(), 19u);
  EXPECT_EQ(bounds.front(), 1);
  EXPECT_EQ(bounds[1], 2);
  EXPECT_EQ(bounds[18], 1e6);
}

TEST(DerivedEngineTest, SumsOfEventsInNumeratorAndDenominator) {
  const auto plan = Plan({"l1", "l2", "x", "y"});
  DerivedEngine engine(
      WithDerived({Ratio("sum", {"l1", "l2"}, {"x", "y"}, {0.5, 1}, DerivedScope::kCpu)}), plan,
      {0});
  Deliver(engine, 0, {1, 2, 3, 3});
  EXPECT_DOUBLE_EQ(Sample(Collect(engine), "pmu_derived_sum_last", {{"cpu", "0"}})->value, 0.5);
}

collectors::CpuTimes Times(int cpu, uint64_t user, uint64_t system, uint64_t idle,
                           uint64_t guest = 0) {
  collectors::CpuTimes t;
  t.cpu = cpu;
  t.ticks[static_cast<size_t>(collectors::CpuMode::kUser)] = user;
  t.ticks[static_cast<size_t>(collectors::CpuMode::kSystem)] = system;
  t.ticks[static_cast<size_t>(collectors::CpuMode::kIdle)] = idle;
  t.ticks[static_cast<size_t>(collectors::CpuMode::kGuest)] = guest;
  for (size_t i = 0; i < collectors::kCpuModeCount; ++i) {
    t.seconds[i] = static_cast<double>(t.ticks[i]) / 100.0;
  }
  return t;
}

collectors::ProcStat Stat(std::vector<collectors::CpuTimes> cpus) {
  collectors::ProcStat stat;
  stat.present = true;
  stat.cpus = std::move(cpus);
  return stat;
}

TEST(DerivedEngineTest, BusyRatioFromProcStatOverWindowsOfTenTicks) {
  const auto plan = Plan({"context-switches"});
  config::Config config = WithDerived(
      {Ratio("busy", {"proc_stat/busy_seconds"}, {"proc_stat/total_seconds"}, {0.5, 1},
             DerivedScope::kCpu),
       Ratio("busy_host", {"proc_stat/busy_seconds"}, {"proc_stat/total_seconds"}, {0.5, 1}),
       Rate("busy_cpus", {"proc_stat/busy_seconds"}, DerivedScope::kHost)});
  for (config::DerivedSpec& spec : *config.derived) spec.window = std::chrono::milliseconds(100);
  DerivedEngine engine(config, plan, {0, 1});
  EXPECT_TRUE(engine.NeedsProcStat());
  EXPECT_EQ(engine.ProcStatPeriod(), std::chrono::milliseconds(100));
  engine.OnProcStat(Stat({Times(0, 100, 100, 100, 50), Times(1, 100, 100, 100), Times(5, 0, 0, 0)}),
                    0);
  // cpu 0: user +3 (of which guest +2: not added again), idle +1: 4 ticks,
  // too few for a value. cpu 1: 10 idle ticks: 0. cpu 5 is not selected.
  engine.OnProcStat(Stat({Times(0, 103, 100, 101, 52), Times(1, 100, 100, 110), Times(5, 9, 0, 0)}),
                    100 * kMs);
  // cpu 0: 6 more busy ticks close its window at 9/10. cpu 1's idle goes
  // backwards (NO_HZ): skipped, its window starts again.
  engine.OnProcStat(Stat({Times(0, 109, 100, 101, 52), Times(1, 100, 100, 109)}), 200 * kMs);
  engine.OnProcStat(Stat({Times(0, 109, 100, 101, 52), Times(1, 100, 100, 119)}), 300 * kMs);
  engine.OnProcStat(Stat({Times(0, 119, 100, 101, 52), Times(1, 100, 100, 129)}), 400 * kMs);
  const auto families = Collect(engine);
  const Collected* cpu0 = Sample(families, "pmu_derived_busy", {{"cpu", "0"}});
  ASSERT_NE(cpu0, nullptr);
  EXPECT_EQ(BucketCounts(*cpu0), (std::vector<uint64_t>{0, 2, 0}));
  EXPECT_DOUBLE_EQ(cpu0->histogram->sum(), 0.9 + 1.0);
  EXPECT_EQ(BucketCounts(*Sample(families, "pmu_derived_busy", {{"cpu", "1"}})),
            (std::vector<uint64_t>{3, 0, 0}));
  EXPECT_EQ(Sample(families, "pmu_derived_busy", {{"cpu", "5"}}), nullptr);
  EXPECT_EQ(Skipped(families, "busy"), 1);
  // Host (20 ticks for two CPUs): its window opened before cpu 1 stepped
  // back, so nothing went backwards there: 9 busy of 29 ticks, then 10 of 20.
  const Collected* host = Sample(families, "pmu_derived_busy_host");
  EXPECT_EQ(host->histogram->count(), 2u);
  EXPECT_DOUBLE_EQ(host->histogram->sum(), 9.0 / 29.0 + 0.5);
  EXPECT_EQ(Skipped(families, "busy_host"), 0);
  // Busy CPUs (busy seconds per second; idle going backwards does not touch
  // busy time): 0.09 s in the 0.3 s until the window held 20 ticks, then
  // 0.1 s in 0.1 s.
  const Collected* busy_cpus = Sample(families, "pmu_derived_busy_cpus");
  EXPECT_EQ(busy_cpus->histogram->count(), 2u);
  EXPECT_NEAR(busy_cpus->histogram->sum(), 0.3 + 1.0, 1e-12);
  EXPECT_NEAR(Sample(families, "pmu_derived_busy_cpus_last")->value, 1.0, 1e-12);
}

// The default window: one value a second, each to 0.01, from readings
// every 100 ms (where a 10 ms [[derived]] window asks for them) or every
// second; a reading a little early (a tenth of the reading period) closes a
// window too.
TEST(DerivedEngineTest, ProcStatWindowsLastASecondByDefault) {
  const auto plan = Plan({"context-switches"});
  config::Config config = config::DefaultConfig();
  config.derived = BuiltInDerived(config.events);
  const auto busy_spec =
      std::find_if(config.derived->begin(), config.derived->end(),
                   [](const config::DerivedSpec& d) { return d.name == "cpu_busy_ratio"; });
  ASSERT_NE(busy_spec, config.derived->end());
  config::DerivedSpec fine = *busy_spec;
  EXPECT_EQ(fine.window, std::chrono::seconds(1));
  fine.name = "busy_fine";
  fine.window = std::chrono::milliseconds(100);
  config.derived->push_back(fine);
  DerivedEngine engine(config, plan, {0});
  EXPECT_EQ(engine.ProcStatPeriod(), std::chrono::milliseconds(100));
  DerivedEngine alone(config::DefaultConfig(), plan, {0});
  EXPECT_EQ(alone.ProcStatPeriod(), std::chrono::seconds(1));
  // 7 busy ticks of 10 every 100 ms; readings at 0, 100, ..., 2900 ms and
  // one at 2995 ms.
  std::vector<int64_t> at;
  for (int64_t ms = 0; ms <= 2900; ms += 100) at.push_back(ms);
  at.push_back(2995);
  uint64_t busy = 0;
  for (int64_t ms : at) {
    const uint64_t ticks = static_cast<uint64_t>(ms) / 10;
    busy = ticks * 7 / 10;
    const collectors::ProcStat stat = Stat({Times(0, busy, 0, ticks - busy)});
    engine.OnProcStat(stat, ms * kMs);
    alone.OnProcStat(stat, ms * kMs);
  }
  const auto families = Collect(engine);
  const Collected* cpu0 = Sample(families, "pmu_derived_cpu_busy_ratio", {{"cpu", "0"}});
  ASSERT_NE(cpu0, nullptr);
  // Closed at 1 s, 2 s and 2.995 s (within 10 ms of 3 s).
  EXPECT_EQ(cpu0->histogram->count(), 3u);
  EXPECT_NEAR(cpu0->histogram->sum(), 3 * 0.7, 0.02);
  EXPECT_EQ(Sample(families, "pmu_derived_busy_fine", {{"cpu", "0"}})->histogram->count(), 29u);
  const Collected* coarse = Sample(Collect(alone), "pmu_derived_cpu_busy_ratio", {{"cpu", "0"}});
  EXPECT_EQ(coarse->histogram->count(), 3u);
}

TEST(DerivedEngineTest, ProcStatUnreadableIsLoggedOnce) {
  testing::LogCapture log;
  DerivedEngine engine(config::DefaultConfig(), Plan({"context-switches"}), {0});
  collectors::ProcStat missing;
  engine.OnProcStat(missing, 0);
  engine.OnProcStat(missing, 10 * kMs);
  size_t lines = 0;
  for (const std::string& line : log.Lines()) lines += line.find("/proc/stat") != std::string::npos;
  EXPECT_EQ(lines, 1u);
}

TEST(DerivedEngineTest, UnsupportedInputDisablesWithOneLogLine) {
  testing::LogCapture log;
  const auto plan = Plan({"instructions", "cs"}, {"cycles"});
  DerivedEngine engine(WithDerived({Ratio("ipc", {"instructions"}, {"cycles"}, {}),
                                    Rate("cs", {"cs"}, DerivedScope::kHost)}),
                       plan, {0});
  EXPECT_EQ(engine.EnabledMetrics(), std::vector<std::string>{"cs"});
  EXPECT_FALSE(engine.NeedsProcStat());
  const std::vector<std::string> lines = log.Lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0],
            "warning|derived metric ipc disabled: event 'cycles' cannot be counted on this host "
            "(no hardware PMU)");
  Deliver(engine, 0, {1, kNaN, 1});
  const auto families = Collect(engine);
  EXPECT_EQ(families.Find("pmu_derived_ipc"), nullptr);
  EXPECT_EQ(Skipped(families, "ipc"), -1);  // no series at all
}

TEST(DerivedEngineTest, BuiltInDefaults) {
  // The default event list: no cache-references or branches, so the miss
  // ratios are per instruction.
  const std::vector<DerivedSpec> specs = BuiltInDerived(config::DefaultConfig().events);
  std::map<std::string, DerivedSpec> by_name;
  for (const DerivedSpec& s : specs) by_name[s.name] = s;
  ASSERT_EQ(by_name.size(), 5u);
  EXPECT_EQ(by_name["ipc"].numerator, std::vector<std::string>{"instructions"});
  EXPECT_EQ(by_name["ipc"].denominator, std::vector<std::string>{"cycles"});
  EXPECT_EQ(by_name["cache_miss_ratio"].denominator, std::vector<std::string>{"instructions"});
  EXPECT_EQ(by_name["branch_miss_ratio"].denominator, std::vector<std::string>{"instructions"});
  EXPECT_EQ(by_name["cpu_busy_ratio"].scope, DerivedScope::kCpu);
  EXPECT_TRUE(by_name["context_switches_per_second"].per_second);
  for (const DerivedSpec& s : specs) EXPECT_FALSE(s.buckets.empty()) << s.name;

  std::vector<config::EventSpec> events = config::DefaultConfig().events;
  events.push_back({"cache-references", "cache-references", ""});
  events.push_back({"branches", "branches", ""});
  for (const DerivedSpec& s : BuiltInDerived(events)) {
    if (s.name == "cache_miss_ratio") {
      EXPECT_EQ(s.denominator, std::vector<std::string>{"cache-references"});
    }
    if (s.name == "branch_miss_ratio") {
      EXPECT_EQ(s.denominator, std::vector<std::string>{"branches"});
    }
  }
  // Only cpu_busy_ratio needs no configured event.
  const std::vector<DerivedSpec> bare = BuiltInDerived({{"page-faults", "page-faults", ""}});
  ASSERT_EQ(bare.size(), 1u);
  EXPECT_EQ(bare[0].name, "cpu_busy_ratio");

  // On a host without a PMU (hardware events unsupported) the hardware
  // ratios are disabled, one INFO line each.
  testing::LogCapture log;
  DerivedEngine engine(config::DefaultConfig(),
                       Plan({"cpu-clock", "context-switches", "cpu-migrations", "page-faults"},
                            {"cycles", "instructions", "cache-misses", "branch-misses"}),
                       {0, 1});
  EXPECT_EQ(engine.EnabledMetrics(),
            (std::vector<std::string>{"cpu_busy_ratio", "context_switches_per_second"}));
  EXPECT_TRUE(engine.NeedsProcStat());
  const std::vector<std::string> lines = log.Lines();
  ASSERT_EQ(lines.size(), 3u);
  for (const std::string& line : lines)
    EXPECT_EQ(line.rfind("info|derived metric ", 0), 0u) << line;
}

TEST(DerivedEngineTest, DerivedEmptyListMeansNone) {
  DerivedEngine engine(WithDerived({}), Plan({"context-switches"}), {0});
  EXPECT_TRUE(engine.EnabledMetrics().empty());
  EXPECT_TRUE(Collect(engine).families().empty());
}

TEST(DerivedEngineTest, PromtoolAcceptsTheFamilies) {
  if (!testing::HaveTool("promtool")) GTEST_SKIP() << "needs promtool (Debian package prometheus)";
  const auto plan = Plan({"cycles", "instructions", "cache-misses", "branch-misses", "cpu-clock",
                          "context-switches", "cpu-migrations", "page-faults"});
  DerivedEngine engine(config::DefaultConfig(), plan, {0, 1});
  for (int round = 0; round < 5; ++round) {
    const std::vector<double> deltas{1000, 1500.0 * round, 3, 7, 1e7, 40, 1, 2};
    Slot(engine, {{0, deltas}, {1, deltas}});
    engine.OnProcStat(Stat({Times(0, 10u * static_cast<uint64_t>(round), 0, 5),
                            Times(1, 0, 0, 10u * static_cast<uint64_t>(round))}),
                      round * 10 * kMs);
  }
  const std::string text = Text(engine);
  for (const char* name :
       {"pmu_derived_ipc_bucket", "pmu_derived_cache_miss_ratio_bucket",
        "pmu_derived_branch_miss_ratio_bucket", "pmu_derived_cpu_busy_ratio_bucket{cpu=\"1\"",
        "pmu_derived_context_switches_per_second_last",
        "pmu_exporter_derived_skipped_total{name=\"ipc\"}"}) {
    EXPECT_NE(text.find(name), std::string::npos) << name << " missing from\n" << text;
  }
  // Bounds print as written, not as binary approximations.
  EXPECT_NE(text.find("le=\"0.0002\""), std::string::npos) << text;
  EXPECT_NE(text.find("le=\"0.3\""), std::string::npos) << text;
  const testing::RunResult r = testing::RunCommand({"promtool", "check", "metrics"}, text);
  EXPECT_EQ(r.status, 0) << r.out << r.err << text;
  EXPECT_EQ(r.out + r.err, "");
}

TEST(DerivedEngineTest, CollectRunsConcurrentlyWithDeliveries) {
  const auto plan = Plan({"a", "b"});
  DerivedEngine engine(WithDerived({Ratio("r", {"a"}, {"b"}, {1}, DerivedScope::kCpu),
                                    Ratio("h", {"a"}, {"b"}, {1})}),
                       plan, {0, 1});
  constexpr int kRounds = 5000;
  std::thread aggregator([&engine] {
    for (int i = 0; i < kRounds; ++i) {
      Slot(engine, {{i % 2, {1, 2}}});
    }
  });
  uint64_t seen = 0;
  for (int i = 0; i < 200; ++i) {
    const auto families = Collect(engine);
    const Collected* h = Sample(families, "pmu_derived_h");
    if (h == nullptr) {
      ADD_FAILURE() << "no pmu_derived_h";  // and still join the thread
      break;
    }
    EXPECT_GE(h->histogram->count(), seen);  // never goes back
    seen = h->histogram->count();
  }
  aggregator.join();
  const auto families = Collect(engine);
  EXPECT_EQ(Sample(families, "pmu_derived_h")->histogram->count(), uint64_t{kRounds});
  EXPECT_EQ(Sample(families, "pmu_derived_r", {{"cpu", "1"}})->histogram->count(),
            uint64_t{kRounds / 2});
}

TEST(DerivedEngineTest, AReloadContinuesTheHistogramsOfUnchangedMetrics) {
  const auto plan = Plan({"a", "b"});
  const config::Config first = WithDerived(
      {Ratio("kept", {"a"}, {"b"}, {1}, DerivedScope::kCpu), Ratio("changed", {"a"}, {"b"}, {1})});
  DerivedEngine before(first, plan, {0});
  Slot(before, {{0, {1, 2}}});
  Slot(before, {{0, {3, 0}}});  // skipped: zero denominator (both metrics)
  // "changed" gets other buckets: a new metric that starts from zero.
  const config::Config second = WithDerived({Ratio("kept", {"a"}, {"b"}, {1}, DerivedScope::kCpu),
                                             Ratio("changed", {"a"}, {"b"}, {1, 2})});
  DerivedEngine after(second, plan, {0}, &before);
  Slot(after, {{0, {2, 2}}});
  const auto families = Collect(after);
  EXPECT_EQ(Sample(families, "pmu_derived_kept", {{"cpu", "0"}})->histogram->count(), 2u);
  EXPECT_EQ(Skipped(families, "kept"), 1);
  EXPECT_DOUBLE_EQ(Sample(families, "pmu_derived_kept_last", {{"cpu", "0"}})->value, 1);
  EXPECT_EQ(Sample(families, "pmu_derived_changed")->histogram->count(), 1u);
  EXPECT_EQ(Skipped(families, "changed"), 0) << "a changed definition starts from zero";
}

}  // namespace
}  // namespace pmu::metrics
