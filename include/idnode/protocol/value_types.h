// Typed views of the standard value types (HANDLE.md §1.7): HS_SITE, HS_ADMIN, HS_VLIST,
// HS_PUBKEY, HS_SECKEY. Decoders take a value's data and return views into it.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "idnode/protocol/error.h"
#include "idnode/protocol/value.h"

namespace idnode::protocol {

inline constexpr std::string_view kTypeSite = "HS_SITE";
inline constexpr std::string_view kTypeSite6 = "HS_SITE.6";
inline constexpr std::string_view kTypeSitePrefix = "HS_SITE.PREFIX";
inline constexpr std::string_view kTypeAdmin = "HS_ADMIN";
inline constexpr std::string_view kTypeValueList = "HS_VLIST";
inline constexpr std::string_view kTypePublicKey = "HS_PUBKEY";
inline constexpr std::string_view kTypeSecretKey = "HS_SECKEY";
inline constexpr std::string_view kTypeService = "HS_SERV";

// ---- HS_SITE ----------------------------------------------------------------------------------

enum class HashOption : uint8_t { kPrefix = 0, kSuffix = 1, kWhole = 2 };

struct SiteAttribute {
  std::string_view name;
  std::string_view value;
  friend bool operator==(const SiteAttribute&, const SiteAttribute&) = default;
};

namespace interface_type {
inline constexpr uint8_t kAdmin = 1;
inline constexpr uint8_t kQuery = 2;
inline constexpr uint8_t kBoth = 3;
}  // namespace interface_type

namespace interface_protocol {
inline constexpr uint8_t kUdp = 0;
inline constexpr uint8_t kTcp = 1;
inline constexpr uint8_t kHttp = 2;
inline constexpr uint8_t kHttps = 3;
}  // namespace interface_protocol

struct SiteInterface {
  uint8_t type = interface_type::kBoth;
  uint8_t protocol = interface_protocol::kTcp;
  uint32_t port = 2641;
  friend bool operator==(const SiteInterface&, const SiteInterface&) = default;
};

struct SiteServer {
  int32_t server_id = 1;
  std::array<uint8_t, 16> address{};    // IPv4 right-aligned after 12 zero bytes
  std::span<const uint8_t> public_key;  // an HS_PUBKEY encoding
  std::vector<SiteInterface> interfaces;
};

struct SiteInfo {
  uint16_t data_format_version = 1;
  uint8_t protocol_major = 2;
  uint8_t protocol_minor = 11;
  uint16_t serial_number = 1;
  uint8_t primary_mask = 0x80;  // 0x80 primary, 0x40 multi-primary
  uint8_t hash_option = static_cast<uint8_t>(HashOption::kWhole);
  std::span<const uint8_t> hash_filter;
  std::vector<SiteAttribute> attributes;
  std::vector<SiteServer> servers;

  bool is_primary() const { return (primary_mask & 0x80) != 0; }
  bool is_multi_primary() const { return (primary_mask & 0x40) != 0; }
};

// Limits that keep a hostile HS_SITE cheap to decode; far above any real site.
inline constexpr uint32_t kMaxSiteServers = 1024;
inline constexpr uint32_t kMaxSiteInterfaces = 64;
inline constexpr uint32_t kMaxSiteAttributes = 256;

// Rejects trailing bytes, as CNRI's decoder does.
Decoded<SiteInfo> DecodeSiteInfo(std::span<const uint8_t> data);
size_t EncodeSiteInfo(const SiteInfo& site, WireWriter& writer);
std::vector<uint8_t> EncodeSiteInfo(const SiteInfo& site);

// A site server's address as people write it: dotted IPv4 for an address written as IPv4 (12 zero
// bytes, or the ::ffff: mapping, before it), IPv6 text (RFC 5952) otherwise.
std::string SiteAddressText(const std::array<uint8_t, 16>& address);

// Visits every interface of every server of HS_SITE data in place (no allocation: referrals check
// sites on network workers): visit(address, protocol, port) with the server's 16-byte address as
// written, returning true to stop. False when the data is malformed before the walk ended (what
// was visited stays visited).
bool ForEachSiteInterface(std::span<const uint8_t> data,
                          const std::function<bool(std::span<const uint8_t, 16> address,
                                                   uint8_t protocol, uint32_t port)>& visit);

// SiteInfo.getHandleHash (HANDLE.md §1.7): MD5 of the ASCII-uppercased part of `handle` chosen by
// `option`; the last 4 bytes as a signed big-endian int; Java's Math.abs (abs(INT_MIN) stays
// negative).
int32_t HandleHash(std::string_view handle, HashOption option);
// Index of the server inside a site that handles `handle`: HandleHash % server_count with Java's
// truncating remainder, so the INT_MIN quirk yields a negative index exactly as CNRI computes it.
int32_t SiteServerIndex(std::string_view handle, HashOption option, uint32_t server_count);
// The index for a hash already computed (-1 without servers).
int32_t ServerIndexOfHash(int32_t hash, uint32_t server_count);

// ---- HS_ADMIN ---------------------------------------------------------------------------------

struct AdminRecord {
  uint16_t permissions = admin_permission::kDefinedMask;
  std::string_view admin_handle;
  int32_t admin_index = 300;    // 0 means "any index of admin_handle"
  bool legacy_trailer = false;  // old encoding with 2 extra trailing bytes
  std::array<uint8_t, 2> legacy_bytes{};

  friend bool operator==(const AdminRecord&, const AdminRecord&) = default;
};

Decoded<AdminRecord> DecodeAdminRecord(std::span<const uint8_t> data);
std::vector<uint8_t> EncodeAdminRecord(const AdminRecord& admin);
// JSON form of the permissions: 12 characters, bit 0x0800 first ("011111111111").
std::string AdminPermissionString(uint16_t permissions);

// ---- HS_VLIST ---------------------------------------------------------------------------------

Decoded<std::vector<ValueReference>> DecodeValueList(std::span<const uint8_t> data);
std::vector<uint8_t> EncodeValueList(std::span<const ValueReference> members);

// ---- HS_PUBKEY --------------------------------------------------------------------------------

inline constexpr std::string_view kKeyTypeRsa = "RSA_PUB_KEY";
inline constexpr std::string_view kKeyTypeDsa = "DSA_PUB_KEY";
inline constexpr std::string_view kKeyTypeDh = "DH_PUB_KEY";

// Integers are unsigned big-endian magnitudes as Java's BigInteger.toByteArray writes them (a
// leading zero byte may precede a high bit).
struct RsaPublicKey {
  std::span<const uint8_t> exponent;
  std::span<const uint8_t> modulus;
  // CNRI writes one more, empty, length-prefixed field after the modulus; kept for re-encoding.
  bool has_trailing_field = true;
  std::span<const uint8_t> trailing_field;
};
struct DsaPublicKey {
  std::span<const uint8_t> q, p, g, y;
};
struct DhPublicKey {
  std::span<const uint8_t> y, p, g;
};

struct PublicKey {
  uint16_t flags = 0;  // reserved
  std::variant<RsaPublicKey, DsaPublicKey, DhPublicKey> key;
};

// Key-size policy checked at decode: RSA modulus 1024..16384 bits, odd exponent > 1 that is
// smaller than the modulus; DSA/DH: p 1024..16384 bits, 1 < g < p, 1 < y < p, 0 < q < p.
inline constexpr size_t kMinKeyBits = 1024;
inline constexpr size_t kMaxKeyBits = 16384;

Decoded<PublicKey> DecodePublicKey(std::span<const uint8_t> data);
std::vector<uint8_t> EncodePublicKey(const PublicKey& key);

// ---- HS_SECKEY --------------------------------------------------------------------------------

// The secret bytes; never public-read (the registry enforces that on write).
struct SecretKey {
  std::span<const uint8_t> secret;
};
inline SecretKey DecodeSecretKey(std::span<const uint8_t> data) {
  return SecretKey{data};
}

}  // namespace idnode::protocol
