// auth/: who may change what (HANDLE.md §1.10, "Admin authorization"), and the challenges this
// node has issued and not yet seen answered.
//
// Authorizer: stateless over the registry; shared by all threads (it only reads). ChallengeTable
// and FailureThrottle: owned by the application, shared by the storage threads that run admin
// requests; one mutex each, because admin traffic is rare next to resolutions and never on the
// resolution path.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
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

  // Whether `identity` is one of the server admins (auth.server_admins).
  bool IsServerAdmin(const Identity& identity) const;

  const AuthOptions& options() const { return options_; }

 private:
  bool AdminValuesGrant(const Identity& identity, const proto::Record& record, uint16_t permission,
                        int* lookups) const;
  bool IsMember(const Identity& identity, std::string_view handle, int32_t index, int depth,
                int* lookups) const;

  const registry::Registry& registry_;
  AuthOptions options_;
};

// Where an admin request or a challenge answer came from.
struct Origin {
  bool datagram = false;              // UDP: the source address may be forged
  std::array<uint8_t, 16> address{};  // the source IP; IPv4 as ::ffff:a.b.c.d
  bool operator==(const Origin&) const = default;
};

// A 402 challenge waiting for its OC 200 answer.
struct PendingChallenge {
  uint32_t session_id = 0;
  std::array<uint8_t, 16> nonce{};
  protocol::DigestValue digest;              // of the original request, as the 402 carried it
  protocol::ProtocolVersion version{2, 11};  // of the 402 (below 2.1: legacy secret-key answers)
  std::vector<uint8_t> request;              // the original request message, run once answered
  Origin origin;                             // where the request came from
  std::chrono::steady_clock::time_point expires;
};

class ChallengeTable {
 public:
  ChallengeTable(size_t max_entries, size_t max_bytes, std::chrono::milliseconds ttl);

  // A random non-zero session id for a request that came without one.
  uint32_t NewSessionId();
  // A fresh random nonce.
  static std::array<uint8_t, 16> NewNonce();

  // Remembers a challenge until now + ttl; a full table makes room by dropping the oldest
  // challenge that may give way (HARDENING.md #27: an unauthenticated flood costs bounded memory
  // and never refuses service for longer than it takes a client to answer):
  //  - a session keeps at most kMaxPerSession, a source address max_per_source(): past that the
  //    oldest of the same session or source gives way, so one client cannot push out the others;
  //  - challenges issued over UDP, whose sources and session ids can be forged, hold at most half
  //    of the entries and bytes and only ever push out other UDP challenges: a spoofed flood
  //    cannot touch the challenges of TCP clients.
  // False when no challenge may give way (a UDP challenge where only TCP ones could), or the
  // challenge alone is larger than the table's share for it.
  [[nodiscard]] bool Add(PendingChallenge challenge, std::chrono::steady_clock::time_point now);
  // Removes and returns the oldest unexpired challenge of `session_id` issued to the address
  // `from` answers from (any port, either transport): clients answer the challenges of one
  // session in the order they were issued, and an answer from elsewhere leaves them waiting.
  std::optional<PendingChallenge> Take(uint32_t session_id, const Origin& from,
                                       std::chrono::steady_clock::time_point now);
  size_t size() const;
  std::chrono::milliseconds ttl() const { return ttl_; }
  size_t max_per_source() const { return max_per_source_; }

  static constexpr size_t kMaxPerSession = 16;

 private:
  using Address = std::array<uint8_t, 16>;
  // Removes one challenge from the table and every index.
  std::optional<PendingChallenge> Extract(uint64_t seq);
  void DropExpired(std::chrono::steady_clock::time_point now);
  // Drops the oldest entry among `seqs` (oldest first; only a UDP one if `datagram_only`), if
  // there is one.
  bool DropOldestOf(const std::deque<uint64_t>& seqs, bool datagram_only);

  const size_t max_entries_;
  const size_t max_bytes_;
  const size_t max_per_source_;
  const std::chrono::milliseconds ttl_;
  mutable std::mutex mutex_;
  uint64_t next_seq_ = 0;
  // Every challenge by issue order (also expiry order: one ttl), and indexes of their sequence
  // numbers, oldest first, by session, by source address and for those issued over UDP.
  std::map<uint64_t, PendingChallenge> by_seq_;
  std::unordered_map<uint32_t, std::deque<uint64_t>> by_session_;
  std::map<Address, std::deque<uint64_t>> by_source_;
  std::deque<uint64_t> datagram_seqs_;
  size_t bytes_ = 0;
  size_t datagram_bytes_ = 0;
};

// Failed proofs of identity (wrong MACs or signatures, in OC 200 answers and OC 201 requests),
// counted over one-minute windows (HARDENING.md #28 and row M), so that nobody guesses a secret
// through this node faster than a few tries a minute, and nobody locks out a real admin cheaply:
//  - per key (index:handle) and source address: past `limit` failures, that source's proofs for
//    that key are refused unchecked for the rest of the window;
//  - per source address over all keys: past `limit`, all its proofs are refused (one address
//    cannot guess many keys either);
//  - per key over all sources: past `key_limit` (far above `limit`), the key's proofs are refused
//    from every source except those that proved the key in the last `trust_period`, so that a
//    distributed guessing attack is capped without locking out the admins who use the key.
// So one address gets `limit` guesses a minute at a key; locking a key for others takes
// key_limit / limit addresses that each fail `limit` times, and never locks out an address that
// has recently proved the key. Proofs sent over UDP, whose source may be forged, are counted per
// key apart (limit, not trusted): a spoofed flood can lock a key's UDP proofs, never a TCP client.
// Every map is bounded (max_tracked per kind; when full, finished windows go first, then
// arbitrary ones).
class FailureThrottle {
 public:
  FailureThrottle(uint32_t limit, uint32_t key_limit = 0, size_t max_tracked = 65536,
                  std::chrono::seconds window = std::chrono::seconds(60),
                  std::chrono::seconds trust_period = std::chrono::hours(24));

  // Whether a proof for `identity` from `from` may be checked now (limit 0: always).
  bool Allowed(const Identity& identity, const Origin& from,
               std::chrono::steady_clock::time_point now) const;
  void Failed(const Identity& identity, const Origin& from,
              std::chrono::steady_clock::time_point now);
  // A proof for `identity` from `from` was right: that source is trusted for the key.
  void Succeeded(const Identity& identity, const Origin& from,
                 std::chrono::steady_clock::time_point now);
  uint32_t key_limit() const { return key_limit_; }

 private:
  struct Window {
    std::chrono::steady_clock::time_point start;
    uint32_t failures = 0;
  };
  struct Counters {
    std::unordered_map<std::string, Window> windows;
    std::chrono::steady_clock::time_point last_sweep{};
    auto find(const std::string& key) const { return windows.find(key); }
    auto end() const { return windows.end(); }
  };
  static std::string KeyOf(const Identity& identity);
  bool Under(const Counters& counters, const std::string& key, uint32_t limit,
             std::chrono::steady_clock::time_point now) const;
  void Count(Counters& counters, std::string key, std::chrono::steady_clock::time_point now);
  bool Trusted(const std::string& key_and_source, std::chrono::steady_clock::time_point now) const;

  const uint32_t limit_;
  const uint32_t key_limit_;
  const size_t max_tracked_;
  const std::chrono::seconds window_;
  const std::chrono::seconds trust_period_;
  mutable std::mutex mutex_;
  Counters by_key_source_;  // TCP proofs
  Counters by_source_;      // TCP proofs
  Counters by_key_;         // TCP proofs, all sources
  Counters udp_by_key_;     // UDP proofs
  // key + source -> when that source last proved the key (bounded by max_tracked).
  std::unordered_map<std::string, std::chrono::steady_clock::time_point> trusted_;
};

}  // namespace idnode::auth
