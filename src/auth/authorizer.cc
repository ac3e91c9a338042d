#include "idnode/auth/authorizer.h"

#include <openssl/rand.h>

#include <algorithm>

#include "idnode/identifier/identifier.h"
#include "idnode/protocol/value_types.h"

namespace idnode::auth {

using protocol::ResponseCode;

namespace {

using identifier::SameIgnoringAsciiCase;
using registry::TypeMatches;

std::span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace

Authorizer::Authorizer(const registry::Registry& registry, AuthOptions options)
    : registry_(registry), options_(std::move(options)) {}

KeyLookup Authorizer::FindKey(const Identity& identity, std::string_view auth_type) const {
  KeyLookup out;
  if (!registry_.OnThisServer(identifier::Normalize(identity.handle))) {
    // On a site of several servers each holds a share of the identities too; this server
    // verifies only those it holds (README "A multi-server site").
    out.code = ResponseCode::kAuthenticationError;
    out.message = "identity " + identity.ToString() +
                  " is held by another server of this site: use an identity held in the prefix "
                  "handle (0.NA/...), which every server holds";
    return out;
  }
  if (!registry_.HoldsData(identity.handle)) {
    // CNRI would ask the identity's own server (OC_VERIFY_CHALLENGE); this node verifies only
    // identities it holds.
    out.code = ResponseCode::kAuthenticationError;
    out.message = "identity " + identity.ToString() + " is not held by this node";
    return out;
  }
  registry::Filter filter;
  filter.indexes.push_back(identity.index);
  auto got = registry_.Get(identity.handle, filter);
  for (const auto& v : got.record.values()) {
    if (got.code == ResponseCode::kSuccess && v.index() == identity.index &&
        SameIgnoringAsciiCase(v.type(), auth_type)) {
      out.data = v.data();
      return out;
    }
  }
  out.code = ResponseCode::kAuthenticationFailed;
  out.message = "no " + std::string(auth_type) + " value at " + identity.ToString();
  return out;
}

bool Authorizer::IsServerAdmin(const Identity& identity) const {
  for (const auto& admin : options_.server_admins) {
    if (admin.index == identity.index && SameIgnoringAsciiCase(admin.handle, identity.handle))
      return true;
  }
  return false;
}

bool Authorizer::IsAuthorized(const Identity& identity, std::string_view handle,
                              const proto::Record* record, uint16_t permission) const {
  if (IsServerAdmin(identity)) return true;
  int lookups = 0;
  if (record != nullptr && AdminValuesGrant(identity, *record, permission, &lookups)) return true;
  if (!options_.allow_prefix_admins && record != nullptr) return false;
  // Creation is always authorized by the prefix; other operations by it when allowed.
  std::string prefix_handle = identifier::PrefixHandleFor(identifier::PrefixOf(handle));
  if (SameIgnoringAsciiCase(prefix_handle, handle)) return false;
  auto prefix = registry_.Get(prefix_handle);
  return prefix.code == ResponseCode::kSuccess &&
         AdminValuesGrant(identity, prefix.record, permission, &lookups);
}

bool Authorizer::AdminValuesGrant(const Identity& identity, const proto::Record& record,
                                  uint16_t permission, int* lookups) const {
  for (const auto& v : record.values()) {
    if (!TypeMatches(protocol::kTypeAdmin, v.type())) continue;
    auto admin = protocol::DecodeAdminRecord(Bytes(v.data()));
    if (!admin.ok() || (admin->permissions & permission) != permission) continue;
    if (IsMember(identity, admin->admin_handle, admin->admin_index, kMaxGroupDepth, lookups)) {
      return true;
    }
  }
  return false;
}

// Whether the reference (handle, index) names `identity`: itself (index 0 standing for any
// index), or an HS_VLIST value there that lists it, directly or through nested lists.
bool Authorizer::IsMember(const Identity& identity, std::string_view handle, int32_t index,
                          int depth, int* lookups) const {
  if (SameIgnoringAsciiCase(handle, identity.handle) && (index == 0 || index == identity.index))
    return true;
  if (depth == 0 || ++*lookups > kMaxGroupLookups) return false;
  auto got = registry_.Get(handle);
  if (got.code != ResponseCode::kSuccess) return false;
  for (const auto& v : got.record.values()) {
    if ((index != 0 && v.index() != index) || !TypeMatches(protocol::kTypeValueList, v.type())) {
      continue;
    }
    auto members = protocol::DecodeValueList(Bytes(v.data()));
    if (!members.ok()) continue;
    for (const auto& m : *members) {
      if (IsMember(identity, m.handle, m.index, depth - 1, lookups)) return true;
    }
  }
  return false;
}

// ---- challenges ----

ChallengeTable::ChallengeTable(size_t max_entries, size_t max_bytes, std::chrono::milliseconds ttl)
    : max_entries_(std::max<size_t>(1, max_entries)),
      max_bytes_(max_bytes),
      max_per_source_(std::max<size_t>(kMaxPerSession, max_entries / 16)),
      ttl_(ttl) {}

uint32_t ChallengeTable::NewSessionId() {
  uint32_t id = 0;
  while (id == 0) {
    if (RAND_bytes(reinterpret_cast<unsigned char*>(&id), sizeof id) != 1) id = 0;
    id &= 0x7fffffff;  // a positive Java int, as CNRI's session ids are
  }
  return id;
}

std::array<uint8_t, 16> ChallengeTable::NewNonce() {
  std::array<uint8_t, 16> nonce{};
  // RAND_bytes only fails when the CSPRNG cannot be seeded, which OpenSSL 3 treats as fatal at
  // startup; a zero nonce would still be unique per challenge table entry, not secret.
  (void)RAND_bytes(nonce.data(), static_cast<int>(nonce.size()));
  return nonce;
}

bool ChallengeTable::Add(PendingChallenge challenge, std::chrono::steady_clock::time_point now) {
  std::lock_guard lock(mutex_);
  const size_t size = challenge.request.size();
  const bool datagram = challenge.origin.datagram;
  const size_t entry_share = datagram ? std::max<size_t>(1, max_entries_ / 2) : max_entries_;
  const size_t byte_share = datagram ? max_bytes_ / 2 : max_bytes_;
  if (size > byte_share) return false;
  DropExpired(now);
  // A session or a source at its cap makes room from its own challenges; a UDP challenge (its
  // source and session id may be forged) only from its own UDP ones, or it is refused.
  if (auto it = by_session_.find(challenge.session_id); it != by_session_.end() &&
                                                        it->second.size() >= kMaxPerSession &&
                                                        !DropOldestOf(it->second, datagram)) {
    return false;
  }
  if (auto it = by_source_.find(challenge.origin.address); it != by_source_.end() &&
                                                           it->second.size() >= max_per_source_ &&
                                                           !DropOldestOf(it->second, datagram)) {
    return false;
  }
  if (datagram) {
    while ((datagram_seqs_.size() >= entry_share || datagram_bytes_ + size > byte_share) &&
           DropOldestOf(datagram_seqs_, false)) {
    }
  }
  while (by_seq_.size() >= max_entries_ || bytes_ + size > max_bytes_) {
    // Full: UDP challenges give way first; only a TCP challenge may push out a TCP one.
    if (DropOldestOf(datagram_seqs_, false)) continue;
    if (datagram || by_seq_.empty()) return false;
    Extract(by_seq_.begin()->first);
  }
  const uint64_t seq = next_seq_++;
  challenge.expires = now + ttl_;
  by_session_[challenge.session_id].push_back(seq);
  by_source_[challenge.origin.address].push_back(seq);
  if (datagram) {
    datagram_seqs_.push_back(seq);
    datagram_bytes_ += size;
  }
  bytes_ += size;
  by_seq_.emplace(seq, std::move(challenge));
  return true;
}

std::optional<PendingChallenge> ChallengeTable::Take(uint32_t session_id, const Origin& from,
                                                     std::chrono::steady_clock::time_point now) {
  std::lock_guard lock(mutex_);
  DropExpired(now);
  auto it = by_session_.find(session_id);
  if (it == by_session_.end()) return std::nullopt;
  for (uint64_t seq : it->second) {
    auto entry = by_seq_.find(seq);
    if (entry != by_seq_.end() && entry->second.expires > now &&
        entry->second.origin.address == from.address) {
      return Extract(seq);  // returns at once: the loop does not go on over the changed deque
    }
  }
  return std::nullopt;
}

size_t ChallengeTable::size() const {
  std::lock_guard lock(mutex_);
  return by_seq_.size();
}

namespace {

void EraseSeq(std::deque<uint64_t>& seqs, uint64_t seq) {
  if (!seqs.empty() && seqs.front() == seq) {
    seqs.pop_front();  // the common case: the oldest goes
    return;
  }
  auto it = std::find(seqs.begin(), seqs.end(), seq);
  if (it != seqs.end()) seqs.erase(it);
}

}  // namespace

std::optional<PendingChallenge> ChallengeTable::Extract(uint64_t seq) {
  auto it = by_seq_.find(seq);
  if (it == by_seq_.end()) return std::nullopt;
  PendingChallenge challenge = std::move(it->second);
  by_seq_.erase(it);
  if (auto s = by_session_.find(challenge.session_id); s != by_session_.end()) {
    EraseSeq(s->second, seq);
    if (s->second.empty()) by_session_.erase(s);
  }
  if (auto s = by_source_.find(challenge.origin.address); s != by_source_.end()) {
    EraseSeq(s->second, seq);
    if (s->second.empty()) by_source_.erase(s);
  }
  bytes_ -= challenge.request.size();
  if (challenge.origin.datagram) {
    EraseSeq(datagram_seqs_, seq);
    datagram_bytes_ -= challenge.request.size();
  }
  return challenge;
}

bool ChallengeTable::DropOldestOf(const std::deque<uint64_t>& seqs, bool datagram_only) {
  for (uint64_t seq : seqs) {
    auto it = by_seq_.find(seq);
    if (it == by_seq_.end() || (datagram_only && !it->second.origin.datagram)) continue;
    Extract(seq);  // `seqs` may be freed by it: return at once
    return true;
  }
  return false;
}

void ChallengeTable::DropExpired(std::chrono::steady_clock::time_point now) {
  // One ttl for all: issue order is expiry order.
  while (!by_seq_.empty() && by_seq_.begin()->second.expires <= now) {
    Extract(by_seq_.begin()->first);
  }
}

FailureThrottle::FailureThrottle(uint32_t limit, uint32_t key_limit, size_t max_tracked,
                                 std::chrono::seconds window, std::chrono::seconds trust_period)
    : limit_(limit),
      key_limit_(key_limit != 0 ? key_limit : limit * 20),
      max_tracked_(std::max<size_t>(1, max_tracked)),
      window_(window),
      trust_period_(trust_period) {}

std::string FailureThrottle::KeyOf(const Identity& identity) {
  // Handles compare without ASCII case: 300:0.NA/X and 300:0.na/x are one key.
  return std::to_string(identity.index) + ":" + identifier::Normalize(identity.handle);
}

namespace {

// An IPv4 address, or an IPv6 /64 (one subscriber's usual share: counting /128s would give each
// of its 2^64 addresses a budget of its own).
std::string SourceKey(const Origin& from) {
  const bool v4 = std::all_of(from.address.begin(), from.address.begin() + 10,
                              [](uint8_t b) { return b == 0; }) &&
                  from.address[10] == 0xff && from.address[11] == 0xff;
  return std::string(reinterpret_cast<const char*>(from.address.data()), v4 ? 16 : 8);
}

}  // namespace

bool FailureThrottle::Under(const Counters& counters, const std::string& key, uint32_t limit,
                            std::chrono::steady_clock::time_point now) const {
  auto it = counters.find(key);
  return it == counters.end() || now - it->second.start >= window_ || it->second.failures < limit;
}

bool FailureThrottle::Trusted(const std::string& key_and_source,
                              std::chrono::steady_clock::time_point now) const {
  auto it = trusted_.find(key_and_source);
  return it != trusted_.end() && now - it->second < trust_period_;
}

bool FailureThrottle::Allowed(const Identity& identity, const Origin& from,
                              std::chrono::steady_clock::time_point now) const {
  if (limit_ == 0) return true;
  std::lock_guard lock(mutex_);
  const std::string key = KeyOf(identity);
  if (from.datagram) return Under(udp_by_key_, key, limit_, now);
  const std::string source = SourceKey(from);
  const std::string key_and_source = key + '\0' + source;
  if (!Under(by_key_source_, key_and_source, limit_, now) ||
      !Under(by_source_, source, limit_, now))
    return false;
  return Under(by_key_, key, key_limit_, now) || Trusted(key_and_source, now);
}

void FailureThrottle::Count(Counters& counters, std::string key,
                            std::chrono::steady_clock::time_point now) {
  auto it = counters.windows.find(key);
  if (it == counters.windows.end()) {
    if (counters.windows.size() >= max_tracked_) {
      // Finished windows go first (a full sweep at most every quarter window, so that a flood of
      // new sources costs O(1) each); then an arbitrary counter.
      if (now - counters.last_sweep >= window_ / 4) {
        counters.last_sweep = now;
        std::erase_if(counters.windows,
                      [&](const auto& kv) { return now - kv.second.start >= window_; });
      }
      if (counters.windows.size() >= max_tracked_) counters.windows.erase(counters.windows.begin());
    }
    it = counters.windows.emplace(std::move(key), Window{now, 0}).first;
  } else if (now - it->second.start >= window_) {
    it->second = Window{now, 0};
  }
  ++it->second.failures;
}

void FailureThrottle::Failed(const Identity& identity, const Origin& from,
                             std::chrono::steady_clock::time_point now) {
  if (limit_ == 0) return;
  std::lock_guard lock(mutex_);
  const std::string key = KeyOf(identity);
  if (from.datagram) {
    Count(udp_by_key_, key, now);
    return;
  }
  const std::string source = SourceKey(from);
  Count(by_key_source_, key + '\0' + source, now);
  Count(by_source_, source, now);
  Count(by_key_, key, now);
}

void FailureThrottle::Succeeded(const Identity& identity, const Origin& from,
                                std::chrono::steady_clock::time_point now) {
  if (limit_ == 0 || from.datagram) return;
  std::lock_guard lock(mutex_);
  std::string key_and_source = KeyOf(identity) + '\0' + SourceKey(from);
  auto it = trusted_.find(key_and_source);
  if (it == trusted_.end() && trusted_.size() >= max_tracked_) {
    std::erase_if(trusted_, [&](const auto& kv) { return now - kv.second >= trust_period_; });
    if (trusted_.size() >= max_tracked_) trusted_.erase(trusted_.begin());
  }
  trusted_[std::move(key_and_source)] = now;
}

}  // namespace idnode::auth
