#include "pmu/collectors/event_source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "pmu/collectors/pfm.h"

namespace pmu::collectors {
namespace {

namespace fs = std::filesystem;
using Kind = EventSpecError::Kind;

struct SoftwareEvent {
  const char* name;
  uint64_t config;
};
// tools/perf/util/parse-events.c event_symbols_sw, with perf's aliases.
constexpr SoftwareEvent kSoftware[] = {
    {"cpu-clock", PERF_COUNT_SW_CPU_CLOCK},
    {"task-clock", PERF_COUNT_SW_TASK_CLOCK},
    {"page-faults", PERF_COUNT_SW_PAGE_FAULTS},
    {"faults", PERF_COUNT_SW_PAGE_FAULTS},
    {"context-switches", PERF_COUNT_SW_CONTEXT_SWITCHES},
    {"cs", PERF_COUNT_SW_CONTEXT_SWITCHES},
    {"cpu-migrations", PERF_COUNT_SW_CPU_MIGRATIONS},
    {"migrations", PERF_COUNT_SW_CPU_MIGRATIONS},
    {"minor-faults", PERF_COUNT_SW_PAGE_FAULTS_MIN},
    {"major-faults", PERF_COUNT_SW_PAGE_FAULTS_MAJ},
    {"alignment-faults", PERF_COUNT_SW_ALIGNMENT_FAULTS},
    {"emulation-faults", PERF_COUNT_SW_EMULATION_FAULTS},
    {"dummy", PERF_COUNT_SW_DUMMY},
    {"bpf-output", PERF_COUNT_SW_BPF_OUTPUT},
    {"cgroup-switches", 11 /* PERF_COUNT_SW_CGROUP_SWITCHES, Linux 5.13 */},
};

std::string Quote(std::string_view s) { return "'" + std::string(s) + "'"; }

std::string Hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string Join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

std::string NearestSuffix(const std::vector<std::string>& nearest) {
  return nearest.empty() ? "" : " (nearest: " + Join(nearest) + ")";
}

perf_event_attr BaseAttr(uint32_t type, uint64_t config) {
  perf_event_attr attr{};
  attr.size = sizeof(attr);
  attr.type = type;
  attr.config = config;
  return attr;
}

void ApplyModifiers(const Modifiers& m, perf_event_attr* attr) {
  if (!m.any) return;
  attr->exclude_user = m.user ? 0 : 1;
  attr->exclude_kernel = m.kernel ? 0 : 1;
  attr->exclude_hv = m.hv ? 0 : 1;
}

bool ReadLine(const fs::path& path, std::string* out) {
  std::ifstream in(path);
  return static_cast<bool>(std::getline(in, *out));
}

std::vector<std::string> DirNames(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.is_directory(ec)) out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

EventResolver::EventResolver(std::string root) : root_(std::move(root)), catalog_(root_) {}

std::vector<std::string> EventResolver::SoftwareEventNames() {
  std::vector<std::string> out;
  for (const auto& sw : kSoftware) out.push_back(sw.name);
  return out;
}

ResolvedEvent EventResolver::Resolve(std::string_view event) const {
  const ParsedEvent parsed = ParseEventString(event);
  switch (parsed.kind) {
    case ParsedEvent::Kind::kSysfs:
      return ResolveSysfs(parsed, event);
    case ParsedEvent::Kind::kRaw: {
      ResolvedEvent out;
      out.source = "raw";
      ResolvedInstance inst;
      inst.attr = BaseAttr(PERF_TYPE_RAW, parsed.raw);
      ApplyModifiers(parsed.modifiers, &inst.attr);
      out.canonical = "raw config=" + Hex(parsed.raw);
      out.instances.push_back(std::move(inst));
      return out;
    }
    case ParsedEvent::Kind::kTracepoint: {
      ResolvedEvent out;
      std::optional<EventSpecError> deferred;
      if (ResolveTracepoint(parsed, &out, &deferred)) return out;
      return ResolveLibpfm(event, deferred);
    }
    case ParsedEvent::Kind::kOther:
      break;
  }
  // Software names, with optional ":mods".
  const std::string_view trimmed = [&] {
    std::string_view s = event;
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    return s;
  }();
  const size_t colon = trimmed.find(':');
  const std::string_view base = trimmed.substr(0, colon);
  for (const auto& sw : kSoftware) {
    if (base != sw.name) continue;
    ResolvedEvent out;
    out.source = "software";
    ResolvedInstance inst;
    inst.attr = BaseAttr(PERF_TYPE_SOFTWARE, sw.config);
    if (colon != std::string_view::npos) {
      // The modifier parser of the sysfs syntax, through a dummy event.
      const ParsedEvent mods = ParseEventString("x//" + std::string(trimmed.substr(colon + 1)));
      ApplyModifiers(mods.modifiers, &inst.attr);
    }
    out.canonical = "software config=" + std::to_string(sw.config);
    out.instances.push_back(std::move(inst));
    return out;
  }
  return ResolveLibpfm(event, std::nullopt);
}

ResolvedEvent EventResolver::ResolveSysfs(const ParsedEvent& parsed, std::string_view text) const {
  const std::vector<const SysfsPmu*> pmus = catalog_.Match(parsed.pmu);
  if (pmus.empty()) {
    const auto nearest = NearestNames(parsed.pmu, catalog_.Names());
    throw EventSpecError(Kind::kUnknownPmu,
                         "no PMU " + Quote(parsed.pmu) +
                             " on this host (not in /sys/bus/event_source/devices)" +
                             NearestSuffix(nearest),
                         nearest);
  }
  ResolvedEvent out;
  out.source = "sysfs";
  for (const SysfsPmu* pmu : pmus) {
    if (pmu->type == 0 && pmu->name != "cpu") {
      // type 0 is PERF_TYPE_HARDWARE; only a missing/unreadable file gives it.
      throw EventSpecError(Kind::kNotCountableHere,
                           "PMU " + Quote(pmu->name) + " has no readable type file");
    }
    // A bare word that is no format term names an alias (events/<name>).
    const SysfsEventAlias* alias = nullptr;
    std::vector<EventTerm> terms;
    for (const EventTerm& term : parsed.terms) {
      if (term.bare && pmu->formats.count(term.name) == 0 &&
          pmu->format_errors.count(term.name) == 0) {
        const auto it = pmu->events.find(term.name);
        if (it == pmu->events.end() || alias != nullptr) {
          std::vector<std::string> known;
          for (const auto& [name, a] : pmu->events) known.push_back(name);
          for (const auto& [name, f] : pmu->formats) known.push_back(name);
          const auto nearest = NearestNames(term.name, known);
          throw EventSpecError(
              alias != nullptr ? Kind::kSyntax : Kind::kUnknownAlias,
              alias != nullptr ? "event " + Quote(text) + " names two events of " + Quote(pmu->name)
                               : "PMU " + Quote(pmu->name) + " has no event or term " +
                                     Quote(term.name) + NearestSuffix(nearest),
              nearest);
        }
        alias = &it->second;
        if (!alias->error.empty()) {
          throw EventSpecError(Kind::kNotCountableHere,
                               "PMU " + Quote(pmu->name) + " event " + Quote(term.name) +
                                   ": unusable sysfs file: " + alias->error);
        }
        continue;
      }
      terms.push_back(term);
    }
    // The alias's terms first; explicit ones override them ("?" ones too).
    std::vector<EventTerm> all = alias != nullptr ? alias->terms : std::vector<EventTerm>{};
    for (const EventTerm& t : terms) {
      auto same = std::find_if(all.begin(), all.end(),
                               [&](const EventTerm& a) { return a.name == t.name; });
      if (same != all.end()) {
        *same = t;
      } else {
        all.push_back(t);
      }
    }
    for (const EventTerm& t : all) {
      if (const auto bad = pmu->format_errors.find(t.name); bad != pmu->format_errors.end()) {
        throw EventSpecError(Kind::kNotCountableHere, "PMU " + Quote(pmu->name) + " term " +
                                                          Quote(t.name) +
                                                          ": unusable format file: " + bad->second);
      }
    }
    const EncodedConfig enc = EncodeTerms(all, pmu->formats, pmu->name);
    ResolvedInstance inst;
    inst.pmu = pmu->name;
    inst.pmu_dir = pmu->dir;
    inst.attr = BaseAttr(pmu->type, enc.config[0]);
    inst.attr.config1 = enc.config[1];
    inst.attr.config2 = enc.config[2];
    ApplyModifiers(parsed.modifiers, &inst.attr);
    inst.cpu_source = pmu->cpu_source;
    inst.cpus = pmu->cpus;
    inst.scope = pmu->cpu_source == PmuCpuSource::kCpumask ? EventScope::kUnit : EventScope::kCpu;
    if (alias != nullptr) {
      inst.scale = alias->scale;
      inst.unit = alias->unit;
    }
    if (out.canonical.empty()) {
      out.canonical = parsed.pmu + "/" + (alias ? alias->name : "") +
                      "/ config=" + Hex(enc.config[0]) + " config1=" + Hex(enc.config[1]) +
                      " config2=" + Hex(enc.config[2]);
    }
    out.instances.push_back(std::move(inst));
  }
  return out;
}

std::string EventResolver::TracefsDir(std::string* why) const {
  const fs::path candidates[] = {fs::path(root_) / "sys/kernel/tracing",
                                 fs::path(root_) / "sys/kernel/debug/tracing"};
  std::string unreadable;
  for (const fs::path& dir : candidates) {
    const fs::path events = dir / "events";
    // Effective ids and capabilities (CAP_DAC_READ_SEARCH), as open() will
    // see them: access() would drop capabilities for a non-root user.
    struct stat st {};
    if (stat(events.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) ||
        faccessat(AT_FDCWD, events.c_str(), R_OK | X_OK, AT_EACCESS) != 0) {
      if (errno == EACCES) {
        unreadable = events.string() + " is not readable (" + std::strerror(errno) + ")";
      }
      continue;
    }
    return dir.string();
  }
  if (why != nullptr) {
    *why = !unreadable.empty()
               ? "tracefs: " + unreadable +
                     "; the exporter needs read access: run as root or add CAP_DAC_READ_SEARCH "
                     "(README: Event syntax, systemd unit)"
               : "tracefs is not mounted at " + candidates[0].string() + " or " +
                     candidates[1].string() + " (mount -t tracefs nodev /sys/kernel/tracing)";
  }
  return "";
}

bool EventResolver::ResolveTracepoint(const ParsedEvent& parsed, ResolvedEvent* out,
                                      std::optional<EventSpecError>* deferred) const {
  std::string why;
  const std::string dir = TracefsDir(&why);
  if (dir.empty()) {
    deferred->emplace(Kind::kTracefsMissing,
                      "tracepoint " + Quote(parsed.subsystem + ":" + parsed.event) + ": " + why);
    return false;
  }
  const fs::path events = fs::path(dir) / "events";
  const fs::path sub = events / parsed.subsystem;
  std::error_code ec;
  if (!fs::is_directory(sub, ec)) {
    const auto nearest = NearestNames(parsed.subsystem, DirNames(events));
    deferred->emplace(Kind::kNotCountableHere,
                      "no tracepoint subsystem " + Quote(parsed.subsystem) +
                          " in this kernel (a module not loaded, or another kernel)" +
                          NearestSuffix(nearest),
                      nearest);
    return false;
  }
  std::string id_text;
  if (!ReadLine(sub / parsed.event / "id", &id_text)) {
    std::vector<std::string> known;
    for (const auto& name : DirNames(sub)) known.push_back(parsed.subsystem + ":" + name);
    const auto nearest = NearestNames(parsed.subsystem + ":" + parsed.event, known);
    const bool exists = fs::is_directory(sub / parsed.event, ec);
    deferred->emplace(exists ? Kind::kNotCountableHere : Kind::kUnknownEvent,
                      exists ? "tracepoint " + Quote(parsed.subsystem + ":" + parsed.event) +
                                   ": cannot read its id in " + (sub / parsed.event).string()
                             : "no tracepoint " + Quote(parsed.event) + " in subsystem " +
                                   Quote(parsed.subsystem) + NearestSuffix(nearest),
                      nearest);
    return false;
  }
  uint64_t id = 0;
  try {
    id = std::stoull(id_text);
  } catch (const std::exception&) {
    deferred->emplace(Kind::kNotCountableHere, "tracepoint " +
                                                   Quote(parsed.subsystem + ":" + parsed.event) +
                                                   ": malformed id " + Quote(id_text));
    return false;
  }
  out->source = "tracepoint";
  out->canonical = "tracepoint id=" + std::to_string(id);
  ResolvedInstance inst;
  inst.attr = BaseAttr(PERF_TYPE_TRACEPOINT, id);
  out->instances.push_back(std::move(inst));
  return true;
}

ResolvedEvent EventResolver::ResolveLibpfm(std::string_view text,
                                           const std::optional<EventSpecError>& deferred) const {
  EncodeResult enc = EncodeEvent(text);
  if (enc.ok) {
    ResolvedEvent out;
    out.source = "libpfm4";
    out.canonical = enc.canonical;
    ResolvedInstance inst;
    inst.attr = enc.attr;
    out.instances.push_back(std::move(inst));
    return out;
  }
  if (const std::string pmu = FindEventPmu(text); !pmu.empty()) {
    throw EventSpecError(Kind::kNotCountableHere,
                         "libpfm4 event " + Quote(text) + " belongs to PMU " + Quote(pmu) +
                             ", which this host does not have (" + enc.error + ")");
  }
  if (deferred) throw *deferred;  // it looked like a tracepoint, and is no libpfm4 name
  std::vector<std::string> known = SoftwareEventNames();
  // perf's generic hardware names, which libpfm4 accepts as aliases.
  for (const char* hw : {"cycles", "cpu-cycles", "instructions", "cache-references", "cache-misses",
                         "branches", "branch-instructions", "branch-misses", "bus-cycles",
                         "ref-cycles", "stalled-cycles-frontend", "stalled-cycles-backend"}) {
    known.emplace_back(hw);
  }
  for (const auto& e : ListEvents("")) {
    known.push_back(e.name);
    if (const size_t sep = e.name.find("::"); sep != std::string::npos) {
      known.push_back(e.name.substr(sep + 2));
    }
  }
  for (const SysfsPmu& pmu : catalog_.pmus()) {
    for (const auto& [name, alias] : pmu.events) known.push_back(pmu.name + "/" + name + "/");
  }
  const auto nearest = NearestNames(text, known);
  throw EventSpecError(Kind::kUnknownEvent,
                       "unknown event " + Quote(text) +
                           ": not a sysfs PMU event (pmu/.../), tracepoint (subsystem:event), "
                           "raw event (rNNNN), perf software event or libpfm4 event (libpfm4: " +
                           enc.error + ")" + NearestSuffix(nearest),
                       nearest);
}

std::vector<std::string> EventResolver::ListTracepoints(std::string_view pattern,
                                                        std::string* why) const {
  std::vector<std::string> out;
  const std::string dir = TracefsDir(why);
  if (dir.empty()) return out;
  const fs::path events = fs::path(dir) / "events";
  for (const std::string& sub : DirNames(events)) {
    for (const std::string& ev : DirNames(events / sub)) {
      std::string name = sub + ":" + ev;
      if (ContainsIgnoreCase(name, pattern)) out.push_back(std::move(name));
    }
  }
  return out;
}

}  // namespace pmu::collectors
