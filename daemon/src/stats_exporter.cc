#include "pmu/daemon/stats_exporter.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <stdexcept>
#include <utility>

#include "pmu/collectors/cpu_counters.h"
#include "pmu/collectors/topology.h"

namespace pmu::daemon {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

constexpr size_t kMaxLoggedDiagnostics = 1000;

// One family under construction; samples are appended with Sample().
struct FamilyBuilder {
  MetricFamily family;

  FamilyBuilder(std::string name, std::string help, MetricType type) {
    family.name = std::move(name);
    family.help = std::move(help);
    family.type = type;
  }

  void Sample(std::vector<ClientMetric::Label> labels, double value) {
    ClientMetric metric;
    metric.label = std::move(labels);
    (family.type == MetricType::Counter ? metric.counter.value : metric.gauge.value) = value;
    family.metric.push_back(std::move(metric));
  }

  // Moves the family into `out` unless it has no samples.
  void MoveTo(std::vector<MetricFamily>& out) {
    if (!family.metric.empty()) out.push_back(std::move(family));
  }
};

ClientMetric::Label CpuLabel(int cpu) { return {"cpu", std::to_string(cpu)}; }

}  // namespace

double KernelStatsCollector::MonotonicTotals::Update(int cpu, const std::string& key, double raw) {
  const auto [it, first] = entries_.try_emplace({cpu, key}, Entry{raw, raw});
  Entry& entry = it->second;
  if (!first) {
    if (raw > entry.last_raw) entry.total += raw - entry.last_raw;
    entry.last_raw = raw;
  }
  return entry.total;
}

KernelStatsCollector::KernelStatsCollector(config::StatsConfig config, std::string root,
                                           std::vector<int> cpus, long ticks_per_second)
    : config_(config),
      root_(std::move(root)),
      cpus_([&cpus] {
        std::sort(cpus.begin(), cpus.end());
        return std::move(cpus);
      }()),
      ticks_per_second_(ticks_per_second > 0 ? ticks_per_second : 100) {}

bool KernelStatsCollector::Selected(int cpu) const {
  return cpus_.empty() || std::binary_search(cpus_.begin(), cpus_.end(), cpu);
}

std::vector<int> KernelStatsCollector::CpufreqCpus() const {
  if (!cpus_.empty()) return cpus_;
  try {
    return collectors::OnlineCpus(root_);
  } catch (const std::runtime_error&) {
    return {};  // no online list: cpufreq reads as absent
  }
}

void KernelStatsCollector::Note(Source source, bool present, bool available,
                                const std::vector<std::string>& diagnostics) const {
  static const std::map<Source, std::pair<std::string, std::string>> kMissing{
      {Source::kProcStat, {"/proc/stat", "; CPU time metrics are not exported"}},
      {Source::kSoftirqs, {"/proc/softirqs", "; softirq metrics are not exported"}},
      {Source::kSchedstat,
       {"/proc/schedstat",
        " (kernel built without CONFIG_SCHEDSTATS); run-queue metrics are not exported"}},
      {Source::kCpufreq,
       {"/sys/devices/system/cpu/cpuN/cpufreq/scaling_cur_freq",
        " for any selected CPU (no cpufreq driver, as in most virtual machines); "
        "frequency metrics are not exported"}},
  };
  const auto [previous, first] = available_.try_emplace(source, available);
  const bool changed = first ? !available : previous->second != available;
  previous->second = available;
  const auto& [path, consequence] = kMissing.at(source);
  if (changed && !present) {
    const bool expected = source == Source::kSchedstat || source == Source::kCpufreq;
    spdlog::log(expected ? spdlog::level::info : spdlog::level::warn, "{}{} not present{}",
                root_ == "/" ? "" : root_, path, consequence);
  } else if (changed && available) {
    spdlog::info("{}{} is available again; its metrics are exported", root_ == "/" ? "" : root_,
                 path);
  }
  parse_errors_[source] += static_cast<double>(diagnostics.size());
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
}

std::vector<MetricFamily> KernelStatsCollector::Collect() const {
  const int64_t now = collectors::MonotonicNanos();
  if (max_age_.count() > 0) {
    std::lock_guard lock(cache_mutex_);
    if (have_cache_ && now - cached_at_ns_ < max_age_.count()) return cached_;
  }
  std::vector<MetricFamily> fresh = CollectNow();
  if (max_age_.count() > 0) {
    std::lock_guard lock(cache_mutex_);
    cached_ = fresh;
    cached_at_ns_ = now;
    have_cache_ = true;
  }
  return fresh;
}

std::vector<MetricFamily> KernelStatsCollector::CollectNow() const {
  const std::lock_guard lock(mutex_);
  FamilyBuilder cpu_time(
      "pmu_cpu_time_seconds_total",
      "Seconds each CPU spent in each mode since boot (/proc/stat). guest and guest_nice are "
      "also counted inside user and nice, as the kernel does: leave them out when summing modes.",
      MetricType::Counter);
  FamilyBuilder softirqs("pmu_cpu_softirqs_total",
                         "Softirqs handled on each CPU since boot, by type (/proc/softirqs).",
                         MetricType::Counter);
  FamilyBuilder running("pmu_cpu_running_seconds_total",
                        "Time tasks ran on each CPU (/proc/schedstat).", MetricType::Counter);
  FamilyBuilder waiting("pmu_cpu_runqueue_wait_seconds_total",
                        "Time runnable tasks waited on each CPU's run queue (/proc/schedstat).",
                        MetricType::Counter);
  FamilyBuilder timeslices("pmu_cpu_timeslices_total",
                           "Timeslices run on each CPU (/proc/schedstat).", MetricType::Counter);
  FamilyBuilder frequency("pmu_cpu_frequency_hertz",
                          "Current frequency of each CPU (cpufreq scaling_cur_freq).",
                          MetricType::Gauge);
  FamilyBuilder available("pmu_exporter_stats_source_available",
                          "1 if the enabled kernel statistics source was read and understood at "
                          "this scrape, 0 if the host lacks it or its format is unknown.",
                          MetricType::Gauge);
  FamilyBuilder errors("pmu_exporter_stats_parse_errors_total",
                       "Malformed lines and read errors met in a kernel statistics source "
                       "(each is logged once; the rest of the source is still exported).",
                       MetricType::Counter);
  const auto source_done = [&](Source source, std::string name, bool present, bool usable,
                               const std::vector<std::string>& diagnostics) {
    Note(source, present, usable, diagnostics);
    available.Sample({{"source", name}}, usable ? 1 : 0);
    errors.Sample({{"source", std::move(name)}}, parse_errors_[source]);
  };

  if (config_.proc_stat) {
    const collectors::ProcStat stat = collectors::ParseProcStat(root_, ticks_per_second_);
    for (const collectors::CpuTimes& times : stat.cpus) {
      if (!Selected(times.cpu)) continue;
      for (size_t mode = 0; mode < collectors::kCpuModeCount; ++mode) {
        const std::string name(collectors::kCpuModeNames[mode]);
        cpu_time.Sample({CpuLabel(times.cpu), {"mode", name}},
                        cpu_time_.Update(times.cpu, name, times.seconds[mode]));
      }
    }
    source_done(Source::kProcStat, "proc_stat", stat.present, stat.present, stat.diagnostics);
  }
  if (config_.softirqs) {
    const collectors::Softirqs parsed = collectors::ParseSoftirqs(root_);
    for (const collectors::CpuSoftirqs& cpu : parsed.cpus) {
      if (!Selected(cpu.cpu)) continue;
      for (const auto& [type, count] : cpu.counts) {
        softirqs.Sample({CpuLabel(cpu.cpu), {"type", type}},
                        softirqs_.Update(cpu.cpu, type, static_cast<double>(count)));
      }
    }
    source_done(Source::kSoftirqs, "softirqs", parsed.present, parsed.present, parsed.diagnostics);
  }
  if (config_.schedstat) {
    const collectors::Schedstat parsed = collectors::ParseSchedstat(root_);
    for (const collectors::CpuSchedstat& cpu : parsed.cpus) {
      if (!Selected(cpu.cpu)) continue;
      const auto total = [&](const std::string& key, uint64_t raw) {
        return schedstat_.Update(cpu.cpu, key, static_cast<double>(raw));
      };
      running.Sample({CpuLabel(cpu.cpu)}, total("running", cpu.running_ns) * 1e-9);
      waiting.Sample({CpuLabel(cpu.cpu)}, total("waiting", cpu.waiting_ns) * 1e-9);
      timeslices.Sample({CpuLabel(cpu.cpu)}, total("timeslices", cpu.timeslices));
    }
    source_done(Source::kSchedstat, "schedstat", parsed.present,
                parsed.present && collectors::IsKnownSchedstatVersion(parsed.version),
                parsed.diagnostics);
  }
  if (config_.cpufreq) {
    const collectors::Cpufreq parsed = collectors::ParseCpufreq(root_, CpufreqCpus());
    for (const collectors::CpuFrequency& cpu : parsed.cpus) {
      if (Selected(cpu.cpu)) frequency.Sample({CpuLabel(cpu.cpu)}, cpu.hertz);
    }
    source_done(Source::kCpufreq, "cpufreq", parsed.present, parsed.present, parsed.diagnostics);
  }

  std::vector<MetricFamily> out;
  for (FamilyBuilder* builder :
       {&cpu_time, &softirqs, &running, &waiting, &timeslices, &frequency, &available, &errors}) {
    builder->MoveTo(out);
  }
  return out;
}

}  // namespace pmu::daemon
