#include "pmu/collectors/topology.h"

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "pmu/config/config.h"

namespace pmu::collectors {

std::vector<int> ReadCpuList(const std::string& root, const std::string& which) {
  std::string path = root;
  if (!path.empty() && path.back() == '/') path.pop_back();
  path += "/sys/devices/system/cpu/" + which;
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::string text;
  std::getline(in, text);
  try {
    return config::ParseCpuList(text);
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(path + ": malformed CPU list '" + text + "': " + e.what());
  }
}

std::map<int, CpuLocation> ReadCpuLocations(const std::string& root, const std::vector<int>& cpus) {
  std::string base = root;
  if (!base.empty() && base.back() == '/') base.pop_back();
  std::map<int, CpuLocation> out;
  for (int cpu : cpus) {
    const std::string dir =
        base + "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
    CpuLocation loc;
    std::ifstream package(dir + "physical_package_id");
    if (!(package >> loc.package)) continue;
    std::ifstream die(dir + "die_id");
    if (!(die >> loc.die)) loc.die = 0;
    out[cpu] = loc;
  }
  return out;
}

}  // namespace pmu::collectors
