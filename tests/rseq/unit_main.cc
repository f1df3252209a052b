// main() of the rseq unit tests: registers the membarrier RSEQ fence while
// the process is still single-threaded, as the daemon does.
#include <gtest/gtest.h>

#include <cstdio>

#include "pmu/rseq/abi.h"
#include "pmu/rseq/membarrier.h"

int main(int argc, char** argv) {
  const bool fences = pmu::rseq::RegisterMembarrierRseq();
  std::printf("[rseq] %.*s; membarrier rseq fence %s\n",
              static_cast<int>(pmu::rseq::ModeDescription().size()),
              pmu::rseq::ModeDescription().data(), fences ? "registered" : "unavailable");
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
