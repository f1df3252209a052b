// EventPlan: the configured events, encoded with libpfm4, probed on this host,
// and arranged into perf groups.
//
// Built once at start-up (and on reload) from config::EventSpec. Every event
// keeps its position from the config; events the host cannot count are kept
// with supported == false and the reason, so the exporter can say so
// (pmu_event_supported 0) instead of exporting a zero. Supported events are
// arranged in groups: events sharing a config `group` name form one perf group
// (leader = first in config order), every other event is a group of its own.
//
// Thread safety: immutable after BuildEventPlan returns; share freely.
#pragma once

#include <linux/perf_event.h>

#include <cstddef>
#include <string>
#include <vector>

#include "pmu/collectors/perf_syscalls.h"
#include "pmu/config/config.h"

namespace pmu::collectors {

// The largest perf group the sampler reads in one go (and the rdpmc section
// supports).
inline constexpr size_t kMaxGroupEvents = 16;

struct PlannedEvent {
  std::string name;   // label value
  std::string event;  // libpfm4 string as configured
  std::string canonical;
  perf_event_attr attr{};
  bool supported = false;
  std::string unsupported_reason;  // set when !supported
  int group = -1;                  // index into EventPlan::groups when supported
};

struct PlannedGroup {
  std::string name;             // config group name, or the event name for a lone event
  std::vector<size_t> members;  // indices into EventPlan::events; leader first
};

struct EventPlan {
  std::vector<PlannedEvent> events;
  std::vector<PlannedGroup> groups;

  size_t SupportedCount() const;
};

// Encodes every spec and probes it by opening it CPU-wide on `probe_cpu`
// (then closing it). Outcomes per event:
//  - libpfm4 cannot encode it, or the kernel answers ENOENT/EOPNOTSUPP/ENODEV:
//    unsupported, one WARN line naming the event and the likely cause;
//  - EACCES/EPERM: unsupported, one ERROR line naming perf_event_paranoid and
//    CAP_PERFMON;
//  - any other errno: unsupported, one ERROR line with the errno text.
// Throws std::runtime_error when a configured group has more than
// kMaxGroupEvents events.
EventPlan BuildEventPlan(const std::vector<config::EventSpec>& specs, PerfSyscalls& sys,
                         int probe_cpu);

// Makes room for `cpus` x (supported events) perf fds plus `reserve` other
// fds: raises the soft RLIMIT_NOFILE toward the hard limit when needed.
// Returns the limit in force; throws std::runtime_error naming the numbers
// when even the hard limit is too small.
uint64_t EnsureFdLimit(size_t cpus, size_t events, size_t reserve = 256);

// The actionable text for a perf_event_open failure of `event` (errno > 0).
std::string DescribeOpenError(const std::string& event, const perf_event_attr& attr, int err);

}  // namespace pmu::collectors
