// Parsers for per-CPU kernel statistics: /proc/stat, /proc/softirqs,
// /proc/schedstat and cpufreq's scaling_cur_freq.
//
// Every parser takes a root directory (the daemon passes "/", tests pass fake
// trees under tests/data/stats/) and returns plain values: no logging, no
// Prometheus. What went wrong comes back in `diagnostics`, one string per
// problem, "<path>:<line>: <what>", for the caller to log.
//
// Contract shared by all parsers:
//   - A missing file (ENOENT/ENOTDIR) is not an error: `present` is false and
//     `diagnostics` stays empty, so the caller can say once that the host
//     lacks the source (no /proc/schedstat without CONFIG_SCHEDSTATS, no
//     cpufreq in most virtual machines).
//   - A file that exists but cannot be read (EACCES, EIO) is `present` false
//     with one diagnostic naming the errno text.
//   - A malformed line (too few values, a non-numeric value, an unknown CPU
//     label, more values than the format has) yields one diagnostic and is
//     skipped; every other line is still returned.
//   - CPUs come back in file order (ascending on every kernel); a CPU the
//     kernel leaves out (offline) is simply absent.
//
// Thread safety: free functions, reentrant; results are plain values.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pmu::collectors {

// What every parse result carries besides its numbers.
struct StatsParseStatus {
  bool present = false;                  // the file exists and was read
  std::vector<std::string> diagnostics;  // "<path>:<line>: <what>"
};

// ---------------------------------------------------------------------------
// /proc/stat

// The ten per-CPU columns of /proc/stat, in file order (Documentation/
// filesystems/proc.rst). guest and guest_nice are time spent running a
// virtual CPU; the kernel ALSO adds them to user and nice respectively, so a
// sum over all modes counts guest time twice. Exporters must say so (see
// metrics/family_source.h) rather than subtract: subtracting would make user
// go backwards whenever the two reads straddle an update.
enum class CpuMode {
  kUser,
  kNice,
  kSystem,
  kIdle,
  kIowait,
  kIrq,
  kSoftirq,
  kSteal,
  kGuest,
  kGuestNice,
};
inline constexpr size_t kCpuModeCount = 10;
// Lower-case names as exported: "user", "nice", ..., "guest_nice".
inline constexpr std::array<std::string_view, kCpuModeCount> kCpuModeNames{
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice"};

struct CpuTimes {
  int cpu = -1;
  std::array<uint64_t, kCpuModeCount> ticks{};  // raw USER_HZ ticks
  std::array<double, kCpuModeCount> seconds{};  // ticks / ticks_per_second
  uint64_t Ticks(CpuMode mode) const { return ticks[static_cast<size_t>(mode)]; }
  double Seconds(CpuMode mode) const { return seconds[static_cast<size_t>(mode)]; }
};

struct ProcStat : StatsParseStatus {
  std::vector<CpuTimes> cpus;                // one per "cpuN" line
  std::optional<uint64_t> context_switches;  // the "ctxt" line: all CPUs, since boot
};

// `relative` ("/proc/stat") below `root` ("/", or a test's directory):
// `root` without its trailing slashes, then `relative`.
std::string UnderRoot(const std::string& root, std::string_view relative);

// sysconf(_SC_CLK_TCK), the USER_HZ unit of /proc/stat; 100 when sysconf
// fails (USER_HZ is 100 on every architecture Linux exports it for).
long ClockTicksPerSecond();

// Parses <root>/proc/stat. Lines other than "cpuN" and "ctxt" are ignored
// (the aggregate "cpu" line too). A cpuN line needs all ten values (kernels
// since 2.6.33); values beyond the tenth are ignored, as the kernel documents
// that new columns are appended. REQUIRES: ticks_per_second > 0.
ProcStat ParseProcStat(const std::string& root, long ticks_per_second = ClockTicksPerSecond());
// The same parse of text already read (a held descriptor's pread);
// `path` names the source in diagnostics. `present` is true.
ProcStat ParseProcStatText(std::string_view text, const std::string& path,
                           long ticks_per_second = ClockTicksPerSecond());

// ---------------------------------------------------------------------------
// /proc/softirqs

struct CpuSoftirqs {
  int cpu = -1;
  // (type, count) in file order: HI, TIMER, NET_TX, NET_RX, BLOCK, IRQ_POLL,
  // TASKLET, SCHED, HRTIMER, RCU on current kernels; types are taken as the
  // file names them, so new ones appear without a code change.
  std::vector<std::pair<std::string, uint64_t>> counts;
};

struct Softirqs : StatsParseStatus {
  std::vector<CpuSoftirqs> cpus;  // in header order
};

// Parses <root>/proc/softirqs. Columns are mapped to CPUs by the header line
// ("CPU0 CPU1 ..."), never by position, so gaps in CPU numbering are right.
// A malformed header makes the whole file unusable (one diagnostic, no CPUs);
// a type row with a value count different from the header's CPU count is
// skipped.
Softirqs ParseSoftirqs(const std::string& root);
// The same for the file's text, read from `path` (named in diagnostics).
Softirqs ParseSoftirqsText(std::string_view text, const std::string& path);

// ---------------------------------------------------------------------------
// /proc/schedstat

struct CpuSchedstat {
  int cpu = -1;
  uint64_t running_ns = 0;  // field 7: time tasks ran on this CPU
  uint64_t waiting_ns = 0;  // field 8: time tasks waited on its run queue
  uint64_t timeslices = 0;  // field 9: timeslices run on this CPU
};

struct Schedstat : StatsParseStatus {
  int version = 0;  // from the "version N" line; 0 when missing
  std::vector<CpuSchedstat> cpus;
};

// Versions whose cpuN lines this parser knows. Documentation/scheduler/
// sched-stats.rst: version 15 has nine values per cpuN line (7, 8 and 9 are
// run time and wait time in ns - the document said jiffies until 2019, the
// kernel has reported ns since 2.6.23 - and timeslices); versions 16 and 17
// changed only the domainN lines, so their cpuN lines read the same.
bool IsKnownSchedstatVersion(int version);

// Parses <root>/proc/schedstat. An unknown or missing version gives one
// diagnostic and no CPUs (the field order cannot be trusted). domainN lines
// are ignored. A cpuN line with other than nine values is skipped.
Schedstat ParseSchedstat(const std::string& root);
// The same for the file's text, read from `path` (named in diagnostics).
Schedstat ParseSchedstatText(std::string_view text, const std::string& path);

// ---------------------------------------------------------------------------
// cpufreq

struct CpuFrequency {
  int cpu = -1;
  double hertz = 0;  // scaling_cur_freq (kHz) * 1000
};

struct Cpufreq : StatsParseStatus {
  std::vector<CpuFrequency> cpus;  // in the order of `cpus` passed in
};

// Reads <root>/sys/devices/system/cpu/cpuN/cpufreq/scaling_cur_freq for each
// N in `cpus`. `present` is true when at least one CPU has the file; a CPU
// without it (offline, or no cpufreq driver) is left out silently.
Cpufreq ParseCpufreq(const std::string& root, const std::vector<int>& cpus);

}  // namespace pmu::collectors
