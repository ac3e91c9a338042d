#include "idnode/loadgen/keys.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>

namespace idnode::loadgen {

std::optional<KeySource> KeySource::Make(const KeyOptions& options, std::string* error) {
  KeySource k;
  k.options_ = options;
  k.rng_.seed(options.seed);
  if (options.missing < 0 || options.missing > 1) {
    *error = "--missing must be between 0 and 1";
    return std::nullopt;
  }
  if (!options.file.empty()) {
    std::ifstream in(options.file);
    if (!in) {
      *error = "cannot read " + options.file;
      return std::nullopt;
    }
    k.offsets_.push_back(0);
    for (std::string line; std::getline(in, line);) {
      if (line.empty()) continue;
      if (k.blob_.size() + line.size() > UINT32_MAX) {
        *error = options.file + ": more than 4 GiB of keys";
        return std::nullopt;
      }
      k.blob_ += line;
      k.offsets_.push_back(static_cast<uint32_t>(k.blob_.size()));
    }
    k.count_ = k.offsets_.size() - 1;
  } else {
    size_t open = options.pattern.find('{'), dots = options.pattern.find("..", open),
           close = options.pattern.find('}', open);
    if (open == std::string::npos || dots == std::string::npos || close == std::string::npos ||
        dots > close) {
      *error = "a key pattern looks like 88.100.1/SN{0..999999}";
      return std::nullopt;
    }
    k.head_ = options.pattern.substr(0, open);
    k.tail_ = options.pattern.substr(close + 1);
    uint64_t a = std::strtoull(options.pattern.c_str() + open + 1, nullptr, 10);
    uint64_t b = std::strtoull(options.pattern.c_str() + dots + 2, nullptr, 10);
    if (b < a) {
      *error = "the pattern's range is empty";
      return std::nullopt;
    }
    k.first_ = a;
    k.count_ = b - a + 1;
  }
  if (k.count_ == 0) {
    *error = "no keys";
    return std::nullopt;
  }
  if (options.order == Order::kZipf) {
    // Ranks beyond a million share the tail's probability evenly: the CDF stays small.
    size_t ranks = static_cast<size_t>(std::min<uint64_t>(k.count_, 1000000));
    k.zipf_cdf_.resize(ranks);
    double sum = 0;
    for (size_t r = 0; r < ranks; ++r) {
      sum += 1.0 / std::pow(static_cast<double>(r + 1), options.zipf_s);
      k.zipf_cdf_[r] = sum;
    }
    for (auto& c : k.zipf_cdf_) c /= sum;
  }
  for (auto& index : k.ahead_) index = k.NextIndex();
  return k;
}

uint64_t KeySource::NextIndex() {
  switch (options_.order) {
    case Order::kSequential:
      return sequence_++ % count_;
    case Order::kZipf: {
      double u = std::uniform_real_distribution<double>(0, 1)(rng_);
      size_t rank = static_cast<size_t>(std::lower_bound(zipf_cdf_.begin(), zipf_cdf_.end(), u) -
                                        zipf_cdf_.begin());
      if (rank >= zipf_cdf_.size()) rank = zipf_cdf_.size() - 1;
      // Spread ranks over the key space so the hot keys are not neighbours.
      return (static_cast<uint64_t>(rank) * 2654435761ull) % count_;
    }
    case Order::kUniform:
    default:
      return rng_() % count_;
  }
}

std::string_view KeySource::KeyAt(uint64_t i) {
  if (!offsets_.empty()) {
    return std::string_view(blob_).substr(offsets_[i], offsets_[i + 1] - offsets_[i]);
  }
  char digits[24];
  auto end = std::to_chars(digits, digits + sizeof digits, first_ + i).ptr;
  current_.assign(head_);
  current_.append(digits, end);
  current_.append(tail_);
  return current_;
}

std::string_view KeySource::Next() {
  last_missing_ =
      options_.missing > 0 && std::uniform_real_distribution<double>(0, 1)(rng_) < options_.missing;
  const uint64_t index = ahead_[ahead_at_];
  ahead_[ahead_at_] = NextIndex();
  if (!offsets_.empty()) {
    // Two stages: the offset of the key drawn now, the bytes of the one drawn half a ring ago.
    __builtin_prefetch(&offsets_[ahead_[ahead_at_]]);
    __builtin_prefetch(blob_.data() + offsets_[ahead_[(ahead_at_ + kAhead / 2) % kAhead]]);
  }
  ahead_at_ = (ahead_at_ + 1) % kAhead;
  std::string_view key = KeyAt(index);
  if (!last_missing_) return key;
  if (key.data() != current_.data()) current_.assign(key);
  current_ += "-missing-" + std::to_string(rng_() % 1000000);
  return current_;
}

}  // namespace idnode::loadgen
