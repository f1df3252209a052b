// Sub-scrape distributions end to end: a child process pinned to one CPU
// alternates 50 ms of spinning with 50 ms of sleep while the daemon samples
// every 10 ms. Over the scrape the CPU is busy about half the time, but each
// 10 ms interval is either busy or idle: the cpu_busy_ratio histogram must
// show two peaks (lowest and highest bucket) and little in between, while
// its average (sum / count) stays near 0.5 - what rate() alone would show.
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "test_support.h"

namespace pmu::testing {
namespace {

using namespace std::chrono_literals;

constexpr auto kWorkload = 3s;
constexpr int64_t kPhaseNs = 50'000'000;  // 50 ms busy, 50 ms asleep

int64_t MonotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// In the forked child: pin to `cpu`, alternate spin and sleep, exit.
[[noreturn]] void RunWorkload(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(static_cast<size_t>(cpu), &set);
  if (sched_setaffinity(0, sizeof(set), &set) != 0) _exit(3);
  const int64_t end = MonotonicNs() + std::chrono::nanoseconds(kWorkload).count();
  volatile uint64_t sink = 0;
  while (MonotonicNs() < end) {
    const int64_t spin_end = MonotonicNs() + kPhaseNs;
    while (MonotonicNs() < spin_end) sink = sink + 1;
    const timespec nap{0, kPhaseNs};
    nanosleep(&nap, nullptr);
  }
  _exit(0);
}

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

TEST(DerivedIntegrationTest, BusyRatioHistogramIsBimodalWhileTheAverageIsHalf) {
  const std::vector<int> online = OnlineCpus();
  ASSERT_FALSE(online.empty());
  const int cpu = std::find(online.begin(), online.end(), 1) != online.end() ? 1 : online.front();
  const std::string cpu_label = std::to_string(cpu);

  TempDir dir;
  const std::string config = dir.Write(
      "config.toml", "[exporter]\nlisten = \"127.0.0.1:0\"\nport_file = \"" + dir.path() +
                         "/port\"\n[sampling]\ninterval = \"10ms\"\ncpus = \"" + cpu_label +
                         "\"\n[[events]]\nname = \"cpu-clock\"\nevent = \"cpu-clock\"\n"
                         "[[events]]\nname = \"context-switches\"\nevent = \"context-switches\"\n");
  Child daemon({DaemonBinary(), "--config", config});
  const auto port = WaitForPortFile(dir.path() + "/port", 10s);
  ASSERT_TRUE(port.has_value()) << daemon.Stderr();
  const auto scrape = [&] {
    HttpResponse r = HttpGet("127.0.0.1", *port, "/metrics");
    EXPECT_EQ(r.status, 200) << daemon.Stderr();
    return r.body;
  };
  const std::string name = "pmu_derived_cpu_busy_ratio";
  const std::map<std::string, std::string> labels{{"cpu", cpu_label}};
  std::this_thread::sleep_for(300ms);  // a few intervals: /proc/stat primed
  const std::string before_text = scrape();
  ASSERT_NE(before_text.find(name + "_bucket"), std::string::npos)
      << "no " << name << " histogram: is the DerivedEngine wired into the daemon?\n"
      << before_text.substr(0, 2000);

  const Histogram before = ReadHistogram(ParseExposition(before_text), name, labels);
  const CpuTicks ticks_before = ReadCpuTicks(cpu);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) RunWorkload(cpu);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "workload failed: " << status;
  const CpuTicks ticks_after = ReadCpuTicks(cpu);
  const std::string after_text = scrape();
  const Histogram after = ReadHistogram(ParseExposition(after_text), name, labels);

  // Only the intervals observed while the workload ran.
  const double count = after.count - before.count;
  const double average = (after.sum - before.sum) / count;
  const auto upto = [&](const std::string& le) { return after.Le(le) - before.Le(le); };
  const double lowest = upto("0.1");                // (-inf, 0.1]
  const double highest = upto("1") - upto("0.9");   // (0.9, 1]
  const double middle = upto("0.9") - upto("0.1");  // (0.1, 0.9]
  const double measured =
      (ticks_after.busy - ticks_before.busy) / (ticks_after.total - ticks_before.total);
  const std::string report =
      "intervals " + std::to_string(count) + ", lowest " + std::to_string(lowest) + ", middle " +
      std::to_string(middle) + ", highest " + std::to_string(highest) + ", average " +
      std::to_string(average) + ", /proc/stat busy fraction " + std::to_string(measured);
  RecordProperty("distribution", report);

  // About 300 intervals of 10 ms in 3 s; some carry no /proc/stat tick and
  // are skipped, so ask for half.
  EXPECT_GE(count, 150) << report;
  // What rate() shows: the average. The workload is busy half the time; the
  // daemon's average matches /proc/stat's own accounting closely.
  EXPECT_NEAR(measured, 0.5, 0.15) << "CPU " << cpu << " was disturbed by other work? " << report;
  EXPECT_NEAR(average, measured, 0.1) << report;
  EXPECT_NEAR(average, 0.5, 0.15) << report;
  // What only the distribution shows: the CPU was fully busy or fully idle
  // in most intervals. A two-tick interval straddling a phase change can be
  // 0.5, hence some middle mass.
  EXPECT_GE(lowest, 0.25 * count) << report;
  EXPECT_GE(highest, 0.25 * count) << report;
  EXPECT_GE(lowest + highest, 0.75 * count) << report;
  EXPECT_LE(middle, 0.25 * count) << report;

  const RunResult promtool = RunCommand({"promtool", "check", "metrics"}, after_text);
  EXPECT_EQ(promtool.status, 0) << promtool.out << promtool.err;
  EXPECT_EQ(promtool.out + promtool.err, "");
  EXPECT_EQ(daemon.Signal(SIGTERM, 5s), std::optional<int>(0)) << daemon.Stderr();
}

}  // namespace
}  // namespace pmu::testing
