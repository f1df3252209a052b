// Small event plans and readings for aggregator and exposition tests.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "pmu/collectors/event_plan.h"
#include "pmu/collectors/sample.h"

namespace pmu::testing {

// Events "a" and "b" in group "g", and "hw", which the host cannot count.
inline std::shared_ptr<collectors::EventPlan> TwoEventPlan() {
  auto plan = std::make_shared<collectors::EventPlan>();
  plan->events.resize(3);
  plan->events[0].name = "a";
  plan->events[0].supported = true;
  plan->events[0].group = 0;
  plan->events[1].name = "b";
  plan->events[1].supported = true;
  plan->events[1].group = 0;
  plan->events[2].name = "hw";
  plan->events[2].supported = false;
  plan->groups.push_back({"g", {0, 1}});
  return plan;
}

// A planned event `name` of `pmu` ("" for the core PMU), labelled by die
// (an uncore PMU's unit scope) or else by CPU, with its sysfs scale and unit.
inline collectors::PlannedEvent PlannedEventOf(std::string name, std::string pmu, bool by_die,
                                               double scale = 1, std::string unit = "",
                                               bool supported = true) {
  collectors::PlannedEvent ev;
  ev.name = std::move(name);
  ev.pmu = std::move(pmu);
  ev.supported = supported;
  ev.label_by_die = by_die;
  ev.scope = by_die ? collectors::EventScope::kUnit : collectors::EventScope::kCpu;
  ev.scale = scale;
  ev.unit = std::move(unit);
  return ev;
}

// A reading of group "g" of TwoEventPlan(), the only group of its tick. Each
// call is a later reading than the one before: its seq and tick (schedule
// slot) increase by one; a test that needs another order sets them itself.
inline collectors::GroupSample Reading(int cpu, uint32_t gen, uint64_t a, uint64_t b,
                                       uint64_t enabled, uint64_t running) {
  static uint64_t next = 0;
  collectors::GroupSample s;
  s.cpu = cpu;
  s.generation = gen;
  s.seq = ++next;
  s.tick = s.seq;
  s.groups_in_tick = 1;
  s.timestamp_ns = static_cast<int64_t>(s.seq) * 1000;
  s.count = 2;
  s.values[0] = a;
  s.values[1] = b;
  s.time_enabled = enabled;
  s.time_running = running;
  return s;
}

}  // namespace pmu::testing
