#include "pmu/sampling/kernel_stats.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "pmu/collectors/cpu_counters.h"
#include "pmu/collectors/topology.h"

namespace pmu::sampling {
namespace {

struct MissingText {
  const char* path;
  const char* consequence;
  bool expected;  // many hosts lack it: info, not a warning
};

constexpr std::array<MissingText, kStatsSourceCount> kMissing{{
    {"/proc/stat", "; CPU time metrics are not exported", false},
    {"/proc/softirqs", "; softirq metrics are not exported", false},
    {"/proc/schedstat",
     " (kernel built without CONFIG_SCHEDSTATS); run-queue metrics are not exported", true},
    {"/sys/devices/system/cpu/cpuN/cpufreq/scaling_cur_freq",
     " for any selected CPU (no cpufreq driver, as in most virtual machines); frequency "
     "metrics are not exported",
     true},
}};

// The parse of `file`'s text by `parse`, or what a missing file reads as:
// absent, silently when it does not exist.
template <typename Result, typename Parse>
Result ReadHeld(HeldFile& file, const Parse& parse) {
  std::string_view text;
  int error = 0;
  if (file.Read(&text, &error)) return parse(text, file.path());
  Result missing;
  if (error != ENOENT && error != ENOTDIR) {
    missing.diagnostics.push_back(file.path() + ":0: cannot read: " + std::strerror(error));
  }
  return missing;
}

}  // namespace

KernelStatsReader::KernelStatsReader(config::StatsConfig config, std::string root,
                                     std::vector<int> cpus, long ticks_per_second)
    : config_(config),
      root_(std::move(root)),
      proc_stat_file_(collectors::UnderRoot(root_, "/proc/stat")),
      softirqs_file_(collectors::UnderRoot(root_, "/proc/softirqs")),
      schedstat_file_(collectors::UnderRoot(root_, "/proc/schedstat")),
      cpus_(std::move(cpus)),
      ticks_per_second_(ticks_per_second > 0 ? ticks_per_second : 100) {
  std::sort(cpus_.begin(), cpus_.end());
}

void KernelStatsReader::TakeStateFrom(KernelStatsReader& previous) {
  cpu_time_ = std::move(previous.cpu_time_);
  softirqs_ = std::move(previous.softirqs_);
  schedstat_ = std::move(previous.schedstat_);
  available_ = previous.available_;
  absent_since_ns_ = previous.absent_since_ns_;
  parse_errors_ = previous.parse_errors_;
  logged_diagnostics_ = std::move(previous.logged_diagnostics_);
  previous.cpu_time_.clear();
  previous.softirqs_.clear();
  previous.schedstat_.clear();
  previous.logged_diagnostics_.clear();
}

uint64_t KernelStatsReader::Update(Entry& entry, bool first, uint64_t raw) {
  if (first) {
    entry = Entry{raw, raw};
  } else {
    if (raw > entry.last_raw) entry.total += raw - entry.last_raw;
    entry.last_raw = raw;
  }
  return entry.total;
}

void KernelStatsReader::SetOnlineCpus(std::vector<int> cpus) {
  // A CPU that came online may bring a cpufreq directory with it.
  if (online_ != cpus) absent_since_ns_[static_cast<size_t>(StatsSource::kCpufreq)].reset();
  online_ = std::move(cpus);
}

bool KernelStatsReader::Skip(StatsSource source, int64_t now_ns) const {
  const std::optional<int64_t>& since = absent_since_ns_[static_cast<size_t>(source)];
  return since.has_value() && now_ns - *since < absent_recheck_.count();
}

void KernelStatsReader::Absent(StatsSource source, bool present, int64_t now_ns) {
  std::optional<int64_t>& since = absent_since_ns_[static_cast<size_t>(source)];
  if (present) {
    since.reset();
  } else {
    since = now_ns;
  }
}

void KernelStatsReader::StillAbsent(StatsSource source, KernelStats& out) const {
  const auto index = static_cast<size_t>(source);
  out.sources[index] = {true, false, parse_errors_[index]};
}

bool KernelStatsReader::Selected(int cpu) const {
  return cpus_.empty() || std::binary_search(cpus_.begin(), cpus_.end(), cpu);
}

std::vector<int> KernelStatsReader::CpufreqCpus() const {
  if (!cpus_.empty()) return cpus_;
  if (online_) return *online_;
  try {
    return collectors::OnlineCpus(root_);
  } catch (const std::runtime_error&) {
    return {};  // no online list: cpufreq reads as absent
  }
}

void KernelStatsReader::Note(StatsSource source, bool present, bool available,
                             const std::vector<std::string>& diagnostics, KernelStats& out) {
  const auto index = static_cast<size_t>(source);
  std::optional<bool>& last = available_[index];
  const bool changed = last.has_value() ? *last != available : !available;
  last = available;
  const MissingText& text = kMissing[index];
  const std::string shown_root = root_ == "/" ? "" : root_;
  if (changed && !present) {
    spdlog::log(text.expected ? spdlog::level::info : spdlog::level::warn, "{}{} not present{}",
                shown_root, text.path, text.consequence);
  } else if (changed && available) {
    spdlog::info("{}{} is available again; its metrics are exported", shown_root, text.path);
  }
  parse_errors_[index] += diagnostics.size();
  for (const std::string& diagnostic : diagnostics) {
    if (logged_diagnostics_.size() > kMaxLoggedDiagnostics) break;
    if (logged_diagnostics_.size() == kMaxLoggedDiagnostics) {
      spdlog::warn("kernel statistics: {} distinct parse problems logged; further ones are not",
                   kMaxLoggedDiagnostics);
      logged_diagnostics_.insert("");  // marks the cap as announced
      break;
    }
    if (logged_diagnostics_.insert(diagnostic).second) {
      spdlog::warn("kernel statistics: {}", diagnostic);
    }
  }
  out.sources[index] = {true, available, parse_errors_[index]};
}

collectors::ProcStat KernelStatsReader::ReadProcStat() {
  return ReadHeld<collectors::ProcStat>(
      proc_stat_file_, [this](std::string_view text, const std::string& path) {
        return collectors::ParseProcStatText(text, path, ticks_per_second_);
      });
}

KernelStats KernelStatsReader::Read(bool want_proc_stat,
                                    std::optional<collectors::ProcStat>* proc_stat) {
  KernelStats out;
  out.ticks_per_second = ticks_per_second_;
  if (config_.proc_stat || want_proc_stat) {
    collectors::ProcStat stat = ReadProcStat();
    if (config_.proc_stat) {
      for (const collectors::CpuTimes& times : stat.cpus) {
        if (!Selected(times.cpu)) continue;
        auto [it, first] = cpu_time_.try_emplace(times.cpu);
        KernelStats::CpuTime cpu{times.cpu, {}};
        for (size_t mode = 0; mode < collectors::kCpuModeCount; ++mode) {
          cpu.ticks[mode] = Update(it->second[mode], first, times.ticks[mode]);
        }
        out.cpu_time.push_back(cpu);
      }
      Note(StatsSource::kProcStat, stat.present, stat.present, stat.diagnostics, out);
    }
    if (proc_stat != nullptr) *proc_stat = std::move(stat);
  }
  const int64_t now = collectors::MonotonicNanos();
  if (config_.softirqs && Skip(StatsSource::kSoftirqs, now)) {
    StillAbsent(StatsSource::kSoftirqs, out);
  } else if (config_.softirqs) {
    const auto parsed =
        ReadHeld<collectors::Softirqs>(softirqs_file_, collectors::ParseSoftirqsText);
    Absent(StatsSource::kSoftirqs, parsed.present, now);
    for (const collectors::CpuSoftirqs& cpu : parsed.cpus) {
      if (!Selected(cpu.cpu)) continue;
      auto& entries = softirqs_[cpu.cpu];
      KernelStats::CpuSoftirqs totals{cpu.cpu, {}};
      totals.counts.reserve(cpu.counts.size());
      for (const auto& [type, count] : cpu.counts) {
        auto [it, first] = entries.try_emplace(type);
        totals.counts.emplace_back(type, Update(it->second, first, count));
      }
      out.softirqs.push_back(std::move(totals));
    }
    Note(StatsSource::kSoftirqs, parsed.present, parsed.present, parsed.diagnostics, out);
  }
  if (config_.schedstat && Skip(StatsSource::kSchedstat, now)) {
    StillAbsent(StatsSource::kSchedstat, out);
  } else if (config_.schedstat) {
    const auto parsed =
        ReadHeld<collectors::Schedstat>(schedstat_file_, collectors::ParseSchedstatText);
    Absent(StatsSource::kSchedstat, parsed.present, now);
    for (const collectors::CpuSchedstat& cpu : parsed.cpus) {
      if (!Selected(cpu.cpu)) continue;
      auto [it, first] = schedstat_.try_emplace(cpu.cpu);
      out.schedstat.push_back({cpu.cpu, Update(it->second[0], first, cpu.running_ns),
                               Update(it->second[1], first, cpu.waiting_ns),
                               Update(it->second[2], first, cpu.timeslices)});
    }
    Note(StatsSource::kSchedstat, parsed.present,
         parsed.present && collectors::IsKnownSchedstatVersion(parsed.version), parsed.diagnostics,
         out);
  }
  if (config_.cpufreq && Skip(StatsSource::kCpufreq, now)) {
    StillAbsent(StatsSource::kCpufreq, out);
  } else if (config_.cpufreq) {
    collectors::Cpufreq parsed = collectors::ParseCpufreq(root_, CpufreqCpus());
    Absent(StatsSource::kCpufreq, parsed.present, now);
    for (const collectors::CpuFrequency& cpu : parsed.cpus) {
      if (Selected(cpu.cpu)) out.cpufreq.push_back(cpu);
    }
    Note(StatsSource::kCpufreq, parsed.present, parsed.present, parsed.diagnostics, out);
  }
  return out;
}

}  // namespace pmu::sampling
