// membarrier(2) helpers for the rseq primitives.
//
// MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ with MEMBARRIER_CMD_FLAG_CPU aborts
// every critical section of this process in flight on one CPU (and orders
// memory there). It needs MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ
// first; register while the process is still single-threaded (the daemon
// does it first thing in main) so every thread it later starts is covered.
//
// Thread safety: RegisterMembarrierRseq() from the main thread before other
// threads start; the rest from any thread (async-signal-safe).
#ifndef PMU_RSEQ_MEMBARRIER_H_
#define PMU_RSEQ_MEMBARRIER_H_

namespace pmu::rseq {

// Registers the process for rseq fences. Returns true when fences are
// available afterwards (EINVAL from the kernel: no support; the query tells
// whether the command exists at all). Idempotent.
bool RegisterMembarrierRseq() noexcept;

// True after a successful RegisterMembarrierRseq().
bool MembarrierRseqAvailable() noexcept;

// Aborts the sections in flight on `cpu`. Returns 0 or -errno (-EPERM when
// not registered, -EINVAL when the kernel lacks the command or cpu is out of
// range).
int CpuFenceRseq(int cpu) noexcept;

// Returns once no critical section that started before the call can still
// commit on `cpu`: a fence when membarrier is registered, otherwise the
// caller migrates itself onto `cpu` (which preempts, hence aborts, whatever
// section ran there) and restores its affinity. Returns false when neither
// works (e.g. the CPU is outside the caller's cpuset).
bool QuiesceCpu(int cpu) noexcept;

}  // namespace pmu::rseq

#endif  // PMU_RSEQ_MEMBARRIER_H_
