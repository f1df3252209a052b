#include "pmu/rseq/inject.h"

#if defined(PMU_TEST_HOOKS) && PMU_TEST_HOOKS
extern "C" {
__attribute__((visibility("hidden"))) volatile std::uint32_t
    pmu_rseq_inject_loops[static_cast<int>(pmu::rseq::InjectStep::kCount)] = {};
}
#endif

namespace pmu::rseq {

void SetInjectLoops([[maybe_unused]] InjectStep step,
                    [[maybe_unused]] std::uint32_t loops) noexcept {
#if defined(PMU_TEST_HOOKS) && PMU_TEST_HOOKS
  pmu_rseq_inject_loops[static_cast<int>(step)] = loops;
#endif
}

}  // namespace pmu::rseq
