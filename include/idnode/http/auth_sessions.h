// http/: the sessions of the JSON API's `Handle` authentication scheme (HANDLE.md §2, the
// handle.net server's StandardHandleAuthenticationFilter). A 401 over HTTPS names a session and a
// nonce (`WWW-Authenticate: Handle sessionId="…", nonce="…"`); the client proves an identity by
// signing nonce ‖ cnonce with its private key (or MACing it with its HS_SECKEY) in
// `Authorization: Handle sessionId=…, id=…, type=…, cnonce=…, alg=…, signature=…`; from then on a
// request that names the session alone (`Authorization: Handle sessionId="…"`) is that identity's.
//
// Bounded: at most `capacity` sessions and `per_source` opened by one client address. A session
// not yet authenticated lives `challenge_life` (its nonce is only good for that long); an
// authenticated one ends after `idle` without use or `lifetime` after it was opened, whichever
// comes first. When the table is full, the oldest unauthenticated session gives way; an
// authenticated one is never pushed out by a newcomer (Open then refuses: 503).
//
// Owned by the application (next to the AdminApi); thread-safe (one mutex, held for O(log n)
// work): called from the HTTP event-loop threads (Open, for the 401 answered from a request's
// head) and from the HTTP storage threads (everything else).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "idnode/auth/credentials.h"

namespace idnode::http {

class HttpAuthSessions {
 public:
  using Clock = std::chrono::steady_clock;
  using Source = std::array<uint8_t, 16>;  // a client address; IPv4 as ::ffff:a.b.c.d
  static constexpr size_t kNonceBytes = 16;

  struct Limits {
    size_t capacity = 16384;
    size_t per_source = 256;
    std::chrono::seconds challenge_life{120};
    std::chrono::seconds idle{600};
    std::chrono::seconds lifetime{3600};
  };

  struct Challenge {
    std::string session_id;  // 32 lower-case hex digits (128 random bits)
    std::array<uint8_t, kNonceBytes> nonce{};
  };
  struct Session {
    std::array<uint8_t, kNonceBytes> nonce{};
    std::optional<auth::Identity> identity;  // set once the session proved one
  };

  HttpAuthSessions() : HttpAuthSessions(Limits{}) {}
  explicit HttpAuthSessions(Limits limits);

  // A new session opened by `source`; nullopt when `source` already holds per_source sessions
  // or the table is full of authenticated ones.
  std::optional<Challenge> Open(const Source& source, Clock::time_point now);
  // The live session `session_id` (its idle time starts again); nullopt when unknown or ended.
  std::optional<Session> Find(std::string_view session_id, Clock::time_point now);
  // Records that `session_id` proved `identity`; false when the session has ended meanwhile.
  bool Authenticate(std::string_view session_id, const auth::Identity& identity,
                    Clock::time_point now);
  size_t size() const;

 private:
  struct Entry {
    Session session;
    Source source{};
    Clock::time_point opened;
    Clock::time_point last_used;
    uint64_t order = 0;  // its key in unauthenticated_ or authenticated_
  };
  using Map = std::unordered_map<std::string, Entry>;

  bool Expired(const Entry& entry, Clock::time_point now) const;
  void Erase(Map::iterator it);
  void SweepLocked(Clock::time_point now);

  const Limits limits_;
  mutable std::mutex mu_;
  Map sessions_;
  // Opening order (and for authenticated sessions, authentication order) -> session id: the
  // fronts are the first to expire or give way.
  std::map<uint64_t, std::string> unauthenticated_;
  std::map<uint64_t, std::string> authenticated_;
  std::map<Source, size_t> per_source_;
  uint64_t next_order_ = 0;
};

}  // namespace idnode::http
