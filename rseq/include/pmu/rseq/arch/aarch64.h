// aarch64 critical sections. Include only through pmu/rseq/arch.h.
//
// Implements the sections of pseudocode.h (the frame, AddU64 and PushWords
// are specified there, with their results and injection points). aarch64
// specifics:
//   - the descriptor address is formed with adrp/add (:lo12:) and stored to
//     rseq->rseq_cs with a plain str;
//   - the abort stub is `.inst RSEQ_SIG` (a BRK, never executed) followed by
//     the abort label, so the 4 bytes before abort_ip equal the signature;
//   - the ring's commit is a store-release (stlr);
//   - x16/x17 (intra-procedure-call scratch) are the scratch registers; the
//     injection hooks use x17.
// There is no ReadPages section: arm64 does not give user space access to
// counters of CPU-wide events, so the read() path is the only one there and
// RawPageRead's time_cycles/time_mask (cap_user_time_short, the arm64 case)
// are never filled here.
#ifndef PMU_RSEQ_ARCH_DISPATCH_
#error "Include pmu/rseq/arch.h, not pmu/rseq/arch/aarch64.h"
#endif

#include <signal.h>

#include <cstddef>
#include <cstdint>

namespace pmu::rseq::detail::arch {

inline constexpr bool kSectionsSupported = true;
inline constexpr bool kHasCounterReadSection = false;

#if defined(__AARCH64EB__)
#error "big-endian aarch64 is not supported (signature byte order)"
#endif
static_assert(RSEQ_SIG == 0xd428bc00, "aarch64 little-endian signature used in the abort stubs");

// The instruction pointer a signal handler's ucontext_t saved.
inline std::uintptr_t SavedIp(const void* ucontext) noexcept {
  return static_cast<std::uintptr_t>(static_cast<const ucontext_t*>(ucontext)->uc_mcontext.pc);
}

#define PMU_RSEQ_A64_ARM_AND_CHECK_CPU_     \
  "adrp x16, 3b\n\t"                        \
  "add x16, x16, :lo12:3b\n\t"              \
  "str x16, [%[area], #%c[cs_off]]\n\t"     \
  "1:\n\t"                                  \
  "ldr w16, [%[area], #%c[cpu_id_off]]\n\t" \
  "cmp w16, %w[cpu]\n\t"                    \
  "b.ne 4f\n\t"

#define PMU_RSEQ_A64_ABORT_STUB_             \
  ".pushsection __rseq_failure, \"ax?\"\n\t" \
  ".inst 0xd428bc00\n\t"                     \
  "4:\n\t"                                   \
  "b %l[aborted]\n\t"                        \
  ".popsection\n\t"

// AddU64 (pseudocode.h): ldr, add, then the str is the commit.
inline int AddU64(struct ::rseq* area, std::uint32_t cpu, std::uint64_t* slot,
                  std::uint64_t delta) noexcept {
  asm goto(PMU_RSEQ_DESCRIPTOR_ASM_
           PMU_RSEQ_A64_ARM_AND_CHECK_CPU_
           PMU_RSEQ_INJECT_ASM(0)
           "ldr x16, [%[slot]]\n\t"
           "add x16, x16, %[delta]\n\t"
           PMU_RSEQ_INJECT_ASM(1)
           "str x16, [%[slot]]\n\t"
           "2:\n\t"
           PMU_RSEQ_A64_ABORT_STUB_
           :
           : PMU_RSEQ_AREA_OPERANDS_, [slot] "r"(slot), [delta] "r"(delta)
           : "x16", "x17", "memory", "cc"
           : aborted);
  return kSectionCommitted;
aborted:
  return kSectionAborted;
}

// PushWords<kWords> (pseudocode.h): a copy loop; the commit is stlr.
template <std::size_t kWords>
int PushWords(struct ::rseq* area, std::uint32_t cpu, RingControl* ring,
              const std::uint64_t* src) noexcept {
  static_assert(kWords >= 1 && kWords < 4096, "cmp immediate is 12 bits");
  static_assert(kWords * 8 < 65536, "mov immediate is 16 bits");
  asm goto(PMU_RSEQ_DESCRIPTOR_ASM_
           PMU_RSEQ_EXIT_POINT_ASM_("%l[compare_failed]")
           PMU_RSEQ_A64_ARM_AND_CHECK_CPU_
           PMU_RSEQ_INJECT_ASM(0)
           "ldr x16, [%[ring], #%c[lock_off]]\n\t"
           "cbnz x16, %l[compare_failed]\n\t"
           "ldr x16, [%[ring], #%c[head_off]]\n\t"
           "ldr x15, [%[ring], #%c[tail_off]]\n\t"
           "sub x15, x16, x15\n\t"
           "ldr x14, [%[ring], #%c[mask_off]]\n\t"
           "cmp x15, x14\n\t"
           "b.hi %l[compare_failed]\n\t"
           PMU_RSEQ_INJECT_ASM(2)
           "and x15, x16, x14\n\t"
           "mov x14, #%c[stride]\n\t"
           "mul x15, x15, x14\n\t"
           "ldr x14, [%[ring], #%c[buf_off]]\n\t"
           "add x15, x15, x14\n\t"
           "mov x14, #0\n\t"
           "6:\n\t"
           "ldr x13, [%[src], x14, lsl #3]\n\t"
           "str x13, [x15, x14, lsl #3]\n\t"
           PMU_RSEQ_INJECT_ASM(3)
           "add x14, x14, #1\n\t"
           "cmp x14, #%c[words]\n\t"
           "b.lo 6b\n\t"
           PMU_RSEQ_INJECT_ASM(1)
           "add x16, x16, #1\n\t"
           "stlr x16, [%[ring]]\n\t"
           "2:\n\t"
           PMU_RSEQ_A64_ABORT_STUB_
           :
           : PMU_RSEQ_AREA_OPERANDS_, PMU_RSEQ_RING_OPERANDS_
           : "x13", "x14", "x15", "x16", "x17", "memory", "cc"
           : aborted, compare_failed);
  return kSectionCommitted;
aborted:
  return kSectionAborted;
compare_failed:
  return kSectionCompareFailed;
}

// No counter-read section on arm64 (see the header comment).
template <bool kFakePmc>
int ReadPages(struct ::rseq*, std::uint32_t, ReadContext*) noexcept {
  return kSectionNeedRead;
}

}  // namespace pmu::rseq::detail::arch
