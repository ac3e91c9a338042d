// auth/: the sessions clients open with OC 400 SESSION_SETUP (HANDLE.md §1.10), as CNRI's
// SessionManager keeps them: a session key shared with the client (MACs its messages and, when
// asked, encrypts their bodies), the identity it named at setup, and whether that identity has
// since answered a challenge in the session (then its MAC'd requests are that identity's without
// a new challenge).
//
// Owned by the application, shared by the storage threads that answer session and admin
// requests; one mutex, since sessions are admin traffic, never on the resolution path.
#pragma once

#include <array>
#include <bitset>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "idnode/auth/authorizer.h"

namespace idnode::auth {

struct SessionView {
  uint32_t id = 0;
  std::vector<uint8_t> key;  // empty until a KEY_EXCHANGE_CIPHER_SERVER session's OC 402
  uint32_t key_exchange_mode = 0;
  uint32_t cipher = 3;               // kCipherAes, or kCipherSm4 (a key delivered to an SM2 key)
  std::optional<Identity> identity;  // named at setup (absent: an anonymous session)
  std::optional<Identity> authenticated;     // set once `identity` answered a challenge here
  std::array<uint8_t, 16> origin_address{};  // where the setup came from
};

class SessionTable {
 public:
  SessionTable(size_t max_sessions, size_t max_per_source, std::chrono::seconds max_lifetime);

  // Opens a session for `origin` with `key` (may be empty, see SessionView) that lives
  // min(requested, max_lifetime) (requested 0 or negative: max_lifetime). Makes room by dropping
  // expired sessions, then the oldest unauthenticated session of the same source (when it has
  // max_per_source) or of all (when the table is full), unconfirmed ones first (set up over UDP,
  // whose source may be forged, and not yet used with a valid MAC): an authenticated session is
  // never pushed out by new ones, nor a confirmed one by a spoofed flood. Returns the new
  // session id, or 0 when there is no room.
  uint32_t Open(const Origin& origin, std::vector<uint8_t> key, uint32_t key_exchange_mode,
                std::optional<Identity> identity, int32_t requested_seconds,
                std::chrono::steady_clock::time_point now, uint32_t cipher = 3);
  std::optional<SessionView> Find(uint32_t id, std::chrono::steady_clock::time_point now) const;

  // Records the counter of a client message whose MAC checked (which confirms the session);
  // false if it is 0, was seen, or is older than the replay window (RC_SESSION_MESSAGE_REJECTED),
  // or the session is gone.
  bool AcceptCounter(uint32_t id, uint32_t counter);
  // The counter for this server's next MAC'd message in the session.
  uint32_t NextServerCounter(uint32_t id);
  // `who` answered a challenge in session `id`: the session is now authenticated as `who` if
  // `who` is the identity it named at setup (as CNRI's setSessionAuthenticated).
  bool MarkAuthenticated(uint32_t id, const Identity& who);
  // Sets the key of a session that was opened without one (KEY_EXCHANGE_CIPHER_SERVER).
  bool SetKey(uint32_t id, std::vector<uint8_t> key);
  bool Close(uint32_t id);
  size_t size() const;

  // Client counters older than this many below the highest seen are refused.
  static constexpr uint32_t kReplayWindow = 1024;

 private:
  struct Entry {
    SessionView view;
    Origin origin;
    std::chrono::steady_clock::time_point opened;
    std::chrono::steady_clock::time_point expires;
    uint32_t next_server_counter = 1;
    bool confirmed = false;  // set up over TCP, or used since with a valid MAC
    uint32_t highest_counter = 0;
    std::bitset<kReplayWindow> seen;  // bit i: highest_counter - i was seen
  };
  void DropExpired(std::chrono::steady_clock::time_point now);
  // Drops the oldest unauthenticated session (of `source` only, if given), an unconfirmed one if
  // there is one; false if none.
  bool DropOldestUnauthenticated(const Origin* source);
  void Erase(std::unordered_map<uint32_t, Entry>::iterator it);

  const size_t max_sessions_;
  const size_t max_per_source_;
  const std::chrono::seconds max_lifetime_;
  mutable std::mutex mutex_;
  std::unordered_map<uint32_t, Entry> sessions_;
  std::map<std::array<uint8_t, 16>, size_t> per_source_;
};

}  // namespace idnode::auth
