// The text exposition: our writer against prometheus-cpp's TextSerializer as
// the reference, escaping, number spelling, empty families, and what the
// standard families make of an aggregator's snapshot.
#include "pmu/metrics/exposition.h"

#include <gtest/gtest.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <map>
#include <sstream>

#include "plans.h"
#include "pmu/metrics/family_source.h"
#include "pmu/sampling/aggregator.h"
#include "test_support.h"

namespace pmu::metrics {
namespace {

using testing::Reading;
using testing::RunCommand;
using testing::RunResult;
using testing::TwoEventPlan;

ExportSnapshot Export(const sampling::Aggregator& agg) {
  auto snapshot = std::make_shared<sampling::Snapshot>();
  sampling::AggregateSnapshot counters = agg.TakeSnapshot();
  snapshot->plan = counters.plan;
  snapshot->counters = std::move(counters.cpus);
  ExportSnapshot out;
  out.sampling = std::move(snapshot);
  return out;
}

TEST(Exposition, FamiliesWithoutSamplesWriteNothing) {
  std::string text;
  TextWriter writer(text);
  writer.Family("empty", "no samples", MetricType::kCounter);
  writer.Family("one", "one sample", MetricType::kGauge);
  writer.Sample({}, 1);
  EXPECT_EQ(text, "# HELP one one sample\n# TYPE one gauge\none 1\n");
  SeriesCounter counter;
  counter.Family("empty", "", MetricType::kCounter);
  counter.Family("h", "", MetricType::kHistogram);
  counter.HistogramSample({}, sampling::Histogram({1, 2}));
  EXPECT_EQ(counter.total(), 5u);  // three buckets, _sum, _count
  ASSERT_EQ(counter.families().size(), 1u);
  EXPECT_EQ(counter.families()[0].first, "h");
}

TEST(Exposition, StarvedGroupsAreExportedPerCpu) {
  sampling::Aggregator agg(TwoEventPlan(), 1);
  agg.Ingest(Reading(0, 1, 10, 10, 1000, 1000));
  const std::string text = RenderText(Export(agg));
  EXPECT_NE(text.find("pmu_event_group_starved{cpu=\"0\",group=\"g\"} 0"), std::string::npos)
      << text;
}

// Our text writer against prometheus-cpp's TextSerializer as the reference:
// the same lines, label escaping and special values included (number
// formatting may differ in spelling, not in value).
TEST(Exposition, TextWriterAgreesWithPrometheusCppAndEscapesHelp) {
  using prometheus::ClientMetric;
  using prometheus::MetricFamily;
  std::vector<MetricFamily> families(3);
  families[0].name = "a_total";
  families[0].help = "help with \\ backslash\nand newline";
  families[0].type = prometheus::MetricType::Counter;
  ClientMetric c;
  c.label = {{"cpu", "0"}, {"event", "quote\" back\\ nl\n"}};
  c.counter.value = 1234567890123.0;
  families[0].metric.push_back(c);
  c.label = {};
  c.counter.value = 0.1;
  families[0].metric.push_back(c);
  families[1].name = "g";
  families[1].help = "gauge";
  families[1].type = prometheus::MetricType::Gauge;
  ClientMetric g;
  g.label = {{"k", "nan"}};
  g.gauge.value = std::numeric_limits<double>::quiet_NaN();
  families[1].metric.push_back(g);
  g.label = {{"k", "inf"}};
  g.gauge.value = -std::numeric_limits<double>::infinity();
  families[1].metric.push_back(g);
  families[2].name = "h";
  families[2].help = "histogram";
  families[2].type = prometheus::MetricType::Histogram;
  ClientMetric h;
  h.label = {{"cpu", "1"}};
  h.histogram.sample_count = 3;
  h.histogram.sample_sum = 0.1 + 0.5 + 1.15;
  h.histogram.bucket = {{1, 0.25}, {2, 1}, {3, std::numeric_limits<double>::infinity()}};
  families[2].metric.push_back(h);

  std::ostringstream reference;
  prometheus::TextSerializer().Serialize(reference, families);
  // Sample lines as key -> value (prometheus-cpp orders a histogram's lines
  // differently and spells NaN "Nan"; values must agree exactly).
  auto samples = [](const std::string& text) {
    std::map<std::string, double> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
      // Skips comments and the stray second half of prometheus-cpp's HELP.
      if (line.empty() || line[0] == '#' || line.rfind("and ", 0) == 0) continue;
      const size_t sp = line.rfind(' ');
      out[line.substr(0, sp)] = std::strtod(line.c_str() + sp + 1, nullptr);
    }
    return out;
  };
  // The same families through our writer.
  std::string ours_text;
  TextWriter writer(ours_text);
  writer.Family("a_total", families[0].help, MetricType::kCounter);
  writer.Sample({{"cpu", "0"}, {"event", "quote\" back\\ nl\n"}}, 1234567890123.0);
  writer.Sample({}, 0.1);
  writer.Family("g", "gauge", MetricType::kGauge);
  writer.Sample({{"k", "nan"}}, std::numeric_limits<double>::quiet_NaN());
  writer.Sample({{"k", "inf"}}, -std::numeric_limits<double>::infinity());
  writer.Family("h", "histogram", MetricType::kHistogram);
  sampling::Histogram h_ours({0.25, 1});
  for (double v : {0.1, 0.5, 1.15}) h_ours.Observe(v);
  writer.HistogramSample({{"cpu", "1"}}, h_ours);
  const auto ours = samples(ours_text);
  const auto theirs = samples(reference.str());
  ASSERT_EQ(ours.size(), 9u) << ours_text;
  ASSERT_EQ(ours.size(), theirs.size()) << ours_text << "\n---\n" << reference.str();
  for (const auto& [key, value] : theirs) {
    auto it = ours.find(key);
    ASSERT_NE(it, ours.end()) << key << " missing from:\n" << ours_text;
    if (std::isnan(value)) {
      EXPECT_TRUE(std::isnan(it->second)) << key;
    } else {
      EXPECT_EQ(it->second, value) << key;
    }
  }
  // HELP escapes backslash and newline as the text format requires
  // (prometheus-cpp 1.0.1 writes them raw, breaking the line).
  EXPECT_NE(ours_text.find("# HELP a_total help with \\\\ backslash\\nand newline\n"),
            std::string::npos)
      << ours_text;
  // Numeric label values are spelt as the Go client spells them.
  std::string bounds_text;
  TextWriter bounds_writer(bounds_text);
  bounds_writer.Family("b", "bounds", MetricType::kHistogram);
  bounds_writer.HistogramSample({}, sampling::Histogram({1e-05, 0.0002, 0.25, 100, 123456, 1e6}));
  for (const char* le : {"le=\"0.0002\"", "le=\"1e-05\"", "le=\"0.25\"", "le=\"100\"",
                         "le=\"1e+06\"", "le=\"123456\""}) {
    EXPECT_NE(bounds_text.find(le), std::string::npos) << le << " in\n" << bounds_text;
  }
  RunResult check = RunCommand({"promtool", "check", "metrics"}, ours_text);
  EXPECT_EQ(check.status, 0) << check.out << check.err;
}

TEST(Exposition, UnsupportedEventsAreNeverExportedAsCounts) {
  sampling::Aggregator agg(TwoEventPlan(), 1);
  agg.Ingest(Reading(0, 1, 100, 10, 1000, 1000));
  const std::string text = RenderText(Export(agg));
  EXPECT_NE(text.find("pmu_event_supported{event=\"hw\",reason=\"unsupported\"} 0"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("pmu_events_total{cpu=\"0\",event=\"a\"} 100"), std::string::npos) << text;
  EXPECT_EQ(text.find("pmu_events_total{cpu=\"0\",event=\"hw\"}"), std::string::npos) << text;
  EXPECT_NE(text.find("pmu_exporter_build_info{"), std::string::npos);
}

}  // namespace
}  // namespace pmu::metrics
