#include "pmu/collectors/pfm.h"

#include <perfmon/pfmlib_perf_event.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>

#include "pmu/collectors/event_syntax.h"

namespace pmu::collectors {
namespace {

void EnsureInitialized() {
  static std::once_flag once;
  static int rc = PFM_SUCCESS;
  std::call_once(once, [] { rc = pfm_initialize(); });
  if (rc != PFM_SUCCESS) {
    throw std::runtime_error(std::string("libpfm4 initialisation failed: ") + pfm_strerror(rc));
  }
}

std::string Upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

// An entry libpfm4 made from a debugfs tracepoint subsystem.
bool IsDebugfsTracepoint(int pmu, const pfm_event_info_t& event) {
  return pmu == PFM_PMU_PERF_EVENT && event.desc != nullptr &&
         std::strcmp(event.desc, "tracepoint") == 0;
}

}  // namespace

EncodeResult EncodeEvent(std::string_view event) {
  EnsureInitialized();
  EncodeResult result;
  pfm_perf_encode_arg_t arg;
  std::memset(&arg, 0, sizeof(arg));
  arg.attr = &result.attr;
  arg.size = sizeof(arg);
  char* fstr = nullptr;
  arg.fstr = &fstr;
  const std::string event_string(event);
  int rc = pfm_get_os_event_encoding(event_string.c_str(), PFM_PLM0 | PFM_PLM3,
                                     PFM_OS_PERF_EVENT_EXT, &arg);
  if (rc != PFM_SUCCESS) {
    result.error = pfm_strerror(rc);
    return result;
  }
  if (fstr != nullptr) {
    result.canonical = fstr;
    std::free(fstr);  // allocated by libpfm4 with malloc
  }
  if (result.attr.type == PERF_TYPE_TRACEPOINT) {
    result = EncodeResult{};
    result.error = "a tracepoint: resolved from tracefs, not from libpfm4's copy of debugfs";
    return result;
  }
  result.attr.size = sizeof(perf_event_attr);
  result.ok = true;
  return result;
}

std::vector<EventListing> ListEvents(std::string_view pattern) {
  EnsureInitialized();
  std::vector<EventListing> out;
  for (int p = PFM_PMU_NONE; p < PFM_PMU_MAX; ++p) {
    pfm_pmu_info_t pinfo;
    std::memset(&pinfo, 0, sizeof(pinfo));
    pinfo.size = sizeof(pinfo);
    if (pfm_get_pmu_info(static_cast<pfm_pmu_t>(p), &pinfo) != PFM_SUCCESS || !pinfo.is_present) {
      continue;
    }
    for (int idx = pinfo.first_event; idx != -1; idx = pfm_get_event_next(idx)) {
      pfm_event_info_t einfo;
      std::memset(&einfo, 0, sizeof(einfo));
      einfo.size = sizeof(einfo);
      if (pfm_get_event_info(idx, PFM_OS_PERF_EVENT_EXT, &einfo) != PFM_SUCCESS ||
          IsDebugfsTracepoint(p, einfo)) {
        continue;
      }
      EventListing e{pinfo.name, std::string(pinfo.name) + "::" + einfo.name,
                     einfo.desc != nullptr ? einfo.desc : ""};
      if (auto nl = e.description.find('\n'); nl != std::string::npos) e.description.resize(nl);
      if (ContainsIgnoreCase(e.name, pattern)) out.push_back(std::move(e));
    }
  }
  return out;
}

std::string FindEventPmu(std::string_view event) {
  EnsureInitialized();
  static const std::map<std::string, std::string, std::less<>> known = [] {
    // Upper-cased "pmu::EVENT" and "EVENT" -> PMU name, over every table.
    std::map<std::string, std::string, std::less<>> names;
    for (int p = PFM_PMU_NONE; p < PFM_PMU_MAX; ++p) {
      pfm_pmu_info_t pinfo;
      std::memset(&pinfo, 0, sizeof(pinfo));
      pinfo.size = sizeof(pinfo);
      if (pfm_get_pmu_info(static_cast<pfm_pmu_t>(p), &pinfo) != PFM_SUCCESS) continue;
      for (int idx = pinfo.first_event; idx != -1; idx = pfm_get_event_next(idx)) {
        pfm_event_info_t einfo;
        std::memset(&einfo, 0, sizeof(einfo));
        einfo.size = sizeof(einfo);
        if (pfm_get_event_info(idx, PFM_OS_NONE, &einfo) != PFM_SUCCESS ||
            IsDebugfsTracepoint(p, einfo)) {
          continue;
        }
        const std::string base = Upper(einfo.name);
        names.emplace(base, pinfo.name);
        names.emplace(Upper(pinfo.name) + "::" + base, pinfo.name);
      }
    }
    return names;
  }();
  // Drop unit masks and modifiers: "skx::EVENT:UMASK:u=1" -> "SKX::EVENT".
  std::string key = Upper(event);
  const size_t pmu_sep = key.find("::");
  const size_t mods = key.find(':', pmu_sep == std::string::npos ? 0 : pmu_sep + 2);
  if (mods != std::string::npos) key.resize(mods);
  const auto it = known.find(key);
  return it == known.end() ? std::string() : it->second;
}

}  // namespace pmu::collectors
