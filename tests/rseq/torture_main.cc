// main() of the torture tests. Registers the membarrier fence while still
// single-threaded. With --pmu_rseq_child=all it is a child process started
// by a RseqTortureEnv test: it runs every scenario, checks the mode named by
// PMU_RSEQ_EXPECT_MODE and exits 0 (all passed) or 1.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "pmu/rseq/abi.h"
#include "pmu/rseq/membarrier.h"
#include "torture.h"

namespace pmu::rseq::torture {

int RunAllScenariosAsChild() {
  const std::string mode(ModeName(CurrentMode()));
  std::printf("[child] %.*s\n", static_cast<int>(ModeDescription().size()),
              ModeDescription().data());
  if (const char* want = std::getenv("PMU_RSEQ_EXPECT_MODE"); want != nullptr && mode != want) {
    std::printf("[child] FAIL: mode %s, expected %s\n", mode.c_str(), want);
    return 1;
  }
  Options options;
  options.seconds = ScenarioSeconds(1.0);
  int failures = 0;
  for (Report (*scenario)(const Options&) : {&RunCounter, &RunRing, &RunCounterRead}) {
    const Report r = scenario(options);
    std::printf("[child] %s %s\n", r.ok ? "ok" : "FAIL:", r.message.c_str());
    failures += r.ok ? 0 : 1;
  }
  std::fflush(stdout);
  return failures == 0 ? 0 : 1;
}

}  // namespace pmu::rseq::torture

int main(int argc, char** argv) {
  pmu::rseq::RegisterMembarrierRseq();
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--pmu_rseq_child=all") == 0) {
      return pmu::rseq::torture::RunAllScenariosAsChild();
    }
  }
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
