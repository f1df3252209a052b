#include "pmu/sampling/histogram.h"

#include <algorithm>

namespace pmu::sampling {

Histogram::Histogram() : Histogram(std::make_shared<const std::vector<double>>()) {}

Histogram::Histogram(std::vector<double> bounds)
    : Histogram(std::make_shared<const std::vector<double>>(std::move(bounds))) {}

Histogram::Histogram(std::shared_ptr<const std::vector<double>> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_->size() + 1, 0) {}

void Histogram::Observe(double value) {
  const auto bucket = std::lower_bound(bounds_->begin(), bounds_->end(), value);
  ++counts_[static_cast<size_t>(bucket - bounds_->begin())];
  ++count_;
  sum_ += value;
}

void Histogram::Add(const Histogram& other) {
  for (size_t i = 0; i < counts_.size() && i < other.counts_.size(); ++i) {
    counts_[i] += other.counts_[i];
  }
  count_ += other.count_;
  sum_ += other.sum_;
}

}  // namespace pmu::sampling
