// The floor: the least any per-CPU sampler of cpu-clock + context-switches
// can cost. One thread per online CPU, pinned to it, opens one CPU-wide perf
// group (cpu-clock leader, context-switches member), then sleeps to an
// absolute CLOCK_MONOTONIC schedule and read()s the group once per interval,
// nothing else: no ring, no aggregation, no exposition.
//
//   floor <interval_ns> [<stat_period_ns>]     runs until SIGTERM or SIGINT
//
// With stat_period_ns, the lowest CPU's thread also preads /proc/stat (one
// held descriptor) at the first wake-up of every stat_period_ns: the least
// the default configuration's cpu_busy_ratio, a histogram of per-CPU busy
// ratios over 1 s /proc/stat windows, can add.
//
// bench/floor/run_floor.py runs it beside the daemon and compares the CPU
// time (schedstat run time of every thread) of the two processes.
#include <fcntl.h>
#include <linux/perf_event.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace {

std::atomic<bool> g_stop{false};

int OpenCounter(uint64_t config, int cpu, int group_fd) {
  perf_event_attr attr{};
  attr.size = sizeof(attr);
  attr.type = PERF_TYPE_SOFTWARE;
  attr.config = config;
  attr.read_format =
      PERF_FORMAT_GROUP | PERF_FORMAT_TOTAL_TIME_ENABLED | PERF_FORMAT_TOTAL_TIME_RUNNING;
  return static_cast<int>(
      syscall(SYS_perf_event_open, &attr, -1, cpu, group_fd, PERF_FLAG_FD_CLOEXEC));
}

// "0-3,5" -> {0,1,2,3,5}
std::vector<int> OnlineCpus() {
  std::ifstream in("/sys/devices/system/cpu/online");
  std::string text;
  std::getline(in, text);
  std::vector<int> cpus;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find(',', pos);
    if (end == std::string::npos) end = text.size();
    const std::string part = text.substr(pos, end - pos);
    const size_t dash = part.find('-');
    const int lo = std::stoi(part);
    const int hi = dash == std::string::npos ? lo : std::stoi(part.substr(dash + 1));
    for (int c = lo; c <= hi; ++c) cpus.push_back(c);
    pos = end + 1;
  }
  return cpus;
}

// stat_fd >= 0: pread /proc/stat from it once per stat_period_ns.
void Sampler(int cpu, int leader, int64_t interval_ns, int stat_fd, int64_t stat_period_ns) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(static_cast<size_t>(cpu), &set);
  pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
  // nr, time_enabled, time_running, two values.
  uint64_t buf[5];
  timespec next{};
  clock_gettime(CLOCK_MONOTONIC, &next);
  std::vector<char> stat_buf(stat_fd >= 0 ? 16384 : 0);
  int64_t next_stat_ns = 0;
  while (!g_stop.load(std::memory_order_relaxed)) {
    int64_t ns = next.tv_nsec + interval_ns;
    next.tv_sec += ns / 1'000'000'000;
    next.tv_nsec = ns % 1'000'000'000;
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, nullptr) == EINTR) {
    }
    if (read(leader, buf, sizeof(buf)) < 0) {
      std::fprintf(stderr, "floor: read on cpu %d: %s\n", cpu, std::strerror(errno));
      return;
    }
    const int64_t now_ns = next.tv_sec * 1'000'000'000LL + next.tv_nsec;
    if (stat_fd >= 0 && now_ns >= next_stat_ns) {
      if (pread(stat_fd, stat_buf.data(), stat_buf.size(), 0) < 0) {
        std::fprintf(stderr, "floor: /proc/stat: %s\n", std::strerror(errno));
        return;
      }
      next_stat_ns = now_ns + stat_period_ns;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2 && argc != 3) {
    std::fprintf(stderr, "usage: floor <interval_ns> [<stat_period_ns>]\n");
    return 2;
  }
  const int64_t interval_ns = std::atoll(argv[1]);
  const int64_t stat_period_ns = argc == 3 ? std::atoll(argv[2]) : 0;
  if (interval_ns <= 0 || stat_period_ns < 0) {
    std::fprintf(stderr, "floor: interval must be > 0 ns, stat period >= 0 ns\n");
    return 2;
  }
  const int stat_fd = stat_period_ns > 0 ? open("/proc/stat", O_RDONLY | O_CLOEXEC) : -1;
  if (stat_period_ns > 0 && stat_fd < 0) {
    std::fprintf(stderr, "floor: /proc/stat: %s\n", std::strerror(errno));
    return 1;
  }
  // Signals go to sigwait below only.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  std::vector<int> fds;
  std::vector<std::thread> threads;
  const std::vector<int> cpus = OnlineCpus();
  for (int cpu : cpus) {
    const int leader = OpenCounter(PERF_COUNT_SW_CPU_CLOCK, cpu, -1);
    const int member = leader < 0 ? -1 : OpenCounter(PERF_COUNT_SW_CONTEXT_SWITCHES, cpu, leader);
    if (leader < 0 || member < 0) {
      std::fprintf(stderr, "floor: perf_event_open on cpu %d: %s\n", cpu, std::strerror(errno));
      return 1;
    }
    fds.push_back(leader);
    fds.push_back(member);
    const bool reads_stat = cpu == cpus.front();
    threads.emplace_back(Sampler, cpu, leader, interval_ns, reads_stat ? stat_fd : -1,
                         stat_period_ns);
  }
  std::printf("floor: %zu threads, every %lld ns\n", threads.size(),
              static_cast<long long>(interval_ns));
  std::fflush(stdout);
  int sig = 0;
  sigwait(&signals, &sig);
  g_stop = true;
  for (auto& t : threads) t.join();
  for (int fd : fds) close(fd);
  if (stat_fd >= 0) close(stat_fd);
  return 0;
}
