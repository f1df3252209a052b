#include "pmu/daemon/exporter.h"


#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <string_view>
#include <limits>
#include <map>
#include <sstream>

#include <pmu/rseq/abi.h>

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
  auto ratio = Family("pmu_event_running_ratio",
                      "Fraction of the last sampling interval the event was counting on the "
                      "PMU (time running / time enabled); below 1 the PMU is multiplexed.",
                      MetricType::Gauge);
  auto starved = Family("pmu_event_group_starved",
                        "1 while a perf group is enabled but never scheduled on the PMU (counters "
                        "held by another tool or the NMI watchdog).",
                        MetricType::Gauge);
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
        Add(ratio, labels, t.last_running_ratio);
      }
      for (size_t g = 0; g < cpu.group_starved.size() && g < snap.plan->groups.size(); ++g) {
        Add(starved, {{"cpu", cpu_label}, {"group", snap.plan->groups[g].name}},
            cpu.group_starved[g] ? 1 : 0);
      }
    }
  }
  std::vector<MetricFamily> out;
  for (auto* f : {&events, &enabled, &running, &ratio, &starved, &supported, &build}) {
    if (!f->metric.empty()) out.push_back(std::move(*f));
  }
  return out;
}

std::vector<MetricFamily> BuildPipelineFamilies(const PipelineStats& stats,
                                                const AggregateSnapshot& snap) {
  auto online = Family("pmu_cpu_online",
                       "1 while the CPU is online and sampled, 0 while it is offline (hotplug).",
                       MetricType::Gauge);
  auto path = Family("pmu_exporter_read_path",
                     "1 for the read path the CPU's sampler used last: rdpmc (user-space, inside "
                     "an rseq section), local_read (read() on the CPU itself), remote_read "
                     "(read() from another CPU, costs an IPI).",
                     MetricType::Gauge);
  auto samples = Family("pmu_exporter_samples_total",
                        "Group readings taken on the CPU and aggregated.", MetricType::Counter);
  auto retries = Family("pmu_exporter_push_retries_total",
                        "Samples pushed again because the sampler migrated between reading and "
                        "committing (rseq compare failed).",
                        MetricType::Counter);
  auto fallbacks = Family("pmu_exporter_read_fallbacks_total",
                          "Groups that left the rdpmc path for read() (counter withdrawn).",
                          MetricType::Counter);
  auto aborts = Family("pmu_exporter_rseq_aborts_total",
                       "Aborted rseq critical sections (preemption, migration or signal).",
                       MetricType::Counter);
  auto drops = Family("pmu_exporter_ring_drops_total",
                      "Samples dropped because a per-CPU ring was full (the aggregator fell "
                      "behind); never blocks the samplers.",
                      MetricType::Counter);
  auto misfiled = Family("pmu_exporter_ring_misfiled_total",
                         "Samples found in a ring other than the one of the CPU that pushed them. "
                         "The rseq push makes this impossible; anything but 0 is a bug.",
                         MetricType::Counter);
  auto errors = Family("pmu_exporter_read_errors_total", "Failed counter reads by errno.",
                       MetricType::Counter);
  auto mode = Family("pmu_exporter_rseq_mode",
                     "1 for how restartable sequences are used: glibc (glibc's registration), own "
                     "(registered by pmu-exporter), unavailable (fallback paths).",
                     MetricType::Gauge);
  MetricFamily duration;
  duration.name = "pmu_exporter_cpu_read_duration_seconds";
  duration.help = "Time to read all of one CPU's groups in one tick.";
  duration.type = MetricType::Histogram;

  std::map<int, const CpuTotals*> totals;
  for (const auto& c : snap.cpus) totals[c.cpu] = &c;
  uint64_t rdpmc_aborts = 0;
  std::map<int, uint64_t> errnos;
  for (const auto& c : stats.cpus) {
    const std::string cpu = std::to_string(c.cpu);
    Add(online, {{"cpu", cpu}}, c.online ? 1 : 0);
    auto t = totals.find(c.cpu);
    if (t != totals.end()) {
      Add(samples, {{"cpu", cpu}}, static_cast<double>(t->second->group_samples));
      if (c.online && t->second->has_path) {
        for (int p = 0; p < collectors::kReadPathCount; ++p) {
          const auto rp = static_cast<collectors::ReadPath>(p);
          Add(path, {{"cpu", cpu}, {"path", collectors::ReadPathName(rp)}},
              rp == t->second->last_path ? 1 : 0);
        }
      }
    }
    if (!c.online) continue;
    Add(retries, {{"cpu", cpu}}, static_cast<double>(c.sampler.push_retries));
    Add(fallbacks, {{"cpu", cpu}}, static_cast<double>(c.sampler.rdpmc_fallbacks));
    rdpmc_aborts += c.sampler.rdpmc_aborts;
    for (const auto& [err, n] : c.sampler.read_errors) errnos[err] += n;
    ClientMetric m;
    m.label = {{"cpu", cpu}};
    m.histogram.sample_count = c.sampler.duration_count;
    m.histogram.sample_sum = c.sampler.duration_sum;
    for (size_t b = 0; b < kReadDurationBuckets.size(); ++b) {
      m.histogram.bucket.push_back({c.sampler.duration_buckets[b], kReadDurationBuckets[b]});
    }
    m.histogram.bucket.push_back(
        {c.sampler.duration_count, std::numeric_limits<double>::infinity()});
    duration.metric.push_back(std::move(m));
  }
  Add(aborts, {{"section", "ring_push"}}, static_cast<double>(stats.ring_aborts));
  Add(aborts, {{"section", "counter_read"}}, static_cast<double>(rdpmc_aborts));
  Add(drops, {}, static_cast<double>(stats.ring_drops));
  Add(misfiled, {}, static_cast<double>(stats.misattributed));
  for (const auto& [err, n] : errnos) {
    Add(errors, {{"errno", strerrorname_np(err) != nullptr ? strerrorname_np(err) : std::to_string(err)}},
        static_cast<double>(n));
  }
  const rseq::Mode current = rseq::CurrentMode();
  for (rseq::Mode m : {rseq::Mode::kGlibc, rseq::Mode::kOwn, rseq::Mode::kUnavailable}) {
    Add(mode, {{"mode", std::string(rseq::ModeName(m))}}, m == current ? 1 : 0);
  }
  std::vector<MetricFamily> out;
  for (auto* f : {&online, &path, &samples, &retries, &fallbacks, &aborts, &drops, &misfiled, &errors, &mode,
                  &duration}) {
    if (!f->metric.empty()) out.push_back(std::move(*f));
  }
  return out;
}

namespace {

void AppendDouble(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
  } else if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
  } else {
    char buf[32];
    auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);  // shortest round trip
    out.append(buf, ec == std::errc() ? end : buf);
  }
}

// Label values that are numbers (le, quantile) are part of a series'
// identity, so they are spelt as the Go client spells them
// (strconv.FormatFloat(v, 'g', -1, 64)): shortest digits, scientific only
// when the exponent is below -4 or at least 6 ("0.0002", "1e-05", "1e+06").
void AppendLabelDouble(std::string& out, double v) {
  if (!std::isfinite(v)) {
    AppendDouble(out, v);
    return;
  }
  char buf[32];
  auto sci = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::scientific);
  // The exponent, within the digits written ("2e-04" -> -4, "1e+06" -> 6).
  const char* e = std::find(buf, sci.ptr, 'e');
  int exponent = 0;
  if (e != sci.ptr) {
    const char* digits = e + 1 + (e[1] == '+' ? 1 : 0);
    std::from_chars(digits, sci.ptr, exponent);
  }
  if (exponent < -4 || exponent >= 6) {
    out.append(buf, sci.ptr);
    return;
  }
  auto fixed = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::fixed);
  out.append(buf, fixed.ptr);
}

void AppendEscaped(std::string& out, std::string_view text, bool quotes) {
  // Almost every label value and help text needs no escaping: append whole.
  if (text.find_first_of(quotes ? "\\\n\"" : "\\\n") == std::string_view::npos) {
    out += text;
    return;
  }
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (quotes && c == '"') {
      out += "\\\"";
    } else {
      out += c;
    }
  }
}

// name{labels[,extra_name="extra_value"]} value
void AppendSample(std::string& out, std::string_view name, std::string_view suffix,
                  const std::vector<ClientMetric::Label>& labels, std::string_view extra_name,
                  std::string_view extra_value, double value) {
  out += name;
  out += suffix;
  if (!labels.empty() || !extra_name.empty()) {
    out += '{';
    bool first = true;
    for (const auto& l : labels) {
      if (!first) out += ',';
      first = false;
      out += l.name;
      out += "=\"";
      AppendEscaped(out, l.value, true);
      out += '"';
    }
    if (!extra_name.empty()) {
      if (!first) out += ',';
      out += extra_name;
      out += "=\"";
      out += extra_value;
      out += '"';
    }
    out += '}';
  }
  out += ' ';
  AppendDouble(out, value);
  out += '\n';
}

std::string_view TypeName(MetricType type) {
  switch (type) {
    case MetricType::Counter: return "counter";
    case MetricType::Gauge: return "gauge";
    case MetricType::Histogram: return "histogram";
    case MetricType::Summary: return "summary";
    default: return "untyped";
  }
}

}  // namespace

// The Prometheus text format (version 0.0.4), written directly: prometheus-
// cpp's TextSerializer spent 86% of a 1024-CPU scrape formatting through
// iostreams. Samples keep the families' order; no timestamps.
std::string SerializeText(const std::vector<MetricFamily>& families) {
  std::string out;
  size_t samples = 0;
  for (const auto& f : families) samples += f.metric.size();
  out.reserve(samples * 64 + families.size() * 128);
  for (const auto& f : families) {
    out += "# HELP ";
    out += f.name;
    out += ' ';
    AppendEscaped(out, f.help, false);
    out += "\n# TYPE ";
    out += f.name;
    out += ' ';
    out += TypeName(f.type);
    out += '\n';
    for (const auto& m : f.metric) {
      switch (f.type) {
        case MetricType::Counter:
          AppendSample(out, f.name, "", m.label, "", "", m.counter.value);
          break;
        case MetricType::Gauge:
          AppendSample(out, f.name, "", m.label, "", "", m.gauge.value);
          break;
        case MetricType::Histogram:
          for (const auto& b : m.histogram.bucket) {
            std::string le;
            AppendLabelDouble(le, b.upper_bound);
            AppendSample(out, f.name, "_bucket", m.label, "le", le,
                         static_cast<double>(b.cumulative_count));
          }
          AppendSample(out, f.name, "_sum", m.label, "", "", m.histogram.sample_sum);
          AppendSample(out, f.name, "_count", m.label, "", "",
                       static_cast<double>(m.histogram.sample_count));
          break;
        case MetricType::Summary:
          for (const auto& q : m.summary.quantile) {
            std::string quantile;
            AppendLabelDouble(quantile, q.quantile);
            AppendSample(out, f.name, "", m.label, "quantile", quantile, q.value);
          }
          AppendSample(out, f.name, "_sum", m.label, "", "", m.summary.sample_sum);
          AppendSample(out, f.name, "_count", m.label, "", "",
                       static_cast<double>(m.summary.sample_count));
          break;
        default:
          AppendSample(out, f.name, "", m.label, "", "", m.untyped.value);
          break;
      }
    }
  }
  return out;
}

}  // namespace pmu::daemon
