// EventPlan: the configured events, resolved (event_source.h: sysfs PMUs,
// tracepoints, raw, perf software names, libpfm4), probed on this host, and
// arranged into perf groups.
//
// Built once at start-up (and on reload) from config::EventSpec. Events keep
// their config order; a spec naming every instance of an uncore PMU becomes
// one PlannedEvent per instance (same name, its own `pmu`). Events the host
// cannot count are kept with supported == false and the reason, so the
// exporter can say so (pmu_event_supported 0) instead of exporting a zero.
// Supported events are arranged in groups: events sharing a config `group`
// name and PMU instance form one perf group (leader = first in config
// order), every other event is a group of its own. A group is opened only on
// the CPUs its PMU allows (PlannedGroup::cpus; a unit-scope group once per
// unit on its cpumask CPU).
//
// Thread safety: immutable after BuildEventPlan returns; share freely.
#pragma once

#include <linux/perf_event.h>

#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "pmu/collectors/event_source.h"
#include "pmu/collectors/perf_syscalls.h"
#include "pmu/collectors/permission.h"
#include "pmu/collectors/topology.h"
#include "pmu/config/config.h"

namespace pmu::collectors {

// The largest perf group the sampler reads in one go (and the rdpmc section
// supports).
inline constexpr size_t kMaxGroupEvents = 16;

struct PlannedEvent {
  std::string name;   // label value
  std::string event;  // the event string as configured
  std::string canonical;
  std::string source;  // "sysfs", "tracepoint", "raw", "software", "libpfm4"; "" if unresolved
  perf_event_attr attr{};
  bool supported = false;
  std::string unsupported_reason;            // set when !supported
  OpenFailure failure = OpenFailure::kNone;  // why, as a class (the `reason` label)
  int group = -1;                            // index into EventPlan::groups when supported
  std::string group_name;                    // the config's group ("" = alone)
  // Where and how it counts (event_source.h).
  std::string pmu;      // sysfs PMU instance, "" otherwise
  std::string pmu_dir;  // its sysfs directory (cpumask/cpus re-read after hotplug)
  EventScope scope = EventScope::kCpu;
  PmuCpuSource cpu_source = PmuCpuSource::kAny;
  std::vector<int> cpus;  // at plan time; empty = every sampled CPU
  double scale = 1;
  std::string unit;
  // kUnit events whose cpumask lists one CPU per (package, die): exported
  // with package/die labels instead of cpu (EventPlan::locations).
  bool label_by_die = false;
};

struct PlannedGroup {
  std::string name;             // config group name, or the event name for a lone event
  std::vector<size_t> members;  // indices into EventPlan::events; leader first
};

struct EventPlan {
  std::vector<PlannedEvent> events;
  std::vector<PlannedGroup> groups;
  // Package and die of the CPUs whose topology was readable at plan time.
  std::map<int, CpuLocation> locations;

  size_t SupportedCount() const;
  // Whether group `g` is opened on `cpu`, given `sites`: the CPUs of each
  // group's PMU now (GroupSites; empty entry = every CPU).
  static bool GroupOnCpu(const std::vector<std::vector<int>>& sites, size_t g, int cpu);
  // Each group's CPUs as the plan recorded them.
  std::vector<std::vector<int>> GroupSites() const;
  // Each group's CPUs read again from sysfs now (after hotplug the kernel
  // moves uncore events and rewrites cpumask).
  std::vector<std::vector<int>> ReadGroupSites() const;
  // Set when at least one event was refused for lack of permission (or by a
  // seccomp filter): one message naming what is missing and how to change it.
  std::string permission_problem;
};

// Resolves every spec and probes it by opening it CPU-wide on `probe_cpu`
// (unit-scope and hybrid events on the first CPU their PMU lists), then
// closing it. Outcomes per event:
//  - the resolver refuses it (event_source.h), or the kernel answers
//    ENOENT/EOPNOTSUPP/ENODEV: unsupported, one WARN line naming the event
//    and the reason;
//  - EACCES/EPERM: unsupported with failure kPermission or kSeccomp (see
//    permission.h), one WARN line per event; `permission_problem` says once
//    what is missing (the caller decides whether that is fatal);
//  - any other errno: unsupported, one ERROR line with the errno text.
// Throws std::runtime_error when a configured group has more than
// kMaxGroupEvents events.
EventPlan BuildEventPlan(const std::vector<config::EventSpec>& specs, PerfSyscalls& sys,
                         int probe_cpu, const EventResolver& resolver,
                         const std::string& root = "/");
// The same with a resolver of the live host ("/").
EventPlan BuildEventPlan(const std::vector<config::EventSpec>& specs, PerfSyscalls& sys,
                         int probe_cpu);

// Resolves every configured event as start-up does and throws
// config::ConfigError (file:line:column of the event value, key
// "events[N].event", the reason and the nearest known names) for the first
// one no encoder accepts: an unknown name, an unknown term or alias of a
// present PMU, a value too wide for its field, malformed syntax. Events that
// are valid but not countable on this host pass (a fleet config stays
// portable).
void ValidateEventNames(const config::Config& config, const EventResolver& resolver);

// Makes room for `cpus` x (supported events) perf fds plus `reserve` other
// fds: raises the soft RLIMIT_NOFILE toward the hard limit when needed.
// Returns the limit in force; throws std::runtime_error naming the numbers
// when even the hard limit is too small.
uint64_t EnsureFdLimit(size_t cpus, size_t events, size_t reserve = 256);

// The actionable text for a perf_event_open failure of `event` (errno > 0).
std::string DescribeOpenError(const std::string& event, const perf_event_attr& attr, int err);

}  // namespace pmu::collectors
