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
