// Pipeline: everything one configuration samples with — the event plan, one
// CpuSampler (thread + perf fds) per selected online CPU, the per-CPU rseq
// rings they push into, the Aggregator that drains them, the kernel
// statistics reader, and the aggregator thread that runs rounds and
// publishes an immutable Snapshot.
//
// Aggregation is off the sampling clock: the samplers tick every interval;
// the aggregator thread sleeps until one of
//   - its drain period (DrainPeriod(): interval x kDrainTicks, at most
//     kMaxDrainPeriod; the rings hold twice that many ticks),
//   - a request for a fresh snapshot (Fresh(): a scrape),
//   - a CPU uevent from the kernel (CpuUevents; hotplug),
//   - Stop(),
// and then runs one round. Per-interval values (IntervalRecord, HostInterval,
// derived histograms) come from the readings' own timestamps, ticks and
// sequence numbers, so when a round runs changes nothing they hold.
//
// One round (aggregator thread; SampleNow() runs one synchronously):
//   1. hotplug, when a CPU uevent arrived, on the slow safety poll
//      (kHotplugSafetyPoll) or in a synchronous round: a CPU that went
//      offline has its sampler stopped after one last reading of its fds (a
//      CPU-wide event keeps its final count after its CPU went down), then
//      drained and closed; one that came (back) online gets new fds with a
//      new fd generation and a new sampler at once; totals continue; after
//      a change the PMUs' cpumask/cpus are read again and a CPU whose set of
//      groups changed (an uncore event the kernel moved to it, or away) is
//      reopened with a new generation;
//   2. drain: every queued GroupSample, sorted by (CPU, fd generation, seq)
//      whatever ring carried it, into the Aggregator, whose completed ticks
//      and host slots go to the observers;
//   3. /proc/stat readings for observers that need it (OnProcStat), in the
//      order taken: while running they are taken by the sampler of the
//      lowest sampled CPU after its tick, every ProcStatEveryTicks() ticks
//      (the shortest observer's ProcStatPeriod(): what it resolves),
//      through a held descriptor, and only copied there (its "cpu" lines);
//      the round parses them; a synchronous round reads once itself;
//   4. kernel statistics: each enabled [stats] source read once (these are
//      totals: reading them when a round runs is the resolution they need);
//   5. observers' EndRound, then the Snapshot is published.
//
// Reload: a new Pipeline is built next to the stopped old one and continues
// it (`previous`): events present in both (same name, same encoding) keep
// their totals, every self-metric and kernel-statistics total continues, new
// events start from zero, removed events and CPUs disappear. No counter a
// scrape has seen goes backwards. When the new plan opens exactly the same
// fds, they stay open (shared with the stopped samplers until the old
// pipeline is destroyed) and counting continues from the last reading: a
// reload loses no count at all. Otherwise the new fds count from their
// opening, and what happened between the last reading and the opening is
// not counted.
//
// Liveness (OldestHeartbeatNs): a sampler is alive while it stamps its
// heartbeat; the aggregator while it is waiting with its next wake-up not
// overdue, or inside a round that started less than a heartbeat ago.
//
// Thread safety: construction, AddObserver, SetPublisher, SampleNow, Start,
// Stop and destruction from one thread (main). latest(), Fresh(),
// OldestHeartbeatNs(), cpus() and open_fds() from any thread. The publisher
// and the observers are called on the aggregator thread (or in SampleNow on
// the caller's).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "pmu/collectors/event_plan.h"
#include "pmu/collectors/perf_syscalls.h"
#include "pmu/config/config.h"
#include "pmu/sampling/aggregator.h"
#include "pmu/sampling/cpu_sampler.h"
#include "pmu/sampling/cpu_uevents.h"
#include "pmu/sampling/interval.h"
#include "pmu/sampling/kernel_stats.h"
#include "pmu/sampling/periodic_loop.h"
#include "pmu/sampling/snapshot.h"

namespace pmu::sampling {

// Sampling intervals between two drains at most (the rings hold twice as
// many ticks of every group).
inline constexpr uint64_t kDrainTicks = 128;
inline constexpr std::chrono::seconds kMaxDrainPeriod{30};
// The online list is read at least this often even without a CPU uevent.
inline constexpr std::chrono::seconds kHotplugSafetyPoll{60};
// /proc/stat readings queued for the next round at most (the oldest go).
inline constexpr size_t kMaxQueuedProcStat = 1024;

struct PipelineOptions {
  // Sampler settings; `interval` and `heartbeat` are overwritten from the
  // config and `heartbeat` below.
  SamplerOptions sampler;
  // Root of /proc and /sys: "/" in the daemon, a fake tree in tests.
  std::string root = "/";
  // Every periodic thread stamps its heartbeat at least this often.
  std::chrono::nanoseconds heartbeat = std::chrono::seconds(1);
};

class Pipeline {
 public:
  using Publisher = std::function<void(std::shared_ptr<const Snapshot>)>;

  // Probes events and opens counters on the selected online CPUs; throws
  // std::runtime_error on a fatal problem. `previous` (may be null) is the
  // stopped pipeline of the configuration this one replaces.
  Pipeline(const config::Config& config, collectors::PerfSyscalls& sys, PipelineOptions options,
           Pipeline* previous);
  ~Pipeline();  // Stop(); closes every perf fd
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  // Not owned; must outlive the pipeline. Before the first round.
  void AddObserver(RoundObserver* observer);
  void SetPublisher(Publisher publisher) { publisher_ = std::move(publisher); }

  // One round on the calling thread, every sampler ticking once first (in
  // the next schedule slot). REQUIRES: not started (start-up, --once).
  void SampleNow();
  // Starts the sampler threads and the aggregator thread.
  void Start();
  // Stops and joins them; returns within milliseconds; idempotent. With
  // `final_reading` every sampler thread reads once more before it exits and
  // a last round drains and publishes those readings (a reload: the totals it
  // carries over are current).
  void Stop(bool final_reading = false);

  // The last published snapshot (null before the first round).
  std::shared_ptr<const Snapshot> latest() const;
  // The last published snapshot if it is younger than one sampling
  // interval; otherwise asks the aggregator thread for a round and waits for
  // it at most `wait` (returning what is there then). Without a running
  // aggregator thread: latest().
  std::shared_ptr<const Snapshot> Fresh(std::chrono::nanoseconds wait);
  // How often the aggregator drains when nothing asks for a round.
  std::chrono::nanoseconds DrainPeriod() const { return drain_period_; }
  // Sampler ticks between two /proc/stat readings for the observers.
  uint64_t ProcStatEveryTicks() const { return proc_stat_every_; }
  // Rounds run so far.
  uint64_t rounds() const;
  // CLOCK_MONOTONIC ns of the least recent heartbeat of the aggregator thread
  // and every sampler thread (now when not started).
  int64_t OldestHeartbeatNs() const;

  const collectors::EventPlan& plan() const { return *plan_; }
  const std::vector<int>& selected_cpus() const { return selectable_; }
  std::vector<int> cpus() const;  // CPUs sampled now
  size_t open_fds() const;

 private:
  std::vector<int> WantedCpus() const;
  // Opens the CPU's fds (or takes `kept`, a previous pipeline's) and starts
  // its sampler. Returns false when a CPU that has `just_online` is not yet
  // ready for perf events: try again next round.
  bool StartCpu(int cpu, bool start_thread, std::shared_ptr<collectors::CpuCounters> kept = nullptr,
                uint64_t first_seq = 0, bool just_online = false);
  void StopCpu(int cpu);
  bool CheckHotplug();
  void FollowPmuCpus();
  uint64_t CurrentSlot() const;
  void Drain();
  void Round(bool check_hotplug);
  void AggregatorMain();
  void Wake();
  void TapProcStat(int cpu, uint64_t slot);
  PipelineStats CollectStats() const;

  config::Config config_;
  collectors::PerfSyscalls& sys_;
  PipelineOptions options_;
  std::shared_ptr<const collectors::EventPlan> plan_;
  std::unique_ptr<Aggregator> aggregator_;
  std::unique_ptr<KernelStatsReader> stats_;
  std::unique_ptr<SampleRing> ring_;
  std::vector<RoundObserver*> observers_;
  Publisher publisher_;
  std::vector<int> selectable_;         // CPUs the configuration selects (online or not)
  std::map<int, uint32_t> generation_;  // carried across reloads
  // Rounds a just-online CPU has refused perf events (ENODEV); after
  // kNotReadyRounds the failures are taken as they are (and logged).
  static constexpr int kNotReadyRounds = 20;
  std::map<int, int> not_ready_rounds_;
  std::vector<std::vector<int>> sites_;  // per group: the CPUs its PMU allows now (empty: all)
  bool running_ = false;
  bool hotplug_read_failed_ = false;  // logged once until a read succeeds
  uint64_t round_ = 0;                // guarded by mutex_
  uint64_t published_ = 0;            // rounds handed to the publisher; guarded by mutex_
  uint64_t manual_slot_ = 0;          // the last slot SampleNow() ticked
  std::vector<collectors::GroupSample> drained_;  // reused by Drain()

  // Carried from the previous pipeline and from stopped samplers.
  PipelineStats base_;
  std::map<int, CpuSampler::Stats> retired_;

  std::thread aggregator_thread_;
  std::chrono::nanoseconds drain_period_;
  int wake_fd_ = -1;  // eventfd: a round is wanted, or stop
  std::atomic<bool> stop_{false};
  std::atomic<bool> round_wanted_{false};
  bool aggregating_ = false;  // guarded by mutex_: the aggregator thread runs rounds
  std::atomic<int64_t> aggregator_due_ns_{0};  // latest time it must be awake (liveness)
  std::unique_ptr<CpuUevents> uevents_;
  int64_t last_hotplug_check_ns_ = 0;

  // /proc/stat for observers, taken on a sampler thread (TapProcStat).
  bool want_proc_stat_ = false;
  uint64_t proc_stat_every_ = 1;
  std::atomic<int> proc_stat_cpu_{-1};  // the sampler that takes them
  std::atomic<bool> tapping_{false};    // sampler threads run: the tap takes them
  std::mutex proc_stat_mutex_;          // guards the two below
  // Taken, not parsed: the sampler thread only copies the "cpu" lines; the
  // round parses them (in bulk, warm, off the sampling clock).
  struct TakenProcStat {
    bool read = false;  // false: the read failed (an absent /proc/stat)
    std::string cpu_lines;
    int64_t taken_ns = 0;
  };
  std::deque<TakenProcStat> proc_stat_queue_;
  std::unique_ptr<HeldFile> proc_stat_file_;

  std::condition_variable round_cv_;  // with mutex_: a round was published

  mutable std::mutex mutex_;  // guards samplers_, retired_ and latest_ against readers
  std::map<int, std::unique_ptr<CpuSampler>> samplers_;
  std::shared_ptr<const Snapshot> latest_;
  std::atomic<uint64_t> misfiled_{0};
  std::atomic<uint64_t> hotplug_events_{0};
};

}  // namespace pmu::sampling
