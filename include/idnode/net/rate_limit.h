// net/: response rate limiting for UDP answers (HARDENING.md rows E and F, after Knot's RRL).
//
// A spoofed request makes the server send its answer to the victim, and a Handle answer can span
// many 512-byte datagrams. So answers are limited per source prefix (/24 for IPv4, /56 for IPv6),
// counted in datagrams: a large answer costs what it sends, and one larger than the burst is never
// sent over UDP. Limited answers are dropped, or every `slip`-th replaced by a short error. CNRI
// clients retry over UDP, then use TCP, which is never limited (a TCP handshake proves the source).
//
// Buckets live in a fixed table indexed by a keyed hash of the prefix (lossy, as in Knot:
// colliding prefixes share a bucket; the key is random per process, so nobody can aim at another
// network's bucket). Each bucket is one atomic word, the time at which it would be full again
// (GCRA), so every UDP worker thread uses the table without a lock.
//
// Owned by the Handle server; used by all its UDP worker threads.
#pragma once

#include <sys/socket.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "idnode/config/config.h"

namespace idnode::net {

class ResponseRateLimiter {
 public:
  enum class Verdict : uint8_t {
    kSend,
    kSlip,  // send a short error instead
    kDrop,
  };

  // Throws std::invalid_argument for an exempt entry that is not a network (startup only).
  explicit ResponseRateLimiter(const config::RateLimitConfig& config, size_t buckets = 1 << 16);

  bool enabled() const { return interval_ns_ != 0; }
  // What to do with an answer of `datagrams` datagrams to `to`, at `now_ns` (a monotonic clock).
  Verdict Check(const sockaddr_storage& to, uint32_t datagrams, uint64_t now_ns);
  // The same, now (the steady clock).
  Verdict Check(const sockaddr_storage& to, uint32_t datagrams);

  uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }
  uint64_t slipped() const { return slipped_.load(std::memory_order_relaxed); }
  uint64_t too_large() const { return too_large_.load(std::memory_order_relaxed); }
  // The counters as `name`{action="dropped|slipped|too_large"} (Prometheus text).
  void AppendMetrics(std::string& out, const std::string& name, const std::string& help) const;

 private:
  struct Network {
    std::array<uint8_t, 16> address{};
    int bits = 0;
  };
  bool Exempt(const std::array<uint8_t, 16>& address) const;

  uint64_t interval_ns_ = 0;  // one datagram's worth of time
  uint64_t burst_ = 0;        // datagrams
  uint32_t slip_ = 0;
  uint64_t hash_key_ = 0;
  std::vector<Network> exempt_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;
  size_t bucket_mask_ = 0;
  std::atomic<uint64_t> limited_{0};  // answers refused, for the slip count
  std::atomic<uint64_t> dropped_{0};
  std::atomic<uint64_t> slipped_{0};
  std::atomic<uint64_t> too_large_{0};
};

}  // namespace idnode::net
