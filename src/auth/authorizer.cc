#include "idnode/auth/authorizer.h"

#include <openssl/rand.h>

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
  if (!registry_.IsWritable(identity.handle)) {
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

bool Authorizer::IsAuthorized(const Identity& identity, std::string_view handle,
                              const proto::Record* record, uint16_t permission) const {
  for (const auto& admin : options_.server_admins) {
    if (admin.index == identity.index && SameIgnoringAsciiCase(admin.handle, identity.handle))
      return true;
  }
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
    : max_entries_(max_entries), max_bytes_(max_bytes), ttl_(ttl) {}

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
  if (entries_ >= max_entries_ || bytes_ + size > max_bytes_) DropExpired(now);
  if (entries_ >= max_entries_ || bytes_ + size > max_bytes_) return false;
  challenge.expires = now + ttl_;
  auto& queue = by_session_[challenge.session_id];
  if (queue.size() >= kMaxPerSession) {
    bytes_ -= queue.front().request.size();
    --entries_;
    queue.pop_front();
  }
  queue.push_back(std::move(challenge));
  ++entries_;
  bytes_ += size;
  return true;
}

std::optional<PendingChallenge> ChallengeTable::Take(uint32_t session_id,
                                                     std::chrono::steady_clock::time_point now) {
  std::lock_guard lock(mutex_);
  auto it = by_session_.find(session_id);
  if (it == by_session_.end()) return std::nullopt;
  std::optional<PendingChallenge> out;
  auto& queue = it->second;
  while (!queue.empty() && !out) {
    PendingChallenge front = std::move(queue.front());
    queue.pop_front();
    --entries_;
    bytes_ -= front.request.size();
    if (front.expires > now) out = std::move(front);
  }
  if (queue.empty()) by_session_.erase(it);
  return out;
}

size_t ChallengeTable::size() const {
  std::lock_guard lock(mutex_);
  return entries_;
}

void ChallengeTable::DropExpired(std::chrono::steady_clock::time_point now) {
  for (auto it = by_session_.begin(); it != by_session_.end();) {
    auto& queue = it->second;
    while (!queue.empty() && queue.front().expires <= now) {
      bytes_ -= queue.front().request.size();
      --entries_;
      queue.pop_front();
    }
    it = queue.empty() ? by_session_.erase(it) : std::next(it);
  }
}

}  // namespace idnode::auth
