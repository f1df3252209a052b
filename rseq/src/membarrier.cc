#include "pmu/rseq/membarrier.h"

#include <linux/membarrier.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

namespace pmu::rseq {
namespace {

std::atomic<bool> g_registered{false};

long Membarrier(int cmd, unsigned flags, int cpu) noexcept {
  return syscall(__NR_membarrier, cmd, flags, cpu);
}

}  // namespace

bool RegisterMembarrierRseq() noexcept {
  if (g_registered.load(std::memory_order_acquire)) return true;
  const long supported = Membarrier(MEMBARRIER_CMD_QUERY, 0, 0);
  if (supported < 0 || (supported & MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ) == 0) return false;
  if (Membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, 0, 0) != 0) return false;
  g_registered.store(true, std::memory_order_release);
  return true;
}

bool MembarrierRseqAvailable() noexcept { return g_registered.load(std::memory_order_acquire); }

int CpuFenceRseq(int cpu) noexcept {
  if (Membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, MEMBARRIER_CMD_FLAG_CPU, cpu) == 0) {
    return 0;
  }
  return -errno;
}

bool QuiesceCpu(int cpu) noexcept {
  if (MembarrierRseqAvailable() && CpuFenceRseq(cpu) == 0) return true;
  // No fence: run on `cpu` once. Getting there means `cpu` switched to this
  // thread, which preempted (hence aborted) any section running there.
  const int saved_errno = errno;
  cpu_set_t old_set;
  if (sched_getaffinity(0, sizeof(old_set), &old_set) != 0) return false;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(static_cast<std::size_t>(cpu), &one);
  bool ok = sched_setaffinity(0, sizeof(one), &one) == 0 && sched_getcpu() == cpu;
  if (sched_setaffinity(0, sizeof(old_set), &old_set) != 0) ok = false;
  errno = saved_errno;
  return ok;
}

}  // namespace pmu::rseq
