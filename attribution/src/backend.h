// The two ways of counting per cgroup behind CgroupAttribution (internal).
//
// Thread safety: one thread (the attribution's).
#pragma once

#include <linux/perf_event.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "pmu/attribution/cgroup_discovery.h"
#include "pmu/collectors/perf_syscalls.h"

namespace pmu::attribution {

// Cumulative raw readings since a cgroup was added, summed over CPUs (the
// CPUs that went offline since included).
struct RawReading {
  uint64_t counter = 0;
  uint64_t enabled = 0;
  uint64_t running = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  // Starts counting `cgroup` (its directory is `dir`) on the online CPUs;
  // false with `error`. A cgroup counted already keeps counting.
  virtual bool Add(const CgroupEntry& cgroup, const std::string& dir, std::string* error) = 0;
  virtual void Remove(uint64_t id) = 0;
  // Follows hotplug: counts on the CPUs of `online` (a subset of the CPUs
  // the backend was made for) from now on. A CPU gone offline is read a
  // last time and its fds closed; one come online gets fresh fds (one that
  // refuses them yet is tried again at the next call). The readings stay
  // cumulative across both.
  virtual void SyncCpus(const std::vector<int>& online) = 0;
  // Once per round, before the Read()s.
  virtual void Refresh() {}
  // One reading per event of a cgroup added earlier.
  virtual void Read(uint64_t id, std::vector<RawReading>& out) = 0;
  virtual size_t open_fds() const = 0;
};

// The attrs are the attributed events; `cpus` every CPU that may be counted
// (the online ones are counted from the start); `root` is the cgroup v2
// mount, where the perf backend probes that cgroup events open at all.
std::unique_ptr<Backend> MakePerfBackend(const std::vector<perf_event_attr>& attrs,
                                         const std::vector<int>& cpus,
                                         const std::vector<int>& online, const std::string& root,
                                         collectors::PerfSyscalls& sys, std::string* error);
std::unique_ptr<Backend> MakeBpfBackend(const std::vector<perf_event_attr>& attrs,
                                        const std::vector<int>& cpus,
                                        const std::vector<int>& online, size_t max_cgroups,
                                        collectors::PerfSyscalls& sys, std::string* error);

}  // namespace pmu::attribution
