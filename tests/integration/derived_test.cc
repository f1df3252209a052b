// Sub-scrape distributions end to end, against /proc/stat read by the test
// itself and against the daemon's own counters:
//  - a child process pinned to one CPU alternates 500 ms of spinning with
//    500 ms of sleep while the daemon samples every 10 ms. Over the scrape
//    the CPU is busy about half the time, but each ~100 ms window of
//    cpu_busy_ratio is either busy or idle: the histogram must show two
//    peaks (lowest and highest bucket) and little in between, while its
//    average (sum / count) stays near 0.5 - what rate() alone would show;
//  - under a steady partial load the histogram's mean agrees with the rate
//    of pmu_cpu_time_seconds_total within 1%, at 10 ms and at 100 ms
//    sampling (one-tick intervals biased it by -7.3% at 10 ms).
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include "pmu/config/config.h"
#include "test_support.h"

namespace pmu::testing {
namespace {

using namespace std::chrono_literals;

int64_t MonotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// In a forked child pinned to `cpu`: alternate `busy_ns` of spinning and
// `idle_ns` of sleep for `duration`; waits for it.
void RunPhasedLoad(int cpu, int64_t busy_ns, int64_t idle_ns, std::chrono::nanoseconds duration) {
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(static_cast<size_t>(cpu), &set);
    if (sched_setaffinity(0, sizeof(set), &set) != 0) _exit(3);
    const int64_t end = MonotonicNs() + duration.count();
    volatile uint64_t sink = 0;
    while (MonotonicNs() < end) {
      const int64_t spin_end = MonotonicNs() + busy_ns;
      while (MonotonicNs() < spin_end) sink = sink + 1;
      const timespec nap{idle_ns / 1'000'000'000, idle_ns % 1'000'000'000};
      nanosleep(&nap, nullptr);
    }
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "workload failed: " << status;
}

// CPU 1 when it is online (CPU 0 takes the system's own noise), else the first.
int QuietCpu() {
  const std::vector<int> online = OnlineCpus();
  return std::find(online.begin(), online.end(), 1) != online.end() ? 1 : online.front();
}

// The daemon sampling `cpu` every `interval`, serving on an ephemeral port.
class BusyDaemon {
 public:
  // cpu_busy_ratio over /proc/stat windows of `window` (by default 100 ms,
  // the shortest: the most values in a short test).
  BusyDaemon(int cpu, const std::string& interval, const std::string& window = "100ms")
      : cpu_label_(std::to_string(cpu)),
        config_(dir_.Write("config.toml",
                           "[exporter]\nlisten = \"127.0.0.1:0\"\nport_file = \"" + dir_.path() +
                               "/port\"\n[sampling]\ninterval = \"" + interval + "\"\ncpus = \"" +
                               cpu_label_ +
                               "\"\n[[events]]\nname = \"cpu-clock\"\nevent = \"cpu-clock\"\n"
                               "[[derived]]\nname = \"cpu_busy_ratio\"\n"
                               "numerator = \"proc_stat/busy_seconds\"\n"
                               "denominator = \"proc_stat/total_seconds\"\nscope = \"cpu\"\n"
                               "buckets = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1]\n"
                               "window = \"" +
                               window + "\"\n")),
        daemon_({DaemonBinary(), "--config", config_}) {
    port_ = WaitForPortFile(dir_.path() + "/port", 10s);
  }
  ~BusyDaemon() { daemon_.Signal(SIGTERM, 5s); }
  bool ready() const { return port_.has_value(); }
  std::string Scrape() {
    HttpResponse r = HttpGet("127.0.0.1", *port_, "/metrics");
    EXPECT_EQ(r.status, 200) << daemon_.Stderr();
    return r.body;
  }
  std::map<std::string, std::string> labels() const { return {{"cpu", cpu_label_}}; }
  Child& process() { return daemon_; }

 private:
  TempDir dir_;
  std::string cpu_label_;
  std::string config_;
  Child daemon_;
  std::optional<int> port_;
};

// Busy and total USER_HZ ticks of `cpu` from /proc/stat, counted the way the
// daemon counts them: an independent check on what the CPU really did.
struct CpuTicks {
  double busy = 0;
  double total = 0;
};

CpuTicks ReadCpuTicks(int cpu) {
  std::ifstream in("/proc/stat");
  const std::string label = "cpu" + std::to_string(cpu);
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::string name;
    fields >> name;
    if (name != label) continue;
    double v[8] = {};  // user nice system idle iowait irq softirq steal
    for (double& x : v) fields >> x;
    CpuTicks t;
    t.busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    t.total = t.busy + v[3] + v[4];
    return t;
  }
  return {};
}

// The histogram's cumulative bucket counts keyed by le, plus sum and count.
struct Histogram {
  std::map<std::string, double> buckets;
  double sum = 0;
  double count = 0;
  // The cumulative count at `le`; NaN (failing every comparison) when absent.
  double Le(const std::string& le) const {
    const auto it = buckets.find(le);
    return it == buckets.end() ? std::nan("") : it->second;
  }
};

Histogram ReadHistogram(const std::vector<Series>& all, const std::string& name,
                        const std::map<std::string, std::string>& labels) {
  Histogram h;
  for (const Series& s : Select(all, name + "_bucket", labels))
    h.buckets[s.labels.at("le")] = s.value;
  const auto sum = Select(all, name + "_sum", labels);
  const auto count = Select(all, name + "_count", labels);
  if (!sum.empty()) h.sum = sum[0].value;
  if (!count.empty()) h.count = count[0].value;
  return h;
}

constexpr char kBusyRatio[] = "pmu_derived_cpu_busy_ratio";

TEST(DerivedIntegrationTest, BusyRatioHistogramIsBimodalWhileTheAverageIsHalf) {
  const int cpu = QuietCpu();
  BusyDaemon daemon(cpu, "10ms");
  ASSERT_TRUE(daemon.ready()) << daemon.process().Stderr();
  std::this_thread::sleep_for(300ms);  // a few intervals: /proc/stat primed
  const std::string before_text = daemon.Scrape();
  ASSERT_NE(before_text.find(std::string(kBusyRatio) + "_bucket"), std::string::npos)
      << "no " << kBusyRatio << " histogram: is the DerivedEngine wired into the daemon?\n"
      << before_text.substr(0, 2000);
  const Histogram before = ReadHistogram(ParseExposition(before_text), kBusyRatio, daemon.labels());
  const CpuTicks ticks_before = ReadCpuTicks(cpu);
  RunPhasedLoad(cpu, 500'000'000, 500'000'000, 4s);
  const CpuTicks ticks_after = ReadCpuTicks(cpu);
  const std::string after_text = daemon.Scrape();
  const Histogram after = ReadHistogram(ParseExposition(after_text), kBusyRatio, daemon.labels());

  // Only the windows observed while the workload ran.
  const double count = after.count - before.count;
  const double average = (after.sum - before.sum) / count;
  const auto upto = [&](const std::string& le) { return after.Le(le) - before.Le(le); };
  const double lowest = upto("0.1");                // (-inf, 0.1]
  const double highest = upto("1") - upto("0.9");   // (0.9, 1]
  const double middle = upto("0.9") - upto("0.1");  // (0.1, 0.9]
  const double measured =
      (ticks_after.busy - ticks_before.busy) / (ticks_after.total - ticks_before.total);
  const std::string report =
      "windows " + std::to_string(count) + ", lowest " + std::to_string(lowest) + ", middle " +
      std::to_string(middle) + ", highest " + std::to_string(highest) + ", average " +
      std::to_string(average) + ", /proc/stat busy fraction " + std::to_string(measured);
  RecordProperty("distribution", report);
  if (std::abs(measured - 0.5) > 0.15) {
    GTEST_SKIP() << "CPU " << cpu << " was disturbed by other work (busy " << measured
                 << " instead of 0.5): this test needs a quiet CPU. " << report;
  }

  // About 40 windows of 100 ms in 4 s (an idle CPU's ticks arrive in bulk
  // when it wakes, so idle phases make fewer, longer windows).
  EXPECT_GE(count, 15) << report;
  // What rate() shows: the average.
  EXPECT_NEAR(average, 0.5, 0.15) << report;
  // What only the distribution shows: the CPU was fully busy or fully idle
  // in most windows. A window straddling a phase change lands in between.
  EXPECT_GE(lowest, 0.2 * count) << report;
  EXPECT_GE(highest, 0.2 * count) << report;
  EXPECT_GE(lowest + highest, 0.6 * count) << report;

  const RunResult promtool = RunCommand({"promtool", "check", "metrics"}, after_text);
  EXPECT_EQ(promtool.status, 0) << promtool.out << promtool.err;
  EXPECT_EQ(promtool.out + promtool.err, "");
}

// rate(busy) / rate(total) of the daemon's pmu_cpu_time_seconds_total.
double CounterBusy(const std::vector<Series>& before, const std::vector<Series>& after,
                   const std::string& cpu) {
  const auto delta = [&](const std::string& mode) {
    const auto a = Select(after, "pmu_cpu_time_seconds_total", {{"cpu", cpu}, {"mode", mode}});
    const auto b = Select(before, "pmu_cpu_time_seconds_total", {{"cpu", cpu}, {"mode", mode}});
    return a.empty() || b.empty() ? std::nan("") : a[0].value - b[0].value;
  };
  double busy = 0;
  for (const char* mode : {"user", "nice", "system", "irq", "softirq", "steal"})
    busy += delta(mode);
  return busy / (busy + delta("idle") + delta("iowait"));
}

// (sampling interval, /proc/stat window)
class BusyRatioAgreement : public ::testing::TestWithParam<std::pair<const char*, const char*>> {};

TEST_P(BusyRatioAgreement, HistogramMeanAgreesWithTheCounterRateWithinOnePercent) {
  const auto [interval, window] = GetParam();
  const int cpu = QuietCpu();
  BusyDaemon daemon(cpu, interval, window);
  ASSERT_TRUE(daemon.ready()) << daemon.process().Stderr();
  // A steady partial load, 3 ms busy and 2 ms asleep, from a window and a
  // bit before the first scrape to as long after the second: every window
  // that closes between the scrapes lies inside it.
  const auto lead = config::ParseDuration(window) + 300ms;
  std::thread load([&] { RunPhasedLoad(cpu, 3'000'000, 2'000'000, lead + 5s + lead); });
  std::this_thread::sleep_for(lead);
  const std::string before_text = daemon.Scrape();
  std::this_thread::sleep_for(5s);
  const std::string after_text = daemon.Scrape();
  load.join();
  const auto before = ParseExposition(before_text);
  const auto after = ParseExposition(after_text);
  const Histogram h_before = ReadHistogram(before, kBusyRatio, daemon.labels());
  const Histogram h_after = ReadHistogram(after, kBusyRatio, daemon.labels());
  const double count = h_after.count - h_before.count;
  const double mean = (h_after.sum - h_before.sum) / count;
  const double rate = CounterBusy(before, after, std::to_string(cpu));
  const std::string report = std::string("interval ") + interval + ", window " + window + ": " +
                             std::to_string(count) + " values, histogram mean " +
                             std::to_string(mean) + ", counter rate " + std::to_string(rate);
  RecordProperty("agreement", report);
  std::printf("%s\n", report.c_str());
  if (rate < 0.4 || rate > 0.8) {
    GTEST_SKIP() << "CPU " << cpu << " was disturbed by other work (busy " << rate
                 << " instead of about 0.6): this test needs a quiet CPU. " << report;
  }
  // One value per window (a window's ticks may arrive a reading late).
  const auto windows = static_cast<double>(5s / config::ParseDuration(window));
  EXPECT_GE(count, 0.6 * windows) << report;
  EXPECT_LE(count, windows + 1) << report;
  // The windows between the scrapes cover all but their ends' fractions.
  EXPECT_NEAR(mean, rate, (std::string(window) == "100ms" ? 0.01 : 0.03) * rate) << report;
}

INSTANTIATE_TEST_SUITE_P(Intervals, BusyRatioAgreement,
                         ::testing::Values(std::pair{"10ms", "100ms"}, std::pair{"100ms", "100ms"},
                                           std::pair{"100ms", "1s"}),
                         [](const auto& p) {
                           return std::string(p.param.first) + "_window_" + p.param.second;
                         });

}  // namespace
}  // namespace pmu::testing
