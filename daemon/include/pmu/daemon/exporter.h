// The Prometheus view of the aggregate.
//
// Metric families are built at scrape time from an AggregateSnapshot; the
// samplers never touch Prometheus objects. Families:
//   pmu_events_total{cpu,event}                    counter, scaled count
//   pmu_event_enabled_seconds_total{cpu,event}     counter
//   pmu_event_running_seconds_total{cpu,event}     counter
//   pmu_event_running_ratio{cpu,event}             gauge, running/enabled of the last interval
//   pmu_event_group_starved{cpu,group}             gauge 1 while a group never gets the PMU
//   pmu_event_supported{event}                     gauge 1/0, every configured event
//   pmu_exporter_build_info{version,revision}      gauge 1
// The Service adds its own families (reload status) through the source.
// Unsupported events appear only in pmu_event_supported (never as a count).
//
// Thread safety: Collect() may run on any number of HTTP threads at once.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <prometheus/metric_family.h>

#include "pmu/daemon/aggregator.h"
#include "pmu/daemon/pipeline.h"

namespace pmu::daemon {

// Builds the counter families for one snapshot (shared by the endpoint and --once).
std::vector<prometheus::MetricFamily> BuildFamilies(const AggregateSnapshot& snapshot);

// Families describing the sampling pipeline itself: pmu_cpu_online,
// pmu_exporter_read_path, sampler self-metrics, ring drops, rseq mode.
std::vector<prometheus::MetricFamily> BuildPipelineFamilies(const PipelineStats& stats,
                                                            const AggregateSnapshot& snapshot);

// One family holding a single unlabelled sample.
prometheus::MetricFamily GaugeFamily(std::string name, std::string help, double value);
prometheus::MetricFamily CounterFamily(std::string name, std::string help, double value);

// Text exposition format of `families`.
std::string SerializeText(const std::vector<prometheus::MetricFamily>& families);

}  // namespace pmu::daemon
