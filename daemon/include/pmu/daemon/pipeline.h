// Pipeline: everything one configuration collects with — the event plan,
// one CpuSampler (thread + perf fds) per selected online CPU, the per-CPU
// rseq rings they push into, the aggregator that drains them, and the
// per-CPU kernel statistics collector.
//
// A reload builds a new Pipeline next to the running one and seeds it from
// the old one's final snapshot: events present in both (same name, same
// libpfm4 encoding) keep their totals, so no Prometheus counter is reset; new
// events start from zero; removed events disappear.
//
// CPU hotplug: CheckHotplug() compares the online CPUs with the samplers it
// runs; a CPU that went offline has its sampler stopped and its fds closed
// (after a last drain), one that came (back) online gets new fds with a new
// generation and a new sampler; totals continue.
//
// Thread safety: SampleOnce, StartSamplers, StopSamplers, Drain and
// CheckHotplug from one thread at a time (the aggregator's, or main while the
// aggregator is stopped). Snapshot, Stats, KernelStatsFamilies and
// OldestHeartbeatNs from any thread.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "pmu/collectors/event_plan.h"
#include "pmu/collectors/perf_syscalls.h"
#include "pmu/config/config.h"
#include "pmu/daemon/aggregator.h"
#include "pmu/daemon/cpu_sampler.h"
#include "pmu/daemon/derived.h"
#include "pmu/daemon/stats_exporter.h"

namespace pmu::daemon {

struct PipelineStats {
  struct Cpu {
    int cpu = -1;
    bool online = false;
    CpuSampler::Stats sampler;  // empty while offline
  };
  std::vector<Cpu> cpus;  // every CPU the configuration selects, online or not
  uint64_t ring_drops = 0;
  uint64_t ring_aborts = 0;
  uint64_t ring_fallbacks = 0;
  uint64_t misattributed = 0;  // records whose read_cpu != their ring: must stay 0
  uint64_t hotplug_events = 0;
};

class Pipeline {
 public:
  // Probes events and opens counters on the selected online CPUs; throws
  // std::runtime_error on a fatal problem. `carry` (may be null) is the
  // previous pipeline's final snapshot.
  Pipeline(const config::Config& config, collectors::PerfSyscalls& sys,
           const std::string& sysfs_root, const AggregateSnapshot* carry,
           SamplerOptions sampler_options);
  ~Pipeline();

  // One synchronous tick of every CPU on the calling thread, then a drain.
  void SampleOnce();
  void StartSamplers();
  void StopSamplers();
  // Moves every queued sample into the aggregator (and the derived metrics).
  void Drain();
  // Feeds the derived metrics that use /proc/stat one interval (aggregator
  // thread, once per sampling interval).
  void ProcStatTick();
  // Starts/stops CPUs whose online state changed; returns true if any did.
  bool CheckHotplug();
  void AddObserver(IntervalObserver* observer) { aggregator_->AddObserver(observer); }

  AggregateSnapshot Snapshot() const { return aggregator_->TakeSnapshot(); }
  PipelineStats Stats() const;
  // Per-CPU kernel statistics ([stats]), read at call time.
  std::vector<prometheus::MetricFamily> KernelStatsFamilies() const { return stats_->Collect(); }
  // Histograms of per-interval derived values ([[derived]]).
  std::vector<prometheus::MetricFamily> DerivedFamilies() const { return derived_->Collect(); }
  // CLOCK_MONOTONIC ns of the least recent sampler heartbeat (now if none).
  int64_t OldestHeartbeatNs() const;

  const collectors::EventPlan& plan() const { return *plan_; }
  std::vector<int> cpus() const;  // CPUs sampled now
  size_t open_fds() const;

 private:
  std::vector<int> WantedCpus() const;
  void StartCpu(int cpu, bool start_thread);
  void StopCpu(int cpu);

  config::Config config_;
  collectors::PerfSyscalls& sys_;
  std::string sysfs_root_;
  SamplerOptions sampler_options_;
  std::shared_ptr<const collectors::EventPlan> plan_;
  std::unique_ptr<Aggregator> aggregator_;
  std::unique_ptr<KernelStatsCollector> stats_;
  std::unique_ptr<DerivedEngine> derived_;
  std::unique_ptr<SampleRing> ring_;
  std::vector<int> selectable_;  // CPUs the configuration selects (online or not)
  std::map<int, uint32_t> generation_;
  bool running_ = false;
  bool hotplug_read_failed_ = false;  // logged once until a read succeeds
  long ticks_per_second_ = collectors::ClockTicksPerSecond();

  mutable std::mutex mutex_;  // guards samplers_ against Stats() readers
  std::map<int, std::unique_ptr<CpuSampler>> samplers_;
  std::atomic<uint64_t> misattributed_{0};
  std::atomic<uint64_t> hotplug_events_{0};
};

}  // namespace pmu::daemon
