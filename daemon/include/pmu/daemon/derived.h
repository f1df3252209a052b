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
//     Resolution: /proc/stat moves in USER_HZ ticks (10 ms), so at a 10 ms
//     interval each value of cpu_busy_ratio is 0, 1 or (two ticks) 0.5, and an
//     interval in which no tick was accounted has a zero denominator and is
//     skipped; at 100 ms the values are multiples of about 0.1. The
//     distribution over many intervals is right; single values are coarse.
//
// Scope. "cpu": one value per CPU and interval (label cpu). "host": one value
// per aggregator drain round: the per-CPU records delivered between two
// EndRound() calls (the sampler ticks of different CPUs are not
// synchronised, so "the same interval" across CPUs is defined by delivery).
// A host ratio sums numerator and denominator over all records of the round;
// a host per-second value is the sum over CPUs of each CPU's own rate (its
// numerator over the time its records in the round cover), so a CPU that
// delivered twice in a round is not counted twice as fast. For /proc/stat
// inputs one OnProcStat() call is one host interval (inputs summed over the
// selected CPUs; per_second divides by the time since the previous parse).
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
// Families (Collect):
//   pmu_derived_<name>{[cpu]}            histogram of per-interval values
//   pmu_derived_<name>_last{[cpu]}       gauge, the latest value (absent until
//                                        the first one)
//   pmu_exporter_derived_skipped_total{name}  counter
//
// Thread safety: OnInterval, EndRound and OnProcStat come from one thread at
// a time (the aggregator); Collect may run concurrently on any thread. One
// internal mutex, held for the length of one call (microseconds). Not for a
// restartable sequence or a signal handler: calls may allocate.
#pragma once

#include <prometheus/metric_family.h>

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
#include "pmu/daemon/interval.h"

namespace pmu::daemon {

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

// How many series a configuration exports, and what contributes them.
struct SeriesEstimate {
  struct Part {
    std::string what;  // e.g. "events: 3 families x 8 supported events x 64 CPUs"
    size_t series = 0;
  };
  size_t total = 0;
  std::vector<Part> parts;  // largest first
};

// Counts the series /metrics serves for `config` on `n_cpus` selected CPUs
// with `plan`'s supported events: the event families (3 per CPU and supported
// event, 1 per configured event), the enabled [stats] sources (per CPU:
// 10 CPU modes, about 10 softirq types, 3 schedstat, 1 cpufreq; 2 per
// source), the enabled derived metrics (per series: buckets + 4 for +Inf,
// _sum, _count, _last; times n_cpus with scope cpu; 1 skipped counter each)
// and a fixed allowance for the build, service and HTTP families.
// softirq types are estimated, the rest is exact.
SeriesEstimate EstimateSeries(const config::Config& config, const collectors::EventPlan& plan,
                              size_t n_cpus);

// Throws std::runtime_error when EstimateSeries exceeds
// config.exporter.max_series; the message gives the count, the limit and the
// parts, largest first, and how to reduce them. The DerivedEngine
// constructor calls it, so a pipeline that builds an engine checks at
// start-up and on every reload (a throwing reload keeps the old config).
void CheckCardinality(const config::Config& config, const collectors::EventPlan& plan,
                      size_t n_cpus);

class DerivedEngine : public IntervalObserver {
 public:
  // `cpus`: the selected CPUs (scope-cpu series exist for them from the
  // start; /proc/stat inputs are read for them only). Throws
  // std::runtime_error from CheckCardinality. Logs each disabled metric once.
  DerivedEngine(const config::Config& config, const collectors::EventPlan& plan,
                std::vector<int> cpus);
  ~DerivedEngine() override;
  DerivedEngine(const DerivedEngine&) = delete;
  DerivedEngine& operator=(const DerivedEngine&) = delete;

  // One (CPU, sampler tick) record; aggregator thread.
  void OnInterval(const IntervalRecord& record) override;
  // Closes the current host round: every host-scope event metric with at
  // least one record since the previous EndRound observes one value. Call
  // after each drain round (after the round's OnInterval calls).
  void EndRound();

  // True when an enabled metric reads /proc/stat; only then does the
  // aggregator need to parse it and call OnProcStat.
  bool NeedsProcStat() const { return needs_proc_stat_; }
  // A fresh parse of /proc/stat taken at `now_ns` (CLOCK_MONOTONIC); the
  // first call only primes. A parse that is not `present` resets the
  // previous one (logged once).
  void OnProcStat(const collectors::ProcStat& stat, int64_t now_ns);

  // The families described above, built from a consistent snapshot.
  std::vector<prometheus::MetricFamily> Collect() const;

  // Names of the metrics that are computed (not disabled), in config order.
  std::vector<std::string> EnabledMetrics() const;

 private:
  struct Metric;

  void Observe(Metric& metric, int cpu, double numerator, double denominator);

  std::vector<int> cpus_;
  bool needs_proc_stat_ = false;
  bool proc_stat_missing_logged_ = false;

  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<Metric>> metrics_;
  std::optional<collectors::ProcStat> previous_stat_;
  int64_t previous_stat_ns_ = 0;
};

}  // namespace pmu::daemon
