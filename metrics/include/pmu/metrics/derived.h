// DerivedEngine: derived metrics ([[derived]]) computed for every sampling
// interval, exported as exact histograms of the per-interval values.
//
// Prometheus scrapes every 15-60 s and rate() averages over that window; the
// samplers see every interval. For each derived metric the engine computes
// one value per interval and counts it into a histogram, so a scrape shows
// how the values were distributed, not only their mean.
//
// Values. Per interval, value = sum(numerator deltas) / sum(denominator
// deltas), or with per_second, sum(numerator deltas) / interval seconds.
// Two kinds of input, never mixed in one metric (config.h enforces it):
//   - events: the scaled deltas of IntervalRecord (interval.h), delivered by
//     the aggregator through OnInterval();
//   - /proc/stat ("proc_stat/busy_seconds", "proc_stat/total_seconds"):
//     successive parses handed to OnProcStat(). busy = user + nice + system +
//     irq + softirq + steal; total = busy + idle + iowait (guest and
//     guest_nice are already inside user and nice and are not added again).
//     Resolution: /proc/stat moves in whole USER_HZ ticks (10 ms), and an
//     idle CPU's ticks arrive in bulk when it wakes (NO_HZ). A value from one
//     10 ms interval would be 0, 0.5 or 1 and tickless intervals would be
//     lost, biasing the distribution; so /proc/stat metrics are computed over
//     windows of the spec's `window` (1 s unless configured, at least
//     100 ms): a window closes at the first parse `window` after it opened
//     (less a tenth of the reading period, for the readings' lateness) that
//     holds kMinStatWindowTicks ticks per CPU, i.e. one value per
//     max(interval, window). The pipeline reads /proc/stat about every
//     ProcStatPeriod() (the shortest window).
//
// Scope. "cpu": one value per CPU and interval (label cpu). "host": one value
// per schedule slot in which every sampled CPU delivered a complete tick
// (sampling::HostInterval, assembled by the aggregator), built from the
// records' own timestamps; a slot that cannot be assembled is counted as
// skipped. A host ratio sums numerator and denominator over the CPUs; a
// host per-second value is the sum of each CPU's own rate over its own
// interval. For /proc/stat inputs a host window sums the selected CPUs.
//
// Skips. An interval with a zero (or negative) denominator or duration, a NaN
// input (the event did not run in the interval: unknown, not zero), a
// /proc/stat value that went backwards, or a non-finite result is not
// observed; it is counted in pmu_exporter_derived_skipped_total{name}. NaN
// and Inf are never exported.
//
// Disabled metrics. A metric with an input event the host cannot count is
// disabled with one log line when the engine is built (WARN for a configured
// metric, INFO for a built-in one) and exports nothing.
//
// Built-in metrics (Config::derived is nullopt, i.e. no `derived` key): see
// BuiltInDerived(). Events are looked up by their [[events]] name.
//
// Reload. An engine built with `previous` continues the histograms, last
// values and skip counts of every metric whose definition (name, inputs,
// scope, per_second, buckets) is unchanged, so no exported counter restarts.
//
// Families (DerivedFamilies(), from TakeSnapshot()):
//   pmu_derived_<name>{[cpu]}            histogram of per-interval values
//   pmu_derived_<name>_last{[cpu]}       gauge, the latest value (absent until
//                                        the first one)
//   pmu_exporter_derived_skipped_total{name}  counter
//
// Thread safety: the RoundObserver calls come from one thread at a time (the
// aggregator); TakeSnapshot may run concurrently on any thread. One internal
// mutex, held for the length of one call (microseconds). Not for a
// restartable sequence or a signal handler: calls may allocate.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "pmu/collectors/event_plan.h"
#include "pmu/collectors/kernel_stats.h"
#include "pmu/config/config.h"
#include "pmu/metrics/family_source.h"
#include "pmu/sampling/histogram.h"
#include "pmu/sampling/interval.h"

namespace pmu::metrics {

// Ticks per CPU a /proc/stat window holds before it gives a value.
inline constexpr uint64_t kMinStatWindowTicks = 10;

// The built-in derived metrics for `events`, each present only when its
// events are configured (by [[events]] name; whether the host supports them
// is the engine's business):
//   ipc                          instructions / cycles
//   cache_miss_ratio             cache-misses / cache-references, or
//                                cache-misses / instructions when no event is
//                                named cache-references (the default list)
//   branch_miss_ratio            branch-misses / branches, or / instructions
//   cpu_busy_ratio  (scope cpu)  proc_stat/busy_seconds / proc_stat/total_seconds
//   context_switches_per_second  context-switches, per_second
// Every returned spec has its buckets filled in.
std::vector<config::DerivedSpec> BuiltInDerived(const std::vector<config::EventSpec>& events);

// The derived metrics `config` asks for: its [[derived]] list, or the
// built-in ones when it has none.
std::vector<config::DerivedSpec> EffectiveDerived(const config::Config& config);

// The bucket bounds used for `spec`: its own, else a default by kind
// (per_second: 1-2-5 steps from 1 to 1e6; a /proc/stat ratio: 0.1 to 1 in
// steps of 0.1; an event ratio: 1-2-5 steps from 0.001 to 1000).
std::vector<double> BucketsFor(const config::DerivedSpec& spec);

// What the engine had counted at one moment; immutable once taken.
struct DerivedSnapshot {
  struct Series {
    int cpu = -1;  // -1: host scope (no cpu label)
    sampling::Histogram histogram;
    std::optional<double> last;  // absent until the first value
  };
  struct Metric {
    std::string name;
    std::string help;
    std::vector<Series> series;  // host: one; cpu: one per selected CPU, by CPU number
    uint64_t skipped = 0;
  };
  std::vector<Metric> metrics;  // enabled metrics, in config order
};

class DerivedEngine : public sampling::RoundObserver {
 public:
  // `cpus`: the selected CPUs (scope-cpu series exist for them from the
  // start; /proc/stat inputs are read for them only). `previous` (may be
  // null): the engine of the configuration this one replaces; it must not be
  // fed while this constructor runs. Logs each disabled metric once unless
  // `quiet`.
  DerivedEngine(const config::Config& config, const collectors::EventPlan& plan,
                std::vector<int> cpus, const DerivedEngine* previous = nullptr, bool quiet = false);
  ~DerivedEngine() override;
  DerivedEngine(const DerivedEngine&) = delete;
  DerivedEngine& operator=(const DerivedEngine&) = delete;

  // One (CPU, sampler tick) record; aggregator thread.
  void OnInterval(const sampling::IntervalRecord& record) override;
  // True when an enabled metric reads /proc/stat.
  bool NeedsProcStat() const override { return needs_proc_stat_; }
  // The shortest window of the /proc/stat metrics.
  std::chrono::nanoseconds ProcStatPeriod() const override { return proc_stat_period_; }
  // A fresh parse of /proc/stat taken at `now_ns` (CLOCK_MONOTONIC); the
  // first call only primes. A parse that is not `present` resets the
  // previous one (logged once).
  void OnProcStat(const collectors::ProcStat& stat, int64_t now_ns) override;
  // A complete host slot: every host-scope event metric observes one value.
  void OnHostInterval(const sampling::HostInterval& interval) override;
  // A host slot that could not be assembled: host-scope event metrics count
  // it as skipped.
  void OnHostIntervalIncomplete(uint64_t tick) override;
  void EndRound() override;

  std::shared_ptr<const DerivedSnapshot> TakeSnapshot() const;

  // Names of the metrics that are computed (not disabled), in config order.
  std::vector<std::string> EnabledMetrics() const;

 private:
  struct Metric;

  void Observe(Metric& metric, int cpu, double numerator, double denominator);

  std::vector<int> cpus_;
  bool needs_proc_stat_ = false;
  std::chrono::nanoseconds proc_stat_period_ = config::kMaxStatWindow;
  bool proc_stat_missing_logged_ = false;

  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<Metric>> metrics_;
};

// The families of ExportSnapshot::derived.
std::unique_ptr<FamilySource> DerivedFamilies();

}  // namespace pmu::metrics
