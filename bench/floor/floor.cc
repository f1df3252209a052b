// The floor: the least any per-CPU sampler of cpu-clock + context-switches
// can cost. One thread per online CPU, pinned to it, opens one CPU-wide perf
// group (cpu-clock leader, context-switches member), then sleeps to an
// absolute CLOCK_MONOTONIC schedule and read()s the group once per interval,
// nothing else: no ring, no aggregation, no exposition.
//
//   floor <interval_ns>     runs until SIGTERM or SIGINT
//
// bench/floor/run_floor.py runs it beside the daemon and compares the CPU
// time (schedstat run time of every thread) of the two processes.
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

void Sampler(int cpu, int leader, int64_t interval_ns) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(static_cast<size_t>(cpu), &set);
  pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
  // nr, time_enabled, time_running, two values.
  uint64_t buf[5];
  timespec next{};
  clock_gettime(CLOCK_MONOTONIC, &next);
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
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: floor <interval_ns>\n");
    return 2;
  }
  const int64_t interval_ns = std::atoll(argv[1]);
  if (interval_ns <= 0) {
    std::fprintf(stderr, "floor: interval must be > 0 ns\n");
    return 2;
  }
  // Signals go to sigwait below only.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  std::vector<int> fds;
  std::vector<std::thread> threads;
  for (int cpu : OnlineCpus()) {
    const int leader = OpenCounter(PERF_COUNT_SW_CPU_CLOCK, cpu, -1);
    const int member = leader < 0 ? -1 : OpenCounter(PERF_COUNT_SW_CONTEXT_SWITCHES, cpu, leader);
    if (leader < 0 || member < 0) {
      std::fprintf(stderr, "floor: perf_event_open on cpu %d: %s\n", cpu, std::strerror(errno));
      return 1;
    }
    fds.push_back(leader);
    fds.push_back(member);
    threads.emplace_back(Sampler, cpu, leader, interval_ns);
  }
  std::printf("floor: %zu threads, every %lld ns\n", threads.size(),
              static_cast<long long>(interval_ns));
  std::fflush(stdout);
  int sig = 0;
  sigwait(&signals, &sig);
  g_stop = true;
  for (auto& t : threads) t.join();
  for (int fd : fds) close(fd);
  return 0;
}
