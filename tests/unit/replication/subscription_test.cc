// What a subscription covers, what a peer may ask for, and the key ranges a snapshot scans.
#include "idnode/replication/subscription.h"

#include <gtest/gtest.h>

#include <array>

#include "idnode/identifier/identifier.h"

namespace idnode::replication {
namespace {

Subscription Of(std::vector<std::string> prefixes) {
  auto s = Subscription::Of(prefixes);
  EXPECT_TRUE(s.ok()) << s.error();
  return *s;
}

TEST(SubscriptionTest, CoversThePrefixItsDerivedPrefixesAndTheirPrefixHandles) {
  Subscription s = Of({"88.100"});
  EXPECT_TRUE(s.Covers("88.100/SN1"));
  EXPECT_TRUE(s.Covers("88.100.1/SN1"));
  EXPECT_TRUE(s.Covers("88.100.1.7/X"));
  EXPECT_TRUE(s.Covers("0.NA/88.100.1"));
  EXPECT_FALSE(s.Covers("0.NA/88.100"));  // the parent's delegation, not ours
  EXPECT_FALSE(s.Covers("88.1000/SN1"));
  EXPECT_FALSE(s.Covers("88.10/SN1"));
  EXPECT_FALSE(s.Covers("88/SN1"));
  EXPECT_FALSE(s.Covers("0.NA/88.1000"));
  EXPECT_TRUE(s.CoversPrefix("88.100.5"));
  EXPECT_FALSE(s.CoversPrefix("88.1005"));
  EXPECT_TRUE(Of({"0.NA"}).Covers("0.NA/88"));
  EXPECT_TRUE(Subscription::Everything().Covers("anything/at-all"));
}

TEST(SubscriptionTest, AServerOfAMirrorSiteIsSentItsShareAndEveryPrefixHandle) {
  // Normalised keys, as the source scans and logs them.
  const Subscription whole = Of({"88.100"});
  const Subscription everything = Subscription::Everything();
  std::array<Subscription, 3> shares = {whole.ShareOfServer(3, 0), whole.ShareOfServer(3, 1),
                                        whole.ShareOfServer(3, 2)};
  std::array<int, 3> held{};
  for (int i = 0; i < 600; ++i) {
    const std::string key = identifier::Normalize("88.100.1/SN" + std::to_string(i));
    int holders = 0;
    for (uint32_t k = 0; k < 3; ++k) {
      // The same division as the servers' (the hash of the whole handle, HANDLE.md §1.7).
      const bool mine = shares[k].Covers(key);
      EXPECT_EQ(mine, identifier::ShardOf(key, 3) == k) << key;
      EXPECT_EQ(everything.ShareOfServer(3, k).Covers(key), mine) << key;
      holders += mine;
      held[k] += mine;
    }
    EXPECT_EQ(holders, 1) << key;
  }
  for (int n : held) EXPECT_GT(n, 150);  // the hash spreads them
  for (const auto& share : shares) {
    EXPECT_TRUE(share.Covers("0.NA/88.100.1"));  // every server's
    EXPECT_FALSE(share.Covers("88.200/SN1"));    // still only the subscribed prefixes
    EXPECT_TRUE(whole.Contains(share));          // a share asks for no more than the whole
  }
  EXPECT_EQ(shares[2].ToString(), "88.100 (server 2 of 3 by the site hash)");
  EXPECT_EQ(shares[2].site_servers(), 3u);
  // One server: not narrowed.
  EXPECT_EQ(whole.ShareOfServer(1, 0).site_servers(), 0u);
  EXPECT_EQ(whole.ShareOfServer(1, 0).ToString(), "88.100");
}

TEST(SubscriptionTest, NormalisesFoldsAndRefusesWhatIsNotAPrefix) {
  Subscription s = Of({"88.100.1", "88.100", "Abc", "abc"});
  EXPECT_EQ(s.prefixes(), (std::vector<std::string>{"88.100", "ABC"}));
  EXPECT_FALSE(Subscription::Of({}).ok());
  EXPECT_FALSE(Subscription::Of({"88/100"}).ok());
  EXPECT_FALSE(Subscription::Of({""}).ok());
  EXPECT_FALSE(Subscription::Of({".88"}).ok());
  EXPECT_FALSE(Subscription::Of({"8 8"}).ok());
  EXPECT_FALSE(Subscription::Of({std::string(129, '8')}).ok());
  EXPECT_FALSE(Subscription::Of(std::vector<std::string>(10001, "88")).ok());
}

TEST(SubscriptionTest, APeerGetsOnlyWhatItIsAllowed) {
  Subscription allowed = Of({"88.100"});
  EXPECT_TRUE(allowed.Contains(Of({"88.100"})));
  EXPECT_TRUE(allowed.Contains(Of({"88.100.1", "88.100.2"})));
  EXPECT_FALSE(allowed.Contains(Of({"88.100", "88.200"})));
  EXPECT_FALSE(allowed.Contains(Of({"88"})));
  EXPECT_FALSE(allowed.Contains(Of({"88.1000"})));
  EXPECT_FALSE(allowed.Contains(Subscription::Everything()));
  EXPECT_TRUE(Subscription::Everything().Contains(Of({"88"})));
  EXPECT_TRUE(Subscription::Everything().Contains(Subscription::Everything()));
}

TEST(SubscriptionTest, KeyRangesHoldEveryCoveredKeyAndLittleElse) {
  Subscription s = Of({"88.100", "0.NA", "20.500"});
  auto ranges = s.KeyRanges();
  auto in_ranges = [&](const std::string& key) {
    for (const auto& [begin, end] : ranges) {
      if (key >= begin && (end.empty() || key < end)) return true;
    }
    return false;
  };
  for (size_t i = 1; i < ranges.size(); ++i) EXPECT_LE(ranges[i - 1].second, ranges[i].first);
  const std::vector<std::string> keys = {
      "88.100/A",     "88.100.1/B", "88.100.1.2/C", "0.NA/88.100.7", "0.NA/88.100",
      "0.NA/1",       "88.1000/D",  "88.10/E",      "88/F",          "20.500/G",
      "20.500.9/H",   "20.5001/I",  "0.NA/20.500",  "ZZZ/J",         "88.100-/K",
      "0.NA/88.1000", "88.100./L",  "0.NB/x",       "0.N/x",         "20.500.12345/M"};
  for (const auto& raw : keys) {
    std::string key = identifier::Normalize(raw);
    if (s.Covers(key)) {
      EXPECT_TRUE(in_ranges(key)) << key;
    }
  }
  EXPECT_FALSE(in_ranges("ZZZ/J"));
  EXPECT_FALSE(in_ranges("88/F"));
  auto all = Subscription::Everything().KeyRanges();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0], (std::pair<std::string, std::string>{"", ""}));
}

}  // namespace
}  // namespace idnode::replication
