// Where unit events are opened: once per unit on the CPU the PMU's cpumask
// lists, and after hotplug on the CPU the kernel moved them to.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <tuple>

#include "fake_host.h"
#include "fake_perf.h"
#include "log_capture.h"
#include "pmu/sampling/pipeline.h"

namespace pmu::sampling {
namespace {

namespace fs = std::filesystem;

// (type, cpu) of the opens since `from`.
std::multiset<std::pair<uint32_t, int>> OpensSince(testing::FakePerf& perf, size_t from) {
  std::multiset<std::pair<uint32_t, int>> out;
  const auto all = perf.opened();
  for (size_t i = from; i < all.size(); ++i) {
    out.insert({std::get<0>(all[i]), std::get<2>(all[i])});
  }
  return out;
}

TEST(Placement, UncoreOpensOncePerUnitAndFollowsTheCpumask) {
  testing::LogCapture quiet;
  testing::FakeHost host;
  // The Intel server's PMUs and topology (4 CPUs, 2 packages, cpumask 0,2).
  fs::copy(std::string(PMU_TEST_DATA_DIR) + "/sysfs-intel-server/sys", host.root() + "/sys",
           fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  const std::string cpumask = host.root() + "/sys/bus/event_source/devices/uncore_imc_0/cpumask";
  testing::FakePerf perf;
  config::Config config = config::DefaultConfig();
  config.events = {{"imc", "uncore_imc_0/cas_count_read/", "", 0, 0},
                   {"cs", "context-switches", "", 0, 0}};
  PipelineOptions options;
  options.root = host.root();
  const size_t before = perf.opened().size();
  Pipeline pipeline(config, perf, options, nullptr);
  auto opens = OpensSince(perf, before);
  // Probe on cpu 0, then one per package; context-switches on all four.
  EXPECT_EQ(opens.count({13, 0}), 2u);
  EXPECT_EQ(opens.count({13, 1}), 0u);
  EXPECT_EQ(opens.count({13, 2}), 1u);
  EXPECT_EQ(opens.count({13, 3}), 0u);
  EXPECT_EQ(opens.count({PERF_TYPE_SOFTWARE, 3}), 1u);
  pipeline.SampleNow();

  // CPU 0 goes offline; the kernel moves package 0's uncore events to CPU 1.
  std::ofstream(cpumask) << "1,2\n";
  host.SetOnline("1-3");
  const size_t mark = perf.opened().size();
  pipeline.SampleNow();
  opens = OpensSince(perf, mark);
  EXPECT_EQ(opens.count({13, 1}), 1u);  // followed the mask
  EXPECT_EQ(opens.count({13, 2}), 0u);  // package 1 untouched
  EXPECT_EQ(opens.count({13, 3}), 0u);
  pipeline.SampleNow();
  const auto snapshot = pipeline.latest();
  ASSERT_NE(snapshot, nullptr);
  bool cpu1_counts_imc = false;
  for (const auto& cpu : snapshot->counters) {
    if (cpu.cpu == 1) cpu1_counts_imc = cpu.events.at(0).seen;
  }
  EXPECT_TRUE(cpu1_counts_imc);
}

}  // namespace
}  // namespace pmu::sampling
