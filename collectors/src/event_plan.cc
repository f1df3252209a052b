#include "pmu/collectors/event_plan.h"

#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>
#include <stdexcept>

#include "pmu/collectors/pfm.h"

namespace pmu::collectors {
namespace {

bool IsHardwareType(uint32_t type) {
  return type != PERF_TYPE_SOFTWARE && type != PERF_TYPE_TRACEPOINT && type != PERF_TYPE_BREAKPOINT;
}

}  // namespace

size_t EventPlan::SupportedCount() const {
  size_t n = 0;
  for (const auto& e : events) n += e.supported ? 1 : 0;
  return n;
}

std::string DescribeOpenError(const std::string& event, const perf_event_attr& attr, int err) {
  switch (err) {
    case ENOENT:
    case EOPNOTSUPP:
    case ENODEV:
      if (IsHardwareType(attr.type)) {
        return "event '" + event + "' is not supported by this host (" + std::strerror(err) +
               "): no hardware PMU, e.g. a virtual machine?";
      }
      return "event '" + event + "' is not supported by this kernel (" + std::strerror(err) + ")";
    case EACCES:
    case EPERM:
      return "event '" + event + "': " + DescribePermissionDenied(err, ReadPermissionFacts());
    case EMFILE:
      return "event '" + event +
             "': too many open files (EMFILE): raise the RLIMIT_NOFILE "
             "soft limit (LimitNOFILE= in the unit)";
    default:
      return "event '" + event + "': perf_event_open failed: " + std::strerror(err);
  }
}

uint64_t EnsureFdLimit(size_t cpus, size_t events, size_t reserve) {
  const uint64_t needed = static_cast<uint64_t>(cpus) * events + reserve;
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return 0;
  if (lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < needed) {
    const rlim_t want =
        lim.rlim_max == RLIM_INFINITY ? needed : std::min<rlim_t>(lim.rlim_max, needed);
    rlimit raised = lim;
    raised.rlim_cur = want;
    if (want > lim.rlim_cur && setrlimit(RLIMIT_NOFILE, &raised) == 0) {
      spdlog::info("raised the open-file limit from {} to {} for {} CPUs x {} events", lim.rlim_cur,
                   want, cpus, events);
      lim = raised;
    }
  }
  if (lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < needed) {
    throw std::runtime_error(
        "counting " + std::to_string(events) + " events on " + std::to_string(cpus) +
        " CPUs needs " + std::to_string(needed) + " file descriptors (CPUs x events + " +
        std::to_string(reserve) + " for the rest), but RLIMIT_NOFILE allows only " +
        std::to_string(lim.rlim_cur) + " (hard limit " +
        (lim.rlim_max == RLIM_INFINITY ? std::string("unlimited") : std::to_string(lim.rlim_max)) +
        "): raise it (LimitNOFILE= in the unit, ulimit -n) or count fewer events");
  }
  return lim.rlim_cur == RLIM_INFINITY ? UINT64_MAX : lim.rlim_cur;
}

namespace {

// Probes `ev` CPU-wide on `cpu`; fills supported/unsupported_reason/failure
// and, for the first permission refusal, *permission_problem.
void Probe(PlannedEvent& ev, PerfSyscalls& sys, int cpu, std::string* permission_problem) {
  perf_event_attr probe = ev.attr;
  int fd = sys.Open(&probe, -1, cpu, -1, 0);
  if (fd >= 0) {
    sys.Close(fd);
    ev.supported = true;
    return;
  }
  int err = -fd;
  ev.unsupported_reason = DescribeOpenError(ev.event, ev.attr, err);
  const PermissionFacts facts = ReadPermissionFacts();
  ev.failure = ClassifyOpenError(err, facts);
  if (ev.failure == OpenFailure::kNotSupported) {
    spdlog::warn("event {}: unsupported: {}", ev.name, ev.unsupported_reason);
  } else if (ev.failure == OpenFailure::kPermission || ev.failure == OpenFailure::kSeccomp) {
    // The explanation once, in permission_problem; one short line each.
    spdlog::warn("event {}: cannot be opened: {} ({})", ev.name, std::strerror(err),
                 ToString(ev.failure));
    if (permission_problem->empty()) *permission_problem = DescribePermissionDenied(err, facts);
  } else {
    spdlog::error("event {}: cannot be opened: {}", ev.name, ev.unsupported_reason);
  }
}

// One CPU per (package, die) in `cpus`, all of them known.
bool OnePerDie(const std::vector<int>& cpus, const std::map<int, CpuLocation>& locations) {
  std::set<std::pair<int, int>> seen;
  for (int cpu : cpus) {
    auto it = locations.find(cpu);
    if (it == locations.end()) return false;
    if (!seen.insert({it->second.package, it->second.die}).second) return false;
  }
  return !cpus.empty();
}

}  // namespace

bool EventPlan::GroupOnCpu(const std::vector<std::vector<int>>& sites, size_t g, int cpu) {
  if (g >= sites.size() || sites[g].empty()) return true;
  return std::find(sites[g].begin(), sites[g].end(), cpu) != sites[g].end();
}

std::vector<std::vector<int>> EventPlan::GroupSites() const {
  std::vector<std::vector<int>> out(groups.size());
  for (size_t g = 0; g < groups.size(); ++g) {
    const PlannedEvent& leader = events[groups[g].members.front()];
    if (leader.cpu_source != PmuCpuSource::kAny) out[g] = leader.cpus;
    // A listed PMU with no CPU at all: open nowhere (-1 is no CPU).
    if (leader.cpu_source != PmuCpuSource::kAny && out[g].empty()) out[g] = {-1};
  }
  return out;
}

std::vector<std::vector<int>> EventPlan::ReadGroupSites() const {
  std::vector<std::vector<int>> out = GroupSites();
  for (size_t g = 0; g < groups.size(); ++g) {
    const PlannedEvent& leader = events[groups[g].members.front()];
    if (leader.cpu_source == PmuCpuSource::kAny || leader.pmu_dir.empty()) continue;
    PmuCpuSource source;
    std::vector<int> now = ReadPmuCpus(leader.pmu_dir, &source);
    out[g] = now.empty() ? std::vector<int>{-1} : now;
  }
  return out;
}

EventPlan BuildEventPlan(const std::vector<config::EventSpec>& specs, PerfSyscalls& sys,
                         int probe_cpu) {
  static const EventResolver* live = new EventResolver("/");  // read once per process
  return BuildEventPlan(specs, sys, probe_cpu, *live, "/");
}

void ValidateEventNames(const config::Config& config, const EventResolver& resolver) {
  for (size_t i = 0; i < config.events.size(); ++i) {
    const config::EventSpec& spec = config.events[i];
    try {
      resolver.Resolve(spec.event);
    } catch (const EventSpecError& e) {
      if (!e.IsConfigError()) continue;
      throw config::ConfigError(config.source, spec.event_line, spec.event_column,
                                "events[" + std::to_string(i + 1) + "].event",
                                std::string(e.what()) + " (see pmu-exporter --list-events)");
    }
  }
}

EventPlan BuildEventPlan(const std::vector<config::EventSpec>& specs, PerfSyscalls& sys,
                         int probe_cpu, const EventResolver& resolver, const std::string& root) {
  EventPlan plan;
  plan.events.reserve(specs.size());
  std::vector<int> all_cpus;
  try {
    all_cpus = PossibleCpus(root);
  } catch (const std::exception&) {
  }
  plan.locations = ReadCpuLocations(root, all_cpus);
  for (const auto& spec : specs) {
    PlannedEvent base;
    base.name = spec.name;
    base.event = spec.event;
    base.group_name = spec.group;
    ResolvedEvent resolved;
    try {
      resolved = resolver.Resolve(spec.event);
    } catch (const EventSpecError& e) {
      base.unsupported_reason = "event '" + spec.event + "': " + e.what() +
                                (e.IsConfigError() ? " (see pmu-exporter --list-events)" : "");
      base.failure = OpenFailure::kNotSupported;
      spdlog::warn("event {}: {}: {}", spec.name,
                   e.IsConfigError() ? "invalid" : "not countable on this host",
                   base.unsupported_reason);
      plan.events.push_back(std::move(base));
      continue;
    }
    for (const ResolvedInstance& inst : resolved.instances) {
      PlannedEvent ev = base;
      ev.source = resolved.source;
      ev.canonical = resolved.canonical;
      ev.attr = inst.attr;
      ev.pmu = inst.pmu;
      ev.pmu_dir = inst.pmu_dir;
      ev.scope = inst.scope;
      ev.cpu_source = inst.cpu_source;
      ev.cpus = inst.cpus;
      ev.scale = inst.scale;
      ev.unit = inst.unit;
      ev.label_by_die = ev.scope == EventScope::kUnit && OnePerDie(ev.cpus, plan.locations);
      if (ev.cpu_source != PmuCpuSource::kAny && ev.cpus.empty()) {
        ev.unsupported_reason = "event '" + spec.event + "': PMU '" + ev.pmu + "' lists no CPU";
        ev.failure = OpenFailure::kNotSupported;
        spdlog::warn("event {}: unsupported: {}", ev.name, ev.unsupported_reason);
      } else {
        Probe(ev, sys, ev.cpus.empty() ? probe_cpu : ev.cpus.front(), &plan.permission_problem);
      }
      plan.events.push_back(std::move(ev));
    }
  }

  std::map<std::pair<std::string, std::string>, size_t> named_groups;
  for (size_t i = 0; i < plan.events.size(); ++i) {
    PlannedEvent& ev = plan.events[i];
    if (!ev.supported) continue;
    const std::string& group_name = ev.group_name;
    const std::string display = ev.pmu.empty() ? group_name : group_name + "/" + ev.pmu;
    size_t g;
    if (group_name.empty()) {
      g = plan.groups.size();
      plan.groups.push_back({ev.pmu.empty() ? ev.name : ev.name + "/" + ev.pmu, {}});
    } else if (auto it = named_groups.find({group_name, ev.pmu}); it != named_groups.end()) {
      g = it->second;
      const PlannedEvent& leader = plan.events[plan.groups[g].members.front()];
      if (leader.scope != ev.scope || leader.cpus != ev.cpus) {
        throw std::runtime_error("group '" + group_name + "': event '" + ev.name +
                                 "' counts on other CPUs than its leader '" + leader.name + "' (" +
                                 (ev.scope == EventScope::kUnit ? "per unit" : "per CPU") +
                                 "); put it in a group of its own");
      }
    } else {
      g = plan.groups.size();
      named_groups.emplace(std::pair{group_name, ev.pmu}, g);
      plan.groups.push_back({display, {}});
    }
    plan.groups[g].members.push_back(i);
    ev.group = static_cast<int>(g);
    if (plan.groups[g].members.size() > kMaxGroupEvents) {
      throw std::runtime_error("group '" + group_name + "' has more than " +
                               std::to_string(kMaxGroupEvents) +
                               " supported events; split it into smaller groups");
    }
  }
  return plan;
}

}  // namespace pmu::collectors
