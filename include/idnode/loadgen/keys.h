// Which identifiers a load run asks for: from a file (one per line) or a pattern such as
// 88.100.1/SN{0..999999}; in uniform, Zipf(s) or sequential order; with a share of identifiers that
// do not exist (to exercise negative answers). Owned by the load loop's thread.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace idnode::loadgen {

enum class Order : uint8_t { kUniform, kZipf, kSequential };

struct KeyOptions {
  std::string file;
  std::string pattern;  // "<text>{A..B}<text>"
  Order order = Order::kUniform;
  double zipf_s = 1.0;
  double missing = 0.0;  // 0..1
  uint64_t seed = 1;
};

class KeySource {
 public:
  // Nullopt and a message in `error` when the options are unusable.
  static std::optional<KeySource> Make(const KeyOptions& options, std::string* error);
  // The next identifier (a missing one with probability `missing`); valid until the next call.
  std::string_view Next();
  size_t size() const { return count_; }
  // The first identifier of the file or pattern (how idbench finds the prefix whose site it
  // drives); does not move the order.
  std::string First() { return count_ == 0 ? std::string() : std::string(KeyAt(0)); }
  bool last_was_missing() const { return last_missing_; }

 private:
  KeySource() = default;
  uint64_t NextIndex();
  std::string_view KeyAt(uint64_t i);

  KeyOptions options_;
  // Keys from a file, in one block: a million keys in a million strings would cost idbench two
  // cache misses a request, and idbench must stay far faster than what it measures.
  // Key i is blob_[offsets_[i], offsets_[i + 1]); offsets, not views, so that a moved or copied
  // KeySource stays valid.
  std::string blob_;
  std::vector<uint32_t> offsets_;
  // The next indexes, drawn ahead so that their keys can be prefetched (order is unchanged).
  static constexpr size_t kAhead = 16;
  std::array<uint64_t, kAhead> ahead_{};
  size_t ahead_at_ = 0;
  std::string head_, tail_;  // pattern parts around {A..B}
  uint64_t first_ = 0;
  uint64_t count_ = 0;
  uint64_t sequence_ = 0;
  std::mt19937_64 rng_;
  std::vector<double> zipf_cdf_;  // for Zipf over min(count, 1M) ranks
  std::string current_;
  bool last_missing_ = false;
};

}  // namespace idnode::loadgen
