#include "idnode/replication/subscription.h"

#include <algorithm>

#include "idnode/identifier/identifier.h"

namespace idnode::replication {

namespace {

constexpr size_t kMaxPrefixes = 10000;
constexpr size_t kMaxPrefixBytes = 128;

bool ValidPrefix(std::string_view p) {
  if (p.empty() || p.size() > kMaxPrefixBytes || p.front() == '.' || p.back() == '.') return false;
  for (char ch : p) {
    if (ch == '/' || static_cast<unsigned char>(ch) < 0x21 || ch == 0x7f) return false;
  }
  return true;
}

}  // namespace

Subscription Subscription::Everything() {
  Subscription s;
  s.everything_ = true;
  return s;
}

Result<Subscription, std::string> Subscription::Of(const std::vector<std::string>& prefixes) {
  if (prefixes.empty()) return Failure{std::string("no prefixes")};
  if (prefixes.size() > kMaxPrefixes)
    return Failure{"more than " + std::to_string(kMaxPrefixes) + " prefixes"};
  std::vector<std::string> normalized;
  normalized.reserve(prefixes.size());
  for (const auto& p : prefixes) {
    if (!ValidPrefix(p)) return Failure{"\"" + p.substr(0, kMaxPrefixBytes) + "\" is not a prefix"};
    normalized.push_back(identifier::Normalize(p));
  }
  std::sort(normalized.begin(), normalized.end());
  normalized.erase(std::unique(normalized.begin(), normalized.end()), normalized.end());
  Subscription s;
  for (const auto& p : normalized) {
    // Sorted, so an ancestor ("88") comes before what derives from it ("88.100"); but "88.1"
    // sorts after "88.100": check against every kept prefix.
    bool folded = std::any_of(s.prefixes_.begin(), s.prefixes_.end(), [&](const std::string& kept) {
      return identifier::IsAtOrUnder(p, kept);
    });
    if (!folded) {
      std::erase_if(s.prefixes_,
                    [&](const std::string& kept) { return identifier::IsAtOrUnder(kept, p); });
      s.prefixes_.push_back(p);
    }
  }
  std::sort(s.prefixes_.begin(), s.prefixes_.end());
  return s;
}

bool Subscription::CoversPrefix(std::string_view prefix) const {
  if (everything_) return true;
  for (const auto& p : prefixes_) {
    if (identifier::IsAtOrUnder(prefix, p)) return true;
  }
  return false;
}

Subscription Subscription::ShareOfServer(uint32_t count, uint32_t index) const {
  Subscription s = *this;
  s.site_servers_ = count > 1 ? count : 0;
  s.site_server_ = count > 1 ? index : 0;
  return s;
}

bool Subscription::InShare(std::string_view key) const {
  // The site hash of the whole handle, as the servers of the site divide their identifiers
  // (registry::Registry::HashedToServer): the same fold of the one negative hash.
  return site_servers_ <= 1 || identifier::IsPrefixHandle(key) ||
         identifier::ShardOf(key, site_servers_) == site_server_;
}

bool Subscription::Covers(std::string_view key) const {
  if (everything_) return InShare(key);
  for (const auto& p : prefixes_) {
    if (identifier::HeldUnderPrefix(key, p)) return InShare(key);
  }
  return false;
}

bool Subscription::Contains(const Subscription& other) const {
  if (everything_) return true;
  if (other.everything_) return false;
  for (const auto& p : other.prefixes_) {
    // 0.NA's coverage (every prefix handle) is only within 0.NA's.
    if (!CoversPrefix(p)) return false;
  }
  return true;
}

std::vector<std::pair<std::string, std::string>> Subscription::KeyRanges() const {
  std::vector<std::pair<std::string, std::string>> ranges;
  if (everything_) {
    ranges.emplace_back("", "");
    return ranges;
  }
  for (const auto& p : prefixes_) {
    for (auto& range : identifier::KeyRangesUnderPrefix(p)) ranges.push_back(std::move(range));
  }
  std::sort(ranges.begin(), ranges.end());
  // Merge overlaps ("0.NA" covers the prefix-handle ranges of the others).
  std::vector<std::pair<std::string, std::string>> merged;
  for (auto& r : ranges) {
    if (!merged.empty() && r.first < merged.back().second) {
      merged.back().second = std::max(merged.back().second, r.second);
    } else {
      merged.push_back(std::move(r));
    }
  }
  return merged;
}

std::string Subscription::ToString() const {
  std::string out = everything_ ? "*" : "";
  for (const auto& p : prefixes_) out += (out.empty() ? "" : ",") + p;
  if (site_servers_ > 1) {
    out += " (server " + std::to_string(site_server_) + " of " + std::to_string(site_servers_) +
           " by the site hash)";
  }
  return out;
}

}  // namespace idnode::replication
