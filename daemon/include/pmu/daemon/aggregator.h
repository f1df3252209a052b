// Aggregator: turns raw cumulative group readings into exported totals.
//
// For every (CPU, event) it keeps the previous reading and adds, per interval,
//   delta_value * delta_enabled / delta_running        (multiplex scaling)
// to a running total, so totals are monotonic by construction: a Prometheus
// counter never goes down, even when the scaling ratio changes or fds are
// reopened. A reading whose `generation` differs from the previous one (fds
// reopened) counts from zero. An interval in which the event did not run at
// all (delta_running == 0) adds nothing: the count is unknown, not zero.
//
// Thread safety: Ingest from any one thread at a time (the sampler);
// TakeSnapshot from any thread concurrently (the exporter).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "pmu/collectors/event_plan.h"
#include "pmu/collectors/sample.h"

namespace pmu::daemon {

struct EventTotals {
  bool seen = false;             // at least one reading arrived
  double count = 0;              // scaled total
  double enabled_seconds = 0;    // total time enabled
  double running_seconds = 0;    // total time running (counting on the PMU)
  double last_running_ratio = 0; // delta_running / delta_enabled of the last interval
  uint64_t samples = 0;
};

struct CpuTotals {
  int cpu = -1;
  std::vector<EventTotals> events;  // indexed like EventPlan::events
};

struct AggregateSnapshot {
  std::shared_ptr<const collectors::EventPlan> plan;
  std::vector<CpuTotals> cpus;  // only CPUs that delivered at least one reading
};

class Aggregator {
 public:
  // `cpu_slots`: one more than the highest CPU number that can appear.
  Aggregator(std::shared_ptr<const collectors::EventPlan> plan, int cpu_slots);

  void Ingest(const collectors::GroupSample& sample);

  // Carries totals over from another plan's snapshot (a reload): an event
  // of this plan takes the totals of the event with the same name in
  // `previous` when both are supported and encode to the same perf_event_attr
  // type and config; everything else starts at zero. The next reading of
  // each CPU counts from zero (new fds). Call before the first Ingest.
  void Seed(const AggregateSnapshot& previous);
  AggregateSnapshot TakeSnapshot() const;

  uint64_t samples_ingested() const;

 private:
  struct Previous {
    uint32_t generation = 0;
    bool valid = false;
    uint64_t value = 0;
    uint64_t enabled = 0;
    uint64_t running = 0;
  };
  struct CpuState {
    bool seen = false;
    std::vector<EventTotals> totals;
    std::vector<Previous> previous;
  };

  std::shared_ptr<const collectors::EventPlan> plan_;
  mutable std::mutex mutex_;
  std::vector<CpuState> cpus_;
  uint64_t samples_ingested_ = 0;
};

}  // namespace pmu::daemon
