// Pipeline: everything one configuration collects with — the event plan, the
// perf fds of every selected online CPU, the aggregator and the per-CPU
// kernel statistics collector.
//
// A reload builds a new Pipeline next to the running one and seeds it from
// the old one's final snapshot: events present in both (same name, same
// libpfm4 encoding) keep their totals, so no Prometheus counter is reset; new
// events start from zero; removed events disappear.
//
// Thread safety: SampleOnce from one thread at a time (the sampler);
// Snapshot from any thread.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "pmu/collectors/cpu_counters.h"
#include "pmu/collectors/event_plan.h"
#include "pmu/collectors/perf_syscalls.h"
#include "pmu/config/config.h"
#include "pmu/daemon/aggregator.h"
#include "pmu/daemon/stats_exporter.h"

namespace pmu::daemon {

class Pipeline {
 public:
  // Probes events and opens counters; throws std::runtime_error on a fatal
  // problem (no configured CPU online, oversized group). `carry` (may be
  // null) is the previous pipeline's final snapshot.
  Pipeline(const config::Config& config, collectors::PerfSyscalls& sys,
           const std::string& sysfs_root, const AggregateSnapshot* carry);

  void SampleOnce();
  AggregateSnapshot Snapshot() const { return aggregator_->TakeSnapshot(); }
  // Per-CPU kernel statistics ([stats]), read at call time.
  std::vector<prometheus::MetricFamily> KernelStatsFamilies() const { return stats_->Collect(); }
  const collectors::EventPlan& plan() const { return *plan_; }
  const std::vector<int>& cpus() const { return cpus_; }
  size_t open_fds() const;

 private:
  std::shared_ptr<const collectors::EventPlan> plan_;
  std::vector<int> cpus_;
  std::vector<std::unique_ptr<collectors::CpuCounters>> counters_;
  std::unique_ptr<Aggregator> aggregator_;
  std::unique_ptr<KernelStatsCollector> stats_;
};

}  // namespace pmu::daemon
