#include "pmu/daemon/derived.h"

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

namespace pmu::daemon {
namespace {

using collectors::CpuMode;
using collectors::CpuTimes;
using config::DerivedScope;
using config::DerivedSpec;
using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

// Series beside the event, stats and derived families: build info, reload
// status (2), HTTP self-metrics (5) and headroom for a few more.
constexpr size_t kFixedSeries = 16;
// /proc/softirqs has 10 types on current kernels.
constexpr size_t kSoftirqTypes = 10;

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

size_t SeriesPerScope(const DerivedSpec& spec, size_t n_cpus) {
  return spec.scope == DerivedScope::kCpu ? n_cpus : 1;
}

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
  help += spec.scope == DerivedScope::kCpu ? ", per CPU"
                                           : ", for the host (CPUs summed per aggregator round)";
  return help + "; one observation per sampling interval.";
}

// One histogram's state.
struct Histogram {
  std::vector<uint64_t> counts;  // per bucket, not cumulative; the last is +Inf
  double sum = 0;
  uint64_t count = 0;
  double last = 0;
  bool has_last = false;
};

// One host round's accumulation for one CPU.
struct RoundPart {
  double numerator = 0;
  double denominator = 0;  // or seconds with per_second
  bool touched = false;
};

}  // namespace

struct DerivedEngine::Metric {
  DerivedSpec spec;
  std::vector<double> bounds;
  bool proc_stat = false;
  std::vector<size_t> numerator;  // plan indices (event inputs)
  std::vector<size_t> denominator;
  Histogram host;
  std::map<int, Histogram> per_cpu;
  std::vector<RoundPart> round;  // host scope, events: indexed by CPU number
  uint64_t skipped = 0;

  Histogram& For(int cpu) {
    if (spec.scope == DerivedScope::kHost) return host;
    auto [it, inserted] = per_cpu.try_emplace(cpu);
    if (inserted) it->second.counts.assign(bounds.size() + 1, 0);
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

SeriesEstimate EstimateSeries(const config::Config& config, const collectors::EventPlan& plan,
                              size_t n_cpus) {
  SeriesEstimate estimate;
  const auto add = [&estimate](std::string what, size_t series) {
    if (series > 0) estimate.parts.push_back({std::move(what), series});
  };
  const std::string cpus = std::to_string(n_cpus) + " CPUs";
  const size_t supported = plan.SupportedCount();
  add("events: 3 families x " + std::to_string(supported) + " supported events x " + cpus,
      3 * supported * n_cpus);
  add("pmu_event_supported: " + std::to_string(plan.events.size()) + " events", plan.events.size());

  const config::StatsConfig& stats = config.stats;
  const size_t per_cpu_stats = (stats.proc_stat ? collectors::kCpuModeCount : 0) +
                               (stats.softirqs ? kSoftirqTypes : 0) + (stats.schedstat ? 3 : 0) +
                               (stats.cpufreq ? 1 : 0);
  const size_t sources = size_t{stats.proc_stat} + size_t{stats.softirqs} +
                         size_t{stats.schedstat} + size_t{stats.cpufreq};
  add("kernel statistics ([stats]): " + std::to_string(per_cpu_stats) + " per CPU x " + cpus +
          " + " + std::to_string(2 * sources) + " per source",
      per_cpu_stats * n_cpus + 2 * sources);

  for (const DerivedSpec& spec : EffectiveDerived(config)) {
    if (!DisabledReason(spec, plan).empty()) continue;
    const size_t per_series = BucketsFor(spec).size() + 4;
    const size_t n = SeriesPerScope(spec, n_cpus);
    add("derived " + spec.name + ": " + std::to_string(per_series) + " (buckets + 4)" +
            (n > 1 ? " x " + cpus : "") + " + 1",
        per_series * n + 1);
  }
  add("build, service and HTTP self-metrics", kFixedSeries);

  std::stable_sort(estimate.parts.begin(), estimate.parts.end(),
                   [](const auto& a, const auto& b) { return a.series > b.series; });
  for (const auto& part : estimate.parts) estimate.total += part.series;
  return estimate;
}

void CheckCardinality(const config::Config& config, const collectors::EventPlan& plan,
                      size_t n_cpus) {
  const SeriesEstimate estimate = EstimateSeries(config, plan, n_cpus);
  const size_t limit = static_cast<size_t>(config.exporter.max_series);
  if (estimate.total <= limit) return;
  std::string message = config.source + ": this configuration would export " +
                        std::to_string(estimate.total) + " series, more than [exporter] " +
                        "max_series = " + std::to_string(limit) + ". Series by source: ";
  for (size_t i = 0; i < estimate.parts.size(); ++i) {
    message += (i == 0 ? "" : "; ") + estimate.parts[i].what + " = " +
               std::to_string(estimate.parts[i].series);
  }
  throw std::runtime_error(message +
                           ". Select fewer CPUs ([sampling] cpus) or events, give derived "
                           "metrics fewer buckets or scope \"host\", or raise max_series.");
}

DerivedEngine::DerivedEngine(const config::Config& config, const collectors::EventPlan& plan,
                             std::vector<int> cpus)
    : cpus_(std::move(cpus)) {
  std::sort(cpus_.begin(), cpus_.end());
  CheckCardinality(config, plan, cpus_.size());
  const bool built_in = !config.derived.has_value();
  for (DerivedSpec& spec : EffectiveDerived(config)) {
    const std::string why = DisabledReason(spec, plan);
    if (!why.empty()) {
      spdlog::log(built_in ? spdlog::level::info : spdlog::level::warn,
                  "derived metric {} disabled: {}", spec.name, why);
      continue;
    }
    auto metric = std::make_unique<Metric>();
    metric->bounds = BucketsFor(spec);
    metric->proc_stat = UsesProcStat(spec);
    metric->numerator = Resolve(spec.numerator, plan).indices;
    metric->denominator = Resolve(spec.denominator, plan).indices;
    metric->host.counts.assign(metric->bounds.size() + 1, 0);
    metric->spec = std::move(spec);
    if (metric->spec.scope == DerivedScope::kCpu) {
      for (int cpu : cpus_) metric->For(cpu);
    }
    needs_proc_stat_ = needs_proc_stat_ || metric->proc_stat;
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
  Histogram& h = metric.For(cpu);
  const auto bucket = std::lower_bound(metric.bounds.begin(), metric.bounds.end(), value);
  ++h.counts[static_cast<size_t>(bucket - metric.bounds.begin())];
  h.sum += value;
  ++h.count;
  h.last = value;
  h.has_last = true;
}

void DerivedEngine::OnInterval(const IntervalRecord& record) {
  if (record.cpu < 0) return;
  const double seconds = static_cast<double>(record.end_ns - record.start_ns) / 1e9;
  std::lock_guard lock(mutex_);
  for (const auto& m : metrics_) {
    if (m->proc_stat) continue;
    const double numerator = SumDeltas(record.event_deltas, m->numerator);
    const double denominator =
        m->spec.per_second ? seconds : SumDeltas(record.event_deltas, m->denominator);
    if (m->spec.scope == DerivedScope::kCpu) {
      Observe(*m, record.cpu, numerator, denominator);
      continue;
    }
    const auto slot = static_cast<size_t>(record.cpu);
    if (m->round.size() <= slot) m->round.resize(slot + 1);
    RoundPart& part = m->round[slot];
    part.numerator += numerator;
    part.denominator += denominator;
    part.touched = true;
  }
}

void DerivedEngine::EndRound() {
  std::lock_guard lock(mutex_);
  for (const auto& m : metrics_) {
    if (m->proc_stat || m->spec.scope != DerivedScope::kHost) continue;
    bool any = false;
    double numerator = 0;
    double denominator = 0;
    bool zero_duration = false;
    for (RoundPart& part : m->round) {
      if (!part.touched) continue;
      any = true;
      if (m->spec.per_second) {
        // Each CPU's own rate, summed: a CPU with two records in the round
        // is not counted at twice its rate.
        zero_duration = zero_duration || part.denominator <= 0;
        numerator += part.numerator / part.denominator;
      } else {
        numerator += part.numerator;
        denominator += part.denominator;
      }
      part = RoundPart{};
    }
    if (!any) continue;
    if (m->spec.per_second) denominator = zero_duration ? 0 : 1;
    Observe(*m, -1, numerator, denominator);
  }
}

void DerivedEngine::OnProcStat(const collectors::ProcStat& stat, int64_t now_ns) {
  std::lock_guard lock(mutex_);
  if (!needs_proc_stat_) return;
  if (!stat.present) {
    if (!proc_stat_missing_logged_) {
      spdlog::warn("derived metrics from /proc/stat have no input: /proc/stat is unreadable");
      proc_stat_missing_logged_ = true;
    }
    previous_stat_.reset();
    return;
  }
  proc_stat_missing_logged_ = false;
  if (previous_stat_) {
    const double elapsed = static_cast<double>(now_ns - previous_stat_ns_) / 1e9;
    std::map<int, const CpuTimes*> before;
    for (const CpuTimes& c : previous_stat_->cpus) before.emplace(c.cpu, &c);
    for (const auto& m : metrics_) {
      if (!m->proc_stat) continue;
      double host_numerator = 0;
      double host_denominator = 0;
      bool any = false;
      for (const CpuTimes& now : stat.cpus) {
        const auto it = before.find(now.cpu);
        if (it == before.end()) continue;  // came online since the last parse
        if (!cpus_.empty() && !std::binary_search(cpus_.begin(), cpus_.end(), now.cpu)) continue;
        const double numerator = SumStatDeltas(m->spec.numerator, now, *it->second);
        const double denominator =
            m->spec.per_second ? elapsed : SumStatDeltas(m->spec.denominator, now, *it->second);
        if (m->spec.scope == DerivedScope::kCpu) {
          Observe(*m, now.cpu, numerator, denominator);
        } else {
          host_numerator += numerator;
          host_denominator += m->spec.per_second ? 0 : denominator;
          any = true;
        }
      }
      if (any) {
        Observe(*m, -1, host_numerator, m->spec.per_second ? elapsed : host_denominator);
      }
    }
  }
  previous_stat_ = stat;
  previous_stat_ns_ = now_ns;
}

std::vector<MetricFamily> DerivedEngine::Collect() const {
  std::vector<MetricFamily> out;
  MetricFamily skipped;
  skipped.name = "pmu_exporter_derived_skipped_total";
  skipped.help =
      "Sampling intervals a derived metric could not use: zero denominator or duration, an "
      "input that did not run (unknown), or a counter that went backwards.";
  skipped.type = MetricType::Counter;

  std::lock_guard lock(mutex_);
  for (const auto& m : metrics_) {
    MetricFamily histogram;
    histogram.name = "pmu_derived_" + m->spec.name;
    histogram.help = HelpText(m->spec);
    histogram.type = MetricType::Histogram;
    MetricFamily last;
    last.name = histogram.name + "_last";
    last.help = "The latest per-interval value of pmu_derived_" + m->spec.name + ".";
    last.type = MetricType::Gauge;

    const auto emit = [&](const Histogram& h, std::vector<ClientMetric::Label> labels) {
      ClientMetric sample;
      sample.label = labels;
      sample.histogram.sample_count = h.count;
      sample.histogram.sample_sum = h.sum;
      uint64_t cumulative = 0;
      for (size_t i = 0; i < h.counts.size(); ++i) {
        cumulative += h.counts[i];
        sample.histogram.bucket.push_back(
            {cumulative,
             i < m->bounds.size() ? m->bounds[i] : std::numeric_limits<double>::infinity()});
      }
      histogram.metric.push_back(std::move(sample));
      if (h.has_last) {
        ClientMetric gauge;
        gauge.label = std::move(labels);
        gauge.gauge.value = h.last;
        last.metric.push_back(std::move(gauge));
      }
    };
    if (m->spec.scope == DerivedScope::kHost) {
      emit(m->host, {});
    } else {
      for (const auto& [cpu, h] : m->per_cpu) emit(h, {{"cpu", std::to_string(cpu)}});
    }
    ClientMetric count;
    count.label = {{"name", m->spec.name}};
    count.counter.value = static_cast<double>(m->skipped);
    skipped.metric.push_back(std::move(count));

    if (!histogram.metric.empty()) out.push_back(std::move(histogram));
    if (!last.metric.empty()) out.push_back(std::move(last));
  }
  if (!skipped.metric.empty()) out.push_back(std::move(skipped));
  return out;
}

std::vector<std::string> DerivedEngine::EnabledMetrics() const {
  std::lock_guard lock(mutex_);
  std::vector<std::string> names;
  for (const auto& m : metrics_) names.push_back(m->spec.name);
  return names;
}

}  // namespace pmu::daemon
