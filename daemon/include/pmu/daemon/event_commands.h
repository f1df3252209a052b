// The event-related commands of the CLI: --list-events and the per-event
// lines of --check-config, and the check every loaded configuration passes
// (start-up, --check-config, SIGHUP) so that all three resolve events
// exactly as the pipeline does.
//
// Thread safety: main thread only (they read sysfs/tracefs and probe perf).
#pragma once

#include <ostream>
#include <string>

#include "pmu/collectors/event_plan.h"
#include "pmu/config/config.h"

namespace pmu::daemon {

// Throws config::ConfigError (file:line:column, key, nearest names) for an
// event no encoder accepts on this host's resolver; see
// collectors::ValidateEventNames.
void ValidateEvents(const config::Config& config);

// --list-events [PATTERN]: libpfm4 names, sysfs PMU events (scale, unit,
// where they count) and tracepoints, each marked '*' when a CPU-wide open
// succeeds here. Returns the exit status.
int ListEvents(const std::string& pattern, std::ostream& out);

// One line per configured event: countable here / not countable on this
// host (which PMU, why). Unknown names never reach here (ValidateEvents).
void PrintEventLines(const config::Config& config, const collectors::EventPlan& plan,
                     std::ostream& out);

}  // namespace pmu::daemon
