// common/: caps on open TCP connections, in all and per source address, for one kind of listener
// (Handle TCP, DNS TCP, HTTP). One client, or a few, cannot take every slot.
//
// Owned by its server; shared by the threads that accept and close its connections (one mutex,
// taken once per connection, never per request).
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace idnode {

class ConnectionCaps {
 public:
  ConnectionCaps(uint32_t max_total, uint32_t max_per_source)
      : max_total_(max_total), max_per_source_(max_per_source) {}

  // Counts a new connection from `source` (its address); false, counted as refused, when either
  // cap is reached.
  bool Admit(const std::string& source) {
    std::lock_guard lock(mutex_);
    if (open_.load(std::memory_order_relaxed) >= max_total_) {
      refused_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    auto [it, inserted] = per_source_.try_emplace(source, 0);
    if (it->second >= max_per_source_) {
      refused_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    ++it->second;
    open_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  // The end of a connection Admit counted.
  void Release(const std::string& source) {
    std::lock_guard lock(mutex_);
    auto it = per_source_.find(source);
    if (it != per_source_.end() && --it->second == 0) per_source_.erase(it);
    open_.fetch_sub(1, std::memory_order_relaxed);
  }

  size_t open() const { return open_.load(std::memory_order_relaxed); }
  uint64_t refused() const { return refused_.load(std::memory_order_relaxed); }

 private:
  const uint32_t max_total_;
  const uint32_t max_per_source_;
  std::mutex mutex_;
  std::unordered_map<std::string, uint32_t> per_source_;
  std::atomic<size_t> open_{0};
  std::atomic<uint64_t> refused_{0};
};

}  // namespace idnode
