// The session table: bounded in number, per source and in time; a replay window that refuses
// every counter twice; new setups push out only unauthenticated sessions, spoofable (UDP,
// unconfirmed) ones first; authentication only for the identity the session named.
#include "idnode/auth/sessions.h"

#include <gtest/gtest.h>

namespace idnode::auth {
namespace {

using Clock = std::chrono::steady_clock;

Origin From(uint8_t last, bool datagram = false) {
  Origin o;
  o.address[15] = last;
  o.datagram = datagram;
  return o;
}

const Identity kAdmin{"0.NA/ADM.1", 300};

TEST(SessionTable, OpensFindsAndExpires) {
  SessionTable t(8, 8, std::chrono::seconds(3600));
  const auto now = Clock::now();
  const uint32_t id = t.Open(From(1), std::vector<uint8_t>(32, 1), 4, kAdmin, 60, now);
  ASSERT_NE(id, 0u);
  auto found = t.Find(id, now);
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->identity, kAdmin);
  EXPECT_FALSE(found->authenticated.has_value());
  // The client asked for 60 s; the table's maximum would allow an hour.
  EXPECT_TRUE(t.Find(id, now + std::chrono::seconds(59)).has_value());
  EXPECT_FALSE(t.Find(id, now + std::chrono::seconds(61)).has_value());
  // Asking for more than the maximum gets the maximum.
  const uint32_t long_one = t.Open(From(1), {}, 2, std::nullopt, 1 << 30, now);
  EXPECT_TRUE(t.Find(long_one, now + std::chrono::seconds(3599)).has_value());
  EXPECT_FALSE(t.Find(long_one, now + std::chrono::seconds(3601)).has_value());
  EXPECT_TRUE(t.Close(id));
  EXPECT_FALSE(t.Find(id, now).has_value());
  EXPECT_FALSE(t.Close(id));
}

TEST(SessionTable, ReplayWindowRefusesEveryCounterTwice) {
  SessionTable t(8, 8, std::chrono::seconds(3600));
  const uint32_t id = t.Open(From(1), std::vector<uint8_t>(32, 1), 4, kAdmin, 0, Clock::now());
  EXPECT_FALSE(t.AcceptCounter(id, 0));  // 0 is never a fresh counter
  EXPECT_TRUE(t.AcceptCounter(id, 1));
  EXPECT_FALSE(t.AcceptCounter(id, 1));
  EXPECT_TRUE(t.AcceptCounter(id, 5));
  EXPECT_TRUE(t.AcceptCounter(id, 3));  // out of order, inside the window
  EXPECT_FALSE(t.AcceptCounter(id, 3));
  EXPECT_FALSE(t.AcceptCounter(id, 5));
  EXPECT_TRUE(t.AcceptCounter(id, 5 + SessionTable::kReplayWindow));
  EXPECT_FALSE(t.AcceptCounter(id, 5));  // now older than the window
  EXPECT_FALSE(t.AcceptCounter(id, 4));
  EXPECT_TRUE(t.AcceptCounter(id, 6 + SessionTable::kReplayWindow));
  EXPECT_FALSE(t.AcceptCounter(id + 1, 1));  // no such session
}

TEST(SessionTable, OnlyTheNamedIdentityAuthenticatesItsSession) {
  SessionTable t(8, 8, std::chrono::seconds(3600));
  const auto now = Clock::now();
  const uint32_t named = t.Open(From(1), {1}, 4, kAdmin, 0, now);
  const uint32_t anonymous = t.Open(From(1), {1}, 4, std::nullopt, 0, now);
  EXPECT_FALSE(t.MarkAuthenticated(named, Identity{"0.NA/ADM.1", 301}));
  EXPECT_FALSE(t.MarkAuthenticated(anonymous, kAdmin));
  EXPECT_TRUE(t.MarkAuthenticated(named, kAdmin));
  EXPECT_EQ(t.Find(named, now)->authenticated, kAdmin);
  EXPECT_FALSE(t.Find(anonymous, now)->authenticated.has_value());
}

TEST(SessionTable, NewSetupsPushOutOnlyUnauthenticatedSessionsSpoofableOnesFirst) {
  SessionTable t(4, 3, std::chrono::seconds(3600));
  auto now = Clock::now();
  auto tick = [&] { return now += std::chrono::milliseconds(1); };
  const uint32_t proven = t.Open(From(1), {1}, 4, kAdmin, 0, tick());
  ASSERT_TRUE(t.MarkAuthenticated(proven, kAdmin));
  const uint32_t confirmed = t.Open(From(1, true), {1}, 4, kAdmin, 0, tick());
  ASSERT_TRUE(t.AcceptCounter(confirmed, 1));  // a valid MAC came: not a spoofed setup
  const uint32_t spoofed = t.Open(From(1, true), {1}, 4, kAdmin, 0, tick());
  // Source 1 is at its limit of 3: the next setup pushes out the unconfirmed one, not the older
  // confirmed one, and never the authenticated one.
  const uint32_t next = t.Open(From(1, true), {1}, 4, kAdmin, 0, tick());
  ASSERT_NE(next, 0u);
  EXPECT_FALSE(t.Find(spoofed, now).has_value());
  EXPECT_TRUE(t.Find(confirmed, now).has_value());
  EXPECT_TRUE(t.Find(proven, now).has_value());
  // The table holds 4: another source's setup pushes out the oldest unconfirmed session (next).
  const uint32_t other = t.Open(From(2), {1}, 4, kAdmin, 0, tick());
  ASSERT_NE(other, 0u);
  const uint32_t third = t.Open(From(3), {1}, 4, kAdmin, 0, tick());
  ASSERT_NE(third, 0u);
  EXPECT_FALSE(t.Find(next, now).has_value());
  EXPECT_EQ(t.size(), 4u);
  // When every session is authenticated, there is no room.
  SessionTable full(2, 2, std::chrono::seconds(3600));
  for (int i = 0; i < 2; ++i) {
    const uint32_t id = full.Open(From(1), {1}, 4, kAdmin, 0, tick());
    ASSERT_TRUE(full.MarkAuthenticated(id, kAdmin));
  }
  EXPECT_EQ(full.Open(From(2), {1}, 4, kAdmin, 0, tick()), 0u);
  // Expired sessions make room.
  EXPECT_NE(full.Open(From(2), {1}, 4, kAdmin, 0, now + std::chrono::hours(2)), 0u);
}

TEST(SessionTable, ServerCountersAndKeysSetOnce) {
  SessionTable t(8, 8, std::chrono::seconds(3600));
  const auto now = Clock::now();
  const uint32_t id = t.Open(From(1), {}, 2, kAdmin, 0, now);
  EXPECT_EQ(t.NextServerCounter(id), 1u);
  EXPECT_EQ(t.NextServerCounter(id), 2u);
  EXPECT_TRUE(t.SetKey(id, std::vector<uint8_t>(16, 9)));
  EXPECT_FALSE(t.SetKey(id, std::vector<uint8_t>(16, 8)));  // the first key exchanged stays
  EXPECT_EQ(t.Find(id, now)->key, std::vector<uint8_t>(16, 9));
}

}  // namespace
}  // namespace idnode::auth
