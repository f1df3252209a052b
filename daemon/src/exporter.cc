#include "pmu/daemon/exporter.h"

#include <prometheus/text_serializer.h>

#include <sstream>

#include "pmu/daemon/build_info.h"

namespace pmu::daemon {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

MetricFamily Family(std::string name, std::string help, MetricType type) {
  MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

void Add(MetricFamily& family, std::vector<ClientMetric::Label> labels, double value) {
  ClientMetric m;
  m.label = std::move(labels);
  if (family.type == MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  family.metric.push_back(std::move(m));
}

}  // namespace

MetricFamily GaugeFamily(std::string name, std::string help, double value) {
  MetricFamily f = Family(std::move(name), std::move(help), MetricType::Gauge);
  Add(f, {}, value);
  return f;
}

MetricFamily CounterFamily(std::string name, std::string help, double value) {
  MetricFamily f = Family(std::move(name), std::move(help), MetricType::Counter);
  Add(f, {}, value);
  return f;
}

std::vector<MetricFamily> BuildFamilies(const AggregateSnapshot& snap) {
  auto events = Family("pmu_events_total",
                       "Events counted on a CPU since the exporter started, scaled for "
                       "multiplexing by time enabled over time running.",
                       MetricType::Counter);
  auto enabled = Family("pmu_event_enabled_seconds_total",
                        "Time the event was enabled on the CPU.", MetricType::Counter);
  auto running = Family("pmu_event_running_seconds_total",
                        "Time the event was actually counting on the CPU (less than enabled "
                        "when the PMU is multiplexed).",
                        MetricType::Counter);
  auto supported = Family("pmu_event_supported",
                          "1 if the configured event can be counted on this host, 0 if not "
                          "(then it is never exported as a count).",
                          MetricType::Gauge);
  auto build = Family("pmu_exporter_build_info", "Version and revision of pmu-exporter.",
                      MetricType::Gauge);

  Add(build, {{"revision", kRevision}, {"version", kVersion}}, 1);
  if (snap.plan) {
    const auto& plan_events = snap.plan->events;
    for (const auto& ev : plan_events) {
      Add(supported, {{"event", ev.name}}, ev.supported ? 1 : 0);
    }
    for (const auto& cpu : snap.cpus) {
      const std::string cpu_label = std::to_string(cpu.cpu);
      for (size_t i = 0; i < cpu.events.size() && i < plan_events.size(); ++i) {
        const EventTotals& t = cpu.events[i];
        if (!plan_events[i].supported || !t.seen) continue;
        std::vector<ClientMetric::Label> labels{{"cpu", cpu_label}, {"event", plan_events[i].name}};
        Add(events, labels, t.count);
        Add(enabled, labels, t.enabled_seconds);
        Add(running, labels, t.running_seconds);
      }
    }
  }
  std::vector<MetricFamily> out;
  for (auto* f : {&events, &enabled, &running, &supported, &build}) {
    if (!f->metric.empty()) out.push_back(std::move(*f));
  }
  return out;
}

std::string SerializeText(const std::vector<MetricFamily>& families) {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

}  // namespace pmu::daemon
