#include "idnode/net/admin_service.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "idnode/identifier/identifier.h"
#include "idnode/protocol/digest.h"
#include "idnode/protocol/value_types.h"
#include "idnode/registry/values.h"
#include "idnode/resolver/resolver.h"

namespace idnode::net {

namespace {

// Prefix handles and prefix operations on a site of several servers would change the server that
// receives them only (every server holds the prefix handles): refused until they reach them all.
constexpr std::string_view kPrefixChangeOnASite =
    "prefix handles of a site of several servers are changed on every server: not offered yet "
    "(change them on each server's stopped data, or before splitting)";

constexpr std::string_view kTooManyFailures =
    "too many failed proofs for this key or from this address; try again in a minute";

using protocol::Message;
using protocol::OpCode;
using protocol::ResponseCode;
namespace perm = protocol::admin_permission;

// Encodes a response to a request with envelope `envelope` and header `header`; `digest_source`
// is the request message whose digest goes into the RD prefix when the header asks for one.
Handled Respond(const protocol::Envelope& envelope, const protocol::Header& header, ResponseCode rc,
                protocol::Body body, std::span<const uint8_t> digest_source, uint16_t serial,
                std::span<uint8_t> out, uint32_t session_id) {
  Message response;
  response.envelope = protocol::ResponseEnvelopeFor(envelope);
  response.envelope.session_id = session_id;
  const auto version = response.envelope.version();
  response.header = protocol::ResponseHeaderFor(header, rc, serial, version);
  protocol::DigestValue digest;
  if (response.header.has(protocol::opflag::kRequestDigest)) {
    digest = protocol::RequestDigest(digest_source, version);
    response.request_digest = protocol::RequestDigestField{digest.algorithm, digest.view()};
  }
  response.body = std::move(body);
  auto written = protocol::EncodeMessage(response, out);
  if (!written.ok()) return {};
  return {Disposition::kAnswered,    *written, header.opcode,
          static_cast<uint32_t>(rc), nullptr,  nullptr};
}

Handled Error(const Message& request, ResponseCode rc, std::string_view message,
              std::span<const uint8_t> request_bytes, uint16_t serial, std::span<uint8_t> out) {
  return Respond(request.envelope, request.header, rc, protocol::ErrorBody{message}, request_bytes,
                 serial, out, request.envelope.session_id);
}

// The handle an administrative request is about.
std::string_view TargetHandle(const Message& m) {
  if (const auto* v = std::get_if<protocol::HandleValuesBody>(&m.body)) return v->handle;
  if (const auto* h = std::get_if<protocol::HandleBody>(&m.body)) return h->handle;
  if (const auto* r = std::get_if<protocol::RemoveValuesRequest>(&m.body)) return r->handle;
  if (const auto* q = std::get_if<protocol::ResolutionRequest>(&m.body)) return q->handle;
  if (const auto* l = std::get_if<protocol::LoginRequest>(&m.body)) return l->handle;
  return {};
}

bool IsAdminType(std::string_view type) {
  return registry::TypeMatches(protocol::kTypeAdmin, type);
}

// HANDLE_NOT_FOUND and VALUES_NOT_FOUND carry an empty message, as CNRI's do (CAP 02, 03).
std::string_view RefusalMessage(ResponseCode rc) {
  switch (rc) {
    case ResponseCode::kHandleAlreadyExists:
      return "handle already exists";
    case ResponseCode::kValueAlreadyExists:
      return "value already exists at that index";
    case ResponseCode::kInvalidValue:
      return "invalid value";
    case ResponseCode::kInvalidHandle:
      return "invalid handle";
    case ResponseCode::kServerNotResponsible:
      return "That prefix doesn't live here";
    case ResponseCode::kError:
      return "storage error: the change was not made";
    default:
      return {};
  }
}

// The prefix a HOME_NA / UNHOME_NA request names: "0.NA/P" or, as the reference accepts, "P";
// empty when it names none.
std::string PrefixOfHomingRequest(std::string_view handle) {
  std::string key = identifier::Normalize(handle);
  if (key.find('/') != std::string::npos) {
    if (!identifier::IsPrefixHandle(key)) return {};
    key.erase(0, identifier::kPrefixHandlePrefix.size());
  }
  if (key.empty() || key.size() > protocol::kMaxHandleLength || key.find('/') != std::string::npos)
    return {};
  for (char c : key) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return {};
  }
  return key;
}

// The audit log's name of an administrative request's operation.
std::string_view OperationNameOf(const Message& m) {
  switch (static_cast<OpCode>(m.header.opcode)) {
    case OpCode::kCreateHandle:
      return "create";
    case OpCode::kDeleteHandle:
      return "delete";
    case OpCode::kAddValue:
      return "add";
    case OpCode::kModifyValue:
      return "modify";
    case OpCode::kRemoveValue:
      return "remove";
    case OpCode::kHomeNa:
      return "home";
    case OpCode::kUnhomeNa:
      return "unhome";
    case OpCode::kTakeoverNa:
      return "takeover";
    case OpCode::kListHomedNas:
      return "list-homed";
    case OpCode::kResolution:
      return "read";
    case OpCode::kListHandles:
      return "list";
    case OpCode::kLoginIdSystem:
      return "login";
    default:
      return "admin";
  }
}

registry::AuditContext Who(const auth::Identity& identity, const auth::Origin& origin) {
  return {identity.ToString(), origin.address, origin.datagram ? "handle/udp" : "handle/tcp"};
}

// One message of a streamed LIST_HOMED_NAS / LIST_HANDLES answer: `handles`, CN set when `more`
// follow, whatever the request's flags said; its RD digest of `request_bytes` when asked. The
// bytes written at `out`, or nullopt when they do not fit.
std::optional<size_t> EncodeListMessage(const protocol::Envelope& answer_envelope,
                                        const protocol::Header& request_header, uint16_t serial,
                                        std::span<const uint8_t> request_bytes,
                                        std::vector<std::string_view> handles, bool more,
                                        std::span<uint8_t> out) {
  Message response;
  response.envelope = protocol::ResponseEnvelopeFor(answer_envelope);
  response.envelope.session_id = answer_envelope.session_id;
  response.header = protocol::ResponseHeaderFor(request_header, ResponseCode::kSuccess, serial,
                                                response.envelope.version());
  response.header.op_flags &= ~protocol::opflag::kContinuous;
  if (more) response.header.op_flags |= protocol::opflag::kContinuous;
  protocol::DigestValue digest;
  if (response.header.has(protocol::opflag::kRequestDigest)) {
    digest = protocol::RequestDigest(request_bytes, response.envelope.version());
    response.request_digest = protocol::RequestDigestField{digest.algorithm, digest.view()};
  }
  response.body = protocol::HandleListBody{std::move(handles)};
  auto encoded = protocol::EncodeMessage(response, out);
  if (!encoded.ok()) return std::nullopt;
  return *encoded;
}

// Homed prefixes listed per message of a streamed LIST_HOMED_NAS answer (the reference's).
constexpr size_t kPrefixesPerMessage = 50;

// The HS_ADMIN permissions an operation needs on `record` (nullptr: the handle does not exist).
uint16_t NeededPermissions(const registry::Operation& op, const proto::Record* record) {
  const bool overwrite = op.overwrite;
  auto touches_admin_at = [&](int32_t index) {
    if (record == nullptr) return false;
    for (const auto& v : record->values()) {
      if (v.index() == index && IsAdminType(v.type())) return true;
    }
    return false;
  };
  uint16_t needed = 0;
  switch (op.kind) {
    case registry::OpKind::kCreate:
      needed = perm::kAddHandle;
      if (record != nullptr && overwrite) needed |= perm::kDeleteHandle;
      break;
    case registry::OpKind::kDelete:
      needed = perm::kDeleteHandle;
      break;
    case registry::OpKind::kAddValues:
      for (const auto& v : op.values) {
        needed |= IsAdminType(v.type()) ? perm::kAddAdmin : perm::kAddValue;
        if (overwrite && touches_admin_at(v.index())) needed |= perm::kModifyAdmin;
      }
      break;
    case registry::OpKind::kModifyValues:
      for (const auto& v : op.values) {
        needed |= IsAdminType(v.type()) || touches_admin_at(v.index()) ? perm::kModifyAdmin
                                                                       : perm::kModifyValue;
      }
      break;
    case registry::OpKind::kRemoveValues:
      for (int32_t index : op.indexes) {
        needed |= touches_admin_at(index) ? perm::kRemoveAdmin : perm::kRemoveValue;
      }
      break;
    default:
      return 0;
  }
  return needed == 0 ? perm::kModifyValue : needed;  // an empty value list: rejected later anyway
}

ResponseCode ForClient(auth::Verdict verdict) {
  return verdict == auth::Verdict::kUnsupported ? ResponseCode::kAuthenticationError
                                                : ResponseCode::kAuthenticationFailed;
}

}  // namespace

std::string NewUuid() {
  uint8_t b[16];
  (void)RAND_bytes(b, sizeof b);
  b[6] = static_cast<uint8_t>((b[6] & 0x0f) | 0x40);
  b[8] = static_cast<uint8_t>((b[8] & 0x3f) | 0x80);
  char text[37];
  std::snprintf(text, sizeof text,
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
                b[15]);
  return text;
}

std::optional<std::string> MintedHandle(const registry::Registry& registry,
                                        std::string_view prefix_slash) {
  // One in N hashes here: 64 N draws miss with probability (1 - 1/N)^(64 N) < e^-64.
  const uint32_t tries = 64 * std::max<uint32_t>(registry.site_server_count(), 1);
  for (uint32_t i = 0; i < tries; ++i) {
    std::string handle = std::string(prefix_slash) + NewUuid();
    if (registry.OnThisServer(identifier::Normalize(handle))) return handle;
  }
  return std::nullopt;
}

AdminService::AdminService(registry::Registry& registry, const auth::Authorizer& authorizer,
                           auth::ChallengeTable& challenges, auth::FailureThrottle& failures,
                           uint16_t site_serial)
    : registry_(registry),
      authorizer_(authorizer),
      challenges_(challenges),
      failures_(failures),
      site_serial_(site_serial) {}

bool AdminService::Handles(uint32_t opcode) {
  switch (static_cast<OpCode>(opcode)) {
    case OpCode::kCreateHandle:
    case OpCode::kDeleteHandle:
    case OpCode::kAddValue:
    case OpCode::kRemoveValue:
    case OpCode::kModifyValue:
    case OpCode::kResponseToChallenge:
    case OpCode::kVerifyChallenge:
    case OpCode::kHomeNa:
    case OpCode::kUnhomeNa:
    case OpCode::kTakeoverNa:
    case OpCode::kListHomedNas:
    case OpCode::kListHandles:
    case OpCode::kLoginIdSystem:
    case OpCode::kSessionSetup:
    case OpCode::kSessionTerminate:
    case OpCode::kSessionExchangeKey:
      return true;
    default:
      return false;
  }
}

Handled AdminService::Handle(const Message& request, std::span<const uint8_t> request_bytes,
                             std::span<uint8_t> out, const auth::Origin& origin,
                             const SessionContext& session) const {
  switch (static_cast<OpCode>(request.header.opcode)) {
    case OpCode::kResponseToChallenge:
      return Answer(request, out, origin);
    case OpCode::kVerifyChallenge:
      return Verify(request, request_bytes, out, origin);
    case OpCode::kSessionSetup:
      return SessionSetup(request, request_bytes, out, origin);
    case OpCode::kSessionTerminate:
      return SessionEnd(request, request_bytes, out, session);
    case OpCode::kSessionExchangeKey:
      return SessionKeyExchange(request, request_bytes, out, origin, session);
    default:
      break;
  }
  if (session.session != nullptr && session.session->authenticated) {
    // CNRI's verifyIdentity for an authenticated session: its requests must carry its MAC.
    if (!session.mac_verified) {
      return Error(request, ResponseCode::kInvalidCredential, "Session request missing MAC code.",
                   request_bytes, site_serial_, out);
    }
    return Challenge(request, request_bytes, out, origin, &*session.session->authenticated);
  }
  if (session.connection_login != nullptr &&
      request.header.opcode != static_cast<uint32_t>(OpCode::kLoginIdSystem)) {
    // Logged in on this connection (China's identifier SDK): no new challenge.
    return Challenge(request, request_bytes, out, origin, session.connection_login);
  }
  return Challenge(request, request_bytes, out, origin, nullptr);
}

std::optional<std::pair<std::string, proto::Record>> AdminService::MirrorReferral(
    std::string_view handle) const {
  const std::string key = identifier::Normalize(handle);
  const auto& table = registry::ThreadView(registry_.prefix_table());
  std::string_view start = identifier::PrefixOf(key);
  if (identifier::IsPrefixHandle(key))
    start = registry::ParentPrefix(key.substr(identifier::kPrefixHandlePrefix.size()));
  for (std::string_view q = start; !q.empty(); q = registry::ParentPrefix(q)) {
    const registry::PrefixEntry* e = table.Find(q);
    if (e == nullptr || e->role == registry::PrefixRole::kDelegated) continue;
    if (e->role != registry::PrefixRole::kMirrored) return std::nullopt;
    std::string referral = identifier::PrefixHandleFor(q);
    auto record = registry_.Get(referral);
    proto::Record locations;
    for (const auto& v : record.record.values()) {
      if (registry::IsServiceLocationType(v.type()) &&
          (v.permissions() & protocol::permission::kPublicRead) != 0)
        *locations.add_values() = v;
    }
    if (locations.values_size() == 0) return std::nullopt;  // no owner to name: 301
    return std::pair<std::string, proto::Record>{std::move(referral), std::move(locations)};
  }
  return std::nullopt;
}

Handled AdminService::Challenge(const Message& request, std::span<const uint8_t> request_bytes,
                                std::span<uint8_t> out, const auth::Origin& origin,
                                const auth::Identity* identity) const {
  std::string_view handle = TargetHandle(request);
  const auto opcode = static_cast<OpCode>(request.header.opcode);
  // What the reference server checks before it asks who the client is.
  if (opcode == OpCode::kHomeNa || opcode == OpCode::kUnhomeNa || opcode == OpCode::kTakeoverNa) {
    if (PrefixOfHomingRequest(handle).empty()) {
      return Error(request, ResponseCode::kInvalidHandle, "Handle is not a prefix handle",
                   request_bytes, site_serial_, out);
    }
    if (registry_.site_server_count() > 1)
      return Error(request, ResponseCode::kOperationNotSupported, kPrefixChangeOnASite,
                   request_bytes, site_serial_, out);
  } else if (opcode == OpCode::kLoginIdSystem) {
    // Remembered per connection: over UDP there is none.
    if (origin.datagram) {
      return Error(request, ResponseCode::kOperationNotSupported, "LOGIN_ID_SYSTEM needs TCP",
                   request_bytes, site_serial_, out);
    }
  } else if (opcode == OpCode::kResolution) {
    // A read of values without PUBLIC_READ (HandleService found some): no write checks.
  } else if (opcode == OpCode::kListHandles) {
    const std::string prefix = PrefixOfHomingRequest(handle);
    if (prefix.empty()) {
      return Error(request, ResponseCode::kInvalidHandle, "Handle is not a prefix handle",
                   request_bytes, site_serial_, out);
    }
    if (!registry_.IsWritable(prefix + "/x")) {
      return Error(request, ResponseCode::kServerNotResponsible, "That prefix doesn't live here",
                   request_bytes, site_serial_, out);
    }
    if (origin.datagram) {
      return Error(request, ResponseCode::kOperationNotSupported, "LIST_HANDLES needs TCP",
                   request_bytes, site_serial_, out);
    }
  } else if (opcode == OpCode::kListHomedNas) {
    if (origin.datagram) {
      // The list may take several messages (CN): a connection's, as the reference client sends it.
      return Error(request, ResponseCode::kOperationNotSupported, "LIST_HOMED_NAS needs TCP",
                   request_bytes, site_serial_, out);
    }
  } else {
    if (!identifier::IsValidHandle(handle) && !(request.header.has(protocol::opflag::kMintSuffix) &&
                                                !handle.empty() && handle.back() == '/')) {
      return Error(request, ResponseCode::kInvalidHandle, "invalid handle", request_bytes,
                   site_serial_, out);
    }
    if (registry_.site_server_count() > 1 &&
        identifier::IsPrefixHandle(identifier::Normalize(handle)))
      return Error(request, ResponseCode::kOperationNotSupported, kPrefixChangeOnASite,
                   request_bytes, site_serial_, out);
    if (!registry_.IsWritable(handle)) {
      // A mirror is read-only here: the write goes to its owner, which the client is referred to
      // (the location values of the mirrored prefix's handle, as a resolution's referral).
      if (auto referral = MirrorReferral(handle)) {
        std::vector<protocol::HandleValue> values;
        for (const auto& v : referral->second.values()) values.push_back(registry::ToWire(v));
        return Respond(request.envelope, request.header, ResponseCode::kServiceReferral,
                       protocol::ReferralBody{referral->first, true, std::move(values)},
                       request_bytes, site_serial_, out, request.envelope.session_id);
      }
      return Error(request, ResponseCode::kServerNotResponsible, "That prefix doesn't live here",
                   request_bytes, site_serial_, out);
    }
    const bool minting = request.header.has(protocol::opflag::kMintSuffix) && !handle.empty() &&
                         handle.back() == '/';
    if (!minting && !registry_.OnThisServer(identifier::Normalize(handle))) {
      // Another server of this site holds it (the reference's answer and words).
      return Error(request, ResponseCode::kServerNotResponsible, "Request was hashed incorrectly",
                   request_bytes, site_serial_, out);
    }
  }
  if (registry_.write_failed() && opcode != OpCode::kResolution && opcode != OpCode::kListHandles &&
      opcode != OpCode::kLoginIdSystem) {
    return Error(request, ResponseCode::kError, "storage failed: writes are refused", request_bytes,
                 site_serial_, out);
  }
  if (identity != nullptr) {
    if (origin.datagram && opcode == OpCode::kListHomedNas) {
      return Error(request, ResponseCode::kOperationNotSupported, "LIST_HOMED_NAS needs TCP",
                   request_bytes, site_serial_, out);
    }
    return Execute(request, request_bytes, *identity, request.envelope, out,
                   Who(*identity, origin));
  }
  auth::PendingChallenge pending;
  // Over UDP the session is always a new random one (as the reference server's 402 carries): a
  // datagram's source may be forged, and a session id the client chose would let a spoofer answer
  // the challenge from that address without ever receiving it.
  pending.session_id = request.envelope.session_id != 0 && !origin.datagram
                           ? request.envelope.session_id
                           : challenges_.NewSessionId();
  pending.nonce = auth::ChallengeTable::NewNonce();
  pending.version = protocol::ResponseEnvelopeFor(request.envelope).version();
  pending.digest = protocol::RequestDigest(request_bytes, pending.version);
  pending.request.assign(request_bytes.begin(), request_bytes.end());
  pending.origin = origin;
  const uint32_t session_id = pending.session_id;
  const std::array<uint8_t, 16> nonce = pending.nonce;
  if (!challenges_.Add(std::move(pending), std::chrono::steady_clock::now())) {
    return Error(request, ResponseCode::kServerTooBusy, "too many pending challenges",
                 request_bytes, site_serial_, out);
  }
  // The 402 always carries the digest (ResponseHeaderFor sets RD) and the session to answer in.
  return Respond(request.envelope, request.header, ResponseCode::kAuthenticationNeeded,
                 protocol::ChallengeBody{nonce}, request_bytes, site_serial_, out, session_id);
}

Handled AdminService::Answer(const Message& answer, std::span<uint8_t> out,
                             const auth::Origin& origin) const {
  const auto& body = std::get<protocol::ChallengeAnswer>(answer.body);
  const auto now = std::chrono::steady_clock::now();
  auto pending = challenges_.Take(answer.envelope.session_id, origin, now);
  if (!pending) {
    return Respond(answer.envelope, answer.header, ResponseCode::kAuthenticationTimeout,
                   protocol::ErrorBody{"no challenge is waiting in this session (expired?)"}, {},
                   site_serial_, out, answer.envelope.session_id);
  }
  auto original = protocol::DecodeMessage(pending->request);
  if (!original.ok()) return {};  // it decoded when it was stored
  auth::Identity identity{std::string(body.user_id_handle), body.user_id_index};
  auto fail = [&](ResponseCode rc, std::string_view message, bool audited = false) {
    // A refused proof of an identity held here goes to the audit log on its own. Not the
    // proofs of identities nobody holds, nor those the throttle refuses unchecked: anyone could
    // send those, and each would cost a write.
    if (audited) {
      (void)registry_.AppendAudit(TargetHandle(*original), OperationNameOf(*original),
                                  Who(identity, pending->origin), rc);
    }
    return Respond(answer.envelope, original->header, rc, protocol::ErrorBody{message},
                   pending->request, site_serial_, out, answer.envelope.session_id);
  };
  auto key = authorizer_.FindKey(identity, body.auth_type);
  if (key.code != ResponseCode::kSuccess) return fail(key.code, key.message);
  // An answer comes from the address its challenge went to, in a session only that address was
  // told (see Challenge): its source is proven, even over UDP, and counts as such.
  auth::Origin proven = origin;
  proven.datagram = false;
  if (!failures_.Allowed(identity, proven, now)) {
    // Not checked at all: a locked key cannot be guessed, even right.
    return fail(ResponseCode::kServerTooBusy, kTooManyFailures);
  }
  auth::Verdict verdict = auth::VerifyChallengeAnswer(
      body.auth_type, {reinterpret_cast<const uint8_t*>(key.data.data()), key.data.size()},
      pending->nonce, pending->digest.view(), body.signed_response,
      !protocol::AtLeast(pending->version, 2, 1), body.user_id_handle);
  if (verdict != auth::Verdict::kValid) {
    if (verdict != auth::Verdict::kUnsupported) failures_.Failed(identity, proven, now);
    return fail(ForClient(verdict), auth::VerdictName(verdict), /*audited=*/true);
  }
  failures_.Succeeded(identity, proven, now);
  // The identity a session named at setup has now proved itself in it: the session's MAC'd
  // requests are its own from here on (CNRI's setSessionAuthenticated).
  if (sessions_ != nullptr && answer.envelope.session_id != 0)
    (void)sessions_->MarkAuthenticated(answer.envelope.session_id, identity);
  if (origin.datagram && (original->header.opcode == static_cast<uint32_t>(OpCode::kListHomedNas) ||
                          original->header.opcode == static_cast<uint32_t>(OpCode::kListHandles))) {
    return fail(ResponseCode::kOperationNotSupported, "listing needs TCP");
  }
  return Execute(*original, pending->request, identity, answer.envelope, out,
                 Who(identity, pending->origin));
}

Handled AdminService::Execute(const Message& original, std::span<const uint8_t> original_bytes,
                              const auth::Identity& identity,
                              const protocol::Envelope& answer_envelope, std::span<uint8_t> out,
                              const registry::AuditContext& who) const {
  auto respond = [&](ResponseCode rc, protocol::Body body) {
    return Respond(answer_envelope, original.header, rc, std::move(body), original_bytes,
                   site_serial_, out, answer_envelope.session_id);
  };
  switch (static_cast<OpCode>(original.header.opcode)) {
    case OpCode::kHomeNa:
    case OpCode::kUnhomeNa:
    case OpCode::kTakeoverNa:
    case OpCode::kListHomedNas:
      return ExecutePrefixOperation(original, original_bytes, identity, answer_envelope, out, who);
    case OpCode::kResolution:
      return ExecuteRead(original, original_bytes, identity, answer_envelope, out, who);
    case OpCode::kListHandles:
      return ExecuteList(original, original_bytes, identity, answer_envelope, out, who);
    case OpCode::kLoginIdSystem: {
      // The SDK logs in the identity its request names; only that identity's proof counts.
      const auto& login = std::get<protocol::LoginRequest>(original.body);
      if (identity.handle != login.handle || identity.index != login.index) {
        (void)registry_.AppendAudit(login.handle, "login", who,
                                    ResponseCode::kAuthenticationFailed);
        return respond(ResponseCode::kAuthenticationFailed,
                       protocol::ErrorBody{"the answer is not the login's identity"});
      }
      Handled done = respond(ResponseCode::kSuccess, protocol::EmptyBody{});
      if (done.disposition == Disposition::kAnswered && !who.via.ends_with("udp"))
        done.login = std::make_shared<const auth::Identity>(identity);
      return done;
    }
    default:
      break;
  }
  registry::Operation op;
  op.handle = std::string(TargetHandle(original));
  const bool overwrite = original.header.has(protocol::opflag::kOverwrite);
  if (const auto* v = std::get_if<protocol::HandleValuesBody>(&original.body)) {
    op.values.reserve(v->values.size());
    for (const auto& value : v->values) op.values.push_back(registry::ToStored(value));
  } else if (const auto* r = std::get_if<protocol::RemoveValuesRequest>(&original.body)) {
    for (uint32_t i = 0; i < r->indexes.size(); ++i) op.indexes.push_back(r->indexes[i]);
  }
  const auto opcode = static_cast<OpCode>(original.header.opcode);
  if (opcode == OpCode::kCreateHandle && original.header.has(protocol::opflag::kMintSuffix) &&
      !op.handle.empty() && op.handle.back() == '/') {
    auto minted = MintedHandle(registry_, op.handle);
    if (!minted) {
      return respond(ResponseCode::kError, protocol::ErrorBody{"no suffix could be minted here"});
    }
    op.handle = std::move(*minted);
  }
  switch (opcode) {
    case OpCode::kCreateHandle:
      op.kind = registry::OpKind::kCreate;
      op.overwrite = overwrite;
      break;
    case OpCode::kDeleteHandle:
      op.kind = registry::OpKind::kDelete;
      break;
    case OpCode::kAddValue:
      op.kind = registry::OpKind::kAddValues;
      op.overwrite = overwrite;
      break;
    case OpCode::kModifyValue:
      op.kind = registry::OpKind::kModifyValues;
      break;
    case OpCode::kRemoveValue:
      op.kind = registry::OpKind::kRemoveValues;
      break;
    default:
      return respond(ResponseCode::kOperationNotSupported, protocol::ErrorBody{"not an admin op"});
  }
  op.audit = who;
  const WriteOutcome outcome = ApplyAs(identity, op);
  if (outcome.code != ResponseCode::kSuccess) {
    return respond(outcome.code, protocol::ErrorBody{outcome.message});
  }
  if (opcode == OpCode::kCreateHandle) {
    // v9 answers with the created handle (so MINT works); CAP vector 09.
    return respond(ResponseCode::kSuccess, protocol::HandleBody{op.handle});
  }
  return respond(ResponseCode::kSuccess, protocol::EmptyBody{});
}

Handled AdminService::ExecutePrefixOperation(const Message& original,
                                             std::span<const uint8_t> original_bytes,
                                             const auth::Identity& identity,
                                             const protocol::Envelope& answer_envelope,
                                             std::span<uint8_t> out,
                                             const registry::AuditContext& who) const {
  const auto opcode = static_cast<OpCode>(original.header.opcode);
  auto respond = [&](ResponseCode rc, protocol::Body body) {
    if (opcode != OpCode::kListHomedNas || rc != ResponseCode::kSuccess) {
      // The prefix table's changes are written by the registry in their own batches; their
      // audit entries follow them (best effort: a failed append does not undo the change).
      (void)registry_.AppendAudit(TargetHandle(original), OperationNameOf(original), who, rc);
    }
    return Respond(answer_envelope, original.header, rc, std::move(body), original_bytes,
                   site_serial_, out, answer_envelope.session_id);
  };
  // The prefix table is the server's own: only its server admins change or list it (the
  // reference's server_admins / home_only_admins).
  if (!authorizer_.IsServerAdmin(identity)) {
    return respond(ResponseCode::kInvalidAdmin, protocol::ErrorBody{});
  }
  if (opcode == OpCode::kHomeNa || opcode == OpCode::kUnhomeNa || opcode == OpCode::kTakeoverNa) {
    const std::string prefix = PrefixOfHomingRequest(TargetHandle(original));
    registry::OpResult result;
    if (opcode == OpCode::kHomeNa) {
      result = registry_.HomePrefix(prefix);
    } else if (opcode == OpCode::kTakeoverNa) {
      // Only a mirror is taken over (kInvalidValue otherwise): its records are already here.
      result = registry_.TakeOverPrefix(prefix);
    } else {
      // Only a homed prefix is unhomed (idempotent, as the reference's); a delegation or a mirror
      // is another operation.
      auto state = registry_.ReadPrefix(prefix);
      if (!state.ok()) {
        result.code = ResponseCode::kError;
      } else if (*state && (*state)->role() == proto::PrefixState::HOMED) {
        result = registry_.ForgetPrefix(prefix);
      } else {
        result.code = ResponseCode::kSuccess;
      }
    }
    if (result.code != ResponseCode::kSuccess) {
      return respond(result.code, protocol::ErrorBody{RefusalMessage(result.code)});
    }
    if (on_prefix_roles_changed_) on_prefix_roles_changed_();
    return respond(ResponseCode::kSuccess, protocol::EmptyBody{});
  }
  // LIST_HOMED_NAS: the homed prefix handles, 50 a message, CN set on all but the last.
  std::vector<std::string> homed;
  registry_.prefix_table().Snapshot()->ForEach(
      [&homed](std::string_view name, const registry::PrefixEntry& entry) {
        if (entry.role == registry::PrefixRole::kHomed)
          homed.push_back(identifier::PrefixHandleFor(name));
      });
  std::sort(homed.begin(), homed.end());
  size_t written = 0;
  size_t next = 0;
  do {
    const size_t end = std::min(homed.size(), next + kPrefixesPerMessage);
    auto encoded = EncodeListMessage(
        answer_envelope, original.header, site_serial_, original_bytes,
        std::vector<std::string_view>(homed.begin() + static_cast<std::ptrdiff_t>(next),
                                      homed.begin() + static_cast<std::ptrdiff_t>(end)),
        end < homed.size(), out.subspan(written));
    if (!encoded) {
      // More homed prefixes than one answer buffer holds (256 KiB, some 10,000): say so rather
      // than send a partial list as if it were whole.
      written = 0;
      return respond(ResponseCode::kError,
                     protocol::ErrorBody{"too many homed prefixes to list here; use idctl prefix "
                                         "list on the data directory"});
    }
    written += *encoded;
    next = end;
  } while (next < homed.size());
  return {Disposition::kAnswered,
          written,
          original.header.opcode,
          static_cast<uint32_t>(ResponseCode::kSuccess),
          nullptr,
          nullptr};
}

Handled AdminService::Verify(const Message& request, std::span<const uint8_t> request_bytes,
                             std::span<uint8_t> out, const auth::Origin& origin) const {
  const auto& body = std::get<protocol::VerifyChallengeRequest>(request.body);
  auth::Identity identity{std::string(body.handle), body.index};
  auto key = authorizer_.FindKey(identity, auth::kAuthTypeSecretKey);
  if (key.code != ResponseCode::kSuccess) {
    return Error(request, key.code, key.message, request_bytes, site_serial_, out);
  }
  // OC 201 is a password-guessing oracle for anyone who can send it: throttled like answers.
  const auto now = std::chrono::steady_clock::now();
  if (!failures_.Allowed(identity, origin, now)) {
    return Error(request, ResponseCode::kServerTooBusy, kTooManyFailures, request_bytes,
                 site_serial_, out);
  }
  auth::Verdict verdict = auth::VerifyChallengeAnswer(
      auth::kAuthTypeSecretKey,
      {reinterpret_cast<const uint8_t*>(key.data.data()), key.data.size()}, body.nonce,
      body.original_request_digest, body.signed_response);
  if (verdict == auth::Verdict::kUnsupported) {
    return Error(request, ResponseCode::kAuthenticationError, auth::VerdictName(verdict),
                 request_bytes, site_serial_, out);
  }
  if (verdict != auth::Verdict::kValid) failures_.Failed(identity, origin, now);
  return Respond(request.envelope, request.header, ResponseCode::kSuccess,
                 protocol::VerifyChallengeResult{verdict == auth::Verdict::kValid}, request_bytes,
                 site_serial_, out, request.envelope.session_id);
}

AdminService::WriteOutcome AdminService::ApplyAs(const auth::Identity& identity,
                                                 registry::Operation op) const {
  // Decide on the record as read, then apply only if it is still that record (compare-and-apply):
  // another storage thread may change it in between (e.g. remove this identity's HS_ADMIN value),
  // and the change must never apply under a permission that no longer holds. On a conflict the
  // decision is made again on the record as it is now.
  for (int attempt = 0; attempt < kMaxDecisions; ++attempt) {
    WriteOutcome refused;
    if (!Decide(identity, op, &refused)) return refused;
    if (after_decision_for_test_) after_decision_for_test_();
    const registry::OpResult result = registry_.Apply(op);
    if (result.conflict) continue;
    return {result.code,
            std::string(result.code == ResponseCode::kSuccess ? std::string_view{}
                                                              : RefusalMessage(result.code))};
  }
  return {ResponseCode::kServerTooBusy, "the handle kept changing; try again"};
}

bool AdminService::Decide(const auth::Identity& identity, registry::Operation& op,
                          WriteOutcome* refused) const {
  std::string authorised;
  const registry::ReadOutcome read = registry_.GetSerialized(op.handle, &authorised);
  proto::Record current;
  const proto::Record* record = nullptr;
  if (read == registry::ReadOutcome::kError ||
      (read == registry::ReadOutcome::kFound && !current.ParseFromString(authorised))) {
    *refused = {ResponseCode::kError, std::string(RefusalMessage(ResponseCode::kError))};
    return false;
  }
  if (read == registry::ReadOutcome::kFound) record = &current;
  const uint16_t needed = NeededPermissions(op, record);
  if (needed == 0) {
    *refused = {ResponseCode::kOperationNotSupported, "not an admin op"};
    return false;
  }
  // Creation asks the prefix's admins (there are no values yet); a record without HS_ADMIN
  // values falls back to them too.
  if (!authorizer_.IsAuthorized(identity, op.handle,
                                op.kind == registry::OpKind::kCreate ? nullptr : record, needed)) {
    // CAP session message #7: an authenticated identity that is not an admin.
    *refused = {ResponseCode::kInvalidAdmin, {}};
    if (op.audit) {
      (void)registry_.AppendAudit(op.handle, registry::Registry::OperationName(op.kind), *op.audit,
                                  refused->code);
    }
    return false;
  }
  op.expected_record = std::move(authorised);
  return true;
}

std::vector<AdminService::WriteOutcome> AdminService::ApplyBatchAs(
    const auth::Identity& identity, std::string_view transaction,
    std::vector<registry::Operation> ops) const {
  // A transaction id is the client's own: scoped by the identity that sent it, so that another
  // identity's batch under the same id is a new transaction, never a replay of this one.
  const std::string transaction_id =
      transaction.empty() ? std::string() : identity.ToString() + '\x1f' + std::string(transaction);
  auto outcome_of = [](const registry::OpResult& r) {
    if (r.transaction_mismatch)
      return WriteOutcome{ResponseCode::kError,
                          "this transaction id was used for another operation at this place"};
    return WriteOutcome{r.code, r.code == ResponseCode::kSuccess
                                    ? std::string()
                                    : std::string(RefusalMessage(r.code))};
  };
  std::vector<WriteOutcome> outcomes(ops.size());
  std::vector<registry::Operation> allowed;
  std::vector<uint32_t> positions;
  allowed.reserve(ops.size());
  for (size_t i = 0; i < ops.size(); ++i) {
    // A retry answers as the first time, before any new decision (the record has moved on).
    if (auto stored = registry_.StoredOutcome(transaction_id, static_cast<uint32_t>(i), ops[i])) {
      outcomes[i] = outcome_of(*stored);
      continue;
    }
    if (!registry_.IsWritable(ops[i].handle)) {
      outcomes[i] = {ResponseCode::kServerNotResponsible, "That prefix doesn't live here"};
      continue;
    }
    if (!registry_.OnThisServer(identifier::Normalize(ops[i].handle))) {
      outcomes[i] = {ResponseCode::kServerNotResponsible, "Request was hashed incorrectly"};
      continue;
    }
    if (registry_.site_server_count() > 1 &&
        identifier::IsPrefixHandle(identifier::Normalize(ops[i].handle))) {
      outcomes[i] = {ResponseCode::kOperationNotSupported, std::string(kPrefixChangeOnASite)};
      continue;
    }
    if (!Decide(identity, ops[i], &outcomes[i])) continue;
    allowed.push_back(std::move(ops[i]));
    positions.push_back(static_cast<uint32_t>(i));
  }
  // One ApplyBatch: each operation's outcome is stored under the transaction id and its place in
  // the client's batch (whichever were refused), so a retry replays instead of applying again.
  const std::vector<registry::OpResult> results =
      registry_.ApplyBatch(transaction_id, allowed, positions);
  for (size_t j = 0; j < results.size(); ++j) {
    WriteOutcome& o = outcomes[positions[j]];
    registry::OpResult result = results[j];
    bool refused = false;
    // Changed between the decision and the write (an earlier operation of this batch on the same
    // handle, or another client): decided again, alone, its outcome stored at its place too.
    for (int attempt = 1; result.conflict && attempt < kMaxDecisions; ++attempt) {
      registry::Operation again = allowed[j];
      if (!Decide(identity, again, &o)) {
        refused = true;
        break;
      }
      result = registry_.ApplyBatch(transaction_id, {again}, std::span(&positions[j], 1)).front();
    }
    if (refused) continue;
    o = result.conflict
            ? WriteOutcome{ResponseCode::kServerTooBusy, "the handle kept changing; try again"}
            : outcome_of(result);
  }
  return outcomes;
}

namespace {

// Handles listed per LIST_HANDLES message (the reference's LIST_HANDLES_PER_MSG), and per part
// of the stream made on a storage thread (about 64 KiB for handles of ~50 bytes).
constexpr size_t kHandlesPerMessage = 50;
constexpr size_t kHandlesPerPart = 1000;
// And at most this many bytes of handles a part (handles may be 2 KiB long): a part always fits
// the answer buffer (256 KiB).
constexpr size_t kHandleBytesPerPart = 160 * 1024;

// OC 105's answer: the handles of a prefix, 50 a message, CN on all but the last, part by part.
class HandleListing : public Continuation {
 public:
  HandleListing(const registry::Registry& registry, std::string prefix, Message original,
                std::vector<uint8_t> original_bytes, protocol::Envelope answer_envelope,
                uint16_t serial)
      : registry_(registry),
        prefix_(std::move(prefix)),
        original_bytes_(std::move(original_bytes)),
        answer_envelope_(answer_envelope),
        serial_(serial) {
    header_ = original.header;
  }

  Handled Next(std::span<uint8_t> out) override {
    std::vector<std::string> handles;
    auto listed =
        registry_.ListHandles(prefix_, &cursor_, kHandlesPerPart, &handles, kHandleBytesPerPart);
    Handled h;
    h.opcode = header_.opcode;
    if (!listed.ok()) return h;  // storage failed mid-stream: the connection closes
    const bool last_part = *listed;
    size_t written = 0;
    size_t next = 0;
    do {
      const size_t end = std::min(handles.size(), next + kHandlesPerMessage);
      auto encoded = EncodeListMessage(
          answer_envelope_, header_, serial_, original_bytes_,
          std::vector<std::string_view>(handles.begin() + static_cast<std::ptrdiff_t>(next),
                                        handles.begin() + static_cast<std::ptrdiff_t>(end)),
          !last_part || end < handles.size(), out.subspan(written));
      if (!encoded) return Handled{};  // cannot happen: a part is far below the buffer
      written += *encoded;
      next = end;
    } while (next < handles.size());
    h.disposition = Disposition::kAnswered;
    h.response_size = written;
    h.response_code = static_cast<uint32_t>(ResponseCode::kSuccess);
    if (!last_part) h.more = self_.lock();
    return h;
  }

  void SetSelf(const std::shared_ptr<HandleListing>& self) { self_ = self; }

 private:
  const registry::Registry& registry_;
  const std::string prefix_;
  protocol::Header header_;
  const std::vector<uint8_t> original_bytes_;  // for the RD digest of every message
  const protocol::Envelope answer_envelope_;
  const uint16_t serial_;
  registry::Registry::ListCursor cursor_;
  std::weak_ptr<HandleListing> self_;
};

}  // namespace

Handled AdminService::ExecuteList(const Message& original, std::span<const uint8_t> original_bytes,
                                  const auth::Identity& identity,
                                  const protocol::Envelope& answer_envelope, std::span<uint8_t> out,
                                  const registry::AuditContext& who) const {
  const std::string prefix = PrefixOfHomingRequest(TargetHandle(original));
  const std::string prefix_handle = identifier::PrefixHandleFor(prefix);
  auto record = registry_.Get(prefix_handle);
  // CNRI's doListHandles: an admin of the prefix (its handle's HS_ADMIN) with LIST_HANDLES.
  if (!authorizer_.IsAuthorized(identity, prefix_handle,
                                record.code == ResponseCode::kSuccess ? &record.record : nullptr,
                                perm::kListHandles)) {
    (void)registry_.AppendAudit(prefix_handle, "list", who, ResponseCode::kInvalidAdmin);
    return Respond(answer_envelope, original.header, ResponseCode::kInvalidAdmin,
                   protocol::ErrorBody{}, original_bytes, site_serial_, out,
                   answer_envelope.session_id);
  }
  auto listing = std::make_shared<HandleListing>(
      registry_, prefix, original,
      std::vector<uint8_t>(original_bytes.begin(), original_bytes.end()), answer_envelope,
      site_serial_);
  listing->SetSelf(listing);
  return listing->Next(out);
}

Handled AdminService::ExecuteRead(const Message& original, std::span<const uint8_t> original_bytes,
                                  const auth::Identity& identity,
                                  const protocol::Envelope& answer_envelope, std::span<uint8_t> out,
                                  const registry::AuditContext& who) const {
  auto respond = [&](ResponseCode rc, protocol::Body body) {
    return Respond(answer_envelope, original.header, rc, std::move(body), original_bytes,
                   site_serial_, out, answer_envelope.session_id);
  };
  const auto& query = std::get<protocol::ResolutionRequest>(original.body);
  std::string stored;
  const registry::ReadOutcome read = registry_.GetSerialized(query.handle, &stored);
  proto::Record record;
  if (read == registry::ReadOutcome::kError ||
      (read == registry::ReadOutcome::kFound && !record.ParseFromString(stored))) {
    return respond(ResponseCode::kError, protocol::ErrorBody{RefusalMessage(ResponseCode::kError)});
  }
  if (read != registry::ReadOutcome::kFound)
    return respond(ResponseCode::kHandleNotFound, protocol::ErrorBody{});
  // CNRI's checkReadAccess: the handle's admins with READ_VALUE (or its prefix's, or server
  // admins) read what the public may not.
  if (!authorizer_.IsAuthorized(identity, query.handle, &record, perm::kReadValue)) {
    (void)registry_.AppendAudit(query.handle, "read", who, ResponseCode::kInvalidAdmin);
    return respond(ResponseCode::kInvalidAdmin, protocol::ErrorBody{});
  }
  resolver::Query selection;
  selection.handle = query.handle;
  selection.wire_indexes = query.indexes;
  selection.wire_types = query.types;
  std::vector<protocol::HandleValue> values;
  for (const auto& v : record.values()) {
    // Secret keys are never returned, to anyone: they are proved, not read. Nor what neither the
    // public nor admins may read (the record is read again after the challenge).
    if (registry::TypeMatches(protocol::kTypeSecretKey, v.type())) continue;
    if ((v.permissions() &
         (protocol::permission::kPublicRead | protocol::permission::kAdminRead)) == 0)
      continue;
    if (resolver::Selects(selection, v.index(), v.type(), static_cast<uint8_t>(v.permissions())))
      values.push_back(registry::ToWire(v));
  }
  if (values.empty()) return respond(ResponseCode::kValuesNotFound, protocol::ErrorBody{});
  return respond(ResponseCode::kSuccess,
                 protocol::HandleValuesBody{query.handle, std::move(values)});
}

namespace {

constexpr uint16_t kKeyExchangeCipherClient = auth::key_exchange::kCipherClient;
constexpr uint16_t kKeyExchangeCipherServer = auth::key_exchange::kCipherServer;
constexpr uint16_t kKeyExchangeCipherHandle = auth::key_exchange::kCipherHandle;
constexpr uint16_t kKeyExchangeDh = auth::key_exchange::kDiffieHellman;
// AES-128 session keys for the modes where this side chooses the key.
constexpr size_t kChosenSessionKeyBytes = 16;
constexpr std::string_view kInvalidSession =
    "Invalid session id or session time out. Please try again.";

std::vector<uint8_t> CipherCodeAndKey(std::span<const uint8_t> key) {
  std::vector<uint8_t> out(4 + key.size());
  protocol::WireWriter w(out);
  w.U32(auth::kCipherAes);
  w.Bytes(key);
  return out;
}

}  // namespace

Handled AdminService::SessionSetup(const Message& request, std::span<const uint8_t> request_bytes,
                                   std::span<uint8_t> out, const auth::Origin& origin) const {
  if (sessions_ == nullptr) {
    return Error(request, ResponseCode::kOperationNotSupported, "sessions are not enabled",
                 request_bytes, site_serial_, out);
  }
  const auto* opaque = std::get_if<protocol::OpaqueBody>(&request.body);
  if (opaque == nullptr) return {};
  auto fail = [&](ResponseCode rc, std::string_view why) {
    return Error(request, rc, why, request_bytes, site_serial_, out);
  };
  auto parsed = auth::ParseSessionSetup(opaque->bytes);
  if (!parsed.ok()) return fail(ResponseCode::kInvalidSessionSetupRequest, parsed.error());
  const uint16_t mode = parsed->mode;
  std::span<const uint8_t> client_key = parsed->client_key;
  if (!protocol::AtLeast(protocol::ResponseEnvelopeFor(request.envelope).version(), 2, 7)) {
    // Earlier clients MAC and encrypt with layouts (and DES) this node does not offer.
    return fail(ResponseCode::kSessionFailed, "sessions need protocol 2.7 or later");
  }
  std::vector<uint8_t> key;
  std::vector<uint8_t> data;  // the response's exchange data
  uint32_t cipher = auth::kCipherAes;
  switch (mode) {
    case kKeyExchangeDh: {
      std::vector<uint8_t> server_value;
      auto agreed = auth::DiffieHellman(client_key, &server_value);
      if (!agreed.ok()) return fail(ResponseCode::kSessionFailed, agreed.error());
      key = std::move(*agreed);
      data = CipherCodeAndKey({});
      data.insert(data.end(), server_value.begin(), server_value.end());
      break;
    }
    case kKeyExchangeCipherClient:
    case kKeyExchangeCipherHandle: {
      std::string key_value;
      if (mode == kKeyExchangeCipherHandle) {
        auto found =
            authorizer_.FindKey(auth::Identity{std::string(parsed->key_handle), parsed->key_index},
                                protocol::kTypePublicKey);
        if (found.code != ResponseCode::kSuccess)
          return fail(ResponseCode::kSessionFailed, "No key found in key exchange handle.");
        key_value = std::move(found.data);
        client_key = {reinterpret_cast<const uint8_t*>(key_value.data()), key_value.size()};
      }
      key.resize(kChosenSessionKeyBytes);
      if (RAND_bytes(key.data(), static_cast<int>(key.size())) != 1)
        return fail(ResponseCode::kSessionFailed, "no randomness");
      if (auth::IsSm2KeyValue(client_key)) {
        // China's identifier SDK: the key travels SM2-encrypted, and bodies go in SM4.
        cipher = auth::kCipherSm4;
        std::vector<uint8_t> plain(4 + key.size());
        protocol::WireWriter w(plain);
        w.U32(auth::kCipherSm4);
        w.Bytes(key);
        data = auth::EncryptToSm2(client_key, plain);
        OPENSSL_cleanse(plain.data(), plain.size());
      } else {
        data = auth::EncryptToPublicKey(client_key, CipherCodeAndKey(key));
      }
      if (data.empty()) {
        return fail(ResponseCode::kSessionFailed,
                    "Error performing cipher key exchange: not a usable RSA key");
      }
      break;
    }
    case kKeyExchangeCipherServer:
      if (!server_key_ || !server_key_->is_rsa())
        return fail(ResponseCode::kSessionFailed, "KEY_EXCHANGE_CIPHER_SERVER not supported");
      data = server_key_->public_key_value();
      break;
    default:
      return fail(ResponseCode::kSessionFailed, "Unrecognized key exchange mode");
  }
  std::optional<auth::Identity> identity;
  if (!parsed->identity_handle.empty() && parsed->identity_index >= 0)
    identity = auth::Identity{std::string(parsed->identity_handle), parsed->identity_index};
  const uint32_t id =
      sessions_->Open(origin, std::move(key), mode, std::move(identity), parsed->timeout_seconds,
                      std::chrono::steady_clock::now(), cipher);
  if (id == 0) return fail(ResponseCode::kServerTooBusy, "too many sessions");
  // Encoder.encodeSessionSetupResponse: mode(2) data(str), and the 2 bytes its length counts.
  std::vector<uint8_t> body(2 + 4 + data.size() + 2);
  protocol::WireWriter w(body);
  w.U16(mode);
  w.LengthPrefixed(data);
  w.U16(0);
  return Respond(request.envelope, request.header, ResponseCode::kSuccess,
                 protocol::OpaqueBody{body}, request_bytes, site_serial_, out, id);
}

Handled AdminService::SessionEnd(const Message& request, std::span<const uint8_t> request_bytes,
                                 std::span<uint8_t> out, const SessionContext& session) const {
  if (sessions_ == nullptr || session.session == nullptr) {
    return Error(request, ResponseCode::kSessionTimeout, kInvalidSession, request_bytes,
                 site_serial_, out);
  }
  // Only the holder of the session key may end it (CNRI's doSessionTerminate).
  if (!session.mac_verified) {
    return Error(request, ResponseCode::kInvalidSessionKey, "Invalid session key.", request_bytes,
                 site_serial_, out);
  }
  (void)sessions_->Close(session.session->id);
  return Respond(request.envelope, request.header, ResponseCode::kSuccess, protocol::EmptyBody{},
                 request_bytes, site_serial_, out, request.envelope.session_id);
}

Handled AdminService::SessionKeyExchange(const Message& request,
                                         std::span<const uint8_t> request_bytes,
                                         std::span<uint8_t> out, const auth::Origin& origin,
                                         const SessionContext& session) const {
  auto fail = [&](ResponseCode rc, std::string_view why) {
    return Error(request, rc, why, request_bytes, site_serial_, out);
  };
  if (sessions_ == nullptr || session.session == nullptr)
    return fail(ResponseCode::kSessionTimeout, kInvalidSession);
  // Only from the address that set the session up: the session id travels in the clear, and
  // the first key exchanged is the session's.
  if (session.session->key_exchange_mode != kKeyExchangeCipherServer || !server_key_ ||
      !session.session->key.empty() || session.session->origin_address != origin.address) {
    return fail(ResponseCode::kSessionFailed, "Invalid session id. Session failed.");
  }
  const auto* opaque = std::get_if<protocol::OpaqueBody>(&request.body);
  if (opaque == nullptr) return {};
  protocol::WireReader r(opaque->bytes);
  auto sealed = r.LengthPrefixed();
  if (!r.ok()) return fail(ResponseCode::kInvalidSessionSetupRequest, "malformed key exchange");
  std::vector<uint8_t> opened = server_key_->Decrypt(sealed);
  protocol::WireReader k(opened);
  const uint32_t cipher = k.U32();
  auto key = k.Bytes(k.remaining());
  if (!k.ok() || cipher != auth::kCipherAes || key.size() < kChosenSessionKeyBytes)
    return fail(ResponseCode::kSessionFailed, "Can't decrypt client session key.");
  if (!sessions_->SetKey(session.session->id, {key.begin(), key.end()}))
    return fail(ResponseCode::kSessionFailed, "Invalid session id. Session failed.");
  return Respond(request.envelope, request.header, ResponseCode::kSuccess, protocol::EmptyBody{},
                 request_bytes, site_serial_, out, request.envelope.session_id);
}

}  // namespace idnode::net
