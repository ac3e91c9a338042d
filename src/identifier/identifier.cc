#include "idnode/identifier/identifier.h"

#include <openssl/evp.h>

#include <array>
#include <climits>

namespace idnode::identifier {

namespace {

constexpr size_t kMaxHandleLength = 2048;

char Upper(char c) {
  return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
}

}  // namespace

HandleParts Split(std::string_view handle) {
  size_t slash = handle.find('/');
  if (slash == std::string_view::npos) return {handle, {}, false};
  return {handle.substr(0, slash), handle.substr(slash + 1), true};
}

std::string Normalize(std::string_view handle) {
  std::string out(handle);
  NormalizeInPlace(out);
  return out;
}

void NormalizeInPlace(std::string& handle) {
  for (char& c : handle) c = Upper(c);
}

bool SameIgnoringAsciiCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (Upper(a[i]) != Upper(b[i])) return false;
  }
  return true;
}

bool IsPrefixHandle(std::string_view handle) {
  if (handle.size() < kPrefixHandlePrefix.size()) return false;
  for (size_t i = 0; i < kPrefixHandlePrefix.size(); ++i) {
    if (Upper(handle[i]) != kPrefixHandlePrefix[i]) return false;
  }
  return true;
}

std::string PrefixHandleFor(std::string_view prefix) {
  std::string out(kPrefixHandlePrefix);
  out.append(prefix);
  return out;
}

std::string_view PrefixOf(std::string_view handle) {
  return Split(handle).prefix;
}

int32_t SiteHash(std::string_view text) {
  std::array<char, 256> small;
  std::string large;
  char* upper = small.data();
  if (text.size() > small.size()) {
    large.resize(text.size());
    upper = large.data();
  }
  for (size_t i = 0; i < text.size(); ++i) upper[i] = Upper(text[i]);
  // Fetching the algorithm and making a context on every call costs more than hashing a handle
  // (OpenSSL 3's implicit fetch): fetch once, keep one context per thread.
  static EVP_MD* const md5 = EVP_MD_fetch(nullptr, "MD5", nullptr);
  struct ContextHolder {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    ~ContextHolder() { EVP_MD_CTX_free(ctx); }
  };
  thread_local ContextHolder holder;
  std::array<uint8_t, EVP_MAX_MD_SIZE> md{};
  unsigned int md_len = 0;
  if (md5 == nullptr || holder.ctx == nullptr || EVP_DigestInit_ex(holder.ctx, md5, nullptr) != 1 ||
      EVP_DigestUpdate(holder.ctx, upper, text.size()) != 1 ||
      EVP_DigestFinal_ex(holder.ctx, md.data(), &md_len) != 1 || md_len != 16) {
    return 0;
  }
  return SiteHashOfMd5(std::span<const uint8_t, 16>(md.data(), 16));
}

int32_t SiteHashOfMd5(std::span<const uint8_t, 16> md5) {
  int32_t hash = static_cast<int32_t>(uint32_t{md5[12]} << 24 | uint32_t{md5[13]} << 16 |
                                      uint32_t{md5[14]} << 8 | uint32_t{md5[15]});
  if (hash != INT32_MIN && hash < 0) hash = -hash;  // Java's Math.abs: abs(INT_MIN) == INT_MIN
  return hash;
}

uint32_t ShardOfHash(int32_t hash, uint32_t shard_count) {
  if (shard_count <= 1) return 0;
  int32_t index = hash % static_cast<int32_t>(shard_count);
  if (index < 0) index += static_cast<int32_t>(shard_count);
  return static_cast<uint32_t>(index);
}

uint32_t ShardOf(std::string_view handle, uint32_t shard_count) {
  if (shard_count <= 1) return 0;
  return ShardOfHash(SiteHash(handle), shard_count);
}

bool IsValidHandle(std::string_view handle) {
  if (handle.empty() || handle.size() > kMaxHandleLength) return false;
  HandleParts parts = Split(handle);
  if (!parts.has_slash || parts.prefix.empty() || parts.suffix.empty()) return false;
  for (char c : handle) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return false;
  }
  return true;
}

bool IsAtOrUnder(std::string_view prefix, std::string_view ancestor) {
  if (!prefix.starts_with(ancestor)) return false;
  return prefix.size() == ancestor.size() || prefix[ancestor.size()] == '.';
}

bool HeldUnderPrefix(std::string_view key, std::string_view prefix) {
  constexpr std::string_view kZeroNa = "0.NA";
  if (IsPrefixHandle(key)) {
    if (prefix == kZeroNa) return true;
    std::string_view held = key.substr(kPrefixHandlePrefix.size());
    return IsAtOrUnder(held, prefix) && held.size() > prefix.size();
  }
  return IsAtOrUnder(PrefixOf(key), prefix);
}

std::vector<std::pair<std::string, std::string>> KeyRangesUnderPrefix(std::string_view prefix) {
  // P/x and P.y/x: '.' and '/' are adjacent bytes, so [P".", P"0") holds exactly the keys that
  // begin with P"." or P"/"; the derived prefixes' handles are ["0.NA/"P".", "0.NA/"P"/").
  std::string p(prefix);
  std::vector<std::pair<std::string, std::string>> ranges{{p + ".", p + "0"}};
  if (prefix != "0.NA") {
    std::string handles = std::string(kPrefixHandlePrefix) + p;
    ranges.emplace_back(handles + ".", handles + "/");
  }
  return ranges;
}

}  // namespace idnode::identifier
