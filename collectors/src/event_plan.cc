#include "pmu/collectors/event_plan.h"

#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <stdexcept>

#include "pmu/collectors/pfm.h"

namespace pmu::collectors {
namespace {

std::string ReadParanoid() {
  std::ifstream in("/proc/sys/kernel/perf_event_paranoid");
  std::string value;
  if (!(in >> value)) return "unknown";
  return value;
}

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
      return "event '" + event + "': permission denied (" + std::strerror(err) +
             "): CPU-wide counting needs CAP_PERFMON (or CAP_SYS_ADMIN before Linux 5.8) "
             "or kernel.perf_event_paranoid <= 0; perf_event_paranoid is " +
             ReadParanoid();
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

EventPlan BuildEventPlan(const std::vector<config::EventSpec>& specs, PerfSyscalls& sys,
                         int probe_cpu) {
  EventPlan plan;
  plan.events.reserve(specs.size());
  for (const auto& spec : specs) {
    PlannedEvent ev;
    ev.name = spec.name;
    ev.event = spec.event;
    EncodeResult enc = EncodeEvent(spec.event);
    if (!enc.ok) {
      ev.unsupported_reason = "libpfm4 cannot encode event '" + spec.event + "': " + enc.error +
                              " (see pmu-exporter --list-events)";
      spdlog::warn("event {}: unsupported: {}", spec.name, ev.unsupported_reason);
      plan.events.push_back(std::move(ev));
      continue;
    }
    ev.attr = enc.attr;
    ev.canonical = enc.canonical;
    perf_event_attr probe = ev.attr;
    int fd = sys.Open(&probe, -1, probe_cpu, -1, 0);
    if (fd >= 0) {
      sys.Close(fd);
      ev.supported = true;
    } else {
      int err = -fd;
      ev.unsupported_reason = DescribeOpenError(spec.event, ev.attr, err);
      if (err == ENOENT || err == EOPNOTSUPP || err == ENODEV) {
        spdlog::warn("event {}: unsupported: {}", spec.name, ev.unsupported_reason);
      } else {
        spdlog::error("event {}: cannot be opened: {}", spec.name, ev.unsupported_reason);
      }
    }
    plan.events.push_back(std::move(ev));
  }

  std::map<std::string, size_t> named_groups;
  for (size_t i = 0; i < plan.events.size(); ++i) {
    PlannedEvent& ev = plan.events[i];
    if (!ev.supported) continue;
    const std::string& group_name = specs[i].group;
    size_t g;
    if (group_name.empty()) {
      g = plan.groups.size();
      plan.groups.push_back({ev.name, {}});
    } else if (auto it = named_groups.find(group_name); it != named_groups.end()) {
      g = it->second;
    } else {
      g = plan.groups.size();
      named_groups.emplace(group_name, g);
      plan.groups.push_back({group_name, {}});
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
