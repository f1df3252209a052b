// The event families: labels per scope (cpu, or pmu + package/die for unit
// events), sysfs units exported in their own family with the scale applied,
// and unit-event series that stay continuous when the kernel moves an uncore
// event to another CPU of the die.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>

#include "plans.h"
#include "pmu/metrics/exposition.h"
#include "pmu/metrics/family_source.h"

namespace pmu::metrics {
namespace {

using Labels = std::map<std::string, std::string>;

using testing::PlannedEventOf;

sampling::CpuTotals Cpu(int cpu, const std::vector<uint64_t>& counts) {
  sampling::CpuTotals t;
  t.cpu = cpu;
  for (uint64_t c : counts) {
    sampling::EventTotals e;
    e.seen = c > 0;
    e.exact = c;
    e.samples = c > 0 ? 1 : 0;
    t.events.push_back(e);
  }
  return t;
}

FamilyCollector Write(std::shared_ptr<collectors::EventPlan> plan,
                      std::vector<sampling::CpuTotals> cpus) {
  auto snap = std::make_shared<sampling::Snapshot>();
  snap->plan = plan;
  snap->counters = std::move(cpus);
  ExportSnapshot e;
  e.sampling = snap;
  FamilyCollector out;
  EventFamilies()->Write(e, out);
  return out;
}

TEST(EventFamilies, UnitsAndDieLabels) {
  auto plan = std::make_shared<collectors::EventPlan>();
  plan->events = {PlannedEventOf("tsc", "msr", false),
                  PlannedEventOf("energy", "power", true, 2.3283064365386962890625e-10, "Joules"),
                  PlannedEventOf("dram_read", "uncore_imc_0", true, 6.103515625e-5, "MiB"),
                  PlannedEventOf("cs", "", false)};
  // Two packages: CPUs 0,1 in package 0, CPUs 2,3 in package 1.
  plan->locations = {{0, {0, 0}}, {1, {0, 0}}, {2, {1, 0}}, {3, {1, 0}}};
  const auto out = Write(plan, {Cpu(0, {1000, 1ull << 32, 16384, 7}), Cpu(1, {1001, 0, 0, 8}),
                                Cpu(2, {1002, 2ull << 32, 32768, 9})});
  EXPECT_EQ(out.Value("pmu_events_total", Labels{{"cpu", "1"}, {"event", "tsc"}, {"pmu", "msr"}}),
            1001);
  EXPECT_EQ(out.Value("pmu_events_total", Labels{{"cpu", "2"}, {"event", "cs"}}), 9);
  // 2^32 increments of 2^-32 J = 1 J, in a joules counter with package/die.
  EXPECT_DOUBLE_EQ(
      *out.Value("pmu_event_joules_total",
                 Labels{{"die", "0"}, {"event", "energy"}, {"package", "0"}, {"pmu", "power"}}),
      1.0);
  EXPECT_DOUBLE_EQ(
      *out.Value("pmu_event_joules_total",
                 Labels{{"die", "0"}, {"event", "energy"}, {"package", "1"}, {"pmu", "power"}}),
      2.0);
  // 16384 x 6.103515625e-5 MiB = 1 MiB = 1048576 bytes.
  EXPECT_DOUBLE_EQ(
      *out.Value(
          "pmu_event_bytes_total",
          Labels{{"die", "0"}, {"event", "dram_read"}, {"package", "0"}, {"pmu", "uncore_imc_0"}}),
      1048576.0);
  // Unit events appear in no cpu-labelled series and not in pmu_events_total.
  for (const auto& s : out.Find("pmu_events_total")->samples) {
    EXPECT_NE(s.labels.at("event"), "energy");
  }
  EXPECT_EQ(out.Find("pmu_event_joules_total")->samples.size(), 2u);
}

TEST(EventFamilies, UnitSeriesSurvivesAMoveWithinTheDie) {
  auto plan = std::make_shared<collectors::EventPlan>();
  plan->events = {PlannedEventOf("energy", "power", true, 1, "Joules")};
  plan->locations = {{0, {0, 0}}, {1, {0, 0}}};
  // The event counted 10 J on CPU 0, which went offline; the kernel's
  // cpumask moved it to CPU 1, which counted 5 J since: one series, 15 J.
  const auto out = Write(plan, {Cpu(0, {10}), Cpu(1, {5})});
  const auto* family = out.Find("pmu_event_joules_total");
  ASSERT_NE(family, nullptr);
  ASSERT_EQ(family->samples.size(), 1u);
  EXPECT_DOUBLE_EQ(family->samples[0].value, 15.0);
}

}  // namespace
}  // namespace pmu::metrics
