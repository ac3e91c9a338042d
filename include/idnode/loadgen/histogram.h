// A log-linear latency histogram (the HdrHistogram layout): values are grouped by their power of
// two, and each power of two is split into 2^kSubBits equal buckets, so every recorded value is
// known to within 1/2^kSubBits (0.8 % with 7 bits) from nanoseconds to minutes, in fixed memory.
// Owned by one thread; Merge() combines per-thread histograms for a report.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace idnode::loadgen {

class Histogram {
 public:
  static constexpr int kSubBits = 7;
  static constexpr int kMaxPower = 40;  // values up to 2^40 ns (about 18 minutes)

  void Record(uint64_t value, uint64_t count = 1);
  void Merge(const Histogram& other);
  void Clear();

  uint64_t count() const { return count_; }
  uint64_t min() const { return count_ ? min_ : 0; }
  uint64_t max() const { return max_; }
  double mean() const {
    return count_ ? static_cast<double>(sum_) / static_cast<double>(count_) : 0.0;
  }
  // The value at quantile q (0..1): an upper bound of the bucket holding it, never above max().
  uint64_t Percentile(double q) const;

  // Non-empty buckets as (upper bound, count), in increasing order, for reports.
  std::vector<std::pair<uint64_t, uint64_t>> Buckets() const;

  static size_t BucketOf(uint64_t value);
  static uint64_t UpperBoundOf(size_t bucket);

 private:
  static constexpr size_t kBuckets = size_t{kMaxPower + 1} << kSubBits;
  std::vector<uint64_t> buckets_ = std::vector<uint64_t>(kBuckets, 0);
  uint64_t count_ = 0;
  uint64_t sum_ = 0;
  uint64_t min_ = UINT64_MAX;
  uint64_t max_ = 0;
};

}  // namespace idnode::loadgen
