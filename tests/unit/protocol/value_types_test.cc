#include "idnode/protocol/value_types.h"

#include "idnode/identifier/identifier.h"

#include <gtest/gtest.h>

#include <array>

#include <climits>

#include "idnode/common/hex.h"
#include "test_util.h"

namespace idnode::protocol {
namespace {

std::vector<uint8_t> Modulus(size_t bits) {
  std::vector<uint8_t> n(bits / 8, 0xc5);
  n[0] = 0x80 | 0x45;
  n.back() |= 1;
  return n;
}

TEST(HandleValue, RoundTripsWithReferencesAndAbsoluteTtl) {
  const std::vector<uint8_t> data{'d', 'a', 't', 'a'};
  HandleValue v;
  v.index = -7;
  v.timestamp = 0xfffffff0;  // past 2038, unsigned
  v.ttl_type = TtlType::kAbsolute;
  v.ttl = 1900000000;
  v.permissions = permission::kAdminRead | permission::kAdminWrite;
  v.type = "HS_SECKEY";
  v.data = data;
  v.references = {{"0.NA/88", 300}};
  std::vector<uint8_t> out(EncodedSize(v));
  WireWriter w(out);
  WriteHandleValue(w, v);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w.size(), out.size());
  auto decoded = DecodeHandleValue(out);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, v);
  EXPECT_FALSE(decoded->publicly_readable());
}

TEST(SiteInfo, RoundTripsAndHashesLikeCnri) {
  auto rsa_modulus = Modulus(2048);
  std::vector<uint8_t> exponent{0x01, 0x00, 0x01};
  PublicKey key;
  key.key = RsaPublicKey{exponent, rsa_modulus, true, {}};
  auto key_bytes = EncodePublicKey(key);
  SiteInfo site;
  site.serial_number = 7;
  site.primary_mask = 0xc0;
  site.hash_option = static_cast<uint8_t>(HashOption::kSuffix);
  site.attributes = {{"desc", "top-level node"}};
  for (int i = 0; i < 3; ++i) {
    SiteServer s;
    s.server_id = i + 1;
    s.address[15] = static_cast<uint8_t>(i + 1);
    s.public_key = key_bytes;
    s.interfaces = {{interface_type::kBoth, interface_protocol::kUdp, 2641},
                    {interface_type::kBoth, interface_protocol::kTcp, 2641}};
    site.servers.push_back(std::move(s));
  }
  auto bytes = EncodeSiteInfo(site);
  auto decoded = DecodeSiteInfo(bytes);
  ASSERT_TRUE(decoded.ok());
  EXPECT_TRUE(decoded->is_multi_primary());
  EXPECT_EQ(decoded->servers.size(), 3u);
  EXPECT_EQ(decoded->servers[2].server_id, 3);
  EXPECT_EQ(decoded->attributes[0].value, "top-level node");
  EXPECT_EQ(EncodeSiteInfo(*decoded), bytes);
  auto trailing = bytes;
  trailing.push_back(0);
  EXPECT_EQ(DecodeSiteInfo(trailing).error().code, ErrorCode::kTrailingBytes);  // as CNRI
}

// Reference values computed with the algorithm of SiteInfo.getHandleHash: MD5 of the uppercased
// part, last four bytes as a signed big-endian int, Math.abs.
TEST(SiteInfo, HandleHashFollowsTheReferenceAlgorithm) {
  // MD5("20.500.12345/TEST1") ends in ...; the hash must not depend on the case of the handle.
  EXPECT_EQ(HandleHash("20.500.12345/test1", HashOption::kWhole),
            HandleHash("20.500.12345/TEST1", HashOption::kWhole));
  EXPECT_EQ(HandleHash("88.100.1/sn1", HashOption::kPrefix),
            HandleHash("88.100.1/other", HashOption::kPrefix));
  EXPECT_EQ(HandleHash("a/x", HashOption::kSuffix), HandleHash("b/X", HashOption::kSuffix));
  EXPECT_NE(HandleHash("88.100.1/SN1", HashOption::kWhole),
            HandleHash("88.100.1/SN2", HashOption::kWhole));
  // Expected values from an independent implementation (Python hashlib + struct, '>i', abs).
  EXPECT_EQ(HandleHash("", HashOption::kWhole), 319274370);  // MD5("") ends in ec f8 42 7e
  EXPECT_EQ(HandleHash("20.500.12345/test1", HashOption::kWhole), 647673741);
  EXPECT_EQ(HandleHash("20.500.12345/test1", HashOption::kPrefix), 1502227973);
  EXPECT_EQ(HandleHash("20.500.12345/test1", HashOption::kSuffix), 1256960339);
  EXPECT_EQ(HandleHash("88.100.1/SN0001", HashOption::kWhole), 2086439535);
  EXPECT_EQ(SiteServerIndex("88.100.1/SN0001", HashOption::kWhole, 3), 0);
}

TEST(SiteInfo, AbsOfIntMinStaysNegativeAsInJava) {
  // A digest ending in 80 00 00 00: its last 4 bytes are INT_MIN, which Math.abs leaves negative.
  // (A handle with such an MD5 is a 2^-32 find, so the digest is given.)
  std::array<uint8_t, 16> md5{};
  md5[12] = 0x80;
  const int32_t hash = identifier::SiteHashOfMd5(md5);
  EXPECT_EQ(hash, INT32_MIN);
  // Java's abs(INT_MIN) % 3 is -2: the reference client computes a negative server index there,
  // and so do we, for the same answer; a shard folds it into range.
  EXPECT_EQ(ServerIndexOfHash(hash, 3), -2);
  EXPECT_EQ(ServerIndexOfHash(hash, 2), 0);
  EXPECT_EQ(identifier::ShardOfHash(hash, 3), 1u);
  EXPECT_EQ(identifier::ShardOfHash(hash, 8), 0u);
  md5[15] = 0x01;  // 80 00 00 01: negative, and abs makes it positive
  EXPECT_EQ(identifier::SiteHashOfMd5(md5), INT32_MAX);
  // For real handles the index is the hash modulo the count, in range.
  for (int i = 0; i < 1000; ++i) {
    std::string handle = "88.100.1/SN" + std::to_string(i);
    int32_t h = HandleHash(handle, HashOption::kWhole);
    EXPECT_GE(h, 0);
    int32_t index = SiteServerIndex(handle, HashOption::kWhole, 3);
    EXPECT_EQ(index, h % 3);
    EXPECT_EQ(static_cast<uint32_t>(index), identifier::ShardOfHash(h, 3));
  }
  EXPECT_EQ(SiteServerIndex("x", HashOption::kWhole, 0), -1);
}

TEST(SiteInfo, InterfacesAreWalkedInPlaceAndATruncatedSiteIsSaidSo) {
  SiteInfo site;
  site.attributes.push_back({"desc", "two servers"});
  for (uint8_t n = 1; n <= 2; ++n) {
    SiteServer server;
    server.address[15] = n;
    server.interfaces = {{interface_type::kBoth, interface_protocol::kTcp, 2641u + n},
                         {interface_type::kQuery, interface_protocol::kUdp, 2641u + n}};
    site.servers.push_back(server);
  }
  auto bytes = EncodeSiteInfo(site);
  std::vector<std::pair<uint8_t, uint32_t>> seen;
  EXPECT_TRUE(ForEachSiteInterface(
      bytes, [&](std::span<const uint8_t, 16> address, uint8_t protocol, uint32_t port) {
        seen.emplace_back(address[15], port + protocol * 10000);
        return false;
      }));
  EXPECT_EQ(seen, (std::vector<std::pair<uint8_t, uint32_t>>{
                      {1, 12642}, {1, 2642}, {2, 12643}, {2, 2643}}));
  // Stops when asked.
  int visits = 0;
  EXPECT_TRUE(ForEachSiteInterface(bytes, [&](auto, uint8_t, uint32_t) { return ++visits == 2; }));
  EXPECT_EQ(visits, 2);
  // Cut anywhere, it never reads past the end and says the data is malformed.
  for (size_t cut = 0; cut + 1 < bytes.size(); ++cut) {
    EXPECT_FALSE(ForEachSiteInterface(std::span<const uint8_t>(bytes).first(cut), [](auto, uint8_t,
                                                                                     uint32_t) {
      return false;
    })) << cut;
  }
}

TEST(SiteInfo, MalformedSites) {
  SiteInfo site;
  SiteServer server;
  server.interfaces = {{interface_type::kQuery, interface_protocol::kUdp, 2641}};
  site.servers.push_back(server);
  auto good = EncodeSiteInfo(site);
  ASSERT_TRUE(DecodeSiteInfo(good).ok());

  site.servers[0].interfaces.clear();  // a server nobody can reach
  EXPECT_EQ(DecodeSiteInfo(EncodeSiteInfo(site)).error().code, ErrorCode::kInvalidValue);

  auto many_servers = good;  // server count 65 535 with one server's bytes
  const size_t count_at = 2 + 1 + 1 + 2 + 1 + 1 + 4 + 4;
  many_servers[count_at + 2] = 0xff;
  many_servers[count_at + 3] = 0xff;
  EXPECT_EQ(DecodeSiteInfo(many_servers).error().code, ErrorCode::kCountTooLarge);

  auto bad_hash_option = good;
  bad_hash_option[7] = 3;
  EXPECT_EQ(DecodeSiteInfo(bad_hash_option).error().code, ErrorCode::kInvalidValue);

  // A server key with a zero-length or a 100 KB modulus.
  for (size_t modulus_bytes : {size_t{0}, size_t{100000}}) {
    std::vector<uint8_t> modulus(modulus_bytes, 0xab);
    std::vector<uint8_t> exponent{1, 0, 1};
    PublicKey key;
    key.key = RsaPublicKey{exponent, modulus, false, {}};
    auto key_bytes = EncodePublicKey(key);
    SiteInfo keyed;
    SiteServer s = server;
    s.public_key = key_bytes;
    s.interfaces = {{interface_type::kQuery, interface_protocol::kUdp, 2641}};
    keyed.servers.push_back(s);
    EXPECT_EQ(DecodeSiteInfo(EncodeSiteInfo(keyed)).error().code, ErrorCode::kWeakKey)
        << modulus_bytes;
  }
}

TEST(AdminRecord, RoundTripAndLegacyTrailer) {
  AdminRecord admin{admin_permission::kAddHandle | admin_permission::kListHandles, "0.NA/88.100.1",
                    300};
  auto bytes = EncodeAdminRecord(admin);
  auto decoded = DecodeAdminRecord(bytes);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, admin);
  EXPECT_EQ(AdminPermissionString(decoded->permissions), "100000000001");
  auto legacy = bytes;
  legacy.push_back(0);
  legacy.push_back(0);
  auto old = DecodeAdminRecord(legacy);
  ASSERT_TRUE(old.ok());
  EXPECT_TRUE(old->legacy_trailer);
  EXPECT_EQ(EncodeAdminRecord(*old), legacy);
}

TEST(ValueList, RoundTripsAndBoundsItsCount) {
  std::vector<ValueReference> members{{"0.NA/88.100.1", 300}, {"88.100.1/ADMIN", 301}};
  auto bytes = EncodeValueList(members);
  auto decoded = DecodeValueList(bytes);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, members);
  auto lying = bytes;
  lying[0] = 0x7f;
  EXPECT_EQ(DecodeValueList(lying).error().code, ErrorCode::kCountTooLarge);
}

TEST(PublicKey, KeyPolicy) {
  std::vector<uint8_t> f4{0x01, 0x00, 0x01}, one{0x01}, even{0x01, 0x00, 0x02};
  auto n2048 = Modulus(2048), n512 = Modulus(512);
  auto rsa = [](std::span<const uint8_t> e, std::span<const uint8_t> n) {
    PublicKey k;
    k.key = RsaPublicKey{e, n, true, {}};
    return DecodePublicKey(EncodePublicKey(k));
  };
  EXPECT_TRUE(rsa(f4, n2048).ok());
  EXPECT_EQ(rsa(one, n2048).error().code, ErrorCode::kWeakKey);
  EXPECT_EQ(rsa(even, n2048).error().code, ErrorCode::kWeakKey);
  EXPECT_EQ(rsa(f4, n512).error().code, ErrorCode::kWeakKey);
  EXPECT_EQ(rsa(f4, {}).error().code, ErrorCode::kWeakKey);

  std::vector<uint8_t> q(20, 0x91), g{0x02}, y(256, 0x33), zero{0x00}, small{0x01};
  auto dsa = [&](std::span<const uint8_t> g_, std::span<const uint8_t> y_) {
    PublicKey k;
    k.key = DsaPublicKey{q, n2048, g_, y_};
    return DecodePublicKey(EncodePublicKey(k));
  };
  EXPECT_TRUE(dsa(g, y).ok());
  EXPECT_EQ(dsa(small, y).error().code, ErrorCode::kWeakKey);
  EXPECT_EQ(dsa(g, zero).error().code, ErrorCode::kWeakKey);
  EXPECT_EQ(dsa(g, n2048).error().code, ErrorCode::kWeakKey);  // y = p

  auto p_minus_one = n2048;
  p_minus_one.back() -= 1;
  auto dh = [&](std::span<const uint8_t> y_) {
    PublicKey k;
    k.key = DhPublicKey{y_, n2048, g};
    return DecodePublicKey(EncodePublicKey(k));
  };
  EXPECT_TRUE(dh(y).ok());
  EXPECT_EQ(dh(zero).error().code, ErrorCode::kWeakKey);
  EXPECT_EQ(dh(small).error().code, ErrorCode::kWeakKey);
  EXPECT_EQ(dh(p_minus_one).error().code, ErrorCode::kWeakKey);

  std::vector<uint8_t> unknown;
  WireWriter counter({});
  unknown.resize(4 + 11 + 2);
  WireWriter w(unknown);
  w.Text("EC_PUB_KEY!");
  w.U16(0);
  EXPECT_EQ(DecodePublicKey(unknown).error().code, ErrorCode::kUnknownKeyType);
}

}  // namespace
}  // namespace idnode::protocol
