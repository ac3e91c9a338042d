#include "idnode/protocol/message.h"

#include <algorithm>

namespace idnode::protocol {

namespace {

// Index and type lists in a resolution request: no record has more values than a message may
// carry, so more filters than that are never meaningful.
constexpr uint32_t kMaxFilterEntries = kMaxValuesPerMessage;

bool IsResponseWithValuesReferral(uint32_t rc) {
  return rc == static_cast<uint32_t>(ResponseCode::kServiceReferral) ||
         rc == static_cast<uint32_t>(ResponseCode::kPrefixReferral);
}

void ReadDigestPrefix(WireReader& r, Message& m) {
  uint8_t hash_type = r.U8();
  if (!r.ok()) return;
  RequestDigestField field;
  switch (hash_type) {
    case 0: {
      field.algorithm = DigestAlgorithm::kMd5Legacy;
      size_t at = r.offset();
      field.digest = r.LengthPrefixed();
      if (r.ok() && field.digest.size() != DigestSize(DigestAlgorithm::kMd5Legacy)) {
        r.FailAt(ErrorCode::kLengthMismatch, at);
      }
      break;
    }
    case 1:
    case 2:
    case 3:
      field.algorithm = static_cast<DigestAlgorithm>(hash_type);
      field.digest = r.Bytes(DigestSize(field.algorithm));
      break;
    default:
      r.FailAt(ErrorCode::kUnknownDigestAlgorithm, r.offset() - 1);
      return;
  }
  m.request_digest = field;
}

WireIntList ReadIntList(WireReader& r) {
  uint32_t count = r.Count(4, kMaxFilterEntries);
  auto bytes = r.Bytes(size_t{count} * 4);
  return {bytes, count};
}

Body ReadResolutionRequest(WireReader& r, std::span<const uint8_t> body) {
  ResolutionRequest req;
  req.handle = ReadHandle(r);
  req.indexes = ReadIntList(r);
  uint32_t type_count = r.Count(4, kMaxFilterEntries);
  size_t types_start = r.offset();
  for (uint32_t i = 0; i < type_count && r.ok(); ++i) (void)r.Text();
  if (r.ok())
    req.types = WireTextList(body.subspan(types_start, r.offset() - types_start), type_count);
  // China's identifier SDK appends an empty length-prefixed string here (HANDLE.md §3).
  req.extension = r.rest();
  (void)r.Bytes(r.remaining());
  return req;
}

Body ReadHandleValuesBody(WireReader& r) {
  HandleValuesBody b;
  b.handle = ReadHandle(r);
  b.values = ReadHandleValues(r);
  return b;
}

Body ReadRequestBody(WireReader& r, std::span<const uint8_t> body, uint32_t opcode) {
  switch (static_cast<OpCode>(opcode)) {
    case OpCode::kResolution:
      return ReadResolutionRequest(r, body);
    case OpCode::kGetSiteInfo:
    case OpCode::kDeleteHandle:
    case OpCode::kListHandles:
    case OpCode::kListNas:
    case OpCode::kHomeNa:
    case OpCode::kUnhomeNa:
    case OpCode::kTakeoverNa:
    case OpCode::kListHomedNas:
    case OpCode::kGetNextTxnId:
    case OpCode::kBackupServer:
      return HandleBody{ReadHandle(r)};
    case OpCode::kCreateHandle:
    case OpCode::kAddValue:
    case OpCode::kModifyValue:
      return ReadHandleValuesBody(r);
    case OpCode::kRemoveValue: {
      RemoveValuesRequest req;
      req.handle = ReadHandle(r);
      req.indexes = ReadIntList(r);
      return req;
    }
    case OpCode::kLoginIdSystem: {
      LoginRequest login;
      login.handle = ReadHandle(r);
      login.index = r.I32();
      return login;
    }
    case OpCode::kResponseToChallenge: {
      ChallengeAnswer a;
      a.auth_type = r.Text();
      a.user_id_handle = ReadHandle(r);
      a.user_id_index = r.I32();
      a.signed_response = r.LengthPrefixed();
      return a;
    }
    case OpCode::kVerifyChallenge: {
      VerifyChallengeRequest v;
      v.handle = ReadHandle(r);
      v.index = r.I32();
      v.nonce = r.LengthPrefixed();
      v.original_request_digest = r.LengthPrefixed();
      v.signed_response = r.LengthPrefixed();
      return v;
    }
    default:
      return OpaqueBody{r.Bytes(r.remaining())};
  }
}

Body ReadSuccessBody(WireReader& r, uint32_t opcode) {
  switch (static_cast<OpCode>(opcode)) {
    case OpCode::kResolution:
      return ReadHandleValuesBody(r);
    case OpCode::kGetSiteInfo:
      return SiteInfoBody{r.Bytes(r.remaining())};
    case OpCode::kCreateHandle:
      // CNRI 9 returns the created handle (so that MINT works); older servers send nothing.
      if (r.remaining() == 0) return EmptyBody{};
      return HandleBody{ReadHandle(r)};
    case OpCode::kListHandles:
    case OpCode::kListHomedNas:
    case OpCode::kListNas: {
      HandleListBody list;
      uint32_t count = r.Count(4, UINT32_MAX);
      list.handles.reserve(count);
      for (uint32_t i = 0; i < count && r.ok(); ++i) list.handles.push_back(ReadHandle(r));
      return list;
    }
    case OpCode::kVerifyChallenge: {
      size_t at = r.offset();
      uint8_t valid = r.U8();
      if (r.ok() && valid > 1) r.FailAt(ErrorCode::kInvalidValue, at);
      return VerifyChallengeResult{valid == 1};
    }
    case OpCode::kDeleteHandle:
    case OpCode::kAddValue:
    case OpCode::kRemoveValue:
    case OpCode::kModifyValue:
    case OpCode::kHomeNa:
    case OpCode::kUnhomeNa:
    case OpCode::kTakeoverNa:
    case OpCode::kLoginIdSystem:
    case OpCode::kBackupServer:
      return EmptyBody{};
    default:
      return OpaqueBody{r.Bytes(r.remaining())};
  }
}

Body ReadResponseBody(WireReader& r, const Header& h) {
  uint32_t rc = h.response_code;
  if (rc == static_cast<uint32_t>(ResponseCode::kSuccess)) return ReadSuccessBody(r, h.opcode);
  if (IsResponseWithValuesReferral(rc)) {
    ReferralBody b;
    b.handle = ReadHandle(r);
    if (r.ok() && r.remaining() > 0) {
      b.has_values = true;
      b.values = ReadHandleValues(r);
    }
    return b;
  }
  if (rc == static_cast<uint32_t>(ResponseCode::kAuthenticationNeeded)) {
    return ChallengeBody{r.LengthPrefixed()};
  }
  return ErrorBody{r.Text()};
}

void ReadCredential(std::span<const uint8_t> bytes, size_t base, Credential& c, WireReader& outer) {
  WireReader r(bytes);
  c.present = true;
  c.version = r.U8();
  c.reserved = r.U8();
  c.options = r.U16();
  c.signer_handle = ReadHandle(r);
  c.signer_index = r.I32();
  c.type = r.Text();
  size_t type_end = r.offset();
  auto signed_info = r.LengthPrefixed();
  r.ExpectEnd();
  // Only the two credential types CNRI defines; anything else is refused rather than ignored, so
  // that a request never passes as signed when it is not.
  if (r.ok() && c.type != "HS_SIGNED" && c.type != "HS_MAC")
    r.FailAt(ErrorCode::kInvalidValue, type_end);
  if (r.ok()) {
    WireReader s(signed_info);
    c.digest_algorithm = s.Text();
    c.signature = s.LengthPrefixed();
    s.ExpectEnd();
    if (!s.ok()) {
      outer.FailAt(s.error().code, base + static_cast<size_t>(signed_info.data() - bytes.data()) +
                                       s.error().offset);
      return;
    }
  }
  if (!r.ok()) outer.FailAt(r.error().code, base + r.error().offset);
}

void WriteBody(WireWriter& w, const Body& body) {
  std::visit(
      [&w](const auto& b) {
        using T = std::decay_t<decltype(b)>;
        if constexpr (std::is_same_v<T, EmptyBody>) {
        } else if constexpr (std::is_same_v<T, OpaqueBody>) {
          w.Bytes(b.bytes);
        } else if constexpr (std::is_same_v<T, ResolutionRequest>) {
          w.Text(b.handle);
          w.U32(b.indexes.size());
          w.Bytes(b.indexes.bytes());
          w.U32(b.types.size());
          w.Bytes(b.types.bytes());
          w.Bytes(b.extension);
        } else if constexpr (std::is_same_v<T, HandleValuesBody>) {
          w.Text(b.handle);
          WriteHandleValues(w, b.values);
        } else if constexpr (std::is_same_v<T, ReferralBody>) {
          w.Text(b.handle);
          if (b.has_values || !b.values.empty()) WriteHandleValues(w, b.values);
        } else if constexpr (std::is_same_v<T, ErrorBody>) {
          w.Text(b.message);
        } else if constexpr (std::is_same_v<T, ChallengeBody>) {
          w.LengthPrefixed(b.nonce);
        } else if constexpr (std::is_same_v<T, ChallengeAnswer>) {
          w.Text(b.auth_type);
          w.Text(b.user_id_handle);
          w.I32(b.user_id_index);
          w.LengthPrefixed(b.signed_response);
        } else if constexpr (std::is_same_v<T, VerifyChallengeRequest>) {
          w.Text(b.handle);
          w.I32(b.index);
          w.LengthPrefixed(b.nonce);
          w.LengthPrefixed(b.original_request_digest);
          w.LengthPrefixed(b.signed_response);
        } else if constexpr (std::is_same_v<T, VerifyChallengeResult>) {
          w.U8(b.valid ? 1 : 0);
        } else if constexpr (std::is_same_v<T, HandleBody>) {
          w.Text(b.handle);
        } else if constexpr (std::is_same_v<T, RemoveValuesRequest>) {
          w.Text(b.handle);
          w.U32(b.indexes.size());
          w.Bytes(b.indexes.bytes());
        } else if constexpr (std::is_same_v<T, SiteInfoBody>) {
          w.Bytes(b.site_data);
        } else if constexpr (std::is_same_v<T, HandleListBody>) {
          w.U32(static_cast<uint32_t>(b.handles.size()));
          for (auto h : b.handles) w.Text(h);
        } else if constexpr (std::is_same_v<T, LoginRequest>) {
          w.Text(b.handle);
          w.I32(b.index);
        }
      },
      body);
}

void WriteCredential(WireWriter& w, const Credential& c) {
  size_t length_at = w.Reserve32();
  size_t start = w.size();
  w.U8(c.version);
  w.U8(c.reserved);
  w.U16(c.options);
  w.Text(c.signer_handle);
  w.I32(c.signer_index);
  w.Text(c.type);
  size_t info_at = w.Reserve32();
  size_t info_start = w.size();
  w.Text(c.digest_algorithm);
  w.LengthPrefixed(c.signature);
  w.Patch32(info_at, static_cast<uint32_t>(w.size() - info_start));
  w.Patch32(length_at, static_cast<uint32_t>(w.size() - start));
}

void WriteMessage(WireWriter& w, const Message& m) {
  std::array<uint8_t, kEnvelopeSize> envelope{};
  WriteEnvelope(m.envelope, envelope);
  w.Bytes(envelope);
  if (m.envelope.encrypted) {
    w.Bytes(m.encrypted_payload);
  } else {
    const Header& h = m.header;
    w.U32(h.opcode);
    w.U32(h.response_code);
    w.U32(h.op_flags);
    w.U16(h.site_info_serial);
    w.U8(h.recursion_count);
    w.U8(h.reserved);
    w.U32(h.expiration_time);
    size_t body_length_at = w.Reserve32();
    size_t body_start = w.size();
    if (m.request_digest) {
      const auto& d = *m.request_digest;
      w.U8(static_cast<uint8_t>(d.algorithm));
      if (d.algorithm == DigestAlgorithm::kMd5Legacy) {
        w.LengthPrefixed(d.digest);
      } else {
        w.Bytes(d.digest);
      }
    }
    WriteBody(w, m.body);
    w.Patch32(body_length_at, static_cast<uint32_t>(w.size() - body_start));
    if (m.has_credential_field || m.credential.present) {
      if (m.credential.present) {
        WriteCredential(w, m.credential);
      } else {
        w.U32(0);
      }
    }
  }
  w.Patch32(16, static_cast<uint32_t>(w.size() - kEnvelopeSize));
}

}  // namespace

Decoded<Envelope> DecodeEnvelope(std::span<const uint8_t> bytes) {
  WireReader r(bytes);
  Envelope e;
  e.major_version = r.U8();
  e.minor_version = r.U8();
  uint8_t flags = r.U8();
  e.suggested_minor = r.U8();
  e.session_id = r.U32();
  e.request_id = r.U32();
  e.sequence_number = r.U32();
  e.message_length = r.U32();
  if (!r.ok()) return Failure{r.error()};
  e.compressed = (flags & kEnvelopeCompressed) != 0;
  e.encrypted = (flags & kEnvelopeEncrypted) != 0;
  e.truncated = (flags & kEnvelopeTruncated) != 0;
  e.reserved_flags = flags & kEnvelopeReservedMask;
  e.suggested_major = flags & kEnvelopeSuggestedMajorMask;
  if (!IsSupportedMajor(e.major_version))
    return Failure{ProtocolError{ErrorCode::kUnsupportedVersion, 0}};
  if (e.message_length > kMaxMessageLength) {
    return Failure{ProtocolError{ErrorCode::kMessageTooLarge, 16}};
  }
  return e;
}

void WriteEnvelope(const Envelope& e, std::span<uint8_t, kEnvelopeSize> out) {
  WireWriter w(out);
  w.U8(e.major_version);
  w.U8(e.minor_version);
  uint8_t flags = static_cast<uint8_t>(
      (e.compressed ? kEnvelopeCompressed : 0) | (e.encrypted ? kEnvelopeEncrypted : 0) |
      (e.truncated ? kEnvelopeTruncated : 0) | (e.reserved_flags & kEnvelopeReservedMask) |
      (e.suggested_major & kEnvelopeSuggestedMajorMask));
  w.U8(flags);
  w.U8(e.suggested_minor);
  w.U32(e.session_id);
  w.U32(e.request_id);
  w.U32(e.sequence_number);
  w.U32(e.message_length);
}

Decoded<Message> DecodeMessage(std::span<const uint8_t> bytes) {
  auto envelope = DecodeEnvelope(bytes);
  if (!envelope.ok()) return Failure{envelope.error()};
  Message m;
  m.envelope = *envelope;
  if (m.envelope.compressed) return Failure{ProtocolError{ErrorCode::kCompressed, 2}};
  std::span<const uint8_t> payload = bytes.subspan(kEnvelopeSize);
  if (m.envelope.message_length != payload.size()) {
    return Failure{ProtocolError{ErrorCode::kLengthMismatch, 16}};
  }
  if (m.envelope.encrypted) {
    if (m.envelope.session_id == 0) {
      return Failure{ProtocolError{ErrorCode::kEncryptedWithoutSession, 4}};
    }
    m.encrypted_payload = payload;
    m.body = OpaqueBody{payload};
    return m;
  }

  WireReader r(bytes);
  (void)r.Bytes(kEnvelopeSize);
  if (payload.size() < kHeaderSize) return Failure{ProtocolError{ErrorCode::kLengthMismatch, 16}};
  Header& h = m.header;
  h.opcode = r.U32();
  h.response_code = r.U32();
  h.op_flags = r.U32();
  h.site_info_serial = r.U16();
  h.recursion_count = r.U8();
  h.reserved = r.U8();
  h.expiration_time = r.U32();
  h.body_length = r.U32();
  // Compared in 64 bits against what is there, so 24 + BodyLength cannot wrap.
  if (h.body_length > r.remaining()) {
    return Failure{ProtocolError{ErrorCode::kLengthMismatch, kEnvelopeSize + 20}};
  }
  if (h.is_request()) {
    if (h.opcode == 0) return Failure{ProtocolError{ErrorCode::kReservedOpCode, kEnvelopeSize}};
    if (!IsKnownOpCode(h.opcode))
      return Failure{ProtocolError{ErrorCode::kUnknownOpCode, kEnvelopeSize}};
  }

  const size_t body_offset = r.offset();
  std::span<const uint8_t> body = bytes.subspan(body_offset, h.body_length);
  std::span<const uint8_t> after_body = bytes.subspan(body_offset + h.body_length);

  // The body gets its own reader so that no field can run into the credential section; error
  // offsets are translated back to offsets in the whole message.
  WireReader br(body);
  if (h.is_request()) {
    m.body = ReadRequestBody(br, body, h.opcode);
  } else {
    if (h.has(opflag::kRequestDigest)) ReadDigestPrefix(br, m);
    if (br.ok()) {
      std::span<const uint8_t> rest = br.rest();
      WireReader rr(rest);
      m.body = ReadResponseBody(rr, h);
      rr.ExpectEnd();
      if (!rr.ok()) {
        return Failure{ProtocolError{
            rr.error().code, static_cast<uint32_t>(body_offset + br.offset() + rr.error().offset)}};
      }
      (void)br.Bytes(br.remaining());
    }
  }
  br.ExpectEnd();
  if (!br.ok()) {
    return Failure{
        ProtocolError{br.error().code, static_cast<uint32_t>(body_offset + br.error().offset)}};
  }

  // Credential section: absent, or a 4-byte length that accounts for every remaining byte.
  if (after_body.empty()) {
    m.has_credential_field = false;
    return m;
  }
  const size_t cred_offset = body_offset + h.body_length;
  WireReader cr(after_body);
  uint32_t cred_length = cr.U32();
  if (!cr.ok() || cred_length != cr.remaining()) {
    return Failure{ProtocolError{ErrorCode::kLengthMismatch, static_cast<uint32_t>(cred_offset)}};
  }
  if (cred_length > 0) {
    WireReader status(after_body);
    ReadCredential(cr.rest(), cred_offset + 4, m.credential, status);
    if (!status.ok()) return Failure{status.error()};
  }
  return m;
}

Decoded<size_t> EncodeMessage(const Message& message, std::span<uint8_t> out) {
  WireWriter w(out);
  WriteMessage(w, message);
  if (!w.ok())
    return Failure{ProtocolError{ErrorCode::kBufferTooSmall, static_cast<uint32_t>(w.needed())}};
  return w.size();
}

size_t EncodedMessageSize(const Message& message) {
  WireWriter w({});
  WriteMessage(w, message);
  return w.needed();
}

Envelope ResponseEnvelopeFor(const Envelope& request) {
  Envelope e;
  ProtocolVersion wanted = request.suggested_version();
  ProtocolVersion v = wanted;
  if (wanted.major != 5 &&
      (wanted.major > kOurVersion.major ||
       (wanted.major == kOurVersion.major && wanted.minor > kOurVersion.minor))) {
    v = kOurVersion;
  }
  e.major_version = v.major;
  e.minor_version = v.minor;
  e.suggested_major = kOurVersion.major;
  e.suggested_minor = kOurVersion.minor;
  e.session_id = request.session_id;
  e.request_id = request.request_id;
  return e;
}

std::string_view PeekResolutionHandle(std::span<const uint8_t> message) {
  constexpr size_t kBody = kEnvelopeSize + kHeaderSize;
  if (message.size() < kBody + 4) return {};
  if ((message[2] & (kEnvelopeCompressed | kEnvelopeEncrypted | kEnvelopeTruncated)) != 0)
    return {};
  WireReader r(message.subspan(kEnvelopeSize));
  if (r.U32() != static_cast<uint32_t>(OpCode::kResolution) || r.U32() != 0) return {};
  WireReader body(message.subspan(kBody));
  auto handle = body.LengthPrefixed();
  if (!body.ok() || handle.empty() || handle.size() > kMaxHandleLength) return {};
  return {reinterpret_cast<const char*>(handle.data()), handle.size()};
}

Header ResponseHeaderFor(const Header& request, ResponseCode rc, uint16_t site_info_serial,
                         ProtocolVersion response_version) {
  Header h;
  h.opcode = request.opcode;
  h.response_code = ResponseCodeOnWire(static_cast<uint32_t>(rc), response_version);
  // CT is set by whoever signs the answer (auth::SignEncoded): never on an unsigned one.
  h.op_flags = (request.op_flags | opflag::kAuthoritative) & ~opflag::kCertify;
  if (rc == ResponseCode::kAuthenticationNeeded) h.op_flags |= opflag::kRequestDigest;
  h.site_info_serial = site_info_serial;
  h.recursion_count = request.recursion_count;
  h.expiration_time = request.expiration_time;
  return h;
}

}  // namespace idnode::protocol
