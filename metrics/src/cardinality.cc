#include "pmu/metrics/cardinality.h"

#include <algorithm>
#include <stdexcept>

#include "pmu/metrics/derived.h"
#include "pmu/metrics/family_source.h"

namespace pmu::metrics {
namespace {

// The kernel's softirq types (include/linux/interrupt.h, NR_SOFTIRQS).
constexpr std::string_view kSoftirqTypes[] = {"HI",       "TIMER",   "NET_TX", "NET_RX",  "BLOCK",
                                              "IRQ_POLL", "TASKLET", "SCHED",  "HRTIMER", "RCU"};

sampling::KernelStats SyntheticKernelStats(const config::StatsConfig& stats,
                                           const std::vector<int>& cpus,
                                           const sampling::KernelStats* observed) {
  sampling::KernelStats k;
  const bool enabled[] = {stats.proc_stat, stats.softirqs, stats.schedstat, stats.cpufreq};
  for (size_t i = 0; i < sampling::kStatsSourceCount; ++i) {
    k.sources[i].enabled = enabled[i];
    k.sources[i].available = enabled[i] && (observed == nullptr || observed->sources[i].available);
  }
  const auto present = [&](sampling::StatsSource s) {
    return k.sources[static_cast<size_t>(s)].available;
  };
  std::vector<std::pair<std::string, uint64_t>> types;
  if (observed != nullptr && !observed->softirqs.empty()) {
    types = observed->softirqs.front().counts;
  } else {
    for (std::string_view t : kSoftirqTypes) types.emplace_back(t, 0);
  }
  for (int cpu : cpus) {
    if (present(sampling::StatsSource::kProcStat)) k.cpu_time.push_back({cpu, {}});
    if (present(sampling::StatsSource::kSoftirqs)) k.softirqs.push_back({cpu, types});
    if (present(sampling::StatsSource::kSchedstat)) k.schedstat.push_back({cpu, 0, 0, 0});
    if (present(sampling::StatsSource::kCpufreq)) k.cpufreq.push_back({cpu, 0});
  }
  return k;
}

}  // namespace

SeriesEstimate EstimateSeries(const config::Config& config,
                              std::shared_ptr<const collectors::EventPlan> plan,
                              const std::vector<int>& cpus, const sampling::KernelStats* observed,
                              std::vector<std::shared_ptr<const FamilySource>> extra) {
  auto snap = std::make_shared<sampling::Snapshot>();
  snap->plan = plan;
  for (int cpu : cpus) {
    sampling::CpuTotals totals;
    totals.cpu = cpu;
    totals.events.resize(plan->events.size());
    for (size_t i = 0; i < plan->events.size(); ++i)
      totals.events[i].seen = plan->events[i].supported;
    totals.group_starved.assign(plan->groups.size(), false);
    totals.group_samples = 1;
    totals.has_path = true;
    snap->counters.push_back(std::move(totals));
    sampling::PipelineStats::Cpu stats;
    stats.cpu = cpu;
    stats.online = true;
    snap->pipeline.cpus.push_back(std::move(stats));
  }
  snap->kernel = SyntheticKernelStats(config.stats, cpus, observed);

  const DerivedEngine engine(config, *plan, cpus, nullptr, /*quiet=*/true);
  auto derived = std::make_shared<DerivedSnapshot>(*engine.TakeSnapshot());
  for (auto& metric : derived->metrics) {
    for (auto& series : metric.series) series.last = 0;
  }

  ExportSnapshot export_snapshot;
  export_snapshot.sampling = std::move(snap);
  export_snapshot.derived = std::move(derived);
  export_snapshot.endpoint = EndpointStats{};
  export_snapshot.extra = std::move(extra);

  SeriesCounter counter;
  StandardRegistry().Write(export_snapshot, counter);
  for (const auto& source : export_snapshot.extra) source->Write(export_snapshot, counter);
  SeriesEstimate estimate;
  estimate.total = counter.total();
  estimate.families = counter.families();
  std::stable_sort(estimate.families.begin(), estimate.families.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  return estimate;
}

void CheckCardinality(const config::Config& config, const SeriesEstimate& estimate) {
  const auto limit = static_cast<size_t>(config.exporter.max_series);
  if (estimate.total <= limit) return;
  std::string message = config.source + ": this configuration would export " +
                        std::to_string(estimate.total) + " series, more than [exporter] " +
                        "max_series = " + std::to_string(limit) + ". Largest families: ";
  const size_t shown = std::min<size_t>(estimate.families.size(), 8);
  for (size_t i = 0; i < shown; ++i) {
    message += (i == 0 ? "" : "; ") + estimate.families[i].first + " = " +
               std::to_string(estimate.families[i].second);
  }
  throw CardinalityError(message +
                         ". Select fewer CPUs ([sampling] cpus) or events, give derived "
                         "metrics fewer buckets or scope \"host\", or raise max_series.");
}

}  // namespace pmu::metrics
