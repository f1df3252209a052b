// GroupSample: one reading of one perf group on one CPU.
//
// Trivially copyable and of fixed size so that it can travel through the
// per-CPU rings. Values are the raw cumulative counts since the group's fds
// were opened; `generation` changes whenever the fds of that CPU are reopened
// (hotplug, reload), which tells the aggregator to take the next reading as
// counting from zero rather than as a continuation.
#pragma once

#include <array>
#include <cstdint>
#include <type_traits>

#include "pmu/collectors/event_plan.h"

namespace pmu::collectors {

enum class ReadPath : uint8_t { kRdpmc = 0, kLocalRead = 1, kRemoteRead = 2 };

struct GroupSample {
  int32_t cpu = -1;
  uint32_t group = 0;       // index into EventPlan::groups
  uint32_t generation = 0;  // fd generation of this CPU
  uint32_t count = 0;       // number of valid entries in values
  int64_t timestamp_ns = 0; // CLOCK_MONOTONIC when read
  uint64_t time_enabled = 0;
  uint64_t time_running = 0;
  std::array<uint64_t, kMaxGroupEvents> values{};  // in PlannedGroup::members order
  ReadPath path = ReadPath::kRemoteRead;
};

static_assert(std::is_trivially_copyable_v<GroupSample>);

}  // namespace pmu::collectors
