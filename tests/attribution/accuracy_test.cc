// Per-cgroup attribution on real cgroups: known workloads in cgroups created
// under the cgroup v2 root, checked against the kernel's own accounting
// (cpu.stat usage_usec, /proc/<pid>/status context switches), in perf mode
// and bpf mode, and the two modes against each other. Needs root and quiet
// CPUs (RUN_SERIAL).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include "log_capture.h"
#include "pmu/attribution/attribution.h"
#include "pmu/collectors/event_plan.h"
#include "pmu/daemon/service.h"
#include "pmu/metrics/cardinality.h"
#include "test_support.h"

namespace pmu::attribution {
namespace {

using namespace std::chrono_literals;

// A cgroup directory, removed (after its tasks left) on destruction.
class ScopedCgroup {
 public:
  explicit ScopedCgroup(std::string path) : path_(std::move(path)) {
    if (mkdir(path_.c_str(), 0755) != 0) ADD_FAILURE() << path_ << ": " << std::strerror(errno);
  }
  ~ScopedCgroup() { Remove(); }
  ScopedCgroup(const ScopedCgroup&) = delete;
  ScopedCgroup& operator=(const ScopedCgroup&) = delete;
  const std::string& path() const { return path_; }
  // rmdir, retried while the last exited tasks are being released.
  void Remove() {
    for (int i = 0; i < 200 && rmdir(path_.c_str()) != 0 && errno == EBUSY; ++i) {
      std::this_thread::sleep_for(10ms);
    }
  }

 private:
  std::string path_;
};

// Time every CPU spent so far on what a task's cpu-clock holds but its
// cgroup's cpu.stat runtime does not: interrupts and softirqs (with
// IRQ_TIME_ACCOUNTING the scheduler takes them out of task time) and steal
// (the hypervisor ran something else), ns, from the "cpu" line of /proc/stat.
double OffTaskNs() {
  std::ifstream in("/proc/stat");
  std::string label;
  in >> label;
  uint64_t fields[8] = {};
  for (uint64_t& field : fields) in >> field;
  const uint64_t ticks = fields[5] + fields[6] + fields[7];  // irq, softirq, steal
  return static_cast<double>(ticks) * 1e9 / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// A cgroup's cpu-clock against its cpu.stat usage over the same time: at
// most 2% below it, and at most 2% above it plus the window's OffTaskNs()
// (up to 8% more in a loaded run), plus two ticks for /proc/stat's steps.
void ExpectMatchesCpuStat(double clock_ns, double cpu_stat_ns, double off_task_ns) {
  const double tick = 2e9 / static_cast<double>(sysconf(_SC_CLK_TCK));
  EXPECT_GE(clock_ns, 0.98 * cpu_stat_ns) << "irq, softirq and steal " << off_task_ns << " ns";
  EXPECT_LE(clock_ns, 1.02 * cpu_stat_ns + off_task_ns + tick)
      << "irq, softirq and steal " << off_task_ns << " ns";
}

uint64_t UsageUsec(const std::string& cgroup) {
  std::ifstream in(cgroup + "/cpu.stat");
  std::string key;
  uint64_t value = 0;
  while (in >> key >> value) {
    if (key == "usage_usec") return value;
  }
  ADD_FAILURE() << "no usage_usec in " << cgroup << "/cpu.stat";
  return 0;
}

// voluntary + nonvoluntary context switches of the calling process.
uint64_t OwnContextSwitches() {
  std::ifstream in("/proc/self/status");
  uint64_t total = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("voluntary_ctxt_switches:", 0) == 0 ||
        line.rfind("nonvoluntary_ctxt_switches:", 0) == 0) {
      total += std::stoull(line.substr(line.find(':') + 1));
    }
  }
  return total;
}

void JoinCgroup(const std::string& cgroup) {
  const int fd = open((cgroup + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0 || write(fd, "0", 1) != 1) _exit(3);
  close(fd);
}

// Forks a child that joins `cgroup` and runs `body`.
pid_t SpawnIn(const std::string& cgroup, const std::function<void()>& body) {
  const pid_t pid = fork();
  if (pid == 0) {
    JoinCgroup(cgroup);
    body();
    _exit(0);
  }
  return pid;
}

void WaitExit(pid_t pid) {
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
}

// Spins on `cpu` until it has used `cpu_time` of CPU.
void BusyLoop(int cpu, std::chrono::nanoseconds cpu_time) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(static_cast<size_t>(cpu), &set);
  sched_setaffinity(0, sizeof(set), &set);
  timespec ts{};
  const int64_t until = cpu_time.count();
  do {
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  } while (ts.tv_sec * 1'000'000'000LL + ts.tv_nsec < until);
}

struct PingPongResult {
  uint64_t switches = 0;  // both tasks, from /proc/<pid>/status
};

// Spins for `cpu_time` of the calling thread's CPU time.
void SpinFor(std::chrono::nanoseconds cpu_time) {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  const int64_t until = ts.tv_sec * 1'000'000'000LL + ts.tv_nsec + cpu_time.count();
  do {
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  } while (ts.tv_sec * 1'000'000'000LL + ts.tv_nsec < until);
}

// Two processes in `cgroup` bouncing a byte `rounds` times over pipes, each
// working `work` per message (a request/response server). The two modes
// place a cgroup switch about 1 us apart, so their cpu-clock differs by
// about 1 us per switch: 300 us of work per message keeps that near 0.3%
// (docs/ATTRIBUTION.md).
PingPongResult PingPong(const std::string& cgroup, int rounds, std::chrono::nanoseconds work) {
  int ping[2], pong[2], result[2];
  if (pipe(ping) != 0 || pipe(pong) != 0 || pipe(result) != 0) ADD_FAILURE() << "pipe";
  const auto player = [&](int in, int out, bool serve) {
    return [=] {
      const uint64_t start = OwnContextSwitches();
      char byte = 'x';
      for (int i = 0; i < rounds; ++i) {
        if (serve && write(out, &byte, 1) != 1) _exit(4);
        if (read(in, &byte, 1) != 1) _exit(5);
        SpinFor(work);
        if (!serve && write(out, &byte, 1) != 1) _exit(4);
      }
      const uint64_t used = OwnContextSwitches() - start;
      if (write(result[1], &used, sizeof(used)) != sizeof(used)) _exit(6);
    };
  };
  const pid_t a = SpawnIn(cgroup, player(pong[0], ping[1], true));
  const pid_t b = SpawnIn(cgroup, player(ping[0], pong[1], false));
  WaitExit(a);
  WaitExit(b);
  PingPongResult out;
  for (int i = 0; i < 2; ++i) {
    uint64_t used = 0;
    if (read(result[0], &used, sizeof(used)) == sizeof(used)) out.switches += used;
  }
  for (int fd : {ping[0], ping[1], pong[0], pong[1], result[0], result[1]}) close(fd);
  return out;
}

std::vector<config::EventSpec> SoftwareEvents() {
  return {{"cpu-clock", "cpu-clock", "", 0, 0},
          {"task-clock", "task-clock", "", 0, 0},
          {"context-switches", "context-switches", "", 0, 0},
          {"page-faults", "page-faults", "", 0, 0}};
}

std::vector<int> OnlineCpus() {
  std::vector<int> cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    std::ifstream online("/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/online");
    int on = 1;
    if (cpu > 0 && !(online >> on)) {
      if (access(("/sys/devices/system/cpu/cpu" + std::to_string(cpu)).c_str(), F_OK) != 0) break;
    }
    if (on == 1) cpus.push_back(cpu);
  }
  return cpus;
}

double Count(const CgroupSnapshot& s, const std::string& path, const std::string& event) {
  for (const CgroupSeries& cg : s.cgroups) {
    if (cg.path != path) continue;
    for (size_t e = 0; e < s.events.size(); ++e) {
      if (s.events[e] == event) return cg.events[e].count;
    }
  }
  return -1;  // absent
}

class AttributionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to create cgroups and count CPU-wide";
    root_ = DetectCgroup2Root();
    if (root_.empty()) GTEST_SKIP() << "no cgroup v2 file system mounted";
    cpus_ = OnlineCpus();
    plan_ = collectors::BuildEventPlan(SoftwareEvents(), collectors::DefaultPerfSyscalls(),
                                       cpus_.front());
  }

  config::Config ConfigFor(config::CgroupMode mode, const std::string& top) const {
    config::Config c = config::DefaultConfig();
    c.events = SoftwareEvents();
    c.cgroups.enabled = true;
    c.cgroups.mode = mode;
    c.cgroups.root = root_;
    c.cgroups.include = {"/" + top + "/**"};
    c.cgroups.rescan = std::chrono::hours(1);
    return c;
  }

  std::unique_ptr<CgroupAttribution> Make(const config::Config& c) const {
    AttributionOptions options;
    options.cpus = cpus_;
    options.other_fds = 512;
    return CgroupAttribution::Create(c, plan_, options);
  }

  std::string root_;
  std::vector<int> cpus_;
  collectors::EventPlan plan_;
};

TEST_F(AttributionTest, BothModesMatchTheKernelsAccountingAndEachOther) {
  const std::string bpf_reason = BpfUnavailableReason();
  if (!bpf_reason.empty()) GTEST_SKIP() << "bpf mode unavailable: " << bpf_reason;
  const std::string top = "pmu-attr-test-" + std::to_string(getpid());
  ScopedCgroup parent(root_ + "/" + top);
  ScopedCgroup busy(parent.path() + "/busy");
  ScopedCgroup pingpong(parent.path() + "/pingpong");
  ScopedCgroup idle(parent.path() + "/idle");
  auto perf = Make(ConfigFor(config::CgroupMode::kPerf, top));
  auto bpf = Make(ConfigFor(config::CgroupMode::kBpf, top));
  ASSERT_TRUE(perf && bpf);
  ASSERT_EQ(perf->mode(), Mode::kPerf);
  ASSERT_EQ(bpf->mode(), Mode::kBpf);

  const pid_t sleeper = SpawnIn(idle.path(), [] {
    for (;;) pause();
  });
  perf->EndRound();
  bpf->EndRound();
  const auto perf0 = perf->Latest();
  const auto bpf0 = bpf->Latest();
  const uint64_t usage0 = UsageUsec(busy.path());
  const double off_task0 = OffTaskNs();

  const pid_t spinner = SpawnIn(busy.path(), [&] { BusyLoop(cpus_.back(), 1s); });
  WaitExit(spinner);
  const double busy_off_task_ns = OffTaskNs() - off_task0;
  const uint64_t pp_usage0 = UsageUsec(pingpong.path());
  const PingPongResult pp = PingPong(pingpong.path(), 2500, 300us);
  const uint64_t usage1 = UsageUsec(busy.path());
  const double pp_cpu_stat_ns = static_cast<double>(UsageUsec(pingpong.path()) - pp_usage0) * 1e3;
  perf->EndRound();
  bpf->EndRound();
  kill(sleeper, SIGKILL);
  waitpid(sleeper, nullptr, 0);
  const auto perf1 = perf->Latest();
  const auto bpf1 = bpf->Latest();

  const auto delta = [](const std::shared_ptr<const CgroupSnapshot>& a,
                        const std::shared_ptr<const CgroupSnapshot>& b, const std::string& path,
                        const std::string& event) {
    return Count(*b, path, event) - Count(*a, path, event);
  };
  const std::string b = "/" + top + "/busy", p = "/" + top + "/pingpong", i = "/" + top + "/idle",
                    t = "/" + top;
  const double cpu_stat_ns = static_cast<double>(usage1 - usage0) * 1000.0;
  for (const auto& [name, before, after] :
       {std::tuple{"perf", perf0, perf1}, std::tuple{"bpf", bpf0, bpf1}}) {
    SCOPED_TRACE(name);
    const double busy_ns = delta(before, after, b, "cpu-clock");
    const double pp_switches = delta(before, after, p, "context-switches");
    const double idle_ns = delta(before, after, i, "cpu-clock");
    std::printf(
        "%s: busy cpu-clock %.0f ns vs cpu.stat %.0f ns (%+.3f%%); ping-pong switches "
        "%.0f vs /proc %llu (%+.3f%%); idle cpu-clock %.0f ns\n",
        name, busy_ns, cpu_stat_ns, 100 * (busy_ns / cpu_stat_ns - 1), pp_switches,
        static_cast<unsigned long long>(pp.switches),
        100 * (pp_switches / static_cast<double>(pp.switches) - 1), idle_ns);
    ExpectMatchesCpuStat(busy_ns, cpu_stat_ns, busy_off_task_ns);
    EXPECT_GT(busy_ns, 0.9e9);
    EXPECT_NEAR(pp_switches, static_cast<double>(pp.switches),
                0.02 * static_cast<double>(pp.switches));
    EXPECT_GT(pp.switches, 4000u);
    EXPECT_LT(idle_ns, 0.005 * busy_ns);
    const double pp_ns = delta(before, after, p, "cpu-clock");
    std::printf("%s: ping-pong cpu-clock %.0f ns vs cpu.stat %.0f ns (%+.3f%%)\n", name, pp_ns,
                pp_cpu_stat_ns, 100 * (pp_ns / pp_cpu_stat_ns - 1));
    for (const char* event : {"cpu-clock", "task-clock", "context-switches", "page-faults"}) {
      const double children = delta(before, after, b, event) + delta(before, after, p, event) +
                              delta(before, after, i, event);
      // perf mode reads the parent's and the children's counters a few
      // microseconds apart: 0.01% of slack.
      EXPECT_GE(delta(before, after, t, event), children * (1 - 1e-4)) << event;
    }
  }
  for (const std::string& path : {b, p, t}) {
    for (const char* event : {"cpu-clock", "task-clock", "context-switches"}) {
      const double in_perf = delta(perf0, perf1, path, event);
      const double in_bpf = delta(bpf0, bpf1, path, event);
      if (in_perf < 1000) continue;  // a handful of switches: 1% is below one
      std::printf("%s %s: perf %.0f bpf %.0f (%+.3f%%)\n", path.c_str(), event, in_perf, in_bpf,
                  100 * (in_bpf / in_perf - 1));
      EXPECT_NEAR(in_bpf, in_perf, 0.01 * in_perf) << path << " " << event;
    }
  }
}

// The busy scenario again and again, both modes at once: a child that starts
// on `start` (the first CPU or the last), moves itself into the cgroup, pins
// itself to the last CPU and spins 200 ms. Every run's cpu-clock in bpf mode
// must match perf mode's and cpu.stat's: a segment lost at the self-move,
// the migration or the exit shows as a run tens of milliseconds short.
TEST_F(AttributionTest, BpfModeKeepsEverySegmentOfRepeatedBusyRuns) {
  const std::string bpf_reason = BpfUnavailableReason();
  if (!bpf_reason.empty()) GTEST_SKIP() << "bpf mode unavailable: " << bpf_reason;
  const std::string top = "pmu-attr-rep-" + std::to_string(getpid());
  ScopedCgroup parent(root_ + "/" + top);
  ScopedCgroup busy(parent.path() + "/busy");
  auto perf = Make(ConfigFor(config::CgroupMode::kPerf, top));
  auto bpf = Make(ConfigFor(config::CgroupMode::kBpf, top));
  ASSERT_TRUE(perf && bpf);
  const std::string b = "/" + top + "/busy";
  for (int run = 0; run < 20; ++run) {
    SCOPED_TRACE(run);
    perf->EndRound();
    bpf->EndRound();
    const double perf0 = Count(*perf->Latest(), b, "cpu-clock");
    const double bpf0 = Count(*bpf->Latest(), b, "cpu-clock");
    const uint64_t usage0 = UsageUsec(busy.path());
    const int start = run % 2 == 0 ? cpus_.front() : cpus_.back();
    const pid_t child = fork();
    if (child == 0) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(static_cast<size_t>(start), &set);
      sched_setaffinity(0, sizeof(set), &set);
      JoinCgroup(busy.path());
      BusyLoop(cpus_.back(), 200ms);
      _exit(0);
    }
    WaitExit(child);
    const double cpu_stat_ns = static_cast<double>(UsageUsec(busy.path()) - usage0) * 1e3;
    perf->EndRound();
    bpf->EndRound();
    const double in_perf = Count(*perf->Latest(), b, "cpu-clock") - perf0;
    const double in_bpf = Count(*bpf->Latest(), b, "cpu-clock") - bpf0;
    std::printf("run %2d (from cpu %d): cpu.stat %.0f perf %.0f (%+.3f%%) bpf %.0f (%+.3f%%)\n",
                run, start, cpu_stat_ns, in_perf, 100 * (in_perf / cpu_stat_ns - 1), in_bpf,
                100 * (in_bpf / cpu_stat_ns - 1));
    EXPECT_NEAR(in_bpf, in_perf, 0.01 * in_perf);
    // Steal time on a loaded VM puts both modes' cpu-clock (wall time on the
    // CPU) above cpu.stat's runtime, by up to 11% in a run without the
    // machine lock: against cpu.stat only where perf mode agrees with it.
    if (std::abs(in_perf / cpu_stat_ns - 1) < 0.02) {
      EXPECT_NEAR(in_bpf, cpu_stat_ns, 0.02 * cpu_stat_ns);
    }
  }
}

class LifecycleTest : public AttributionTest,
                      public ::testing::WithParamInterface<config::CgroupMode> {};

TEST_P(LifecycleTest, CgroupsAppearGoAwayAndRestartAtZero) {
  if (GetParam() == config::CgroupMode::kBpf && !BpfUnavailableReason().empty()) {
    GTEST_SKIP() << "bpf mode unavailable: " << BpfUnavailableReason();
  }
  const std::string top = "pmu-attr-life-" + std::to_string(getpid());
  ScopedCgroup parent(root_ + "/" + top);
  config::Config c = ConfigFor(GetParam(), top);
  c.cgroups.rescan = 100ms;
  c.cgroups.max = 3;
  testing::LogCapture log;
  auto attribution = Make(c);
  ASSERT_TRUE(attribution);
  const std::string a = "/" + top + "/a";
  const auto round = [&] {
    std::this_thread::sleep_for(120ms);  // one rescan period
    attribution->EndRound();
    return attribution->Latest();
  };
  EXPECT_EQ(Count(*attribution->Latest(), a, "cpu-clock"), -1);
  double first = 0;
  {
    ScopedCgroup cg(root_ + a);
    EXPECT_EQ(Count(*round(), a, "cpu-clock"), 0);  // appears within one rescan
    WaitExit(SpawnIn(cg.path(), [&] { BusyLoop(cpus_.back(), 200ms); }));
    first = Count(*round(), a, "cpu-clock");
    EXPECT_GT(first, 150e6);
  }
  EXPECT_EQ(Count(*round(), a, "cpu-clock"), -1);  // removed: its series go away
  {
    ScopedCgroup again(root_ + a);
    const auto s = round();
    EXPECT_GE(Count(*s, a, "cpu-clock"), 0);
    EXPECT_LT(Count(*s, a, "cpu-clock"), first / 10);  // a new series, not a jump
    // Over max: "/top", a, b, c match; three are counted, one reported.
    ScopedCgroup b(root_ + "/" + top + "/b");
    ScopedCgroup d(root_ + "/" + top + "/c");
    round();
    const auto over = round();
    EXPECT_EQ(over->matched, 4u);
    EXPECT_EQ(over->cgroups.size(), 3u);
    metrics::FamilyCollector out;
    attribution->Families()->Write(metrics::ExportSnapshot{}, out);
    EXPECT_EQ(out.Value("pmu_cgroup_not_counted"), 1);
  }
  EXPECT_EQ(log.Count("cgroups match; counting the first"), 1u) << log.Text();
  EXPECT_EQ(log.Count("error|"), 0u) << log.Text();
}

INSTANTIATE_TEST_SUITE_P(Modes, LifecycleTest,
                         ::testing::Values(config::CgroupMode::kPerf, config::CgroupMode::kBpf),
                         [](const ::testing::TestParamInfo<config::CgroupMode>& mode) {
                           return std::string(ToString(mode.param));
                         });

TEST_F(AttributionTest, ServiceExportsCgroupFamiliesAndCountsThemInTheGuard) {
  const std::string top = "pmu-attr-svc-" + std::to_string(getpid());
  ScopedCgroup parent(root_ + "/" + top);
  ScopedCgroup child(parent.path() + "/child.service");
  config::Config c = ConfigFor(config::CgroupMode::kAuto, top);
  c.exporter.listen.port = 0;
  {
    daemon::Service service(c);
    service.Start();
    const std::string text = service.RenderMetrics();
    EXPECT_NE(text.find("pmu_cgroup_events_total{cgroup=\"/" + top +
                        "/child.service\",event=\"cpu-clock\"}"),
              std::string::npos)
        << text;
    EXPECT_NE(
        text.find("pmu_cgroup_info{cgroup=\"/" + top +
                  "/child.service\",unit=\"child.service\",pod_uid=\"\",container_id=\"\"} 1"),
        std::string::npos);
    const std::string mode = BpfUnavailableReason().empty() ? "bpf" : "perf";
    EXPECT_NE(text.find("pmu_cgroup_attribution_mode{mode=\"" + mode + "\"} 1"), std::string::npos);
    service.Stop();
  }
  // max cgroups x 4 events x 3 families: over a small max_series.
  c.exporter.max_series = 5000;
  daemon::Service refused(c);
  try {
    refused.Start();
    ADD_FAILURE() << "a configuration over max_series started";
  } catch (const metrics::CardinalityError& e) {
    EXPECT_NE(std::string(e.what()).find("pmu_cgroup_events_total = 4000"), std::string::npos)
        << e.what();
  }
}

TEST_F(AttributionTest, PerfModeRefusesOverItsFdBudgetWithTheNumbers) {
  const std::string top = "pmu-attr-fd-" + std::to_string(getpid());
  ScopedCgroup parent(root_ + "/" + top);
  config::Config c = ConfigFor(config::CgroupMode::kPerf, top);
  c.cgroups.max = 100000;
  const std::string expected = "needs up to " + std::to_string(100000 * cpus_.size() * 4) +
                               " file descriptors (max 100000 cgroups x " +
                               std::to_string(cpus_.size()) + " CPUs x 4 events)";
  // In a child: a lowered hard limit may not come back (without
  // CAP_SYS_RESOURCE), and the tests after this one need their fds.
  int out[2];
  ASSERT_EQ(pipe(out), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(out[0]);
    const rlimit low{4096, 4096};
    std::string message = "setrlimit failed";
    if (setrlimit(RLIMIT_NOFILE, &low) == 0) {
      try {
        Make(c);
        message = "perf mode accepted more fds than RLIMIT_NOFILE";
      } catch (const std::runtime_error& e) {
        message = e.what();
      }
    }
    const ssize_t n = write(out[1], message.data(), message.size());
    _exit(n == static_cast<ssize_t>(message.size()) ? 0 : 1);
  }
  close(out[1]);
  std::string message;
  char buffer[512];
  for (ssize_t n; (n = read(out[0], buffer, sizeof(buffer))) > 0;) {
    message.append(buffer, static_cast<size_t>(n));
  }
  close(out[0]);
  WaitExit(child);
  EXPECT_NE(message.find(expected), std::string::npos) << message;
}

// The value of the exposition line `series` ("name{labels}"), -1 if absent.
double SeriesValue(const std::string& text, const std::string& series) {
  const size_t at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + series.size() + 2));
}

class ContinuityTest : public AttributionTest,
                       public ::testing::WithParamInterface<config::CgroupMode> {
 protected:
  void SetUp() override {
    AttributionTest::SetUp();
    if (IsSkipped()) return;
    if (GetParam() == config::CgroupMode::kBpf && !BpfUnavailableReason().empty()) {
      GTEST_SKIP() << "bpf mode unavailable: " << BpfUnavailableReason();
    }
  }

  std::unique_ptr<CgroupAttribution> MakeAfter(const config::Config& c,
                                               CgroupAttribution* previous) const {
    AttributionOptions options;
    options.cpus = cpus_;
    options.other_fds = 512;
    options.previous = previous;
    return CgroupAttribution::Create(c, plan_, options);
  }
};

// Issue 11 item 8: exported counters stay monotonic across reloads.
TEST_P(ContinuityTest, ReloadKeepsTotalsPerCgroupAndEvent) {
  const std::string top = "pmu-attr-reload-" + std::to_string(getpid());
  ScopedCgroup parent(root_ + "/" + top);
  ScopedCgroup busy(parent.path() + "/busy");
  auto again = std::make_unique<ScopedCgroup>(parent.path() + "/again");
  const std::string b = "/" + top + "/busy", a = "/" + top + "/again";
  const config::Config c = ConfigFor(GetParam(), top);
  const uint64_t usage0 = UsageUsec(busy.path());
  const double off_task0 = OffTaskNs();
  const auto cpu_stat_ns = [&] {
    return static_cast<double>(UsageUsec(busy.path()) - usage0) * 1e3;
  };

  auto first = Make(c);
  ASSERT_TRUE(first);
  WaitExit(SpawnIn(busy.path(), [&] { BusyLoop(cpus_.back(), 300ms); }));
  WaitExit(SpawnIn(again->path(), [&] { BusyLoop(cpus_.back(), 100ms); }));
  first->EndRound();
  const double before = Count(*first->Latest(), b, "cpu-clock");
  const double again_before = Count(*first->Latest(), a, "cpu-clock");
  EXPECT_GT(before, 250e6);
  EXPECT_GT(again_before, 80e6);
  // Work the first attribution never reads: the same configuration shares
  // its counters, so the second sees it.
  WaitExit(SpawnIn(busy.path(), [&] { BusyLoop(cpus_.back(), 300ms); }));
  auto second = MakeAfter(c, first.get());
  ASSERT_TRUE(second);
  EXPECT_TRUE(second->shares_previous_counters());
  first.reset();  // as a reload does: the shared counters stay open
  second->EndRound();
  const double same = Count(*second->Latest(), b, "cpu-clock");
  std::printf(
      "same config: busy cpu-clock %.0f ns after the reload (%.0f before) vs cpu.stat %.0f ns\n",
      same, before, cpu_stat_ns());
  EXPECT_GE(same, before);
  ExpectMatchesCpuStat(same, cpu_stat_ns(), OffTaskNs() - off_task0);
  EXPECT_GE(Count(*second->Latest(), a, "context-switches"), 1);

  // Another event list: new counters, the totals of the events kept carry
  // over; a cgroup re-created under its path meanwhile starts again.
  again.reset();
  again = std::make_unique<ScopedCgroup>(parent.path() + "/again");
  config::Config fewer = c;
  fewer.cgroups.events = {"cpu-clock", "context-switches"};
  auto third = MakeAfter(fewer, second.get());
  ASSERT_TRUE(third);
  EXPECT_FALSE(third->shares_previous_counters());
  second.reset();
  WaitExit(SpawnIn(busy.path(), [&] { BusyLoop(cpus_.back(), 200ms); }));
  third->EndRound();
  const auto s = third->Latest();
  const double after = Count(*s, b, "cpu-clock");
  std::printf("other events: busy cpu-clock %.0f ns vs cpu.stat %.0f ns (%+.3f%%)\n", after,
              cpu_stat_ns(), 100 * (after / cpu_stat_ns() - 1));
  EXPECT_GE(after, same);
  ExpectMatchesCpuStat(after, cpu_stat_ns(), OffTaskNs() - off_task0);
  EXPECT_EQ(Count(*s, b, "task-clock"), -1);  // no longer attributed
  EXPECT_GE(Count(*s, a, "cpu-clock"), 0);
  EXPECT_LT(Count(*s, a, "cpu-clock"), again_before / 10);  // a reset, not carried
}

INSTANTIATE_TEST_SUITE_P(Modes, ContinuityTest,
                         ::testing::Values(config::CgroupMode::kPerf, config::CgroupMode::kBpf),
                         [](const ::testing::TestParamInfo<config::CgroupMode>& mode) {
                           return std::string(ToString(mode.param));
                         });

// The daemon's wiring: SIGHUP's Reload() with the same and with another
// configuration; pmu_cgroup_events_total never goes back.
TEST_F(AttributionTest, ServiceReloadKeepsCgroupCountersMonotonic) {
  const std::string top = "pmu-attr-hup-" + std::to_string(getpid());
  ScopedCgroup parent(root_ + "/" + top);
  ScopedCgroup child(parent.path() + "/child");
  config::Config c = ConfigFor(config::CgroupMode::kAuto, top);
  c.exporter.listen.port = 0;
  const std::string series =
      "pmu_cgroup_events_total{cgroup=\"/" + top + "/child\",event=\"cpu-clock\"}";
  const uint64_t usage0 = UsageUsec(child.path());
  const double off_task0 = OffTaskNs();
  daemon::Service service(c);
  service.Start();
  WaitExit(SpawnIn(child.path(), [&] { BusyLoop(cpus_.back(), 200ms); }));
  service.SampleOnce();
  const double v1 = SeriesValue(service.RenderMetrics(), series);
  EXPECT_GT(v1, 150e6) << service.RenderMetrics();
  service.Reload(c);
  const double v2 = SeriesValue(service.RenderMetrics(), series);
  EXPECT_GE(v2, v1);
  config::Config fewer = c;
  fewer.cgroups.events = {"cpu-clock", "task-clock"};
  WaitExit(SpawnIn(child.path(), [&] { BusyLoop(cpus_.back(), 200ms); }));
  service.Reload(fewer);
  const double v3 = SeriesValue(service.RenderMetrics(), series);
  EXPECT_GE(v3, v2);
  WaitExit(SpawnIn(child.path(), [&] { BusyLoop(cpus_.back(), 200ms); }));
  service.SampleOnce();
  const double v4 = SeriesValue(service.RenderMetrics(), series);
  const double cpu_stat_ns = static_cast<double>(UsageUsec(child.path()) - usage0) * 1e3;
  std::printf("across two reloads: %.0f, %.0f, %.0f, %.0f ns; cpu.stat %.0f ns\n", v1, v2, v3, v4,
              cpu_stat_ns);
  EXPECT_GE(v4, v3);
  // Nothing ran during the reloads themselves: nothing may be missing.
  ExpectMatchesCpuStat(v4, cpu_stat_ns, OffTaskNs() - off_task0);
  service.Stop();
}

// Takes CPU 1 offline or online; the destructor brings it back online.
class Cpu1Switch {
 public:
  static constexpr const char* kPath = "/sys/devices/system/cpu/cpu1/online";
  ~Cpu1Switch() { Set(true); }
  static bool Set(bool online) {
    const int fd = open(kPath, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return false;
    const bool ok = write(fd, online ? "1" : "0", 1) == 1 || errno == EINVAL;
    close(fd);
    return ok;
  }
};

bool Cpu1Online() {
  std::ifstream in(Cpu1Switch::kPath);
  int on = 0;
  return (in >> on) && on == 1;
}

class HotplugTest : public ContinuityTest {};

TEST_P(HotplugTest, CpusThatComeOnlineAreAttributedAndOfflineOnesKeepTheirCounts) {
  if (access(Cpu1Switch::kPath, W_OK) != 0) {
    GTEST_SKIP() << "CPU 1 cannot be taken offline here (" << Cpu1Switch::kPath << ": "
                 << std::strerror(errno) << ")";
  }
  if (!Cpu1Online()) GTEST_SKIP() << "CPU 1 is offline already";
  const std::string top = "pmu-attr-hotplug-" + std::to_string(getpid());
  ScopedCgroup parent(root_ + "/" + top);
  ScopedCgroup busy(parent.path() + "/busy");
  const std::string b = "/" + top + "/busy";
  const uint64_t usage0 = UsageUsec(busy.path());
  const double off_task0 = OffTaskNs();
  const auto cpu_stat_ns = [&] {
    return static_cast<double>(UsageUsec(busy.path()) - usage0) * 1e3;
  };
  Cpu1Switch restore;
  ASSERT_TRUE(Cpu1Switch::Set(false)) << std::strerror(errno);
  AttributionOptions options;
  options.cpus = {0, 1};  // every CPU the configuration selects, online or not
  options.other_fds = 512;
  auto attribution = CgroupAttribution::Create(ConfigFor(GetParam(), top), plan_, options);
  ASSERT_TRUE(attribution);
  const size_t fds_cpu0 = attribution->Latest()->open_fds;
  // Online: counted from the next rounds on (perf may refuse a CPU that has
  // only just come online for a moment).
  const auto wait_fds = [&](bool more) {
    for (int i = 0; i < 100; ++i) {
      attribution->EndRound();
      const size_t fds = attribution->Latest()->open_fds;
      if (more ? fds > fds_cpu0 : fds == fds_cpu0) return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  };
  ASSERT_TRUE(Cpu1Switch::Set(true));
  ASSERT_TRUE(wait_fds(true)) << "CPU 1's counters never opened";
  WaitExit(SpawnIn(busy.path(), [&] { BusyLoop(1, 300ms); }));
  attribution->EndRound();
  const double on1 = Count(*attribution->Latest(), b, "cpu-clock");
  std::printf("came online: cpu-clock on CPU 1 %.0f ns vs cpu.stat %.0f ns\n", on1, cpu_stat_ns());
  ExpectMatchesCpuStat(on1, cpu_stat_ns(), OffTaskNs() - off_task0);
  // Offline: closed after a last read; the totals stay.
  ASSERT_TRUE(Cpu1Switch::Set(false));
  ASSERT_TRUE(wait_fds(false)) << "CPU 1's counters stayed open";
  EXPECT_GE(Count(*attribution->Latest(), b, "cpu-clock"), on1);
  WaitExit(SpawnIn(busy.path(), [&] { BusyLoop(0, 200ms); }));
  // Back online: fresh counters continue the same totals.
  ASSERT_TRUE(Cpu1Switch::Set(true));
  ASSERT_TRUE(wait_fds(true)) << "CPU 1's counters never reopened";
  WaitExit(SpawnIn(busy.path(), [&] { BusyLoop(1, 300ms); }));
  attribution->EndRound();
  const double total = Count(*attribution->Latest(), b, "cpu-clock");
  std::printf("offline and back: cpu-clock %.0f ns vs cpu.stat %.0f ns (%+.3f%%)\n", total,
              cpu_stat_ns(), 100 * (total / cpu_stat_ns() - 1));
  ExpectMatchesCpuStat(total, cpu_stat_ns(), OffTaskNs() - off_task0);
  EXPECT_GE(Count(*attribution->Latest(), "/" + top, "cpu-clock"), total * (1 - 1e-4));
}

INSTANTIATE_TEST_SUITE_P(Modes, HotplugTest,
                         ::testing::Values(config::CgroupMode::kPerf, config::CgroupMode::kBpf),
                         [](const ::testing::TestParamInfo<config::CgroupMode>& mode) {
                           return std::string(ToString(mode.param));
                         });

// --check-config counts the [cgroups] series as start-up does: the worst
// case of `max` cgroups x attributed events.
TEST(AttributionCheckConfig, CountsCgroupSeriesLikeStartUp) {
  pmu::testing::TempDir dir;
  const std::string events =
      "[[events]]\nname = \"cpu-clock\"\nevent = \"cpu-clock\"\n"
      "[[events]]\nname = \"task-clock\"\nevent = \"task-clock\"\n"
      "[[events]]\nname = \"context-switches\"\nevent = \"context-switches\"\n"
      "[[events]]\nname = \"page-faults\"\nevent = \"page-faults\"\n";
  const std::string cgroups = "[cgroups]\nenabled = true\nmode = \"perf\"\nmax = 1000\n";
  const auto series = [&](const std::string& name, const std::string& text) {
    const pmu::testing::RunResult r = pmu::testing::RunCommand(
        {pmu::testing::DaemonBinary(), "--config", dir.Write(name, text), "--check-config"});
    EXPECT_EQ(r.status, 0) << r.out << r.err;
    const size_t at = r.out.find("\nseries: ");
    return at == std::string::npos ? -1.0 : std::stod(r.out.substr(at + 9));
  };
  const double without = series("without.toml", events);
  const double with = series("with.toml", events + cgroups);
  // 1000 cgroups x 4 events x (count, enabled, running) and their info.
  EXPECT_GE(with - without, 1000 * 4 * 3) << with << " vs " << without;
  const std::string tight =
      dir.Write("tight.toml", "[exporter]\nmax_series = 5000\n" + events + cgroups);
  const pmu::testing::RunResult r =
      pmu::testing::RunCommand({pmu::testing::DaemonBinary(), "--config", tight, "--check-config"});
  EXPECT_EQ(r.status, 2) << r.out << r.err;
  EXPECT_NE(r.err.find("pmu_cgroup_events_total = 4000"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace pmu::attribution
