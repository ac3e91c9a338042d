#include "idnode/protocol/value_types.h"

#include <arpa/inet.h>

#include <algorithm>
#include <climits>
#include <cstring>

#include "idnode/identifier/identifier.h"
#include "idnode/protocol/digest.h"

namespace idnode::protocol {

namespace {

// Smallest encodings, used to bound counts by the bytes left.
constexpr size_t kMinAttributeSize = 8;            // two empty strings
constexpr size_t kMinServerSize = 4 + 16 + 4 + 4;  // id, address, empty key, zero interfaces
constexpr size_t kInterfaceSize = 1 + 1 + 4;
constexpr size_t kMinVlistEntrySize = 8;
constexpr uint32_t kMaxVlistEntries = 65536;

template <typename T>
Decoded<T> Finish(WireReader& r, T value) {
  r.ExpectEnd();
  if (!r.ok()) return Failure{r.error()};
  return value;
}

// Big-endian unsigned magnitudes (Java BigInteger.toByteArray, so a leading 0x00 may appear).
std::span<const uint8_t> StripLeadingZeros(std::span<const uint8_t> n) {
  size_t i = 0;
  while (i < n.size() && n[i] == 0) ++i;
  return n.subspan(i);
}

size_t BitLength(std::span<const uint8_t> n) {
  n = StripLeadingZeros(n);
  if (n.empty()) return 0;
  size_t bits = (n.size() - 1) * 8;
  for (uint8_t top = n[0]; top != 0; top >>= 1) ++bits;
  return bits;
}

// -1, 0, 1 as a <, ==, > b.
int Compare(std::span<const uint8_t> a, std::span<const uint8_t> b) {
  a = StripLeadingZeros(a);
  b = StripLeadingZeros(b);
  if (a.size() != b.size()) return a.size() < b.size() ? -1 : 1;
  int c = a.empty() ? 0 : std::memcmp(a.data(), b.data(), a.size());
  return c < 0 ? -1 : (c > 0 ? 1 : 0);
}

bool IsAtMostOne(std::span<const uint8_t> n) {
  return BitLength(n) <= 1;
}

std::vector<uint8_t> MinusOne(std::span<const uint8_t> n) {
  std::vector<uint8_t> out(n.begin(), n.end());
  for (size_t i = out.size(); i-- > 0;) {
    if (out[i] != 0) {
      --out[i];
      break;
    }
    out[i] = 0xff;
  }
  return out;
}

bool ModulusSizeOk(std::span<const uint8_t> p) {
  size_t bits = BitLength(p);
  return bits >= kMinKeyBits && bits <= kMaxKeyBits;
}

// 1 < x < limit
bool StrictlyBetweenOneAnd(std::span<const uint8_t> x, std::span<const uint8_t> limit) {
  return !IsAtMostOne(x) && Compare(x, limit) < 0;
}

bool ValidRsa(const RsaPublicKey& k) {
  auto e = StripLeadingZeros(k.exponent);
  return ModulusSizeOk(k.modulus) && !e.empty() && (e.back() & 1) != 0 && !IsAtMostOne(e) &&
         Compare(e, k.modulus) < 0;
}

bool ValidDsa(const DsaPublicKey& k) {
  return ModulusSizeOk(k.p) && BitLength(k.q) > 0 && Compare(k.q, k.p) < 0 &&
         StrictlyBetweenOneAnd(k.g, k.p) && StrictlyBetweenOneAnd(k.y, k.p);
}

bool ValidDh(const DhPublicKey& k) {
  if (!ModulusSizeOk(k.p)) return false;
  std::vector<uint8_t> p_minus_one = MinusOne(k.p);
  // y = 0, 1 or p-1 makes the shared secret guessable (small-subgroup confinement).
  return StrictlyBetweenOneAnd(k.g, k.p) && StrictlyBetweenOneAnd(k.y, p_minus_one);
}

}  // namespace

// ---- HS_SITE ----------------------------------------------------------------------------------

Decoded<SiteInfo> DecodeSiteInfo(std::span<const uint8_t> data) {
  WireReader r(data);
  SiteInfo s;
  s.data_format_version = r.U16();
  s.protocol_major = r.U8();
  s.protocol_minor = r.U8();
  s.serial_number = r.U16();
  s.primary_mask = r.U8();
  size_t hash_option_at = r.offset();
  s.hash_option = r.U8();
  if (r.ok() && s.hash_option > static_cast<uint8_t>(HashOption::kWhole)) {
    r.FailAt(ErrorCode::kInvalidValue, hash_option_at);
  }
  s.hash_filter = r.LengthPrefixed();
  uint32_t attribute_count = r.Count(kMinAttributeSize, kMaxSiteAttributes);
  if (!r.ok()) return Failure{r.error()};
  s.attributes.reserve(attribute_count);
  for (uint32_t i = 0; i < attribute_count && r.ok(); ++i) {
    SiteAttribute a;
    a.name = r.Text();
    a.value = r.Text();
    s.attributes.push_back(a);
  }
  uint32_t server_count = r.Count(kMinServerSize, kMaxSiteServers);
  if (!r.ok()) return Failure{r.error()};
  s.servers.reserve(server_count);
  for (uint32_t i = 0; i < server_count && r.ok(); ++i) {
    SiteServer server;
    server.server_id = r.I32();
    auto address = r.Bytes(16);
    if (r.ok()) std::memcpy(server.address.data(), address.data(), 16);
    size_t key_at = r.offset();
    server.public_key = r.LengthPrefixed();
    if (r.ok() && !server.public_key.empty()) {
      auto key = DecodePublicKey(server.public_key);
      if (!key.ok()) r.FailAt(key.error().code, key_at + 4 + key.error().offset);
    }
    size_t interfaces_at = r.offset();
    uint32_t interface_count = r.Count(kInterfaceSize, kMaxSiteInterfaces);
    if (r.ok() && interface_count == 0) r.FailAt(ErrorCode::kInvalidValue, interfaces_at);
    if (!r.ok()) break;
    server.interfaces.reserve(interface_count);
    for (uint32_t j = 0; j < interface_count && r.ok(); ++j) {
      SiteInterface itf;
      itf.type = r.U8();
      itf.protocol = r.U8();
      itf.port = r.U32();
      if (r.ok() && (itf.type < interface_type::kAdmin || itf.type > interface_type::kBoth ||
                     itf.protocol > interface_protocol::kHttps || itf.port > 65535)) {
        r.FailAt(ErrorCode::kInvalidValue, r.offset() - kInterfaceSize);
      }
      server.interfaces.push_back(itf);
    }
    s.servers.push_back(std::move(server));
  }
  return Finish(r, std::move(s));
}

size_t EncodeSiteInfo(const SiteInfo& s, WireWriter& w) {
  size_t start = w.size();
  w.U16(s.data_format_version);
  w.U8(s.protocol_major);
  w.U8(s.protocol_minor);
  w.U16(s.serial_number);
  w.U8(s.primary_mask);
  w.U8(s.hash_option);
  w.LengthPrefixed(s.hash_filter);
  w.U32(static_cast<uint32_t>(s.attributes.size()));
  for (const auto& a : s.attributes) {
    w.Text(a.name);
    w.Text(a.value);
  }
  w.U32(static_cast<uint32_t>(s.servers.size()));
  for (const auto& server : s.servers) {
    w.I32(server.server_id);
    w.Bytes(server.address);
    w.LengthPrefixed(server.public_key);
    w.U32(static_cast<uint32_t>(server.interfaces.size()));
    for (const auto& itf : server.interfaces) {
      w.U8(itf.type);
      w.U8(itf.protocol);
      w.U32(itf.port);
    }
  }
  return w.size() - start;
}

std::vector<uint8_t> EncodeSiteInfo(const SiteInfo& site) {
  WireWriter counter({});
  std::vector<uint8_t> out(EncodeSiteInfo(site, counter));
  WireWriter w(out);
  EncodeSiteInfo(site, w);
  return out;
}

bool ForEachSiteInterface(std::span<const uint8_t> data,
                          const std::function<bool(std::span<const uint8_t, 16> address,
                                                   uint8_t protocol, uint32_t port)>& visit) {
  WireReader r(data);
  (void)r.U16();             // data format version
  (void)r.U8();              // protocol major
  (void)r.U8();              // protocol minor
  (void)r.U16();             // serial
  (void)r.U8();              // primary mask
  (void)r.U8();              // hash option
  (void)r.LengthPrefixed();  // hash filter
  const uint32_t attributes = r.U32();
  for (uint32_t i = 0; i < attributes && r.ok(); ++i) {
    (void)r.LengthPrefixed();
    (void)r.LengthPrefixed();
  }
  const uint32_t servers = r.U32();
  for (uint32_t s = 0; s < servers && r.ok(); ++s) {
    (void)r.U32();  // server id
    auto address = r.Bytes(16);
    (void)r.LengthPrefixed();  // public key
    const uint32_t interfaces = r.U32();
    for (uint32_t i = 0; i < interfaces && r.ok(); ++i) {
      (void)r.U8();  // type
      const uint8_t protocol = r.U8();
      const uint32_t port = r.U32();
      if (!r.ok()) break;
      if (visit(std::span<const uint8_t, 16>(address.data(), 16), protocol, port)) return true;
    }
  }
  return r.ok();
}

int32_t HandleHash(std::string_view handle, HashOption option) {
  identifier::HandleParts parts = identifier::Split(handle);
  std::string_view part = handle;
  if (parts.has_slash && option == HashOption::kPrefix) part = parts.prefix;
  if (parts.has_slash && option == HashOption::kSuffix) part = parts.suffix;
  return identifier::SiteHash(part);
}

int32_t SiteServerIndex(std::string_view handle, HashOption option, uint32_t server_count) {
  return ServerIndexOfHash(HandleHash(handle, option), server_count);
}

int32_t ServerIndexOfHash(int32_t hash, uint32_t server_count) {
  if (server_count == 0) return -1;
  // C++ and Java both truncate toward zero, so a negative hash gives the same negative index.
  return hash % static_cast<int32_t>(server_count);
}

// ---- HS_ADMIN ---------------------------------------------------------------------------------

Decoded<AdminRecord> DecodeAdminRecord(std::span<const uint8_t> data) {
  WireReader r(data);
  AdminRecord a;
  a.permissions = r.U16();
  if (r.ok() && (a.permissions & ~admin_permission::kDefinedMask) != 0) {
    r.FailAt(ErrorCode::kInvalidValue, 0);
  }
  a.admin_handle = ReadHandle(r);
  a.admin_index = r.I32();
  if (r.ok() && r.remaining() == 2) {
    // Legacy encoding: two extra trailing bytes that CNRI's decoder accepts and ignores.
    a.legacy_trailer = true;
    auto extra = r.Bytes(2);
    a.legacy_bytes = {extra[0], extra[1]};
  }
  return Finish(r, a);
}

std::vector<uint8_t> EncodeAdminRecord(const AdminRecord& a) {
  std::vector<uint8_t> out(2 + 4 + a.admin_handle.size() + 4 + (a.legacy_trailer ? 2 : 0));
  WireWriter w(out);
  w.U16(a.permissions);
  w.Text(a.admin_handle);
  w.I32(a.admin_index);
  if (a.legacy_trailer) w.Bytes(a.legacy_bytes);
  return out;
}

std::string AdminPermissionString(uint16_t permissions) {
  std::string out(12, '0');
  for (int bit = 0; bit < 12; ++bit) {
    if (permissions & (1u << bit)) out[11 - bit] = '1';
  }
  return out;
}

// ---- HS_VLIST ---------------------------------------------------------------------------------

Decoded<std::vector<ValueReference>> DecodeValueList(std::span<const uint8_t> data) {
  WireReader r(data);
  std::vector<ValueReference> members;
  uint32_t count = r.Count(kMinVlistEntrySize, kMaxVlistEntries);
  if (!r.ok()) return Failure{r.error()};
  members.reserve(count);
  for (uint32_t i = 0; i < count && r.ok(); ++i) {
    ValueReference ref;
    ref.handle = ReadHandle(r);
    ref.index = r.I32();
    members.push_back(ref);
  }
  return Finish(r, std::move(members));
}

std::vector<uint8_t> EncodeValueList(std::span<const ValueReference> members) {
  size_t size = 4;
  for (const auto& m : members) size += 8 + m.handle.size();
  std::vector<uint8_t> out(size);
  WireWriter w(out);
  w.U32(static_cast<uint32_t>(members.size()));
  for (const auto& m : members) {
    w.Text(m.handle);
    w.I32(m.index);
  }
  return out;
}

// ---- HS_PUBKEY --------------------------------------------------------------------------------

Decoded<PublicKey> DecodePublicKey(std::span<const uint8_t> data) {
  WireReader r(data);
  PublicKey key;
  std::string_view type = r.Text();
  key.flags = r.U16();
  if (!r.ok()) return Failure{r.error()};
  if (type == kKeyTypeRsa) {
    RsaPublicKey k;
    k.exponent = r.LengthPrefixed();
    k.modulus = r.LengthPrefixed();
    k.has_trailing_field = r.ok() && r.remaining() > 0;
    if (k.has_trailing_field) k.trailing_field = r.LengthPrefixed();
    r.ExpectEnd();
    if (r.ok() && !ValidRsa(k)) return Failure{ProtocolError{ErrorCode::kWeakKey, 0}};
    key.key = k;
  } else if (type == kKeyTypeDsa) {
    DsaPublicKey k;
    k.q = r.LengthPrefixed();
    k.p = r.LengthPrefixed();
    k.g = r.LengthPrefixed();
    k.y = r.LengthPrefixed();
    r.ExpectEnd();
    if (r.ok() && !ValidDsa(k)) return Failure{ProtocolError{ErrorCode::kWeakKey, 0}};
    key.key = k;
  } else if (type == kKeyTypeDh) {
    DhPublicKey k;
    k.y = r.LengthPrefixed();
    k.p = r.LengthPrefixed();
    k.g = r.LengthPrefixed();
    r.ExpectEnd();
    if (r.ok() && !ValidDh(k)) return Failure{ProtocolError{ErrorCode::kWeakKey, 0}};
    key.key = k;
  } else {
    return Failure{ProtocolError{ErrorCode::kUnknownKeyType, 0}};
  }
  if (!r.ok()) return Failure{r.error()};
  return key;
}

std::vector<uint8_t> EncodePublicKey(const PublicKey& key) {
  auto write = [&key](WireWriter& w) {
    std::visit(
        [&w, &key](const auto& k) {
          using T = std::decay_t<decltype(k)>;
          if constexpr (std::is_same_v<T, RsaPublicKey>) {
            w.Text(kKeyTypeRsa);
            w.U16(key.flags);
            w.LengthPrefixed(k.exponent);
            w.LengthPrefixed(k.modulus);
            if (k.has_trailing_field) w.LengthPrefixed(k.trailing_field);
          } else if constexpr (std::is_same_v<T, DsaPublicKey>) {
            w.Text(kKeyTypeDsa);
            w.U16(key.flags);
            w.LengthPrefixed(k.q);
            w.LengthPrefixed(k.p);
            w.LengthPrefixed(k.g);
            w.LengthPrefixed(k.y);
          } else {
            w.Text(kKeyTypeDh);
            w.U16(key.flags);
            w.LengthPrefixed(k.y);
            w.LengthPrefixed(k.p);
            w.LengthPrefixed(k.g);
          }
        },
        key.key);
  };
  WireWriter counter({});
  write(counter);
  std::vector<uint8_t> out(counter.needed());
  WireWriter w(out);
  write(w);
  return out;
}

std::string SiteAddressText(const std::array<uint8_t, 16>& a) {
  const bool v4 = std::all_of(a.begin(), a.begin() + 10, [](uint8_t b) { return b == 0; }) &&
                  ((a[10] == 0 && a[11] == 0) || (a[10] == 0xff && a[11] == 0xff));
  char text[INET6_ADDRSTRLEN] = {};
  if (v4) {
    inet_ntop(AF_INET, a.data() + 12, text, sizeof text);
  } else {
    inet_ntop(AF_INET6, a.data(), text, sizeof text);
  }
  return text;
}

}  // namespace idnode::protocol
