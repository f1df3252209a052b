// The event syntax parsers (collectors/event_syntax.h): perf's event
// strings, sysfs format specs, term lists, scales, the encoding of terms
// through formats, and the nearest-name suggestion. The input is up to four
// lines: an event string, a format spec, a term list, a scale. Each parser
// either returns or throws EventSpecError; anything else is a bug.
#include "pmu/collectors/event_syntax.h"

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace {

using pmu::collectors::EventSpecError;

std::vector<std::string_view> Lines(std::string_view text, size_t max) {
  std::vector<std::string_view> lines;
  while (lines.size() + 1 < max) {
    const size_t nl = text.find('\n');
    if (nl == std::string_view::npos) break;
    lines.push_back(text.substr(0, nl));
    text.remove_prefix(nl + 1);
  }
  lines.push_back(text);
  lines.resize(max);
  return lines;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto lines = Lines(text, 4);
  std::map<std::string, pmu::collectors::FormatField> formats;
  std::vector<pmu::collectors::EventTerm> terms;
  try {
    formats["event"] = pmu::collectors::ParseFormatSpec(lines[1]);
  } catch (const EventSpecError&) {
  }
  try {
    terms = pmu::collectors::ParseTermList(lines[2]);
  } catch (const EventSpecError&) {
  }
  try {
    const auto parsed = pmu::collectors::ParseEventString(lines[0]);
    terms.insert(terms.end(), parsed.terms.begin(), parsed.terms.end());
  } catch (const EventSpecError&) {
  }
  try {
    pmu::collectors::EncodeTerms(terms, formats, "fuzz");
  } catch (const EventSpecError&) {
  }
  try {
    pmu::collectors::ParseScale(lines[3]);
  } catch (const EventSpecError&) {
  }
  pmu::collectors::NearestNames(
      lines[0], {"cycles", "instructions", "sched:sched_switch", "power/energy-pkg/", "msr/tsc/"});
  return 0;
}
