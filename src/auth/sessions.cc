#include "idnode/auth/sessions.h"

#include <openssl/rand.h>

#include <algorithm>

namespace idnode::auth {

SessionTable::SessionTable(size_t max_sessions, size_t max_per_source,
                           std::chrono::seconds max_lifetime)
    : max_sessions_(std::max<size_t>(1, max_sessions)),
      max_per_source_(std::max<size_t>(1, max_per_source)),
      max_lifetime_(max_lifetime) {}

void SessionTable::Erase(std::unordered_map<uint32_t, Entry>::iterator it) {
  auto source = per_source_.find(it->second.origin.address);
  if (source != per_source_.end() && --source->second == 0) per_source_.erase(source);
  sessions_.erase(it);
}

void SessionTable::DropExpired(std::chrono::steady_clock::time_point now) {
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    auto next = std::next(it);
    if (it->second.expires <= now) Erase(it);
    it = next;
  }
}

bool SessionTable::DropOldestUnauthenticated(const Origin* source) {
  auto oldest = sessions_.end();
  auto oldest_unconfirmed = sessions_.end();
  for (auto it = sessions_.begin(); it != sessions_.end(); ++it) {
    if (it->second.view.authenticated) continue;
    if (source != nullptr && it->second.origin.address != source->address) continue;
    if (oldest == sessions_.end() || it->second.opened < oldest->second.opened) oldest = it;
    if (!it->second.confirmed && (oldest_unconfirmed == sessions_.end() ||
                                  it->second.opened < oldest_unconfirmed->second.opened))
      oldest_unconfirmed = it;
  }
  if (oldest_unconfirmed != sessions_.end()) oldest = oldest_unconfirmed;
  if (oldest == sessions_.end()) return false;
  Erase(oldest);
  return true;
}

uint32_t SessionTable::Open(const Origin& origin, std::vector<uint8_t> key,
                            uint32_t key_exchange_mode, std::optional<Identity> identity,
                            int32_t requested_seconds, std::chrono::steady_clock::time_point now,
                            uint32_t cipher) {
  std::lock_guard lock(mutex_);
  DropExpired(now);
  auto source = per_source_.find(origin.address);
  if (source != per_source_.end() && source->second >= max_per_source_ &&
      !DropOldestUnauthenticated(&origin)) {
    return 0;
  }
  if (sessions_.size() >= max_sessions_ && !DropOldestUnauthenticated(nullptr)) return 0;
  uint32_t id = 0;
  do {
    // Random, so that one client cannot guess the id of another's session.
    if (RAND_bytes(reinterpret_cast<unsigned char*>(&id), sizeof id) != 1) return 0;
  } while (id == 0 || sessions_.contains(id));
  Entry entry;
  entry.view.id = id;
  entry.view.key = std::move(key);
  entry.view.key_exchange_mode = key_exchange_mode;
  entry.view.cipher = cipher;
  entry.view.identity = std::move(identity);
  entry.view.origin_address = origin.address;
  entry.origin = origin;
  entry.confirmed = !origin.datagram;
  entry.opened = now;
  std::chrono::seconds lifetime = max_lifetime_;
  if (requested_seconds > 0) lifetime = std::min(lifetime, std::chrono::seconds(requested_seconds));
  entry.expires = now + lifetime;
  sessions_.emplace(id, std::move(entry));
  ++per_source_[origin.address];
  return id;
}

std::optional<SessionView> SessionTable::Find(uint32_t id,
                                              std::chrono::steady_clock::time_point now) const {
  std::lock_guard lock(mutex_);
  auto it = sessions_.find(id);
  if (it == sessions_.end() || it->second.expires <= now) return std::nullopt;
  return it->second.view;
}

bool SessionTable::AcceptCounter(uint32_t id, uint32_t counter) {
  std::lock_guard lock(mutex_);
  auto it = sessions_.find(id);
  if (it == sessions_.end() || counter == 0) return false;
  Entry& e = it->second;
  e.confirmed = true;  // only messages whose MAC checked are counted
  if (counter > e.highest_counter) {
    const uint32_t shift = counter - e.highest_counter;
    if (shift >= kReplayWindow) {
      e.seen.reset();
    } else {
      e.seen <<= shift;
    }
    e.highest_counter = counter;
    e.seen.set(0);
    return true;
  }
  const uint32_t age = e.highest_counter - counter;
  if (age >= kReplayWindow || e.seen.test(age)) return false;
  e.seen.set(age);
  return true;
}

uint32_t SessionTable::NextServerCounter(uint32_t id) {
  std::lock_guard lock(mutex_);
  auto it = sessions_.find(id);
  return it == sessions_.end() ? 0 : it->second.next_server_counter++;
}

bool SessionTable::MarkAuthenticated(uint32_t id, const Identity& who) {
  std::lock_guard lock(mutex_);
  auto it = sessions_.find(id);
  if (it == sessions_.end() || !it->second.view.identity || *it->second.view.identity != who)
    return false;
  it->second.view.authenticated = who;
  return true;
}

bool SessionTable::SetKey(uint32_t id, std::vector<uint8_t> key) {
  std::lock_guard lock(mutex_);
  auto it = sessions_.find(id);
  if (it == sessions_.end() || !it->second.view.key.empty()) return false;
  it->second.view.key = std::move(key);
  return true;
}

bool SessionTable::Close(uint32_t id) {
  std::lock_guard lock(mutex_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return false;
  Erase(it);
  return true;
}

size_t SessionTable::size() const {
  std::lock_guard lock(mutex_);
  return sessions_.size();
}

}  // namespace idnode::auth
