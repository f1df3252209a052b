// The exposition model: family sources write metric families into a
// FamilyWriter, which renders them (TextWriter: the Prometheus text format
// 0.0.4), counts their series (SeriesCounter: the cardinality guard) or
// keeps them for inspection (FamilyCollector: tests, --check-config).
//
// A family is announced with Family() and followed by its samples; a family
// without samples writes nothing (no HELP/TYPE lines). Samples of one family
// are written one after the other; families are not interleaved.
//
// Thread safety: a writer belongs to one thread for the duration of one
// exposition.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pmu/sampling/histogram.h"

namespace pmu::metrics {

enum class MetricType { kCounter, kGauge, kHistogram };
std::string_view TypeName(MetricType type);

struct Label {
  std::string_view name;
  std::string_view value;
};

// A series' labels spelt once for the text format ({a="x",b="y"}, values
// escaped; empty for no labels), for a series written in several families:
// the text writer copies `text` instead of escaping and joining the labels
// again. Views only: what they point to outlives the writes.
struct PreparedLabels {
  std::span<const Label> labels;
  std::string_view text;
};

// Appends the text format's spelling of `labels` (what PreparedLabels::text
// holds) to `out`.
void AppendLabelText(std::string& out, std::span<const Label> labels);

class FamilyWriter {
 public:
  virtual ~FamilyWriter() = default;
  // Starts a family; `help` is written escaped.
  virtual void Family(std::string_view name, std::string_view help, MetricType type) = 0;
  // A counter or gauge sample of the current family.
  virtual void Sample(std::span<const Label> labels, double value) = 0;
  // A histogram sample of the current family: one _bucket series per bound
  // and +Inf (cumulative), _sum and _count.
  virtual void HistogramSample(std::span<const Label> labels, const sampling::Histogram& h) = 0;
  // A counter or gauge sample with labels spelt beforehand; the same as
  // Sample(labels.labels, value) (the default does just that).
  virtual void Sample(const PreparedLabels& labels, double value) { Sample(labels.labels, value); }

  void Sample(std::initializer_list<Label> labels, double value) {
    Sample(std::span<const Label>(labels.begin(), labels.size()), value);
  }
  void HistogramSample(std::initializer_list<Label> labels, const sampling::Histogram& h) {
    HistogramSample(std::span<const Label>(labels.begin(), labels.size()), h);
  }
};

// Appends the text format to a string. Numbers are written with the
// shortest representation that reads back exactly; `le` bounds as the Go
// client spells them ("0.0002", "1e-05", "1e+06").
class TextWriter final : public FamilyWriter {
 public:
  explicit TextWriter(std::string& out) : out_(out) {}
  void Family(std::string_view name, std::string_view help, MetricType type) override;
  void Sample(std::span<const Label> labels, double value) override;
  void HistogramSample(std::span<const Label> labels, const sampling::Histogram& h) override;
  void Sample(const PreparedLabels& labels, double value) override;
  using FamilyWriter::HistogramSample;
  using FamilyWriter::Sample;

 private:
  void Header();

  std::string& out_;
  std::string name_;
  std::string help_;
  MetricType type_ = MetricType::kGauge;
  bool header_written_ = true;
};

// Counts the series lines a TextWriter would write, per family.
class SeriesCounter final : public FamilyWriter {
 public:
  void Family(std::string_view name, std::string_view help, MetricType type) override;
  void Sample(std::span<const Label> labels, double value) override;
  void HistogramSample(std::span<const Label> labels, const sampling::Histogram& h) override;
  using FamilyWriter::HistogramSample;
  using FamilyWriter::Sample;

  size_t total() const { return total_; }
  // Series per family name, in the order the families were written; only
  // families with at least one series.
  const std::vector<std::pair<std::string, size_t>>& families() const { return families_; }

 private:
  void Count(size_t series);

  std::string name_;
  bool counted_ = false;
  size_t total_ = 0;
  std::vector<std::pair<std::string, size_t>> families_;
};

// Keeps the families as values.
class FamilyCollector final : public FamilyWriter {
 public:
  struct CollectedSample {
    std::map<std::string, std::string> labels;
    double value = 0;                              // counters and gauges
    std::optional<sampling::Histogram> histogram;  // histograms
  };
  struct CollectedFamily {
    std::string name;
    std::string help;
    MetricType type = MetricType::kGauge;
    std::vector<CollectedSample> samples;
  };

  void Family(std::string_view name, std::string_view help, MetricType type) override;
  void Sample(std::span<const Label> labels, double value) override;
  void HistogramSample(std::span<const Label> labels, const sampling::Histogram& h) override;
  using FamilyWriter::HistogramSample;
  using FamilyWriter::Sample;

  // Only families with at least one sample.
  const std::vector<CollectedFamily>& families() const { return families_; }
  const CollectedFamily* Find(std::string_view name) const;
  // The sample of family `name` whose labels are exactly `labels`.
  const CollectedSample* Find(std::string_view name,
                              const std::map<std::string, std::string>& labels) const;
  std::optional<double> Value(std::string_view name,
                              const std::map<std::string, std::string>& labels = {}) const;

 private:
  CollectedSample& Add(std::span<const Label> labels);

  CollectedFamily pending_;
  bool pending_open_ = false;
  std::vector<CollectedFamily> families_;
};

}  // namespace pmu::metrics
