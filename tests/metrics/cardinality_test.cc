// The cardinality guard against the real exposition: for several
// configurations, a real Pipeline (fake perf fds, a fake /proc and /sys tree
// whose counters move) runs until every series has data, and the estimate
// must equal the number of series lines RenderText writes.
#include "pmu/metrics/cardinality.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "fake_perf.h"
#include "log_capture.h"
#include "pmu/metrics/derived.h"
#include "pmu/metrics/family_source.h"
#include "pmu/sampling/pipeline.h"
#include "test_support.h"

namespace pmu::metrics {
namespace {

namespace fs = std::filesystem;

// tests/data/stats/full (four CPUs, every source) plus a `possible` list.
void MakeTree(const testing::TempDir& dir) {
  fs::copy(std::string(PMU_TEST_DATA_DIR) + "/stats/full", dir.path(), fs::copy_options::recursive);
  std::ofstream(dir.path() + "/sys/devices/system/cpu/possible") << "0-3\n";
}

// /proc/stat with every CPU's user and idle ticks grown by `step`.
void WriteProcStat(const testing::TempDir& dir, uint64_t step) {
  std::ofstream out(dir.path() + "/proc/stat");
  for (int cpu = 0; cpu < 4; ++cpu) {
    out << "cpu" << cpu << " " << 1000 + 3 * step << " 0 0 " << 5000 + 7 * step << " 0 0 0 0 0 0\n";
  }
  out << "ctxt 12345\n";
}

size_t SeriesLines(const std::string& text) {
  size_t n = 0;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) n += !line.empty() && line[0] != '#';
  return n;
}

// Runs `config` until every series exists; returns (estimate, series written).
std::pair<size_t, size_t> EstimateAndActual(const config::Config& config, testing::FakePerf& perf) {
  testing::TempDir dir;
  MakeTree(dir);
  sampling::PipelineOptions options;
  options.root = dir.path();
  sampling::Pipeline pipeline(config, perf, options, nullptr);
  DerivedEngine engine(config, pipeline.plan(), pipeline.selected_cpus());
  pipeline.AddObserver(&engine);
  for (uint64_t round = 0; round < 4; ++round) {
    WriteProcStat(dir, round);
    pipeline.SampleNow();
    // A /proc/stat window closes once its time has passed (ShortWindows()).
    std::this_thread::sleep_for(std::chrono::milliseconds(110));
  }
  const auto latest = pipeline.latest();
  ExportSnapshot snapshot;
  snapshot.sampling = latest;
  snapshot.derived = engine.TakeSnapshot();
  snapshot.endpoint = EndpointStats{};
  const std::string text = RenderText(snapshot);
  const SeriesEstimate estimate =
      EstimateSeries(config, latest->plan, pipeline.selected_cpus(), &latest->kernel);
  return {estimate.total, SeriesLines(text)};
}

// `config` with its derived metrics (the built-in ones when it has none)
// over /proc/stat windows of 100 ms: the same series, within 0.5 s.
config::Config ShortWindows(config::Config config) {
  std::vector<config::DerivedSpec> derived = EffectiveDerived(config);
  for (config::DerivedSpec& spec : derived) spec.window = config::kMinStatWindow;
  config.derived = std::move(derived);
  return config;
}

TEST(Cardinality, EstimateEqualsTheSeriesWrittenForTheDefaultConfig) {
  testing::LogCapture quiet;
  testing::FakePerf perf;
  const auto [estimate, actual] = EstimateAndActual(ShortWindows(config::DefaultConfig()), perf);
  EXPECT_EQ(estimate, actual);
  EXPECT_GT(actual, 200u);
}

TEST(Cardinality, EstimateEqualsTheSeriesWrittenWithCustomDerivedAndSomeCpus) {
  testing::LogCapture quiet;
  testing::FakePerf perf;
  config::Config config = config::DefaultConfig();
  config.sampling.all_cpus = false;
  config.sampling.cpus = {1, 3};
  config.stats.schedstat = false;
  config::DerivedSpec per_cpu;
  per_cpu.name = "faults_per_switch";
  per_cpu.numerator = {"page-faults"};
  per_cpu.denominator = {"context-switches"};
  per_cpu.scope = config::DerivedScope::kCpu;
  per_cpu.buckets = {0.5, 1, 2};
  config::DerivedSpec busy;
  busy.name = "busy";
  busy.numerator = {"proc_stat/busy_seconds"};
  busy.denominator = {"proc_stat/total_seconds"};
  config.derived = std::vector<config::DerivedSpec>{per_cpu, busy};
  const auto [estimate, actual] = EstimateAndActual(ShortWindows(config), perf);
  EXPECT_EQ(estimate, actual);
}

TEST(Cardinality, EstimateEqualsTheSeriesWrittenWithGroupsUnsupportedEventsAndNoStats) {
  testing::LogCapture quiet;
  testing::FakePerf perf;
  perf.FailOpen(PERF_TYPE_HARDWARE, PERF_COUNT_HW_CPU_CYCLES, -1, ENOENT);
  config::Config config = config::DefaultConfig();
  config.stats = {false, false, false, false};
  config.derived = std::vector<config::DerivedSpec>{};
  config.events = {{"cycles", "cycles", "", 0, 0},
                   {"cs", "context-switches", "sw", 0, 0},
                   {"faults", "page-faults", "sw", 0, 0}};
  const auto [estimate, actual] = EstimateAndActual(config, perf);
  EXPECT_EQ(estimate, actual);
}

TEST(Cardinality, OverTheLimitNamesTheCountAndTheLargestFamilies) {
  testing::LogCapture quiet;
  testing::FakePerf perf;
  config::Config config = config::DefaultConfig();
  config.source = "big.toml";
  auto plan = std::make_shared<const collectors::EventPlan>(
      collectors::BuildEventPlan(config.events, perf, 0));
  std::vector<int> cpus(256);
  for (int i = 0; i < 256; ++i) cpus[static_cast<size_t>(i)] = i;
  const SeriesEstimate estimate = EstimateSeries(config, plan, cpus);
  ASSERT_FALSE(estimate.families.empty());
  // Per-CPU histograms of 10 bounds lead: 11 buckets, _sum and _count per
  // CPU (the read duration is written before cpu_busy_ratio, of equal size).
  EXPECT_EQ(estimate.families[0].first, "pmu_exporter_cpu_read_duration_seconds");
  EXPECT_EQ(estimate.families[0].second, 13u * 256);
  EXPECT_EQ(estimate.families[1].first, "pmu_derived_cpu_busy_ratio");
  EXPECT_EQ(estimate.families[1].second, 13u * 256);
  config.exporter.max_series = static_cast<int>(estimate.total) - 1;
  try {
    CheckCardinality(config, estimate);
    FAIL() << "no error for " << estimate.total << " series over " << config.exporter.max_series;
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("big.toml: this configuration would export " +
                        std::to_string(estimate.total) + " series, more than [exporter] " +
                        "max_series = " + std::to_string(config.exporter.max_series)),
              std::string::npos)
        << what;
    EXPECT_NE(what.find("Largest families: pmu_exporter_cpu_read_duration_seconds = 3328; "
                        "pmu_derived_cpu_busy_ratio = 3328; "),
              std::string::npos)
        << what;
    EXPECT_NE(what.find("raise max_series"), std::string::npos) << what;
  }
  config.exporter.max_series = static_cast<int>(estimate.total);
  EXPECT_NO_THROW(CheckCardinality(config, estimate));
}

}  // namespace
}  // namespace pmu::metrics
