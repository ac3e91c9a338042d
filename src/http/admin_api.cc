#include "idnode/http/admin_api.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <ctime>
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

HttpResponse Unauthorized(std::string_view message, bool wrong_password) {
  HttpResponse r = Refused(401, ResponseCode::kAuthenticationNeeded, message);
  r.headers.push_back({"WWW-Authenticate", wrong_password
                                               ? "Basic realm=\"handle\", error=\"Identity not "
                                                 "verified\""
                                               : "Basic realm=\"handle\""});
  return r;
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

// key=value pairs of a query string, values percent-decoded ('+' is a space); false on a
// malformed escape.
bool ParseQuery(std::string_view query, std::vector<std::pair<std::string, std::string>>* out) {
  while (!query.empty()) {
    const size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (pair.empty()) continue;
    const size_t eq = pair.find('=');
    std::string key(pair.substr(0, eq));
    std::string raw(eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1));
    for (char& c : raw) {
      if (c == '+') c = ' ';
    }
    std::string value;
    if (!DecodePercent(raw, &value)) return false;
    out->emplace_back(std::move(key), std::move(value));
  }
  return true;
}

bool Base64Decode(std::string_view in, std::string* out) {
  if (in.empty() || in.size() % 4 != 0 || in.size() > 16384) return false;
  std::string decoded(in.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(decoded.data()),
                                reinterpret_cast<const unsigned char*>(in.data()),
                                static_cast<int>(in.size()));
  if (n < 0) return false;
  size_t size = static_cast<size_t>(n);
  if (in.back() == '=') --size;
  if (in.size() >= 2 && in[in.size() - 2] == '=') --size;
  decoded.resize(size);
  *out = std::move(decoded);
  return true;
}

bool ParseInt(std::string_view text, int64_t lo, int64_t hi, int64_t* out) {
  if (text.empty() || text.size() > 12) return false;
  int64_t v = 0;
  size_t i = 0;
  const bool negative = text[0] == '-';
  if (negative) ++i;
  if (i == text.size()) return false;
  for (; i < text.size(); ++i) {
    if (text[i] < '0' || text[i] > '9') return false;
    v = v * 10 + (text[i] - '0');
  }
  if (negative) v = -v;
  if (v < lo || v > hi) return false;
  *out = v;
  return true;
}

// The values of a PUT body ({"values":[...]}, a bare array, or one value) as stored values of
// `handle`; the error says what is wrong.
Result<std::vector<proto::Value>, std::string> ValuesFromJson(const json::value& body,
                                                              std::string_view handle) {
  json::array values;
  if (body.is_array()) {
    values = body.as_array();
  } else if (body.is_object() && body.as_object().contains("values")) {
    const auto& v = body.as_object().at("values");
    if (!v.is_array()) return Failure{std::string("\"values\" must be an array")};
    values = v.as_array();
  } else if (body.is_object()) {
    values.push_back(body);
  } else {
    return Failure{
        std::string("the body must be a value, an array of values or {\"values\":[...]}")};
  }
  json::object line;
  line["handle"] = handle;
  line["values"] = std::move(values);
  auto record =
      registry::RecordFromJson(json::serialize(line), static_cast<uint32_t>(std::time(nullptr)));
  if (!record.ok()) return Failure{record.error()};
  return std::vector<proto::Value>(record->values().begin(), record->values().end());
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
                   const net::AdminService& admin, auth::FailureThrottle& failures)
    : registry_(registry), authorizer_(authorizer), admin_(admin), failures_(failures) {}

bool AdminApi::Authenticate(const RequestContext& request, auth::Identity* identity,
                            HttpResponse* refusal) const {
  std::string_view header = request.authorization;
  constexpr std::string_view kBasic = "Basic ";
  if (header.size() < kBasic.size() ||
      !identifier::SameIgnoringAsciiCase(header.substr(0, kBasic.size()), kBasic)) {
    *refusal = Unauthorized(
        "only Basic authentication (index:handle and its HS_SECKEY) is "
        "offered here",
        false);
    return false;
  }
  std::string decoded;
  if (!Base64Decode(header.substr(kBasic.size()), &decoded)) {
    *refusal = Unauthorized("malformed Basic credentials", false);
    return false;
  }
  // The identity is percent-encoded ("300%3A0.NA%2FP"), so the first ':' ends it.
  const size_t colon = decoded.find(':');
  std::string id;
  if (colon == std::string::npos || !DecodePercent(decoded.substr(0, colon), &id)) {
    *refusal = Unauthorized("malformed Basic credentials", false);
    return false;
  }
  auto parsed = auth::Identity::Parse(id);
  if (!parsed) {
    *refusal = Unauthorized("the user name must be index:handle, percent-encoded", false);
    return false;
  }
  const std::string_view secret = std::string_view(decoded).substr(colon + 1);
  auth::Origin origin;
  origin.address = request.source;
  const auto now = std::chrono::steady_clock::now();
  if (!failures_.Allowed(*parsed, origin, now)) {
    *refusal = Refused(429, ResponseCode::kServerTooBusy, kTooManyFailures);
    return false;
  }
  auto key = authorizer_.FindKey(*parsed, protocol::kTypeSecretKey);
  const bool right = key.code == ResponseCode::kSuccess && key.data.size() == secret.size() &&
                     !secret.empty() &&
                     CRYPTO_memcmp(key.data.data(), secret.data(), secret.size()) == 0;
  if (!right) {
    if (key.code == ResponseCode::kSuccess) failures_.Failed(*parsed, origin, now);
    *refusal = Unauthorized("Identity not verified", true);
    return false;
  }
  failures_.Succeeded(*parsed, origin, now);
  *identity = std::move(*parsed);
  return true;
}

HttpResponse AdminApi::Write(std::string_view method, std::string_view handle_in,
                             std::string_view query, const RequestContext& request) const {
  auth::Identity identity;
  HttpResponse refusal;
  if (!Authenticate(request, &identity, &refusal)) return refusal;
  std::vector<std::pair<std::string, std::string>> params;
  if (!ParseQuery(query, &params))
    return Refused(400, ResponseCode::kProtocolError, "malformed query string", handle_in);
  bool overwrite = true;
  bool mint = false;
  bool all_indexes = false;
  std::vector<int32_t> indexes;
  for (const auto& [key, value] : params) {
    if (key == "overwrite") {
      overwrite = value != "false";
    } else if (key == "mintNewSuffix") {
      mint = value == "true";
    } else if (key == "index") {
      int64_t i = 0;
      if (value == "various") {
        all_indexes = true;
      } else if (ParseInt(value, INT32_MIN, INT32_MAX, &i)) {
        indexes.push_back(static_cast<int32_t>(i));
      } else {
        return Refused(400, ResponseCode::kProtocolError, "index must be an integer or various",
                       handle_in);
      }
    }
  }
  std::string handle(handle_in);
  if (mint && method == "PUT" && !handle.empty() && handle.back() == '/') handle += net::NewUuid();
  if (!identifier::IsValidHandle(handle))
    return Refused(400, ResponseCode::kInvalidHandle, "invalid handle", handle);
  if (!registry_.IsWritable(handle)) {
    return Refused(400, ResponseCode::kServerNotResponsible, "That prefix doesn't live here",
                   handle);
  }
  registry::Operation op;
  op.handle = handle;
  bool created = false;
  if (method == "PUT") {
    if (!request.content_type.empty() && request.content_type.substr(0, 16) != "application/json") {
      return Refused(400, ResponseCode::kProtocolError, "Unsupported media type", handle);
    }
    json::error_code ec;
    json::value body = json::parse(request.body, ec);
    if (ec) return Refused(400, ResponseCode::kProtocolError, "the body is not JSON", handle);
    auto values = ValuesFromJson(body, handle);
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
    if (indexes.empty()) {
      op.kind = registry::OpKind::kDelete;
    } else {
      op.kind = registry::OpKind::kRemoveValues;
      op.indexes = indexes;
    }
  }
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
  if (!Authenticate(request, &identity, &refusal)) return refusal;
  json::error_code ec;
  json::value body = json::parse(request.body, ec);
  if (ec || !body.is_object())
    return Refused(400, ResponseCode::kProtocolError, "the body must be a JSON object");
  const auto& top = body.as_object();
  std::string transaction;
  if (const auto* t = top.if_contains("transaction")) {
    if (!t->is_string() || t->as_string().size() > 256)
      return Refused(400, ResponseCode::kProtocolError, "\"transaction\" must be a short string");
    transaction = std::string(t->as_string());
  }
  const auto* operations = top.if_contains("operations");
  if (operations == nullptr || !operations->is_array())
    return Refused(400, ResponseCode::kProtocolError, "\"operations\" must be an array");
  const auto& list = operations->as_array();
  if (list.empty() || list.size() > kMaxBatchOperations) {
    return Refused(400, ResponseCode::kProtocolError,
                   "a batch holds 1 to " + std::to_string(kMaxBatchOperations) + " operations");
  }
  // Parse everything first: a malformed operation fails the whole request (nothing applied).
  std::vector<registry::Operation> ops;
  ops.reserve(list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    auto bad = [&](std::string_view why) {
      return Refused(400, ResponseCode::kProtocolError,
                     "operation " + std::to_string(i) + ": " + std::string(why));
    };
    if (!list[i].is_object()) return bad("not an object");
    const auto& o = list[i].as_object();
    const auto* kind = o.if_contains("op");
    const auto* handle = o.if_contains("handle");
    if (kind == nullptr || !kind->is_string() || handle == nullptr || !handle->is_string())
      return bad("needs \"op\" and \"handle\" strings");
    registry::Operation op;
    op.handle = std::string(handle->as_string());
    if (!identifier::IsValidHandle(op.handle)) return bad("invalid handle");
    const std::string_view k = kind->as_string();
    if (k == "create") {
      op.kind = registry::OpKind::kCreate;
    } else if (k == "add") {
      op.kind = registry::OpKind::kAddValues;
    } else if (k == "modify") {
      op.kind = registry::OpKind::kModifyValues;
    } else if (k == "remove") {
      op.kind = registry::OpKind::kRemoveValues;
    } else if (k == "delete") {
      op.kind = registry::OpKind::kDelete;
    } else {
      return bad("\"op\" is create, add, modify, remove or delete");
    }
    if (const auto* overwrite = o.if_contains("overwrite")) {
      if (!overwrite->is_bool()) return bad("\"overwrite\" must be true or false");
      op.overwrite = overwrite->as_bool();
    }
    if (op.kind == registry::OpKind::kCreate || op.kind == registry::OpKind::kAddValues ||
        op.kind == registry::OpKind::kModifyValues) {
      const auto* values = o.if_contains("values");
      if (values == nullptr || !values->is_array()) return bad("needs a \"values\" array");
      auto parsed = ValuesFromJson(*values, op.handle);
      if (!parsed.ok()) return bad(parsed.error());
      op.values = std::move(*parsed);
    } else if (op.kind == registry::OpKind::kRemoveValues) {
      const auto* indexes = o.if_contains("indexes");
      if (indexes == nullptr || !indexes->is_array() || indexes->as_array().empty())
        return bad("needs an \"indexes\" array");
      for (const auto& index : indexes->as_array()) {
        if (!index.is_int64() || index.as_int64() < INT32_MIN || index.as_int64() > INT32_MAX)
          return bad("indexes are integers");
        op.indexes.push_back(static_cast<int32_t>(index.as_int64()));
      }
    }
    ops.push_back(std::move(op));
  }
  // Kept for the "already there" check: ApplyBatchAs consumes the operations.
  std::vector<std::pair<std::string, std::vector<proto::Value>>> creates(ops.size());
  for (size_t i = 0; i < ops.size(); ++i) {
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
    r["handle"] = list[i].as_object().at("handle");
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
  if (!Authenticate(request, &identity, &refusal)) return refusal;
  std::vector<std::pair<std::string, std::string>> params;
  if (!ParseQuery(query, &params))
    return Refused(400, ResponseCode::kProtocolError, "malformed query string");
  std::string prefix;
  int64_t page = 0;
  int64_t page_size = 1000;
  for (const auto& [key, value] : params) {
    if (key == "prefix") {
      prefix = value;
    } else if (key == "page" && !ParseInt(value, 0, 1'000'000'000, &page)) {
      return Refused(400, ResponseCode::kProtocolError, "page must be 0 or more");
    } else if (key == "pageSize" &&
               !ParseInt(value, 1, static_cast<int64_t>(kMaxPageSize), &page_size)) {
      return Refused(400, ResponseCode::kProtocolError,
                     "pageSize must be 1 to " + std::to_string(kMaxPageSize));
    }
  }
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
    return Refused(403, ResponseCode::kInvalidAdmin, {});
  }
  const uint64_t first = static_cast<uint64_t>(page) * static_cast<uint64_t>(page_size);
  uint64_t total = 0;
  json::array handles;
  for (uint32_t shard = 0; shard < registry_.shard_count(); ++shard) {
    auto snapshot = registry_.TakeSnapshot(shard);
    auto scanned = registry_.ScanSnapshot(snapshot, key, [&](const proto::Record& r) {
      // Only P's own handles, not those of its derived prefixes.
      if (identifier::PrefixOf(identifier::Normalize(r.handle())) != key) return true;
      if (total >= first && total < first + static_cast<uint64_t>(page_size))
        handles.emplace_back(r.handle());
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

}  // namespace idnode::http
