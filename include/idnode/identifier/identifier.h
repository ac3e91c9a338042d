// Identifiers: Handle syntax (prefix "/" suffix), prefix handles ("0.NA/<prefix>"), normalisation
// and the site hash that picks a server inside a site and a shard inside a node.
// Pure functions on strings; any thread.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace idnode::identifier {

inline constexpr std::string_view kPrefixHandlePrefix = "0.NA/";

struct HandleParts {
  std::string_view prefix;  // before the first '/', or the whole handle if it has none
  std::string_view suffix;  // after the first '/', empty if none
  bool has_slash = false;
};

HandleParts Split(std::string_view handle);

// The stored key of a handle: ASCII letters uppercased, everything else as is. Handles are
// case-insensitive in ASCII in the Handle System (case_sensitive = "no", the GHR policy); the
// record keeps the original spelling.
std::string Normalize(std::string_view handle);
void NormalizeInPlace(std::string& handle);
// Whether a and b are equal once normalised (ASCII case ignored), without allocating: how
// handles, and value types (CNRI's hasType), compare.
bool SameIgnoringAsciiCase(std::string_view a, std::string_view b);

// "0.NA/x" (any case) names the prefix x.
bool IsPrefixHandle(std::string_view handle);
// "0.NA/" + prefix.
std::string PrefixHandleFor(std::string_view prefix);

// The prefix a handle belongs to: for "P/x" it is P; for a prefix handle "0.NA/P" it is P's parent
// prefix "0.NA" (prefix handles live with the node that homes 0.NA, or the node homing P).
std::string_view PrefixOf(std::string_view handle);

// The Handle System's site hash (SiteInfo.getHandleHash): MD5 of the ASCII-uppercased text, its
// last 4 bytes as a signed big-endian int, then Java's Math.abs, under which INT_MIN stays
// negative.
int32_t SiteHash(std::string_view text);
// The same from an MD5 digest already computed: its last 4 bytes, signed big-endian, Math.abs'd.
int32_t SiteHashOfMd5(std::span<const uint8_t, 16> md5);
// The shard of a site hash among `shard_count`, the negative hash (INT_MIN) folded into range.
uint32_t ShardOfHash(int32_t hash, uint32_t shard_count);

// The shard of a handle among `shard_count`: SiteHash of the whole handle modulo the count, the way
// clients pick a server of a multi-server site with hash option "whole handle", so a shard can
// become a server of its own without rehashing. The one hash in 2^32 that stays negative
// (abs(INT_MIN)) is folded into range.
uint32_t ShardOf(std::string_view handle, uint32_t shard_count);

// Whether prefix `prefix` is `ancestor` or derived from it ("88.100.1" under "88.100").
bool IsAtOrUnder(std::string_view prefix, std::string_view ancestor);

// Whether the record stored under `key` belongs to what prefix `prefix` (both normalised) holds
// with its derived prefixes: the identifiers of the prefix and of every prefix derived from it
// (P/x, P.1/x), and the prefix handles of the derived prefixes (0.NA/P.1), which the node that
// homes P administers; not 0.NA/P itself (its parent's). For 0.NA: every prefix handle. What a
// replica of P holds, and what its digest covers.
bool HeldUnderPrefix(std::string_view key, std::string_view prefix);
// Key ranges [begin, end) holding every key HeldUnderPrefix(key, prefix) accepts (and a few it
// does not: check each).
std::vector<std::pair<std::string, std::string>> KeyRangesUnderPrefix(std::string_view prefix);

// Basic validity of a handle for storage: non-empty prefix and suffix, at most 2048 bytes, no
// control characters.
bool IsValidHandle(std::string_view handle);

}  // namespace idnode::identifier
