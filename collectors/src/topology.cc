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

}  // namespace pmu::collectors
