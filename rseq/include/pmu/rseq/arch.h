// The one header that selects the critical sections for the target ISA.
// What each section does is specified in pseudocode.h; the ISA headers only
// implement it.
//
// Every ISA header provides, in namespace pmu::rseq::detail::arch:
//   inline constexpr bool kSectionsSupported;
//   inline constexpr bool kHasCounterReadSection;
//   int AddU64(struct rseq*, std::uint32_t cpu, std::uint64_t* slot, std::uint64_t delta);
//   template <std::size_t kWords>
//   int PushWords(struct rseq*, std::uint32_t cpu, RingControl*, const std::uint64_t* src);
//   template <bool kFakePmc>
//   int ReadPages(struct rseq*, std::uint32_t cpu, ReadContext*);
//   std::uintptr_t SavedIp(const void* ucontext);  // a signal's saved pc
// with the results of pseudocode.h. An ISA without sections gets the
// explicit fallback below: kSectionsSupported is false, the mode is
// kUnavailable and no section is ever entered.
#ifndef PMU_RSEQ_ARCH_H_
#define PMU_RSEQ_ARCH_H_

#include <signal.h>
#include <sys/rseq.h>

#include <cstddef>
#include <cstdint>

#include "pmu/rseq/inject.h"
#include "pmu/rseq/pseudocode.h"
#include "pmu/rseq/section_types.h"

// Assembler text every ISA's sections share (GNU as syntax). Local labels:
// 1 = start_ip, 2 = post-commit ip, 3 = the descriptor, 4 = abort_ip; the
// descriptor and the tables are those of the frame in pseudocode.h.
// Every side section carries GNU as's "?" flag: it joins the section group
// (COMDAT) of the function the asm sits in, so when the linker discards a
// duplicate out-of-line copy of an inline function (Debug builds), the
// descriptors, pointers, exit points and abort stub that refer to it go with
// it instead of dangling ("defined in discarded section").
// clang-format off
#define PMU_RSEQ_DESCRIPTOR_ASM_                       \
  ".pushsection __rseq_cs, \"aw?\"\n\t"                \
  ".balign 32\n\t"                                     \
  "3:\n\t"                                             \
  ".long 0x0, 0x0\n\t"                                 \
  ".quad 1f, (2f - 1f), 4f\n\t"                        \
  ".popsection\n\t"                                    \
  ".pushsection __rseq_cs_ptr_array, \"aw?\"\n\t"      \
  ".quad 3b\n\t"                                       \
  ".popsection\n\t"

// One (start_ip, exit_ip) pair in __rseq_exit_point_array.
#define PMU_RSEQ_EXIT_POINT_ASM_(exit_label)           \
  ".pushsection __rseq_exit_point_array, \"aw?\"\n\t"  \
  ".quad 1f, " exit_label "\n\t"                       \
  ".popsection\n\t"

// Lists the descriptor of a ReadPages section (label 3) in the table the
// SIGSEGV handler of read_fault.h searches (pseudocode.h, kReadSectionTable).
#define PMU_RSEQ_READ_SECTION_TABLE_ASM_               \
  ".pushsection pmu_rseq_read_cs, \"aw?\"\n\t"         \
  ".balign 8\n\t"                                      \
  ".quad 3b\n\t"                                       \
  ".popsection\n\t"

// Operands every section takes: the thread's area and the expected CPU.
#define PMU_RSEQ_AREA_OPERANDS_                                            \
  [area] "r"(area), [cpu] "r"(cpu),                                        \
      [cs_off] "i"(offsetof(struct ::rseq, rseq_cs)),                      \
      [cpu_id_off] "i"(offsetof(struct ::rseq, cpu_id))

// Operands of PushWords<kWords> (ring control block and record).
#define PMU_RSEQ_RING_OPERANDS_                                            \
  [ring] "r"(ring), [src] "r"(src), [words] "i"(kWords),                   \
      [stride] "i"(kWords * 8), [head_off] "i"(offsetof(RingControl, head)), \
      [lock_off] "i"(offsetof(RingControl, lock)),                         \
      [mask_off] "i"(offsetof(RingControl, mask)),                         \
      [buf_off] "i"(offsetof(RingControl, buffer)),                        \
      [tail_off] "i"(offsetof(RingControl, tail))
// clang-format on

#define PMU_RSEQ_ARCH_DISPATCH_ 1
#if defined(__x86_64__)
#include "pmu/rseq/arch/x86_64.h"
#elif defined(__aarch64__)
#include "pmu/rseq/arch/aarch64.h"
#else
namespace pmu::rseq::detail::arch {
// Unsupported ISA: no critical sections; every primitive uses its fallback.
inline constexpr bool kSectionsSupported = false;
inline constexpr bool kHasCounterReadSection = false;
inline int AddU64(struct ::rseq*, std::uint32_t, std::uint64_t*, std::uint64_t) noexcept {
  return kSectionAborted;
}
template <std::size_t kWords>
int PushWords(struct ::rseq*, std::uint32_t, RingControl*, const std::uint64_t*) noexcept {
  return kSectionAborted;
}
template <bool kFakePmc>
int ReadPages(struct ::rseq*, std::uint32_t, ReadContext*) noexcept {
  return kSectionAborted;
}
inline std::uintptr_t SavedIp(const void*) noexcept { return 0; }
}  // namespace pmu::rseq::detail::arch
#endif
#undef PMU_RSEQ_ARCH_DISPATCH_
#undef PMU_RSEQ_DESCRIPTOR_ASM_
#undef PMU_RSEQ_EXIT_POINT_ASM_
#undef PMU_RSEQ_READ_SECTION_TABLE_ASM_
#undef PMU_RSEQ_AREA_OPERANDS_
#undef PMU_RSEQ_RING_OPERANDS_

#endif  // PMU_RSEQ_ARCH_H_
