#include "pmu/daemon/event_commands.h"

#include <cstdio>

#include "pmu/collectors/event_source.h"
#include "pmu/collectors/perf_syscalls.h"
#include "pmu/collectors/pfm.h"
#include "pmu/collectors/topology.h"

namespace pmu::daemon {
namespace {

const collectors::EventResolver& LiveResolver() {
  static const collectors::EventResolver resolver("/");
  return resolver;
}

// CPU-wide open on `cpu`, then close: whether this host counts it.
bool Countable(const perf_event_attr& attr, int cpu) {
  perf_event_attr probe = attr;
  auto& sys = collectors::DefaultPerfSyscalls();
  const int fd = sys.Open(&probe, -1, cpu, -1, 0);
  if (fd < 0) return false;
  sys.Close(fd);
  return true;
}

bool Matches(const std::string& name, const std::string& pattern) {
  if (pattern.empty()) return true;
  auto lower = [](std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  };
  return lower(name).find(lower(pattern)) != std::string::npos;
}

std::string CpuText(const std::vector<int>& cpus) {
  return cpus.empty() ? "all" : config::FormatCpuList(cpus);
}

std::string Where(const collectors::PlannedEvent& ev) {
  switch (ev.cpu_source) {
    case collectors::PmuCpuSource::kCpumask:
      return "once per unit on cpus " + CpuText(ev.cpus) +
             (ev.label_by_die ? " (labels package, die)" : " (label cpu)");
    case collectors::PmuCpuSource::kCpus:
      return "per CPU on cpus " + CpuText(ev.cpus);
    case collectors::PmuCpuSource::kAny:
      break;
  }
  return "per CPU";
}

}  // namespace

void ValidateEvents(const config::Config& config) {
  // Read afresh: on SIGHUP, PMUs or the tracefs mount may have changed since start-up.
  const collectors::EventResolver resolver("/");
  collectors::ValidateEventNames(config, resolver);
}

int ListEvents(const std::string& pattern, std::ostream& out) {
  const int cpu = collectors::OnlineCpus().front();
  char line[512];
  out << "libpfm4 events:\n";
  for (const auto& e : collectors::ListEvents(pattern)) {
    auto enc = collectors::EncodeEvent(e.name);
    std::snprintf(line, sizeof(line), "%s%-50s %s\n",
                  enc.ok && Countable(enc.attr, cpu) ? "* " : "  ", e.name.c_str(),
                  e.description.c_str());
    out << line;
  }
  out << "\nperf software events:\n";
  for (const std::string& name : collectors::EventResolver::SoftwareEventNames()) {
    if (!Matches(name, pattern)) continue;
    const auto r = LiveResolver().Resolve(name);
    out << (Countable(r.instances.front().attr, cpu) ? "* " : "  ") << name << "\n";
  }
  out << "\nsysfs PMU events (/sys/bus/event_source/devices; also pmu/term=value,.../):\n";
  for (const collectors::SysfsPmu& pmu : LiveResolver().catalog().pmus()) {
    for (const auto& [name, alias] : pmu.events) {
      const std::string event = pmu.name + "/" + name + "/";
      if (!Matches(event, pattern)) continue;
      std::string mark = "  ", detail;
      try {
        const auto r = LiveResolver().Resolve(event);
        const auto& inst = r.instances.front();
        const int at = inst.cpus.empty() ? cpu : inst.cpus.front();
        mark = Countable(inst.attr, at) ? "* " : "  ";
        if (inst.cpu_source == collectors::PmuCpuSource::kCpumask) {
          detail += " per unit, cpumask " + CpuText(inst.cpus);
        } else if (inst.cpu_source == collectors::PmuCpuSource::kCpus) {
          detail += " cpus " + CpuText(inst.cpus);
        }
      } catch (const collectors::EventSpecError& e) {
        detail = std::string(" (") + e.what() + ")";
      }
      if (alias.has_scale) detail += " scale " + std::to_string(alias.scale);
      if (!alias.unit.empty()) detail += " unit " + alias.unit;
      std::snprintf(line, sizeof(line), "%s%-50s %s%s\n", mark.c_str(), event.c_str(),
                    alias.text.c_str(), detail.empty() ? "" : (" ;" + detail).c_str());
      out << line;
    }
    if (Matches(pmu.name, pattern) && !pmu.formats.empty()) {
      std::string terms;
      for (const auto& [term, field] : pmu.formats) terms += (terms.empty() ? "" : ",") + term;
      out << "  " << pmu.name << "/"
          << "TERMS/  terms: " << terms << " (type " << pmu.type << ")\n";
    }
  }
  out << "\ntracepoints (subsystem:event):\n";
  std::string why;
  const auto tracepoints = LiveResolver().ListTracepoints(pattern, &why);
  if (!why.empty()) out << "  none: " << why << "\n";
  for (const std::string& tp : tracepoints) {
    bool ok = false;
    try {
      ok = Countable(LiveResolver().Resolve(tp).instances.front().attr, cpu);
    } catch (const collectors::EventSpecError&) {
    }
    out << (ok ? "* " : "  ") << tp << "\n";
  }
  out << "\n* = this host can count the event (CPU-wide on cpu " << cpu
      << ", uncore events on their cpumask CPU)\n";
  return 0;
}

void PrintEventLines(const config::Config& config, const collectors::EventPlan& plan,
                     std::ostream& out) {
  for (const config::EventSpec& spec : config.events) {
    std::vector<const collectors::PlannedEvent*> instances;
    for (const auto& ev : plan.events) {
      if (ev.name == spec.name) instances.push_back(&ev);
    }
    out << "event " << spec.name << " (" << spec.event << "): ";
    size_t countable = 0;
    std::string reason, pmus;
    for (const auto* ev : instances) {
      if (ev->supported) {
        ++countable;
      } else if (reason.empty()) {
        reason = ev->unsupported_reason;
      }
      if (!ev->pmu.empty()) pmus += (pmus.empty() ? "" : ",") + ev->pmu;
    }
    if (countable == 0) {
      out << "not countable on this host: " << reason << "\n";
      continue;
    }
    const auto& first = *instances.front();
    out << "countable here (" << first.source;
    if (!pmus.empty()) out << ", PMU " << pmus;
    out << ", " << Where(first);
    if (!first.unit.empty()) out << ", scale " << first.scale << " " << first.unit;
    out << ")";
    if (countable < instances.size()) {
      out << "; " << instances.size() - countable << " of " << instances.size()
          << " instances not countable: " << reason;
    }
    out << "\n";
  }
}

}  // namespace pmu::daemon
