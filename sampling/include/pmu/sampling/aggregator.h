// Aggregator: turns raw cumulative group readings into exported totals.
//
// For every (CPU, event) it keeps the previous reading and adds, per interval,
//   delta_value * delta_enabled / delta_running        (multiplex scaling)
// to a running total, so totals are monotonic by construction: a Prometheus
// counter never goes down, even when the scaling ratio changes or fds are
// reopened. A reading whose `generation` differs from the previous one (fds
// reopened after hotplug or reload) counts from zero. An interval in which the
// event did not run at all (delta_running == 0) adds nothing: the count is
// unknown, not zero.
//
// Per (CPU, sampler tick) it also assembles an IntervalRecord of the scaled
// deltas and hands it to the observers' OnInterval once the tick is complete
// (the next tick of that CPU began, or EndRound() was called after a drain).
//
// Multiplexing: a group that was enabled but never ran for
// kStarvedIntervals consecutive intervals is flagged starved (one log line
// naming the likely causes); an event counting less than
// `min_running_ratio` of its enabled time is warned about at most once per
// event every kRatioWarningPeriod.
//
// Thread safety: Ingest/EndRound/Seed/AddObserver from one thread at a time
// (the aggregator's); TakeSnapshot from any thread concurrently.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "pmu/collectors/event_plan.h"
#include "pmu/collectors/sample.h"
#include "pmu/sampling/interval.h"

namespace pmu::sampling {

inline constexpr int kStarvedIntervals = 3;
inline constexpr std::chrono::minutes kRatioWarningPeriod{10};

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
  std::vector<bool> group_starved;  // indexed like EventPlan::groups
  uint64_t group_samples = 0;       // GroupSamples ingested for this CPU
  bool has_path = false;
  collectors::ReadPath last_path = collectors::ReadPath::kRemoteRead;
};

struct AggregateSnapshot {
  std::shared_ptr<const collectors::EventPlan> plan;
  std::vector<CpuTotals> cpus;  // only CPUs that delivered at least one reading
};

class Aggregator {
 public:
  // `cpu_slots`: one more than the highest CPU number that can appear.
  Aggregator(std::shared_ptr<const collectors::EventPlan> plan, int cpu_slots,
             double min_running_ratio = 0.5);

  void Ingest(const collectors::GroupSample& sample);
  // Completes every open tick (call after each drain round).
  void EndRound();
  // Observers get every completed IntervalRecord; not owned; must outlive
  // the aggregator.
  void AddObserver(RoundObserver* observer) { observers_.push_back(observer); }

  // Carries totals over from another plan's snapshot (a reload): an event
  // of this plan takes the totals of the event with the same name in
  // `previous` when both are supported and encode to the same perf_event_attr
  // type and config; everything else starts at zero. Each CPU's count of
  // ingested samples carries over too. The next reading of each CPU counts
  // from zero (new fds). Call before the first Ingest.
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
    std::vector<int> zero_running_streak;  // per group
    std::vector<bool> starved;             // per group
    uint64_t group_samples = 0;
    bool has_path = false;
    collectors::ReadPath last_path = collectors::ReadPath::kRemoteRead;
    // The tick being assembled.
    bool tick_open = false;
    uint64_t tick = 0;
    int64_t tick_start_ns = 0;
    int64_t tick_end_ns = 0;
    int64_t last_tick_end_ns = 0;
    std::vector<double> tick_deltas;
  };

  void FlushTick(int cpu, CpuState& state);
  void NoteRunning(int cpu, CpuState& state, uint32_t group, uint64_t d_enabled,
                   uint64_t d_running);
  void WarnLowRatio(int cpu, size_t event, double ratio);

  std::shared_ptr<const collectors::EventPlan> plan_;
  double min_running_ratio_;
  mutable std::mutex mutex_;
  std::vector<CpuState> cpus_;
  uint64_t samples_ingested_ = 0;
  std::vector<RoundObserver*> observers_;
  std::vector<std::chrono::steady_clock::time_point> last_ratio_warning_;  // per event
};

}  // namespace pmu::sampling
