#include "idnode/http/admin_api.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <boost/json.hpp>
#include <chrono>
#include <ctime>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "idnode/identifier/identifier.h"
#include "idnode/protocol/value_types.h"
#include "idnode/registry/json_records.h"
#include "idnode/registry/values.h"

namespace idnode::http {

namespace json = boost::json;
using protocol::ResponseCode;

namespace {

constexpr std::string_view kTooManyFailures =
    "too many failed proofs for this key or from this address; try again in a minute";

HttpResponse Json(unsigned status, const json::object& body) {
  HttpResponse r;
  r.status = status;
  r.body = json::serialize(body);
  return r;
}

HttpResponse Refused(unsigned status, ResponseCode rc, std::string_view message,
                     std::string_view handle = {}) {
  json::object o;
  o["responseCode"] = static_cast<int>(rc);
  if (!handle.empty()) o["handle"] = handle;
  if (!message.empty()) o["message"] = message;
  return Json(status, o);
}

std::string Base64(std::span<const uint8_t> bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes.data(),
                                static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::array<uint8_t, 32> Fingerprint(std::string_view key_data) {
  std::array<uint8_t, 32> out{};
  unsigned int size = 0;
  (void)EVP_Digest(key_data.data(), key_data.size(), out.data(), &size, EVP_sha256(), nullptr);
  return out;
}

// A quoted-string's content: quotes and backslashes escaped, control characters dropped.
std::string Quoted(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) continue;
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

// The HTTP status of a write's response code (HANDLE.md §2's table).
unsigned StatusFor(ResponseCode rc, bool created) {
  switch (rc) {
    case ResponseCode::kSuccess:
      return created ? 201 : 200;
    case ResponseCode::kHandleNotFound:
      return 404;
    case ResponseCode::kHandleAlreadyExists:
      return 409;
    case ResponseCode::kInvalidHandle:
    case ResponseCode::kInvalidValue:
    case ResponseCode::kValuesNotFound:
    case ResponseCode::kValueAlreadyExists:
    case ResponseCode::kServerNotResponsible:
    case ResponseCode::kProtocolError:
      return 400;
    case ResponseCode::kInvalidAdmin:
    case ResponseCode::kInsufficientPermissions:
      return 403;
    case ResponseCode::kServerTooBusy:
      return 503;
    default:
      return 500;
  }
}

// Whether `record` holds exactly `values` (index, type, data, permissions, TTL): a create that
// finds them there already has nothing left to do.
bool SameValues(const proto::Record& record, const std::vector<proto::Value>& values) {
  if (static_cast<size_t>(record.values_size()) != values.size()) return false;
  for (const auto& want : values) {
    bool found = false;
    for (const auto& have : record.values()) {
      if (have.index() != want.index()) continue;
      found = have.type() == want.type() && have.data() == want.data() &&
              have.permissions() == want.permissions() && have.ttl() == want.ttl() &&
              have.ttl_absolute() == want.ttl_absolute();
      break;
    }
    if (!found) return false;
  }
  return true;
}

}  // namespace

AdminApi::AdminApi(registry::Registry& registry, const auth::Authorizer& authorizer,
                   const net::AdminService& admin, auth::FailureThrottle& failures,
                   HttpAuthSessions* sessions)
    : registry_(registry),
      authorizer_(authorizer),
      admin_(admin),
      failures_(failures),
      sessions_(sessions) {}

void AdminApi::AddChallenge(HttpResponse* response, const HttpAuthSessions::Source& source,
                            std::string_view error) const {
  std::string basic = "Basic realm=\"handle\"";
  if (!error.empty()) basic += ", error=" + Quoted(error);
  response->headers.push_back({"WWW-Authenticate", std::move(basic)});
  if (sessions_ == nullptr) return;
  auto challenge = sessions_->Open(source, std::chrono::steady_clock::now());
  if (!challenge) return;  // too many sessions from there: Basic still works
  std::string handle = "Handle sessionId=" + Quoted(challenge->session_id) +
                       ", nonce=" + Quoted(Base64(challenge->nonce));
  if (!error.empty()) handle += ", error=" + Quoted(error);
  response->headers.push_back({"WWW-Authenticate", std::move(handle)});
}

bool AdminApi::Authenticate(const RequestContext& request, std::string_view handle,
                            std::string_view operation, auth::Identity* identity,
                            HttpResponse* refusal) const {
  if (IsHandleAuthorization(request.authorization))
    return AuthenticateHandle(request, handle, operation, identity, refusal);
  return AuthenticateBasic(request, handle, operation, identity, refusal);
}

bool AdminApi::AuthenticateHandle(const RequestContext& request, std::string_view handle,
                                  std::string_view operation, auth::Identity* identity,
                                  HttpResponse* refusal) const {
  const auto now = std::chrono::steady_clock::now();
  auto unauthorized = [&](std::string_view why, bool wrong) {
    *refusal = Refused(401, ResponseCode::kAuthenticationNeeded, why);
    AddChallenge(refusal, request.source, wrong ? std::string_view("Identity not verified") : why);
    return false;
  };
  if (sessions_ == nullptr) return unauthorized("the Handle scheme is not offered here", false);
  auto header = ParseHandleAuthorization(request.authorization);
  if (!header.ok()) return unauthorized(header.error(), false);
  if (!header->version.empty() && header->version != "0")
    return unauthorized("Unknown version in Authorization: Handle", false);
  std::optional<HttpAuthSessions::Session> session;
  if (!header->session_id.empty()) {
    session = sessions_->Find(header->session_id, now);
    if (!session) return unauthorized("unknown or expired session", false);
  }
  if (!header->Authenticating()) {
    if (session && session->proof) {
      // The key it proved with must still be there, unchanged: removing or replacing an
      // identity's key ends what that key authenticated.
      const HttpAuthSessions::Proof& proof = *session->proof;
      auto key = authorizer_.FindKey(proof.identity, proof.auth_type);
      if (key.code != ResponseCode::kSuccess || Fingerprint(key.data) != proof.key_fingerprint) {
        sessions_->Close(header->session_id);
        return unauthorized("the key this session proved with has changed", false);
      }
      *identity = proof.identity;
      return true;
    }
    return unauthorized("this session has not proved an identity", false);
  }
  if (!session)
    return unauthorized("sign the nonce of a session this node opened: name it in sessionId",
                        false);
  if (!header->Complete()) return unauthorized("Missing fields in authentication data", false);
  auto parsed = auth::Identity::Parse(header->id);
  if (!parsed) return unauthorized("id must be index:handle", false);
  if (session->proof && session->proof->identity != *parsed)
    return unauthorized("this session has proved another identity: open a new one", false);
  auto signed_response = SignedResponseFor(*header);
  if (!signed_response.ok()) return unauthorized(signed_response.error(), false);
  auth::Origin origin;
  origin.address = request.source;
  if (!failures_.Allowed(*parsed, origin, now)) {
    // Not logged: refused unchecked, and anyone could send these.
    *refusal = Refused(429, ResponseCode::kServerTooBusy, kTooManyFailures);
    return false;
  }
  // Every failure from here on says the same, whether or not the identity holds such a key.
  auto key = authorizer_.FindKey(*parsed, header->type);
  if (key.code != ResponseCode::kSuccess) return unauthorized("Identity not verified", true);
  const auth::Verdict verdict = auth::VerifyChallengeAnswer(
      header->type, {reinterpret_cast<const uint8_t*>(key.data.data()), key.data.size()},
      session->nonce, header->cnonce, *signed_response, /*legacy=*/false, parsed->handle);
  if (verdict != auth::Verdict::kValid) {
    if (verdict != auth::Verdict::kUnsupported) {
      failures_.Failed(*parsed, origin, now);
      (void)registry_.AppendAudit(handle, operation, {parsed->ToString(), request.source, "http"},
                                  ResponseCode::kAuthenticationFailed);
    }
    return unauthorized("Identity not verified", true);
  }
  failures_.Succeeded(*parsed, origin, now);
  HttpAuthSessions::Proof proof{*parsed, header->type, Fingerprint(key.data)};
  if (!sessions_->Authenticate(header->session_id, proof, now))
    return unauthorized("the session ended meanwhile", false);
  *identity = std::move(*parsed);
  return true;
}

bool AdminApi::AuthenticateBasic(const RequestContext& request, std::string_view handle,
                                 std::string_view operation, auth::Identity* identity,
                                 HttpResponse* refusal) const {
  auto unauthorized = [&](std::string_view why, bool wrong) {
    *refusal = Refused(401, ResponseCode::kAuthenticationNeeded, why);
    AddChallenge(refusal, request.source, wrong ? std::string_view("Identity not verified") : "");
    return false;
  };
  auto credentials = ParseBasicAuthorization(request.authorization);
  if (!credentials.ok()) return unauthorized(credentials.error(), false);
  auto audit_refusal = [&](ResponseCode rc) {
    (void)registry_.AppendAudit(handle, operation,
                                {credentials->identity.ToString(), request.source, "http"}, rc);
  };
  auth::Identity* parsed = &credentials->identity;
  const std::string_view secret = credentials->secret;
  auth::Origin origin;
  origin.address = request.source;
  const auto now = std::chrono::steady_clock::now();
  if (!failures_.Allowed(*parsed, origin, now)) {
    // Not logged: refused unchecked, and anyone could send these.
    *refusal = Refused(429, ResponseCode::kServerTooBusy, kTooManyFailures);
    return false;
  }
  auto key = authorizer_.FindKey(*parsed, protocol::kTypeSecretKey);
  const bool right = key.code == ResponseCode::kSuccess && key.data.size() == secret.size() &&
                     !secret.empty() &&
                     CRYPTO_memcmp(key.data.data(), secret.data(), secret.size()) == 0;
  if (!right) {
    // A wrong secret of an identity held here is logged (the throttle bounds how often); one
    // nobody holds is not (anyone could send those, each costing a write).
    if (key.code == ResponseCode::kSuccess) {
      failures_.Failed(*parsed, origin, now);
      audit_refusal(ResponseCode::kAuthenticationFailed);
    }
    return unauthorized("Identity not verified", true);
  }
  failures_.Succeeded(*parsed, origin, now);
  *identity = std::move(*parsed);
  return true;
}

HttpResponse AdminApi::Write(std::string_view method, std::string_view handle_in,
                             std::string_view query, const RequestContext& request) const {
  auth::Identity identity;
  HttpResponse refusal;
  if (!Authenticate(request, handle_in, method == "PUT" ? "put" : "delete", &identity, &refusal))
    return refusal;
  auto parsed_query = ParseWriteQuery(query);
  if (!parsed_query.ok())
    return Refused(400, ResponseCode::kProtocolError, parsed_query.error(), handle_in);
  const WriteQuery& q = *parsed_query;
  const bool overwrite = q.overwrite;
  const bool mint = q.mint;
  const bool all_indexes = q.all_indexes;
  const std::vector<int32_t>& indexes = q.indexes;
  std::string handle(handle_in);
  if (mint && method == "PUT" && !handle.empty() && handle.back() == '/') {
    auto minted = net::MintedHandle(registry_, handle);
    if (!minted)
      return Refused(500, ResponseCode::kError, "no suffix could be minted here", handle);
    handle = std::move(*minted);
  }
  if (!identifier::IsValidHandle(handle))
    return Refused(400, ResponseCode::kInvalidHandle, "invalid handle", handle);
  if (!registry_.IsWritable(handle)) {
    return Refused(400, ResponseCode::kServerNotResponsible, "That prefix doesn't live here",
                   handle);
  }
  if (!registry_.OnThisServer(identifier::Normalize(handle))) {
    return Refused(400, ResponseCode::kServerNotResponsible, "Request was hashed incorrectly",
                   handle);
  }
  if (registry_.site_server_count() > 1 &&
      identifier::IsPrefixHandle(identifier::Normalize(handle))) {
    return Refused(400, ResponseCode::kOperationNotSupported,
                   "prefix handles of a site of several servers are changed on every server: not "
                   "offered yet",
                   handle);
  }
  registry::Operation op;
  op.handle = handle;
  bool created = false;
  if (method == "PUT") {
    if (!request.content_type.empty() && request.content_type.substr(0, 16) != "application/json") {
      return Refused(400, ResponseCode::kProtocolError, "Unsupported media type", handle);
    }
    auto values = ParseValuesBody(request.body, handle);
    if (!values.ok()) return Refused(400, ResponseCode::kInvalidValue, values.error(), handle);
    if (indexes.empty() && !all_indexes) {
      op.kind = registry::OpKind::kCreate;  // the whole record
      op.overwrite = overwrite;
    } else {
      op.kind = registry::OpKind::kAddValues;  // only these values, added or replaced
      op.overwrite = true;
      for (auto& v : *values) {
        if (all_indexes || std::find(indexes.begin(), indexes.end(), v.index()) != indexes.end())
          op.values.push_back(std::move(v));
      }
      if (op.values.empty()) {
        return Refused(400, ResponseCode::kInvalidValue, "no value has the given indexes", handle);
      }
    }
    if (op.kind == registry::OpKind::kCreate) op.values = std::move(*values);
    created = true;
  } else {  // DELETE
    if (all_indexes) {
      return Refused(400, ResponseCode::kProtocolError,
                     "DELETE takes index=N (repeated), not index=various", handle);
    }
    if (indexes.empty()) {
      op.kind = registry::OpKind::kDelete;
    } else {
      op.kind = registry::OpKind::kRemoveValues;
      op.indexes = indexes;
    }
  }
  op.audit = registry::AuditContext{identity.ToString(), request.source, "http"};
  const auto outcome = admin_.ApplyAs(identity, std::move(op));
  if (outcome.code != ResponseCode::kSuccess)
    return Refused(StatusFor(outcome.code, false), outcome.code, outcome.message, handle);
  json::object o;
  o["responseCode"] = 1;
  o["handle"] = handle;
  return Json(StatusFor(ResponseCode::kSuccess, created), o);
}

HttpResponse AdminApi::Batch(std::string_view /*query*/, const RequestContext& request) const {
  auth::Identity identity;
  HttpResponse refusal;
  if (!Authenticate(request, {}, "batch", &identity, &refusal)) return refusal;
  auto batch = ParseBatch(request.body);
  if (!batch.ok()) return Refused(400, ResponseCode::kProtocolError, batch.error());
  std::vector<registry::Operation>& ops = batch->operations;
  const std::string& transaction = batch->transaction;
  // Kept for the "already there" check: ApplyBatchAs consumes the operations.
  for (auto& op : ops)
    op.audit = registry::AuditContext{identity.ToString(), request.source, "http"};
  std::vector<std::pair<std::string, std::vector<proto::Value>>> creates(ops.size());
  std::vector<std::string> handles(ops.size());
  for (size_t i = 0; i < ops.size(); ++i) {
    handles[i] = ops[i].handle;
    if (ops[i].kind == registry::OpKind::kCreate) creates[i] = {ops[i].handle, ops[i].values};
  }
  auto outcomes = admin_.ApplyBatchAs(identity, transaction, std::move(ops));
  json::array results;
  results.reserve(outcomes.size());
  for (size_t i = 0; i < outcomes.size(); ++i) {
    auto& outcome = outcomes[i];
    if (outcome.code == ResponseCode::kHandleAlreadyExists && !creates[i].first.empty()) {
      // A create that finds the same values already there (a retry under another transaction
      // id, or two systems registering the same thing) has nothing left to do.
      auto current = registry_.Get(creates[i].first);
      if (current.code == ResponseCode::kSuccess && SameValues(current.record, creates[i].second))
        outcome = {ResponseCode::kSuccess, {}};
    }
    json::object r;
    r["handle"] = handles[i];
    r["responseCode"] = static_cast<int>(outcome.code);
    if (!outcome.message.empty()) r["message"] = outcome.message;
    results.push_back(std::move(r));
  }
  json::object o;
  o["responseCode"] = 1;
  if (!transaction.empty()) o["transaction"] = transaction;
  o["results"] = std::move(results);
  return Json(200, o);
}

HttpResponse AdminApi::List(std::string_view query, const RequestContext& request) const {
  auth::Identity identity;
  HttpResponse refusal;
  if (!Authenticate(request, {}, "list", &identity, &refusal)) return refusal;
  auto list_query = ParseListQuery(query);
  if (!list_query.ok()) return Refused(400, ResponseCode::kProtocolError, list_query.error());
  const std::string& prefix = list_query->prefix;
  const uint64_t page = list_query->page;
  const uint64_t page_size = list_query->page_size;
  std::string key = identifier::Normalize(prefix);
  if (identifier::IsPrefixHandle(key)) key.erase(0, identifier::kPrefixHandlePrefix.size());
  if (key.empty() || key.find('/') != std::string::npos)
    return Refused(400, ResponseCode::kInvalidHandle, "prefix=P names a prefix");
  const std::string prefix_handle = identifier::PrefixHandleFor(key);
  if (!registry_.IsWritable(key + "/x")) {
    return Refused(400, ResponseCode::kServerNotResponsible, "That prefix doesn't live here");
  }
  auto record = registry_.Get(prefix_handle);
  if (!authorizer_.IsAuthorized(identity, prefix_handle,
                                record.code == ResponseCode::kSuccess ? &record.record : nullptr,
                                protocol::admin_permission::kListHandles)) {
    (void)registry_.AppendAudit(prefix_handle, "list",
                                {identity.ToString(), request.source, "http"},
                                ResponseCode::kInvalidAdmin);
    return Refused(403, ResponseCode::kInvalidAdmin, {});
  }
  const uint64_t first = page * page_size;
  uint64_t total = 0;
  json::array handles;
  for (uint32_t shard = 0; shard < registry_.shard_count(); ++shard) {
    auto snapshot = registry_.TakeSnapshot(shard);
    auto scanned = registry_.ScanSnapshot(snapshot, key, [&](const proto::Record& r) {
      // Only P's own handles, not those of its derived prefixes.
      if (identifier::PrefixOf(identifier::Normalize(r.handle())) != key) return true;
      if (total >= first && total < first + page_size) handles.emplace_back(r.handle());
      ++total;
      return true;
    });
    if (!scanned.ok()) return Refused(500, ResponseCode::kError, scanned.error());
  }
  json::object o;
  o["responseCode"] = 1;
  o["prefix"] = prefix;
  o["totalCount"] = std::to_string(total);  // a string, as the reference writes it
  o["page"] = page;
  o["pageSize"] = page_size;
  o["handles"] = std::move(handles);
  return Json(200, o);
}

HttpResponse AdminApi::Audit(std::string_view query, const RequestContext& request) const {
  auth::Identity identity;
  HttpResponse refusal;
  if (!Authenticate(request, {}, "audit", &identity, &refusal)) return refusal;
  if (!authorizer_.IsServerAdmin(identity)) {
    (void)registry_.AppendAudit({}, "audit", {identity.ToString(), request.source, "http"},
                                ResponseCode::kInvalidAdmin);
    return Refused(403, ResponseCode::kInvalidAdmin, "the audit log is for server admins");
  }
  auto filter = ParseAuditQuery(query);
  if (!filter.ok()) return Refused(400, ResponseCode::kProtocolError, filter.error());
  auto entries = registry_.ReadAudit(filter->since_ms, filter->limit,
                                     [&](const proto::AuditEntry& e) { return filter->Keeps(e); });
  if (!entries.ok()) return Refused(500, ResponseCode::kError, entries.error());
  json::array out;
  for (const auto& e : *entries) out.push_back(json::parse(AuditEntryToJson(e)));
  json::object o;
  o["responseCode"] = 1;
  o["entries"] = std::move(out);
  return Json(200, o);
}

bool AdminApi::AuthorizeServerAdmin(const RequestContext& request, std::string_view operation,
                                    HttpResponse* refusal) const {
  auth::Identity identity;
  if (!Authenticate(request, {}, operation, &identity, refusal)) return false;
  if (authorizer_.IsServerAdmin(identity)) return true;
  (void)registry_.AppendAudit({}, operation, {identity.ToString(), request.source, "http"},
                              ResponseCode::kInvalidAdmin);
  *refusal = Refused(403, ResponseCode::kInvalidAdmin, "the status pages are for server admins");
  return false;
}

}  // namespace idnode::http
