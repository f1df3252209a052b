// The cardinality guard: how many series a configuration exports, counted by
// running the real family sources (StandardRegistry) with a SeriesCounter
// over a synthetic snapshot in which every configured thing has data: every
// supported event counted on every selected CPU, every derived metric with a
// value, the endpoint serving. The estimate is therefore the number of series
// lines /metrics writes once the daemon has warmed up, not a formula that
// can drift from the families.
//
// What the host decides: the kernel statistics' shape. With `observed` (the
// first round's KernelStats) the sources present and the softirq types are
// the host's; without it every enabled source is assumed present with the
// kernel's ten softirq types (NR_SOFTIRQS since Linux 4.1). Read errors by
// errno are absent in the synthetic snapshot (they only appear on failures).
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "pmu/collectors/event_plan.h"
#include "pmu/config/config.h"
#include "pmu/sampling/kernel_stats.h"

namespace pmu::metrics {

class FamilySource;  // family_source.h

struct SeriesEstimate {
  size_t total = 0;
  // (family name, series), largest first.
  std::vector<std::pair<std::string, size_t>> families;
};

// `cpus`: the CPUs the configuration selects. `extra`: the worst-case
// families of optional subsystems (ExportSnapshot::extra), counted too.
SeriesEstimate EstimateSeries(const config::Config& config,
                              std::shared_ptr<const collectors::EventPlan> plan,
                              const std::vector<int>& cpus,
                              const sampling::KernelStats* observed = nullptr,
                              std::vector<std::shared_ptr<const FamilySource>> extra = {});

// A configuration that would export more series than it allows (a
// configuration error: the daemon exits with status 2).
class CardinalityError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Throws CardinalityError when the estimate exceeds
// config.exporter.max_series; the message gives the count, the limit, the
// largest families and how to reduce them.
void CheckCardinality(const config::Config& config, const SeriesEstimate& estimate);

}  // namespace pmu::metrics
