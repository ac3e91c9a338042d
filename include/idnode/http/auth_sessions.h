// http/: the sessions of the JSON API's `Handle` authentication scheme (HANDLE.md §2, the
// handle.net server's StandardHandleAuthenticationFilter). A 401 over HTTPS names a session and a
// nonce (`WWW-Authenticate: Handle sessionId="…", nonce="…"`); the client proves an identity by
// signing nonce ‖ cnonce with its private key (or MACing it with its HS_SECKEY) in
// `Authorization: Handle sessionId=…, id=…, type=…, cnonce=…, alg=…, signature=…`; from then on a
// request that names the session alone (`Authorization: Handle sessionId="…"`) is that identity's.
//
// Bounded: at most `capacity` sessions, `per_source` opened from one client address (IPv6 counted
// per /64), `per_identity` authenticated as one identity. A session not yet authenticated lives
// `challenge_life` (its nonce is only good for that long); an authenticated one ends after `idle`
// without use or `lifetime` after it was opened, whichever comes first. A source at its cap gives
// up its own oldest pending session; a full table gives up the oldest pending session; an identity
// over its cap gives up its oldest authenticated session. Authenticated sessions are never pushed
// out by anyone else's: when the table holds nothing else, Open refuses (the 401 then offers Basic
// only).
//
// Owned by the application (next to the AdminApi); thread-safe (one mutex, held for O(log n)
// work: ended sessions are swept at most kSweepPerCall at a time): called from the HTTP
// event-loop threads (Open, for the 401 answered from a request's head) and from the HTTP storage
// threads (everything else).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "idnode/auth/credentials.h"

namespace idnode::http {

class HttpAuthSessions {
 public:
  using Clock = std::chrono::steady_clock;
  using Source = std::array<uint8_t, 16>;  // a client address; IPv4 as ::ffff:a.b.c.d
  static constexpr size_t kNonceBytes = 16;
  static constexpr size_t kSweepPerCall = 64;

  struct Limits {
    size_t capacity = 16384;
    size_t per_source = 256;
    size_t per_identity = 64;
    std::chrono::seconds challenge_life{120};
    std::chrono::seconds idle{600};
    std::chrono::seconds lifetime{3600};
  };

  struct Challenge {
    std::string session_id;  // 32 lower-case hex digits (128 random bits)
    std::array<uint8_t, kNonceBytes> nonce{};
  };
  // What a session proved: the identity, and a fingerprint of the key value it proved with (so
  // that a key removed or replaced since ends what it authenticated).
  struct Proof {
    auth::Identity identity;
    std::string auth_type;  // HS_PUBKEY or HS_SECKEY
    std::array<uint8_t, 32> key_fingerprint{};
  };
  struct Session {
    std::array<uint8_t, kNonceBytes> nonce{};
    std::optional<Proof> proof;  // set once the session proved an identity
  };

  HttpAuthSessions() : HttpAuthSessions(Limits{}) {}
  explicit HttpAuthSessions(Limits limits);

  // A new session opened by `source`; nullopt when the table holds only authenticated sessions.
  std::optional<Challenge> Open(const Source& source, Clock::time_point now);
  // The live session `session_id` (its idle time starts again); nullopt when unknown or ended.
  std::optional<Session> Find(std::string_view session_id, Clock::time_point now);
  // Records that `session_id` proved `proof`; false when the session has ended meanwhile or has
  // already proved another identity (one session, one identity).
  bool Authenticate(std::string_view session_id, const Proof& proof, Clock::time_point now);
  // Ends `session_id` (its key no longer holds).
  void Close(std::string_view session_id);
  size_t size() const;
  // For tests: sessions counted against `source`'s cap.
  size_t CountFrom(const Source& source) const;

 private:
  struct Entry {
    Session session;
    Source source{};  // normalised (IPv6: its /64)
    Clock::time_point opened;
    Clock::time_point last_used;
    Clock::time_point deadline;  // its key in deadlines_
    uint64_t order = 0;          // opening order (pending) or authentication order
  };
  using Map = std::unordered_map<std::string, Entry>;

  Clock::time_point DeadlineOf(const Entry& entry) const;
  void Touch(Map::iterator it, Clock::time_point now);
  void Erase(Map::iterator it);
  void SweepLocked(Clock::time_point now);
  static std::string IdentityKey(const auth::Identity& identity);

  const Limits limits_;
  mutable std::mutex mu_;
  Map sessions_;
  std::set<std::pair<Clock::time_point, std::string>> deadlines_;  // the front ends first
  std::map<uint64_t, std::string> pending_;                        // opening order -> id
  std::map<Source, std::map<uint64_t, std::string>> pending_by_source_;
  std::map<Source, size_t> per_source_;
  std::unordered_map<std::string, std::map<uint64_t, std::string>> by_identity_;
  uint64_t next_order_ = 0;
};

}  // namespace idnode::http
