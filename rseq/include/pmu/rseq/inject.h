// Delay-injection hooks for the torture tests.
//
// In builds with PMU_TEST_HOOKS=1 every critical section spins for
// pmu_rseq_inject_loops[step] iterations at each numbered step below, which
// widens the window in which preemption, migration and signals hit the
// section. In normal builds (the daemon's library) the hooks expand to
// nothing: no code, no data access.
//
// Thread safety: tests set the loop counts with SetInjectLoops() from any
// thread; sections read them with plain loads (a stale value only changes
// how long a section spins).
#ifndef PMU_RSEQ_INJECT_H_
#define PMU_RSEQ_INJECT_H_

#include <cstdint>

namespace pmu::rseq {

// Steps inside the sections where a delay can be injected.
enum class InjectStep : int {
  kAfterCpuCompare = 0,  // every section, right after cpu_id == expected
  kBeforeCommit = 1,     // every section, right before the commit store
  kRingAfterRoomCheck = 2,
  kRingMidCopy = 3,
  kReadAfterLock = 4,  // counter-read: after the first seqlock load
  kReadBeforeRecheck = 5,
  kCount = 6,
};

// True when this build compiled the hooks in.
inline constexpr bool kInjectionCompiledIn =
#if defined(PMU_TEST_HOOKS) && PMU_TEST_HOOKS
    true;
#else
    false;
#endif

// Sets the busy-loop count for one step (0 disables it). No effect when the
// hooks are compiled out.
void SetInjectLoops(InjectStep step, std::uint32_t loops) noexcept;

}  // namespace pmu::rseq

#if defined(PMU_TEST_HOOKS) && PMU_TEST_HOOKS
extern "C" __attribute__((visibility("hidden"))) volatile std::uint32_t pmu_rseq_inject_loops[];
#endif

// PMU_RSEQ_INJECT_ASM(step): assembly text for one injection point. The
// sections list the scratch register as clobbered in every build, so the
// operand lists do not depend on the hooks.
#if defined(PMU_TEST_HOOKS) && PMU_TEST_HOOKS
#if defined(__x86_64__)
#define PMU_RSEQ_INJECT_ASM(step)       \
  "movl pmu_rseq_inject_loops+4*" #step \
  "(%%rip), %%eax\n\t"                  \
  "testl %%eax, %%eax\n\t"              \
  "jz 222f\n\t"                         \
  "221: decl %%eax\n\t"                 \
  "jnz 221b\n\t"                        \
  "222:\n\t"
#elif defined(__aarch64__)
#define PMU_RSEQ_INJECT_ASM(step)                 \
  "adrp x17, pmu_rseq_inject_loops\n\t"           \
  "add x17, x17, :lo12:pmu_rseq_inject_loops\n\t" \
  "ldr w17, [x17, #4*" #step                      \
  "]\n\t"                                         \
  "cbz w17, 222f\n\t"                             \
  "221: subs w17, w17, #1\n\t"                    \
  "b.ne 221b\n\t"                                 \
  "222:\n\t"
#else
#define PMU_RSEQ_INJECT_ASM(step) ""
#endif
#else
#define PMU_RSEQ_INJECT_ASM(step) ""
#endif

#endif  // PMU_RSEQ_INJECT_H_
