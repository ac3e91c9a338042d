#include "idnode/http/auth_sessions.h"

#include <openssl/rand.h>

namespace idnode::http {

namespace {

std::string Hex(const uint8_t* data, size_t size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(size * 2, '0');
  for (size_t i = 0; i < size; ++i) {
    out[2 * i] = kDigits[data[i] >> 4];
    out[2 * i + 1] = kDigits[data[i] & 0x0f];
  }
  return out;
}

}  // namespace

HttpAuthSessions::HttpAuthSessions(Limits limits) : limits_(limits) {}

bool HttpAuthSessions::Expired(const Entry& entry, Clock::time_point now) const {
  if (!entry.session.identity) return now - entry.opened >= limits_.challenge_life;
  return now - entry.opened >= limits_.lifetime || now - entry.last_used >= limits_.idle;
}

void HttpAuthSessions::Erase(Map::iterator it) {
  auto& order_map = it->second.session.identity ? authenticated_ : unauthenticated_;
  order_map.erase(it->second.order);
  auto count = per_source_.find(it->second.source);
  if (count != per_source_.end() && --count->second == 0) per_source_.erase(count);
  sessions_.erase(it);
}

void HttpAuthSessions::SweepLocked(Clock::time_point now) {
  // Unauthenticated sessions all live challenge_life from their opening, in opening order: the
  // expired ones are a prefix. Authenticated ones are checked from the front until a live one
  // (an idle one behind it waits for its turn or for Find).
  for (auto* order_map : {&unauthenticated_, &authenticated_}) {
    while (!order_map->empty()) {
      auto it = sessions_.find(order_map->begin()->second);
      if (it == sessions_.end()) {  // cannot happen: the maps are kept together
        order_map->erase(order_map->begin());
        continue;
      }
      if (!Expired(it->second, now)) break;
      Erase(it);
    }
  }
}

std::optional<HttpAuthSessions::Challenge> HttpAuthSessions::Open(const Source& source,
                                                                  Clock::time_point now) {
  Challenge challenge;
  uint8_t id[16];
  if (RAND_bytes(id, sizeof id) != 1 ||
      RAND_bytes(challenge.nonce.data(), static_cast<int>(challenge.nonce.size())) != 1) {
    return std::nullopt;
  }
  challenge.session_id = Hex(id, sizeof id);
  std::lock_guard lock(mu_);
  SweepLocked(now);
  auto count = per_source_.find(source);
  if (count != per_source_.end() && count->second >= limits_.per_source) return std::nullopt;
  if (sessions_.size() >= limits_.capacity) {
    if (unauthenticated_.empty()) return std::nullopt;
    auto oldest = sessions_.find(unauthenticated_.begin()->second);
    if (oldest == sessions_.end()) return std::nullopt;
    Erase(oldest);
  }
  Entry entry;
  entry.session.nonce = challenge.nonce;
  entry.source = source;
  entry.opened = now;
  entry.last_used = now;
  entry.order = next_order_++;
  unauthenticated_.emplace(entry.order, challenge.session_id);
  ++per_source_[source];
  sessions_.emplace(challenge.session_id, std::move(entry));
  return challenge;
}

std::optional<HttpAuthSessions::Session> HttpAuthSessions::Find(std::string_view session_id,
                                                                Clock::time_point now) {
  std::lock_guard lock(mu_);
  auto it = sessions_.find(std::string(session_id));
  if (it == sessions_.end()) return std::nullopt;
  if (Expired(it->second, now)) {
    Erase(it);
    return std::nullopt;
  }
  it->second.last_used = now;
  return it->second.session;
}

bool HttpAuthSessions::Authenticate(std::string_view session_id, const auth::Identity& identity,
                                    Clock::time_point now) {
  std::lock_guard lock(mu_);
  auto it = sessions_.find(std::string(session_id));
  if (it == sessions_.end()) return false;
  if (Expired(it->second, now)) {
    Erase(it);
    return false;
  }
  Entry& entry = it->second;
  (entry.session.identity ? authenticated_ : unauthenticated_).erase(entry.order);
  entry.session.identity = identity;
  entry.last_used = now;
  entry.order = next_order_++;
  authenticated_.emplace(entry.order, it->first);
  return true;
}

size_t HttpAuthSessions::size() const {
  std::lock_guard lock(mu_);
  return sessions_.size();
}

}  // namespace idnode::http
