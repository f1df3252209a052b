// The sampling pipeline against the real kernel: CPU hotplug at run time, a
// sampler moved off its CPU, and cross-checks of the counts against
// independent kernel sources (/proc/stat, wall time).
#include <dirent.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <sstream>
#include <thread>
#include <tuple>

#include "test_support.h"

namespace pmu::testing {
namespace {

using namespace std::chrono_literals;
using Labels = std::map<std::string, std::string>;

class CollectTest : public ::testing::Test {
 protected:
  // `group` non-empty: every event in one perf group of that name.
  void Start(const std::string& interval, std::initializer_list<const char*> events,
             const std::string& group = "") {
    std::string text = "[exporter]\nlisten = \"127.0.0.1:0\"\nport_file = \"" + dir_.path() +
                       "/port\"\n[sampling]\ninterval = \"" + interval + "\"\n";
    for (const char* e : events) {
      text += "[[events]]\nname = \"" + std::string(e) + "\"\nevent = \"" + e + "\"\n";
      if (!group.empty()) text += "group = \"" + group + "\"\n";
    }
    daemon_ = std::make_unique<Child>(
        std::vector<std::string>{DaemonBinary(), "--config", dir_.Write("c.toml", text)});
    auto port = WaitForPortFile(dir_.path() + "/port", 10s);
    ASSERT_TRUE(port) << daemon_->Stderr();
    port_ = *port;
  }
  std::vector<Series> Scrape() {
    HttpResponse r = HttpGet("127.0.0.1", port_, "/metrics");
    EXPECT_EQ(r.status, 200) << daemon_->Stderr();
    return ParseExposition(r.body);
  }
  // After the first readings are in: a scrape, two seconds, a scrape, and
  // the wall time between the two.
  std::tuple<std::vector<Series>, std::vector<Series>, double> ScrapeAcrossTwoSeconds() {
    std::this_thread::sleep_for(250ms);
    auto a = Scrape();
    const auto t0 = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(2s);
    auto b = Scrape();
    const double wall =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return {std::move(a), std::move(b), wall};
  }
  static double Value(const std::vector<Series>& s, const std::string& name, const Labels& l) {
    auto found = Select(s, name, l);
    return found.size() == 1 ? found[0].value : std::nan("");
  }
  static double Sum(const std::vector<Series>& s, const std::string& name, const Labels& l) {
    double sum = 0;
    for (const auto& x : Select(s, name, l)) sum += x.value;
    return sum;
  }

  TempDir dir_;
  std::unique_ptr<Child> daemon_;
  int port_ = 0;
};

// Every counter of `before` is present in `after` and not smaller.
void ExpectNoCounterDecreased(const std::vector<Series>& before, const std::vector<Series>& after) {
  for (const auto& b : before) {
    if (b.name.size() < 6 || b.name.compare(b.name.size() - 6, 6, "_total") != 0) continue;
    auto a = Select(after, b.name, b.labels);
    if (a.empty()) continue;  // e.g. sampler self-metrics of an offline CPU
    EXPECT_GE(a[0].value, b.value) << b.name << " went down";
  }
}

bool SetOnline(int cpu, bool online) {
  std::ofstream f("/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/online");
  f << (online ? "1" : "0");
  f.flush();
  return static_cast<bool>(f);
}

TEST_F(CollectTest, CpuHotplugAtRunTime) {
  const std::string online_file = "/sys/devices/system/cpu/cpu1/online";
  if (geteuid() != 0) GTEST_SKIP() << "CPU hotplug needs root";
  if (access(online_file.c_str(), W_OK) != 0) GTEST_SKIP() << online_file << " is not writable";
  Start("100ms", {"cpu-clock", "context-switches"});
  std::this_thread::sleep_for(300ms);
  const auto before = Scrape();
  ASSERT_EQ(Value(before, "pmu_cpu_online", {{"cpu", "1"}}), 1);
  struct Restore {
    ~Restore() { SetOnline(1, true); }
  } restore;
  ASSERT_TRUE(SetOnline(1, false)) << "cannot take CPU 1 offline";
  std::this_thread::sleep_for(2200ms);
  const auto offline = Scrape();
  EXPECT_EQ(Value(offline, "pmu_cpu_online", {{"cpu", "1"}}), 0);
  ExpectNoCounterDecreased(before, offline);
  const double clock_offline =
      Value(offline, "pmu_events_total", {{"cpu", "1"}, {"event", "cpu-clock"}});
  EXPECT_FALSE(std::isnan(clock_offline)) << "CPU 1's totals must stay exported while offline";
  ASSERT_TRUE(SetOnline(1, true));
  // Bringing a CPU up takes the kernel a moment; the daemon then notices it
  // within one interval.
  std::vector<Series> back;
  for (int i = 0; i < 50; ++i) {
    std::this_thread::sleep_for(100ms);
    back = Scrape();
    if (Value(back, "pmu_cpu_online", {{"cpu", "1"}}) == 1) break;
  }
  ASSERT_EQ(Value(back, "pmu_cpu_online", {{"cpu", "1"}}), 1) << daemon_->Stderr();
  ExpectNoCounterDecreased(offline, back);
  std::this_thread::sleep_for(1s);
  const auto later = Scrape();
  ExpectNoCounterDecreased(back, later);
  EXPECT_GT(Value(later, "pmu_events_total", {{"cpu", "1"}, {"event", "cpu-clock"}}),
            Value(back, "pmu_events_total", {{"cpu", "1"}, {"event", "cpu-clock"}}) + 0.5e9)
      << "CPU 1's series did not resume increasing";
  EXPECT_TRUE(daemon_->Running());
  const std::string log = daemon_->Stderr();
  EXPECT_NE(log.find("cpu 1 went offline"), std::string::npos) << log;
  EXPECT_NE(log.find("cpu 1 came online"), std::string::npos) << log;
}

// The thread id of the daemon's thread named `name`, or -1.
pid_t FindThread(pid_t pid, const std::string& name) {
  const std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return -1;
  pid_t found = -1;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream comm(dir + "/" + e->d_name + "/comm");
    std::string c;
    std::getline(comm, c);
    if (c == name) found = static_cast<pid_t>(std::stoi(e->d_name));
  }
  closedir(d);
  return found;
}

TEST_F(CollectTest, SamplerMovedOffItsCpuStillAttributesCorrectly) {
  if (std::thread::hardware_concurrency() < 2) GTEST_SKIP() << "needs two CPUs";
  Start("50ms", {"cpu-clock"});
  // The samplers start (and name themselves) just after the port file appears.
  pid_t tid = -1;
  for (int i = 0; i < 100 && tid <= 0; ++i) {
    tid = FindThread(daemon_->pid(), "pmu-cpu0");
    if (tid <= 0) std::this_thread::sleep_for(20ms);
  }
  ASSERT_GT(tid, 0) << "no sampler thread named pmu-cpu0";
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(1, &set);
  ASSERT_EQ(sched_setaffinity(tid, sizeof(set), &set), 0);  // what an admin's taskset does
  std::this_thread::sleep_for(300ms);
  const auto a = Scrape();
  const auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(1s);
  const auto b = Scrape();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(Value(b, "pmu_exporter_read_path", {{"cpu", "0"}, {"path", "remote_read"}}), 1)
      << "the moved sampler should read CPU 0 from CPU 1";
  EXPECT_EQ(Value(b, "pmu_exporter_read_path", {{"cpu", "1"}, {"path", "local_read"}}), 1);
  EXPECT_EQ(Value(b, "pmu_exporter_ring_misfiled_total", {}), 0);
  // CPU 0's cpu-clock still advances by wall time: its own fds, its own label.
  const Labels cpu0{{"cpu", "0"}, {"event", "cpu-clock"}};
  const double delta =
      (Value(b, "pmu_events_total", cpu0) - Value(a, "pmu_events_total", cpu0)) / 1e9;
  EXPECT_NEAR(delta, wall, 0.15) << "cpu 0 counted " << delta << " s of clock in " << wall << " s";
}

// A CPU-wide cpu-clock counts wall time on every CPU (idle included). The
// scrapes are not aligned with the 100 ms sampling ticks, so each end may be
// off by one interval: tolerance 2 x 100 ms + 2%. Measured here: within 0.1 s.
TEST_F(CollectTest, CpuClockDeltaMatchesWallTimeOnEveryCpu) {
  Start("100ms", {"cpu-clock"});
  const auto [a, b, wall] = ScrapeAcrossTwoSeconds();
  for (int cpu : OnlineCpus()) {
    const Labels l{{"cpu", std::to_string(cpu)}, {"event", "cpu-clock"}};
    const double delta = (Value(b, "pmu_events_total", l) - Value(a, "pmu_events_total", l)) / 1e9;
    std::printf("cpu %d: cpu-clock %.3f s over %.3f s of wall time (error %+.3f s)\n", cpu, delta,
                wall, delta - wall);
    EXPECT_NEAR(delta, wall, 0.2 + 0.02 * wall) << "cpu " << cpu;
  }
}

uint64_t ProcStatCtxt() {
  std::ifstream in("/proc/stat");
  std::string key;
  uint64_t value = 0;
  while (in >> key) {
    if (key == "ctxt") {
      in >> value;
      return value;
    }
    in.ignore(1 << 20, '\n');
  }
  return 0;
}

// Two threads ping-pong a byte over pipes: every round trip is at least two
// context switches.
void SwitchHeavyWorkload(int round_trips) {
  int ab[2], ba[2];
  ASSERT_EQ(pipe(ab), 0);
  ASSERT_EQ(pipe(ba), 0);
  std::thread peer([&] {
    char c;
    for (int i = 0; i < round_trips; ++i) {
      if (read(ab[0], &c, 1) != 1 || write(ba[1], &c, 1) != 1) break;
    }
  });
  char c = 'x';
  for (int i = 0; i < round_trips; ++i) {
    if (write(ab[1], &c, 1) != 1 || read(ba[0], &c, 1) != 1) break;
  }
  peer.join();
  for (int fd : {ab[0], ab[1], ba[0], ba[1]}) close(fd);
}

// Members of a perf group count from the start like its leader: cpu-clock
// as a member of a group led by task-clock still advances at wall-clock
// rate on every CPU. (Members opened into an already enabled CPU-wide group
// were never scheduled in: they counted 0, and task-clock behind cpu-clock
// 74%.)
TEST_F(CollectTest, GroupMembersCountLikeTheirLeader) {
  Start("100ms", {"task-clock", "cpu-clock"}, "clocks");
  const auto [a, b, wall] = ScrapeAcrossTwoSeconds();
  for (int cpu : OnlineCpus()) {
    for (const char* event : {"task-clock", "cpu-clock"}) {
      const Labels l{{"cpu", std::to_string(cpu)}, {"event", event}};
      const double delta =
          (Value(b, "pmu_events_total", l) - Value(a, "pmu_events_total", l)) / 1e9;
      std::printf("cpu %d: %s (group of two) %.3f s over %.3f s of wall time\n", cpu, event, delta,
                  wall);
      EXPECT_NEAR(delta, wall, 0.2 + 0.02 * wall) << "cpu " << cpu << " " << event;
    }
  }
}

// The sum of per-CPU context-switches against the kernel's own counter
// (/proc/stat ctxt) over a window with >= 100k switches. Both count the same
// scheduler event; the daemon's window ends at its last 50 ms tick, so the
// test waits for two ticks after each reading. Tolerance 3%; measured here:
// under 1%.
TEST_F(CollectTest, ContextSwitchesMatchProcStatCtxt) {
  Start("50ms", {"context-switches"});
  std::this_thread::sleep_for(200ms);
  const uint64_t ctxt0 = ProcStatCtxt();
  const double cs0 = Sum(Scrape(), "pmu_events_total", {{"event", "context-switches"}});
  SwitchHeavyWorkload(60000);
  std::this_thread::sleep_for(150ms);
  const uint64_t ctxt1 = ProcStatCtxt();
  const double cs1 = Sum(Scrape(), "pmu_events_total", {{"event", "context-switches"}});
  const double kernel = static_cast<double>(ctxt1 - ctxt0);
  const double ours = cs1 - cs0;
  std::printf("context switches: pmu-exporter %.0f, /proc/stat ctxt %.0f (error %+.2f%%)\n", ours,
              kernel, 100 * (ours - kernel) / kernel);
  ASSERT_GE(kernel, 100000) << "the workload did not switch enough";
  EXPECT_NEAR(ours, kernel, 0.03 * kernel);
}

// Issue 10's acceptance measurement, end to end through the real binary:
// ten SIGHUP reloads (alternating intervals, so samplers are rebuilt) and two
// offline/online cycles of the last CPU, with switch-heavy work in between.
// Afterwards every CPU's cpu-clock total is at most the daemon's uptime, and
// the sum of context switches agrees with /proc/stat ctxt over the window.
TEST_F(CollectTest, TotalsStayTrueAcrossReloadsAndHotplug) {
  const int last = static_cast<int>(std::thread::hardware_concurrency()) - 1;
  const std::string online_file = "/sys/devices/system/cpu/cpu" + std::to_string(last) + "/online";
  if (last < 1) GTEST_SKIP() << "needs two CPUs";
  if (geteuid() != 0) GTEST_SKIP() << "CPU hotplug needs root";
  if (access(online_file.c_str(), W_OK) != 0) GTEST_SKIP() << online_file << " is not writable";
  struct Restore {
    int cpu;
    ~Restore() { SetOnline(cpu, true); }
  } restore{last};

  const auto started = std::chrono::steady_clock::now();
  Start("50ms", {"cpu-clock", "context-switches"});
  // The daemon's totals are as of its last 50 ms tick, /proc/stat's as of
  // now: each end of the window may differ by one interval of the switches
  // the rest of the machine makes. Measure that rate to size the slack.
  const uint64_t quiet0 = ProcStatCtxt();
  std::this_thread::sleep_for(500ms);
  const double ambient_per_s = 2.0 * static_cast<double>(ProcStatCtxt() - quiet0);
  const double slack = 2 * 1.5 * ambient_per_s * 0.05;
  const uint64_t ctxt0 = ProcStatCtxt();
  const auto first = Scrape();
  const double cs0 = Sum(first, "pmu_events_total", {{"event", "context-switches"}});
  std::vector<Series> previous = first;

  const std::string config = dir_.path() + "/c.toml";
  for (int round = 0; round < 10; ++round) {
    std::stringstream read;
    read << std::ifstream(config).rdbuf();
    std::string text = read.str();
    const bool fast = text.find("\"50ms\"") != std::string::npos;
    text.replace(text.find(fast ? "\"50ms\"" : "\"30ms\""), 6, fast ? "\"30ms\"" : "\"50ms\"");
    dir_.Write("c.toml", text);
    ASSERT_EQ(kill(daemon_->pid(), SIGHUP), 0);
    SwitchHeavyWorkload(3000);
    if (round == 3 || round == 7) {
      ASSERT_TRUE(SetOnline(last, false)) << "cannot take CPU " << last << " offline";
      SwitchHeavyWorkload(3000);
      ASSERT_TRUE(SetOnline(last, true));
    }
    std::this_thread::sleep_for(300ms);
    const auto now = Scrape();
    ExpectNoCounterDecreased(previous, now);
    previous = now;
  }
  // Let the last CPU's samplers resume and two ticks pass after the work.
  std::this_thread::sleep_for(400ms);
  const uint64_t ctxt1 = ProcStatCtxt();
  const auto end = Scrape();
  const double uptime_ns =
      std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - started).count();
  ExpectNoCounterDecreased(previous, end);
  for (const auto& s : Select(end, "pmu_events_total", {{"event", "cpu-clock"}})) {
    std::printf("cpu %s: cpu-clock %.3f s of %.3f s uptime\n", s.labels.at("cpu").c_str(),
                s.value / 1e9, uptime_ns / 1e9);
    EXPECT_LE(s.value, uptime_ns) << "cpu " << s.labels.at("cpu") << " counted more than wall time";
  }
  const double cs1 = Sum(end, "pmu_events_total", {{"event", "context-switches"}});
  const double kernel = static_cast<double>(ctxt1 - ctxt0);
  const double ours = cs1 - cs0;
  std::printf(
      "context switches over 10 reloads + 2 hotplug cycles: pmu-exporter %.0f, "
      "/proc/stat ctxt %.0f (error %+.2f%%; window slack %.0f from %.0f switches/s "
      "elsewhere)\n",
      ours, kernel, 100 * (ours - kernel) / kernel, slack, ambient_per_s);
  ASSERT_GE(kernel, 20000) << "the workload did not switch enough";
  EXPECT_LE(ours, kernel + slack) << "more switches than the kernel made";
  EXPECT_NEAR(ours, kernel, 0.01 * kernel + slack) << daemon_->Stderr();
  const std::string log = daemon_->Stderr();
  size_t reloads = 0;
  for (size_t p = 0; (p = log.find("configuration reloaded", p)) != std::string::npos; ++p) {
    ++reloads;
  }
  EXPECT_EQ(reloads, 10u) << log;
}

}  // namespace
}  // namespace pmu::testing
