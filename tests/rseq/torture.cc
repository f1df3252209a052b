#include "torture.h"

#include <linux/perf_event.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "pmu/rseq/abi.h"
#include "pmu/rseq/counter_read.h"
#include "pmu/rseq/inject.h"
#include "pmu/rseq/per_cpu_counter.h"
#include "pmu/rseq/per_cpu_ring.h"
#include "pmu/rseq/read_fault.h"

namespace pmu::rseq::torture {
namespace {

using Clock = std::chrono::steady_clock;

// ---- shared machinery -----------------------------------------------------

// What SIGUSR1 does in the current scenario (set before workers start).
std::atomic<void (*)()> g_signal_action{nullptr};
__thread int t_worker = -1;  // worker index of the calling thread

extern "C" void OnSigusr1(int) {
  const int saved = errno;
  if (auto* action = g_signal_action.load(std::memory_order_acquire)) action();
  errno = saved;
}

class ScopedSignalAction {
 public:
  explicit ScopedSignalAction(void (*action)()) {
    g_signal_action.store(action, std::memory_order_release);
    struct sigaction sa;
    std::memset(&sa, 0, sizeof(sa));
    sa.sa_handler = OnSigusr1;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, &old_);
  }
  ~ScopedSignalAction() {
    sigaction(SIGUSR1, &old_, nullptr);
    g_signal_action.store(nullptr, std::memory_order_release);
  }

 private:
  struct sigaction old_;
};

class ScopedInjection {
 public:
  explicit ScopedInjection(bool on, std::uint32_t loops = 40) {
    if (!on) return;
    for (int s = 0; s < static_cast<int>(InjectStep::kCount); ++s) {
      SetInjectLoops(static_cast<InjectStep>(s), loops);
    }
  }
  ~ScopedInjection() {
    for (int s = 0; s < static_cast<int>(InjectStep::kCount); ++s) {
      SetInjectLoops(static_cast<InjectStep>(s), 0);
    }
  }
};

int ThreadCount(const Options& o) {
  if (o.threads > 0) return o.threads;
  return 6 * static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

// The perturbation every worker applies between operations.
void Perturb(std::uint64_t i, bool signals) {
  if (i % 61 == 0) sched_yield();
  if (signals && i % 97 == 0) raise(SIGUSR1);
  if (i % 251 == 0) {
    const timespec ts{0, 20000};
    nanosleep(&ts, nullptr);
  }
}

// Runs `body(worker_index, stop)` on n threads (each registered for rseq)
// plus, when asked, a thread that sends SIGUSR1 to random workers.
void RunWorkers(int n, double seconds, bool signals,
                const std::function<void(int, const std::atomic<bool>&)>& body) {
  std::atomic<bool> stop{false};
  std::atomic<int> started{0};
  std::vector<pthread_t> handles(static_cast<std::size_t>(n));
  std::vector<std::thread> threads;
  for (int w = 0; w < n; ++w) {
    threads.emplace_back([&, w] {
      ThreadRegistration registration;
      t_worker = w;
      handles[static_cast<std::size_t>(w)] = pthread_self();
      started.fetch_add(1);
      body(w, stop);
    });
  }
  while (started.load() < n) sched_yield();
  std::thread signaller;
  if (signals) {
    signaller = std::thread([&] {
      std::minstd_rand rng(42);
      while (!stop.load(std::memory_order_relaxed)) {
        pthread_kill(handles[rng() % handles.size()], SIGUSR1);
        const timespec ts{0, static_cast<long>(50000 + rng() % 200000)};
        nanosleep(&ts, nullptr);
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop.store(true);
  if (signaller.joinable()) signaller.join();
  for (auto& t : threads) t.join();
}

std::string Summary(const char* what, const Report& r) {
  return std::string(what) + ": " + std::to_string(r.operations) + " ops, " +
         std::to_string(r.handler_operations) + " in handlers, " + std::to_string(r.aborts) +
         " aborts, " + std::to_string(r.fallbacks) + " fallbacks, mode " +
         std::string(ModeName(CurrentMode()));
}

// ---- PerCpuCounter ----------------------------------------------------------

PerCpuCounter* g_counter = nullptr;
std::atomic<std::uint64_t> g_counter_handler_adds{0};

void CounterSignalAction() {
  g_counter->Add(1);
  g_counter_handler_adds.fetch_add(1, std::memory_order_relaxed);
}

// ---- PerCpuRing -------------------------------------------------------------

struct RingRecord {
  std::uint32_t producer;
  std::uint32_t cpu_hint;
  std::uint64_t seq;
  std::uint64_t check[4];
};

std::uint64_t Mix(std::uint64_t producer, std::uint64_t seq, std::uint64_t k) {
  std::uint64_t x = (producer << 40) ^ seq ^ (k * 0x9e3779b97f4a7c15ull);
  x ^= x >> 31;
  x *= 0xbf58476d1ce4e5b9ull;
  return x ^ (x >> 29);
}

RingRecord MakeRecord(std::uint32_t producer, std::uint64_t seq) {
  RingRecord r{producer, 0, seq, {}};
  for (std::uint64_t k = 0; k < 4; ++k) r.check[k] = Mix(producer, seq, k);
  return r;
}

class Bits {
 public:
  explicit Bits(std::size_t n) : words_((n + 63) / 64, 0) {}
  bool Get(std::uint64_t i) const { return (words_[i / 64] >> (i % 64)) & 1u; }
  void Set(std::uint64_t i) { words_[i / 64] |= std::uint64_t{1} << (i % 64); }
  std::size_t size() const { return words_.size() * 64; }

 private:
  std::vector<std::uint64_t> words_;
};

struct RingState {
  std::unique_ptr<PerCpuRing<RingRecord>> ring;
  std::vector<Bits> pushed;                // per producer, written by its thread
  std::vector<std::uint64_t> produced;     // sequence numbers handed out
  std::vector<std::uint64_t> handler_seq;  // per worker, handler producer
  int workers = 0;
};
RingState* g_ring = nullptr;
std::atomic<std::uint64_t> g_ring_handler_pushes{0};

void RingSignalAction() {
  const int w = t_worker;
  if (w < 0 || g_ring == nullptr) return;
  const auto p = static_cast<std::size_t>(g_ring->workers + w);
  std::uint64_t& seq = g_ring->handler_seq[static_cast<std::size_t>(w)];
  if (seq >= g_ring->pushed[p].size()) return;
  const PushResult r = g_ring->ring->TryPush(MakeRecord(static_cast<std::uint32_t>(p), seq));
  if (r.status == PushStatus::kPushed) {
    g_ring->pushed[p].Set(seq);
    g_ring_handler_pushes.fetch_add(1, std::memory_order_relaxed);
  }
  ++seq;
  g_ring->produced[p] = seq;
}

// ---- counter-read section ---------------------------------------------------

constexpr int kPagesPerCpu = 4;
constexpr std::uint64_t kValueStep = 1000;
constexpr std::size_t kFakeCounters = 64;

struct ReadState {
  std::vector<perf_event_mmap_page> pages;  // kPagesPerCpu per CPU
  std::vector<std::vector<const perf_event_mmap_page*>> per_cpu;
  std::uint64_t fake[kFakeCounters];
};
ReadState* g_read = nullptr;
std::atomic<bool> g_read_handler_failed{false};
std::atomic<std::uint64_t> g_read_handler_reads{0};

// Checks one committed result: every page must be one whole generation g
// (value = g * kValueStep, enabled = 8g, running = 7g after the time math,
// which needs time_offset and time_cycles of the same generation).
bool ConsistentResult(const CounterReadResult& res, std::uint64_t* generations) {
  if (!res.times_current) return false;
  for (std::uint32_t i = 0; i < res.count; ++i) {
    const std::uint64_t en = res.time_enabled[i];
    if (en % 8 != 0) return false;
    const std::uint64_t g = en / 8;
    if (res.time_running[i] != 7 * g || res.values[i] != g * kValueStep) return false;
    if (generations != nullptr) {
      if (g < generations[i]) return false;
      generations[i] = g;
    }
  }
  return true;
}

// Reads that must fault (read_fault.h): a fake counter array at a
// non-canonical address makes the section's counter load raise #GP, as a
// switched-off rdpmc does. Done by workers and, nested, by signal handlers
// that may have interrupted another read.
#if defined(__x86_64__)
const volatile std::uint64_t* const kFaultingCounters =
    reinterpret_cast<const volatile std::uint64_t*>(0x8000000000000000ull);
#else
const volatile std::uint64_t* const kFaultingCounters = nullptr;  // no read section
#endif
perf_event_mmap_page g_fault_page;  // index 1, cap_user_rdpmc, never written
std::atomic<std::uint64_t> g_faults_seen{0};
std::atomic<bool> g_fault_status_wrong{false};

void FaultingRead() {
  if (kFaultingCounters == nullptr) return;
  const perf_event_mmap_page* page = &g_fault_page;
  CounterReadResult res;
  switch (ReadCountersOnCpu(CurrentCpu(), {&page, 1}, &res, PmcSource::Fake(kFaultingCounters))) {
    case ReadStatus::kFaulted:
      g_faults_seen.fetch_add(1, std::memory_order_relaxed);
      break;
    case ReadStatus::kWrongCpu:  // migrated before the section
      break;
    case ReadStatus::kNeedRead:  // no rseq in this process
      if (CurrentMode() != Mode::kUnavailable) g_fault_status_wrong.store(true);
      break;
    case ReadStatus::kCommitted:
    case ReadStatus::kAborted:
      g_fault_status_wrong.store(true);
      break;
  }
}

void ReadSignalAction() {
  if (g_read == nullptr) return;
#if !defined(__SANITIZE_THREAD__)
  // (TSan runs signal handlers with every signal blocked: a fault in one
  // could not be delivered.)
  if (g_read_handler_reads.load(std::memory_order_relaxed) % 2 == 0) FaultingRead();
#endif
  const int cpu = CurrentCpu();
  if (cpu < 0 || static_cast<std::size_t>(cpu) >= g_read->per_cpu.size()) return;
  CounterReadResult res;
  const ReadStatus s = ReadCountersOnCpu(cpu, g_read->per_cpu[static_cast<std::size_t>(cpu)], &res,
                                         PmcSource::Fake(g_read->fake));
  if (s == ReadStatus::kCommitted && !ConsistentResult(res, nullptr)) {
    g_read_handler_failed.store(true);
  }
  g_read_handler_reads.fetch_add(1, std::memory_order_relaxed);
}

void StoreRelaxed(auto* field, auto value) { __atomic_store_n(field, value, __ATOMIC_RELAXED); }

// One seqlock-protected update of a fake page to generation g.
void WritePage(perf_event_mmap_page* page, std::size_t page_number, std::uint64_t g,
               const std::uint64_t* fake) {
  const std::uint32_t lock = page->lock;
  __atomic_store_n(&page->lock, lock + 1, __ATOMIC_RELAXED);
  std::atomic_thread_fence(std::memory_order_release);
  const std::uint32_t index =
      g % 11 == 0 ? 0 : static_cast<std::uint32_t>(1 + (page_number * 4 + g % 4) % kFakeCounters);
  StoreRelaxed(&page->index, index);
  const std::uint64_t raw = index == 0 ? 0 : fake[index - 1];
  StoreRelaxed(&page->offset, static_cast<std::int64_t>(g * kValueStep - raw));
  StoreRelaxed(&page->time_enabled, g * 3);
  StoreRelaxed(&page->time_running, g * 2);
  StoreRelaxed(&page->time_offset, g * 4);
  StoreRelaxed(&page->time_cycles, g);  // mask 0: cycles = g, delta = 4g + g
  std::atomic_thread_fence(std::memory_order_release);
  __atomic_store_n(&page->lock, lock + 2, __ATOMIC_RELEASE);
}

}  // namespace

double ScenarioSeconds(double fallback) {
  if (const char* s = std::getenv("PMU_RSEQ_TORTURE_SECONDS")) {
    const double v = std::atof(s);
    if (v > 0) return v;
  }
  return fallback;
}

Report RunCounter(const Options& options) {
  Report report;
  PerCpuCounter counter;
  g_counter = &counter;
  g_counter_handler_adds.store(0);
  ScopedSignalAction action(&CounterSignalAction);
  ScopedInjection injection(options.inject);
  const int n = ThreadCount(options);
  std::vector<std::uint64_t> local(static_cast<std::size_t>(n), 0);
  std::vector<std::uint64_t> ops(static_cast<std::size_t>(n), 0);
  RunWorkers(n, options.seconds, options.signals, [&](int w, const std::atomic<bool>& stop) {
    std::uint64_t sum = 0;
    std::uint64_t i = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      const std::uint64_t delta = 1 + i % 3;
      counter.Add(delta);
      sum += delta;
      ++i;
      Perturb(i, options.signals);
    }
    local[static_cast<std::size_t>(w)] = sum;
    ops[static_cast<std::size_t>(w)] = i;
  });
  std::uint64_t expected = g_counter_handler_adds.load();
  for (std::uint64_t v : local) expected += v;
  for (std::uint64_t v : ops) report.operations += v;
  report.handler_operations = g_counter_handler_adds.load();
  report.aborts = counter.aborts();
  report.fallbacks = counter.fallbacks();
  g_counter = nullptr;
  if (counter.Sum() != expected) {
    report.ok = false;
    report.message =
        "counter sum " + std::to_string(counter.Sum()) + " != expected " + std::to_string(expected);
  } else if (report.operations == 0) {
    report.ok = false;
    report.message = "no operation ran";
  } else {
    report.message = Summary("counter", report);
  }
  return report;
}

Report RunRing(const Options& options) {
  Report report;
  const int n = ThreadCount(options);
  const int cpus = PossibleCpuCount();
  const std::size_t max_seq = std::size_t{1} << 22;
  RingState state;
  state.ring = std::make_unique<PerCpuRing<RingRecord>>(cpus, 256);
  state.workers = n;
  for (int p = 0; p < 2 * n; ++p) state.pushed.emplace_back(p < n ? max_seq : max_seq / 16);
  state.produced.assign(static_cast<std::size_t>(2 * n), 0);
  state.handler_seq.assign(static_cast<std::size_t>(n), 0);
  g_ring = &state;
  g_ring_handler_pushes.store(0);

  // Consumer state (consumer thread only).
  std::vector<Bits> seen;
  for (int p = 0; p < 2 * n; ++p)
    seen.emplace_back(state.pushed[static_cast<std::size_t>(p)].size());
  std::vector<std::int64_t> last(static_cast<std::size_t>(2 * n * cpus), -1);
  std::string failure;
  std::uint64_t drained = 0;
  auto check = [&](int cpu, const RingRecord& r) {
    ++drained;
    if (!failure.empty()) return;
    if (r.producer >= static_cast<std::uint32_t>(2 * n) || r.seq >= seen[r.producer].size()) {
      failure = "record with a bad producer/sequence: torn?";
      return;
    }
    for (std::uint64_t k = 0; k < 4; ++k) {
      if (r.check[k] != Mix(r.producer, r.seq, k)) {
        failure = "torn record from producer " + std::to_string(r.producer);
        return;
      }
    }
    if (seen[r.producer].Get(r.seq)) {
      failure = "record drained twice: producer " + std::to_string(r.producer) + " seq " +
                std::to_string(r.seq);
      return;
    }
    seen[r.producer].Set(r.seq);
    std::int64_t& prev =
        last[static_cast<std::size_t>(r.producer) * static_cast<std::size_t>(cpus) +
             static_cast<std::size_t>(cpu)];
    if (static_cast<std::int64_t>(r.seq) <= prev) {
      failure = "out of order in ring " + std::to_string(cpu) + ": producer " +
                std::to_string(r.producer);
      return;
    }
    prev = static_cast<std::int64_t>(r.seq);
  };
  std::atomic<bool> producers_done{false};
  std::thread consumer([&] {
    ThreadRegistration registration;
    while (!producers_done.load()) {
      if (state.ring->DrainAll(check) == 0) sched_yield();
    }
    state.ring->DrainAll(check);
  });

  ScopedSignalAction action(&RingSignalAction);
  ScopedInjection injection(options.inject);
  std::atomic<std::uint64_t> ops{0};
  RunWorkers(n, options.seconds, options.signals, [&](int w, const std::atomic<bool>& stop) {
    const auto p = static_cast<std::size_t>(w);
    std::uint64_t seq = 0;
    std::uint64_t i = 0;
    while (!stop.load(std::memory_order_relaxed) && seq < max_seq) {
      const RingRecord rec = MakeRecord(static_cast<std::uint32_t>(w), seq);
      const PushResult r =
          (w % 2 == 0) ? state.ring->TryPush(rec) : state.ring->TryPushOnCpu(CurrentCpu(), rec);
      if (r.status == PushStatus::kPushed) {
        state.pushed[p].Set(seq);
        ++seq;
      } else if (r.status == PushStatus::kDropped) {
        ++seq;  // never pushed: must never be drained
      }
      state.produced[p] = seq;
      ++i;
      Perturb(i, options.signals);
    }
    ops.fetch_add(i);
  });
  producers_done.store(true);
  consumer.join();
  g_ring = nullptr;

  report.operations = ops.load();
  report.handler_operations = g_ring_handler_pushes.load();
  report.aborts = state.ring->aborts();
  report.fallbacks = state.ring->fallbacks();
  std::uint64_t pushed_total = 0;
  for (std::size_t p = 0; p < state.pushed.size() && failure.empty(); ++p) {
    for (std::uint64_t s = 0; s < state.produced[p]; ++s) {
      const bool pushed = state.pushed[p].Get(s);
      pushed_total += pushed ? 1 : 0;
      if (pushed != seen[p].Get(s)) {
        failure = std::string(pushed ? "pushed record never drained" : "dropped record drained") +
                  ": producer " + std::to_string(p) + " seq " + std::to_string(s);
        break;
      }
    }
  }
  if (failure.empty() && pushed_total != drained) failure = "drained count != pushed count";
  if (failure.empty() && pushed_total == 0) failure = "nothing was pushed";
  report.ok = failure.empty();
  report.message = report.ok ? Summary("ring", report) + ", " + std::to_string(drained) +
                                   " drained, " + std::to_string(state.ring->drops()) + " drops"
                             : failure;
  return report;
}

Report RunCounterRead(const Options& options) {
  Report report;
  const int cpus = PossibleCpuCount();
  auto state = std::make_unique<ReadState>();
  state->pages.resize(static_cast<std::size_t>(cpus * kPagesPerCpu));
  for (std::size_t j = 0; j < kFakeCounters; ++j) state->fake[j] = j * 1000003 + 12345;
  for (std::size_t i = 0; i < state->pages.size(); ++i) {
    perf_event_mmap_page& page = state->pages[i];
    std::memset(&page, 0, sizeof(page));
    page.cap_user_rdpmc = 1;
    page.cap_user_time = 1;
    page.cap_user_time_short = 1;
    page.pmc_width = 64;
    page.time_mult = 1;
    page.time_shift = 0;
    page.time_mask = 0;
    WritePage(&page, i, 1, state->fake);
  }
  state->per_cpu.resize(static_cast<std::size_t>(cpus));
  for (int c = 0; c < cpus; ++c) {
    for (int k = 0; k < kPagesPerCpu; ++k) {
      state->per_cpu[static_cast<std::size_t>(c)].push_back(
          &state->pages[static_cast<std::size_t>(c * kPagesPerCpu + k)]);
    }
  }
  g_read = state.get();
  g_read_handler_failed.store(false);
  g_read_handler_reads.store(0);
  std::memset(&g_fault_page, 0, sizeof(g_fault_page));
  g_fault_page.index = 1;
  g_fault_page.cap_user_rdpmc = 1;
  g_fault_page.pmc_width = 64;
  g_faults_seen.store(0);
  g_fault_status_wrong.store(false);
  if (!InstallReadFaultHandler()) {
    report.ok = false;
    report.message = "could not install the read fault handler";
    return report;
  }
  const std::uint64_t faults_before = ReadFaultsHandled();

  std::atomic<bool> writer_stop{false};
  std::thread writer([&] {
    std::uint64_t g = 2;
    while (!writer_stop.load(std::memory_order_relaxed)) {
      for (std::size_t i = 0; i < state->pages.size(); ++i)
        WritePage(&state->pages[i], i, g, state->fake);
      ++g;
      if (g % 64 == 0) sched_yield();
    }
  });

  ScopedSignalAction action(&ReadSignalAction);
  ScopedInjection injection(options.inject, 10);
  const int n = ThreadCount(options);
  std::atomic<std::uint64_t> committed{0}, need_read{0}, wrong_cpu{0}, aborted{0}, faulted{0},
      ops{0};
  std::atomic<bool> torn{false};
  RunWorkers(n, options.seconds, options.signals, [&](int, const std::atomic<bool>& stop) {
    std::vector<std::uint64_t> generations(static_cast<std::size_t>(cpus * kPagesPerCpu), 0);
    std::uint64_t i = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      const int cpu = CurrentCpu();
      CounterReadResult res;
      switch (ReadCountersOnCpu(cpu, state->per_cpu[static_cast<std::size_t>(cpu)], &res,
                                PmcSource::Fake(state->fake))) {
        case ReadStatus::kCommitted:
          committed.fetch_add(1, std::memory_order_relaxed);
          if (!ConsistentResult(res, &generations[static_cast<std::size_t>(cpu * kPagesPerCpu)])) {
            torn.store(true);
          }
          break;
        case ReadStatus::kNeedRead:
          need_read.fetch_add(1, std::memory_order_relaxed);
          if (res.need_read_index >= kPagesPerCpu) torn.store(true);
          break;
        case ReadStatus::kWrongCpu:
          wrong_cpu.fetch_add(1, std::memory_order_relaxed);
          break;
        case ReadStatus::kAborted:
          aborted.fetch_add(1, std::memory_order_relaxed);
          break;
        case ReadStatus::kFaulted:
          faulted.fetch_add(1, std::memory_order_relaxed);
          break;
      }
      ++i;
      if (i % 53 == 0) FaultingRead();
      Perturb(i, options.signals);
    }
    ops.fetch_add(i);
  });
  writer_stop.store(true);
  writer.join();
  g_read = nullptr;
  RemoveReadFaultHandler();
  const std::uint64_t faults_handled = ReadFaultsHandled() - faults_before;

  report.operations = ops.load();
  report.handler_operations = g_read_handler_reads.load();
  report.aborts = aborted.load();
  const bool sections = CurrentMode() != Mode::kUnavailable;
  if (torn.load() || g_read_handler_failed.load()) {
    report.ok = false;
    report.message = "torn or backwards counter read";
  } else if (faulted.load() != 0) {
    report.ok = false;
    report.message = "a read of fake pages reported a fault";
  } else if (g_fault_status_wrong.load()) {
    report.ok = false;
    report.message = "a faulting read ended committed, aborted or need-read with rseq";
  } else if (sections && kFaultingCounters != nullptr && g_faults_seen.load() == 0) {
    report.ok = false;
    report.message = "no faulting read reported kFaulted";
  } else if (g_faults_seen.load() > faults_handled) {
    report.ok = false;
    report.message = "more kFaulted reads than faults the handler took";
  } else if (sections && committed.load() == 0) {
    report.ok = false;
    report.message = "no read committed although rseq is available";
  } else if (!sections && committed.load() != 0) {
    report.ok = false;
    report.message = "a read committed without rseq";
  } else {
    report.message =
        "counter-read: " + std::to_string(committed.load()) + " committed, " +
        std::to_string(need_read.load()) + " need read(), " + std::to_string(wrong_cpu.load()) +
        " wrong cpu, " + std::to_string(aborted.load()) + " aborted, " +
        std::to_string(g_faults_seen.load()) + " faulted (" + std::to_string(faults_handled) +
        " faults handled), " + std::to_string(report.handler_operations) + " in handlers, mode " +
        std::string(ModeName(CurrentMode()));
  }
  return report;
}

Report RunSameCpuPreemption(const Options& options) {
  Report report;
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) {
    report.ok = false;
    report.message = "sched_getaffinity failed";
    return report;
  }
  int target = -1;
  for (int c = 0; c < CPU_SETSIZE && target < 0; ++c) {
    if (CPU_ISSET(static_cast<std::size_t>(c), &allowed)) target = c;
  }
  PerCpuCounter counter;
  ScopedInjection injection(options.inject, 0);
  if (options.inject) SetInjectLoops(InjectStep::kBeforeCommit, 3000);
  std::atomic<bool> stop{false};
  std::atomic<int> pinned{0};
  std::uint64_t counts[2] = {0, 0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      ThreadRegistration registration;
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(static_cast<std::size_t>(target), &one);
      if (pthread_setaffinity_np(pthread_self(), sizeof(one), &one) == 0) pinned.fetch_add(1);
      std::uint64_t i = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        counter.Add(1);
        ++i;
      }
      counts[t] = i;
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(options.seconds));
  stop.store(true);
  for (auto& t : threads) t.join();
  report.operations = counts[0] + counts[1];
  report.aborts = counter.aborts();
  report.fallbacks = counter.fallbacks();
  if (pinned.load() != 2) {
    report.ok = false;
    report.message = "could not pin both threads to cpu " + std::to_string(target);
  } else if (counter.Sum() != report.operations) {
    report.ok = false;
    report.message =
        "sum " + std::to_string(counter.Sum()) + " != " + std::to_string(report.operations);
  } else if (report.aborts == 0) {
    report.ok = false;
    report.message = "no abort observed with two threads on cpu " + std::to_string(target);
  } else {
    report.message = Summary("same-cpu preemption", report);
  }
  return report;
}

}  // namespace pmu::rseq::torture
