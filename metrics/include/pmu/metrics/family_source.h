// Family sources: every metric family /metrics serves comes from one
// FamilySource, registered once in a Registry and asked in order to write
// its families for an ExportSnapshot (as node_exporter's collector registry
// does). A source only formats what the snapshot holds: it reads no file and
// takes no lock of the pipeline.
//
// Thread safety: sources and registries are immutable after set-up; Write
// may run on any number of threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pmu/metrics/exposition.h"
#include "pmu/sampling/snapshot.h"

namespace pmu::metrics {

struct DerivedSnapshot;  // derived.h
class FamilySource;

// Facts about the service itself.
struct ServiceFacts {
  bool last_reload_successful = true;
  double last_reload_success_unix_seconds = 0;  // start-up counts as a successful load
};

// The endpoint's own traffic (totals over every server the daemon ran).
struct EndpointStats {
  uint64_t requests = 0;
  uint64_t connections_accepted = 0;
  uint64_t connections_rejected = 0;
  uint64_t auth_failures = 0;
  uint64_t timeouts = 0;
  bool listening = true;       // false: serving, but no socket listens (retrying)
  uint64_t bind_failures = 0;  // endpoint rebinds that failed (rollback, retries)
};

// Everything one exposition shows; immutable once assembled.
struct ExportSnapshot {
  std::shared_ptr<const sampling::Snapshot> sampling;
  std::shared_ptr<const DerivedSnapshot> derived;
  ServiceFacts service;
  std::optional<EndpointStats> endpoint;  // absent while no endpoint serves
  // Families of optional subsystems outside metrics/ (per-cgroup
  // attribution, attribution/): each an immutable source over data it took
  // when the snapshot was assembled; written after the standard sources.
  std::vector<std::shared_ptr<const FamilySource>> extra;
};

class FamilySource {
 public:
  virtual ~FamilySource() = default;
  virtual void Write(const ExportSnapshot& snapshot, FamilyWriter& out) const = 0;
};

// The sources of the standard exposition, in the order they are written:
//   EventFamilies     pmu_events_total, pmu_event_enabled_seconds_total,
//                     pmu_event_running_seconds_total, pmu_event_running_ratio,
//                     pmu_event_group_starved, pmu_event_supported,
//                     pmu_exporter_build_info
//   PipelineFamilies  pmu_cpu_online, pmu_exporter_read_path and the
//                     sampler, ring and rseq self-metrics
//   KernelStatsFamilies  pmu_cpu_time_seconds_total, pmu_cpu_softirqs_total,
//                     schedstat and cpufreq families, source availability
//   DerivedFamilies   (derived.h) pmu_derived_* and the skip counter
//   EndpointFamilies  pmu_exporter_http_*
//   ServiceFamilies   pmu_exporter_config_last_reload_*
std::unique_ptr<FamilySource> EventFamilies();
std::unique_ptr<FamilySource> PipelineFamilies();
std::unique_ptr<FamilySource> KernelStatsFamilies();
std::unique_ptr<FamilySource> EndpointFamilies();
std::unique_ptr<FamilySource> ServiceFamilies();

class Registry {
 public:
  void Add(std::unique_ptr<FamilySource> source) { sources_.push_back(std::move(source)); }
  void Write(const ExportSnapshot& snapshot, FamilyWriter& out) const;

 private:
  std::vector<std::unique_ptr<FamilySource>> sources_;
};

// The registry of the standard exposition (built once).
const Registry& StandardRegistry();

// The standard exposition of `snapshot` in the text format (the standard
// registry, then `snapshot.extra`).
std::string RenderText(const ExportSnapshot& snapshot);

}  // namespace pmu::metrics
