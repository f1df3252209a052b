// Micro benchmarks of the rseq primitives against the obvious alternatives,
// with a summary of ns/op and the ratios issue 3 sets targets for (printed
// after the google-benchmark table, from the same run).
#include <benchmark/benchmark.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "pmu/rseq/abi.h"
#include "pmu/rseq/counter_read.h"
#include "pmu/rseq/membarrier.h"
#include "pmu/rseq/per_cpu_counter.h"
#include "pmu/rseq/per_cpu_ring.h"

namespace {

using pmu::rseq::PerCpuCounter;
using pmu::rseq::PerCpuRing;

// ---- counters ------------------------------------------------------------------

PerCpuCounter& RseqCounter() {
  static PerCpuCounter counter;
  return counter;
}
alignas(64) std::atomic<std::uint64_t> g_shared_atomic{0};
std::mutex g_mutex;
std::uint64_t g_mutex_counter = 0;
thread_local std::uint64_t t_plain_counter = 0;

void BM_CounterRseq(benchmark::State& state) {
  pmu::rseq::ThreadRegistration registration;
  PerCpuCounter& counter = RseqCounter();
  for (auto _ : state) counter.Add(1);
  state.SetItemsProcessed(state.iterations());
}

void BM_CounterSharedAtomic(benchmark::State& state) {
  for (auto _ : state) g_shared_atomic.fetch_add(1, std::memory_order_relaxed);
  state.SetItemsProcessed(state.iterations());
}

void BM_CounterMutex(benchmark::State& state) {
  for (auto _ : state) {
    std::lock_guard<std::mutex> lock(g_mutex);
    ++g_mutex_counter;
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_CounterThreadLocal(benchmark::State& state) {
  for (auto _ : state) {
    ++t_plain_counter;
    benchmark::ClobberMemory();  // one load+add+store per op, like the others
  }
  state.SetItemsProcessed(state.iterations());
}

// ---- rings ---------------------------------------------------------------------

struct Record {
  std::uint64_t words[6];  // 48 bytes, a typical sample header + 3 values
};
constexpr std::size_t kRingCapacity = 4096;
constexpr int kDrainEvery = 64;

PerCpuRing<Record>& RseqRing() {
  static PerCpuRing<Record> ring(pmu::rseq::PossibleCpuCount(), kRingCapacity);
  return ring;
}

// The baseline: one ring behind a mutex.
class MutexRing {
 public:
  explicit MutexRing(std::size_t capacity) : slots_(capacity) {}
  bool TryPush(const Record& r) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (head_ - tail_ == slots_.size()) return false;
    slots_[head_++ % slots_.size()] = r;
    return true;
  }
  template <class F>
  void DrainAll(F&& f) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (; tail_ != head_; ++tail_) f(0, slots_[tail_ % slots_.size()]);
  }

 private:
  std::mutex mutex_;
  std::vector<Record> slots_;
  std::uint64_t head_ = 0;
  std::uint64_t tail_ = 0;
};

MutexRing& TheMutexRing() {
  static MutexRing ring(kRingCapacity * static_cast<std::size_t>(pmu::rseq::PossibleCpuCount()));
  return ring;
}
std::mutex g_consumer;  // whoever holds it is the single consumer

// One op: push one record; every kDrainEvery pushes, whoever gets the
// consumer lock drains every ring (same scheme for both rings).
template <class Ring>
void PushDrainLoop(benchmark::State& state, Ring& ring) {
  Record r{};
  std::uint64_t sink = 0;
  int n = 0;
  for (auto _ : state) {
    ++r.words[0];
    benchmark::DoNotOptimize(ring.TryPush(r));
    if (++n == kDrainEvery) {
      n = 0;
      if (g_consumer.try_lock()) {
        ring.DrainAll([&](int, const Record& rec) { sink += rec.words[0]; });
        g_consumer.unlock();
      }
    }
  }
  benchmark::DoNotOptimize(sink);
  state.SetItemsProcessed(state.iterations());
}

void BM_RingRseqPushDrain(benchmark::State& state) {
  pmu::rseq::ThreadRegistration registration;
  PushDrainLoop(state, RseqRing());
}

void BM_RingMutexPushDrain(benchmark::State& state) { PushDrainLoop(state, TheMutexRing()); }

// ---- counter reads -------------------------------------------------------------

constexpr int kGroupSize = 4;

bool PinToCpu0() {
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(0, &one);
  return sched_setaffinity(0, sizeof(one), &one) == 0;
}

void BM_ReadSectionFakePages(benchmark::State& state) {
  if (!PinToCpu0()) {
    state.SkipWithError("cannot pin to cpu 0");
    return;
  }
  std::array<perf_event_mmap_page, kGroupSize> pages{};
  std::array<const perf_event_mmap_page*, kGroupSize> ptrs{};
  std::uint64_t fake[kGroupSize] = {11, 22, 33, 44};
  for (int i = 0; i < kGroupSize; ++i) {
    auto& p = pages[static_cast<std::size_t>(i)];
    std::memset(&p, 0, sizeof(p));
    p.index = static_cast<std::uint32_t>(i + 1);
    p.cap_user_rdpmc = 1;
    p.pmc_width = 48;
    ptrs[static_cast<std::size_t>(i)] = &p;
  }
  pmu::rseq::CounterReadResult result;
  for (auto _ : state) {
    if (pmu::rseq::ReadCountersOnCpu(0, ptrs, &result, pmu::rseq::PmcSource::Fake(fake)) !=
        pmu::rseq::ReadStatus::kCommitted) {
      state.SkipWithError("the read section did not commit (rseq unavailable?)");
      break;
    }
    benchmark::DoNotOptimize(result);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_ReadSyscallSoftwareGroup(benchmark::State& state) {
  if (!PinToCpu0()) {
    state.SkipWithError("cannot pin to cpu 0");
    return;
  }
  const std::uint64_t configs[kGroupSize] = {PERF_COUNT_SW_CPU_CLOCK, PERF_COUNT_SW_TASK_CLOCK,
                                             PERF_COUNT_SW_CONTEXT_SWITCHES,
                                             PERF_COUNT_SW_PAGE_FAULTS};
  std::vector<int> fds;
  for (int i = 0; i < kGroupSize; ++i) {
    perf_event_attr attr;
    std::memset(&attr, 0, sizeof(attr));
    attr.size = sizeof(attr);
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = configs[i];
    attr.read_format =
        PERF_FORMAT_GROUP | PERF_FORMAT_TOTAL_TIME_ENABLED | PERF_FORMAT_TOTAL_TIME_RUNNING;
    const long fd = syscall(__NR_perf_event_open, &attr, -1, 0, fds.empty() ? -1 : fds[0], 0);
    if (fd < 0) {
      for (int f : fds) close(f);
      state.SkipWithError(("perf_event_open: " + std::string(std::strerror(errno))).c_str());
      return;
    }
    fds.push_back(static_cast<int>(fd));
  }
  std::uint64_t buf[3 + kGroupSize];
  for (auto _ : state) {
    if (read(fds[0], buf, sizeof(buf)) <= 0) {
      state.SkipWithError("read failed");
      break;
    }
    benchmark::DoNotOptimize(buf);
  }
  for (int f : fds) close(f);
  state.SetItemsProcessed(state.iterations());
}

BENCHMARK(BM_CounterRseq)->Threads(1)->Threads(4)->UseRealTime();
BENCHMARK(BM_CounterSharedAtomic)->Threads(1)->Threads(4)->UseRealTime();
BENCHMARK(BM_CounterMutex)->Threads(1)->Threads(4)->UseRealTime();
BENCHMARK(BM_CounterThreadLocal)->Threads(1)->Threads(4)->UseRealTime();
BENCHMARK(BM_RingRseqPushDrain)->Threads(1)->Threads(4)->UseRealTime();
BENCHMARK(BM_RingMutexPushDrain)->Threads(1)->Threads(4)->UseRealTime();
BENCHMARK(BM_ReadSectionFakePages)->UseRealTime();
BENCHMARK(BM_ReadSyscallSoftwareGroup)->UseRealTime();

// Remembers ns/op (wall clock and CPU) of every run for the summary.
class SummaryReporter : public benchmark::ConsoleReporter {
 public:
  struct Times {
    double wall = 0;
    double cpu = 0;
  };

  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      if (run.error_occurred || run.run_type != Run::RT_Iteration) continue;
      const double to_ns = benchmark::GetTimeUnitMultiplier(benchmark::kNanosecond) /
                           benchmark::GetTimeUnitMultiplier(run.time_unit);
      times_[run.benchmark_name()] = {run.GetAdjustedRealTime() * to_ns,
                                      run.GetAdjustedCPUTime() * to_ns};
    }
    ConsoleReporter::ReportRuns(runs);
  }

  void PrintSummary() const {
    std::printf("\nrseq benchmark summary: ns/op per thread, wall clock (cpu time); mode %s\n",
                std::string(pmu::rseq::ModeName(pmu::rseq::CurrentMode())).c_str());
    for (int t : {1, 4}) {
      std::printf("  threads=%d\n", t);
      for (const char* name :
           {"BM_CounterRseq", "BM_CounterSharedAtomic", "BM_CounterMutex", "BM_CounterThreadLocal",
            "BM_RingRseqPushDrain", "BM_RingMutexPushDrain"}) {
        const Times x = Get(name, t);
        std::printf("    %-24s %9.2f (%7.2f)\n", name, x.wall, x.cpu);
      }
    }
    for (const char* name : {"BM_ReadSectionFakePages", "BM_ReadSyscallSoftwareGroup"}) {
      const Times x = Get(name, 0);
      std::printf("  %-26s %9.2f (%7.2f)   [%d events]\n", name, x.wall, x.cpu, kGroupSize);
    }
    std::printf("\nratios, wall clock (cpu time); target in brackets:\n");
    Ratio("shared atomic / rseq add, 4 threads [>= 10x]", Get("BM_CounterSharedAtomic", 4),
          Get("BM_CounterRseq", 4), 10.0, true);
    Ratio("shared atomic / rseq add, 1 thread", Get("BM_CounterSharedAtomic", 1),
          Get("BM_CounterRseq", 1), 0, true);
    Ratio("mutex / rseq add, 4 threads", Get("BM_CounterMutex", 4), Get("BM_CounterRseq", 4), 0,
          true);
    Ratio("rseq add / thread_local add, 4 threads [<= 2x]", Get("BM_CounterRseq", 4),
          Get("BM_CounterThreadLocal", 4), 2.0, false);
    Ratio("rseq add / thread_local add, 1 thread [<= 2x]", Get("BM_CounterRseq", 1),
          Get("BM_CounterThreadLocal", 1), 2.0, false);
    Ratio("mutex ring / rseq ring push, 4 threads [>= 5x]", Get("BM_RingMutexPushDrain", 4),
          Get("BM_RingRseqPushDrain", 4), 5.0, true);
    Ratio("mutex ring / rseq ring push, 1 thread", Get("BM_RingMutexPushDrain", 1),
          Get("BM_RingRseqPushDrain", 1), 0, true);
    Ratio("read() group / rseq read section", Get("BM_ReadSyscallSoftwareGroup", 0),
          Get("BM_ReadSectionFakePages", 0), 0, true);
  }

 private:
  // threads == 0: a benchmark registered without Threads().
  Times Get(const std::string& name, int threads) const {
    const auto it = times_.find(name + "/real_time" +
                                (threads > 0 ? "/threads:" + std::to_string(threads) : ""));
    return it == times_.end() ? Times{} : it->second;
  }

  static void Ratio(const char* what, Times num, Times den, double target, bool at_least) {
    if (num.wall <= 0 || den.wall <= 0 || den.cpu <= 0) {
      std::printf("  %-50s n/a (a benchmark was skipped)\n", what);
      return;
    }
    const double wall = num.wall / den.wall;
    const double cpu = num.cpu / den.cpu;
    const char* verdict = target <= 0                                    ? ""
                          : (at_least ? wall >= target : wall <= target) ? "  met"
                                                                         : "  MISSED";
    std::printf("  %-50s %7.2fx (%6.2fx)%s\n", what, wall, cpu, verdict);
  }

  std::map<std::string, Times> times_;
};

}  // namespace

int main(int argc, char** argv) {
  pmu::rseq::RegisterMembarrierRseq();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  std::printf("%.*s\n", static_cast<int>(pmu::rseq::ModeDescription().size()),
              pmu::rseq::ModeDescription().data());
  SummaryReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.PrintSummary();
  benchmark::Shutdown();
  return 0;
}
