#include "pmu/rseq/per_cpu_ring.h"

#include <cstring>
#include <new>
#include <stdexcept>

#include "pmu/rseq/membarrier.h"

namespace pmu::rseq::detail {
namespace {

constexpr std::align_val_t kAlign{kCacheLine};

inline void CpuRelax() noexcept {
#if defined(__x86_64__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

}  // namespace

RingCore::RingCore(int num_cpus, std::size_t capacity, std::size_t stride)
    : drops(num_cpus < 1 ? 1 : num_cpus),
      aborts(num_cpus < 1 ? 1 : num_cpus),
      fallbacks(num_cpus < 1 ? 1 : num_cpus),
      num_cpus_(static_cast<std::uint32_t>(num_cpus)),
      capacity_(capacity),
      stride_(stride),
      controls_(nullptr) {
  if (num_cpus < 1) throw std::invalid_argument("PerCpuRing: num_cpus must be >= 1");
  if (capacity < 2 || (capacity & (capacity - 1)) != 0) {
    throw std::invalid_argument("PerCpuRing: capacity must be a power of two >= 2");
  }
  controls_ = static_cast<RingControl*>(::operator new(sizeof(RingControl) * num_cpus_, kAlign));
  for (std::uint32_t cpu = 0; cpu < num_cpus_; ++cpu) {
    RingControl* c = new (&controls_[cpu]) RingControl{};
    c->mask = capacity - 1;
    c->buffer = static_cast<unsigned char*>(::operator new(capacity* stride, kAlign));
    std::memset(c->buffer, 0, capacity * stride);
  }
}

RingCore::~RingCore() {
  for (std::uint32_t cpu = 0; cpu < num_cpus_; ++cpu) {
    ::operator delete(controls_[cpu].buffer, kAlign);
  }
  ::operator delete(controls_, kAlign);
}

bool RingCore::TryLock(std::uint32_t cpu, int spins) noexcept {
  std::uint64_t* lock = &controls_[cpu].lock;
  for (int i = 0; i <= spins; ++i) {
    std::uint64_t expected = 0;
    if (__atomic_load_n(lock, __ATOMIC_RELAXED) == 0 &&
        __atomic_compare_exchange_n(lock, &expected, 1, false, __ATOMIC_ACQUIRE,
                                    __ATOMIC_RELAXED)) {
      return true;
    }
    CpuRelax();
  }
  return false;
}

void RingCore::Unlock(std::uint32_t cpu) noexcept {
  __atomic_store_n(&controls_[cpu].lock, 0, __ATOMIC_RELEASE);
}

PushStatus RingCore::PushLocked(std::uint32_t cpu, const void* record, std::size_t size,
                                int lock_spins) noexcept {
  if (!TryLock(cpu, lock_spins)) return PushStatus::kContended;
  // In an rseq mode a section on `cpu` may have read lock == 0 just before we
  // took it: wait it out (it aborts or commits) before touching head.
  if (CurrentMode() != Mode::kUnavailable && !QuiesceCpu(static_cast<int>(cpu))) {
    Unlock(cpu);
    return PushStatus::kContended;
  }
  RingControl& c = controls_[cpu];
  const std::uint64_t head = c.head;
  const std::uint64_t tail = __atomic_load_n(&c.tail, __ATOMIC_ACQUIRE);
  PushStatus status = PushStatus::kDropped;
  if (head - tail <= c.mask) {
    std::memcpy(c.buffer + (head & c.mask) * stride_, record, size);
    TsanRelease(&c.head);
    __atomic_store_n(&c.head, head + 1, __ATOMIC_RELEASE);
    status = PushStatus::kPushed;
  }
  Unlock(cpu);
  if (status == PushStatus::kDropped) drops.Add(1);
  fallbacks.Add(1);
  return status;
}

PushResult RingCore::PushFallbackAnyCpu(const void* record, std::size_t size) noexcept {
  const auto first = static_cast<std::uint32_t>(FallbackCpu()) % num_cpus_;
  // One pass with a short wait per ring; a lock can only be held for a
  // bounded time unless its holder is the very thread we interrupted, and
  // that thread holds at most one lock.
  for (int round = 0; round < 2; ++round) {
    for (std::uint32_t i = 0; i < num_cpus_; ++i) {
      const std::uint32_t cpu = (first + i) % num_cpus_;
      const PushStatus s = PushLocked(cpu, record, size, round == 0 ? 100 : 100000);
      if (s != PushStatus::kContended) return {s, static_cast<int>(cpu)};
    }
  }
  return {PushStatus::kContended, -1};
}

bool RingCore::IsFullAndUnlocked(std::uint32_t cpu) const noexcept {
  const RingControl& c = controls_[cpu];
  if (__atomic_load_n(&c.lock, __ATOMIC_RELAXED) != 0) return false;
  return __atomic_load_n(&c.head, __ATOMIC_RELAXED) - __atomic_load_n(&c.tail, __ATOMIC_RELAXED) >
         c.mask;
}

std::uint64_t RingCore::ConsumerHead(std::uint32_t cpu) const noexcept {
  const std::uint64_t head = __atomic_load_n(&controls_[cpu].head, __ATOMIC_ACQUIRE);
  TsanAcquire(&controls_[cpu].head);
  return head;
}

void RingCore::ConsumerRelease(std::uint32_t cpu, std::uint64_t new_tail) noexcept {
  __atomic_store_n(&controls_[cpu].tail, new_tail, __ATOMIC_RELEASE);
}

bool RingCore::Quiesce(std::uint32_t cpu) noexcept {
  if (!TryLock(cpu, 1 << 20)) return false;
  if (CurrentMode() != Mode::kUnavailable && !QuiesceCpu(static_cast<int>(cpu))) {
    Unlock(cpu);
    return false;
  }
  return true;
}

void RingCore::Unquiesce(std::uint32_t cpu) noexcept { Unlock(cpu); }

}  // namespace pmu::rseq::detail
