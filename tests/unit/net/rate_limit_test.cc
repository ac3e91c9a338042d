// The UDP response rate limit: per source prefix, counted in datagrams, with slip and exempt
// networks, and never any room for an answer larger than the burst.
#include "idnode/net/rate_limit.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>

namespace idnode::net {
namespace {

using Verdict = ResponseRateLimiter::Verdict;
constexpr uint64_t kSecond = 1'000'000'000ull;

sockaddr_storage V4(const char* text, uint16_t port = 4000) {
  sockaddr_storage s{};
  auto* in = reinterpret_cast<sockaddr_in*>(&s);
  in->sin_family = AF_INET;
  in->sin_port = htons(port);
  EXPECT_EQ(inet_pton(AF_INET, text, &in->sin_addr), 1);
  return s;
}

// The limiter is a pure function of the address: no packet is sent anywhere. IPv6 prefixes other
// than ::1's are made by setting the bytes of the /56 (byte 6) and of the interface part (byte 15).
sockaddr_storage V6(uint8_t byte6, uint8_t byte15) {
  sockaddr_storage s{};
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&s);
  in6->sin6_family = AF_INET6;
  in6->sin6_addr.s6_addr[6] = byte6;
  in6->sin6_addr.s6_addr[15] = byte15;
  return s;
}

config::RateLimitConfig Limit(uint32_t rate, uint32_t burst, uint32_t slip = 0) {
  config::RateLimitConfig c;
  c.datagrams_per_second = rate;
  c.burst = burst;
  c.slip = slip;
  return c;
}

// How many of `n` one-datagram answers to `to` at `now` may be sent.
int Sent(ResponseRateLimiter& limiter, const sockaddr_storage& to, int n, uint64_t now) {
  int sent = 0;
  for (int i = 0; i < n; ++i) sent += limiter.Check(to, 1, now) == Verdict::kSend ? 1 : 0;
  return sent;
}

TEST(RateLimit, OffByDefault) {
  ResponseRateLimiter limiter(config::RateLimitConfig{});
  EXPECT_FALSE(limiter.enabled());
  EXPECT_EQ(Sent(limiter, V4("127.0.2.1"), 10000, kSecond), 10000);
}

TEST(RateLimit, ABurstThenTheRate) {
  ResponseRateLimiter limiter(Limit(5, 10));
  const uint64_t t0 = 100 * kSecond;
  EXPECT_EQ(Sent(limiter, V4("127.0.2.1"), 100, t0), 10);                 // the burst
  EXPECT_EQ(Sent(limiter, V4("127.0.2.1"), 100, t0 + kSecond), 5);        // then 5 a second
  EXPECT_EQ(Sent(limiter, V4("127.0.2.1"), 100, t0 + 10 * kSecond), 10);  // refilled, no more
  EXPECT_EQ(limiter.dropped(), 90u + 95u + 90u);
  EXPECT_EQ(limiter.slipped(), 0u);
}

TEST(RateLimit, APrefixSharesItsBucketAndOthersHaveTheirOwn) {
  ResponseRateLimiter limiter(Limit(5, 5));
  const uint64_t now = 100 * kSecond;
  EXPECT_EQ(Sent(limiter, V4("127.51.100.1", 1), 3, now), 3);
  EXPECT_EQ(Sent(limiter, V4("127.51.100.200", 2), 10, now), 2);  // the same /24
  EXPECT_EQ(Sent(limiter, V4("127.51.101.1"), 10, now), 5);       // the next /24
  EXPECT_EQ(Sent(limiter, V6(0, 1), 3, now), 3);                  // ::1
  EXPECT_EQ(Sent(limiter, V6(0, 9), 10, now), 2);                 // the same /56
  EXPECT_EQ(Sent(limiter, V6(2, 1), 10, now), 5);                 // another /56
}

TEST(RateLimit, LargeAnswersCostTheirDatagramsAndOneOverTheBurstNeverGoes) {
  ResponseRateLimiter limiter(Limit(10, 25));
  const uint64_t now = 100 * kSecond;
  const auto to = V4("127.0.113.9");
  EXPECT_EQ(limiter.Check(to, 26, now), Verdict::kDrop);  // larger than the bucket: TCP only
  EXPECT_EQ(limiter.too_large(), 1u);
  EXPECT_EQ(limiter.Check(to, 20, now), Verdict::kSend);
  EXPECT_EQ(limiter.Check(to, 6, now), Verdict::kDrop);  // 5 datagrams left
  EXPECT_EQ(limiter.Check(to, 5, now), Verdict::kSend);
}

TEST(RateLimit, EverySlipthLimitedAnswerIsSlipped) {
  ResponseRateLimiter limiter(Limit(1, 1, /*slip=*/2));
  const uint64_t now = 100 * kSecond;
  const auto to = V4("127.0.2.1");
  EXPECT_EQ(limiter.Check(to, 1, now), Verdict::kSend);
  int slipped = 0, dropped = 0;
  for (int i = 0; i < 100; ++i) {
    Verdict v = limiter.Check(to, 1, now);
    slipped += v == Verdict::kSlip ? 1 : 0;
    dropped += v == Verdict::kDrop ? 1 : 0;
  }
  EXPECT_EQ(slipped, 50);
  EXPECT_EQ(dropped, 50);
  EXPECT_EQ(limiter.slipped(), 50u);
  EXPECT_EQ(limiter.dropped(), 50u);
}

TEST(RateLimit, ExemptNetworksAreNeverLimited) {
  config::RateLimitConfig c = Limit(1, 1);
  c.exempt = {"127.10.0.0/16", "127.0.2.128/25", "::1/128"};
  ResponseRateLimiter limiter(c);
  const uint64_t now = 100 * kSecond;
  EXPECT_EQ(Sent(limiter, V4("127.10.3.4"), 100, now), 100);
  EXPECT_EQ(Sent(limiter, V4("127.0.2.200"), 100, now), 100);
  EXPECT_EQ(Sent(limiter, V4("127.0.2.100"), 100, now), 1);  // outside the /25
  EXPECT_EQ(Sent(limiter, V6(0, 1), 100, now), 100);         // ::1
  EXPECT_EQ(Sent(limiter, V6(0, 2), 100, now), 1);           // outside ::1/128
  c.exempt = {"127.0.0.0/40"};
  EXPECT_THROW(ResponseRateLimiter{c}, std::invalid_argument);
}

}  // namespace
}  // namespace idnode::net
