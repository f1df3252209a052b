// Snapshot: everything one aggregator round measured, immutable once
// published. The exposition (metrics/) formats snapshots; it never reads a
// source itself.
//
// Thread safety: published as std::shared_ptr<const Snapshot>; share freely.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "pmu/collectors/event_plan.h"
#include "pmu/sampling/aggregator.h"
#include "pmu/sampling/cpu_sampler.h"
#include "pmu/sampling/kernel_stats.h"

namespace pmu::sampling {

// The sampling pipeline's own activity, monotonic across hotplug and
// reloads (a sampler's counts outlive the sampler).
struct PipelineStats {
  struct Cpu {
    int cpu = -1;
    bool online = false;        // sampled now
    CpuSampler::Stats sampler;  // every sampler this CPU had, summed
  };
  std::vector<Cpu> cpus;  // every CPU the configuration selects, online or not
  uint64_t ring_drops = 0;
  uint64_t ring_aborts = 0;
  uint64_t ring_fallbacks = 0;
  uint64_t misfiled = 0;  // records found in a ring other than their reader's: must stay 0
  uint64_t hotplug_events = 0;
};

struct Snapshot {
  uint64_t round = 0;    // increases by one per published round
  int64_t taken_ns = 0;  // CLOCK_MONOTONIC at the end of the round
  std::shared_ptr<const collectors::EventPlan> plan;
  std::vector<CpuTotals> counters;  // only CPUs that delivered at least one reading
  PipelineStats pipeline;
  KernelStats kernel;
};

}  // namespace pmu::sampling
