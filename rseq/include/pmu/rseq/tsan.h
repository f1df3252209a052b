// ThreadSanitizer annotations for the commits TSan cannot see (they are
// stores inside inline assembly). A committed section "releases" the word it
// committed; the consumer "acquires" it after its acquire load, which gives
// TSan the happens-before edge the hardware already provides. Empty in
// builds without TSan.
#ifndef PMU_RSEQ_TSAN_H_
#define PMU_RSEQ_TSAN_H_

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#endif

namespace pmu::rseq::detail {

inline void TsanRelease([[maybe_unused]] const void* addr) noexcept {
#if defined(__SANITIZE_THREAD__)
  __tsan_release(const_cast<void*>(addr));
#endif
}

inline void TsanAcquire([[maybe_unused]] const void* addr) noexcept {
#if defined(__SANITIZE_THREAD__)
  __tsan_acquire(const_cast<void*>(addr));
#endif
}

}  // namespace pmu::rseq::detail

#endif  // PMU_RSEQ_TSAN_H_
