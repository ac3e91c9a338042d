// auth/: who may change what (HANDLE.md §1.10, "Admin authorization"), and the challenges this
// node has issued and not yet seen answered.
//
// Authorizer: stateless over the registry; shared by all threads (it only reads). ChallengeTable:
// owned by the Handle admin service, shared by the storage threads that run admin requests; one
// mutex, because admin traffic is rare next to resolutions and never on the resolution path.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "idnode/auth/credentials.h"
#include "idnode/protocol/constants.h"
#include "idnode/protocol/digest.h"
#include "idnode/protocol/version.h"
#include "idnode/registry/registry.h"

namespace idnode::auth {

struct AuthOptions {
  // Identities with every permission on every handle this node homes (CNRI's server_admins).
  std::vector<Identity> server_admins;
  // Whether the admins named by the HS_ADMIN values of a prefix handle 0.NA/P may administer
  // every handle under P (CNRI's allow_na_admins; creating a handle always asks the prefix).
  bool allow_prefix_admins = true;
};

// HS_VLIST groups may nest; these bound the work one authorization can cause.
inline constexpr int kMaxGroupDepth = 4;
inline constexpr int kMaxGroupLookups = 64;

struct KeyLookup {
  protocol::ResponseCode code = protocol::ResponseCode::kSuccess;
  std::string message;  // why, when code is not success
  std::string data;     // the key value's data
};

class Authorizer {
 public:
  Authorizer(const registry::Registry& registry, AuthOptions options);

  // The data of the value at identity.index of identity.handle if it has type `auth_type`
  // (HS_PUBKEY or HS_SECKEY). RC_AUTHEN_ERROR when the identity's handle does not live here
  // (this node cannot ask another server to verify); RC_AUTHENTICATION_FAILED when it has no such
  // key value.
  KeyLookup FindKey(const Identity& identity, std::string_view auth_type) const;

  // Whether `identity` holds `permission` (protocol::admin_permission) over `handle`, whose
  // current record is `record` (nullptr when it does not exist yet): it is a server admin, or an
  // HS_ADMIN value of the record with that permission names it (directly or through HS_VLIST
  // groups), or (allow_prefix_admins) such a value of the handle's prefix handle does.
  bool IsAuthorized(const Identity& identity, std::string_view handle, const proto::Record* record,
                    uint16_t permission) const;

  const AuthOptions& options() const { return options_; }

 private:
  bool AdminValuesGrant(const Identity& identity, const proto::Record& record, uint16_t permission,
                        int* lookups) const;
  bool IsMember(const Identity& identity, std::string_view handle, int32_t index, int depth,
                int* lookups) const;

  const registry::Registry& registry_;
  AuthOptions options_;
};

// A 402 challenge waiting for its OC 200 answer.
struct PendingChallenge {
  uint32_t session_id = 0;
  std::array<uint8_t, 16> nonce{};
  protocol::DigestValue digest;              // of the original request, as the 402 carried it
  protocol::ProtocolVersion version{2, 11};  // of the 402 (below 2.1: legacy secret-key answers)
  std::vector<uint8_t> request;              // the original request message, run once answered
  std::chrono::steady_clock::time_point expires;
};

class ChallengeTable {
 public:
  ChallengeTable(size_t max_entries, size_t max_bytes, std::chrono::milliseconds ttl);

  // A random non-zero session id for a request that came without one.
  uint32_t NewSessionId();
  // A fresh random nonce.
  static std::array<uint8_t, 16> NewNonce();

  // Remembers a challenge until now + ttl. False when the table is full even after dropping
  // expired entries (the caller answers RC_SERVER_TOO_BUSY); at most kMaxPerSession wait per
  // session id, the oldest giving way.
  [[nodiscard]] bool Add(PendingChallenge challenge, std::chrono::steady_clock::time_point now);
  // Removes and returns the oldest unexpired challenge of `session_id`: clients answer the
  // challenges of one session in the order they were issued.
  std::optional<PendingChallenge> Take(uint32_t session_id,
                                       std::chrono::steady_clock::time_point now);
  size_t size() const;
  std::chrono::milliseconds ttl() const { return ttl_; }

  static constexpr size_t kMaxPerSession = 16;

 private:
  void DropExpired(std::chrono::steady_clock::time_point now);

  const size_t max_entries_;
  const size_t max_bytes_;
  const std::chrono::milliseconds ttl_;
  mutable std::mutex mutex_;
  std::unordered_map<uint32_t, std::deque<PendingChallenge>> by_session_;
  size_t entries_ = 0;
  size_t bytes_ = 0;
};

}  // namespace idnode::auth
