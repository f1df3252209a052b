// The specification of every rseq critical section in this library, written
// once. arch/x86_64.h and arch/aarch64.h implement it in assembly, the C++
// wrappers (per_cpu_counter.h, per_cpu_ring.h, counter_read.h) interpret its
// results, and docs/RSEQ.md explains it; none of them restates it. A change
// to a section starts here.
//
// Notation
//   area          the calling thread's registered struct rseq (abi.h)
//   cs            the section's descriptor, a struct rseq_cs
//   [inject N]    delay-injection point N = InjectStep N (inject.h); expands
//                 to nothing unless the library is built with PMU_TEST_HOOKS=1
//   -> R          the section ends with result R (see "Results")
//   commit        the one store that makes the section's effect visible to
//                 other threads; post_commit_ip is the address right after it
//
// Frame shared by every section
//   cs = {version 0, flags 0, start_ip, post_commit_ip - start_ip, abort_ip}
//        in section __rseq_cs (32-byte aligned); &cs in __rseq_cs_ptr_array;
//        one (start_ip, exit_ip) pair in __rseq_exit_point_array for each
//        exit other than the commit and the abort.
//   area->rseq_cs = &cs                        (arms the section)
//   start_ip:
//     if area->cpu_id != cpu -> -1             (an area the kernel does not
//                                               serve holds -1 or -2, never
//                                               a CPU number)
//     [inject 0]
//     body: loads, and stores only to memory that nobody reads before the
//           commit; no syscall, no call
//     [inject 1]
//     commit -> 0
//   post_commit_ip
//   abort_ip: in section __rseq_failure, preceded by the 4 bytes RSEQ_SIG
//     -> -1
//
// The kernel moves the instruction pointer of a thread that is preempted,
// migrated or signalled while it is in [start_ip, post_commit_ip) to
// abort_ip before it runs anything else of that thread in user space; for a
// signal this happens before the handler's frame is built, so a handler
// sees abort_ip as the saved instruction pointer, also for a fault raised by
// an instruction of the section (kernel/rseq.c, rseq_ip_fixup()). A section
// therefore either commits once or has no visible effect.
//
// AddU64(cpu, slot, delta)                    PerCpuCounter
//   frame
//   [inject 0]
//   v = *slot + delta
//   [inject 1]
//   *slot = v                                  commit -> 0
//   x86-64 performs load, add and commit as one unlocked add to memory
//   (after both injection points), so there is no window between them.
//
// PushWords<kWords>(cpu, ring, src)           PerCpuRing
//   frame
//   [inject 0]
//   if ring->lock != 0 -> 1                    (a fallback producer or the
//                                               consumer holds the ring)
//   h = ring->head
//   if h - ring->tail > ring->mask -> 1        (full)
//   [inject 2]
//   dst = ring->buffer + (h & ring->mask) * 8 * kWords
//   for i in [0, kWords):
//     dst[i] = src[i]                          (a slot no consumer reads
//     [inject 3]                                before head moves)
//   [inject 1]
//   ring->head = h + 1                         commit -> 0 (aarch64: with
//                                               release order, the consumer
//                                               loads head with acquire)
//
// ReadPages<kFakePmc>(cpu, ctx)               ReadCountersOnCpu
//   frame
//   [inject 0]
//   for i in [0, ctx->count):
//     page = ctx->pages[i]; o = &ctx->out[i]
//   retry:
//     seq = page->lock
//     [inject 4]
//     if seq is odd: goto retry                (the kernel is mid-update)
//     idx = page->index
//     if idx == 0: goto need_read              (counter not on the PMU now)
//     o->capabilities = page->capabilities
//     if !cap_user_rdpmc: goto need_read
//     raw = kFakePmc ? ctx->fake_counters[idx - 1] : rdpmc(idx - 1)
//     if raw == 0: goto need_read              (a counter whose user rdpmc
//                                               the kernel disabled reads 0;
//                                               a live counter is 0 only at
//                                               the instant it overflows)
//     o->value = page->offset + sign_extend(raw, page->pmc_width)
//     o->time_enabled, o->time_running = page->time_enabled, ->time_running
//     o->time_offset, o->time_mult, o->time_shift = page->... (same names)
//     if cap_user_time:
//       o->tsc = rdtsc
//       o->time_cycles, o->time_mask = page->time_cycles, ->time_mask
//     [inject 5]
//     if page->lock != seq: goto retry
//   [inject 1]
//   ctx->committed = 1                         commit -> 0
//   need_read:                                 (an exit point)
//     if page->lock != seq: goto retry
//     ctx->stopped_at = i                      -> 2
//   Every store before the commit goes to the caller's private scratch
//   (ctx->out, ctx->stopped_at), read only after the section returned.
//   After a commit, outside the section, ReadCountersOnCpu() extrapolates the
//   times of each page that had cap_user_time (counter_read.h):
//     cyc = o->tsc
//     if cap_user_time_short: cyc = time_cycles + ((cyc - time_cycles) & time_mask)
//     delta = time_offset + (cyc >> shift) * mult
//             + (((cyc & ((1 << shift) - 1)) * mult) >> shift)
//     enabled += delta; running += delta       (idx != 0, so it is running)
//   A page without cap_user_time keeps the times of its last kernel update.
//
//   Fault: rdpmc raises #GP (SIGSEGV, si_code SI_KERNEL) when user rdpmc was
//   switched off after the page was last written (CR4.PCE clear while the
//   page still says cap_user_rdpmc). The kernel first aborts the section (see
//   above), so the SIGSEGV handler of read_fault.h finds abort_ip of a
//   ReadPages section as the saved instruction pointer, sets the thread's
//   fault flag and returns: the section ends as -1 with the flag set, which
//   ReadCountersOnCpu() reports as ReadStatus::kFaulted. To let the handler
//   tell these abort_ips from every other, each ReadPages section also puts
//   &cs in section pmu_rseq_read_cs (kReadSectionTable).
#ifndef PMU_RSEQ_PSEUDOCODE_H_
#define PMU_RSEQ_PSEUDOCODE_H_

#include <sys/rseq.h>

#include <cstddef>

#include "pmu/rseq/inject.h"
#include "pmu/rseq/section_types.h"

namespace pmu::rseq::detail {

// Results.
inline constexpr int kSectionCommitted = 0;
inline constexpr int kSectionCompareFailed = 1;  // PushWords only
inline constexpr int kSectionAborted = -1;
inline constexpr int kSectionNeedRead = 2;  // ReadPages only: use read()

// Name of the section that lists the descriptors of every ReadPages section
// (a C identifier, so the linker defines __start_ and __stop_ symbols).
inline constexpr const char* kReadSectionTable = "pmu_rseq_read_cs";

// The assembly names injection points by number (PMU_RSEQ_INJECT_ASM(N)).
static_assert(static_cast<int>(InjectStep::kAfterCpuCompare) == 0);
static_assert(static_cast<int>(InjectStep::kBeforeCommit) == 1);
static_assert(static_cast<int>(InjectStep::kRingAfterRoomCheck) == 2);
static_assert(static_cast<int>(InjectStep::kRingMidCopy) == 3);
static_assert(static_cast<int>(InjectStep::kReadAfterLock) == 4);
static_assert(static_cast<int>(InjectStep::kReadBeforeRecheck) == 5);

// The descriptor every ISA emits as ".long 0, 0; .quad start, length, abort".
static_assert(sizeof(struct ::rseq_cs) == 32 && alignof(struct ::rseq_cs) == 32);
static_assert(offsetof(struct ::rseq_cs, version) == 0);
static_assert(offsetof(struct ::rseq_cs, flags) == 4);
static_assert(offsetof(struct ::rseq_cs, start_ip) == 8);
static_assert(offsetof(struct ::rseq_cs, post_commit_offset) == 16);
static_assert(offsetof(struct ::rseq_cs, abort_ip) == 24);
// The frame's loads and stores of the thread's area.
static_assert(offsetof(struct ::rseq, cpu_id_start) == 0);
static_assert(offsetof(struct ::rseq, cpu_id) == 4);
static_assert(offsetof(struct ::rseq, rseq_cs) == 8);
// The layouts of RingControl, ReadContext, RawPageRead and the fields of
// perf_event_mmap_page the sections address are pinned in section_types.h.

}  // namespace pmu::rseq::detail

#endif  // PMU_RSEQ_PSEUDOCODE_H_
