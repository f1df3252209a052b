// KernelStatsCollector: per-CPU kernel statistics as Prometheus families,
// read at scrape time from procfs/sysfs through collectors/kernel_stats.h.
//
// Families (each only for CPUs in the selection, each only when its [stats]
// switch is on and the host has the source):
//   pmu_cpu_time_seconds_total{cpu,mode}       counter, /proc/stat; modes user,
//       nice, system, idle, iowait, irq, softirq, steal, guest, guest_nice.
//       guest and guest_nice are exported as modes of their own, as the kernel
//       reports them, but the kernel also counts them inside user and nice:
//       summing every mode counts guest time twice (HELP says so).
//   pmu_cpu_softirqs_total{cpu,type}           counter, /proc/softirqs
//   pmu_cpu_running_seconds_total{cpu}         counter, /proc/schedstat field 7
//   pmu_cpu_runqueue_wait_seconds_total{cpu}   counter, /proc/schedstat field 8
//   pmu_cpu_timeslices_total{cpu}              counter, /proc/schedstat field 9
//   pmu_cpu_frequency_hertz{cpu}               gauge, cpufreq scaling_cur_freq
//   pmu_exporter_stats_source_available{source} gauge 1/0 for each enabled
//       source (proc_stat, softirqs, schedstat, cpufreq): 0 when the host lacks
//       it or it cannot be understood (unknown schedstat version)
//   pmu_exporter_stats_parse_errors_total{source} counter of malformed lines
//       (and other read problems) met, summed over scrapes
//
// Logging (spdlog default logger): a source that is missing is logged once
// when first seen missing ("/proc/schedstat not present (kernel built
// without CONFIG_SCHEDSTATS); run-queue metrics are not exported") and again
// only if it comes back or goes away later; each distinct parser diagnostic
// ("<path>:<line>: <what>") is logged once, at most 1000 distinct ones.
//
// Counters are monotonic: values are taken as /proc reports them on the
// first scrape, then only grow by each increase. A raw value that goes
// backwards (idle and iowait can step back on NO_HZ kernels; a CPU brought
// back online may restart its counts) adds nothing that scrape, and growth
// from the new value counts again from the next one.
//
// Thread safety: Collect() may run on any number of HTTP threads at once;
// scrapes are serialised internally so every read is applied in order.
#pragma once

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "pmu/collectors/kernel_stats.h"
#include "pmu/config/config.h"

namespace pmu::daemon {

class KernelStatsCollector : public prometheus::Collectable {
 public:
  // `root`: "/" in the daemon, a fake tree in tests. `cpus`: the CPUs to
  // export (the [sampling] selection); empty = every CPU the sources list (for
  // cpufreq: <root>/sys/devices/system/cpu/online at each scrape).
  // `ticks_per_second`: the USER_HZ of /proc/stat.
  KernelStatsCollector(config::StatsConfig config, std::string root, std::vector<int> cpus,
                       long ticks_per_second = collectors::ClockTicksPerSecond());

  std::vector<prometheus::MetricFamily> Collect() const override;

  // Serve scrapes from a copy no older than `max_age` (the daemon passes its
  // sampling interval: the perf counters are never fresher than that
  // either). /proc/stat and /proc/softirqs cost ~180 us to generate on a
  // small VM, which dominated a scrape. 0 (the default) = read every time.
  void set_max_age(std::chrono::nanoseconds max_age) { max_age_ = max_age; }

 private:
  enum class Source { kProcStat, kSoftirqs, kSchedstat, kCpufreq };

  // Turns a raw reading into a monotonic total (see the header comment).
  class MonotonicTotals {
   public:
    double Update(int cpu, const std::string& key, double raw);

   private:
    struct Entry {
      double last_raw = 0;
      double total = 0;
    };
    std::map<std::pair<int, std::string>, Entry> entries_;
  };

  bool Selected(int cpu) const;
  // Logs availability transitions and new diagnostics; counts the latter.
  void Note(Source source, bool present, bool available,
            const std::vector<std::string>& diagnostics) const;
  std::vector<int> CpufreqCpus() const;

  const config::StatsConfig config_;
  const std::string root_;
  const std::vector<int> cpus_;  // sorted
  const long ticks_per_second_;

  std::vector<prometheus::MetricFamily> CollectNow() const;

  std::chrono::nanoseconds max_age_{0};
  mutable std::mutex cache_mutex_;
  mutable std::vector<prometheus::MetricFamily> cached_;
  mutable int64_t cached_at_ns_ = 0;
  mutable bool have_cache_ = false;
  mutable std::mutex mutex_;                  // guards everything below and serialises Collect()
  mutable std::map<Source, bool> available_;  // last state, for logging transitions
  mutable std::map<Source, double> parse_errors_;
  mutable std::set<std::string> logged_diagnostics_;
  mutable MonotonicTotals cpu_time_;
  mutable MonotonicTotals softirqs_;
  mutable MonotonicTotals schedstat_;
};

}  // namespace pmu::daemon
