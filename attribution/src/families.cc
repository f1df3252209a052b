#include <algorithm>
#include <string>

#include "pmu/attribution/attribution.h"

namespace pmu::attribution {
namespace {

using metrics::FamilyWriter;
using metrics::MetricType;

class CgroupFamilySource final : public metrics::FamilySource {
 public:
  explicit CgroupFamilySource(std::shared_ptr<const CgroupSnapshot> snapshot)
      : snapshot_(std::move(snapshot)) {}

  void Write(const metrics::ExportSnapshot&, FamilyWriter& out) const override {
    if (!snapshot_) return;
    const CgroupSnapshot& s = *snapshot_;
    const auto per_event = [&](std::string_view name, std::string_view help,
                               double (*value)(const CgroupEventTotal&)) {
      out.Family(name, help, MetricType::kCounter);
      for (const CgroupSeries& cg : s.cgroups) {
        for (size_t e = 0; e < cg.events.size() && e < s.events.size(); ++e) {
          out.Sample({{"cgroup", cg.path}, {"event", s.events[e]}}, value(cg.events[e]));
        }
      }
    };
    per_event("pmu_cgroup_events_total",
              "Events counted while tasks of the cgroup or its descendants ran, summed over "
              "CPUs, scaled for multiplexing; restarts at zero when the cgroup is re-created.",
              [](const CgroupEventTotal& t) { return t.count; });
    per_event("pmu_cgroup_event_enabled_seconds_total",
              "Time the cgroup's counter was enabled (the cgroup's tasks were on a CPU), summed "
              "over CPUs.",
              [](const CgroupEventTotal& t) { return static_cast<double>(t.enabled_ns) * 1e-9; });
    per_event("pmu_cgroup_event_running_seconds_total",
              "Time the cgroup's counter was counting (less than enabled when multiplexed), "
              "summed over CPUs.",
              [](const CgroupEventTotal& t) { return static_cast<double>(t.running_ns) * 1e-9; });
    out.Family("pmu_cgroup_info",
               "1 for every counted cgroup; the systemd unit, Kubernetes pod UID and container "
               "id its path reveals (empty otherwise).",
               MetricType::kGauge);
    for (const CgroupSeries& cg : s.cgroups) {
      out.Sample({{"cgroup", cg.path},
                  {"unit", cg.labels.unit},
                  {"pod_uid", cg.labels.pod_uid},
                  {"container_id", cg.labels.container_id}},
                 1);
    }
    out.Family("pmu_cgroup_attribution_mode",
               "1 for the mode per-cgroup attribution runs in (bpf or perf).", MetricType::kGauge);
    out.Sample({{"mode", ToString(s.mode)}}, 1);
    out.Family("pmu_cgroup_matched", "Cgroups matching [cgroups] include/exclude.",
               MetricType::kGauge);
    out.Sample({}, static_cast<double>(s.matched));
    out.Family("pmu_cgroup_not_counted",
               "Matching cgroups not counted because more than [cgroups] max match.",
               MetricType::kGauge);
    out.Sample({}, static_cast<double>(s.matched > s.max ? s.matched - s.max : 0));
    out.Family("pmu_cgroup_attribution_fds",
               "File descriptors per-cgroup attribution holds (perf events, BPF objects).",
               MetricType::kGauge);
    out.Sample({}, static_cast<double>(s.open_fds));
  }

 private:
  std::shared_ptr<const CgroupSnapshot> snapshot_;
};

}  // namespace

std::shared_ptr<const metrics::FamilySource> CgroupFamilies(
    std::shared_ptr<const CgroupSnapshot> snapshot) {
  return std::make_shared<CgroupFamilySource>(std::move(snapshot));
}

std::shared_ptr<const metrics::FamilySource> EstimateCgroupFamilies(
    const config::Config& config, const collectors::EventPlan& plan) {
  auto snapshot = std::make_shared<CgroupSnapshot>();
  const config::CgroupsConfig& cg = config.cgroups;
  for (const auto& event : plan.events) {
    if (!event.supported) continue;
    if (!cg.events.empty() &&
        std::find(cg.events.begin(), cg.events.end(), event.name) == cg.events.end()) {
      continue;
    }
    snapshot->events.push_back(event.name);
  }
  snapshot->max = static_cast<size_t>(cg.max);
  snapshot->matched = snapshot->max;
  for (int i = 0; i < cg.max; ++i) {
    CgroupSeries series;
    series.path = "/estimate/" + std::to_string(i);
    series.events.resize(snapshot->events.size());
    snapshot->cgroups.push_back(std::move(series));
  }
  return CgroupFamilies(std::move(snapshot));
}

}  // namespace pmu::attribution
