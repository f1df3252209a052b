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

// How a reading was taken (best first):
//  kRdpmc       rdpmc inside the rseq counter-read section on CPU N;
//  kLocalRead   read(2) issued on CPU N itself (confirmed through rseq before
//               and after): no IPI;
//  kRemoteRead  read(2) from another CPU: always correct, costs an IPI.
enum class ReadPath : uint8_t { kRdpmc = 0, kLocalRead = 1, kRemoteRead = 2 };
inline constexpr int kReadPathCount = 3;
inline const char* ReadPathName(ReadPath p) {
  switch (p) {
    case ReadPath::kRdpmc:
      return "rdpmc";
    case ReadPath::kLocalRead:
      return "local_read";
    case ReadPath::kRemoteRead:
      return "remote_read";
  }
  return "unknown";
}

struct GroupSample {
  int32_t cpu = -1;
  uint32_t group = 0;           // index into EventPlan::groups
  uint32_t generation = 0;      // fd generation of this CPU
  uint32_t count = 0;           // number of valid entries in values
  uint32_t groups_in_tick = 0;  // groups the sampler reads per tick (this one included)
  int64_t timestamp_ns = 0;     // CLOCK_MONOTONIC when read
  uint64_t tick = 0;            // schedule slot of the reading (all groups of a tick share it)
  uint64_t seq = 0;             // the sampler's reading number: increases with every tick
  int32_t read_cpu = -1;        // the CPU the reading thread was on when it pushed
  uint64_t time_enabled = 0;
  uint64_t time_running = 0;
  std::array<uint64_t, kMaxGroupEvents> values{};  // in PlannedGroup::members order
  ReadPath path = ReadPath::kRemoteRead;
};

static_assert(std::is_trivially_copyable_v<GroupSample>);

}  // namespace pmu::collectors
