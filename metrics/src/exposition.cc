#include "pmu/metrics/exposition.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>

namespace pmu::metrics {
namespace {

void AppendDouble(std::string& out, double v) {
  // Most values are whole counts: below 2^53 and without a trailing zero
  // digit their shortest round-trip form is their digits (scientific form is
  // longer), which integer formatting writes several times faster.
  if (v >= 0 && v < 9007199254740992.0 && !std::signbit(v) && v == std::floor(v)) {
    const auto whole = static_cast<uint64_t>(v);
    if (whole % 10 != 0 || whole == 0) {
      char buf[24];
      auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), whole);
      out.append(buf, ec == std::errc() ? end : buf);
      return;
    }
  }
  if (std::isnan(v)) {
    out += "NaN";
  } else if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
  } else {
    char buf[32];
    auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);  // shortest round trip
    out.append(buf, ec == std::errc() ? end : buf);
  }
}

// Label values that are numbers (le) are part of a series' identity, so they
// are spelt as the Go client spells them (strconv.FormatFloat(v, 'g', -1,
// 64)): shortest digits, scientific only when the exponent is below -4 or at
// least 6 ("0.0002", "1e-05", "1e+06").
void AppendLabelDouble(std::string& out, double v) {
  if (!std::isfinite(v)) {
    AppendDouble(out, v);
    return;
  }
  char buf[32];
  auto sci = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::scientific);
  // The exponent, within the digits written ("2e-04" -> -4, "1e+06" -> 6).
  const char* e = std::find(buf, sci.ptr, 'e');
  int exponent = 0;
  if (e != sci.ptr) {
    const char* digits = e + 1 + (e[1] == '+' ? 1 : 0);
    std::from_chars(digits, sci.ptr, exponent);
  }
  if (exponent < -4 || exponent >= 6) {
    out.append(buf, sci.ptr);
    return;
  }
  auto fixed = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::fixed);
  out.append(buf, fixed.ptr);
}

void AppendEscaped(std::string& out, std::string_view text, bool quotes) {
  // Almost every label value and help text needs no escaping: append whole.
  if (text.find_first_of(quotes ? "\\\n\"" : "\\\n") == std::string_view::npos) {
    out += text;
    return;
  }
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (quotes && c == '"') {
      out += "\\\"";
    } else {
      out += c;
    }
  }
}

void AppendLabelPairs(std::string& out, std::span<const Label> labels) {
  bool first = true;
  for (const Label& l : labels) {
    if (!first) out += ',';
    first = false;
    out += l.name;
    out += "=\"";
    AppendEscaped(out, l.value, true);
    out += '"';
  }
}

// name<suffix>{labels[,extra_name="extra_value"]} value
void AppendSample(std::string& out, std::string_view name, std::string_view suffix,
                  std::span<const Label> labels, std::string_view extra_name,
                  std::string_view extra_value, double value) {
  out += name;
  out += suffix;
  if (!labels.empty() || !extra_name.empty()) {
    out += '{';
    AppendLabelPairs(out, labels);
    if (!extra_name.empty()) {
      if (!labels.empty()) out += ',';
      out += extra_name;
      out += "=\"";
      out += extra_value;
      out += '"';
    }
    out += '}';
  }
  out += ' ';
  AppendDouble(out, value);
  out += '\n';
}

}  // namespace

void AppendLabelText(std::string& out, std::span<const Label> labels) {
  if (labels.empty()) return;
  out += '{';
  AppendLabelPairs(out, labels);
  out += '}';
}

std::string_view TypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

void TextWriter::Family(std::string_view name, std::string_view help, MetricType type) {
  name_.assign(name);
  help_.assign(help);
  type_ = type;
  header_written_ = false;
}

void TextWriter::Header() {
  if (header_written_) return;
  header_written_ = true;
  out_ += "# HELP ";
  out_ += name_;
  out_ += ' ';
  AppendEscaped(out_, help_, false);
  out_ += "\n# TYPE ";
  out_ += name_;
  out_ += ' ';
  out_ += TypeName(type_);
  out_ += '\n';
}

void TextWriter::Sample(std::span<const Label> labels, double value) {
  Header();
  AppendSample(out_, name_, "", labels, "", "", value);
}

void TextWriter::Sample(const PreparedLabels& labels, double value) {
  Header();
  // One capacity check for the line (a number is at most 24 characters).
  const size_t line = name_.size() + labels.text.size() + 26;
  if (out_.capacity() - out_.size() < line)
    out_.reserve(std::max(out_.size() + line, out_.capacity() * 2));
  out_.append(name_).append(labels.text).push_back(' ');
  AppendDouble(out_, value);
  out_.push_back('\n');
}

void TextWriter::HistogramSample(std::span<const Label> labels, const sampling::Histogram& h) {
  Header();
  const auto counts = h.counts();
  const auto& bounds = h.bounds();
  uint64_t cumulative = 0;
  std::string le;
  for (size_t i = 0; i < counts.size(); ++i) {
    cumulative += counts[i];
    le.clear();
    AppendLabelDouble(le, i < bounds.size() ? bounds[i] : std::numeric_limits<double>::infinity());
    AppendSample(out_, name_, "_bucket", labels, "le", le, static_cast<double>(cumulative));
  }
  AppendSample(out_, name_, "_sum", labels, "", "", h.sum());
  AppendSample(out_, name_, "_count", labels, "", "", static_cast<double>(h.count()));
}

void SeriesCounter::Family(std::string_view name, std::string_view, MetricType) {
  name_.assign(name);
  counted_ = false;
}

void SeriesCounter::Count(size_t series) {
  if (!counted_) {
    families_.emplace_back(name_, 0);
    counted_ = true;
  }
  families_.back().second += series;
  total_ += series;
}

void SeriesCounter::Sample(std::span<const Label>, double) { Count(1); }

void SeriesCounter::HistogramSample(std::span<const Label>, const sampling::Histogram& h) {
  Count(h.counts().size() + 2);  // buckets with +Inf, _sum, _count
}

void FamilyCollector::Family(std::string_view name, std::string_view help, MetricType type) {
  pending_ = CollectedFamily{std::string(name), std::string(help), type, {}};
  pending_open_ = true;
}

FamilyCollector::CollectedSample& FamilyCollector::Add(std::span<const Label> labels) {
  if (pending_open_) {
    families_.push_back(std::move(pending_));
    pending_open_ = false;
  }
  CollectedSample& sample = families_.back().samples.emplace_back();
  for (const Label& l : labels) sample.labels.emplace(l.name, l.value);
  return sample;
}

void FamilyCollector::Sample(std::span<const Label> labels, double value) {
  Add(labels).value = value;
}

void FamilyCollector::HistogramSample(std::span<const Label> labels, const sampling::Histogram& h) {
  Add(labels).histogram = h;
}

const FamilyCollector::CollectedFamily* FamilyCollector::Find(std::string_view name) const {
  for (const CollectedFamily& f : families_) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

const FamilyCollector::CollectedSample* FamilyCollector::Find(
    std::string_view name, const std::map<std::string, std::string>& labels) const {
  const CollectedFamily* family = Find(name);
  if (family == nullptr) return nullptr;
  for (const CollectedSample& s : family->samples) {
    if (s.labels == labels) return &s;
  }
  return nullptr;
}

std::optional<double> FamilyCollector::Value(
    std::string_view name, const std::map<std::string, std::string>& labels) const {
  const CollectedSample* s = Find(name, labels);
  if (s == nullptr) return std::nullopt;
  return s->value;
}

}  // namespace pmu::metrics
