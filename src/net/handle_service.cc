#include "idnode/net/handle_service.h"

#include <cstring>

#include "idnode/net/admin_service.h"
#include "idnode/protocol/digest.h"
#include "idnode/protocol/wire.h"

namespace idnode::net {

namespace {

using protocol::ErrorCode;
using protocol::Message;
using protocol::ResponseCode;

// An error answer to a request that may not have decoded past its envelope.
Handled EncodeError(const protocol::Envelope& envelope, const protocol::Header* header,
                    ResponseCode rc, std::string_view message, uint16_t serial,
                    std::span<uint8_t> out, size_t size_limit) {
  Message response;
  response.envelope = protocol::ResponseEnvelopeFor(envelope);
  protocol::Header request_header;
  if (header != nullptr) request_header = *header;
  response.header =
      protocol::ResponseHeaderFor(request_header, rc, serial, response.envelope.version());
  if (header == nullptr) response.header.op_flags = protocol::opflag::kAuthoritative;
  response.header.op_flags &=
      ~protocol::opflag::kRequestDigest;  // no digest of what did not decode
  response.body = protocol::ErrorBody{message};
  if (protocol::EncodedMessageSize(response) > size_limit) response.body = protocol::ErrorBody{};
  if (protocol::EncodedMessageSize(response) > size_limit) return {};  // would amplify: drop
  auto written = protocol::EncodeMessage(response, out);
  if (!written.ok()) return {};
  return {Disposition::kAnswered,    *written, response.header.opcode,
          static_cast<uint32_t>(rc), nullptr,  nullptr};
}

enum class Restriction : uint8_t { kNone, kAdmins, kNobody };

// Whether the values of an answer (count(4) + values) hold any without PUBLIC_READ, and whether
// admins may read those (ADMIN_READ).
Restriction RestrictedValues(std::span<const uint8_t> values) {
  protocol::WireReader r(values);
  const uint32_t count = r.U32();
  Restriction found = Restriction::kNone;
  for (uint32_t i = 0; i < count && r.ok(); ++i) {
    (void)r.I32();  // index
    (void)r.U32();  // timestamp
    (void)r.U8();   // ttl type
    (void)r.U32();  // ttl
    const uint8_t permissions = r.U8();
    (void)r.LengthPrefixed();  // type
    (void)r.LengthPrefixed();  // data
    const uint32_t references = r.U32();
    for (uint32_t j = 0; j < references && r.ok(); ++j) {
      (void)r.LengthPrefixed();
      (void)r.U32();
    }
    if ((permissions & protocol::permission::kPublicRead) != 0) continue;
    if ((permissions & protocol::permission::kAdminRead) == 0) return Restriction::kNobody;
    found = Restriction::kAdmins;
  }
  return found;
}

}  // namespace

HandleService::HandleService(const resolver::Resolver& resolver, std::vector<uint8_t> site_info,
                             uint16_t site_serial, const AdminService* admin)
    : resolver_(resolver),
      site_info_(std::move(site_info)),
      site_serial_(site_serial),
      admin_(admin) {}

Handled HandleService::Handle(std::span<const uint8_t> request, std::span<uint8_t> out,
                              ServiceScratch& scratch, bool limit_to_request_size) const {
  return Process(request, out, scratch, limit_to_request_size, false, auth::Origin{});
}

Handled HandleService::HandleFromStorage(std::span<const uint8_t> request, std::span<uint8_t> out,
                                         ServiceScratch& scratch, const auth::Origin& origin,
                                         const auth::Identity* connection_login) const {
  return Process(request, out, scratch, false, true, origin, connection_login);
}

Handled HandleService::Busy(std::span<const uint8_t> request, std::span<uint8_t> out) const {
  auto decoded = protocol::DecodeMessage(request);
  if (!decoded.ok() || !decoded->header.is_request()) return {};
  return EncodeError(decoded->envelope, &decoded->header, ResponseCode::kServerTooBusy, "busy",
                     site_serial_, out, out.size());
}

Handled HandleService::RateLimited(std::span<const uint8_t> response, std::span<uint8_t> out,
                                   size_t size_limit) const {
  auto envelope = protocol::DecodeEnvelope(response);
  if (!envelope.ok() || response.size() < protocol::kEnvelopeSize + protocol::kHeaderSize)
    return {};
  // Only the fields an error answer repeats: the opcode, flags and the expiration time.
  const uint8_t* h = response.data() + protocol::kEnvelopeSize;
  auto u32 = [h](size_t at) {
    return uint32_t{h[at]} << 24 | uint32_t{h[at + 1]} << 16 | uint32_t{h[at + 2]} << 8 | h[at + 3];
  };
  protocol::Header header;
  header.opcode = u32(0);
  header.op_flags = u32(8);
  header.expiration_time = u32(16);
  protocol::Envelope answered_in = *envelope;
  answered_in.suggested_major = 0;  // answer in the version of the response it replaces
  return EncodeError(answered_in, &header, ResponseCode::kServerTooBusy, "rate limited; use TCP",
                     site_serial_, out, size_limit);
}

Handled HandleService::Process(std::span<const uint8_t> request, std::span<uint8_t> out,
                               ServiceScratch& scratch, bool limit_to_request_size,
                               bool from_storage, const auth::Origin& origin,
                               const auth::Identity* connection_login) const {
  const size_t size_limit = limit_to_request_size ? request.size() : out.size();
  auto envelope = protocol::DecodeEnvelope(request);
  if (!envelope.ok()) {
    // Without the 20 envelope bytes there is no request id to answer to. Otherwise (an unsupported
    // version, a MessageLength above the cap) answer from the raw ids, in our own version.
    if (request.size() < protocol::kEnvelopeSize) return {};
    protocol::Envelope raw;
    protocol::WireReader r(request);
    (void)r.U32();
    raw.session_id = r.U32();
    raw.request_id = r.U32();
    raw.suggested_major = 0;
    ErrorCode code = envelope.error().code;
    return EncodeError(raw, nullptr, protocol::ResponseCodeFor(code), protocol::ErrorCodeName(code),
                       site_serial_, out, size_limit);
  }
  auto decoded = protocol::DecodeMessage(request);
  if (!decoded.ok()) {
    // A response sent to us is never answered (no reflection loops between servers).
    if (request.size() >= protocol::kEnvelopeSize + protocol::kHeaderSize) {
      protocol::WireReader r(request.subspan(protocol::kEnvelopeSize));
      protocol::Header h;
      h.opcode = r.U32();
      h.response_code = r.U32();
      h.op_flags = r.U32();
      if (h.response_code != 0) return {};
      h.site_info_serial = r.U16();
      h.recursion_count = r.U8();
      (void)r.U8();
      h.expiration_time = r.U32();
      ErrorCode code = decoded.error().code;
      // A length problem or opcode 0: CNRI answers OC_RESERVED (HANDLE.md §1.8).
      if (code != ErrorCode::kUnknownOpCode && code != ErrorCode::kInvalidHandle) h.opcode = 0;
      return EncodeError(*envelope, &h, protocol::ResponseCodeFor(code),
                         protocol::ErrorCodeName(code), site_serial_, out, size_limit);
    }
    return EncodeError(*envelope, nullptr, protocol::ResponseCodeFor(decoded.error().code),
                       protocol::ErrorCodeName(decoded.error().code), site_serial_, out,
                       size_limit);
  }
  const Message& req = *decoded;
  if (!req.header.is_request()) return {};
  // Certified answers are signed, and session messages checked, off the event loop.
  const bool needs_credentials = req.envelope.encrypted || req.envelope.session_id != 0 ||
                                 req.header.has(protocol::opflag::kCertify);
  if (needs_credentials && !from_storage)
    return {Disposition::kNeedsStorage, 0, req.header.opcode, 0, nullptr, nullptr};
  if (req.envelope.encrypted) {
    // Everything after the envelope is the session's ciphertext (HdlTcpRequestHandler).
    auto session = sessions_ != nullptr
                       ? sessions_->Find(req.envelope.session_id, std::chrono::steady_clock::now())
                       : std::nullopt;
    if (!session || session->key.empty()) {
      return EncodeError(
          req.envelope, nullptr,
          sessions_ != nullptr ? ResponseCode::kSessionTimeout : ResponseCode::kSessionFailed,
          "no such session: cannot decrypt", site_serial_, out, size_limit);
    }
    // Whatever fails past this point (padding, decoding, the MAC inside) gets the same answer and
    // ends the session, so that an encrypted message cannot be probed for its padding.
    auto plain = auth::DecryptMessage(request, session->key, session->cipher);
    auto inner = plain.ok() ? protocol::DecodeMessage(*plain)
                            : protocol::Decoded<Message>(Failure{protocol::ProtocolError{}});
    if (!inner.ok() || !inner->header.is_request() ||
        inner->envelope.session_id != req.envelope.session_id ||
        (inner->credential.present &&
         auth::VerifyMac(*inner, *plain, session->key) != auth::Verdict::kValid)) {
      (void)sessions_->Close(session->id);
      return EncodeError(req.envelope, nullptr, ResponseCode::kSessionFailed,
                         "session message rejected; the session is closed", site_serial_, out,
                         size_limit);
    }
    return Checked(*inner, *plain, out, scratch, size_limit, origin, connection_login);
  }
  if (needs_credentials)
    return Checked(req, request, out, scratch, size_limit, origin, connection_login);
  SessionContext context;
  context.connection_login = connection_login;
  return Answer(req, request, out, scratch, size_limit, from_storage, origin, context);
}

Handled HandleService::Checked(const Message& req, std::span<const uint8_t> request,
                               std::span<uint8_t> out, ServiceScratch& scratch, size_t size_limit,
                               const auth::Origin& origin,
                               const auth::Identity* connection_login) const {
  std::optional<auth::SessionView> session;
  SessionContext context;
  context.connection_login = connection_login;
  if (req.envelope.session_id != 0 && sessions_ != nullptr) {
    session = sessions_->Find(req.envelope.session_id, std::chrono::steady_clock::now());
    const bool has_mac = req.credential.present && req.credential.type == "HS_MAC";
    const auto opcode = static_cast<protocol::OpCode>(req.header.opcode);
    if (!session) {
      // A MAC'd message or a session operation in a session that is gone (expired, ended, or
      // never opened here): the client sets up a new one. Other requests may carry the session
      // id of a 402 challenge, which is no session here.
      if (has_mac || opcode == protocol::OpCode::kSessionTerminate ||
          opcode == protocol::OpCode::kSessionExchangeKey) {
        return EncodeError(req.envelope, &req.header, ResponseCode::kSessionTimeout,
                           "Invalid session id or session time out. Please try again.",
                           site_serial_, out, size_limit);
      }
    } else if (has_mac) {
      if (auth::VerifyMac(req, request, session->key) != auth::Verdict::kValid) {
        return EncodeError(req.envelope, &req.header, ResponseCode::kInvalidSessionKey,
                           "Session authentication failed.", site_serial_, out, size_limit);
      }
      if (!sessions_->AcceptCounter(session->id,
                                    static_cast<uint32_t>(req.credential.signer_index))) {
        return EncodeError(req.envelope, &req.header, ResponseCode::kSessionMessageRejected,
                           "Duplicate session counter", site_serial_, out, size_limit);
      }
      context.mac_verified = true;
    }
    if (session) context.session = &*session;
  }
  // From the cache when it can answer (a certified resolution costs a signature, not a read).
  Handled handled = Answer(req, request, out, scratch, size_limit, false, origin, context);
  if (handled.disposition == Disposition::kNeedsStorage)
    handled = Answer(req, request, out, scratch, size_limit, true, origin, context);
  return Seal(req, handled, out, context.session);
}

Handled HandleService::Seal(const Message& req, Handled handled, std::span<uint8_t> out,
                            const auth::SessionView* session) const {
  if (handled.disposition != Disposition::kAnswered) return handled;
  const auto opcode = static_cast<protocol::OpCode>(req.header.opcode);
  const bool wants_encryption = session != nullptr && req.header.has(protocol::opflag::kEncrypt);
  auto refuse = [&](std::string_view why) {
    return EncodeError(req.envelope, &req.header, ResponseCode::kError, why, site_serial_, out,
                       out.size());
  };
  // A streamed answer (CN: several messages back to back) is left as it is: unsigned (CT stays
  // clear), and refused rather than sent in the clear when encryption was asked for.
  const size_t first_message =
      handled.response_size >= protocol::kEnvelopeSize
          ? protocol::kEnvelopeSize + (uint32_t{out[16]} << 24 | uint32_t{out[17]} << 16 |
                                       uint32_t{out[18]} << 8 | out[19])
          : 0;
  if (first_message != handled.response_size) {
    if (wants_encryption) return refuse("a streamed answer cannot be encrypted; ask without ENC");
    return handled;
  }
  // A session setup or key exchange is not MAC'd with the key it is establishing: the client
  // checks it against the node's key (CNRI's sendResponse).
  const bool session_key_usable = session != nullptr && !session->key.empty() &&
                                  opcode != protocol::OpCode::kSessionSetup &&
                                  opcode != protocol::OpCode::kSessionExchangeKey;
  if (req.header.has(protocol::opflag::kCertify)) {
    size_t sealed = 0;
    if (session_key_usable) {
      sealed = auth::MacEncoded(out, handled.response_size, session->key,
                                sessions_->NextServerCounter(session->id));
    }
    if (sealed == 0 && server_key_)
      sealed = auth::SignEncoded(out, handled.response_size, *server_key_);
    if (sealed != 0) handled.response_size = sealed;
  }
  if (wants_encryption && opcode != protocol::OpCode::kSessionSetup &&
      opcode != protocol::OpCode::kSessionExchangeKey) {
    const size_t sealed =
        session->key.empty()
            ? 0
            : auth::EncryptEncoded(out, handled.response_size, session->key, session->cipher);
    if (sealed == 0) return refuse("the answer could not be encrypted");
    handled.response_size = sealed;
  }
  return handled;
}

Handled HandleService::Answer(const Message& req, std::span<const uint8_t> request,
                              std::span<uint8_t> out, ServiceScratch& scratch, size_t size_limit,
                              bool from_storage, const auth::Origin& origin,
                              const SessionContext& session) const {
  Message response;
  response.envelope = protocol::ResponseEnvelopeFor(req.envelope);
  const protocol::ProtocolVersion version = response.envelope.version();
  protocol::DigestValue digest;
  auto with_digest = [&](Message& m) {
    if (req.header.has(protocol::opflag::kRequestDigest)) {
      digest = protocol::RequestDigest(request, version);
      m.request_digest = protocol::RequestDigestField{digest.algorithm, digest.view()};
    }
  };

  switch (static_cast<protocol::OpCode>(req.header.opcode)) {
    case protocol::OpCode::kResolution: {
      const auto& body = std::get<protocol::ResolutionRequest>(req.body);
      resolver::Query query;
      query.handle = body.handle;
      query.wire_indexes = body.indexes;
      query.wire_types = body.types;
      // PO: values without PUBLIC_READ are left out silently. Without it they are selected, and
      // an answer holding any is for admins with READ_VALUE only (below).
      const bool public_only = req.header.has(protocol::opflag::kPublicOnly) || admin_ == nullptr;
      query.public_only = public_only;
      query.no_referral = req.header.has(protocol::opflag::kDoNotRefer);
      resolver::Answer answer;
      if (from_storage) {
        answer = resolver_.ResolveFromStorage(query, scratch.resolver);
      } else {
        bool needs_storage = false;
        answer = resolver_.ResolveFromCache(query, scratch.resolver, &needs_storage);
        if (needs_storage)
          return {Disposition::kNeedsStorage, 0, req.header.opcode, 0, nullptr, nullptr};
      }
      const Restriction restriction = !public_only && answer.code == ResponseCode::kSuccess
                                          ? RestrictedValues(answer.values)
                                          : Restriction::kNone;
      if (restriction == Restriction::kNobody) {
        // CNRI's checkReadAccess: a selected value neither the public nor admins may read.
        response.header = protocol::ResponseHeaderFor(
            req.header, ResponseCode::kInsufficientPermissions, site_serial_, version);
        with_digest(response);
        response.body = protocol::ErrorBody{};
        break;
      }
      if (restriction == Restriction::kAdmins) {
        // Who the client is decides: challenged (or its authenticated session used) on a
        // storage thread, like an administrative request.
        if (!from_storage)
          return {Disposition::kNeedsStorage, 0, req.header.opcode, 0, nullptr, nullptr};
        return admin_->Handle(req, request, out, origin, session);
      }
      if (answer.code == ResponseCode::kPrefixReferral && !protocol::AtLeast(version, 2, 5)) {
        // Below 2.5, 303 meant RC_SERVER_BACKUP (HANDLE.md §1.4): such a client is told the
        // prefix is not here rather than misled.
        answer.code = ResponseCode::kServerNotResponsible;
        answer.message = "That prefix doesn't live here";
      }
      response.header = protocol::ResponseHeaderFor(req.header, answer.code, site_serial_, version);
      with_digest(response);
      if (answer.code == ResponseCode::kSuccess || answer.code == ResponseCode::kServiceReferral ||
          answer.code == ResponseCode::kPrefixReferral) {
        // Body: a handle, then the values (HANDLE.md §1.5). A resolution names the handle as the
        // client spelled it; a service referral the prefix handle to look up; a prefix referral
        // none, as the reference server's.
        std::string_view named = answer.code == ResponseCode::kSuccess ? body.handle
                                 : answer.code == ResponseCode::kServiceReferral
                                     ? answer.referral_handle
                                     : std::string_view{};
        scratch.body.resize(4 + named.size() + answer.values.size());
        protocol::WireWriter w(scratch.body);
        w.Text(named);
        w.Bytes(answer.values);
        response.body =
            protocol::OpaqueBody{std::span<const uint8_t>(scratch.body.data(), w.size())};
      } else {
        // HANDLE_NOT_FOUND and VALUES_NOT_FOUND carry an empty message, as CNRI's do (CAP 02, 03).
        bool silent = answer.code == ResponseCode::kHandleNotFound ||
                      answer.code == ResponseCode::kValuesNotFound;
        response.body = protocol::ErrorBody{silent ? std::string_view{} : answer.message};
      }
      break;
    }
    case protocol::OpCode::kGetSiteInfo:
      response.header =
          protocol::ResponseHeaderFor(req.header, ResponseCode::kSuccess, site_serial_, version);
      with_digest(response);
      response.body = protocol::SiteInfoBody{site_info_};
      break;
    default:
      if (admin_ != nullptr && AdminService::Handles(req.header.opcode)) {
        // Admin requests write (and verify signatures): never on a worker thread.
        if (!from_storage)
          return {Disposition::kNeedsStorage, 0, req.header.opcode, 0, nullptr, nullptr};
        return admin_->Handle(req, request, out, origin, session);
      }
      response.header = protocol::ResponseHeaderFor(
          req.header, ResponseCode::kOperationNotSupported, site_serial_, version);
      with_digest(response);
      response.body = protocol::ErrorBody{"operation not supported by this node yet"};
      break;
  }
  auto written = protocol::EncodeMessage(response, out);
  if (!written.ok()) {
    return EncodeError(req.envelope, &req.header, ResponseCode::kError, "answer too large",
                       site_serial_, out, size_limit);
  }
  return {Disposition::kAnswered,        *written, req.header.opcode,
          response.header.response_code, nullptr,  nullptr};
}

}  // namespace idnode::net
