// x86-64 critical sections. Include only through pmu/rseq/arch.h.
//
// Implements the sections of pseudocode.h (the frame, AddU64, PushWords and
// ReadPages are specified there, with their results and injection points).
// x86-64 specifics:
//   - the abort stub puts RSEQ_SIG in the trailing imm32 of a `ud1`, so the
//     4 bytes before abort_ip are the signature and disassemblers stay in
//     sync;
//   - TSO orders the commit store after every load and store before it, so
//     no fence is needed; AddU64 commits with one unlocked `add` to memory;
//   - the scratch register of the injection hooks is %eax (clobbered in
//     every build).
#ifndef PMU_RSEQ_ARCH_DISPATCH_
#error "Include pmu/rseq/arch.h, not pmu/rseq/arch/x86_64.h"
#endif

#include <signal.h>

#include <cstddef>
#include <cstdint>

namespace pmu::rseq::detail::arch {

inline constexpr bool kSectionsSupported = true;
inline constexpr bool kHasCounterReadSection = true;

static_assert(RSEQ_SIG == 0x53053053, "x86-64 signature used in the abort stubs");

// The instruction pointer a signal handler's ucontext_t saved.
inline std::uintptr_t SavedIp(const void* ucontext) noexcept {
  return static_cast<std::uintptr_t>(
      static_cast<const ucontext_t*>(ucontext)->uc_mcontext.gregs[REG_RIP]);
}

#define PMU_RSEQ_X86_ARM_AND_CHECK_CPU_      \
  "leaq 3b(%%rip), %%rax\n\t"                \
  "movq %%rax, %c[cs_off](%[area])\n\t"      \
  "1:\n\t"                                   \
  "cmpl %[cpu], %c[cpu_id_off](%[area])\n\t" \
  "jnz 4f\n\t"

#define PMU_RSEQ_X86_ABORT_STUB_             \
  ".pushsection __rseq_failure, \"ax?\"\n\t" \
  ".byte 0x0f, 0xb9, 0x3d\n\t"               \
  ".long 0x53053053\n\t"                     \
  "4:\n\t"                                   \
  "jmp %l[aborted]\n\t"                      \
  ".popsection\n\t"

// AddU64 (pseudocode.h): load, add and commit are one `addq` to memory.
inline int AddU64(struct ::rseq* area, std::uint32_t cpu, std::uint64_t* slot,
                  std::uint64_t delta) noexcept {
  asm goto(PMU_RSEQ_DESCRIPTOR_ASM_
           PMU_RSEQ_X86_ARM_AND_CHECK_CPU_
           PMU_RSEQ_INJECT_ASM(0)
           PMU_RSEQ_INJECT_ASM(1)
           "addq %[delta], (%[slot])\n\t"
           "2:\n\t"
           PMU_RSEQ_X86_ABORT_STUB_
           :
           : PMU_RSEQ_AREA_OPERANDS_, [slot] "r"(slot), [delta] "r"(delta)
           : "rax", "memory", "cc"
           : aborted);
  return kSectionCommitted;
aborted:
  return kSectionAborted;
}

// PushWords<kWords> (pseudocode.h): the copy is unrolled by the assembler.
template <std::size_t kWords>
int PushWords(struct ::rseq* area, std::uint32_t cpu, RingControl* ring,
              const std::uint64_t* src) noexcept {
  static_assert(kWords >= 1 && kWords <= 512, "records up to 4 KiB (the copy is unrolled)");
  asm goto(PMU_RSEQ_DESCRIPTOR_ASM_
           PMU_RSEQ_EXIT_POINT_ASM_("%l[compare_failed]")
           PMU_RSEQ_X86_ARM_AND_CHECK_CPU_
           PMU_RSEQ_INJECT_ASM(0)
           "cmpq $0, %c[lock_off](%[ring])\n\t"
           "jnz %l[compare_failed]\n\t"
           "movq %c[head_off](%[ring]), %%rcx\n\t"
           "movq %%rcx, %%rdx\n\t"
           "subq %c[tail_off](%[ring]), %%rdx\n\t"
           "cmpq %c[mask_off](%[ring]), %%rdx\n\t"
           "ja %l[compare_failed]\n\t"
           PMU_RSEQ_INJECT_ASM(2)
           "movq %%rcx, %%rdx\n\t"
           "andq %c[mask_off](%[ring]), %%rdx\n\t"
           "imulq $%c[stride], %%rdx, %%rdx\n\t"
           "addq %c[buf_off](%[ring]), %%rdx\n\t"
           // Copy unrolled by the assembler: kWords load/store pairs.
           // (8-byte moves: a record just written field by field forwards
           // from the store buffer; wider loads would stall on it.)
           ".set .Lpmu_rseq_copy_off, 0\n\t"
           ".rept %c[words]\n\t"
           "movq .Lpmu_rseq_copy_off(%[src]), %%r9\n\t"
           "movq %%r9, .Lpmu_rseq_copy_off(%%rdx)\n\t"
           ".set .Lpmu_rseq_copy_off, .Lpmu_rseq_copy_off + 8\n\t"
           PMU_RSEQ_INJECT_ASM(3)
           ".endr\n\t"
           PMU_RSEQ_INJECT_ASM(1)
           "incq %%rcx\n\t"
           "movq %%rcx, %c[head_off](%[ring])\n\t"
           "2:\n\t"
           PMU_RSEQ_X86_ABORT_STUB_
           :
           : PMU_RSEQ_AREA_OPERANDS_, PMU_RSEQ_RING_OPERANDS_
           : "rax", "rcx", "rdx", "r9", "memory", "cc"
           : aborted, compare_failed);
  return kSectionCommitted;
aborted:
  return kSectionAborted;
compare_failed:
  return kSectionCompareFailed;
}

// ReadPages<kFakePmc> (pseudocode.h). The one instruction that differs
// between the hardware section and the test seam: counter number in %ecx
// in, 64-bit raw count in %rax out.
#define PMU_RSEQ_X86_RDPMC_ \
  "rdpmc\n\t"               \
  "shlq $32, %%rdx\n\t"     \
  "orq %%rdx, %%rax\n\t"
#define PMU_RSEQ_X86_FAKE_PMC_ \
  "movq 16(%[ctx]), %%rdx\n\t" \
  "movq (%%rdx, %%rcx, 8), %%rax\n\t"

// The section spells the field offsets of ReadContext, RawPageRead and
// perf_event_mmap_page as literals (an asm statement takes at most 30
// operands); section_types.h pins every one of them with a static_assert.
#define PMU_RSEQ_X86_READ_PAGES_ASM_(PMC) \
  asm goto(PMU_RSEQ_DESCRIPTOR_ASM_ \
           PMU_RSEQ_EXIT_POINT_ASM_("%l[need_read]") \
           PMU_RSEQ_READ_SECTION_TABLE_ASM_ \
           PMU_RSEQ_X86_ARM_AND_CHECK_CPU_ \
           PMU_RSEQ_INJECT_ASM(0) \
           "xorl %%r8d, %%r8d\n\t" \
           "movq 24(%[ctx]), %%r9\n\t" \
           "10:\n\t" \
           "cmpq 8(%[ctx]), %%r8\n\t" \
           "jae 19f\n\t" \
           "movq 0(%[ctx]), %%r10\n\t" \
           "movq (%%r10, %%r8, 8), %%r10\n\t" \
           "11:\n\t" \
           "movl 8(%%r10), %%r11d\n\t" \
           PMU_RSEQ_INJECT_ASM(4) \
           "testl $1, %%r11d\n\t" \
           "jnz 11b\n\t" \
           "movl 12(%%r10), %%ecx\n\t" \
           "testl %%ecx, %%ecx\n\t" \
           "jz 18f\n\t" \
           "movq 40(%%r10), %%rax\n\t" \
           "movq %%rax, 40(%%r9)\n\t" \
           "testq %[cap_rdpmc], %%rax\n\t" \
           "jz 18f\n\t" \
           "decl %%ecx\n\t" \
           PMC \
           "testq %%rax, %%rax\n\t" \
           "jz 18f\n\t" \
           "movzwl 48(%%r10), %%ecx\n\t" \
           "negl %%ecx\n\t" \
           "addl $64, %%ecx\n\t" \
           "shlq %%cl, %%rax\n\t" \
           "sarq %%cl, %%rax\n\t" \
           "addq 16(%%r10), %%rax\n\t" \
           "movq %%rax, 0(%%r9)\n\t" \
           "movq 24(%%r10), %%rax\n\t" \
           "movq %%rax, 8(%%r9)\n\t" \
           "movq 32(%%r10), %%rax\n\t" \
           "movq %%rax, 16(%%r9)\n\t" \
           "movq 56(%%r10), %%rax\n\t" \
           "movq %%rax, 24(%%r9)\n\t" \
           "movl 52(%%r10), %%eax\n\t" \
           "movl %%eax, 48(%%r9)\n\t" \
           "movzwl 50(%%r10), %%eax\n\t" \
           "movl %%eax, 52(%%r9)\n\t" \
           "movq 40(%%r9), %%rax\n\t" \
           "testq %[cap_time], %%rax\n\t" \
           "jz 12f\n\t" \
           "rdtsc\n\t" \
           "shlq $32, %%rdx\n\t" \
           "orq %%rdx, %%rax\n\t" \
           "movq %%rax, 32(%%r9)\n\t" \
           "movq 80(%%r10), %%rax\n\t" \
           "movq %%rax, 56(%%r9)\n\t" \
           "movq 88(%%r10), %%rax\n\t" \
           "movq %%rax, 64(%%r9)\n\t" \
           "12:\n\t" \
           PMU_RSEQ_INJECT_ASM(5) \
           "cmpl 8(%%r10), %%r11d\n\t" \
           "jnz 11b\n\t" \
           "addq %[raw_size], %%r9\n\t" \
           "incq %%r8\n\t" \
           "jmp 10b\n\t" \
           "18:\n\t" \
           "cmpl 8(%%r10), %%r11d\n\t" \
           "jnz 11b\n\t" \
           "movq %%r8, 32(%[ctx])\n\t" \
           "jmp %l[need_read]\n\t" \
           "19:\n\t" \
           PMU_RSEQ_INJECT_ASM(1) \
           "movq $1, 40(%[ctx])\n\t" \
           "2:\n\t" \
           PMU_RSEQ_X86_ABORT_STUB_ \
           : \
           : PMU_RSEQ_AREA_OPERANDS_, [ctx] "r"(ctx), \
             [cap_rdpmc] "i"(kCapUserRdpmc), [cap_time] "i"(kCapUserTime), \
             [raw_size] "i"(sizeof(RawPageRead)) \
           : "rax", "rcx", "rdx", "r8", "r9", "r10", "r11", "memory", "cc" \
           : aborted, need_read);

template <bool kFakePmc>
int ReadPages(struct ::rseq* area, std::uint32_t cpu, ReadContext* ctx) noexcept {
  if constexpr (kFakePmc) {
    PMU_RSEQ_X86_READ_PAGES_ASM_(PMU_RSEQ_X86_FAKE_PMC_)
  } else {
    PMU_RSEQ_X86_READ_PAGES_ASM_(PMU_RSEQ_X86_RDPMC_)
  }
  return kSectionCommitted;
aborted:
  return kSectionAborted;
need_read:
  return kSectionNeedRead;
}

}  // namespace pmu::rseq::detail::arch
