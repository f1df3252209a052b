// What the aggregator thread hands to observers each round, below the
// running totals: the per-interval view that Prometheus never sees.
//
// IntervalRecord: what one CPU measured in one sampling interval, after
// multiplex scaling. The aggregator assembles one record per (CPU, sampler
// tick) once every group of that tick has arrived.
//
// HostInterval: one schedule slot of the whole host, assembled only from
// complete ticks: every CPU sampled in that slot delivered every group of its
// tick, each record covering exactly that one slot (its duration taken from
// the record's own timestamps). A slot that cannot be assembled so (a CPU
// missed it, came online or went offline in it, fell behind) is reported as
// incomplete instead: a host value is never built from part of the host.
//
// RoundObserver: receives, in this order within one aggregator round, every
// completed IntervalRecord (OnInterval) and every decided host slot
// (OnHostInterval / OnHostIntervalIncomplete, in slot order), the round's
// /proc/stat parse when the observer asked for it (OnProcStat), and the end
// of the round (EndRound).
//
// Thread safety: every call comes from the aggregator thread (or from the
// thread that drives a synchronous round while the aggregator thread is
// stopped), one at a time; an observer needs no locking against other
// deliveries, only against its own readers.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>

#include "pmu/collectors/kernel_stats.h"

namespace pmu::sampling {

struct IntervalRecord {
  int cpu = -1;
  uint64_t tick = 0;     // the schedule slot this reading belongs to
  uint64_t slots = 0;    // slots the record covers (1 unless the sampler fell behind)
  int64_t start_ns = 0;  // CLOCK_MONOTONIC of the previous reading
  int64_t end_ns = 0;    // CLOCK_MONOTONIC of this reading
  // Scaled deltas of this interval indexed like EventPlan::events; NaN where
  // the event is unsupported or did not run at all in the interval (unknown,
  // not zero).
  std::span<const double> event_deltas;
};

struct HostInterval {
  uint64_t tick = 0;                     // the schedule slot
  std::span<const IntervalRecord> cpus;  // one per CPU sampled in the slot
};

class RoundObserver {
 public:
  virtual ~RoundObserver() = default;
  virtual void OnInterval(const IntervalRecord& record) = 0;
  virtual void OnHostInterval(const HostInterval& interval) { (void)interval; }
  virtual void OnHostIntervalIncomplete(uint64_t tick) { (void)tick; }
  // True when the observer wants /proc/stat every round (OnProcStat).
  virtual bool NeedsProcStat() const { return false; }
  // How far apart the observer wants /proc/stat readings taken (at most).
  virtual std::chrono::nanoseconds ProcStatPeriod() const { return std::chrono::seconds(1); }
  // The round's parse of /proc/stat, taken at `now_ns` (CLOCK_MONOTONIC).
  virtual void OnProcStat(const collectors::ProcStat& stat, int64_t now_ns) {
    (void)stat;
    (void)now_ns;
  }
  virtual void EndRound() = 0;
};

}  // namespace pmu::sampling
