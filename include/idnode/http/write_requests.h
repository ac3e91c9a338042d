// http/: the parsers of the JSON API's authenticated requests (HANDLE.md §2), kept apart from
// sockets and storage so that a libFuzzer target (tests/fuzz/fuzz_http_write.cc) can drive them:
// the Basic credentials, the query strings of writes and listings, PUT bodies and batch bodies.
// Every input is bounded (sizes checked before anything is allocated by them); errors say what is
// wrong, for the 400 that carries them. Stateless; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "idnode/auth/credentials.h"
#include "idnode/common/result.h"
#include "idnode/registry.pb.h"
#include "idnode/registry/registry.h"

namespace idnode::http {

// Percent-decodes a path segment or query value ('+' is a space); false on a malformed escape,
// %00, or invalid UTF-8.
bool DecodePercent(std::string_view in, std::string* out);

struct BasicCredentials {
  auth::Identity identity;
  std::string secret;
};
// `Authorization: Basic base64(percent-encoded "index:handle" ":" secret)`.
Result<BasicCredentials, std::string> ParseBasicAuthorization(std::string_view header);

// Whether an Authorization header is of the `Handle` scheme (rather than Basic).
bool IsHandleAuthorization(std::string_view header);

// `Authorization: Handle k=v, k="v", ...` (the handle.net server's HandleAuthorizationHeader):
// parameters are tokens or quoted strings, separated by commas; names are case-insensitive and
// unknown ones are ignored; `id` is percent-decoded ('+' stays itself). `cnonce`, `signature` and
// `salt` are decoded from base64 (standard or URL-safe, padding optional).
struct HandleAuthorization {
  std::string version;     // absent or "0"
  std::string session_id;  // the session whose nonce was signed, or which proved an identity
  std::string id;          // "index:handle"
  std::string type;        // HS_PUBKEY or HS_SECKEY
  std::string alg;         // SHA256, SHA1, MD5, HMAC-SHA256, HMAC-SHA1, PBKDF2-HMAC-SHA1...
  std::vector<uint8_t> cnonce;
  std::vector<uint8_t> signature;
  std::vector<uint8_t> salt;  // PBKDF2: with iterations and length
  std::string iterations;
  std::string length;
  // Whether the header tries to prove an identity (rather than name a session).
  bool Authenticating() const {
    return !id.empty() || !type.empty() || !alg.empty() || !signature.empty();
  }
  bool Complete() const {
    return !id.empty() && !cnonce.empty() && !type.empty() && !alg.empty() && !signature.empty();
  }
};
Result<HandleAuthorization, std::string> ParseHandleAuthorization(std::string_view header);

// The OC 200 signedResponse field the header's proof stands for (so that the Handle protocol's
// verifier checks it): for HS_PUBKEY str(hash name) ‖ str(signature), for HS_SECKEY the MAC code
// byte ‖ MAC (PBKDF2: str(salt) ‖ iterations ‖ key bits ‖ str(MAC)). An error for an algorithm
// or type the scheme does not name.
Result<std::vector<uint8_t>, std::string> SignedResponseFor(const HandleAuthorization& header);

struct WriteQuery {
  bool overwrite = true;     // overwrite=false: an existing handle is a conflict (409)
  bool mint = false;         // mintNewSuffix=true
  bool all_indexes = false;  // index=various
  std::vector<int32_t> indexes;
};
Result<WriteQuery, std::string> ParseWriteQuery(std::string_view query);

struct ListQuery {
  std::string prefix;  // as given (P or 0.NA/P)
  uint64_t page = 0;
  uint32_t page_size = 1000;
};
inline constexpr uint32_t kMaxPageSize = 10000;
Result<ListQuery, std::string> ParseListQuery(std::string_view query);

// The values of a PUT body ({"values":[...]}, a bare array, or one value) for `handle`.
Result<std::vector<proto::Value>, std::string> ParseValuesBody(std::string_view body,
                                                               std::string_view handle);

struct BatchRequest {
  std::string transaction;  // at most 256 bytes; empty: not idempotent
  std::vector<registry::Operation> operations;
};
inline constexpr size_t kMaxBatchOperations = 2000;
// {"transaction":"ID","operations":[{"op":"create|add|modify|remove|delete","handle":"...",
// "values":[...],"indexes":[...],"overwrite":bool}, ...]}; 1 to kMaxBatchOperations operations.
Result<BatchRequest, std::string> ParseBatch(std::string_view body);

// The filters of the audit log (GET /api/audit, idctl audit).
struct AuditFilter {
  uint64_t since_ms = 0;
  size_t limit = 1000;
  std::string prefix;    // normalised; empty: all
  std::string identity;  // "index:handle"; empty: all
  bool Keeps(const proto::AuditEntry& entry) const;
};
inline constexpr size_t kMaxAuditEntries = 100000;
// since= (ISO-8601 UTC, or milliseconds since the epoch), prefix=, identity=, limit= (1 to
// kMaxAuditEntries).
Result<AuditFilter, std::string> ParseAuditQuery(std::string_view query);
// One entry as a JSON object: time (ISO), timeMs, identity, source (an IP address), via,
// operation, handle, responseCode.
std::string AuditEntryToJson(const proto::AuditEntry& entry);

}  // namespace idnode::http
