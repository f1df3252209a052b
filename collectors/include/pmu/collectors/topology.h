// CPU topology from sysfs. The root directory is injectable so tests can use
// fake trees (tests/data/); the daemon passes "/".
//
// Thread safety: free functions, reentrant.
#pragma once

#include <string>
#include <vector>

namespace pmu::collectors {

// Reads <root>/sys/devices/system/cpu/<which> ("online", "possible",
// "present") and returns the CPU numbers, sorted. Throws std::runtime_error
// naming the path when the file is missing or malformed.
std::vector<int> ReadCpuList(const std::string& root, const std::string& which);

inline std::vector<int> OnlineCpus(const std::string& root = "/") {
  return ReadCpuList(root, "online");
}
inline std::vector<int> PossibleCpus(const std::string& root = "/") {
  return ReadCpuList(root, "possible");
}

}  // namespace pmu::collectors
