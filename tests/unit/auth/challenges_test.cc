// The table of issued challenges: bounded in entries, bytes and time; answered in order per
// session.
#include <gtest/gtest.h>

#include "idnode/auth/authorizer.h"

namespace idnode::auth {
namespace {

using Clock = std::chrono::steady_clock;

PendingChallenge Pending(uint32_t session, size_t request_bytes, uint8_t tag) {
  PendingChallenge p;
  p.session_id = session;
  p.request.assign(request_bytes, tag);
  return p;
}

TEST(ChallengeTable, AnswersTheOldestChallengeOfASessionFirst) {
  ChallengeTable table(16, 1 << 20, std::chrono::seconds(60));
  auto now = Clock::now();
  ASSERT_TRUE(table.Add(Pending(7, 10, 'a'), now));
  ASSERT_TRUE(table.Add(Pending(7, 10, 'b'), now));
  ASSERT_TRUE(table.Add(Pending(8, 10, 'c'), now));
  EXPECT_EQ(table.size(), 3u);
  EXPECT_EQ(table.Take(7, now)->request[0], 'a');
  EXPECT_EQ(table.Take(7, now)->request[0], 'b');
  EXPECT_FALSE(table.Take(7, now).has_value());
  EXPECT_EQ(table.Take(8, now)->request[0], 'c');
  EXPECT_EQ(table.size(), 0u);
}

TEST(ChallengeTable, ExpiredChallengesCannotBeAnsweredAndMakeRoom) {
  ChallengeTable table(2, 1 << 20, std::chrono::seconds(5));
  auto now = Clock::now();
  ASSERT_TRUE(table.Add(Pending(1, 10, 'a'), now));
  ASSERT_TRUE(table.Add(Pending(2, 10, 'b'), now));
  EXPECT_FALSE(table.Add(Pending(3, 10, 'c'), now));  // full
  auto later = now + std::chrono::seconds(6);
  EXPECT_FALSE(table.Take(1, later).has_value());      // expired
  EXPECT_TRUE(table.Add(Pending(3, 10, 'c'), later));  // the expired one made room
  EXPECT_TRUE(table.Take(3, later).has_value());
}

TEST(ChallengeTable, HoldsNoMoreBytesThanItsBudget) {
  ChallengeTable table(100, 1000, std::chrono::seconds(60));
  auto now = Clock::now();
  ASSERT_TRUE(table.Add(Pending(1, 600, 'a'), now));
  EXPECT_FALSE(table.Add(Pending(2, 600, 'b'), now));
  ASSERT_TRUE(table.Take(1, now).has_value());
  EXPECT_TRUE(table.Add(Pending(2, 600, 'b'), now));
}

TEST(ChallengeTable, OneSessionCannotHoldMoreThanItsShare) {
  ChallengeTable table(1000, 1 << 20, std::chrono::seconds(60));
  auto now = Clock::now();
  for (size_t i = 0; i < ChallengeTable::kMaxPerSession + 4; ++i) {
    ASSERT_TRUE(table.Add(Pending(9, 1, static_cast<uint8_t>(i)), now));
  }
  EXPECT_EQ(table.size(), ChallengeTable::kMaxPerSession);
  EXPECT_EQ(table.Take(9, now)->request[0], 4);  // the four oldest gave way
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
