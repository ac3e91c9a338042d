#include "idnode/net/rate_limit.h"

#include <netinet/in.h>
#include <openssl/rand.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <stdexcept>

#include "idnode/metrics/metrics.h"
#include "idnode/net/listeners.h"

namespace idnode::net {

namespace {

bool IsV4(const std::array<uint8_t, 16>& a) {
  static constexpr std::array<uint8_t, 12> kMapped{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::equal(kMapped.begin(), kMapped.end(), a.begin());
}

uint64_t Mix(uint64_t x) {  // splitmix64's finalizer
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace

ResponseRateLimiter::ResponseRateLimiter(const config::RateLimitConfig& config, size_t buckets) {
  for (const auto& text : config.exempt) {
    Network n;
    if (!config::ParseNetwork(text, &n.address, &n.bits)) {
      throw std::invalid_argument("handle.rate_limit.exempt: not a network: " + text);
    }
    exempt_.push_back(n);
  }
  if (config.datagrams_per_second == 0) return;
  interval_ns_ = std::max<uint64_t>(1, 1'000'000'000ull / config.datagrams_per_second);
  burst_ = config.burst != 0 ? config.burst
                             : std::max<uint64_t>(1, config.datagrams_per_second * 5ull / 2);
  slip_ = config.slip;
  size_t size = 1;
  while (size < buckets) size <<= 1;
  buckets_ = std::make_unique<std::atomic<uint64_t>[]>(size);
  for (size_t i = 0; i < size; ++i) buckets_[i].store(0, std::memory_order_relaxed);
  bucket_mask_ = size - 1;
  (void)RAND_bytes(reinterpret_cast<unsigned char*>(&hash_key_), sizeof hash_key_);
}

bool ResponseRateLimiter::Exempt(const std::array<uint8_t, 16>& address) const {
  for (const auto& n : exempt_) {
    int whole = n.bits / 8, rest = n.bits % 8;
    if (std::memcmp(address.data(), n.address.data(), static_cast<size_t>(whole)) != 0) continue;
    if (rest != 0) {
      const uint8_t mask = static_cast<uint8_t>(0xff00 >> rest);
      if ((address[static_cast<size_t>(whole)] & mask) !=
          (n.address[static_cast<size_t>(whole)] & mask)) {
        continue;
      }
    }
    return true;
  }
  return false;
}

ResponseRateLimiter::Verdict ResponseRateLimiter::Check(const sockaddr_storage& to,
                                                        uint32_t datagrams, uint64_t now_ns) {
  if (!enabled()) return Verdict::kSend;
  const std::array<uint8_t, 16> address = AddressOf(to);
  if (!exempt_.empty() && Exempt(address)) return Verdict::kSend;
  if (datagrams > burst_) {
    // Never fits the bucket: the client gets it over TCP.
    too_large_.fetch_add(1, std::memory_order_relaxed);
    return Verdict::kDrop;
  }
  // The prefix, tagged with its family: /24 of IPv4, /56 of IPv6.
  uint64_t prefix = 0;
  if (IsV4(address)) {
    prefix = (uint64_t{1} << 63) | (uint64_t{address[12]} << 16) | (uint64_t{address[13]} << 8) |
             address[14];
  } else {
    for (size_t i = 0; i < 7; ++i) prefix = (prefix << 8) | address[i];
  }
  std::atomic<uint64_t>& bucket = buckets_[Mix(prefix ^ hash_key_) & bucket_mask_];
  // GCRA: `full_at` is when the bucket would hold `burst_` datagrams again; an answer of n
  // datagrams moves it n intervals on, and fits while it stays within burst_ intervals of now.
  const uint64_t cost = uint64_t{datagrams} * interval_ns_;
  const uint64_t capacity = burst_ * interval_ns_;
  uint64_t full_at = bucket.load(std::memory_order_relaxed);
  for (;;) {
    const uint64_t next = std::max(full_at, now_ns) + cost;
    if (next - now_ns > capacity) break;
    if (bucket.compare_exchange_weak(full_at, next, std::memory_order_relaxed)) {
      return Verdict::kSend;
    }
  }
  const uint64_t refused = limited_.fetch_add(1, std::memory_order_relaxed) + 1;
  if (slip_ != 0 && refused % slip_ == 0) {
    slipped_.fetch_add(1, std::memory_order_relaxed);
    return Verdict::kSlip;
  }
  dropped_.fetch_add(1, std::memory_order_relaxed);
  return Verdict::kDrop;
}

ResponseRateLimiter::Verdict ResponseRateLimiter::Check(const sockaddr_storage& to,
                                                        uint32_t datagrams) {
  if (!enabled()) return Verdict::kSend;
  return Check(to, datagrams,
               static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                         std::chrono::steady_clock::now().time_since_epoch())
                                         .count()));
}

void ResponseRateLimiter::AppendMetrics(std::string& out, const std::string& name,
                                        const std::string& help) const {
  metrics::AppendHelp(out, name, "counter", help);
  metrics::AppendSample(out, name, "action=\"dropped\"", static_cast<double>(dropped()));
  metrics::AppendSample(out, name, "action=\"slipped\"", static_cast<double>(slipped()));
  metrics::AppendSample(out, name, "action=\"too_large\"", static_cast<double>(too_large()));
}

}  // namespace idnode::net
