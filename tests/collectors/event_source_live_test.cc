// Live checks of the new event sources on this host, each against an
// independent source over the same window and against `perf stat -a -A`
// (Debian's linux-perf) run concurrently:
//   - msr/tsc/ per CPU advances at the rdtsc rate (within 1%);
//   - sched:sched_switch per CPU agrees with context-switches (within 1%);
//   - the sum of irq:softirq_entry agrees with /proc/softirqs (within 1%).
// Needs root (or CAP_PERFMON) for CPU-wide events, tracefs (mounted here if
// absent and unmounted again) and perf; skips with the reason otherwise.
// The ratios are printed so the closing note can quote them.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

#include "pmu/collectors/event_source.h"
#include "pmu/collectors/perf_syscalls.h"
#include "pmu/collectors/topology.h"

namespace pmu::collectors {
namespace {

using Clock = std::chrono::steady_clock;

struct Reading {
  uint64_t value = 0, enabled = 0, running = 0;
};

class LiveEvents : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string why;
    EventResolver probe("/");
    if (probe.TracefsDir(&why).empty() && geteuid() == 0 &&
        mount("nodev", "/sys/kernel/tracing", "tracefs", 0, nullptr) == 0) {
      mounted_tracefs_ = true;
    }
  }
  static void TearDownTestSuite() {
    if (mounted_tracefs_ && umount2("/sys/kernel/tracing", MNT_DETACH) != 0) {
      std::printf("cannot unmount the tracefs this test mounted: %s\n", strerror(errno));
    }
  }

  void SetUp() override {
    cpus_ = OnlineCpus();
    resolver_ = std::make_unique<EventResolver>("/");
  }
  void TearDown() override {
    for (int fd : fds_) sys_.Close(fd);
  }

  // Opens `event` CPU-wide on `cpu`, or skips the test with the reason.
  int Open(const std::string& event, int cpu) {
    ResolvedEvent r;
    try {
      r = resolver_->Resolve(event);
    } catch (const EventSpecError& e) {
      skip_ = event + ": " + e.what();
      return -1;
    }
    perf_event_attr attr = r.instances.front().attr;
    attr.read_format = PERF_FORMAT_TOTAL_TIME_ENABLED | PERF_FORMAT_TOTAL_TIME_RUNNING;
    const int fd = sys_.Open(&attr, -1, cpu, -1, 0);
    if (fd < 0) {
      skip_ = event + " cannot be opened CPU-wide (" + std::string(strerror(-fd)) +
              "): needs root or CAP_PERFMON";
      return -1;
    }
    fds_.push_back(fd);
    return fd;
  }
  Reading Read(int fd) {
    Reading r;
    uint64_t buf[3] = {};
    EXPECT_EQ(sys_.Read(fd, buf, sizeof(buf)), static_cast<ssize_t>(sizeof(buf)));
    r.value = buf[0];
    r.enabled = buf[1];
    r.running = buf[2];
    return r;
  }

  // `perf stat -a -A -x,` of `events` for `seconds`, started now in the
  // background; Collect() parses "CPUn,value,,event,run_ns,..." into
  // (event, cpu) -> {value, run_ns}.
  void StartPerf(const std::string& events, double seconds) {
    if (system("command -v perf >/dev/null 2>&1") != 0) return;
    const std::string cmd = "perf stat -a -A -x, -e " + events + " -- sleep " +
                            std::to_string(seconds) + " 2>&1 >/dev/null";
    perf_ = popen(cmd.c_str(), "r");
  }
  std::map<std::pair<std::string, int>, std::pair<double, double>> CollectPerf() {
    std::map<std::pair<std::string, int>, std::pair<double, double>> out;
    if (perf_ == nullptr) return out;
    char line[512];
    while (fgets(line, sizeof(line), perf_) != nullptr) {
      std::vector<std::string> f;
      std::stringstream ss(line);
      std::string item;
      while (std::getline(ss, item, ',')) f.push_back(item);
      if (f.size() < 5 || f[0].rfind("CPU", 0) != 0) continue;
      try {
        out[{f[3], std::stoi(f[0].substr(3))}] = {std::stod(f[1]), std::stod(f[4])};
      } catch (const std::exception&) {
      }
    }
    pclose(perf_);
    perf_ = nullptr;
    return out;
  }

  static inline bool mounted_tracefs_ = false;
  RealPerfSyscalls sys_;
  std::unique_ptr<EventResolver> resolver_;
  std::vector<int> cpus_;
  std::vector<int> fds_;
  std::string skip_;
  FILE* perf_ = nullptr;
};

constexpr double kWindowSeconds = 2.0;

TEST_F(LiveEvents, MsrTscAdvancesAtTheTscRate) {
#if !defined(__x86_64__)
  GTEST_SKIP() << "rdtsc reference only on x86_64";
#else
  std::vector<int> fds;
  for (int cpu : cpus_) {
    fds.push_back(Open("msr/tsc/", cpu));
    if (fds.back() < 0) GTEST_SKIP() << skip_;
  }
  std::vector<Reading> before;
  for (int fd : fds) before.push_back(Read(fd));
  const auto t0 = Clock::now();
  const uint64_t c0 = __rdtsc();
  StartPerf("msr/tsc/", kWindowSeconds);
  std::this_thread::sleep_for(std::chrono::duration<double>(kWindowSeconds));
  const uint64_t c1 = __rdtsc();
  const auto t1 = Clock::now();
  const double seconds = std::chrono::duration<double>(t1 - t0).count();
  const double rdtsc_rate = static_cast<double>(c1 - c0) / seconds;
  const auto perf = CollectPerf();
  for (size_t i = 0; i < fds.size(); ++i) {
    const Reading after = Read(fds[i]);
    const double rate = static_cast<double>(after.value - before[i].value) /
                        (static_cast<double>(after.enabled - before[i].enabled) * 1e-9);
    std::printf("cpu %d: msr/tsc/ %.0f Hz, rdtsc %.0f Hz, ratio %.5f\n", cpus_[i], rate, rdtsc_rate,
                rate / rdtsc_rate);
    EXPECT_NEAR(rate / rdtsc_rate, 1.0, 0.01) << "cpu " << cpus_[i];
    if (auto p = perf.find({"msr/tsc/", cpus_[i]}); p != perf.end()) {
      const double perf_rate = p->second.first / (p->second.second * 1e-9);
      std::printf("cpu %d: vs perf stat %.5f\n", cpus_[i], rate / perf_rate);
      EXPECT_NEAR(rate / perf_rate, 1.0, 0.01) << "cpu " << cpus_[i];
    }
  }
  if (perf.empty()) std::printf("perf stat not available or gave no msr/tsc/ lines\n");
#endif
}

void PinTo(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(static_cast<size_t>(cpu), &set);
  pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

// Per CPU, two threads pinned to it passing a token through pipes: thousands
// of switches a second on every CPU.
class PingPong {
 public:
  explicit PingPong(const std::vector<int>& cpus) {
    for (int cpu : cpus) {
      auto& p = pairs_.emplace_back(std::make_unique<Pair>());
      if (pipe(p->a) != 0 || pipe(p->b) != 0) continue;
      p->ping = std::thread([this, cpu, q = p.get()] { Loop(cpu, q->a[0], q->b[1], true); });
      p->pong = std::thread([this, cpu, q = p.get()] { Loop(cpu, q->b[0], q->a[1], false); });
    }
  }
  ~PingPong() {
    stop_ = true;
    for (auto& p : pairs_) {
      char c = 0;
      (void)!write(p->a[1], &c, 1);
      (void)!write(p->b[1], &c, 1);
      if (p->ping.joinable()) p->ping.join();
      if (p->pong.joinable()) p->pong.join();
      for (int fd : {p->a[0], p->a[1], p->b[0], p->b[1]}) close(fd);
    }
  }

 private:
  struct Pair {
    int a[2] = {-1, -1}, b[2] = {-1, -1};
    std::thread ping, pong;
  };
  void Loop(int cpu, int in, int out, bool starts) {
    PinTo(cpu);
    char c = 0;
    if (starts) (void)!write(out, &c, 1);
    while (!stop_) {
      if (read(in, &c, 1) != 1) break;
      if (stop_) break;
      (void)!write(out, &c, 1);
    }
  }
  std::atomic<bool> stop_{false};
  std::vector<std::unique_ptr<Pair>> pairs_;
};

// Per CPU, a thread sending UDP datagrams to itself over loopback: each one
// raises NET_RX (and timers raise TIMER), so softirqs run on every CPU.
class LoopbackTraffic {
 public:
  explicit LoopbackTraffic(const std::vector<int>& cpus) {
    for (int cpu : cpus) threads_.emplace_back([this, cpu] { Run(cpu); });
  }
  ~LoopbackTraffic() {
    stop_ = true;
    for (auto& t : threads_) t.join();
  }

 private:
  void Run(int cpu) {
    PinTo(cpu);
    const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    bind(fd, reinterpret_cast<sockaddr*>(&addr), len);
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    char buf[64] = {};
    while (!stop_) {
      sendto(fd, buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&addr), len);
      while (recv(fd, buf, sizeof(buf), 0) > 0) {
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    close(fd);
  }
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

TEST_F(LiveEvents, SchedSwitchTracepointMatchesContextSwitches) {
  std::vector<std::pair<int, int>> fds;  // (sched_switch, context-switches) per CPU
  for (int cpu : cpus_) {
    const int sw = Open("sched:sched_switch", cpu);
    const int cs = Open("context-switches", cpu);
    if (sw < 0 || cs < 0) GTEST_SKIP() << skip_;
    fds.emplace_back(sw, cs);
  }
  PingPong load(cpus_);
  std::vector<std::pair<Reading, Reading>> before;
  for (auto [sw, cs] : fds) before.emplace_back(Read(sw), Read(cs));
  StartPerf("sched:sched_switch,context-switches", kWindowSeconds);
  std::this_thread::sleep_for(std::chrono::duration<double>(kWindowSeconds));
  const auto perf = CollectPerf();
  for (size_t i = 0; i < fds.size(); ++i) {
    const Reading sw = Read(fds[i].first);
    const Reading cs = Read(fds[i].second);
    const double d_sw = static_cast<double>(sw.value - before[i].first.value);
    const double d_cs = static_cast<double>(cs.value - before[i].second.value);
    std::printf("cpu %d: sched:sched_switch %.0f, context-switches %.0f, ratio %.5f\n", cpus_[i],
                d_sw, d_cs, d_sw / d_cs);
    ASSERT_GT(d_cs, 1000) << "too few switches to compare at 1%";
    EXPECT_NEAR(d_sw / d_cs, 1.0, 0.01) << "cpu " << cpus_[i];
    const auto p_sw = perf.find({"sched:sched_switch", cpus_[i]});
    const auto p_cs = perf.find({"context-switches", cpus_[i]});
    if (p_sw != perf.end() && p_cs != perf.end()) {
      // Same window for both of perf's events: its own agreement, and ours
      // against its rate.
      const double perf_ratio = p_sw->second.first / p_cs->second.first;
      const double our_rate =
          d_sw / (static_cast<double>(sw.enabled - before[i].first.enabled) * 1e-9);
      const double perf_rate = p_sw->second.first / (p_sw->second.second * 1e-9);
      std::printf("cpu %d: perf stat sched_switch/context-switches %.5f; our/perf rate %.5f\n",
                  cpus_[i], perf_ratio, our_rate / perf_rate);
      EXPECT_NEAR(perf_ratio, d_sw / d_cs, 0.01);
    }
  }
}

uint64_t ProcSoftirqsTotal() {
  std::ifstream in("/proc/softirqs");
  std::string line;
  std::getline(in, line);  // CPU header
  uint64_t total = 0;
  while (std::getline(in, line)) {
    std::stringstream ss(line);
    std::string name;
    ss >> name;
    uint64_t v;
    while (ss >> v) total += v;
  }
  return total;
}

TEST_F(LiveEvents, SoftirqEntryMatchesProcSoftirqs) {
  std::vector<int> fds;
  for (int cpu : cpus_) {
    fds.push_back(Open("irq:softirq_entry", cpu));
    if (fds.back() < 0) GTEST_SKIP() << skip_;
  }
  LoopbackTraffic load(cpus_);
  uint64_t ours0 = 0, ours1 = 0;
  for (int fd : fds) ours0 += Read(fd).value;
  const uint64_t proc0 = ProcSoftirqsTotal();
  StartPerf("irq:softirq_entry", kWindowSeconds);
  std::this_thread::sleep_for(std::chrono::duration<double>(kWindowSeconds));
  const uint64_t proc1 = ProcSoftirqsTotal();
  for (int fd : fds) ours1 += Read(fd).value;
  const auto perf = CollectPerf();
  const double ours = static_cast<double>(ours1 - ours0);
  const double proc = static_cast<double>(proc1 - proc0);
  std::printf("irq:softirq_entry %.0f, /proc/softirqs %.0f, ratio %.5f\n", ours, proc, ours / proc);
  ASSERT_GT(proc, 500) << "too few softirqs to compare at 1%";
  EXPECT_NEAR(ours / proc, 1.0, 0.01);
  double perf_sum = 0;
  for (const auto& [key, v] : perf) perf_sum += key.first == "irq:softirq_entry" ? v.first : 0;
  if (perf_sum > 0) {
    std::printf("perf stat irq:softirq_entry %.0f over its own window, ours/perf %.5f\n", perf_sum,
                ours / perf_sum);
    EXPECT_NEAR(ours / perf_sum, 1.0, 0.05);  // perf's window starts a little later
  }
}

}  // namespace
}  // namespace pmu::collectors
