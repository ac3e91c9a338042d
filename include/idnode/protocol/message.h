// Handle protocol messages: envelope, header, bodies per opcode, credential section
// (HANDLE.md §1.1-1.5, §1.10). Decoding yields views into the caller's buffer; encoding writes
// into a caller-provided buffer. Plain values, no shared state: any thread may use them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <optional>
#include <span>
#include <string_view>
#include <variant>
#include <vector>

#include "idnode/protocol/constants.h"
#include "idnode/protocol/error.h"
#include "idnode/protocol/value.h"
#include "idnode/protocol/version.h"
#include "idnode/protocol/wire.h"

namespace idnode::protocol {

struct Envelope {
  uint8_t major_version = 2;
  uint8_t minor_version = 11;
  bool compressed = false;      // CP
  bool encrypted = false;       // EC
  bool truncated = false;       // TC: one packet of a multi-packet request
  uint8_t reserved_flags = 0;   // bits 0x1c of byte 2, kept for a faithful re-encoding
  uint8_t suggested_major = 2;  // low 2 bits of byte 2; 0 means "use major/minor"
  uint8_t suggested_minor = 11;
  uint32_t session_id = 0;
  uint32_t request_id = 0;
  uint32_t sequence_number = 0;
  uint32_t message_length = 0;  // bytes after the envelope, in the whole (reassembled) message

  ProtocolVersion version() const { return {major_version, minor_version}; }
  // The version the sender would like answers in (HANDLE.md §1.9).
  ProtocolVersion suggested_version() const {
    if (suggested_major == 0) return version();
    return {suggested_major, suggested_minor};
  }

  friend bool operator==(const Envelope&, const Envelope&) = default;
};

struct Header {
  uint32_t opcode = 0;
  uint32_t response_code = 0;  // 0 in requests
  uint32_t op_flags = 0;
  uint16_t site_info_serial = 0xffff;
  uint8_t recursion_count = 0;
  uint8_t reserved = 0;
  uint32_t expiration_time = 0;
  uint32_t body_length = 0;  // as decoded; the encoder computes its own

  bool has(uint32_t flag) const { return (op_flags & flag) != 0; }
  bool is_request() const { return response_code == 0; }

  friend bool operator==(const Header&, const Header&) = default;
};

// The [RD] prefix of a response body (HANDLE.md §1.5).
struct RequestDigestField {
  DigestAlgorithm algorithm = DigestAlgorithm::kSha256;
  std::span<const uint8_t> digest;
};

// An index list as it sits on the wire: a view with random access, no allocation.
class WireIntList {
 public:
  WireIntList() = default;
  WireIntList(std::span<const uint8_t> bytes, uint32_t count) : bytes_(bytes), count_(count) {}
  uint32_t size() const { return count_; }
  bool empty() const { return count_ == 0; }
  int32_t operator[](uint32_t i) const {
    const uint8_t* p = bytes_.data() + size_t{i} * 4;
    return static_cast<int32_t>(uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 |
                                uint32_t{p[3]});
  }
  std::span<const uint8_t> bytes() const { return bytes_; }

 private:
  std::span<const uint8_t> bytes_;
  uint32_t count_ = 0;
};

// A list of length-prefixed strings as it sits on the wire, already validated by the decoder.
class WireTextList {
 public:
  class Iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = std::string_view;
    using difference_type = std::ptrdiff_t;
    using pointer = const std::string_view*;
    using reference = std::string_view;

    Iterator() = default;
    Iterator(const uint8_t* p, uint32_t left) : p_(p), left_(left) {}
    std::string_view operator*() const {
      uint32_t n = uint32_t{p_[0]} << 24 | uint32_t{p_[1]} << 16 | uint32_t{p_[2]} << 8 | p_[3];
      return {reinterpret_cast<const char*>(p_ + 4), n};
    }
    Iterator& operator++() {
      p_ += 4 + (**this).size();
      --left_;
      return *this;
    }
    Iterator operator++(int) {
      Iterator before = *this;
      ++*this;
      return before;
    }
    // Iterators of one list are equal when as many strings are left in both.
    bool operator==(const Iterator& o) const { return left_ == o.left_; }

   private:
    const uint8_t* p_ = nullptr;
    uint32_t left_ = 0;
  };

  WireTextList() = default;
  WireTextList(std::span<const uint8_t> bytes, uint32_t count) : bytes_(bytes), count_(count) {}
  uint32_t size() const { return count_; }
  bool empty() const { return count_ == 0; }
  Iterator begin() const { return {bytes_.data(), count_}; }
  Iterator end() const { return {nullptr, 0}; }
  std::span<const uint8_t> bytes() const { return bytes_; }

 private:
  std::span<const uint8_t> bytes_;
  uint32_t count_ = 0;
};

// OC_RESOLUTION request. `extension` holds bytes after the type list: China's identifier SDK
// appends an empty length-prefixed string (HANDLE.md §3); they are accepted and ignored.
struct ResolutionRequest {
  std::string_view handle;
  WireIntList indexes;
  WireTextList types;
  std::span<const uint8_t> extension;
};

// OC_RESOLUTION success; also the body of 302/303 referrals (handle + values).
struct HandleValuesBody {
  std::string_view handle;
  std::vector<HandleValue> values;
};

// Referral (302/303): handle, then optionally count + values.
struct ReferralBody {
  std::string_view handle;
  bool has_values = false;
  std::vector<HandleValue> values;
};

// Every response code except 1, 302, 303 and 402.
struct ErrorBody {
  std::string_view message;
};

// 402: nonce (the digest sits in the RD prefix from 2.1 on).
struct ChallengeBody {
  std::span<const uint8_t> nonce;
};

// OC 2001 LOGIN_ID_SYSTEM request (China's identifier SDK): the identity to log in.
struct LoginRequest {
  std::string_view handle;
  int32_t index = 0;
};

// OC 200 RESPONSE_TO_CHALLENGE request.
struct ChallengeAnswer {
  std::string_view auth_type;  // "HS_PUBKEY" or "HS_SECKEY"
  std::string_view user_id_handle;
  int32_t user_id_index = 0;
  std::span<const uint8_t> signed_response;
};

// OC 201 VERIFY_CHALLENGE request.
struct VerifyChallengeRequest {
  std::string_view handle;
  int32_t index = 0;
  std::span<const uint8_t> nonce;
  std::span<const uint8_t> original_request_digest;
  std::span<const uint8_t> signed_response;
};

// OC 201 success.
struct VerifyChallengeResult {
  bool valid = false;
};

// Bodies that are a single handle: GET_SITE_INFO, DELETE_HANDLE, LIST_HANDLES, HOME/UNHOME_NA,
// LIST_HOMED_NAS, GET_NEXT_TXN_ID, BACKUP_SERVER requests, and CREATE_HANDLE's response (v9).
struct HandleBody {
  std::string_view handle;
};

// OC_REMOVE_VALUE request.
struct RemoveValuesRequest {
  std::string_view handle;
  WireIntList indexes;
};

// OC_GET_SITE_INFO success: the HS_SITE record (decode with DecodeSiteInfo).
struct SiteInfoBody {
  std::span<const uint8_t> site_data;
};

// LIST_HANDLES / LIST_HOMED_NAS success.
struct HandleListBody {
  std::vector<std::string_view> handles;
};

struct EmptyBody {};

// Bodies this codec carries without interpreting (sessions, replication streams, encrypted
// payloads).
struct OpaqueBody {
  std::span<const uint8_t> bytes;
};

using Body = std::variant<EmptyBody, OpaqueBody, ResolutionRequest, HandleValuesBody, ReferralBody,
                          ErrorBody, ChallengeBody, ChallengeAnswer, VerifyChallengeRequest,
                          VerifyChallengeResult, HandleBody, RemoveValuesRequest, SiteInfoBody,
                          HandleListBody, LoginRequest>;

// The credential section (HANDLE.md §1.10). `present` is false for a zero-length section.
struct Credential {
  bool present = false;
  uint8_t version = 0;
  uint8_t reserved = 0;
  uint16_t options = 0;
  std::string_view signer_handle;
  int32_t signer_index = 0;
  std::string_view type;              // "HS_SIGNED" or "HS_MAC"
  std::string_view digest_algorithm;  // from signedInfo: "SHA-256", "HMAC-SHA256", ...
  std::span<const uint8_t> signature;
};

struct Message {
  Envelope envelope;
  Header header;  // not decoded when envelope.encrypted (the payload is ciphertext)
  std::optional<RequestDigestField> request_digest;
  Body body;
  Credential credential;
  // Whether the message had a credential length field at all (CNRI always writes one).
  bool has_credential_field = true;
  // For encrypted messages: everything after the envelope.
  std::span<const uint8_t> encrypted_payload;
};

// Decodes a whole message (envelope + MessageLength bytes: one TCP frame, one UDP datagram, or a
// reassembled multi-datagram message). Never reads past `bytes`, never allocates by a count it has
// not checked against the bytes left.
Decoded<Message> DecodeMessage(std::span<const uint8_t> bytes);

// The handle of a single-datagram, uncompressed, unencrypted OC_RESOLUTION request, read from its
// fixed offsets without decoding the rest; empty for anything else (the full decode decides
// what to answer). For prefetching, never for answering: it checks bounds, not validity.
std::string_view PeekResolutionHandle(std::span<const uint8_t> message);

// Decodes only the envelope (the first 20 bytes).
Decoded<Envelope> DecodeEnvelope(std::span<const uint8_t> bytes);
void WriteEnvelope(const Envelope& envelope, std::span<uint8_t, kEnvelopeSize> out);

// Encodes a message into `out`; BodyLength and MessageLength are computed, not taken from the
// structs. Returns the number of bytes written, or kBufferTooSmall (with the size needed in
// `offset`).
Decoded<size_t> EncodeMessage(const Message& message, std::span<uint8_t> out);
// The size EncodeMessage would write.
size_t EncodedMessageSize(const Message& message);

// The header of a response to `request`: same opcode and expiration, the request's flags echoed
// with AT added (and RD kept) but CT cleared (signing sets it), the response code mapped for the
// response version.
Header ResponseHeaderFor(const Header& request, ResponseCode rc, uint16_t site_info_serial,
                         ProtocolVersion response_version);
// The envelope of a response to `request` (HANDLE.md §1.9): encoded in the request's suggested
// version capped at ours, suggesting ours, echoing session and request ids.
Envelope ResponseEnvelopeFor(const Envelope& request);

}  // namespace idnode::protocol
