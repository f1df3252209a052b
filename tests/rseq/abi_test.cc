#include "pmu/rseq/abi.h"

#include <gtest/gtest.h>
#include <sched.h>
#include <sys/rseq.h>

#include <string>
#include <thread>

namespace pmu::rseq {
namespace {

TEST(RseqAbi, ModeIsDecidedOnceAndDescribed) {
  const Mode mode = CurrentMode();
  EXPECT_EQ(mode, CurrentMode());
  const std::string description(ModeDescription());
  EXPECT_FALSE(description.empty());
  EXPECT_EQ(ModeName(Mode::kGlibc), "glibc");
  EXPECT_EQ(ModeName(Mode::kOwn), "own");
  EXPECT_EQ(ModeName(Mode::kUnavailable), "unavailable");
  if (mode == Mode::kUnavailable) {
    EXPECT_EQ(FeatureSize(), 0u);
    EXPECT_NE(description.find("unavailable"), std::string::npos);
  } else {
    EXPECT_GE(FeatureSize(), 20u);
  }
}

TEST(RseqAbi, GlibcModeMatchesRseqSize) {
  if (__rseq_size == 0) GTEST_SKIP() << "glibc did not register rseq in this process";
  EXPECT_EQ(CurrentMode(), Mode::kGlibc) << ModeDescription();
  EXPECT_EQ(FeatureSize(), 20u) << "__rseq_size=" << __rseq_size;
}

TEST(RseqAbi, CurrentCpuIsAValidIndex) {
  const int possible = PossibleCpuCount();
  ASSERT_GE(possible, 1);
  for (int i = 0; i < 1000; ++i) {
    const int cpu = CurrentCpu();
    ASSERT_GE(cpu, 0);
    ASSERT_LT(cpu, possible);
  }
}

TEST(RseqAbi, CurrentCpuFollowsAffinity) {
  cpu_set_t old_set;
  ASSERT_EQ(sched_getaffinity(0, sizeof(old_set), &old_set), 0);
  int checked = 0;
  for (int cpu = 0; cpu < PossibleCpuCount(); ++cpu) {
    if (!CPU_ISSET(static_cast<std::size_t>(cpu), &old_set)) continue;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(static_cast<std::size_t>(cpu), &one);
    if (sched_setaffinity(0, sizeof(one), &one) != 0) continue;
    EXPECT_EQ(CurrentCpu(), cpu);
    ++checked;
  }
  ASSERT_EQ(sched_setaffinity(0, sizeof(old_set), &old_set), 0);
  if (checked == 0) GTEST_SKIP() << "could not pin this thread to any CPU";
}

TEST(RseqAbi, ThreadRegistrationInNewThread) {
  bool active = false;
  bool ensured = false;
  std::thread t([&] {
    ThreadRegistration registration;
    active = registration.active();
    ensured = EnsureRegistered();
  });
  t.join();
  const bool expected = CurrentMode() != Mode::kUnavailable;
  EXPECT_EQ(active, expected) << ModeDescription();
  EXPECT_EQ(ensured, expected);
}

}  // namespace
}  // namespace pmu::rseq
