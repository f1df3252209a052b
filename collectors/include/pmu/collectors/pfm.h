// libpfm4: event strings -> perf_event_attr, and the event catalogue.
//
// libpfm4 is initialised once per process on first use (pfm_initialize reads
// LIBPFM_FORCE_PMU at that moment, which the golden tests rely on).
//
// libpfm4 also copies the tracepoints of a mounted debugfs into its "perf"
// PMU, read from the live /sys/kernel/debug/tracing whatever root a caller
// works under. Tracepoints are resolved from tracefs (EventResolver), so
// these functions leave that copy out: EncodeEvent does not encode it,
// ListEvents does not list it, FindEventPmu does not know it.
//
// Thread safety: EncodeEvent and ListEvents may be called from any thread
// after the first call has returned; the daemon calls them only at start-up
// and reload.
#pragma once

#include <linux/perf_event.h>

#include <string>
#include <string_view>
#include <vector>

namespace pmu::collectors {

struct EncodeResult {
  bool ok = false;
  perf_event_attr attr{};  // valid when ok; size set, counting mode
  std::string canonical;   // libpfm4's fully qualified string, e.g.
                           // "perf::PERF_COUNT_HW_CPU_CYCLES:u=1:k=1..."
  std::string error;       // when !ok: libpfm4's reason
};

// Encodes a libpfm4 event string for counting. Privilege levels are user and
// kernel (PFM_PLM0|PFM_PLM3) unless the string sets them with modifiers
// (":u", ":k").
EncodeResult EncodeEvent(std::string_view event);

struct EventListing {
  std::string pmu;          // libpfm4 PMU name, e.g. "perf", "icl"
  std::string name;         // "pmu::event"
  std::string description;  // first line of libpfm4's description
};

// Events of every PMU libpfm4 considers present on this host (the perf
// generic PMUs always are), filtered by case-insensitive substring `pattern`
// ("" = all).
std::vector<EventListing> ListEvents(std::string_view pattern);

// The libpfm4 PMU whose tables define `event` ("skx::UNC_M_CAS_COUNT:RD",
// "INST_RETIRED:ANY_P", case-insensitive), whether or not that PMU is present
// on this host; "" when no table defines it.
std::string FindEventPmu(std::string_view event);

}  // namespace pmu::collectors
