// PerCpuCounter: a counter that any thread (or signal handler) increments on
// the slot of the CPU it runs on, without locks or atomic read-modify-write.
//
// Guarantees: every Add() is counted exactly once. Sum() returns a value
// between the sum of Adds that completed before the call and the sum of all
// Adds that started before it returns. Slots sit on separate cache lines.
//
// Fast path (kGlibc/kOwn): one rseq section (AddU64 in arch/*.h) on slot
// cpu_id_start. A thread that cannot run sections (kUnavailable, or
// registration failed), or that was aborted kMaxAbortsBeforeFallback times
// in a row, adds with fetch_add to a separate atomic field of the slot of
// sched_getcpu(), so the two paths never write the same word.
//
// Thread safety: Add() from any thread and from signal handlers; Sum() and
// the statistics from any thread. Construct and destroy while no thread
// uses the counter.
#ifndef PMU_RSEQ_PER_CPU_COUNTER_H_
#define PMU_RSEQ_PER_CPU_COUNTER_H_

#include <atomic>
#include <cstdint>
#include <memory>

#include "pmu/rseq/abi.h"
#include "pmu/rseq/arch.h"

namespace pmu::rseq {

class PerCpuCounter {
 public:
  // REQUIRES: num_cpus >= 1; every CPU index the kernel reports is below it
  // (indices at or above fall back to slot index % num_cpus, atomically).
  explicit PerCpuCounter(int num_cpus = PossibleCpuCount());

  PerCpuCounter(const PerCpuCounter&) = delete;
  PerCpuCounter& operator=(const PerCpuCounter&) = delete;

  void Add(std::uint64_t delta = 1) noexcept;
  std::uint64_t Sum() const noexcept;
  std::uint64_t ValueOnCpu(int cpu) const noexcept;

  int num_cpus() const noexcept { return num_cpus_; }
  // Sections that were aborted (preemption, signal, migration) and retried.
  std::uint64_t aborts() const noexcept;
  // Adds that took the atomic fallback path.
  std::uint64_t fallbacks() const noexcept;

 private:
  struct alignas(detail::kCacheLine) Slot {
    std::uint64_t rseq_value = 0;  // written only by sections on this CPU
    std::atomic<std::uint64_t> fallback_value{0};
    std::atomic<std::uint64_t> aborts{0};
    std::atomic<std::uint64_t> fallbacks{0};
  };
  static_assert(sizeof(Slot) == detail::kCacheLine);

  void AddSlow(std::uint64_t delta, bool first_try_aborted) noexcept;

  std::unique_ptr<Slot[]> slots_;
  std::uint32_t num_cpus_u_;
  int num_cpus_;
};

inline void PerCpuCounter::Add(std::uint64_t delta) noexcept {
  struct ::rseq* area = detail::ThreadArea();
  if (__builtin_expect(area != nullptr, 1)) {
    const std::uint32_t cpu = detail::LoadCpuIdStart(area);
    if (__builtin_expect(cpu < num_cpus_u_, 1) &&
        detail::arch::AddU64(area, cpu, &slots_[cpu].rseq_value, delta) ==
            detail::kSectionCommitted) {
      return;
    }
  }
  AddSlow(delta, area != nullptr);
}

}  // namespace pmu::rseq

#endif  // PMU_RSEQ_PER_CPU_COUNTER_H_
