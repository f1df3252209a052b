// IntervalRecord: what one CPU measured in one sampling interval, after
// multiplex scaling. The aggregator assembles one record per (CPU, sampler
// tick) once every group of that tick has arrived, and hands it to the
// observers (derived metrics). This is the sub-scrape view: Prometheus only
// ever sees the running totals.
//
// Thread safety: records are delivered on the aggregator's thread, one at a
// time; an observer needs no locking against other deliveries, only against
// its own readers (scrapes).
#pragma once

#include <cstdint>
#include <span>

namespace pmu::daemon {

struct IntervalRecord {
  int cpu = -1;
  uint64_t tick = 0;      // the sampler's tick number on this CPU
  int64_t start_ns = 0;   // CLOCK_MONOTONIC of the previous reading
  int64_t end_ns = 0;     // CLOCK_MONOTONIC of this reading
  // Scaled deltas of this interval indexed like EventPlan::events; NaN where
  // the event is unsupported or did not run at all in the interval (unknown,
  // not zero).
  std::span<const double> event_deltas;
};

class IntervalObserver {
 public:
  virtual ~IntervalObserver() = default;
  virtual void OnInterval(const IntervalRecord& record) = 0;
};

}  // namespace pmu::daemon
