// Records in the JSON shape of the handle.net JSON API (HANDLE.md §2), one per line for
// `idctl import` / `idctl export`:
//   {"handle":"88.100.1/SN1","values":[{"index":1,"type":"URL",
//     "data":{"format":"string","value":"https://..."},"ttl":86400,"timestamp":"2026-11-25T17:16:47Z"}]}
// Data formats read: string, base64, hex, admin, vlist. Written: admin and vlist for HS_ADMIN and
// HS_VLIST values that re-encode to the same bytes, string for UTF-8 text without control
// characters, base64 for everything else (HS_SITE, HS_PUBKEY, binary data), so export/import
// round-trips every byte. "permissions" (a 4-character bit string, ADMIN_READ first) and
// "references" are written only when they differ from the defaults (0x0E, none).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "idnode/common/result.h"
#include "idnode/registry.pb.h"

namespace idnode::registry {

// Parses one JSON line into a record. `now` fills in missing timestamps. The error says what is
// wrong, for a message that names the line.
Result<proto::Record, std::string> RecordFromJson(std::string_view line, uint32_t now);

// The same for many lines on one thread (a bulk import): the JSON parser and its memory (an arena
// released per line) and the record (its strings keep their capacity) are reused, so a line
// costs no malloc per JSON node. One per thread.
class JsonLineParser {
 public:
  JsonLineParser();
  ~JsonLineParser();
  JsonLineParser(const JsonLineParser&) = delete;
  JsonLineParser& operator=(const JsonLineParser&) = delete;
  // Parses `line` into `*record` (cleared first); on failure `*record` holds a part of it.
  Result<Unit, std::string> Parse(std::string_view line, uint32_t now, proto::Record* record);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};
std::string RecordToJson(const proto::Record& record);
// The "values" array of the JSON API for `values` (same value shape as RecordToJson).
// With `api_formats`, HS_SITE values are written in the "site" format and HS_PUBKEY in the "key"
// format (JWK-like), as the JSON API shows them; otherwise as base64 (lossless, for export).
std::string ValuesToJson(const google::protobuf::RepeatedPtrField<proto::Value>& values,
                         bool api_formats = false);
// An HS_SITE record in the API's "site" JSON shape; nullopt-like empty string if it does not
// decode.
std::string SiteToJson(std::span<const uint8_t> site_data);
// Re-indents compact JSON text with two spaces (the API's `pretty` parameter).
std::string PrettyJson(std::string_view compact);

// ISO-8601 UTC ("2026-11-25T17:16:47Z") <-> Unix seconds.
std::string FormatIsoTime(uint32_t seconds);
bool ParseIsoTime(std::string_view text, uint32_t* seconds);

}  // namespace idnode::registry
