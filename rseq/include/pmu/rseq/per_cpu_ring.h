// PerCpuRing<Record>: one bounded single-consumer ring per possible CPU.
//
// Producers (any thread, signal handlers included) append to the ring of the
// CPU they run on with one rseq section per record: load head, check room
// against tail, copy the record into the free slot, commit head + 1. No lock,
// no atomic read-modify-write. A full ring refuses the record and counts a
// drop; it never blocks and never overwrites unread records.
//
// Guarantees: every record TryPush() reports as pushed is drained exactly
// once, whole (never torn), and the records one producer pushed into one
// CPU's ring come out in the order it pushed them. Records of one producer
// that migrated between pushes sit in different rings; order across rings
// is the consumer's business (records carry their own timestamp).
//
// Fallback (kUnavailable, an unregistered thread, a ring locked by someone
// else or a section aborted kMaxAbortsBeforeFallback times): the producer
// takes the ring's lock word; in an rseq mode it then calls QuiesceCpu(cpu)
// (membarrier RSEQ fence with FLAG_CPU where registered, else a migration
// onto the CPU) so no section that read lock == 0 can still commit, and
// appends under the lock. A producer never waits for a lock unboundedly: it
// moves to the next CPU's ring (TryPush) or reports kContended
// (TryPushOnCpu), so a signal handler that interrupted a lock holder cannot
// deadlock.
//
// Thread safety: TryPush/TryPushOnCpu from any thread and signal handlers.
// Drain/DrainAll/Quiesce from ONE consumer thread at a time. Statistics from
// any thread. Construct/destroy while nobody uses the ring.
#ifndef PMU_RSEQ_PER_CPU_RING_H_
#define PMU_RSEQ_PER_CPU_RING_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>

#include "pmu/rseq/abi.h"
#include "pmu/rseq/arch.h"
#include "pmu/rseq/per_cpu_counter.h"
#include "pmu/rseq/tsan.h"

namespace pmu::rseq {

enum class PushStatus {
  kPushed,     // in the ring of PushResult::cpu
  kDropped,    // that ring was full; counted in drops()
  kWrongCpu,   // TryPushOnCpu only: not running on the expected CPU
  kContended,  // fallback path could not get a lock without waiting; nothing written
};

struct PushResult {
  PushStatus status;
  int cpu;  // the ring written (or found full); -1 when none
};

namespace detail {

// Type-independent part of PerCpuRing: storage, the locked fallback path,
// the consumer's cursor and the statistics.
class RingCore {
 public:
  RingCore(int num_cpus, std::size_t capacity, std::size_t stride);
  ~RingCore();
  RingCore(const RingCore&) = delete;
  RingCore& operator=(const RingCore&) = delete;

  RingControl& control(std::uint32_t cpu) noexcept { return controls_[cpu]; }
  const RingControl& control(std::uint32_t cpu) const noexcept { return controls_[cpu]; }
  std::uint32_t num_cpus() const noexcept { return num_cpus_; }
  std::size_t capacity() const noexcept { return capacity_; }
  std::size_t stride() const noexcept { return stride_; }

  // Locked append of `size` bytes to ring `cpu` (see the fallback above).
  PushStatus PushLocked(std::uint32_t cpu, const void* record, std::size_t size,
                        int lock_spins) noexcept;
  // TryPush's fallback: own CPU first, then the others.
  PushResult PushFallbackAnyCpu(const void* record, std::size_t size) noexcept;

  // After a compare-failed section: true when the ring really is full (a
  // drop), false when it was locked or has room now (try again).
  bool IsFullAndUnlocked(std::uint32_t cpu) const noexcept;

  // Consumer side: [tail, head) of ring `cpu`.
  std::uint64_t ConsumerHead(std::uint32_t cpu) const noexcept;
  void ConsumerRelease(std::uint32_t cpu, std::uint64_t new_tail) noexcept;
  const unsigned char* SlotAt(std::uint32_t cpu, std::uint64_t position) const noexcept {
    const RingControl& c = controls_[cpu];
    return c.buffer + (position & c.mask) * stride_;
  }

  // Locks ring `cpu` against producers and waits until none is mid-section;
  // Unquiesce() releases it. Consumer only.
  bool Quiesce(std::uint32_t cpu) noexcept;
  void Unquiesce(std::uint32_t cpu) noexcept;

  PerCpuCounter drops;
  PerCpuCounter aborts;
  PerCpuCounter fallbacks;

 private:
  bool TryLock(std::uint32_t cpu, int spins) noexcept;
  void Unlock(std::uint32_t cpu) noexcept;

  std::uint32_t num_cpus_;
  std::size_t capacity_;
  std::size_t stride_;
  RingControl* controls_;  // num_cpus_ entries, cache-line aligned
};

}  // namespace detail

template <class Record>
class PerCpuRing {
  static_assert(std::is_trivially_copyable_v<Record>, "records are copied word by word");

 public:
  static constexpr std::size_t kWords = (sizeof(Record) + 7) / 8;

  // REQUIRES: num_cpus >= 1; capacity a power of two >= 2 (throws
  // std::invalid_argument otherwise: start-up error).
  PerCpuRing(int num_cpus, std::size_t capacity) : core_(num_cpus, capacity, kWords * 8) {}

  // Appends to the ring of the CPU the caller runs on.
  PushResult TryPush(const Record& record) noexcept;

  // Appends to ring `expected_cpu` only while running on that CPU; returns
  // kWrongCpu otherwise (the sampler's read and push then stay on one CPU).
  // In kUnavailable mode the CPU is checked with sched_getcpu() just before
  // the locked append, which cannot exclude a migration right after it.
  PushResult TryPushOnCpu(int expected_cpu, const Record& record) noexcept;

  // Consumer: hands every record of ring `cpu` to callback(cpu, record) in
  // ring order and frees the slots. Returns the number drained. The record
  // reference is valid only during the callback (it may point into the ring).
  template <class Callback>
  std::size_t Drain(int cpu, Callback&& callback);
  template <class Callback>
  std::size_t DrainAll(Callback&& callback);

  // Consumer: lock ring `cpu` and wait out in-flight sections (e.g. before
  // reusing the ring of a CPU that went offline); Unquiesce() to reopen.
  bool Quiesce(int cpu) noexcept { return core_.Quiesce(static_cast<std::uint32_t>(cpu)); }
  void Unquiesce(int cpu) noexcept { core_.Unquiesce(static_cast<std::uint32_t>(cpu)); }

  int num_cpus() const noexcept { return static_cast<int>(core_.num_cpus()); }
  std::size_t capacity() const noexcept { return core_.capacity(); }
  std::uint64_t drops() const noexcept { return core_.drops.Sum(); }
  std::uint64_t aborts() const noexcept { return core_.aborts.Sum(); }
  std::uint64_t fallbacks() const noexcept { return core_.fallbacks.Sum(); }

 private:
  // Pointer to kWords readable words holding the record (padded copy when
  // sizeof(Record) is not a multiple of 8).
  struct Words {
    explicit Words(const Record& record) noexcept {
      if constexpr (sizeof(Record) % 8 == 0) {
        ptr = reinterpret_cast<const std::uint64_t*>(&record);
      } else {
        padded[kWords - 1] = 0;
        std::memcpy(padded, &record, sizeof(Record));
        ptr = padded;
      }
    }
    std::uint64_t padded[sizeof(Record) % 8 == 0 ? 1 : kWords];
    const std::uint64_t* ptr;
  };

  // One section on ring `cpu`. Returns kPushed, kDropped, or kContended to
  // mean "not done: retry or fall back".
  PushStatus PushSection(struct ::rseq* area, std::uint32_t cpu, const std::uint64_t* words,
                         int* aborts) noexcept;

  detail::RingCore core_;
};

template <class Record>
PushStatus PerCpuRing<Record>::PushSection(struct ::rseq* area, std::uint32_t cpu,
                                           const std::uint64_t* words, int* aborts) noexcept {
  const int r = detail::arch::PushWords<kWords>(area, cpu, &core_.control(cpu), words);
  if (r == detail::kSectionCommitted) {
    detail::TsanRelease(&core_.control(cpu).head);
    return PushStatus::kPushed;
  }
  if (r == detail::kSectionCompareFailed) {
    if (core_.IsFullAndUnlocked(cpu)) {
      core_.drops.Add(1);
      return PushStatus::kDropped;
    }
  } else {
    core_.aborts.Add(1);
  }
  ++*aborts;
  return PushStatus::kContended;
}

template <class Record>
PushResult PerCpuRing<Record>::TryPush(const Record& record) noexcept {
  const Words words(record);
  struct ::rseq* area = detail::ThreadArea();
  if (area != nullptr) {
    int aborts = 0;
    while (aborts < detail::kMaxAbortsBeforeFallback) {
      const std::uint32_t cpu = detail::LoadCpuIdStart(area);
      if (cpu >= core_.num_cpus()) break;
      const PushStatus s = PushSection(area, cpu, words.ptr, &aborts);
      if (s != PushStatus::kContended) return {s, static_cast<int>(cpu)};
      if (__atomic_load_n(&core_.control(cpu).lock, __ATOMIC_RELAXED) != 0) break;
    }
  }
  return core_.PushFallbackAnyCpu(words.ptr, kWords * 8);
}

template <class Record>
PushResult PerCpuRing<Record>::TryPushOnCpu(int expected_cpu, const Record& record) noexcept {
  if (expected_cpu < 0 || static_cast<std::uint32_t>(expected_cpu) >= core_.num_cpus()) {
    return {PushStatus::kWrongCpu, -1};
  }
  const auto cpu = static_cast<std::uint32_t>(expected_cpu);
  const Words words(record);
  struct ::rseq* area = detail::ThreadArea();
  if (area != nullptr) {
    int aborts = 0;
    while (aborts < detail::kMaxAbortsBeforeFallback) {
      if (detail::LoadCpuIdStart(area) != cpu) return {PushStatus::kWrongCpu, expected_cpu};
      const PushStatus s = PushSection(area, cpu, words.ptr, &aborts);
      if (s != PushStatus::kContended) return {s, expected_cpu};
      if (__atomic_load_n(&core_.control(cpu).lock, __ATOMIC_RELAXED) != 0) break;
    }
  }
  if (detail::FallbackCpu() != expected_cpu) return {PushStatus::kWrongCpu, expected_cpu};
  return {core_.PushLocked(cpu, words.ptr, kWords * 8, /*lock_spins=*/1000), expected_cpu};
}

template <class Record>
template <class Callback>
std::size_t PerCpuRing<Record>::Drain(int cpu, Callback&& callback) {
  const auto c = static_cast<std::uint32_t>(cpu);
  const std::uint64_t head = core_.ConsumerHead(c);
  std::uint64_t tail = core_.control(c).tail;
  std::size_t drained = 0;
  for (; tail != head; ++tail, ++drained) {
    const unsigned char* slot = core_.SlotAt(c, tail);
    if constexpr (alignof(Record) <= 8) {
      // Slots are 8-byte aligned storage from operator new, which implicitly
      // creates the (trivially copyable) record the producer copied in.
      callback(cpu, *std::launder(reinterpret_cast<const Record*>(slot)));
    } else {
      alignas(Record) unsigned char storage[sizeof(Record)];
      std::memcpy(storage, slot, sizeof(Record));
      callback(cpu, *std::launder(reinterpret_cast<const Record*>(storage)));
    }
  }
  if (drained != 0) core_.ConsumerRelease(c, tail);
  return drained;
}

template <class Record>
template <class Callback>
std::size_t PerCpuRing<Record>::DrainAll(Callback&& callback) {
  std::size_t drained = 0;
  for (int cpu = 0; cpu < num_cpus(); ++cpu) drained += Drain(cpu, callback);
  return drained;
}

}  // namespace pmu::rseq

#endif  // PMU_RSEQ_PER_CPU_RING_H_
