// The table of issued challenges: bounded in entries, bytes and time, the oldest giving way, no
// client or spoofed flood able to push out the others; answered in order per session, from the
// address the challenge went to. And the throttle on failed proofs.
#include <gtest/gtest.h>

#include "idnode/auth/authorizer.h"

namespace idnode::auth {
namespace {

using Clock = std::chrono::steady_clock;

Origin From(uint8_t last_byte, bool datagram = false) {
  Origin o;
  o.datagram = datagram;
  o.address[10] = o.address[11] = 0xff;
  o.address[12] = 127;
  o.address[15] = last_byte;
  return o;
}

PendingChallenge Pending(uint32_t session, size_t request_bytes, uint8_t tag,
                         Origin origin = From(1)) {
  PendingChallenge p;
  p.session_id = session;
  p.request.assign(request_bytes, tag);
  p.origin = origin;
  return p;
}

TEST(ChallengeTable, AnswersTheOldestChallengeOfASessionFirst) {
  ChallengeTable table(16, 1 << 20, std::chrono::seconds(60));
  auto now = Clock::now();
  ASSERT_TRUE(table.Add(Pending(7, 10, 'a'), now));
  ASSERT_TRUE(table.Add(Pending(7, 10, 'b'), now));
  ASSERT_TRUE(table.Add(Pending(8, 10, 'c'), now));
  EXPECT_EQ(table.size(), 3u);
  EXPECT_EQ(table.Take(7, From(1), now)->request[0], 'a');
  EXPECT_EQ(table.Take(7, From(1), now)->request[0], 'b');
  EXPECT_FALSE(table.Take(7, From(1), now).has_value());
  EXPECT_EQ(table.Take(8, From(1), now)->request[0], 'c');
  EXPECT_EQ(table.size(), 0u);
}

TEST(ChallengeTable, AnAnswerFromAnotherAddressLeavesTheChallengeWaiting) {
  ChallengeTable table(16, 1 << 20, std::chrono::seconds(60));
  auto now = Clock::now();
  ASSERT_TRUE(table.Add(Pending(7, 10, 'a', From(1, /*datagram=*/true)), now));
  EXPECT_FALSE(table.Take(7, From(2), now).has_value());
  EXPECT_EQ(table.size(), 1u);
  // The same address may answer over the other transport, from any port.
  EXPECT_EQ(table.Take(7, From(1, /*datagram=*/false), now)->request[0], 'a');
}

TEST(ChallengeTable, ExpiredChallengesCannotBeAnswered) {
  ChallengeTable table(2, 1 << 20, std::chrono::seconds(5));
  auto now = Clock::now();
  ASSERT_TRUE(table.Add(Pending(1, 10, 'a'), now));
  auto later = now + std::chrono::seconds(6);
  EXPECT_FALSE(table.Take(1, From(1), later).has_value());
  EXPECT_EQ(table.size(), 0u);
}

TEST(ChallengeTable, AFullTableDropsTheOldest) {
  ChallengeTable table(2, 1 << 20, std::chrono::seconds(60));
  auto now = Clock::now();
  ASSERT_TRUE(table.Add(Pending(1, 10, 'a', From(1)), now));
  ASSERT_TRUE(table.Add(Pending(2, 10, 'b', From(2)), now));
  ASSERT_TRUE(table.Add(Pending(3, 10, 'c', From(3)), now));
  EXPECT_EQ(table.size(), 2u);
  EXPECT_FALSE(table.Take(1, From(1), now).has_value());  // gave way
  EXPECT_TRUE(table.Take(2, From(2), now).has_value());
  EXPECT_TRUE(table.Take(3, From(3), now).has_value());
}

TEST(ChallengeTable, HoldsNoMoreBytesThanItsBudget) {
  ChallengeTable table(100, 1000, std::chrono::seconds(60));
  auto now = Clock::now();
  ASSERT_TRUE(table.Add(Pending(1, 600, 'a'), now));
  ASSERT_TRUE(table.Add(Pending(2, 600, 'b'), now));  // 'a' gave way
  EXPECT_EQ(table.size(), 1u);
  EXPECT_FALSE(table.Take(1, From(1), now).has_value());
  EXPECT_TRUE(table.Take(2, From(1), now).has_value());
  EXPECT_FALSE(table.Add(Pending(3, 1001, 'c'), now));  // alone larger than the table
  EXPECT_EQ(table.size(), 0u);
}

TEST(ChallengeTable, OneSessionCannotHoldMoreThanItsShare) {
  ChallengeTable table(1000, 1 << 20, std::chrono::seconds(60));
  auto now = Clock::now();
  for (size_t i = 0; i < ChallengeTable::kMaxPerSession + 4; ++i) {
    ASSERT_TRUE(table.Add(Pending(9, 1, static_cast<uint8_t>(i)), now));
  }
  EXPECT_EQ(table.size(), ChallengeTable::kMaxPerSession);
  EXPECT_EQ(table.Take(9, From(1), now)->request[0], 4);  // the four oldest gave way
}

TEST(ChallengeTable, OneSourceCannotPushOutTheOthers) {
  ChallengeTable table(64, 1 << 20, std::chrono::seconds(60));
  const size_t share = table.max_per_source();
  ASSERT_EQ(share, 16u);
  auto now = Clock::now();
  ASSERT_TRUE(table.Add(Pending(1, 10, 'a', From(1)), now));
  for (uint32_t i = 0; i < 1000; ++i) {
    ASSERT_TRUE(table.Add(Pending(100 + i, 10, 'x', From(2)), now));
  }
  EXPECT_EQ(table.size(), 1 + share);
  EXPECT_TRUE(table.Take(1, From(1), now).has_value());
  EXPECT_TRUE(table.Take(1000 + 100 - 1, From(2), now).has_value());  // the newest stayed
}

TEST(ChallengeTable, ASpoofedUdpFloodCannotTouchTcpChallenges) {
  ChallengeTable table(64, 1 << 20, std::chrono::seconds(60));
  auto now = Clock::now();
  for (uint8_t i = 0; i < 10; ++i) {
    ASSERT_TRUE(table.Add(Pending(i + 1, 10, 't', From(i)), now));  // TCP clients
  }
  // A flood of UDP requests from ever new (forged) sources.
  for (uint32_t i = 0; i < 5000; ++i) {
    Origin forged = From(0, /*datagram=*/true);
    forged.address[13] = static_cast<uint8_t>(i >> 8);
    forged.address[14] = static_cast<uint8_t>(i);
    ASSERT_TRUE(table.Add(Pending(1000 + i, 10, 'u', forged), now));
  }
  EXPECT_EQ(table.size(), 10u + 32u);  // UDP holds at most half
  for (uint8_t i = 0; i < 10; ++i) EXPECT_TRUE(table.Take(i + 1, From(i), now).has_value());
  // TCP challenges may fill the rest, pushing out UDP ones first; UDP ones never push out TCP.
  for (uint32_t i = 0; i < 64; ++i) {
    ASSERT_TRUE(
        table.Add(Pending(9000 + i, 10, 't', From(static_cast<uint8_t>(100 + i / 8))), now));
  }
  EXPECT_EQ(table.size(), 64u);
  Origin late = From(7, /*datagram=*/true);
  EXPECT_FALSE(table.Add(Pending(99999, 10, 'u', late), now));
  EXPECT_EQ(table.size(), 64u);
}

TEST(ChallengeTable, UdpChallengesAtASessionOrSourceCapPushOutOnlyUdpOnes) {
  ChallengeTable table(64, 1 << 20, std::chrono::seconds(60));
  auto now = Clock::now();
  // A TCP client's session full of its challenges: forged datagrams naming that session (or its
  // address) are refused rather than push them out.
  for (size_t i = 0; i < ChallengeTable::kMaxPerSession; ++i) {
    ASSERT_TRUE(table.Add(Pending(5, 10, 't', From(1)), now));
  }
  EXPECT_FALSE(table.Add(Pending(5, 10, 'u', From(1, /*datagram=*/true)), now));
  EXPECT_FALSE(table.Add(Pending(5, 10, 'u', From(9, /*datagram=*/true)), now));
  EXPECT_EQ(table.size(), ChallengeTable::kMaxPerSession);
  // At the source cap, a UDP challenge pushes out the oldest UDP one of that source.
  ChallengeTable by_source(64, 1 << 20, std::chrono::seconds(60));
  ASSERT_TRUE(by_source.Add(Pending(100, 10, 't', From(2)), now));
  for (uint32_t i = 1; i < by_source.max_per_source(); ++i) {
    ASSERT_TRUE(by_source.Add(Pending(100 + i, 10, 'u', From(2, /*datagram=*/true)), now));
  }
  ASSERT_TRUE(by_source.Add(Pending(999, 10, 'u', From(2, /*datagram=*/true)), now));
  EXPECT_TRUE(by_source.Take(100, From(2), now).has_value());   // the TCP one stayed
  EXPECT_FALSE(by_source.Take(101, From(2), now).has_value());  // the oldest UDP one went
}

TEST(FailureThrottle, LocksAKeyForASourceAndTheSourceForTheRestOfTheWindow) {
  FailureThrottle throttle(3);
  auto now = Clock::now();
  Identity key{"0.NA/ADM.1", 300}, other{"0.NA/ADM.1", 301};
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(throttle.Allowed(key, From(1), now));
    throttle.Failed(key, From(1), now);
  }
  EXPECT_FALSE(throttle.Allowed(key, From(1), now));                  // the key from there
  EXPECT_FALSE(throttle.Allowed({"0.na/adm.1", 300}, From(1), now));  // however it is spelled
  EXPECT_FALSE(throttle.Allowed(other, From(1), now));                // anything from that source
  EXPECT_TRUE(throttle.Allowed(key, From(2), now));  // the key from elsewhere: not locked out
  EXPECT_TRUE(throttle.Allowed(other, From(2), now));
  auto next_minute = now + std::chrono::seconds(61);
  EXPECT_TRUE(throttle.Allowed(key, From(1), next_minute));
  throttle.Failed(key, From(1), next_minute);  // a fresh window counts from one
  EXPECT_TRUE(throttle.Allowed(key, From(1), next_minute));
}

TEST(FailureThrottle, AKeyWideLimitCapsManySourcesButSparesProvenOnes) {
  FailureThrottle throttle(3, /*key_limit=*/6);
  auto now = Clock::now();
  Identity key{"0.NA/ADM.1", 300};
  throttle.Succeeded(key, From(9), now);  // the real admin's address
  for (uint8_t source = 1; source <= 2; ++source) {
    for (int i = 0; i < 3; ++i) throttle.Failed(key, From(source), now);
  }
  EXPECT_FALSE(throttle.Allowed(key, From(3), now));  // a fresh address: the key is capped
  EXPECT_TRUE(throttle.Allowed(key, From(9), now));   // the proven one is not
  EXPECT_TRUE(throttle.Allowed(key, From(3), now + std::chrono::seconds(61)));
}

TEST(FailureThrottle, ForgedUdpFailuresLockNoTcpClientAndNotTheKeyOverTcp) {
  FailureThrottle throttle(3);
  auto now = Clock::now();
  Identity key{"0.NA/ADM.1", 300};
  for (int i = 0; i < 10; ++i) throttle.Failed(key, From(1, /*datagram=*/true), now);
  EXPECT_FALSE(throttle.Allowed(key, From(7, /*datagram=*/true), now));  // UDP proofs of the key
  EXPECT_TRUE(throttle.Allowed(key, From(1), now));  // the same address, and the key, over TCP
  EXPECT_TRUE(throttle.Allowed({"0.NA/ADM.1", 301}, From(1, /*datagram=*/true), now));
}

TEST(FailureThrottle, ZeroMeansNoLimitAndCountersStayBounded) {
  FailureThrottle unlimited(0);
  auto now = Clock::now();
  Identity key{"0.NA/ADM.1", 300};
  for (int i = 0; i < 100; ++i) unlimited.Failed(key, From(1), now);
  EXPECT_TRUE(unlimited.Allowed(key, From(1), now));
  // Four counters per kind at most: a flood of sources cannot grow it, and the latest is kept.
  FailureThrottle small(2, 4);
  for (uint32_t i = 0; i < 1000; ++i) {
    Origin o = From(static_cast<uint8_t>(i));
    o.address[13] = static_cast<uint8_t>(i >> 8);
    small.Failed({"0.NA/K", static_cast<int32_t>(i % 3)}, o, now);
  }
  Origin last = From(static_cast<uint8_t>(999));
  last.address[13] = static_cast<uint8_t>(999 >> 8);
  small.Failed({"0.NA/Z", 1}, last, now);
  EXPECT_FALSE(small.Allowed({"0.NA/Y", 1}, last, now));
}

TEST(ChallengeTable, SessionIdsAreNonZeroPositiveAndNoncesDiffer) {
  ChallengeTable table(1, 1, std::chrono::seconds(1));
  for (int i = 0; i < 100; ++i) {
    uint32_t id = table.NewSessionId();
    EXPECT_NE(id, 0u);
    EXPECT_LT(id, 0x80000000u);
  }
  EXPECT_NE(ChallengeTable::NewNonce(), ChallengeTable::NewNonce());
}

}  // namespace
}  // namespace idnode::auth
