// Tests of KernelStatsCollector against the fake trees in tests/data/stats/:
// families and labels, CPU selection, absent sources (logged once, flagged 0),
// malformed lines, monotonic totals, concurrent scrapes, promtool.
#include "pmu/daemon/stats_exporter.h"

#include <gtest/gtest.h>
#include <prometheus/text_serializer.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "test_support.h"

namespace pmu::daemon {
namespace {

using prometheus::MetricFamily;
using Labels = std::map<std::string, std::string>;

std::string Tree(const std::string& name) {
  return std::string(PMU_TEST_DATA_DIR) + "/stats/" + name;
}

constexpr config::StatsConfig kAllSources{};

// Routes the default spdlog logger into a string for the test's lifetime.
class LogCapture {
 public:
  LogCapture() : previous_(spdlog::default_logger()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(stream_);
    sink->set_pattern("%l %v");
    auto logger = std::make_shared<spdlog::logger>("capture", sink);
    logger->set_level(spdlog::level::trace);
    spdlog::set_default_logger(logger);
  }
  ~LogCapture() { spdlog::set_default_logger(previous_); }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  std::string Text() const { return stream_.str(); }
  size_t Count(const std::string& fragment) const {
    const std::string text = Text();
    size_t count = 0;
    for (size_t pos = text.find(fragment); pos != std::string::npos;
         pos = text.find(fragment, pos + 1)) {
      ++count;
    }
    return count;
  }

 private:
  std::ostringstream stream_;
  std::shared_ptr<spdlog::logger> previous_;
};

const MetricFamily* FindFamily(const std::vector<MetricFamily>& families, const std::string& name) {
  for (const MetricFamily& family : families) {
    if (family.name == name) return &family;
  }
  return nullptr;
}

// The family `name`; a test failure (and an empty family) when it is absent.
const MetricFamily& MustFind(const std::vector<MetricFamily>& families, const std::string& name) {
  static const MetricFamily kAbsent;
  const MetricFamily* family = FindFamily(families, name);
  if (family == nullptr) {
    ADD_FAILURE() << "no family " << name;
    return kAbsent;
  }
  return *family;
}

// The value of the one sample of `name` whose labels are exactly `labels`.
std::optional<double> Value(const std::vector<MetricFamily>& families, const std::string& name,
                            const Labels& labels) {
  const MetricFamily* family = FindFamily(families, name);
  if (family == nullptr) return std::nullopt;
  for (const auto& metric : family->metric) {
    Labels have;
    for (const auto& label : metric.label) have[label.name] = label.value;
    if (have != labels) continue;
    return family->type == prometheus::MetricType::Counter ? metric.counter.value
                                                           : metric.gauge.value;
  }
  return std::nullopt;
}

std::vector<std::string> CpuLabels(const std::vector<MetricFamily>& families,
                                   const std::string& name) {
  std::vector<std::string> cpus;
  const MetricFamily* family = FindFamily(families, name);
  if (family == nullptr) return cpus;
  for (const auto& metric : family->metric) {
    for (const auto& label : metric.label) {
      if (label.name == "cpu" && (cpus.empty() || cpus.back() != label.value)) {
        cpus.push_back(label.value);
      }
    }
  }
  return cpus;
}

std::string Serialize(const std::vector<MetricFamily>& families) {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

void WriteFile(const std::string& root, const std::string& relative, const std::string& text) {
  const std::filesystem::path path = std::filesystem::path(root) / relative;
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

TEST(KernelStatsCollector, FullTreeFamiliesAndValues) {
  LogCapture log;
  const KernelStatsCollector collector(kAllSources, Tree("full"), {}, 100);
  const auto families = collector.Collect();
  EXPECT_EQ(MustFind(families, "pmu_cpu_time_seconds_total").metric.size(), 40u);
  EXPECT_EQ(MustFind(families, "pmu_cpu_softirqs_total").metric.size(), 40u);
  EXPECT_EQ(Value(families, "pmu_cpu_time_seconds_total", {{"cpu", "1"}, {"mode", "user"}}),
            33219.87);
  EXPECT_EQ(Value(families, "pmu_cpu_time_seconds_total", {{"cpu", "1"}, {"mode", "guest_nice"}}),
            0.15);
  EXPECT_EQ(Value(families, "pmu_cpu_softirqs_total", {{"cpu", "3"}, {"type", "RCU"}}), 10093);
  EXPECT_DOUBLE_EQ(*Value(families, "pmu_cpu_running_seconds_total", {{"cpu", "0"}}),
                   2376.473095311);
  EXPECT_DOUBLE_EQ(*Value(families, "pmu_cpu_runqueue_wait_seconds_total", {{"cpu", "0"}}),
                   171.426371024);
  EXPECT_EQ(Value(families, "pmu_cpu_timeslices_total", {{"cpu", "3"}}), 11654321);
  EXPECT_EQ(Value(families, "pmu_cpu_frequency_hertz", {{"cpu", "2"}}), 3.1e9);
  EXPECT_EQ(MustFind(families, "pmu_cpu_frequency_hertz").type, prometheus::MetricType::Gauge);
  for (const char* source : {"proc_stat", "softirqs", "schedstat", "cpufreq"}) {
    EXPECT_EQ(Value(families, "pmu_exporter_stats_source_available", {{"source", source}}), 1)
        << source;
    EXPECT_EQ(Value(families, "pmu_exporter_stats_parse_errors_total", {{"source", source}}), 0)
        << source;
  }
  EXPECT_EQ(log.Text(), "");
}

TEST(KernelStatsCollector, OnlySelectedCpus) {
  const KernelStatsCollector collector(kAllSources, Tree("full"), {3, 1}, 100);
  const auto families = collector.Collect();
  for (const char* name : {"pmu_cpu_time_seconds_total", "pmu_cpu_softirqs_total",
                           "pmu_cpu_running_seconds_total", "pmu_cpu_runqueue_wait_seconds_total",
                           "pmu_cpu_timeslices_total", "pmu_cpu_frequency_hertz"}) {
    EXPECT_EQ(CpuLabels(families, name), (std::vector<std::string>{"1", "3"})) << name;
  }
}

TEST(KernelStatsCollector, DisabledSourcesAreNotRead) {
  config::StatsConfig only_stat;
  only_stat.softirqs = only_stat.schedstat = only_stat.cpufreq = false;
  const KernelStatsCollector collector(only_stat, Tree("full"), {}, 100);
  const auto families = collector.Collect();
  std::vector<std::string> names;
  for (const MetricFamily& family : families) names.push_back(family.name);
  EXPECT_EQ(names, (std::vector<std::string>{"pmu_cpu_time_seconds_total",
                                             "pmu_exporter_stats_source_available",
                                             "pmu_exporter_stats_parse_errors_total"}));
  EXPECT_EQ(MustFind(families, "pmu_exporter_stats_source_available").metric.size(), 1u);
}

TEST(KernelStatsCollector, AbsentSourcesAreLoggedOnceAndFlaggedZero) {
  LogCapture log;
  // Like this machine: /proc/stat and /proc/softirqs, no schedstat, no cpufreq.
  const KernelStatsCollector collector(kAllSources, Tree("host"), {0, 1}, 100);
  std::vector<MetricFamily> families;
  for (int scrape = 0; scrape < 3; ++scrape) families = collector.Collect();
  EXPECT_EQ(Value(families, "pmu_exporter_stats_source_available", {{"source", "proc_stat"}}), 1);
  EXPECT_EQ(Value(families, "pmu_exporter_stats_source_available", {{"source", "softirqs"}}), 1);
  EXPECT_EQ(Value(families, "pmu_exporter_stats_source_available", {{"source", "schedstat"}}), 0);
  EXPECT_EQ(Value(families, "pmu_exporter_stats_source_available", {{"source", "cpufreq"}}), 0);
  EXPECT_EQ(FindFamily(families, "pmu_cpu_running_seconds_total"), nullptr);
  EXPECT_EQ(FindFamily(families, "pmu_cpu_frequency_hertz"), nullptr);
  EXPECT_EQ(CpuLabels(families, "pmu_cpu_time_seconds_total"),
            (std::vector<std::string>{"0", "1"}));
  EXPECT_EQ(log.Count("/proc/schedstat not present (kernel built without CONFIG_SCHEDSTATS); "
                      "run-queue metrics are not exported"),
            1u)
      << log.Text();
  EXPECT_EQ(log.Count("cpufreq/scaling_cur_freq not present"), 1u) << log.Text();
  EXPECT_EQ(log.Count("\n"), 2u) << log.Text();
}

TEST(KernelStatsCollector, UnknownSchedstatVersionIsUnavailable) {
  LogCapture log;
  config::StatsConfig schedstat_only;
  schedstat_only.proc_stat = schedstat_only.softirqs = schedstat_only.cpufreq = false;
  const KernelStatsCollector collector(schedstat_only, Tree("schedstat_v14"), {}, 100);
  const auto families = collector.Collect();
  EXPECT_EQ(Value(families, "pmu_exporter_stats_source_available", {{"source", "schedstat"}}), 0);
  EXPECT_EQ(FindFamily(families, "pmu_cpu_running_seconds_total"), nullptr);
  EXPECT_EQ(log.Count("unsupported schedstat version"), 1u) << log.Text();
  EXPECT_EQ(log.Count("not present"), 0u) << log.Text();
}

TEST(KernelStatsCollector, MalformedLinesAreLoggedOnceAndTheRestExported) {
  LogCapture log;
  const std::string root = Tree("malformed");
  const KernelStatsCollector collector(kAllSources, root, {}, 100);
  collector.Collect();
  const auto families = collector.Collect();
  EXPECT_EQ(CpuLabels(families, "pmu_cpu_time_seconds_total"),
            (std::vector<std::string>{"0", "3"}));
  EXPECT_EQ(Value(families, "pmu_cpu_softirqs_total", {{"cpu", "2"}, {"type", "SCHED"}}), 8072);
  EXPECT_EQ(Value(families, "pmu_cpu_softirqs_total", {{"cpu", "2"}, {"type", "TIMER"}}),
            std::nullopt);
  EXPECT_EQ(CpuLabels(families, "pmu_cpu_timeslices_total"), (std::vector<std::string>{"0"}));
  EXPECT_EQ(CpuLabels(families, "pmu_cpu_frequency_hertz"), (std::vector<std::string>{"0"}));
  // Four bad lines in each file, seen on each of the two scrapes; cpufreq two.
  EXPECT_EQ(Value(families, "pmu_exporter_stats_parse_errors_total", {{"source", "proc_stat"}}), 8);
  EXPECT_EQ(Value(families, "pmu_exporter_stats_parse_errors_total", {{"source", "softirqs"}}), 8);
  EXPECT_EQ(Value(families, "pmu_exporter_stats_parse_errors_total", {{"source", "schedstat"}}), 8);
  EXPECT_EQ(Value(families, "pmu_exporter_stats_parse_errors_total", {{"source", "cpufreq"}}), 4);
  for (const char* source : {"proc_stat", "softirqs", "schedstat", "cpufreq"}) {
    EXPECT_EQ(Value(families, "pmu_exporter_stats_source_available", {{"source", source}}), 1);
  }
  EXPECT_EQ(log.Count("\n"), 14u) << log.Text();
  EXPECT_EQ(log.Count(root + "/proc/stat:4: cpu2: value '817451x3' is not"), 1u) << log.Text();
  EXPECT_EQ(log.Count(root + "/proc/softirqs:5: NET_RX: expected 4 values"), 1u) << log.Text();
}

TEST(KernelStatsCollector, CountersStayMonotonic) {
  testing::TempDir dir;
  const auto write_stat = [&dir](int user_ticks) {
    WriteFile(dir.path(), "proc/stat",
              "cpu0 " + std::to_string(user_ticks) + " 0 0 0 0 0 0 0 0 0\nctxt 1\n");
  };
  config::StatsConfig stat_only;
  stat_only.softirqs = stat_only.schedstat = stat_only.cpufreq = false;
  const KernelStatsCollector collector(stat_only, dir.path(), {}, 100);
  const auto user = [&collector] {
    return *Value(collector.Collect(), "pmu_cpu_time_seconds_total",
                  {{"cpu", "0"}, {"mode", "user"}});
  };
  write_stat(1000);
  EXPECT_DOUBLE_EQ(user(), 10.0);  // first scrape: as /proc reports it
  write_stat(1500);
  EXPECT_DOUBLE_EQ(user(), 15.0);
  write_stat(200);  // backwards: adds nothing
  EXPECT_DOUBLE_EQ(user(), 15.0);
  write_stat(500);  // growth from the new value counts again
  EXPECT_DOUBLE_EQ(user(), 18.0);
}

TEST(KernelStatsCollector, ConcurrentScrapes) {
  const KernelStatsCollector collector(kAllSources, Tree("full"), {}, 100);
  std::vector<std::thread> threads;
  std::vector<int> bad(4, 0);
  for (size_t t = 0; t < bad.size(); ++t) {
    threads.emplace_back([&collector, &bad, t] {
      for (int i = 0; i < 50; ++i) {
        const auto families = collector.Collect();
        if (Value(families, "pmu_cpu_softirqs_total", {{"cpu", "2"}, {"type", "TIMER"}}) != 2012 ||
            families.size() != 8) {
          ++bad[t];
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(bad, (std::vector<int>{0, 0, 0, 0}));
}

TEST(KernelStatsCollector, PromtoolAcceptsTheExposition) {
  if (testing::RunCommand({"promtool", "--version"}).status != 0) {
    GTEST_SKIP() << "promtool is not installed";
  }
  for (const char* tree : {"full", "host", "malformed"}) {
    LogCapture quiet;
    const KernelStatsCollector collector(kAllSources, Tree(tree), {}, 100);
    const std::string text = Serialize(collector.Collect());
    ASSERT_NE(text.find("pmu_cpu_time_seconds_total{"), std::string::npos) << tree;
    const testing::RunResult check = testing::RunCommand({"promtool", "check", "metrics"}, text);
    EXPECT_EQ(check.status, 0) << tree << ":\n" << check.out << check.err << "\n" << text;
    EXPECT_EQ(check.out + check.err, "") << tree;
  }
}

TEST(KernelStatsCollector, LiveHostScrape) {
  LogCapture quiet;
  const KernelStatsCollector collector(kAllSources, "/", {});
  const auto families = collector.Collect();
  if (!std::filesystem::exists("/proc/stat")) GTEST_SKIP() << "this host has no /proc/stat";
  EXPECT_EQ(Value(families, "pmu_exporter_stats_source_available", {{"source", "proc_stat"}}), 1);
  EXPECT_EQ(Value(families, "pmu_exporter_stats_parse_errors_total", {{"source", "proc_stat"}}), 0);
  EXPECT_FALSE(CpuLabels(families, "pmu_cpu_time_seconds_total").empty());
}

}  // namespace
}  // namespace pmu::daemon
