// Building synthetic EventPlans for the benchmarks: events the host "can
// count" (supported = true) with a given perf type and config, arranged in
// groups by the caller. No probing, no libpfm4.
#pragma once

#include <linux/perf_event.h>

#include <cstdint>
#include <string>
#include <utility>

#include "pmu/collectors/event_plan.h"

namespace pmu::bench {

// Appends a group named `name`; returns its index.
inline size_t AddGroup(collectors::EventPlan& plan, std::string name) {
  plan.groups.push_back({std::move(name), {}});
  return plan.groups.size() - 1;
}

// Appends a supported event as the last member of group `group`.
inline void AddEvent(collectors::EventPlan& plan, size_t group, std::string name, uint32_t type,
                     uint64_t config) {
  collectors::PlannedEvent ev;
  ev.event = name;
  ev.canonical = name;
  ev.name = std::move(name);
  ev.attr.size = sizeof(ev.attr);
  ev.attr.type = type;
  ev.attr.config = config;
  ev.supported = true;
  ev.group = static_cast<int>(group);
  plan.groups.at(group).members.push_back(plan.events.size());
  plan.events.push_back(std::move(ev));
}

}  // namespace pmu::bench
