// Per-cgroup attribution ([cgroups]): counts the configured events per
// cgroup and exports them as pmu_cgroup_* families.
//
// Two backends with one result (summed over CPUs, hierarchical: a cgroup
// includes its descendants):
//  - perf: one PERF_FLAG_PID_CGROUP event per cgroup x CPU x event; the fds
//    needed for `max` cgroups are checked against RLIMIT_NOFILE at creation.
//  - bpf:  one CPU-wide counter per event x CPU of its own (a second counter
//    set beside the sampling pipeline's, so the cost stays events x CPUs) and
//    a BPF program on sched_switch that adds counter deltas to the outgoing
//    cgroup and its tracked ancestors in per-CPU maps (bpf/cgroup_attr.bpf.c).
//    Needs CAP_BPF and CAP_PERFMON (root has both) and kernel BTF.
// `auto` tries bpf and falls back to perf with one log line saying why. When
// neither works the attribution is off (one error line); the daemon keeps
// its per-CPU metrics.
//
// Life cycle: Create() discovers the cgroups and opens what the mode needs.
// Every EndRound() (the pipeline's aggregator thread, after each round)
// follows CPU hotplug (the counters of a CPU that came online are opened, a
// CPU gone offline is read a last time and closed: `cpus` may list offline
// CPUs), rescans when `rescan` has passed, reads the counts and publishes an
// immutable CgroupSnapshot. A cgroup appears at the first rescan that sees
// it, starting at zero; a removed one disappears at the next; a cgroup
// re-created under the same path is a new cgroup (new id) whose totals start
// again at zero, which Prometheus reads as a counter reset.
//
// Thread safety: Create, EndRound and destruction on one thread (the
// pipeline's observer thread); Latest() and Families() from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "pmu/attribution/cgroup_discovery.h"
#include "pmu/collectors/event_plan.h"
#include "pmu/collectors/perf_syscalls.h"
#include "pmu/config/config.h"
#include "pmu/metrics/family_source.h"
#include "pmu/sampling/interval.h"

namespace pmu::attribution {

enum class Mode { kBpf, kPerf };
std::string_view ToString(Mode mode);

// Cumulative counts of one event in one cgroup, summed over CPUs; scaled by
// enabled/running where the counter was multiplexed.
struct CgroupEventTotal {
  double count = 0;
  uint64_t enabled_ns = 0;
  uint64_t running_ns = 0;
};

struct CgroupSeries {
  std::string path;
  uint64_t id = 0;
  CgroupLabels labels;
  std::vector<CgroupEventTotal> events;  // parallel to CgroupSnapshot::events
};

struct CgroupSnapshot {
  Mode mode = Mode::kPerf;
  std::vector<std::string> events;    // attributed event names
  std::vector<CgroupSeries> cgroups;  // sorted by path
  size_t matched = 0;                 // cgroups matching the patterns
  size_t max = 0;                     // [cgroups] max
  size_t open_fds = 0;                // fds the attribution holds (perf events, BPF objects)
  uint64_t rescans = 0;
};

class CgroupAttribution;

struct AttributionOptions {
  // The CPUs to count on (the pipeline's selected CPUs).
  std::vector<int> cpus;
  // Other fds the process needs besides the attribution's (the pipeline's
  // counters, connections, ...): subtracted from RLIMIT_NOFILE for perf
  // mode's budget.
  size_t other_fds = 0;
  collectors::PerfSyscalls* sys = nullptr;  // nullptr: the real syscalls
  // The attribution this one replaces (a reload; nullptr: none). Its totals
  // carry over per (cgroup, event): the same cgroup (path and id) and the
  // same event (name and encoding) continue where they were, so exported
  // counters stay monotonic across reloads. When the counting setup is the
  // same (mode, root, CPUs, events, max), the new attribution also shares
  // the previous one's fds and BPF maps, so nothing counted between the
  // two is lost. `previous` must not count while Create runs, and it stays
  // usable (a reload that fails later goes on with it).
  CgroupAttribution* previous = nullptr;
};

// The fd budget of perf mode: `needed` = max x CPUs x events.
struct FdBudget {
  uint64_t needed = 0;
  uint64_t available = 0;  // RLIMIT_NOFILE (soft, raised toward hard) minus other fds
  uint64_t limit = 0;
};
// Raises the soft RLIMIT_NOFILE toward the hard limit when `needed` needs it.
FdBudget PerfFdBudget(size_t max_cgroups, size_t cpus, size_t events, size_t other_fds);

// Why the bpf backend cannot work here ("" when it may): not built in, no
// kernel BTF.
std::string BpfUnavailableReason();

class Backend;  // attribution.cc

class CgroupAttribution final : public sampling::RoundObserver {
 public:
  // nullptr (with one error line) when no mode can count here. Throws
  // std::runtime_error when the configuration cannot be honoured: perf
  // mode's fd budget is exceeded (the message gives the numbers), the
  // events list names no supported event, no cgroup v2 root is found.
  // REQUIRES: config.cgroups.enabled.
  static std::unique_ptr<CgroupAttribution> Create(const config::Config& config,
                                                   const collectors::EventPlan& plan,
                                                   const AttributionOptions& options);
  ~CgroupAttribution() override;

  void OnInterval(const sampling::IntervalRecord& record) override { (void)record; }
  // Rescans when due, reads, publishes.
  void EndRound() override;
  // Rescans now (tests; EndRound calls it when due).
  void Rescan();
  // Whether the previous attribution's fds/maps were taken over (tests).
  bool shares_previous_counters() const { return shared_; }

  Mode mode() const { return mode_; }
  std::shared_ptr<const CgroupSnapshot> Latest() const;
  // A source writing Latest()'s families.
  std::shared_ptr<const metrics::FamilySource> Families() const;

 private:
  struct Tracked;
  CgroupAttribution(const config::Config& config, Mode mode, std::string root,
                    std::vector<std::string> event_names, std::vector<perf_event_attr> attrs,
                    std::vector<int> cpus, std::shared_ptr<Backend> backend);
  void Read();
  // Whether `previous`'s backend counts exactly what this one would.
  static bool SameCounters(const CgroupAttribution& previous, const config::CgroupsConfig& config,
                           const std::string& root, const std::vector<std::string>& names,
                           const std::vector<perf_event_attr>& attrs, const std::vector<int>& cpus);
  // Takes previous's state over (SameCounters) or only its totals.
  void TakeOver(const CgroupAttribution& previous);
  void CarryTotals(const CgroupAttribution& previous);

  config::CgroupsConfig config_;
  Mode mode_;
  std::string root_;
  std::vector<std::string> event_names_;
  std::vector<perf_event_attr> attrs_;  // parallel to event_names_
  std::vector<int> cpus_;               // every CPU that may be counted
  std::shared_ptr<Backend> backend_;    // shared with the attribution replaced
  bool shared_ = false;
  std::vector<std::unique_ptr<Tracked>> tracked_;  // sorted by path
  size_t matched_ = 0;
  bool overflow_logged_ = false;
  uint64_t rescans_ = 0;
  int64_t last_rescan_ns_ = 0;

  mutable std::mutex latest_mutex_;
  std::shared_ptr<const CgroupSnapshot> latest_;
};

// The pmu_cgroup_* families of `snapshot` (null: none):
//   pmu_cgroup_events_total{cgroup,event}                 counter
//   pmu_cgroup_event_enabled_seconds_total{cgroup,event}  counter
//   pmu_cgroup_event_running_seconds_total{cgroup,event}  counter
//   pmu_cgroup_info{cgroup,unit,pod_uid,container_id}     gauge 1
//   pmu_cgroup_attribution_mode{mode}                     gauge 1
//   pmu_cgroup_matched, pmu_cgroup_not_counted (over max), pmu_cgroup_attribution_fds
std::shared_ptr<const metrics::FamilySource> CgroupFamilies(
    std::shared_ptr<const CgroupSnapshot> snapshot);

// The families the cardinality guard counts: `max` cgroups with every
// attributed event (the worst case the configuration allows).
std::shared_ptr<const metrics::FamilySource> EstimateCgroupFamilies(
    const config::Config& config, const collectors::EventPlan& plan);

}  // namespace pmu::attribution
