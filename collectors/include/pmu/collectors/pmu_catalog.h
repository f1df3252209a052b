// PmuCatalog: the kernel's dynamic PMUs as /sys/bus/event_source/devices
// describes them (the same files perf reads):
//   <pmu>/type                 the perf_event_attr.type to use
//   <pmu>/format/<term>        which attr bits a term fills (event_syntax.h)
//   <pmu>/events/<name>        a named event: a term list; beside it
//   <pmu>/events/<name>.scale  multiply counts by this to get .unit
//   <pmu>/events/<name>.unit   e.g. "Joules", "MiB"
//   <pmu>/cpumask              uncore-style PMUs: the CPU(s) to open on, one
//                              per package/die (the kernel moves the events
//                              on hotplug and rewrites the mask)
//   <pmu>/cpus                 hybrid and ARM core PMUs: the CPUs they cover
//
// The root is injectable (tests/data/sysfs-*); the daemon passes "/". A
// malformed file never throws here: the PMU is kept and the problem is
// recorded where it would be used (format_errors, SysfsEventAlias::error),
// so one odd file does not hide the rest of the host.
//
// Thread safety: immutable after construction; share freely.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "pmu/collectors/event_syntax.h"

namespace pmu::collectors {

struct SysfsEventAlias {
  std::string name;
  std::string text;  // the events/<name> file, trimmed
  std::vector<EventTerm> terms;
  double scale = 1;
  bool has_scale = false;
  std::string unit;   // "" when no .unit file
  std::string error;  // non-empty: the term list or scale did not parse
};

enum class PmuCpuSource {
  kAny,      // neither file: every CPU (core-scope PMU such as msr, software)
  kCpumask,  // cpumask: open on exactly these CPUs (one per unit)
  kCpus      // cpus: this PMU's CPUs (hybrid/ARM core PMU); open per CPU on them
};

struct SysfsPmu {
  std::string name;
  std::string dir;  // full path of <root>/sys/bus/event_source/devices/<name>
  uint32_t type = 0;
  std::map<std::string, FormatField> formats;
  std::map<std::string, std::string> format_errors;  // term -> why its file is unusable
  std::map<std::string, SysfsEventAlias> events;
  PmuCpuSource cpu_source = PmuCpuSource::kAny;
  std::vector<int> cpus;  // from cpumask/cpus; empty with kAny
};

class PmuCatalog {
 public:
  // Reads every PMU under <root>/sys/bus/event_source/devices. A missing
  // directory gives an empty catalogue.
  explicit PmuCatalog(std::string root = "/");

  const std::string& root() const { return root_; }
  const std::vector<SysfsPmu>& pmus() const { return pmus_; }
  const SysfsPmu* Find(std::string_view name) const;
  // The PMUs `name` denotes, as perf matches them: the PMU of that exact
  // name, else every instance "<name>_<N>" (uncore_imc -> uncore_imc_0..N),
  // ordered by N.
  std::vector<const SysfsPmu*> Match(std::string_view name) const;
  std::vector<std::string> Names() const;

 private:
  std::string root_;
  std::vector<SysfsPmu> pmus_;  // sorted by name
};

// Reads a PMU directory's cpumask or cpus file (whichever exists) now; the
// sampling pipeline calls it again after hotplug to follow the kernel.
std::vector<int> ReadPmuCpus(const std::string& pmu_dir, PmuCpuSource* source);

}  // namespace pmu::collectors
