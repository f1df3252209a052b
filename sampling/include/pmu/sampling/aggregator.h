// Aggregator: turns raw cumulative group readings into exported totals.
//
// Readings must be ingested per (CPU, fd generation) in the order of their
// `seq` (the Pipeline sorts each drain). For every (CPU, event) it keeps the
// previous reading and adds, per interval,
//   delta_value                                  when running == enabled
//   delta_value * delta_enabled / delta_running  when multiplexed
// to a running total: the exact part stays an integer (never 1e9-0.0000001),
// only what was really multiplexed is scaled. Totals are monotonic by
// construction.
//
// What a reading can be, on one CPU:
//   - a new fd generation (fds reopened after hotplug or reload): counts from
//     zero; its first delta spans an unknown time, so it makes no interval;
//   - older than what was already ingested (a lower generation, or the same
//     generation and a `seq` not above the last one): stale — dropped,
//     counted in `stale`; a cumulative reading carries nothing a newer one
//     lacks;
//   - lower than the previous one on the same fd (value or times): the
//     counter cannot go backwards, so the baseline moves to it, nothing is
//     added, and `resyncs` counts it (logged, rate-limited);
//   - an interval in which the event did not run (delta_running == 0): adds
//     nothing — the count is unknown, not zero.
//
// Per (CPU, tick) it assembles an IntervalRecord of the scaled deltas and
// hands it to the observers once the tick is complete: every group of the
// tick arrived (`groups_in_tick`), or a later tick of that CPU began. Per
// schedule slot it assembles a HostInterval from complete single-slot ticks
// of every active CPU (interval.h); EndRound() decides the slots every active
// CPU has passed.
//
// Multiplexing: a group that was enabled but never ran for
// kStarvedIntervals consecutive intervals is flagged starved (one log line
// naming the likely causes); an event counting less than
// `min_running_ratio` of its enabled time is warned about at most once per
// event every kRatioWarningPeriod.
//
// Thread safety: Ingest/EndRound/Seed/SetCpuActive/AddObserver from one
// thread at a time (the aggregator's); TakeSnapshot from any thread
// concurrently.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "pmu/collectors/event_plan.h"
#include "pmu/collectors/sample.h"
#include "pmu/sampling/interval.h"

namespace pmu::sampling {

inline constexpr int kStarvedIntervals = 3;
inline constexpr std::chrono::minutes kRatioWarningPeriod{10};
inline constexpr std::chrono::minutes kResyncWarningPeriod{10};
// Undecided host slots kept at most (a CPU that stopped delivering).
inline constexpr size_t kMaxPendingHostSlots = 64;

struct EventTotals {
  bool seen = false;              // at least one reading arrived
  uint64_t exact = 0;             // deltas of intervals that ran all the time they were enabled
  double scaled = 0;              // scaled deltas of multiplexed intervals
  uint64_t enabled_ns = 0;        // total time enabled
  uint64_t running_ns = 0;        // total time running (counting on the PMU)
  double last_running_ratio = 0;  // delta_running / delta_enabled of the last interval
  uint64_t samples = 0;

  double count() const { return static_cast<double>(exact) + scaled; }
  double enabled_seconds() const { return static_cast<double>(enabled_ns) * 1e-9; }
  double running_seconds() const { return static_cast<double>(running_ns) * 1e-9; }
};

struct CpuTotals {
  int cpu = -1;
  std::vector<EventTotals> events;  // indexed like EventPlan::events
  std::vector<bool> group_starved;  // indexed like EventPlan::groups
  uint64_t group_samples = 0;       // GroupSamples ingested for this CPU
  uint64_t resyncs = 0;             // readings lower than their predecessor on the same fd
  uint64_t stale = 0;               // readings older than one already ingested
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
  // Decides the host slots every active CPU has passed (call after each
  // drain).
  void EndRound();
  // A CPU whose sampler runs (true) from schedule slot `slot` on, or stopped
  // (false). Host slots after `slot` wait for an active CPU.
  void SetCpuActive(int cpu, bool active, uint64_t slot);
  // Observers get every completed IntervalRecord and host slot; not owned;
  // must outlive the aggregator.
  void AddObserver(RoundObserver* observer) { observers_.push_back(observer); }

  // Carries totals over from another plan's snapshot (a reload): an event
  // of this plan takes the totals of the event with the same name in
  // `previous` when both are supported and encode to the same perf_event_attr
  // type and config; everything else starts at zero. Each CPU's counts of
  // ingested, resynchronised and stale samples carry over too. The next
  // reading of each CPU counts from zero (new fds). Call before the first
  // Ingest.
  void Seed(const AggregateSnapshot& previous);

  // A reload that keeps `cpu`'s fds open (the same plan, the same fds):
  // its next reading continues from the last one `previous` ingested instead
  // of counting from zero, so nothing between the two configurations is
  // lost. REQUIRES: the two aggregators' plans are identical; after Seed,
  // before the first Ingest of `cpu`.
  void ContinueFrom(const Aggregator& previous, int cpu);
  AggregateSnapshot TakeSnapshot() const;

 private:
  struct Previous {
    bool valid = false;
    uint64_t value = 0;
    uint64_t enabled = 0;
    uint64_t running = 0;
  };
  struct GroupPosition {
    bool valid = false;
    uint32_t generation = 0;
    uint64_t seq = 0;
  };
  struct CpuState {
    bool seen = false;
    bool active = false;
    uint64_t active_since = 0;  // schedule slot
    CpuTotals totals;
    std::vector<Previous> previous;        // per event
    std::vector<GroupPosition> position;   // per group
    std::vector<int> zero_running_streak;  // per group
    // The tick being assembled.
    bool tick_open = false;
    uint64_t tick_seq = 0;
    uint32_t tick_generation = 0;
    uint64_t tick = 0;
    uint32_t tick_groups = 0;  // groups of this tick received
    uint32_t tick_groups_expected = 0;
    bool tick_fresh = false;  // a group of the tick started a new generation
    int64_t tick_end_ns = 0;
    std::vector<double> tick_deltas;
    // The previous complete tick.
    bool has_last_tick = false;
    uint64_t last_tick = 0;
    int64_t last_tick_end_ns = 0;
    std::chrono::steady_clock::time_point last_resync_warning;
  };
  struct PendingHostSlot {
    std::map<int, IntervalRecord> records;
    std::map<int, std::vector<double>> deltas;  // storage of records' spans
    bool broken = false;
  };

  void FlushTick(int cpu, CpuState& state);
  void NoteHost(int cpu, const IntervalRecord& record, bool whole);
  void ResolveHost(bool force_oldest);
  void NoteRunning(int cpu, CpuState& state, uint32_t group, uint64_t d_enabled,
                   uint64_t d_running);
  void WarnLowRatio(int cpu, size_t event, double ratio);

  std::shared_ptr<const collectors::EventPlan> plan_;
  double min_running_ratio_;
  mutable std::mutex mutex_;  // guards the totals against TakeSnapshot
  std::vector<CpuState> cpus_;
  std::vector<RoundObserver*> observers_;
  std::vector<std::chrono::steady_clock::time_point> last_ratio_warning_;  // per event
  std::map<uint64_t, PendingHostSlot> pending_host_;
  bool host_decided_ = false;
  uint64_t host_decided_through_ = 0;
};

}  // namespace pmu::sampling
