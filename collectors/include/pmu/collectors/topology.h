// CPU topology from sysfs. The root directory is injectable so tests can use
// fake trees (tests/data/); the daemon passes "/".
//
// Thread safety: free functions, reentrant.
#pragma once

#include <map>
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

struct CpuLocation {
  int package = -1;  // physical_package_id
  int die = 0;       // die_id (0 where the kernel has no die_id file)
  bool operator==(const CpuLocation&) const = default;
};

// Package and die of every CPU in `cpus` whose
// <root>/sys/devices/system/cpu/cpuN/topology is readable (offline CPUs may
// have none); never throws.
std::map<int, CpuLocation> ReadCpuLocations(const std::string& root, const std::vector<int>& cpus);

}  // namespace pmu::collectors
