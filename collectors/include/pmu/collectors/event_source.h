// EventResolver: a configured event name -> the perf_event_attr(s) to open,
// where to open them, and how to label and scale their counts.
//
// A name is tried, in order, as
//   1. a sysfs PMU event: `pmu/term=v,.../` or `pmu/alias/` (with perf's
//      modifiers `/u`, `/k`, `:u`, `:k`); `pmu` may name every instance of
//      an uncore PMU (uncore_imc -> uncore_imc_0..N, one ResolvedInstance
//      each, each its own series);
//   2. a tracepoint `subsystem:event`, its id read from tracefs
//      (<root>/sys/kernel/tracing, then <root>/sys/kernel/debug/tracing);
//   3. a raw event `rNNNN` (PERF_TYPE_RAW, hexadecimal config);
//   4. a perf generic software event name (cpu-clock, task-clock,
//      page-faults/faults, context-switches/cs, cpu-migrations/migrations,
//      minor-faults, major-faults, alignment-faults, emulation-faults, dummy,
//      bpf-output, cgroup-switches), with modifiers;
//   5. a libpfm4 event string, encoded exactly as before (pfm.h).
// Failures throw EventSpecError (event_syntax.h): IsConfigError() kinds are
// mistakes in the name itself (a configuration error on every host); the
// others say the name is valid but this host cannot count it (PMU absent,
// tracefs missing, a libpfm4 event of another CPU model).
//
// Resolve() does not open anything: whether the kernel accepts the attr is
// probed by BuildEventPlan.
//
// Thread safety: immutable after construction (the PMU catalogue is read in
// the constructor); Resolve may run on any thread.
#pragma once

#include <linux/perf_event.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pmu/collectors/event_syntax.h"
#include "pmu/collectors/pmu_catalog.h"

namespace pmu::collectors {

// How an event's counts relate to CPUs.
enum class EventScope {
  kCpu,  // counts what one CPU does; opened on each sampled CPU (of its PMU)
  kUnit  // counts a unit shared by CPUs (uncore, package energy); opened once
         // per unit on the CPU its PMU's cpumask names
};

struct ResolvedInstance {
  std::string pmu;  // sysfs PMU instance ("uncore_imc_0"); "" for the other sources
  std::string pmu_dir;
  perf_event_attr attr{};
  EventScope scope = EventScope::kCpu;
  PmuCpuSource cpu_source = PmuCpuSource::kAny;
  std::vector<int> cpus;  // where to open now; empty: every sampled CPU
  double scale = 1;
  std::string unit;  // the PMU's unit ("Joules", "MiB"); "" for plain counts
};

struct ResolvedEvent {
  std::string source;                       // "sysfs", "tracepoint", "raw", "software", "libpfm4"
  std::string canonical;                    // e.g. "msr/tsc/ type=9 config=0x0", libpfm4's string
  std::vector<ResolvedInstance> instances;  // at least one
};

class EventResolver {
 public:
  // `root` prefixes /sys (PMUs and tracefs); "/" on a live host.
  explicit EventResolver(std::string root = "/");

  // Throws EventSpecError.
  ResolvedEvent Resolve(std::string_view event) const;

  const PmuCatalog& catalog() const { return catalog_; }

  // The readable tracefs directory ("" if none; then `why` says why).
  std::string TracefsDir(std::string* why) const;
  // "subsystem:event" for every tracepoint whose name contains `pattern`
  // (case-insensitive); empty with `why` set when tracefs is unavailable.
  std::vector<std::string> ListTracepoints(std::string_view pattern, std::string* why) const;

  // The perf generic software event names this resolver knows.
  static std::vector<std::string> SoftwareEventNames();

 private:
  ResolvedEvent ResolveSysfs(const ParsedEvent& parsed, std::string_view text) const;
  // Fills `out` and returns true, or returns false with the reason in
  // `deferred` (libpfm4 may still know the name, e.g. INST_RETIRED:ANY).
  bool ResolveTracepoint(const ParsedEvent& parsed, ResolvedEvent* out,
                         std::optional<EventSpecError>* deferred) const;
  ResolvedEvent ResolveLibpfm(std::string_view text,
                              const std::optional<EventSpecError>& deferred) const;

  std::string root_;
  PmuCatalog catalog_;
};

}  // namespace pmu::collectors
