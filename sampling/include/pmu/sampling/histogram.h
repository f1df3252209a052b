// Histogram: an exact count of observations per bucket, the one histogram
// implementation of the project (sampler read durations, derived metrics).
//
// Buckets follow Prometheus' `le` semantics: an observation v falls in the
// first bucket whose upper bound b satisfies v <= b, or in the implicit +Inf
// bucket after the last bound. Counts are kept per bucket (not cumulative);
// the exposition makes them cumulative.
//
// The bounds are shared (immutable) between copies, so copying a histogram
// into a snapshot costs one vector of counts.
//
// Thread safety: a plain value; no internal locking.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace pmu::sampling {

class Histogram {
 public:
  // No bounds: one (+Inf) bucket.
  Histogram();
  // REQUIRES: `bounds` strictly increasing and finite.
  explicit Histogram(std::vector<double> bounds);
  explicit Histogram(std::shared_ptr<const std::vector<double>> bounds);

  void Observe(double value);
  // Adds another histogram's observations. REQUIRES: the same bounds.
  void Add(const Histogram& other);

  const std::vector<double>& bounds() const { return *bounds_; }
  // bounds().size() + 1 entries, the +Inf bucket last.
  std::span<const uint64_t> counts() const { return counts_; }
  uint64_t count() const { return count_; }
  double sum() const { return sum_; }

 private:
  std::shared_ptr<const std::vector<double>> bounds_;
  std::vector<uint64_t> counts_;
  uint64_t count_ = 0;
  double sum_ = 0;
};

}  // namespace pmu::sampling
