// Pure parsers for the event syntaxes perf accepts beside libpfm4 names.
//
// Every function here takes a string and returns a value or throws
// EventSpecError; none reads a file or the host, so a fuzzer can call them
// directly (tests/fuzz and the hostile-input harness):
//   ParseFormatSpec   a sysfs `format/<term>` file: "config:0-7",
//                     "config1:1,6-10,44", "config2:0-63"
//   ParseTermList     an `events/<name>` file or the terms between the
//                     slashes of `pmu/.../`: "event=0x3c,umask=1,edge"
//                     (a bare term means 1; "?" marks a value the user must
//                     supply)
//   ParseEventString  a configured event name, classified: sysfs PMU
//                     (`pmu/terms/mods`, optionally `:mods`), tracepoint
//                     (`subsystem:event`), raw (`rNNNN`), or other (left to
//                     the perf software names and libpfm4)
//   EncodeTerms       terms into config/config1/config2 through the formats,
//                     refusing unknown terms and values too wide for a field
//   ParseScale        an `events/<name>.scale` file ("2.3283064365386962890625e-10")
//
// Thread safety: reentrant.
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace pmu::collectors {

// Why an event string could not become a perf_event_attr here.
class EventSpecError : public std::runtime_error {
 public:
  enum class Kind {
    kSyntax,           // malformed text (configuration error)
    kUnknownPmu,       // no such PMU on this host (not countable here)
    kUnknownTerm,      // the PMU has no such format term (configuration error)
    kUnknownAlias,     // the PMU has no such named event (configuration error)
    kValueTooWide,     // a value does not fit its format field (configuration error)
    kTracefsMissing,   // tracefs not mounted or not readable (not countable here)
    kUnknownEvent,     // no encoder knows the name (configuration error)
    kNotCountableHere  // known, but for hardware or a kernel this host lacks
  };
  EventSpecError(Kind kind, std::string message, std::vector<std::string> nearest = {})
      : std::runtime_error(message), kind_(kind), nearest_(std::move(nearest)) {}

  Kind kind() const { return kind_; }
  // Known names within a small edit distance, best first (may be empty).
  const std::vector<std::string>& nearest() const { return nearest_; }
  // True for the kinds that make a configuration invalid everywhere; the
  // others mean "not countable on this host" and keep a fleet config valid.
  bool IsConfigError() const {
    return kind_ == Kind::kSyntax || kind_ == Kind::kUnknownTerm || kind_ == Kind::kUnknownAlias ||
           kind_ == Kind::kValueTooWide || kind_ == Kind::kUnknownEvent;
  }

 private:
  Kind kind_;
  std::vector<std::string> nearest_;
};

// Which attr word a format term fills and which bits of it, low to high.
struct FormatField {
  int word = 0;                             // 0: config, 1: config1, 2: config2
  std::vector<std::pair<int, int>> ranges;  // inclusive [lo, hi] bit ranges, as written
  int Width() const;
  bool operator==(const FormatField&) const = default;
};

FormatField ParseFormatSpec(std::string_view text);

struct EventTerm {
  std::string name;
  uint64_t value = 1;
  bool user_supplied = false;  // "?" in a sysfs alias: the user must give the value
  bool bare = false;           // written without "=value" (a flag term, or an alias name)
  bool operator==(const EventTerm&) const = default;
};

std::vector<EventTerm> ParseTermList(std::string_view text);

// Privilege modifiers of perf: u (user), k (kernel), h (hypervisor); also
// perf's G/H (guest/host), accepted and ignored.
struct Modifiers {
  bool any = false;  // at least one of u/k/h given: count only those
  bool user = false;
  bool kernel = false;
  bool hv = false;
};

struct ParsedEvent {
  enum class Kind { kSysfs, kTracepoint, kRaw, kOther };
  Kind kind = Kind::kOther;
  std::string pmu;               // kSysfs
  std::vector<EventTerm> terms;  // kSysfs: as written; a bare one may name an alias
  std::string subsystem, event;  // kTracepoint
  uint64_t raw = 0;              // kRaw
  Modifiers modifiers;           // kSysfs, kRaw
};

ParsedEvent ParseEventString(std::string_view text);

struct EncodedConfig {
  uint64_t config[3] = {0, 0, 0};
};

// Applies `terms` in order through `formats` (term name -> field). The
// pseudo-terms "config", "config1", "config2" set whole words. A term with
// user_supplied left unresolved is an error.
EncodedConfig EncodeTerms(const std::vector<EventTerm>& terms,
                          const std::map<std::string, FormatField>& formats, std::string_view pmu);

double ParseScale(std::string_view text);

// `needle` occurs in `haystack`, ASCII case ignored (list-events patterns).
bool ContainsIgnoreCase(std::string_view haystack, std::string_view needle);

// Damerau-free Levenshtein distance (for "nearest known names").
size_t EditDistance(std::string_view a, std::string_view b);
// Up to `limit` of `known` within distance max(2, |name|/3), closest first.
std::vector<std::string> NearestNames(std::string_view name, const std::vector<std::string>& known,
                                      size_t limit = 3);

}  // namespace pmu::collectors
