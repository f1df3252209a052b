#include "pmu/metrics/derived.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <span>
#include <stdexcept>
#include <string_view>
#include <tuple>
#include <utility>

namespace pmu::metrics {
namespace {

using collectors::CpuMode;
using collectors::CpuTimes;
using config::DerivedScope;
using config::DerivedSpec;
using sampling::Histogram;
using sampling::IntervalRecord;

constexpr CpuMode kBusyModes[] = {CpuMode::kUser, CpuMode::kNice,    CpuMode::kSystem,
                                  CpuMode::kIrq,  CpuMode::kSoftirq, CpuMode::kSteal};
constexpr CpuMode kIdleModes[] = {CpuMode::kIdle, CpuMode::kIowait};

// 1, 2, 5 times each power of ten from 10^lo to 10^hi, then 10^(hi+1).
std::vector<double> OneTwoFive(int lo, int hi) {
  std::vector<double> bounds;
  for (int exponent = lo; exponent <= hi; ++exponent) {
    for (double mantissa : {1.0, 2.0, 5.0}) {
      // Parsing the decimal text gives the double nearest to it, so the le
      // labels print as "0.002", not "0.0020000000000000000416".
      bounds.push_back(
          std::stod(std::to_string(static_cast<int>(mantissa)) + "e" + std::to_string(exponent)));
    }
  }
  bounds.push_back(std::stod("1e" + std::to_string(hi + 1)));
  return bounds;
}

std::vector<double> LinearTenths() {
  std::vector<double> bounds;
  for (int tenth = 1; tenth <= 10; ++tenth) bounds.push_back(tenth / 10.0);
  return bounds;
}

bool UsesProcStat(const DerivedSpec& spec) { return config::IsStatInput(spec.numerator.front()); }

// Plan indices of `names`, or the first name the host cannot count.
struct ResolvedInputs {
  std::vector<size_t> indices;
  std::string unsupported;  // empty when every input is countable
  std::string reason;
};

ResolvedInputs Resolve(const std::vector<std::string>& names, const collectors::EventPlan& plan) {
  ResolvedInputs out;
  for (const std::string& name : names) {
    if (config::IsStatInput(name)) continue;
    const auto it = std::find_if(plan.events.begin(), plan.events.end(),
                                 [&](const collectors::PlannedEvent& e) { return e.name == name; });
    if (it == plan.events.end()) {
      out.unsupported = name;
      out.reason = "not in the event plan";
      return out;
    }
    if (!it->supported) {
      out.unsupported = name;
      out.reason = it->unsupported_reason;
      return out;
    }
    out.indices.push_back(static_cast<size_t>(it - plan.events.begin()));
  }
  return out;
}

// Why `spec` cannot be computed on this host; empty when it can.
std::string DisabledReason(const DerivedSpec& spec, const collectors::EventPlan& plan) {
  for (const auto* names : {&spec.numerator, &spec.denominator}) {
    const ResolvedInputs r = Resolve(*names, plan);
    if (!r.unsupported.empty()) {
      return "event '" + r.unsupported + "' cannot be counted on this host (" + r.reason + ")";
    }
  }
  return {};
}

double SumDeltas(std::span<const double> deltas, const std::vector<size_t>& indices) {
  double sum = 0;
  for (size_t i : indices) {
    sum += i < deltas.size() ? deltas[i] : std::numeric_limits<double>::quiet_NaN();
  }
  return sum;
}

// The change of one /proc/stat input between two readings, in seconds; NaN
// when a counter went backwards.
double StatDelta(std::string_view input, const CpuTimes& now, const CpuTimes& before) {
  double sum = 0;
  const auto add = [&](CpuMode mode) {
    if (now.Ticks(mode) < before.Ticks(mode)) {
      sum = std::numeric_limits<double>::quiet_NaN();
    } else {
      sum += now.Seconds(mode) - before.Seconds(mode);
    }
  };
  for (CpuMode mode : kBusyModes) add(mode);
  if (input == config::kProcStatTotalSeconds) {
    for (CpuMode mode : kIdleModes) add(mode);
  }
  return sum;
}

double SumStatDeltas(const std::vector<std::string>& inputs, const CpuTimes& now,
                     const CpuTimes& before) {
  double sum = 0;
  for (const std::string& input : inputs) sum += StatDelta(input, now, before);
  return sum;
}

std::string Join(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& name : names) out += (out.empty() ? "" : " + ") + name;
  return out;
}

std::string HelpText(const DerivedSpec& spec) {
  std::string help = "Distribution of per-interval values of " + Join(spec.numerator);
  help += spec.per_second ? " per second" : " / " + Join(spec.denominator);
  help += spec.scope == DerivedScope::kCpu
              ? ", per CPU"
              : ", for the host (every CPU's complete interval summed)";
  return help + "; one observation per sampling interval.";
}

// The start of a /proc/stat window: the CPUs' times when it opened.
struct StatWindow {
  std::map<int, CpuTimes> start;
  int64_t start_ns = 0;
};

// Ticks of every mode that is time on the CPU (guest time is inside user and
// nice already).
uint64_t TotalTicks(const CpuTimes& t) {
  uint64_t total = 0;
  for (CpuMode mode : kBusyModes) total += t.Ticks(mode);
  for (CpuMode mode : kIdleModes) total += t.Ticks(mode);
  return total;
}

}  // namespace

// One histogram with its latest value.
struct Series {
  Histogram histogram;
  std::optional<double> last;
};

struct DerivedEngine::Metric {
  DerivedSpec spec;
  std::shared_ptr<const std::vector<double>> bounds;
  bool proc_stat = false;
  std::vector<size_t> numerator;  // plan indices (event inputs)
  std::vector<size_t> denominator;
  Series host;
  std::map<int, Series> per_cpu;
  // /proc/stat inputs: the open window, per CPU (scope cpu) or of all
  // selected CPUs (scope host, key -1).
  std::map<int, StatWindow> windows;
  uint64_t skipped = 0;

  Series& For(int cpu) {
    if (spec.scope == DerivedScope::kHost) return host;
    auto [it, inserted] = per_cpu.try_emplace(cpu);
    if (inserted) it->second.histogram = Histogram(bounds);
    return it->second;
  }
};

std::vector<DerivedSpec> BuiltInDerived(const std::vector<config::EventSpec>& events) {
  const auto has = [&events](std::string_view name) {
    return std::any_of(events.begin(), events.end(),
                       [name](const config::EventSpec& e) { return e.name == name; });
  };
  const auto ratio = [](std::string name, std::string numerator, std::string denominator,
                        std::vector<double> buckets) {
    DerivedSpec spec;
    spec.name = std::move(name);
    spec.numerator = {std::move(numerator)};
    spec.denominator = {std::move(denominator)};
    spec.buckets = std::move(buckets);
    return spec;
  };
  const std::vector<double> miss_buckets = OneTwoFive(-5, -1);  // 1e-5 .. 1
  std::vector<DerivedSpec> out;
  if (has("instructions") && has("cycles")) {
    out.push_back(
        ratio("ipc", "instructions", "cycles", {0.25, 0.5, 0.75, 1, 1.25, 1.5, 2, 2.5, 3, 4}));
  }
  for (const auto& [name, misses, total] :
       {std::tuple{"cache_miss_ratio", "cache-misses", "cache-references"},
        std::tuple{"branch_miss_ratio", "branch-misses", "branches"}}) {
    if (!has(misses)) continue;
    if (has(total)) {
      out.push_back(ratio(name, misses, total, miss_buckets));
    } else if (has("instructions")) {
      out.push_back(ratio(name, misses, "instructions", miss_buckets));
    }
  }
  DerivedSpec busy = ratio("cpu_busy_ratio", std::string(config::kProcStatBusySeconds),
                           std::string(config::kProcStatTotalSeconds), LinearTenths());
  busy.scope = DerivedScope::kCpu;
  out.push_back(std::move(busy));
  if (has("context-switches")) {
    DerivedSpec switches;
    switches.name = "context_switches_per_second";
    switches.numerator = {"context-switches"};
    switches.per_second = true;
    switches.buckets = OneTwoFive(0, 5);
    out.push_back(std::move(switches));
  }
  return out;
}

std::vector<DerivedSpec> EffectiveDerived(const config::Config& config) {
  return config.derived ? *config.derived : BuiltInDerived(config.events);
}

std::vector<double> BucketsFor(const DerivedSpec& spec) {
  if (!spec.buckets.empty()) return spec.buckets;
  if (spec.per_second) return OneTwoFive(0, 5);
  if (UsesProcStat(spec)) return LinearTenths();
  return OneTwoFive(-3, 2);
}

DerivedEngine::DerivedEngine(const config::Config& config, const collectors::EventPlan& plan,
                             std::vector<int> cpus, const DerivedEngine* previous, bool quiet)
    : cpus_(std::move(cpus)) {
  std::sort(cpus_.begin(), cpus_.end());
  const bool built_in = !config.derived.has_value();
  for (DerivedSpec& spec : EffectiveDerived(config)) {
    const std::string why = DisabledReason(spec, plan);
    if (!why.empty()) {
      if (!quiet) {
        spdlog::log(built_in ? spdlog::level::info : spdlog::level::warn,
                    "derived metric {} disabled: {}", spec.name, why);
      }
      continue;
    }
    auto metric = std::make_unique<Metric>();
    spec.buckets = BucketsFor(spec);
    metric->bounds = std::make_shared<const std::vector<double>>(spec.buckets);
    metric->proc_stat = UsesProcStat(spec);
    metric->numerator = Resolve(spec.numerator, plan).indices;
    metric->denominator = Resolve(spec.denominator, plan).indices;
    metric->host.histogram = Histogram(metric->bounds);
    metric->spec = std::move(spec);
    if (previous != nullptr) {
      // The same definition continues where the previous engine left off.
      for (const auto& old : previous->metrics_) {
        if (!(old->spec == metric->spec)) continue;
        metric->host = old->host;
        metric->per_cpu = old->per_cpu;
        metric->skipped = old->skipped;
      }
    }
    if (metric->spec.scope == DerivedScope::kCpu) {
      for (int cpu : cpus_) metric->For(cpu);
    }
    if (metric->proc_stat) {
      needs_proc_stat_ = true;
      proc_stat_period_ = std::min(proc_stat_period_, metric->spec.window);
    }
    metrics_.push_back(std::move(metric));
  }
}

DerivedEngine::~DerivedEngine() = default;

void DerivedEngine::Observe(Metric& metric, int cpu, double numerator, double denominator) {
  const double value = numerator / denominator;
  if (!std::isfinite(numerator) || !std::isfinite(denominator) || denominator <= 0 ||
      !std::isfinite(value)) {
    ++metric.skipped;
    return;
  }
  Series& series = metric.For(cpu);
  series.histogram.Observe(value);
  series.last = value;
}

void DerivedEngine::OnInterval(const IntervalRecord& record) {
  if (record.cpu < 0) return;
  const double seconds = static_cast<double>(record.end_ns - record.start_ns) / 1e9;
  std::lock_guard lock(mutex_);
  for (const auto& m : metrics_) {
    if (m->proc_stat || m->spec.scope != DerivedScope::kCpu) continue;
    const double numerator = SumDeltas(record.event_deltas, m->numerator);
    const double denominator =
        m->spec.per_second ? seconds : SumDeltas(record.event_deltas, m->denominator);
    Observe(*m, record.cpu, numerator, denominator);
  }
}

void DerivedEngine::OnHostInterval(const sampling::HostInterval& interval) {
  std::lock_guard lock(mutex_);
  for (const auto& m : metrics_) {
    if (m->proc_stat || m->spec.scope != DerivedScope::kHost) continue;
    double numerator = 0;
    double denominator = 0;
    for (const IntervalRecord& record : interval.cpus) {
      const double part = SumDeltas(record.event_deltas, m->numerator);
      if (m->spec.per_second) {
        // Each CPU's own rate over its own interval, summed.
        const double seconds = static_cast<double>(record.end_ns - record.start_ns) / 1e9;
        numerator += part / seconds;
      } else {
        numerator += part;
        denominator += SumDeltas(record.event_deltas, m->denominator);
      }
    }
    Observe(*m, -1, numerator, m->spec.per_second ? 1.0 : denominator);
  }
}

void DerivedEngine::OnHostIntervalIncomplete(uint64_t) {
  std::lock_guard lock(mutex_);
  for (const auto& m : metrics_) {
    if (!m->proc_stat && m->spec.scope == DerivedScope::kHost) ++m->skipped;
  }
}

void DerivedEngine::EndRound() {}

void DerivedEngine::OnProcStat(const collectors::ProcStat& stat, int64_t now_ns) {
  std::lock_guard lock(mutex_);
  if (!needs_proc_stat_) return;
  if (!stat.present) {
    if (!proc_stat_missing_logged_) {
      spdlog::warn("derived metrics from /proc/stat have no input: /proc/stat is unreadable");
      proc_stat_missing_logged_ = true;
    }
    for (const auto& m : metrics_) m->windows.clear();
    return;
  }
  proc_stat_missing_logged_ = false;
  const auto selected = [this](int cpu) {
    return cpus_.empty() || std::binary_search(cpus_.begin(), cpus_.end(), cpu);
  };
  for (const auto& m : metrics_) {
    if (!m->proc_stat) continue;
    const bool host = m->spec.scope == DerivedScope::kHost;
    // Windows: scope cpu, one per CPU; scope host, one of every CPU.
    std::map<int, std::vector<const CpuTimes*>> now_by_window;
    for (const CpuTimes& now : stat.cpus) {
      if (selected(now.cpu)) now_by_window[host ? -1 : now.cpu].push_back(&now);
    }
    for (const auto& [key, nows] : now_by_window) {
      auto [it, opened] = m->windows.try_emplace(key);
      StatWindow& window = it->second;
      const auto restart = [&] {
        window.start.clear();
        for (const CpuTimes* now : nows) window.start[now->cpu] = *now;
        window.start_ns = now_ns;
      };
      if (opened) {
        restart();
        continue;
      }
      double numerator = 0;
      double denominator = 0;
      uint64_t ticks = 0;
      size_t cpus = 0;
      for (const CpuTimes* now : nows) {
        const auto before = window.start.find(now->cpu);
        if (before == window.start.end()) continue;  // came online in the window
        ++cpus;
        const uint64_t now_total = TotalTicks(*now);
        const uint64_t start_total = TotalTicks(before->second);
        ticks += now_total > start_total ? now_total - start_total : 0;
        numerator += SumStatDeltas(m->spec.numerator, *now, before->second);
        if (!m->spec.per_second) {
          denominator += SumStatDeltas(m->spec.denominator, *now, before->second);
        }
      }
      if (cpus == 0) {
        restart();
        continue;
      }
      // A value per window, once it holds kMinStatWindowTicks per CPU
      // (/proc/stat moves in whole ticks). Readings come about every
      // proc_stat_period_ (the shortest window), a little late each: a
      // tenth of that early still closes the window.
      const int64_t early = std::min(m->spec.window, proc_stat_period_).count() / 10;
      if (std::isfinite(numerator) && std::isfinite(denominator) &&
          (now_ns - window.start_ns < m->spec.window.count() - early ||
           ticks < kMinStatWindowTicks * cpus)) {
        continue;
      }
      if (m->spec.per_second) denominator = static_cast<double>(now_ns - window.start_ns) / 1e9;
      Observe(*m, key, numerator, denominator);
      restart();
    }
  }
}

std::shared_ptr<const DerivedSnapshot> DerivedEngine::TakeSnapshot() const {
  auto snapshot = std::make_shared<DerivedSnapshot>();
  std::lock_guard lock(mutex_);
  snapshot->metrics.reserve(metrics_.size());
  for (const auto& m : metrics_) {
    DerivedSnapshot::Metric& out = snapshot->metrics.emplace_back();
    out.name = m->spec.name;
    out.help = HelpText(m->spec);
    out.skipped = m->skipped;
    if (m->spec.scope == DerivedScope::kHost) {
      out.series.push_back({-1, m->host.histogram, m->host.last});
    } else {
      for (const auto& [cpu, series] : m->per_cpu) {
        out.series.push_back({cpu, series.histogram, series.last});
      }
    }
  }
  return snapshot;
}

namespace {

class DerivedFamilySource final : public FamilySource {
 public:
  void Write(const ExportSnapshot& snapshot, FamilyWriter& out) const override {
    if (!snapshot.derived) return;
    std::string cpu_label;
    for (const DerivedSnapshot::Metric& m : snapshot.derived->metrics) {
      const std::string name = "pmu_derived_" + m.name;
      out.Family(name, m.help, MetricType::kHistogram);
      for (const auto& s : m.series) {
        if (s.cpu < 0) {
          out.HistogramSample({}, s.histogram);
        } else {
          cpu_label = std::to_string(s.cpu);
          out.HistogramSample({{"cpu", cpu_label}}, s.histogram);
        }
      }
      out.Family(name + "_last", "The latest per-interval value of " + name + ".",
                 MetricType::kGauge);
      for (const auto& s : m.series) {
        if (!s.last) continue;
        if (s.cpu < 0) {
          out.Sample({}, *s.last);
        } else {
          cpu_label = std::to_string(s.cpu);
          out.Sample({{"cpu", cpu_label}}, *s.last);
        }
      }
    }
    out.Family("pmu_exporter_derived_skipped_total",
               "Sampling intervals a derived metric could not use: zero denominator or duration, "
               "an input that did not run (unknown), or a counter that went backwards.",
               MetricType::kCounter);
    for (const DerivedSnapshot::Metric& m : snapshot.derived->metrics) {
      out.Sample({{"name", m.name}}, static_cast<double>(m.skipped));
    }
  }
};

}  // namespace

std::unique_ptr<FamilySource> DerivedFamilies() { return std::make_unique<DerivedFamilySource>(); }

std::vector<std::string> DerivedEngine::EnabledMetrics() const {
  std::lock_guard lock(mutex_);
  std::vector<std::string> names;
  for (const auto& m : metrics_) names.push_back(m->spec.name);
  return names;
}

}  // namespace pmu::metrics
