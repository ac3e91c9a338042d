#include "idnode/loadgen/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace idnode::loadgen {

size_t Histogram::BucketOf(uint64_t value) {
  // Values below 2^kSubBits are exact; above, the top kSubBits+1 bits pick the bucket.
  constexpr uint64_t kSub = uint64_t{1} << kSubBits;
  if (value < kSub) return static_cast<size_t>(value);
  int power = 63 - std::countl_zero(value);  // >= kSubBits
  if (power > kMaxPower + kSubBits - 1) return kBuckets - 1;
  int shift = power - kSubBits;
  uint64_t sub = (value >> shift) - kSub;  // 0 .. kSub-1
  return static_cast<size_t>((static_cast<uint64_t>(shift + 1) << kSubBits) + sub);
}

uint64_t Histogram::UpperBoundOf(size_t bucket) {
  constexpr uint64_t kSub = uint64_t{1} << kSubBits;
  if (bucket < kSub) return bucket;
  uint64_t shift = (bucket >> kSubBits) - 1;
  uint64_t sub = bucket & (kSub - 1);
  return ((kSub + sub + 1) << shift) - 1;
}

void Histogram::Record(uint64_t value, uint64_t count) {
  if (count == 0) return;
  buckets_[BucketOf(value)] += count;
  count_ += count;
  sum_ += value * count;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
}

void Histogram::Merge(const Histogram& other) {
  for (size_t i = 0; i < kBuckets; ++i) buckets_[i] += other.buckets_[i];
  count_ += other.count_;
  sum_ += other.sum_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
}

void Histogram::Clear() {
  std::fill(buckets_.begin(), buckets_.end(), 0);
  count_ = sum_ = max_ = 0;
  min_ = UINT64_MAX;
}

uint64_t Histogram::Percentile(double q) const {
  if (count_ == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  uint64_t rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_)));
  if (rank == 0) rank = 1;
  uint64_t seen = 0;
  for (size_t i = 0; i < kBuckets; ++i) {
    seen += buckets_[i];
    if (seen >= rank) return std::min(UpperBoundOf(i), max_);
  }
  return max_;
}

std::vector<std::pair<uint64_t, uint64_t>> Histogram::Buckets() const {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  for (size_t i = 0; i < kBuckets; ++i) {
    if (buckets_[i] != 0) out.emplace_back(UpperBoundOf(i), buckets_[i]);
  }
  return out;
}

}  // namespace idnode::loadgen
