#include "pmu/metrics/family_source.h"

#include <pmu/rseq/abi.h>
#include <string.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <deque>
#include <map>
#include <optional>
#include <span>
#include <tuple>
#include <vector>

#include "pmu/metrics/build_info.h"
#include "pmu/metrics/derived.h"
#include "pmu/metrics/rendered.h"

namespace pmu::metrics {
namespace {

using sampling::CpuTotals;
using sampling::EventTotals;

// How a PMU's unit (events/<name>.unit) is exported: the family's base
// unit and what one scaled count is in it. Counts with no unit stay in
// pmu_events_total.
struct UnitFamily {
  std::string family;  // "" = pmu_events_total
  double factor = 1;   // multiplies count * .scale
  std::string help;
};

UnitFamily FamilyForUnit(const std::string& unit) {
  if (unit.empty()) return {};
  std::string lower;
  for (char c : unit) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower == "joules" || lower == "j") {
    return {"pmu_event_joules_total", 1, "Energy counted by a PMU (e.g. RAPL), in joules."};
  }
  if (lower == "mib" || lower == "kib" || lower == "bytes" || lower == "b") {
    const double f = lower == "mib" ? 1048576.0 : lower == "kib" ? 1024.0 : 1.0;
    return {"pmu_event_bytes_total", f,
            "Data counted by a PMU (e.g. memory controller), in bytes."};
  }
  if (lower == "ns" || lower == "us" || lower == "ms" || lower == "s" || lower == "seconds") {
    const double f = lower == "ns" ? 1e-9 : lower == "us" ? 1e-6 : lower == "ms" ? 1e-3 : 1.0;
    return {"pmu_event_seconds_total", f, "Time counted by a PMU, in seconds."};
  }
  std::string name = "pmu_event_";
  for (char c : lower) name += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return {name + "_total", 1, "Counts of a PMU event in the unit its sysfs .unit file names."};
}

// A label value that is a number, spelt in place (no allocation).
class Digits {
 public:
  Digits() = default;
  explicit Digits(int v) {
    const auto [end, ec] = std::to_chars(buf_.data(), buf_.data() + buf_.size(), v);
    size_ = ec == std::errc() ? static_cast<uint8_t>(end - buf_.data()) : 0;
  }
  std::string_view view() const { return {buf_.data(), size_}; }

 private:
  std::array<char, 12> buf_{};
  uint8_t size_ = 0;
};

// One exported series of an event: per CPU, or per (package, die) for unit
// events opened once per die (summed over the CPUs the die's event ran on,
// so a hotplug move of the uncore event keeps the series continuous).
struct EventSeries {
  size_t event;
  const EventTotals* totals;  // the CPU's, or the die's sum
  PreparedLabels prepared;    // its labels, spelt once for every family
};

// The event series of a snapshot with their labels: per CPU series, the
// CPU's number and its event's part spelt (escaped) once per event.
// Everything the series point to lives here; not copyable.
class EventSeriesSet {
 public:
  explicit EventSeriesSet(const sampling::Snapshot& snap) {
    const collectors::EventPlan& plan = *snap.plan;
    const auto& events = plan.events;
    const bool any_by_die =
        std::any_of(events.begin(), events.end(), [](const auto& ev) { return ev.label_by_die; });
    // ,event="..."[,pmu="..."]} per event: the labels after cpu.
    std::vector<std::string> event_text(events.size());
    for (size_t e = 0; e < events.size(); ++e) {
      std::vector<Label> labels{{"cpu", ""}, {"event", events[e].name}};
      if (!events[e].pmu.empty()) labels.push_back({"pmu", events[e].pmu});
      std::string text;
      AppendLabelText(text, labels);  // {cpu="",event="..."...}
      event_text[e] = text.substr(std::string_view("{cpu=\"\"").size());
    }
    size_t most = 0;
    for (const CpuTotals& cpu : snap.counters) most += std::min(cpu.events.size(), events.size());
    series_.reserve(most);
    labels_.reserve(most * 5);  // never regrows: the series' spans point into it
    ends_.reserve(most);
    arena_.reserve(most * 48);  // about 40 bytes per label set
    cpu_digits_.reserve(snap.counters.size());
    std::map<std::tuple<size_t, int, int>, size_t> by_die;
    for (const CpuTotals& cpu : snap.counters) {
      const auto loc = any_by_die ? plan.locations.find(cpu.cpu) : plan.locations.end();
      const std::string_view digits = cpu_digits_.emplace_back(cpu.cpu).view();
      for (size_t i = 0; i < cpu.events.size() && i < events.size(); ++i) {
        const EventTotals& t = cpu.events[i];
        if (!events[i].supported || !t.seen) continue;
        const auto& ev = events[i];
        if (!ev.label_by_die || loc == plan.locations.end()) {
          const size_t first = labels_.size();
          labels_.push_back({"cpu", digits});
          labels_.push_back({"event", ev.name});
          if (!ev.pmu.empty()) labels_.push_back({"pmu", ev.pmu});
          series_.push_back({i, &t, {Labels(first), {}}});
          arena_ += "{cpu=\"";
          arena_ += digits;  // nothing to escape
          arena_ += '"';
          arena_ += event_text[i];
          ends_.push_back(arena_.size());
          continue;
        }
        const auto key = std::make_tuple(i, loc->second.package, loc->second.die);
        auto [it, fresh] = by_die.emplace(key, series_.size());
        if (!fresh) {
          EventTotals& sum = die_sums_[it->second];
          sum.exact += t.exact;
          sum.scaled += t.scaled;
          sum.enabled_ns += t.enabled_ns;
          sum.running_ns += t.running_ns;
          sum.samples += t.samples;
          if (t.samples > 0) sum.last_running_ratio = t.last_running_ratio;
          continue;
        }
        const std::string_view package = die_digits_.emplace_back(loc->second.package).view();
        const std::string_view die = die_digits_.emplace_back(loc->second.die).view();
        const size_t first = labels_.size();
        labels_.push_back({"die", die});
        labels_.push_back({"event", ev.name});
        labels_.push_back({"package", package});
        if (!ev.pmu.empty()) labels_.push_back({"pmu", ev.pmu});
        die_sums_[series_.size()] = t;
        series_.push_back({i, nullptr, {Labels(first), {}}});
        AppendLabelText(arena_, Labels(first));
        ends_.push_back(arena_.size());
      }
    }
    size_t begin = 0;
    for (size_t i = 0; i < series_.size(); ++i) {
      EventSeries& s = series_[i];
      if (s.totals == nullptr) s.totals = &die_sums_.at(i);
      s.prepared.text = std::string_view(arena_).substr(begin, ends_[i] - begin);
      begin = ends_[i];
    }
  }
  EventSeriesSet(const EventSeriesSet&) = delete;
  EventSeriesSet& operator=(const EventSeriesSet&) = delete;

  const std::vector<EventSeries>& series() const { return series_; }

 private:
  std::span<const Label> Labels(size_t first) const {
    return std::span<const Label>(labels_).subspan(first);
  }

  std::vector<EventSeries> series_;
  std::vector<Label> labels_;
  std::vector<size_t> ends_;
  std::string arena_;
  std::vector<Digits> cpu_digits_;
  std::deque<Digits> die_digits_;           // stable addresses
  std::map<size_t, EventTotals> die_sums_;  // by series index
};

// What the event families need of a plan's event, looked up once per render.
struct EventFacts {
  UnitFamily unit;
  size_t unit_family = 0;  // index in the unit families + 1; 0 = pmu_events_total
};

class EventFamilySource final : public FamilySource {
 public:
  void Write(const ExportSnapshot& snapshot, FamilyWriter& out) const override {
    const sampling::Snapshot* snap = snapshot.sampling.get();
    const bool have = snap != nullptr && snap->plan != nullptr;
    std::optional<EventSeriesSet> set;
    if (have) set.emplace(*snap);
    static const std::vector<EventSeries> kNone;
    const std::vector<EventSeries>& series = set ? set->series() : kNone;
    const auto per_event = [&](std::string_view name, std::string_view help, MetricType type,
                               double (*value)(const EventTotals&)) {
      out.Family(name, help, type);
      for (const EventSeries& s : series) out.Sample(s.prepared, value(*s.totals));
    };
    // Counts: plain ones in pmu_events_total, ones with a unit in their
    // unit's family, scaled (README: units).
    std::vector<UnitFamily> unit_families;
    std::vector<EventFacts> facts;
    if (have) {
      for (const auto& ev : snap->plan->events) {
        EventFacts& f = facts.emplace_back();
        f.unit = FamilyForUnit(ev.unit);
        if (f.unit.family.empty()) continue;
        const auto it =
            std::find_if(unit_families.begin(), unit_families.end(),
                         [&](const UnitFamily& u) { return u.family == f.unit.family; });
        if (it != unit_families.end()) {
          f.unit_family = static_cast<size_t>(it - unit_families.begin()) + 1;
        } else if (ev.supported) {
          unit_families.push_back(f.unit);
          f.unit_family = unit_families.size();
        }
      }
    }
    out.Family("pmu_events_total",
               "Events counted on a CPU (or a PMU unit) since the exporter started, scaled for "
               "multiplexing by time enabled over time running.",
               MetricType::kCounter);
    for (const EventSeries& s : series) {
      const auto& ev = snap->plan->events[s.event];
      if (facts[s.event].unit.family.empty()) out.Sample(s.prepared, s.totals->count() * ev.scale);
    }
    for (size_t u = 0; u < unit_families.size(); ++u) {
      const UnitFamily& family = unit_families[u];
      out.Family(family.family, family.help, MetricType::kCounter);
      for (const EventSeries& s : series) {
        const auto& ev = snap->plan->events[s.event];
        if (facts[s.event].unit_family == u + 1) {
          out.Sample(s.prepared, s.totals->count() * ev.scale * family.factor);
        }
      }
    }
    per_event("pmu_event_enabled_seconds_total", "Time the event was enabled on the CPU.",
              MetricType::kCounter, [](const EventTotals& t) { return t.enabled_seconds(); });
    per_event("pmu_event_running_seconds_total",
              "Time the event was actually counting on the CPU (less than enabled when the PMU "
              "is multiplexed).",
              MetricType::kCounter, [](const EventTotals& t) { return t.running_seconds(); });
    per_event("pmu_event_running_ratio",
              "Fraction of the last sampling interval the event was counting on the PMU (time "
              "running / time enabled); below 1 the PMU is multiplexed.",
              MetricType::kGauge, [](const EventTotals& t) { return t.last_running_ratio; });
    out.Family("pmu_event_group_starved",
               "1 while a perf group is enabled but never scheduled on the PMU (counters held by "
               "another tool or the NMI watchdog).",
               MetricType::kGauge);
    if (have) {
      for (const CpuTotals& cpu : snap->counters) {
        const std::string cpu_label = std::to_string(cpu.cpu);
        for (size_t g = 0; g < cpu.group_starved.size() && g < snap->plan->groups.size(); ++g) {
          out.Sample({{"cpu", cpu_label}, {"group", snap->plan->groups[g].name}},
                     cpu.group_starved[g] ? 1 : 0);
        }
      }
    }
    out.Family("pmu_event_supported",
               "1 if the configured event can be counted on this host, 0 if not (then it is "
               "never exported as a count); reason on 0: unsupported (the host cannot count "
               "it), permission (perf_event_paranoid or a missing CAP_PERFMON), seccomp (a "
               "seccomp filter refuses perf_event_open) or error.",
               MetricType::kGauge);
    if (have) {
      for (const auto& ev : snap->plan->events) {
        // Labels: event, pmu (sysfs PMU instances), reason (only on 0).
        std::vector<Label> labels{{"event", ev.name}};
        if (!ev.pmu.empty()) labels.push_back({"pmu", ev.pmu});
        if (!ev.supported) {
          labels.push_back(
              {"reason", collectors::ToString(ev.failure == collectors::OpenFailure::kNone
                                                  ? collectors::OpenFailure::kNotSupported
                                                  : ev.failure)});
        }
        out.Sample(std::span<const Label>(labels), ev.supported ? 1 : 0);
      }
    }
    out.Family("pmu_exporter_build_info", "Version and revision of pmu-exporter.",
               MetricType::kGauge);
    out.Sample({{"revision", kRevision}, {"version", kVersion}}, 1);
  }
};

// A CPU that has (or had) a sampler: its sampler counters exist, and stay
// while it is offline.
bool Sampled(const sampling::PipelineStats::Cpu& c) { return c.online || c.sampler.ticks > 0; }

class PipelineFamilySource final : public FamilySource {
 public:
  void Write(const ExportSnapshot& snapshot, FamilyWriter& out) const override {
    if (!snapshot.sampling) return;
    const sampling::Snapshot& snap = *snapshot.sampling;
    const sampling::PipelineStats& stats = snap.pipeline;
    std::map<int, const CpuTotals*> totals;
    for (const auto& c : snap.counters) totals[c.cpu] = &c;
    std::string cpu;

    out.Family("pmu_cpu_online",
               "1 while the CPU is online and sampled, 0 while it is offline (hotplug).",
               MetricType::kGauge);
    for (const auto& c : stats.cpus) {
      cpu = std::to_string(c.cpu);
      out.Sample({{"cpu", cpu}}, c.online ? 1 : 0);
    }
    out.Family("pmu_exporter_read_path",
               "1 for the read path the CPU's sampler used last: rdpmc (user-space, inside an "
               "rseq section), local_read (read() on the CPU itself), remote_read (read() from "
               "another CPU, costs an IPI).",
               MetricType::kGauge);
    for (const auto& c : stats.cpus) {
      auto t = totals.find(c.cpu);
      if (!c.online || t == totals.end() || !t->second->has_path) continue;
      cpu = std::to_string(c.cpu);
      for (int p = 0; p < collectors::kReadPathCount; ++p) {
        const auto rp = static_cast<collectors::ReadPath>(p);
        out.Sample({{"cpu", cpu}, {"path", collectors::ReadPathName(rp)}},
                   rp == t->second->last_path ? 1 : 0);
      }
    }
    out.Family("pmu_exporter_samples_total", "Group readings taken on the CPU and aggregated.",
               MetricType::kCounter);
    for (const auto& c : stats.cpus) {
      auto t = totals.find(c.cpu);
      if (t == totals.end()) continue;
      cpu = std::to_string(c.cpu);
      out.Sample({{"cpu", cpu}}, static_cast<double>(t->second->group_samples));
    }
    out.Family("pmu_exporter_reading_resyncs_total",
               "Readings lower than the previous reading of the same fd (a counter cannot go "
               "backwards): the baseline moved to them and nothing was added.",
               MetricType::kCounter);
    for (const auto& c : snap.counters) {
      cpu = std::to_string(c.cpu);
      out.Sample({{"cpu", cpu}}, static_cast<double>(c.resyncs));
    }
    uint64_t stale = 0;
    for (const auto& c : snap.counters) stale += c.stale;
    out.Family("pmu_exporter_stale_samples_total",
               "Readings that reached the aggregator after a newer reading of the same fds and "
               "were dropped (a newer cumulative reading already holds their counts).",
               MetricType::kCounter);
    out.Sample({}, static_cast<double>(stale));
    const auto per_cpu = [&](std::string_view name, std::string_view help,
                             uint64_t (*value)(const sampling::CpuSampler::Stats&)) {
      out.Family(name, help, MetricType::kCounter);
      for (const auto& c : stats.cpus) {
        if (!Sampled(c)) continue;
        cpu = std::to_string(c.cpu);
        out.Sample({{"cpu", cpu}}, static_cast<double>(value(c.sampler)));
      }
    };
    per_cpu("pmu_exporter_push_retries_total",
            "Samples pushed again because the sampler migrated between reading and committing "
            "(rseq compare failed).",
            [](const sampling::CpuSampler::Stats& s) { return s.push_retries; });
    per_cpu("pmu_exporter_read_fallbacks_total",
            "Groups that left the rdpmc path for read() (counter withdrawn).",
            [](const sampling::CpuSampler::Stats& s) { return s.rdpmc_fallbacks; });

    uint64_t rdpmc_aborts = 0;
    uint64_t push_drops = 0;
    std::map<int, uint64_t> errnos;
    for (const auto& c : stats.cpus) {
      rdpmc_aborts += c.sampler.rdpmc_aborts;
      push_drops += c.sampler.push_drops;
      for (const auto& [err, n] : c.sampler.read_errors) errnos[err] += n;
    }
    out.Family("pmu_exporter_rseq_aborts_total",
               "Aborted rseq critical sections (preemption, migration or signal).",
               MetricType::kCounter);
    out.Sample({{"section", "ring_push"}}, static_cast<double>(stats.ring_aborts));
    out.Sample({{"section", "counter_read"}}, static_cast<double>(rdpmc_aborts));
    out.Family("pmu_exporter_ring_drops_total",
               "Samples dropped because a per-CPU ring was full (the aggregator fell behind) or "
               "stayed unavailable through every push attempt; never blocks the samplers.",
               MetricType::kCounter);
    out.Sample({}, static_cast<double>(stats.ring_drops + push_drops));
    out.Family("pmu_exporter_ring_misfiled_total",
               "Samples found in a ring other than the one of the CPU that pushed them. The rseq "
               "push makes this impossible; anything but 0 is a bug.",
               MetricType::kCounter);
    out.Sample({}, static_cast<double>(stats.misfiled));
    out.Family("pmu_exporter_read_errors_total", "Failed counter reads by errno.",
               MetricType::kCounter);
    for (const auto& [err, n] : errnos) {
      const char* name = strerrorname_np(err);
      const std::string label = name != nullptr ? name : std::to_string(err);
      out.Sample({{"errno", label}}, static_cast<double>(n));
    }
    out.Family("pmu_exporter_rseq_mode",
               "1 for how restartable sequences are used: glibc (glibc's registration), own "
               "(registered by pmu-exporter), unavailable (fallback paths).",
               MetricType::kGauge);
    const rseq::Mode current = rseq::CurrentMode();
    for (rseq::Mode m : {rseq::Mode::kGlibc, rseq::Mode::kOwn, rseq::Mode::kUnavailable}) {
      out.Sample({{"mode", rseq::ModeName(m)}}, m == current ? 1 : 0);
    }
    out.Family("pmu_exporter_cpu_read_duration_seconds",
               "Time to read all of one CPU's groups in one tick.", MetricType::kHistogram);
    for (const auto& c : stats.cpus) {
      if (!Sampled(c)) continue;
      cpu = std::to_string(c.cpu);
      out.HistogramSample({{"cpu", cpu}}, c.sampler.read_duration);
    }
  }
};

class KernelStatsFamilySource final : public FamilySource {
 public:
  void Write(const ExportSnapshot& snapshot, FamilyWriter& out) const override {
    if (!snapshot.sampling) return;
    const sampling::KernelStats& k = snapshot.sampling->kernel;
    std::string cpu;
    out.Family("pmu_cpu_time_seconds_total",
               "Seconds each CPU spent in each mode since boot (/proc/stat). guest and "
               "guest_nice are also counted inside user and nice, as the kernel does: leave them "
               "out when summing modes.",
               MetricType::kCounter);
    const auto hz = static_cast<double>(k.ticks_per_second);
    for (const auto& c : k.cpu_time) {
      cpu = std::to_string(c.cpu);
      for (size_t mode = 0; mode < collectors::kCpuModeCount; ++mode) {
        // Whole ticks over USER_HZ: one division, so 29428 ticks read 294.28.
        out.Sample({{"cpu", cpu}, {"mode", collectors::kCpuModeNames[mode]}},
                   static_cast<double>(c.ticks[mode]) / hz);
      }
    }
    out.Family("pmu_cpu_softirqs_total",
               "Softirqs handled on each CPU since boot, by type (/proc/softirqs).",
               MetricType::kCounter);
    for (const auto& c : k.softirqs) {
      cpu = std::to_string(c.cpu);
      for (const auto& [type, count] : c.counts) {
        out.Sample({{"cpu", cpu}, {"type", type}}, static_cast<double>(count));
      }
    }
    const auto sched = [&](std::string_view name, std::string_view help,
                           double (*value)(const sampling::KernelStats::CpuSchedstat&)) {
      out.Family(name, help, MetricType::kCounter);
      for (const auto& c : k.schedstat) {
        cpu = std::to_string(c.cpu);
        out.Sample({{"cpu", cpu}}, value(c));
      }
    };
    sched("pmu_cpu_running_seconds_total", "Time tasks ran on each CPU (/proc/schedstat).",
          [](const auto& c) { return static_cast<double>(c.running_ns) * 1e-9; });
    sched("pmu_cpu_runqueue_wait_seconds_total",
          "Time runnable tasks waited on each CPU's run queue (/proc/schedstat).",
          [](const auto& c) { return static_cast<double>(c.waiting_ns) * 1e-9; });
    sched("pmu_cpu_timeslices_total", "Timeslices run on each CPU (/proc/schedstat).",
          [](const auto& c) { return static_cast<double>(c.timeslices); });
    out.Family("pmu_cpu_frequency_hertz",
               "Current frequency of each CPU (cpufreq scaling_cur_freq).", MetricType::kGauge);
    for (const auto& c : k.cpufreq) {
      cpu = std::to_string(c.cpu);
      out.Sample({{"cpu", cpu}}, c.hertz);
    }
    out.Family("pmu_exporter_stats_source_available",
               "1 if the enabled kernel statistics source was read and understood at the last "
               "round, 0 if the host lacks it or its format is unknown.",
               MetricType::kGauge);
    for (size_t i = 0; i < sampling::kStatsSourceCount; ++i) {
      if (k.sources[i].enabled) {
        out.Sample({{"source", sampling::kStatsSourceNames[i]}}, k.sources[i].available ? 1 : 0);
      }
    }
    out.Family("pmu_exporter_stats_parse_errors_total",
               "Malformed lines and read errors met in a kernel statistics source (each is "
               "logged once; the rest of the source is still exported).",
               MetricType::kCounter);
    for (size_t i = 0; i < sampling::kStatsSourceCount; ++i) {
      if (k.sources[i].enabled) {
        out.Sample({{"source", sampling::kStatsSourceNames[i]}},
                   static_cast<double>(k.sources[i].parse_errors));
      }
    }
  }
};

class EndpointFamilySource final : public FamilySource {
 public:
  void Write(const ExportSnapshot& snapshot, FamilyWriter& out) const override {
    if (!snapshot.endpoint) return;
    const EndpointStats& http = *snapshot.endpoint;
    const struct {
      const char* name;
      const char* help;
      uint64_t value;
    } counters[] = {
        {"pmu_exporter_http_requests_total", "HTTP requests answered by the metrics endpoint.",
         http.requests},
        {"pmu_exporter_http_connections_total", "Connections accepted by the metrics endpoint.",
         http.connections_accepted},
        {"pmu_exporter_http_connections_rejected_total",
         "Connections closed at once because [web] max_connections were open.",
         http.connections_rejected},
        {"pmu_exporter_http_auth_failures_total",
         "Requests refused for missing or wrong credentials.", http.auth_failures},
        {"pmu_exporter_http_timeouts_total",
         "Connections closed because a request or TLS handshake did not complete in time.",
         http.timeouts},
    };
    for (const auto& c : counters) {
      out.Family(c.name, c.help, MetricType::kCounter);
      out.Sample({}, static_cast<double>(c.value));
    }
    out.Family("pmu_exporter_endpoint_listening",
               "1 while the metrics endpoint listens; 0 after a rebind failed and the daemon "
               "keeps retrying (seen by scrapes once it listens again, and in --once).",
               MetricType::kGauge);
    out.Sample({}, http.listening ? 1 : 0);
    out.Family("pmu_exporter_endpoint_bind_failures_total",
               "Attempts to bind the metrics endpoint that failed after start-up (reload "
               "rollbacks and retries).",
               MetricType::kCounter);
    out.Sample({}, static_cast<double>(http.bind_failures));
  }
};

class ServiceFamilySource final : public FamilySource {
 public:
  void Write(const ExportSnapshot& snapshot, FamilyWriter& out) const override {
    out.Family("pmu_exporter_config_last_reload_successful",
               "1 if the last configuration load (start-up or SIGHUP) succeeded, 0 if it failed "
               "and the previous one is in use.",
               MetricType::kGauge);
    out.Sample({}, snapshot.service.last_reload_successful ? 1 : 0);
    out.Family("pmu_exporter_config_last_reload_success_timestamp_seconds",
               "Unix time of the last successful configuration load.", MetricType::kGauge);
    out.Sample({}, snapshot.service.last_reload_success_unix_seconds);
  }
};

}  // namespace

std::unique_ptr<FamilySource> EventFamilies() { return std::make_unique<EventFamilySource>(); }
std::unique_ptr<FamilySource> PipelineFamilies() {
  return std::make_unique<PipelineFamilySource>();
}
std::unique_ptr<FamilySource> KernelStatsFamilies() {
  return std::make_unique<KernelStatsFamilySource>();
}
std::unique_ptr<FamilySource> EndpointFamilies() {
  return std::make_unique<EndpointFamilySource>();
}
std::unique_ptr<FamilySource> ServiceFamilies() { return std::make_unique<ServiceFamilySource>(); }

void Registry::Write(const ExportSnapshot& snapshot, FamilyWriter& out) const {
  for (const auto& source : sources_) source->Write(snapshot, out);
}

const Registry& StandardRegistry() {
  static const Registry* const kRegistry = [] {
    auto* registry = new Registry;
    registry->Add(EventFamilies());
    registry->Add(PipelineFamilies());
    registry->Add(KernelStatsFamilies());
    registry->Add(DerivedFamilies());
    registry->Add(EndpointFamilies());
    registry->Add(ServiceFamilies());
    return registry;
  }();
  return *kRegistry;
}

std::string RenderText(const ExportSnapshot& snapshot) {
  std::string out;
  RenderTextInto(snapshot, out);
  return out;
}

}  // namespace pmu::metrics
