// KernelStatsReader: the per-CPU kernel statistics ([stats]) as monotonic
// totals, read by the aggregator thread once per round through the parsers
// of collectors/kernel_stats.h. The exposition only formats what a round
// read (metrics/kernel_stats_families.h); nothing is parsed on the serving
// thread, and /proc/stat is parsed once per round for every consumer (the
// exported CPU times and the derived metrics that use it).
//
// Sources (each only when its [stats] switch is on and the host has it;
// each only for CPUs in the selection):
//   proc_stat  CPU time per mode (/proc/stat), in USER_HZ ticks
//   softirqs   softirqs handled, by type (/proc/softirqs)
//   schedstat  running time, run-queue wait, timeslices (/proc/schedstat)
//   cpufreq    current frequency (a gauge, not a total)
//
// Totals are monotonic: values are taken as the kernel reports them on the
// first read, then only grow by each increase. A raw value that goes
// backwards (idle and iowait can step back on NO_HZ kernels; a CPU brought
// back online may restart its counts) adds nothing that round, and growth
// from the new value counts again from the next one. A reload hands the
// state to the next reader (TakeStateFrom), so totals survive it.
//
// Logging (spdlog default logger): a source that is missing is logged once
// when first seen missing and again only when it comes back or goes away;
// each distinct parser diagnostic ("<path>:<line>: <what>") is logged once,
// at most kMaxLoggedDiagnostics distinct ones.
//
// /proc/stat is read through a descriptor held open (pread from offset 0),
// only when a consumer asks: the exported totals when a round runs, the
// derived metrics at the resolution they need (Pipeline).
//
// Thread safety: one thread at a time (the aggregator's); results are plain
// values.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pmu/collectors/kernel_stats.h"
#include "pmu/config/config.h"
#include "pmu/sampling/held_file.h"

namespace pmu::sampling {

enum class StatsSource { kProcStat, kSoftirqs, kSchedstat, kCpufreq };
inline constexpr size_t kStatsSourceCount = 4;
// The `source` label values, indexed by StatsSource.
inline constexpr std::array<std::string_view, kStatsSourceCount> kStatsSourceNames{
    "proc_stat", "softirqs", "schedstat", "cpufreq"};

// What one round read: totals since the exporter started counting.
struct KernelStats {
  struct SourceState {
    bool enabled = false;       // its [stats] switch is on
    bool available = false;     // read and understood this round
    uint64_t parse_errors = 0;  // malformed lines and read errors met, summed over rounds
  };
  std::array<SourceState, kStatsSourceCount> sources;

  struct CpuTime {
    int cpu = -1;
    std::array<uint64_t, collectors::kCpuModeCount> ticks{};  // USER_HZ ticks
  };
  long ticks_per_second = 100;  // USER_HZ
  std::vector<CpuTime> cpu_time;

  struct CpuSoftirqs {
    int cpu = -1;
    std::vector<std::pair<std::string, uint64_t>> counts;  // by type, in file order
  };
  std::vector<CpuSoftirqs> softirqs;

  struct CpuSchedstat {
    int cpu = -1;
    uint64_t running_ns = 0;
    uint64_t waiting_ns = 0;
    uint64_t timeslices = 0;
  };
  std::vector<CpuSchedstat> schedstat;

  std::vector<collectors::CpuFrequency> cpufreq;  // current values
};

class KernelStatsReader {
 public:
  static constexpr size_t kMaxLoggedDiagnostics = 1000;

  // `root`: "/" in the daemon, a fake tree in tests. `cpus`: the CPUs to
  // report (the [sampling] selection); empty = every CPU the sources list
  // (for cpufreq: SetOnlineCpus(), else <root>/sys/devices/system/cpu/online
  // at each read).
  KernelStatsReader(config::StatsConfig config, std::string root, std::vector<int> cpus,
                    long ticks_per_second = collectors::ClockTicksPerSecond());

  // Continues the totals, availability and logged diagnostics of `previous`
  // (a reload); `previous` is left empty.
  void TakeStateFrom(KernelStatsReader& previous);

  // Reads every enabled source. /proc/stat is parsed also when
  // `want_proc_stat` (a derived metric needs it) even if its [stats] switch
  // is off; the parse is stored in *proc_stat when that is not null.
  KernelStats Read(bool want_proc_stat, std::optional<collectors::ProcStat>* proc_stat);

  // The CPUs online now, as the caller's hotplug handling knows them: with
  // an empty selection, cpufreq is read for these instead of reading
  // <root>/sys/devices/system/cpu/online each time.
  void SetOnlineCpus(std::vector<int> cpus);

  // A source that does not exist (no /proc/schedstat without
  // CONFIG_SCHEDSTATS, no cpufreq in most virtual machines) is looked for
  // again only after this long, or for cpufreq when the online CPUs change:
  // not with a failed open per CPU at every read. Default kAbsentRecheck.
  static constexpr std::chrono::seconds kAbsentRecheck{60};
  void SetAbsentRecheck(std::chrono::nanoseconds period) { absent_recheck_ = period; }

  // One parse of /proc/stat through the reader's held descriptor (pread);
  // nothing else is read and no total is updated.
  collectors::ProcStat ReadProcStat();

 private:
  struct Entry {
    uint64_t last_raw = 0;
    uint64_t total = 0;
  };
  static uint64_t Update(Entry& entry, bool first, uint64_t raw);

  bool Selected(int cpu) const;
  std::vector<int> CpufreqCpus() const;
  // Logs availability transitions and new diagnostics; counts the latter.
  void Note(StatsSource source, bool present, bool available,
            const std::vector<std::string>& diagnostics, KernelStats& out);

  config::StatsConfig config_;
  std::string root_;
  // Held open and read with pread: no path walk, open and close per round.
  // (cpufreq, one file per CPU, is opened at each read: thousands of CPUs
  // would hold as many descriptors.)
  HeldFile proc_stat_file_;
  HeldFile softirqs_file_;
  HeldFile schedstat_file_;
  std::vector<int> cpus_;                   // sorted
  std::optional<std::vector<int>> online_;  // SetOnlineCpus()
  long ticks_per_second_;

  std::map<int, std::array<Entry, collectors::kCpuModeCount>> cpu_time_;
  std::map<int, std::map<std::string, Entry>> softirqs_;
  std::map<int, std::array<Entry, 3>> schedstat_;
  // Reading `source` is skipped while it was absent less than
  // absent_recheck_ ago; Absent() starts that wait.
  bool Skip(StatsSource source, int64_t now_ns) const;
  void Absent(StatsSource source, bool present, int64_t now_ns);
  // What a skipped source reports: enabled, not available.
  void StillAbsent(StatsSource source, KernelStats& out) const;

  std::chrono::nanoseconds absent_recheck_ = kAbsentRecheck;
  std::array<std::optional<int64_t>, kStatsSourceCount> absent_since_ns_;
  std::array<std::optional<bool>, kStatsSourceCount> available_;  // last state, for logging
  std::array<uint64_t, kStatsSourceCount> parse_errors_{};
  std::set<std::string> logged_diagnostics_;
};

}  // namespace pmu::sampling
