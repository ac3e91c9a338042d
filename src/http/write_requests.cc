#include "idnode/http/write_requests.h"

#include <arpa/inet.h>
#include <openssl/evp.h>

#include <boost/json.hpp>
#include <cstring>
#include <ctime>
#include <span>

#include "idnode/identifier/identifier.h"
#include "idnode/protocol/utf8.h"
#include "idnode/registry/json_records.h"

namespace idnode::http {

namespace json = boost::json;

namespace {

// The longest Authorization header value decoded (the HTTP parser caps headers anyway).
constexpr size_t kMaxCredentialsBase64 = 16384;

// key=value pairs of a query string, values percent-decoded; false on a malformed escape.
bool ParseQueryPairs(std::string_view query,
                     std::vector<std::pair<std::string, std::string>>* out) {
  while (!query.empty()) {
    const size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (pair.empty()) continue;
    const size_t eq = pair.find('=');
    std::string value;
    if (!DecodePercent(eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1),
                       &value)) {
      return false;
    }
    out->emplace_back(std::string(pair.substr(0, eq)), std::move(value));
  }
  return true;
}

bool Base64Decode(std::string_view in, std::string* out) {
  if (in.empty() || in.size() % 4 != 0 || in.size() > kMaxCredentialsBase64) return false;
  std::string decoded(in.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(decoded.data()),
                                reinterpret_cast<const unsigned char*>(in.data()),
                                static_cast<int>(in.size()));
  if (n < 0) return false;
  size_t size = static_cast<size_t>(n);
  if (in.back() == '=') --size;
  if (in[in.size() - 2] == '=') --size;
  decoded.resize(size);
  *out = std::move(decoded);
  return true;
}

bool ParseInt(std::string_view text, int64_t lo, int64_t hi, int64_t* out) {
  if (text.empty() || text.size() > 18) return false;  // no overflow below 19 digits
  size_t i = text[0] == '-' ? 1 : 0;
  if (i == text.size()) return false;
  int64_t v = 0;
  for (; i < text.size(); ++i) {
    if (text[i] < '0' || text[i] > '9') return false;
    v = v * 10 + (text[i] - '0');
  }
  if (text[0] == '-') v = -v;
  if (v < lo || v > hi) return false;
  *out = v;
  return true;
}

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

}  // namespace

bool DecodePercent(std::string_view in, std::string* out) {
  out->clear();
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%') {
      if (i + 2 >= in.size()) return false;
      int hi = hex(in[i + 1]), lo = hex(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      char c = static_cast<char>(hi << 4 | lo);
      if (c == '\0') return false;
      out->push_back(c);
      i += 2;
    } else if (in[i] == '+') {
      out->push_back(' ');
    } else {
      out->push_back(in[i]);
    }
  }
  return protocol::IsValidUtf8(*out);
}

Result<BasicCredentials, std::string> ParseBasicAuthorization(std::string_view header) {
  constexpr std::string_view kBasic = "Basic ";
  if (header.size() < kBasic.size() ||
      !identifier::SameIgnoringAsciiCase(header.substr(0, kBasic.size()), kBasic)) {
    return Failure{std::string(
        "Authorization is Basic (index:handle and its HS_SECKEY) or Handle (a signed nonce)")};
  }
  std::string decoded;
  if (!Base64Decode(header.substr(kBasic.size()), &decoded))
    return Failure{std::string("malformed Basic credentials")};
  // The identity is percent-encoded ("300%3A0.NA%2FP"), so the first ':' ends it.
  const size_t colon = decoded.find(':');
  std::string id;
  if (colon == std::string::npos || !DecodePercent(decoded.substr(0, colon), &id))
    return Failure{std::string("malformed Basic credentials")};
  auto identity = auth::Identity::Parse(id);
  if (!identity) return Failure{std::string("the user name must be index:handle, percent-encoded")};
  BasicCredentials out;
  out.identity = std::move(*identity);
  out.secret = decoded.substr(colon + 1);
  return out;
}

namespace {

constexpr std::string_view kHandleScheme = "Handle";

bool IsSpace(char c) {
  return c == ' ' || c == '\t';
}

// RFC 7230 tchar.
bool IsTokenChar(char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// Base64 as the handle.net server's decoder takes it: standard or URL-safe alphabet, padding
// optional. False on anything else (or on nothing).
bool LenientBase64Decode(std::string_view in, std::vector<uint8_t>* out) {
  while (!in.empty() && in.back() == '=') in.remove_suffix(1);
  if (in.empty() || in.size() > kMaxCredentialsBase64 || in.size() % 4 == 1) return false;
  std::string normal(in);
  for (char& c : normal) {
    if (c == '-') c = '+';
    if (c == '_') c = '/';
  }
  while (normal.size() % 4 != 0) normal.push_back('=');
  std::string decoded;
  if (!Base64Decode(normal, &decoded)) return false;
  out->assign(decoded.begin(), decoded.end());
  return true;
}

void PutU32(std::vector<uint8_t>& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
}
void PutBytes(std::vector<uint8_t>& out, std::span<const uint8_t> bytes) {
  PutU32(out, static_cast<uint32_t>(bytes.size()));
  out.insert(out.end(), bytes.begin(), bytes.end());
}

// Upper-cased, without '-' and '_' (the reference's equalsIgnoreCaseAndPunctuation).
std::string AlgKey(std::string_view alg) {
  std::string out;
  for (char c : alg) {
    if (c == '-' || c == '_') continue;
    out.push_back(c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c);
  }
  return out;
}

}  // namespace

bool IsHandleAuthorization(std::string_view header) {
  size_t i = 0;
  while (i < header.size() && IsSpace(header[i])) ++i;
  header.remove_prefix(i);
  return header.size() > kHandleScheme.size() &&
         identifier::SameIgnoringAsciiCase(header.substr(0, kHandleScheme.size()), kHandleScheme) &&
         IsSpace(header[kHandleScheme.size()]);
}

Result<HandleAuthorization, std::string> ParseHandleAuthorization(std::string_view header) {
  if (!IsHandleAuthorization(header))
    return Failure{std::string("not an Authorization: Handle header")};
  if (header.size() > kMaxCredentialsBase64)
    return Failure{std::string("Authorization: Handle header too long")};
  size_t i = header.find_first_not_of(" \t");
  i += kHandleScheme.size();
  HandleAuthorization out;
  std::string cnonce, signature, salt;
  bool any = false;
  auto skip_space = [&] {
    while (i < header.size() && IsSpace(header[i])) ++i;
  };
  skip_space();
  while (i < header.size()) {
    const size_t name_start = i;
    while (i < header.size() && IsTokenChar(header[i])) ++i;
    const std::string_view name = header.substr(name_start, i - name_start);
    if (name.empty()) return Failure{std::string("malformed Authorization: Handle parameter")};
    skip_space();
    if (i >= header.size() || header[i] != '=')
      return Failure{std::string("malformed Authorization: Handle parameter")};
    ++i;
    skip_space();
    std::string value;
    if (i < header.size() && header[i] == '"') {
      ++i;
      bool closed = false;
      while (i < header.size()) {
        char c = header[i++];
        if (c == '"') {
          closed = true;
          break;
        }
        if (c == '\\') {
          if (i >= header.size()) break;
          c = header[i++];
        }
        // RFC 7230 qdtext and quoted-pair: no control characters but HTAB.
        if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f)
          return Failure{std::string("control character in Authorization: Handle")};
        value.push_back(c);
      }
      if (!closed) return Failure{std::string("unterminated quoted string in Authorization")};
    } else {
      const size_t value_start = i;
      while (i < header.size() && IsTokenChar(header[i])) ++i;
      value.assign(header.substr(value_start, i - value_start));
      if (value.empty()) return Failure{std::string("malformed Authorization: Handle parameter")};
    }
    skip_space();
    bool comma = false;
    while (i < header.size() && (header[i] == ',' || IsSpace(header[i]))) {
      comma = comma || header[i] == ',';
      ++i;
    }
    if (i < header.size() && !comma)
      return Failure{std::string("Authorization: Handle parameters are separated by commas")};
    any = true;
    auto is = [&](std::string_view want) { return identifier::SameIgnoringAsciiCase(name, want); };
    if (is("version")) {
      out.version = std::move(value);
    } else if (is("sessionId")) {
      out.session_id = std::move(value);
    } else if (is("id")) {
      // Percent-encoded, '+' being itself (a handle may hold one).
      std::string plus_kept;
      for (char c : value) plus_kept += c == '+' ? std::string("%2B") : std::string(1, c);
      if (!DecodePercent(plus_kept, &out.id))
        return Failure{std::string("malformed id in Authorization: Handle")};
    } else if (is("type")) {
      out.type = std::move(value);
    } else if (is("alg")) {
      out.alg = std::move(value);
    } else if (is("cnonce")) {
      cnonce = std::move(value);
    } else if (is("signature")) {
      signature = std::move(value);
    } else if (is("salt")) {
      salt = std::move(value);
    } else if (is("iterations")) {
      out.iterations = std::move(value);
    } else if (is("length")) {
      out.length = std::move(value);
    }  // others (clientCert, renegotiate, ...) are not offered here and are ignored
  }
  if (!any) return Failure{std::string("Authorization: Handle without parameters")};
  if (!cnonce.empty() && !LenientBase64Decode(cnonce, &out.cnonce))
    return Failure{std::string("cnonce is not base64")};
  if (!signature.empty() && !LenientBase64Decode(signature, &out.signature))
    return Failure{std::string("signature is not base64")};
  if (!salt.empty() && !LenientBase64Decode(salt, &out.salt))
    return Failure{std::string("salt is not base64")};
  return out;
}

Result<std::vector<uint8_t>, std::string> SignedResponseFor(const HandleAuthorization& header) {
  const std::string alg = AlgKey(header.alg);
  std::vector<uint8_t> out;
  if (header.type == auth::kAuthTypePublicKey) {
    std::string_view hash_name;
    if (alg == "SHA256" || alg == "SHA2") {
      hash_name = "SHA-256";
    } else if (alg == "SHA" || alg == "SHA1") {
      hash_name = "SHA1";
    } else if (alg == "MD5") {
      hash_name = "MD5";
    } else if (alg == "SM3") {
      hash_name = "SM3";  // an SM2 identity (China's identifier SDK's hash name)
    } else {
      return Failure{"alg " + header.alg.substr(0, 64) + " is not offered for HS_PUBKEY"};
    }
    PutBytes(out, {reinterpret_cast<const uint8_t*>(hash_name.data()), hash_name.size()});
    PutBytes(out, header.signature);
    return out;
  }
  if (header.type == auth::kAuthTypeSecretKey) {
    uint8_t code = 0;
    if (alg == "MD5") {
      code = auth::mac_code::kMd5;
    } else if (alg == "SHA" || alg == "SHA1") {
      code = auth::mac_code::kSha1;
    } else if (alg == "SHA256" || alg == "SHA2") {
      code = auth::mac_code::kSha256;
    } else if (alg == "HMACSHA1") {
      code = auth::mac_code::kHmacSha1;
    } else if (alg == "HMACSHA256") {
      code = auth::mac_code::kHmacSha256;
    } else if (alg == "PBKDF2HMACSHA1" || alg == "PBKDF2WITHHMACSHA1") {
      code = auth::mac_code::kPbkdf2HmacSha1;
    } else {
      return Failure{"alg " + header.alg.substr(0, 64) + " is not offered for HS_SECKEY"};
    }
    out.push_back(code);
    if (code != auth::mac_code::kPbkdf2HmacSha1) {
      out.insert(out.end(), header.signature.begin(), header.signature.end());
      return out;
    }
    int64_t iterations = 0, bits = 0;
    if (header.salt.empty() || !ParseInt(header.iterations, 1, INT32_MAX, &iterations) ||
        !ParseInt(header.length, 1, INT32_MAX, &bits)) {
      return Failure{std::string("PBKDF2 needs salt, iterations and length")};
    }
    PutBytes(out, header.salt);
    PutU32(out, static_cast<uint32_t>(iterations));
    PutU32(out, static_cast<uint32_t>(bits));
    PutBytes(out, header.signature);
    return out;
  }
  return Failure{"type " + header.type.substr(0, 64) + " is neither HS_PUBKEY nor HS_SECKEY"};
}

Result<WriteQuery, std::string> ParseWriteQuery(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> params;
  if (!ParseQueryPairs(query, &params)) return Failure{std::string("malformed query string")};
  WriteQuery q;
  for (const auto& [key, value] : params) {
    if (key == "overwrite") {
      q.overwrite = value != "false";
    } else if (key == "mintNewSuffix") {
      q.mint = value == "true";
    } else if (key == "index") {
      int64_t i = 0;
      if (value == "various") {
        q.all_indexes = true;
      } else if (ParseInt(value, INT32_MIN, INT32_MAX, &i) && q.indexes.size() < 2048) {
        q.indexes.push_back(static_cast<int32_t>(i));
      } else {
        return Failure{std::string("index must be an integer or various")};
      }
    } else {
      // A misspelt parameter must not turn a change of some values into one of the handle.
      return Failure{"unknown query parameter \"" + key + "\""};
    }
  }
  return q;
}

Result<ListQuery, std::string> ParseListQuery(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> params;
  if (!ParseQueryPairs(query, &params)) return Failure{std::string("malformed query string")};
  ListQuery q;
  for (const auto& [key, value] : params) {
    int64_t n = 0;
    if (key == "prefix") {
      q.prefix = value;
    } else if (key == "page") {
      if (!ParseInt(value, 0, 1'000'000'000, &n))
        return Failure{std::string("page must be 0 or more")};
      q.page = static_cast<uint64_t>(n);
    } else if (key == "pageSize") {
      if (!ParseInt(value, 1, kMaxPageSize, &n))
        return Failure{"pageSize must be 1 to " + std::to_string(kMaxPageSize)};
      q.page_size = static_cast<uint32_t>(n);
    }
  }
  return q;
}

Result<std::vector<proto::Value>, std::string> ParseValuesBody(std::string_view body,
                                                               std::string_view handle) {
  json::error_code ec;
  json::value parsed = json::parse(body, ec);
  if (ec) return Failure{std::string("the body is not JSON")};
  return ValuesFromJson(parsed, handle);
}

Result<BatchRequest, std::string> ParseBatch(std::string_view body) {
  json::error_code ec;
  json::value parsed = json::parse(body, ec);
  if (ec || !parsed.is_object()) return Failure{std::string("the body must be a JSON object")};
  const auto& top = parsed.as_object();
  BatchRequest batch;
  if (const auto* t = top.if_contains("transaction")) {
    if (!t->is_string() || t->as_string().size() > 256)
      return Failure{std::string("\"transaction\" must be a string of at most 256 bytes")};
    batch.transaction = std::string(t->as_string());
  }
  const auto* operations = top.if_contains("operations");
  if (operations == nullptr || !operations->is_array())
    return Failure{std::string("\"operations\" must be an array")};
  const auto& list = operations->as_array();
  if (list.empty() || list.size() > kMaxBatchOperations)
    return Failure{"a batch holds 1 to " + std::to_string(kMaxBatchOperations) + " operations"};
  batch.operations.reserve(list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    auto bad = [&](std::string_view why) {
      return Failure{"operation " + std::to_string(i) + ": " + std::string(why)};
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
      auto parsed_values = ValuesFromJson(*values, op.handle);
      if (!parsed_values.ok()) return bad(parsed_values.error());
      op.values = std::move(*parsed_values);
    } else if (op.kind == registry::OpKind::kRemoveValues) {
      const auto* indexes = o.if_contains("indexes");
      if (indexes == nullptr || !indexes->is_array() || indexes->as_array().empty() ||
          indexes->as_array().size() > 2048) {
        return bad("needs an \"indexes\" array (1 to 2048)");
      }
      for (const auto& index : indexes->as_array()) {
        if (!index.is_int64() || index.as_int64() < INT32_MIN || index.as_int64() > INT32_MAX)
          return bad("indexes are integers");
        op.indexes.push_back(static_cast<int32_t>(index.as_int64()));
      }
    }
    batch.operations.push_back(std::move(op));
  }
  return batch;
}

bool AuditFilter::Keeps(const proto::AuditEntry& entry) const {
  if (!identity.empty() && entry.identity() != identity) return false;
  if (prefix.empty()) return true;
  std::string key = identifier::Normalize(entry.handle());
  if (identifier::IsPrefixHandle(key)) key.erase(0, identifier::kPrefixHandlePrefix.size());
  const std::string_view of = identifier::PrefixOf(key);
  return of == prefix || key == prefix;
}

Result<AuditFilter, std::string> ParseAuditQuery(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> params;
  if (!ParseQueryPairs(query, &params)) return Failure{std::string("malformed query string")};
  AuditFilter f;
  for (const auto& [key, value] : params) {
    int64_t n = 0;
    if (key == "since") {
      uint32_t seconds = 0;
      if (registry::ParseIsoTime(value, &seconds)) {
        f.since_ms = uint64_t{seconds} * 1000;
      } else if (ParseInt(value, 0, INT64_C(99999999999999), &n)) {
        f.since_ms = static_cast<uint64_t>(n);
      } else {
        return Failure{std::string("since is an ISO-8601 UTC time or milliseconds")};
      }
    } else if (key == "limit") {
      if (!ParseInt(value, 1, static_cast<int64_t>(kMaxAuditEntries), &n))
        return Failure{"limit must be 1 to " + std::to_string(kMaxAuditEntries)};
      f.limit = static_cast<size_t>(n);
    } else if (key == "prefix") {
      f.prefix = identifier::Normalize(value);
      if (identifier::IsPrefixHandle(f.prefix))
        f.prefix.erase(0, identifier::kPrefixHandlePrefix.size());
    } else if (key == "identity") {
      f.identity = value;
    }
  }
  return f;
}

std::string AuditEntryToJson(const proto::AuditEntry& entry) {
  char address[INET6_ADDRSTRLEN] = "";
  const std::string& source = entry.source();
  if (source.size() == 16) {
    static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(source.data(), kMapped, sizeof kMapped) == 0) {
      inet_ntop(AF_INET, source.data() + 12, address, sizeof address);
    } else {
      inet_ntop(AF_INET6, source.data(), address, sizeof address);
    }
  }
  json::object o;
  o["time"] = registry::FormatIsoTime(static_cast<uint32_t>(entry.time_ms() / 1000));
  o["timeMs"] = entry.time_ms();
  o["identity"] = entry.identity();
  o["source"] = address;
  o["via"] = entry.via();
  o["operation"] = entry.operation();
  o["handle"] = entry.handle();
  o["responseCode"] = entry.response_code();
  return json::serialize(o);
}

}  // namespace idnode::http
