// rseq ABI discovery and per-thread registration.
//
// The process runs in exactly one Mode, chosen on the first call of
// CurrentMode() and never changed afterwards:
//   kGlibc       glibc registered an rseq area for every thread
//                (__rseq_size != 0); we use its area through __rseq_offset.
//   kOwn         glibc did not register (GLIBC_TUNABLES=glibc.pthread.rseq=0,
//                older libc) but the kernel accepts rseq: this library
//                registers a 32-byte aligned thread-local area for each thread
//                that uses a primitive (or holds a ThreadRegistration) and
//                unregisters it before the thread exits.
//   kUnavailable the kernel has no rseq (ENOSYS), a seccomp filter refuses
//                it, the ISA has no critical sections here, or glibc's
//                registration failed. Every primitive takes its slower,
//                always-correct fallback path.
//
// Thread safety: every function here may be called from any thread.
// CurrentMode() must be called once before any signal handler could call a
// primitive for the first time (the daemon calls it in main); afterwards the
// functions are async-signal-safe except EnsureRegistered() in kOwn mode,
// which may allocate the thread-exit hook the first time a thread calls it.
#ifndef PMU_RSEQ_ABI_H_
#define PMU_RSEQ_ABI_H_

#include <linux/rseq.h>

#include <cstdint>
#include <string_view>

namespace pmu::rseq {

enum class Mode { kGlibc, kOwn, kUnavailable };

// The process-wide mode (first call decides; later calls are one load).
Mode CurrentMode() noexcept;

// "glibc", "own" or "unavailable".
std::string_view ModeName(Mode mode) noexcept;

// One line naming the mode, the feature size in use and, for kUnavailable,
// the reason (e.g. "rseq unavailable: rseq(2) failed with ENOSYS (kernel
// without rseq or a seccomp filter); using sched_getcpu()+atomics").
// Intended to be logged once by the daemon.
std::string_view ModeDescription() noexcept;

// Bytes of struct rseq the kernel fills in for us: 20 for the original
// feature set. 0 in kUnavailable mode.
unsigned FeatureSize() noexcept;

// Registers the calling thread in kOwn mode if it is not registered yet and
// arranges for it to be unregistered when the thread exits. A no-op in the
// other modes. Returns true when the calling thread can run critical
// sections afterwards.
bool EnsureRegistered() noexcept;

// RAII form for threads the project creates: registers in the constructor
// (kOwn mode) and unregisters in the destructor if this object registered.
// Create and destroy it on the same thread; do not nest across threads.
class ThreadRegistration {
 public:
  ThreadRegistration() noexcept;
  ~ThreadRegistration();
  ThreadRegistration(const ThreadRegistration&) = delete;
  ThreadRegistration& operator=(const ThreadRegistration&) = delete;

  // True when the calling thread can run critical sections.
  bool active() const noexcept { return active_; }

 private:
  bool active_ = false;
  bool registered_here_ = false;
};

// The CPU the calling thread runs on (cpu_id_start through rseq, otherwise
// sched_getcpu(), otherwise 0). Only a hint: the thread may migrate at once.
int CurrentCpu() noexcept;

// Number of possible CPUs (upper bound of every CPU index the kernel reports).
int PossibleCpuCount() noexcept;

namespace detail {

// The calling thread's registered rseq area, or nullptr when it cannot run
// critical sections. Resolved lazily per thread; cached in an initial-exec
// TLS slot so the fast path costs one %fs-relative load.
extern __thread struct ::rseq* tls_area __attribute__((tls_model("initial-exec")));

struct ::rseq* ResolveAreaSlow() noexcept;

inline struct ::rseq* ThreadArea() noexcept {
  struct ::rseq* area = tls_area;
  if (__builtin_expect(area != nullptr, 1)) return area;
  return ResolveAreaSlow();
}

// The kernel-written fields are read with single-copy atomicity.
inline std::uint32_t LoadCpuIdStart(const struct ::rseq* area) noexcept {
  return __atomic_load_n(&area->cpu_id_start, __ATOMIC_RELAXED);
}
inline std::int32_t LoadCpuId(const struct ::rseq* area) noexcept {
  return static_cast<std::int32_t>(__atomic_load_n(&area->cpu_id, __ATOMIC_RELAXED));
}

// How many consecutive aborts a primitive tolerates before it takes the
// fallback path for one operation (guarantees progress under injection).
inline constexpr int kMaxAbortsBeforeFallback = 64;

// CPU of the caller for fallback paths: sched_getcpu(), or 0 when it fails.
int FallbackCpu() noexcept;

}  // namespace detail
}  // namespace pmu::rseq

#endif  // PMU_RSEQ_ABI_H_
