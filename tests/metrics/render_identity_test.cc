// The text exposition stays byte-identical when its writer gets faster:
//   - a fixed snapshot (units, package/die labels, pmu labels, label values
//     that need escaping, unsupported events, multiplexed and whole counts,
//     starved groups) renders exactly as tests/data/exposition/events.prom,
//     which was written by the renderer before the per-series label sets
//     (the build_info line, which carries this build's revision, is left
//     out of the comparison);
//   - the prepared-label fast path of TextWriter writes the same bytes as
//     the generic per-sample path (FamilyWriter's default forwarding) on
//     that snapshot and on a synthetic 64 CPUs x 16 events one.
// PMU_WRITE_GOLDEN=<path> writes the fixed snapshot's exposition there.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "plans.h"
#include "pmu/metrics/exposition.h"
#include "pmu/metrics/family_source.h"
#include "pmu/metrics/rendered.h"

namespace pmu::metrics {
namespace {

using testing::PlannedEventOf;

ExportSnapshot FixedSnapshot() {
  auto plan = std::make_shared<collectors::EventPlan>();
  plan->events = {PlannedEventOf("tsc", "msr", false),
                  PlannedEventOf("energy", "power", true, 2.3283064365386962890625e-10, "Joules"),
                  PlannedEventOf("dram_read", "uncore_imc_0", true, 6.103515625e-5, "MiB"),
                  PlannedEventOf("cs", "", false),
                  PlannedEventOf("quote\"back\\slash\nline", "", false),
                  PlannedEventOf("busy_ns", "", false, 1, "ns"),
                  PlannedEventOf("cycles", "cpu", false, 1, "", /*supported=*/false)};
  collectors::PlannedGroup g0;
  g0.name = "g0";
  collectors::PlannedGroup g1;
  g1.name = "uncore";
  plan->groups = {g0, g1};
  plan->locations = {{0, {0, 0}}, {1, {0, 0}}, {2, {1, 0}}, {3, {1, 0}}};
  auto snap = std::make_shared<sampling::Snapshot>();
  snap->plan = plan;
  for (int cpu = 0; cpu < 4; ++cpu) {
    sampling::CpuTotals t;
    t.cpu = cpu;
    for (size_t e = 0; e < plan->events.size(); ++e) {
      sampling::EventTotals v;
      v.seen = !(cpu == 1 && e == 1);
      v.exact = uint64_t{1000003} * static_cast<uint64_t>(cpu + 1) * (e + 1) + (e == 3 ? 7 : 0);
      v.scaled = cpu == 2 ? 1234.5678 * static_cast<double>(e) : 0;
      v.enabled_ns = 3'000'000'000ull + 17 * static_cast<uint64_t>(cpu);
      v.running_ns = cpu == 2 ? 2'250'000'000ull : v.enabled_ns;
      v.last_running_ratio = cpu == 2 ? 0.75 : 1;
      v.samples = 3;
      t.events.push_back(v);
    }
    t.group_starved = {cpu == 3, false};
    snap->counters.push_back(std::move(t));
  }
  ExportSnapshot out;
  out.sampling = std::move(snap);
  return out;
}

// The synthetic plan of bench/scale (M events in groups of 8, N CPUs), with
// values as its source writes them after three rounds.
ExportSnapshot SyntheticSnapshot(int cpus, size_t events) {
  auto plan = std::make_shared<collectors::EventPlan>();
  for (size_t g = 0; g < (events + 7) / 8; ++g) {
    collectors::PlannedGroup group;
    group.name = "group" + std::to_string(g);
    plan->groups.push_back(group);
  }
  for (size_t e = 0; e < events; ++e) {
    plan->events.push_back(PlannedEventOf("synthetic_event_" + std::to_string(e), "", false));
  }
  auto snap = std::make_shared<sampling::Snapshot>();
  snap->plan = plan;
  for (int cpu = 0; cpu < cpus; ++cpu) {
    sampling::CpuTotals t;
    t.cpu = cpu;
    for (size_t e = 0; e < events; ++e) {
      sampling::EventTotals v;
      v.seen = true;
      v.scaled = static_cast<double>(2 * (1000 + static_cast<size_t>(cpu) * 37 + e)) * 4.0 / 3.0;
      v.enabled_ns = 2'000'000'000;
      v.running_ns = 1'500'000'000;
      v.last_running_ratio = 0.75;
      v.samples = 2;
      t.events.push_back(v);
    }
    t.group_starved.assign(plan->groups.size(), false);
    snap->counters.push_back(std::move(t));
  }
  ExportSnapshot out;
  out.sampling = std::move(snap);
  return out;
}

// Only the generic interface: every prepared sample goes through
// FamilyWriter's default forwarding to Sample(span<Label>).
class GenericOnly final : public FamilyWriter {
 public:
  explicit GenericOnly(std::string& out) : text_(out) {}
  void Family(std::string_view name, std::string_view help, MetricType type) override {
    text_.Family(name, help, type);
  }
  void Sample(std::span<const Label> labels, double value) override { text_.Sample(labels, value); }
  void HistogramSample(std::span<const Label> labels, const sampling::Histogram& h) override {
    text_.HistogramSample(labels, h);
  }
  using FamilyWriter::HistogramSample;
  using FamilyWriter::Sample;

 private:
  TextWriter text_;
};

std::string RenderGeneric(const ExportSnapshot& snapshot) {
  std::string out;
  GenericOnly writer(out);
  StandardRegistry().Write(snapshot, writer);
  return out;
}

// The exposition without the build_info line.
std::string WithoutBuildInfo(const std::string& text) {
  std::istringstream in(text);
  std::string line;
  std::string out;
  while (std::getline(in, line)) {
    if (line.rfind("pmu_exporter_build_info{", 0) == 0) continue;
    out += line;
    out += '\n';
  }
  return out;
}

TEST(RenderIdentity, FixedSnapshotMatchesTheGoldenExposition) {
  const std::string text = WithoutBuildInfo(RenderText(FixedSnapshot()));
  if (const char* path = std::getenv("PMU_WRITE_GOLDEN")) {
    std::ofstream(path) << text;
  }
  std::ifstream in(std::string(PMU_TEST_DATA_DIR) + "/exposition/events.prom");
  ASSERT_TRUE(in) << "missing tests/data/exposition/events.prom";
  std::stringstream golden;
  golden << in.rdbuf();
  EXPECT_EQ(text, golden.str());
}

TEST(RenderIdentity, FastPathWritesWhatTheGenericPathWrites) {
  for (const ExportSnapshot& snapshot : {FixedSnapshot(), SyntheticSnapshot(64, 16)}) {
    std::string fast;
    RenderTextInto(snapshot, fast);
    EXPECT_EQ(fast, RenderGeneric(snapshot));
    EXPECT_GT(fast.size(), 1000u);
  }
}

}  // namespace
}  // namespace pmu::metrics
