#include "idnode/protocol/describe.h"

#include <sstream>

#include "idnode/common/hex.h"
#include "idnode/protocol/value_types.h"

namespace idnode::protocol {

namespace {

std::string Printable(std::span<const uint8_t> data) {
  for (uint8_t b : data) {
    if (b < 0x20 || b >= 0x7f) return ToHex(data);
  }
  return std::string(reinterpret_cast<const char*>(data.data()), data.size());
}

void DescribeValues(std::ostringstream& os, const std::vector<HandleValue>& values) {
  for (const auto& v : values) {
    os << "      value idx=" << v.index << " ts=" << v.timestamp
       << " ttlType=" << static_cast<int>(v.ttl_type) << " ttl=" << v.ttl << " perm=0x" << std::hex
       << static_cast<int>(v.permissions) << std::dec << " type=" << v.type
       << " data=" << Printable(v.data) << " refs=" << v.references.size() << "\n";
  }
}

}  // namespace

std::string Describe(const Message& m) {
  std::ostringstream os;
  const Envelope& e = m.envelope;
  os << "  envelope: version=" << int{e.major_version} << "." << int{e.minor_version}
     << " flags=" << (e.compressed ? "CP," : "") << (e.encrypted ? "EC," : "")
     << (e.truncated ? "TC," : "") << " suggested=" << int{e.suggested_major} << "."
     << int{e.suggested_minor} << " sessionId=" << e.session_id << " requestId=" << e.request_id
     << " seq=" << e.sequence_number << " msgLen=" << e.message_length << "\n";
  if (e.encrypted) {
    os << "  encrypted payload: " << m.encrypted_payload.size() << " bytes\n";
    return os.str();
  }
  const Header& h = m.header;
  os << "  header: " << OpCodeName(h.opcode) << " "
     << (h.is_request() ? std::string("RC_RESERVED(request)") : ResponseCodeName(h.response_code))
     << " opFlags=0x" << std::hex << h.op_flags << std::dec << "[" << OpFlagNames(h.op_flags) << "]"
     << " siteSerial=" << h.site_info_serial << " recursion=" << int{h.recursion_count}
     << " expiration=" << h.expiration_time << " bodyLen=" << h.body_length << "\n";
  if (m.request_digest) {
    os << "  requestDigest: hashType=" << static_cast<int>(m.request_digest->algorithm) << " "
       << ToHex(m.request_digest->digest) << "\n";
  }
  std::visit(
      [&os](const auto& b) {
        using T = std::decay_t<decltype(b)>;
        if constexpr (std::is_same_v<T, EmptyBody>) {
          os << "  body: (empty)\n";
        } else if constexpr (std::is_same_v<T, OpaqueBody>) {
          os << "  body: " << b.bytes.size() << " bytes not interpreted\n";
        } else if constexpr (std::is_same_v<T, ResolutionRequest>) {
          os << "  body: handle=" << b.handle << " indexes=[";
          for (uint32_t i = 0; i < b.indexes.size(); ++i) os << (i ? "," : "") << b.indexes[i];
          os << "] types=[";
          bool first = true;
          for (auto t : b.types) {
            os << (first ? "" : ",") << "'" << t << "'";
            first = false;
          }
          os << "]";
          if (!b.extension.empty()) os << " extension=" << ToHex(b.extension);
          os << "\n";
        } else if constexpr (std::is_same_v<T, HandleValuesBody>) {
          os << "  body: handle=" << b.handle << " numValues=" << b.values.size() << "\n";
          DescribeValues(os, b.values);
        } else if constexpr (std::is_same_v<T, ReferralBody>) {
          os << "  body: referral handle=" << b.handle << " numValues=" << b.values.size() << "\n";
          DescribeValues(os, b.values);
        } else if constexpr (std::is_same_v<T, ErrorBody>) {
          os << "  body: error message='" << b.message << "'\n";
        } else if constexpr (std::is_same_v<T, ChallengeBody>) {
          os << "  body: challenge nonce=" << ToHex(b.nonce) << "\n";
        } else if constexpr (std::is_same_v<T, ChallengeAnswer>) {
          os << "  body: authType=" << b.auth_type << " userId=" << b.user_id_index << ":"
             << b.user_id_handle << " signedResponse(" << b.signed_response.size() << "B)\n";
        } else if constexpr (std::is_same_v<T, VerifyChallengeRequest>) {
          os << "  body: verify " << b.index << ":" << b.handle << " nonce=" << ToHex(b.nonce)
             << "\n";
        } else if constexpr (std::is_same_v<T, VerifyChallengeResult>) {
          os << "  body: valid=" << (b.valid ? "true" : "false") << "\n";
        } else if constexpr (std::is_same_v<T, HandleBody>) {
          os << "  body: handle=" << b.handle << "\n";
        } else if constexpr (std::is_same_v<T, RemoveValuesRequest>) {
          os << "  body: handle=" << b.handle << " indexes=[";
          for (uint32_t i = 0; i < b.indexes.size(); ++i) os << (i ? "," : "") << b.indexes[i];
          os << "]\n";
        } else if constexpr (std::is_same_v<T, SiteInfoBody>) {
          auto site = DecodeSiteInfo(b.site_data);
          if (!site.ok()) {
            os << "  body: site info (" << b.site_data.size()
               << " bytes, undecodable: " << ErrorCodeName(site.error().code) << ")\n";
            return;
          }
          os << "  body: site version=" << int{site->protocol_major} << "."
             << int{site->protocol_minor} << " serial=" << site->serial_number
             << " servers=" << site->servers.size() << "\n";
        } else if constexpr (std::is_same_v<T, HandleListBody>) {
          os << "  body: " << b.handles.size() << " handles\n";
          for (auto handle : b.handles) os << "      " << handle << "\n";
        }
      },
      m.body);
  if (m.credential.present) {
    os << "  credential: type=" << m.credential.type << " alg=" << m.credential.digest_algorithm
       << " signature=" << m.credential.signature.size() << " bytes\n";
  } else {
    os << "  credential section: 0 bytes\n";
  }
  return os.str();
}

}  // namespace idnode::protocol
