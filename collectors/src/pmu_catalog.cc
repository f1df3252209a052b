#include "pmu/collectors/pmu_catalog.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "pmu/config/config.h"

namespace pmu::collectors {
namespace {

namespace fs = std::filesystem;

bool ReadSmallFile(const fs::path& path, std::string* out) {
  std::ifstream in(path);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  while (!out->empty() && std::isspace(static_cast<unsigned char>(out->back()))) out->pop_back();
  return true;
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// "uncore_imc_3" for base "uncore_imc": the instance number, else -1.
long InstanceNumber(std::string_view pmu, std::string_view base) {
  if (pmu.size() <= base.size() + 1 || pmu.substr(0, base.size()) != base ||
      pmu[base.size()] != '_') {
    return -1;
  }
  const std::string_view n = pmu.substr(base.size() + 1);
  if (!std::all_of(n.begin(), n.end(),
                   [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
    return -1;
  }
  return std::stol(std::string(n));
}

SysfsPmu ReadPmu(const fs::path& dir) {
  SysfsPmu pmu;
  pmu.name = dir.filename().string();
  pmu.dir = dir.string();
  std::string text;
  if (ReadSmallFile(dir / "type", &text)) {
    try {
      pmu.type = static_cast<uint32_t>(std::stoul(text));
    } catch (const std::exception&) {
      pmu.type = 0;
    }
  }
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir / "format", ec)) {
    const std::string term = entry.path().filename().string();
    if (!ReadSmallFile(entry.path(), &text)) {
      pmu.format_errors[term] = entry.path().string() + ": unreadable";
      continue;
    }
    try {
      pmu.formats[term] = ParseFormatSpec(text);
    } catch (const EventSpecError& e) {
      pmu.format_errors[term] = entry.path().string() + ": " + e.what();
    }
  }
  for (const auto& entry : fs::directory_iterator(dir / "events", ec)) {
    const std::string file = entry.path().filename().string();
    if (EndsWith(file, ".scale") || EndsWith(file, ".unit") || EndsWith(file, ".per-pkg") ||
        EndsWith(file, ".snapshot")) {
      continue;
    }
    SysfsEventAlias alias;
    alias.name = file;
    if (!ReadSmallFile(entry.path(), &alias.text)) {
      alias.error = entry.path().string() + ": unreadable";
    } else {
      try {
        alias.terms = ParseTermList(alias.text);
        if (alias.terms.empty()) alias.error = entry.path().string() + ": empty term list";
      } catch (const EventSpecError& e) {
        alias.error = entry.path().string() + ": " + e.what();
      }
    }
    if (ReadSmallFile(dir / "events" / (file + ".scale"), &text)) {
      try {
        alias.scale = ParseScale(text);
        alias.has_scale = true;
      } catch (const EventSpecError& e) {
        if (alias.error.empty()) alias.error = entry.path().string() + ".scale: " + e.what();
      }
    }
    ReadSmallFile(dir / "events" / (file + ".unit"), &alias.unit);
    pmu.events.emplace(alias.name, std::move(alias));
  }
  pmu.cpus = ReadPmuCpus(pmu.dir, &pmu.cpu_source);
  return pmu;
}

}  // namespace

std::vector<int> ReadPmuCpus(const std::string& pmu_dir, PmuCpuSource* source) {
  std::string text;
  *source = PmuCpuSource::kAny;
  for (const auto& [file, kind] :
       {std::pair{"cpumask", PmuCpuSource::kCpumask}, std::pair{"cpus", PmuCpuSource::kCpus}}) {
    if (!ReadSmallFile(fs::path(pmu_dir) / file, &text)) continue;
    *source = kind;
    if (text.empty()) return {};
    try {
      return config::ParseCpuList(text);
    } catch (const std::exception&) {
      return {};
    }
  }
  return {};
}

PmuCatalog::PmuCatalog(std::string root) : root_(std::move(root)) {
  const fs::path devices = fs::path(root_) / "sys/bus/event_source/devices";
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(devices, ec)) {
    pmus_.push_back(ReadPmu(entry.path()));
  }
  std::sort(pmus_.begin(), pmus_.end(),
            [](const SysfsPmu& a, const SysfsPmu& b) { return a.name < b.name; });
}

const SysfsPmu* PmuCatalog::Find(std::string_view name) const {
  for (const SysfsPmu& p : pmus_) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

std::vector<const SysfsPmu*> PmuCatalog::Match(std::string_view name) const {
  if (const SysfsPmu* exact = Find(name)) return {exact};
  std::vector<std::pair<long, const SysfsPmu*>> instances;
  for (const SysfsPmu& p : pmus_) {
    if (long n = InstanceNumber(p.name, name); n >= 0) instances.emplace_back(n, &p);
  }
  std::sort(instances.begin(), instances.end());
  std::vector<const SysfsPmu*> out;
  for (const auto& [n, p] : instances) out.push_back(p);
  return out;
}

std::vector<std::string> PmuCatalog::Names() const {
  std::vector<std::string> out;
  for (const SysfsPmu& p : pmus_) out.push_back(p.name);
  return out;
}

}  // namespace pmu::collectors
