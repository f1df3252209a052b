// Torture scenarios shared by the in-process tests and the child processes
// (re-executed with GLIBC_TUNABLES, under a seccomp filter, or forked).
#ifndef PMU_TESTS_RSEQ_TORTURE_H_
#define PMU_TESTS_RSEQ_TORTURE_H_

#include <cstdint>
#include <string>

namespace pmu::rseq::torture {

struct Options {
  double seconds = 2.0;
  int threads = 0;      // 0: 6 x nproc
  bool inject = true;   // delay loops inside the sections (hook builds)
  bool signals = true;  // a signaller thread + raise() every Nth op
};

struct Report {
  bool ok = true;
  std::string message;  // first failure, or a summary line
  std::uint64_t operations = 0;
  std::uint64_t aborts = 0;
  std::uint64_t fallbacks = 0;
  std::uint64_t handler_operations = 0;
};

// Exact totals of PerCpuCounter under yield/signal/nanosleep/injection.
Report RunCounter(const Options& options);
// Per-producer sequence numbers through PerCpuRing: each pushed record
// drained exactly once, in per-(producer, ring) order, never torn.
Report RunRing(const Options& options);
// Counter-read section on fake pages under a writer flipping lock, index,
// offset and times: committed reads are never torn and never go backwards.
Report RunCounterRead(const Options& options);
// Two threads pinned to one CPU: aborts must happen and totals stay exact.
Report RunSameCpuPreemption(const Options& options);

// Scenario seconds: PMU_RSEQ_TORTURE_SECONDS overrides `fallback`.
double ScenarioSeconds(double fallback);

}  // namespace pmu::rseq::torture

#endif  // PMU_TESTS_RSEQ_TORTURE_H_
