#include "idnode/http/auth_sessions.h"

#include <openssl/rand.h>

#include <algorithm>

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

// IPv4 addresses count alone; an IPv6 client usually holds a whole /64, so its /64 counts as one.
HttpAuthSessions::Source Normalised(const HttpAuthSessions::Source& source) {
  const bool v4_mapped =
      std::all_of(source.begin(), source.begin() + 10, [](uint8_t b) { return b == 0; }) &&
      source[10] == 0xff && source[11] == 0xff;
  if (v4_mapped) return source;
  HttpAuthSessions::Source prefix = source;
  std::fill(prefix.begin() + 8, prefix.end(), uint8_t{0});
  return prefix;
}

}  // namespace

HttpAuthSessions::HttpAuthSessions(Limits limits) : limits_(limits) {}

std::string HttpAuthSessions::IdentityKey(const auth::Identity& identity) {
  return identity.ToString();
}

HttpAuthSessions::Clock::time_point HttpAuthSessions::DeadlineOf(const Entry& entry) const {
  if (!entry.session.proof) return entry.opened + limits_.challenge_life;
  return std::min(entry.opened + limits_.lifetime, entry.last_used + limits_.idle);
}

void HttpAuthSessions::Touch(Map::iterator it, Clock::time_point now) {
  Entry& entry = it->second;
  entry.last_used = now;
  const auto deadline = DeadlineOf(entry);
  if (deadline == entry.deadline) return;
  deadlines_.erase({entry.deadline, it->first});
  entry.deadline = deadline;
  deadlines_.emplace(deadline, it->first);
}

void HttpAuthSessions::Erase(Map::iterator it) {
  Entry& entry = it->second;
  deadlines_.erase({entry.deadline, it->first});
  if (entry.session.proof) {
    auto mine = by_identity_.find(IdentityKey(entry.session.proof->identity));
    if (mine != by_identity_.end()) {
      mine->second.erase(entry.order);
      if (mine->second.empty()) by_identity_.erase(mine);
    }
  } else {
    pending_.erase(entry.order);
    auto from = pending_by_source_.find(entry.source);
    if (from != pending_by_source_.end()) {
      from->second.erase(entry.order);
      if (from->second.empty()) pending_by_source_.erase(from);
    }
  }
  auto count = per_source_.find(entry.source);
  if (count != per_source_.end() && --count->second == 0) per_source_.erase(count);
  sessions_.erase(it);
}

void HttpAuthSessions::SweepLocked(Clock::time_point now) {
  // Bounded per call, so that a burst of ended sessions never holds the lock (and an event loop
  // calling Open) for long; every call sweeps, so the ended ones go quickly all the same.
  for (size_t n = 0; n < kSweepPerCall && !deadlines_.empty(); ++n) {
    const auto& [deadline, id] = *deadlines_.begin();
    if (deadline > now) break;
    auto it = sessions_.find(id);
    if (it == sessions_.end()) {  // cannot happen: the indexes are kept together
      deadlines_.erase(deadlines_.begin());
      continue;
    }
    Erase(it);
  }
}

std::optional<HttpAuthSessions::Challenge> HttpAuthSessions::Open(const Source& raw_source,
                                                                  Clock::time_point now) {
  Challenge challenge;
  uint8_t id[16];
  if (RAND_bytes(id, sizeof id) != 1 ||
      RAND_bytes(challenge.nonce.data(), static_cast<int>(challenge.nonce.size())) != 1) {
    return std::nullopt;
  }
  challenge.session_id = Hex(id, sizeof id);
  const Source source = Normalised(raw_source);
  std::lock_guard lock(mu_);
  SweepLocked(now);
  auto count = per_source_.find(source);
  if (count != per_source_.end() && count->second >= limits_.per_source) {
    // The source's own oldest pending session gives way; if it has none, it has its share.
    auto from = pending_by_source_.find(source);
    if (from == pending_by_source_.end() || from->second.empty()) return std::nullopt;
    auto oldest = sessions_.find(from->second.begin()->second);
    if (oldest == sessions_.end()) return std::nullopt;
    Erase(oldest);
  }
  if (sessions_.size() >= limits_.capacity) {
    if (pending_.empty()) return std::nullopt;
    auto oldest = sessions_.find(pending_.begin()->second);
    if (oldest == sessions_.end()) return std::nullopt;
    Erase(oldest);
  }
  Entry entry;
  entry.session.nonce = challenge.nonce;
  entry.source = source;
  entry.opened = now;
  entry.last_used = now;
  entry.order = next_order_++;
  entry.deadline = DeadlineOf(entry);
  pending_.emplace(entry.order, challenge.session_id);
  pending_by_source_[source].emplace(entry.order, challenge.session_id);
  ++per_source_[source];
  deadlines_.emplace(entry.deadline, challenge.session_id);
  sessions_.emplace(challenge.session_id, std::move(entry));
  return challenge;
}

std::optional<HttpAuthSessions::Session> HttpAuthSessions::Find(std::string_view session_id,
                                                                Clock::time_point now) {
  std::lock_guard lock(mu_);
  SweepLocked(now);
  auto it = sessions_.find(std::string(session_id));
  if (it == sessions_.end()) return std::nullopt;
  if (it->second.deadline <= now) {
    Erase(it);
    return std::nullopt;
  }
  if (it->second.session.proof) Touch(it, now);  // a pending nonce's life does not move
  return it->second.session;
}

bool HttpAuthSessions::Authenticate(std::string_view session_id, const Proof& proof,
                                    Clock::time_point now) {
  std::lock_guard lock(mu_);
  auto it = sessions_.find(std::string(session_id));
  if (it == sessions_.end()) return false;
  Entry& entry = it->second;
  if (entry.deadline <= now) {
    Erase(it);
    return false;
  }
  if (entry.session.proof) {
    // Proved again (the reference's clients resend the same header): the same identity only.
    if (entry.session.proof->identity != proof.identity) return false;
    entry.session.proof = proof;
    Touch(it, now);
    return true;
  }
  pending_.erase(entry.order);
  auto from = pending_by_source_.find(entry.source);
  if (from != pending_by_source_.end()) {
    from->second.erase(entry.order);
    if (from->second.empty()) pending_by_source_.erase(from);
  }
  entry.session.proof = proof;
  entry.order = next_order_++;
  Touch(it, now);
  auto& mine = by_identity_[IdentityKey(proof.identity)];
  mine.emplace(entry.order, it->first);
  // One identity holds at most per_identity sessions: its oldest gives way.
  while (mine.size() > limits_.per_identity) {
    auto oldest = sessions_.find(mine.begin()->second);
    if (oldest == sessions_.end()) {
      mine.erase(mine.begin());
      continue;
    }
    Erase(oldest);  // never `it`: it is the newest
  }
  return true;
}

void HttpAuthSessions::Close(std::string_view session_id) {
  std::lock_guard lock(mu_);
  auto it = sessions_.find(std::string(session_id));
  if (it != sessions_.end()) Erase(it);
}

size_t HttpAuthSessions::size() const {
  std::lock_guard lock(mu_);
  return sessions_.size();
}

size_t HttpAuthSessions::CountFrom(const Source& source) const {
  std::lock_guard lock(mu_);
  auto count = per_source_.find(Normalised(source));
  return count == per_source_.end() ? 0 : count->second;
}

}  // namespace idnode::http
