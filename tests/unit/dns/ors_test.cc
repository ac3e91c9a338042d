#include "idnode/dns/ors.h"

#include <gtest/gtest.h>

#include <string>

namespace idnode::dns {
namespace {

TEST(Ors, OidToDnsNameReversesTheArcsUnderTheApex) {
  EXPECT_EQ(*OidToDnsName("1.2.156.3001.1", "oid-res.org."), "1.3001.156.2.1.oid-res.org.");
  EXPECT_EQ(*OidToDnsName("2.16.156.101818.102.1", "oid-res.org"),
            "1.102.101818.156.16.2.oid-res.org.");
  EXPECT_EQ(*OidToDnsName("1", "oid.example.cn."), "1.oid.example.cn.");
}

TEST(Ors, DnsNameToOidIsTheInverseAndIgnoresCase) {
  EXPECT_EQ(*DnsNameToOid("1.3001.156.2.1.oid-res.org.", "oid-res.org."), "1.2.156.3001.1");
  EXPECT_EQ(*DnsNameToOid("1.3001.156.2.1.OID-RES.Org", "oid-res.org."), "1.2.156.3001.1");
  for (std::string oid :
       {"0.0", "1.39.5", "2.999.1", "2.25.329800735698586629295641978511506172918",
        "1.2.156.3001.1.0.10.100"}) {
    auto name = OidToDnsName(oid, "oid-res.org.");
    ASSERT_TRUE(name.ok()) << oid;
    auto back = DnsNameToOid(*name, "oid-res.org.");
    ASSERT_TRUE(back.ok()) << *name;
    EXPECT_EQ(*back, oid);
  }
}

TEST(Ors, NonCanonicalOidsAreRefused) {
  for (std::string bad : {"", ".", "1.", ".1", "1..2", "01.2", "1.02", "1.2.156.03001", "3.1",
                          "1.40", "0.40", "1.2.x", "1.2.-3", "1.2.+3", "1.2 .3", "1.2/3", "１.2"}) {
    EXPECT_FALSE(IsCanonicalOid(bad)) << bad;
    auto name = OidToDnsName(bad, "oid-res.org.");
    ASSERT_FALSE(name.ok()) << bad;
    EXPECT_EQ(name.error(), OrsError::kNotAnOid) << bad;
  }
  EXPECT_TRUE(IsCanonicalOid("2.40"));  // under joint-iso-itu-t the second arc is unbounded
  EXPECT_TRUE(IsCanonicalOid("0.0"));
}

TEST(Ors, AnOidIsAtMostOneHundredBytes) {
  std::string oid = "1.2";
  while (oid.size() + 2 <= kMaxOidLength) oid += ".1";
  ASSERT_EQ(oid.size(), kMaxOidLength - 1);
  oid += "0";  // the last arc becomes "10": exactly 100 bytes
  ASSERT_EQ(oid.size(), kMaxOidLength);
  ASSERT_TRUE(OidToDnsName(oid, "oid-res.org.").ok());
  EXPECT_EQ(*DnsNameToOid(*OidToDnsName(oid, "oid-res.org."), "oid-res.org."), oid);
  std::string longer = oid + "0";
  EXPECT_FALSE(IsCanonicalOid(longer));
  EXPECT_EQ(OidToDnsName(longer, "oid-res.org.").error(), OrsError::kTooLong);
  // The same through a DNS name: 101 bytes of arcs.
  std::string name = "10";
  for (size_t i = 0; i < 48; ++i) name += ".1";
  name += ".2.1.oid-res.org.";  // 1.2.1...1.10 = 2+2+96+... bytes
  auto got = DnsNameToOid(name, "oid-res.org.");
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.error(), OrsError::kTooLong);
}

TEST(Ors, NamesThatAreNoOid) {
  EXPECT_EQ(DnsNameToOid("example.com.", "oid-res.org.").error(), OrsError::kNotInZone);
  EXPECT_EQ(DnsNameToOid("oid-res.org.evil.", "oid-res.org.").error(), OrsError::kNotInZone);
  EXPECT_EQ(DnsNameToOid("xoid-res.org.", "oid-res.org.").error(), OrsError::kNotInZone);
  EXPECT_EQ(DnsNameToOid("oid-res.org.", "oid-res.org.").error(), OrsError::kApex);
  EXPECT_EQ(DnsNameToOid("www.oid-res.org.", "oid-res.org.").error(), OrsError::kNotAnOid);
  EXPECT_EQ(DnsNameToOid("1.01.oid-res.org.", "oid-res.org.").error(), OrsError::kNotAnOid);
  EXPECT_EQ(DnsNameToOid("5.oid-res.org.", "oid-res.org.").error(), OrsError::kNotAnOid);
  EXPECT_EQ(DnsNameToOid("1.\\000.oid-res.org.", "oid-res.org.").error(), OrsError::kNotAnOid);
  EXPECT_EQ(DnsNameToOid("1.2.oid-res.org.", "not a name..").error(), OrsError::kBadApex);
}

TEST(Ors, HandleForOidUsesThePrefix) {
  EXPECT_EQ(HandleForOid("OID", "1.2.156.3001.1"), "OID/1.2.156.3001.1");
  EXPECT_EQ(HandleForOid("88.100.1", "2.16.156"), "88.100.1/2.16.156");
}

}  // namespace
}  // namespace idnode::dns
