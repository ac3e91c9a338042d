#include "idnode/identifier/identifier.h"

#include <gtest/gtest.h>

#include <climits>
#include <vector>

namespace idnode::identifier {
namespace {

TEST(Identifier, SameIgnoringAsciiCaseIsEqualityAfterNormalize) {
  EXPECT_TRUE(SameIgnoringAsciiCase("0.na/20.500.12345", "0.NA/20.500.12345"));
  EXPECT_TRUE(SameIgnoringAsciiCase("", ""));
  EXPECT_FALSE(SameIgnoringAsciiCase("0.NA/A", "0.NA/AB"));
  EXPECT_FALSE(
      SameIgnoringAsciiCase("a/\xc3\xa9", "A/\xc3\x89"));  // only ASCII folds, as Normalize
  EXPECT_EQ(SameIgnoringAsciiCase("a/\xc3\xa9", "A/\xc3\x89"),
            Normalize("a/\xc3\xa9") == Normalize("A/\xc3\x89"));
}

TEST(Identifier, SplitNormaliseAndPrefixHandles) {
  auto parts = Split("88.100.1/SN0001/x");
  EXPECT_EQ(parts.prefix, "88.100.1");
  EXPECT_EQ(parts.suffix, "SN0001/x");
  EXPECT_TRUE(parts.has_slash);
  EXPECT_FALSE(Split("noslash").has_slash);
  EXPECT_EQ(Split("noslash").prefix, "noslash");
  EXPECT_EQ(Normalize("88.100.1/sn-é"), "88.100.1/SN-é");   // ASCII only: é stays
  EXPECT_EQ(Normalize("10.1/abc"), Normalize("10.1/ABC"));  // one key (HARDENING §3 case 17)
  EXPECT_TRUE(IsPrefixHandle("0.na/88.100.1"));
  EXPECT_TRUE(IsPrefixHandle("0.NA/88"));
  EXPECT_FALSE(IsPrefixHandle("0.NB/88"));
  EXPECT_FALSE(IsPrefixHandle("0.NA"));
  EXPECT_EQ(PrefixHandleFor("88.100.1"), "0.NA/88.100.1");
  EXPECT_EQ(PrefixOf("88.100.1/SN1"), "88.100.1");
}

TEST(Identifier, Validity) {
  EXPECT_TRUE(IsValidHandle("88.100.1/SN0001"));
  EXPECT_FALSE(IsValidHandle(""));
  EXPECT_FALSE(IsValidHandle("88.100.1"));
  EXPECT_FALSE(IsValidHandle("88.100.1/"));
  EXPECT_FALSE(IsValidHandle("/SN1"));
  EXPECT_FALSE(IsValidHandle(std::string("88/a\0b", 6)));
  EXPECT_FALSE(IsValidHandle("88/" + std::string(2048, 'x')));
}

TEST(Identifier, SiteHashMatchesAnIndependentImplementation) {
  // Expected values from Python: abs(struct.unpack('>i', md5(s.upper()).digest()[-4:])[0]).
  EXPECT_EQ(SiteHash(""), 319274370);
  EXPECT_EQ(SiteHash("20.500.12345/test1"), 647673741);
  EXPECT_EQ(SiteHash("20.500.12345/TEST1"), 647673741);
  EXPECT_EQ(SiteHash("88.100.1/SN0001"), 2086439535);
}

TEST(Identifier, ShardsAreInRangeAndSpread) {
  std::vector<int> counts(8, 0);
  for (int i = 0; i < 8000; ++i) {
    uint32_t shard = ShardOf("88.100.1/SN" + std::to_string(i), 8);
    ASSERT_LT(shard, 8u);
    ++counts[shard];
  }
  for (int c : counts) {
    EXPECT_GT(c, 800);
    EXPECT_LT(c, 1200);
  }
  EXPECT_EQ(ShardOf("88.100.1/sn1", 8), ShardOf("88.100.1/SN1", 8));
  EXPECT_EQ(ShardOf("88.100.1/SN0001", 3), 2086439535u % 3);
  EXPECT_EQ(ShardOf("anything", 1), 0u);
}

}  // namespace
}  // namespace idnode::identifier
