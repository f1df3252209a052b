// Test helper: pins the calling thread to the CPU it is running on for the
// life of the object and restores its affinity afterwards.
#ifndef PMU_TESTS_RSEQ_SCOPED_PIN_H_
#define PMU_TESTS_RSEQ_SCOPED_PIN_H_

#include <sched.h>

#include <cstddef>

#include "pmu/rseq/abi.h"

namespace pmu::rseq::testing {

class ScopedPinHere {
 public:
  ScopedPinHere() {
    sched_getaffinity(0, sizeof(old_), &old_);
    cpu_ = CurrentCpu();
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(static_cast<std::size_t>(cpu_), &one);
    pinned_ = sched_setaffinity(0, sizeof(one), &one) == 0;
  }
  ~ScopedPinHere() { sched_setaffinity(0, sizeof(old_), &old_); }
  ScopedPinHere(const ScopedPinHere&) = delete;
  ScopedPinHere& operator=(const ScopedPinHere&) = delete;

  bool pinned() const { return pinned_; }
  int cpu() const { return cpu_; }

 private:
  cpu_set_t old_;
  int cpu_ = 0;
  bool pinned_ = false;
};

}  // namespace pmu::rseq::testing

#endif  // PMU_TESTS_RSEQ_SCOPED_PIN_H_
