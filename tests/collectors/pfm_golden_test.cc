// Golden tests of libpfm4 encoding for PMUs this machine does not have, made
// possible by LIBPFM_FORCE_PMU (set per test binary run by ctest). The
// expected raw configs are the vendors' documented encodings
// (umask << 8 | event select).
#include <gtest/gtest.h>
#include <linux/perf_event.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "pmu/collectors/pfm.h"

namespace pmu::collectors {
namespace {

struct Golden {
  const char* event;
  uint32_t type;
  uint64_t config;
};

void ExpectGolden(const char* pmu, std::initializer_list<Golden> cases) {
  const char* forced = std::getenv("LIBPFM_FORCE_PMU");
  if (forced == nullptr || std::string(forced) != pmu) {
    GTEST_SKIP() << "run with LIBPFM_FORCE_PMU=" << pmu << " (ctest does this)";
  }
  for (const auto& c : cases) {
    EncodeResult r = EncodeEvent(c.event);
    ASSERT_TRUE(r.ok) << c.event << ": " << r.error;
    EXPECT_EQ(r.attr.type, c.type) << c.event;
    EXPECT_EQ(r.attr.config, c.config) << c.event << " canonical " << r.canonical;
    EXPECT_EQ(r.attr.size, sizeof(perf_event_attr));
    // User and kernel levels by default.
    EXPECT_EQ(r.attr.exclude_user, 0u) << c.event;
    EXPECT_EQ(r.attr.exclude_kernel, 0u) << c.event;
  }
}

TEST(PfmGoldenIcl, IceLakeEvents) {
  ExpectGolden("icl",
               {
                   {"INST_RETIRED.ANY", PERF_TYPE_RAW, 0x100},  // fixed counter 0 pseudo-encoding
                   {"LONGEST_LAT_CACHE.MISS", PERF_TYPE_RAW, 0x412e},
                   {"BR_MISP_RETIRED.ALL_BRANCHES", PERF_TYPE_RAW, 0x00c5},
                   {"BR_INST_RETIRED.ALL_BRANCHES", PERF_TYPE_RAW, 0x00c4},
               });
}

TEST(PfmGoldenZen3, Zen3Events) {
  ExpectGolden("amd64_fam19h_zen3",
               {
                   {"RETIRED_INSTRUCTIONS", PERF_TYPE_RAW, 0xc0},
                   {"RETIRED_BRANCH_INSTRUCTIONS", PERF_TYPE_RAW, 0xc2},
                   {"RETIRED_BRANCH_INSTRUCTIONS_MISPREDICTED", PERF_TYPE_RAW, 0xc3},
               });
}

TEST(PfmEncoding, ModifiersOverrideDefaultLevels) {
  if (std::getenv("LIBPFM_FORCE_PMU") != nullptr) GTEST_SKIP() << "generic events only";
  EncodeResult u = EncodeEvent("cycles:u");
  ASSERT_TRUE(u.ok) << u.error;
  EXPECT_EQ(u.attr.exclude_user, 0u);
  EXPECT_EQ(u.attr.exclude_kernel, 1u);
  EncodeResult sw = EncodeEvent("context-switches");
  ASSERT_TRUE(sw.ok);
  EXPECT_EQ(sw.attr.type, static_cast<uint32_t>(PERF_TYPE_SOFTWARE));
  EXPECT_EQ(sw.attr.config, static_cast<uint64_t>(PERF_COUNT_SW_CONTEXT_SWITCHES));
  EncodeResult hw = EncodeEvent("instructions");
  ASSERT_TRUE(hw.ok);
  EXPECT_EQ(hw.attr.type, static_cast<uint32_t>(PERF_TYPE_HARDWARE));
  EXPECT_EQ(hw.attr.config, static_cast<uint64_t>(PERF_COUNT_HW_INSTRUCTIONS));
}

TEST(PfmEncoding, UnknownEventIsAnErrorNotACrash) {
  EncodeResult r = EncodeEvent("no_such_event_anywhere");
  EXPECT_FALSE(r.ok);
  EXPECT_FALSE(r.error.empty());
}

TEST(PfmListing, PerfGenericEventsAreListed) {
  if (std::getenv("LIBPFM_FORCE_PMU") != nullptr) GTEST_SKIP() << "generic events only";
  auto events = ListEvents("context_switches");
  bool found = false;
  for (const auto& e : events) found = found || e.name == "perf::PERF_COUNT_SW_CONTEXT_SWITCHES";
  EXPECT_TRUE(found);
}

// With debugfs mounted, libpfm4 copies the live tracepoint subsystems into
// its "perf" PMU; tracepoints come from tracefs under the resolver's root, so
// the wrapper leaves that copy out everywhere.
TEST(PfmListing, DebugfsTracepointsAreLeftOut) {
  if (access("/sys/kernel/debug/tracing/events/sched/sched_switch/id", R_OK) != 0) {
    GTEST_SKIP() << "no readable sched:sched_switch under /sys/kernel/debug/tracing (debugfs "
                    "not mounted): libpfm4 has no copy of the tracepoints to leave out";
  }
  for (const auto& e : ListEvents("")) {
    EXPECT_NE(e.description, "tracepoint") << e.name;
  }
  EXPECT_FALSE(EncodeEvent("sched:sched_switch").ok);
  EXPECT_EQ(FindEventPmu("sched:sched_swich"), "");
  EXPECT_EQ(FindEventPmu("perf::sched"), "");
}

}  // namespace
}  // namespace pmu::collectors
