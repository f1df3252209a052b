#include "pmu/rseq/per_cpu_counter.h"

namespace pmu::rseq {

PerCpuCounter::PerCpuCounter(int num_cpus)
    : slots_(std::make_unique<Slot[]>(static_cast<std::size_t>(num_cpus < 1 ? 1 : num_cpus))),
      num_cpus_u_(static_cast<std::uint32_t>(num_cpus < 1 ? 1 : num_cpus)),
      num_cpus_(num_cpus < 1 ? 1 : num_cpus) {}

void PerCpuCounter::AddSlow(std::uint64_t delta, bool first_try_aborted) noexcept {
  if (struct ::rseq* area = detail::ThreadArea(); area != nullptr) {
    int attempts = 0;
    if (first_try_aborted) {
      slots_[detail::LoadCpuIdStart(area) % num_cpus_u_].aborts.fetch_add(
          1, std::memory_order_relaxed);
      attempts = 1;
    }
    for (; attempts < detail::kMaxAbortsBeforeFallback; ++attempts) {
      const std::uint32_t cpu = detail::LoadCpuIdStart(area);
      if (cpu >= num_cpus_u_) break;
      if (detail::arch::AddU64(area, cpu, &slots_[cpu].rseq_value, delta) ==
          detail::kSectionCommitted) {
        return;
      }
      slots_[cpu].aborts.fetch_add(1, std::memory_order_relaxed);
    }
  }
  Slot& slot = slots_[static_cast<std::uint32_t>(detail::FallbackCpu()) % num_cpus_u_];
  slot.fallbacks.fetch_add(1, std::memory_order_relaxed);
  slot.fallback_value.fetch_add(delta, std::memory_order_relaxed);
}

std::uint64_t PerCpuCounter::ValueOnCpu(int cpu) const noexcept {
  const Slot& slot = slots_[static_cast<std::uint32_t>(cpu) % num_cpus_u_];
  return __atomic_load_n(&slot.rseq_value, __ATOMIC_RELAXED) +
         slot.fallback_value.load(std::memory_order_relaxed);
}

std::uint64_t PerCpuCounter::Sum() const noexcept {
  std::uint64_t sum = 0;
  for (int cpu = 0; cpu < num_cpus_; ++cpu) sum += ValueOnCpu(cpu);
  return sum;
}

std::uint64_t PerCpuCounter::aborts() const noexcept {
  std::uint64_t sum = 0;
  for (std::uint32_t i = 0; i < num_cpus_u_; ++i)
    sum += slots_[i].aborts.load(std::memory_order_relaxed);
  return sum;
}

std::uint64_t PerCpuCounter::fallbacks() const noexcept {
  std::uint64_t sum = 0;
  for (std::uint32_t i = 0; i < num_cpus_u_; ++i) {
    sum += slots_[i].fallbacks.load(std::memory_order_relaxed);
  }
  return sum;
}

}  // namespace pmu::rseq
