// CpuCounters: every group of an EventPlan opened on one CPU.
//
// Only the groups whose PMU covers this CPU are opened: `sites` gives each
// group's CPUs (EventPlan::GroupSites/ReadGroupSites; an empty entry = every
// CPU); without it, the plan's own. A group that fails to open on this CPU is
// logged once (naming the CPU, the
// group and the event) and left out; the other groups and the other CPUs keep
// working.
//
// Thread safety: one thread at a time per object.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "pmu/collectors/event_group.h"

namespace pmu::collectors {

class CpuCounters {
 public:
  // With `quiet_not_ready`, groups refused with ENODEV (a CPU that has only
  // just come online) are counted in not_ready_groups() instead of logged.
  CpuCounters(PerfSyscalls& sys, const EventPlan& plan, int cpu, uint32_t generation,
              bool quiet_not_ready = false, const std::vector<std::vector<int>>* sites = nullptr);

  int cpu() const { return cpu_; }
  uint32_t generation() const { return generation_; }
  size_t open_groups() const { return groups_.size(); }
  size_t open_fds() const;
  size_t not_ready_groups() const { return not_ready_groups_; }

  // The open groups (for samplers that choose a read path per group).
  std::vector<std::unique_ptr<EventGroup>>& groups() { return groups_; }

  // Reads every open group with read(2) and hands each reading to `sink`.
  // Returns the number of groups that failed to read.
  size_t ReadAll(const std::function<void(const GroupSample&)>& sink);

 private:
  int cpu_;
  uint32_t generation_;
  size_t not_ready_groups_ = 0;
  std::vector<std::unique_ptr<EventGroup>> groups_;
};

// CLOCK_MONOTONIC in nanoseconds.
int64_t MonotonicNanos() noexcept;

}  // namespace pmu::collectors
