// AnswerCache: the hot cache of encoded answers between the resolver and storage
// (ARCHITECTURE.md, "One request, end to end"). A hit is answered on the worker thread that
// received the request, without waiting for a lock and without allocating.
//
// Eviction is S3-FIFO (Yang et al., SOSP'23). New keys enter a small FIFO (~10% of the bytes);
// keys hit while there move to the main FIFO (~90%), the rest leave and are remembered in a ghost
// FIFO of key hashes, so a one-time scan of cold identifiers flushes only the small queue and
// never the hot set in main. A hit only bumps a 2-bit counter: unlike LRU it reorders no list, so
// hits touch one entry under the shard lock and nothing else.
//
// Invalidation racing with fills. A reader that misses must not put an answer read before a
// write into the cache after that write was acknowledged. Each shard has an epoch:
//   reader: ticket = FillTicket(key); read storage; InsertIfFresh(key, answer, ticket);
//   writer: commit to storage; Invalidate(key); acknowledge.
// Invalidate erases the key and bumps its shard's epoch under the shard lock; InsertIfFresh
// inserts only if the epoch still equals the ticket, checked under the same lock. A fill whose
// storage read predates the commit either lands before Invalidate (and is erased by it) or after
// it (and is refused). The epoch is per shard, not per key: a write refuses every fill in flight
// in its shard, a rare extra miss that costs no memory per key.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace idnode::cache {

// Negative entries ("known absent") live this long unless the caller says otherwise.
inline constexpr std::chrono::milliseconds kDefaultNegativeTtl{5000};

// Smallest byte budget a shard may have: below it a shard holds too few answers to be a cache.
inline constexpr size_t kMinShardBytes = 4096;

// Bytes charged per entry on top of its key and value bytes: the entry header (hash-chain link,
// queue links, hash, expiry, sizes, frequency: 56 bytes, one allocation that also holds the key
// and value) plus 24 bytes of malloc overhead (glibc's 8-byte chunk header plus rounding up to 16,
// at most 23). Hash-table buckets are charged separately at their real size, as are the ghost
// table and the shard itself, so bytes_used() bounds what the cache holds on the heap from above
// (benchmarks/cache_bench.cc measures both: 368 accounted vs 352 real bytes a 276-byte entry).
inline constexpr size_t kEntryOverhead = 80;

struct CacheOptions {
  size_t capacity_bytes = 0;  // total across shards, overhead included
  // Power of two; each shard gets capacity_bytes / shard_count. A lookup finds its shard busy
  // about (threads - 1) x (share of their time spent in lookups) / shard_count of the time.
  size_t shard_count = 64;
  std::chrono::milliseconds negative_ttl = kDefaultNegativeTtl;

  // Why the options are unusable, or nullopt if they are fine.
  static std::optional<std::string> Validate(const CacheOptions& options);
};

enum class LookupResult : uint8_t {
  kHit,          // the visitor saw the answer
  kNegativeHit,  // the key is known absent (an unexpired negative entry)
  kMiss,         // not cached (or an expired negative entry, now removed)
  kContended,    // the shard lock was busy: go to storage rather than wait
};

// Owned by the registry; shared by every worker and storage thread (all methods are
// thread-safe). Each shard has its own mutex; lookups only try_lock it.
class AnswerCache {
 public:
  using Clock = std::chrono::steady_clock;
  // Injectable for tests of negative-entry expiry; called only for negative entries.
  using NowFn = std::function<Clock::time_point()>;

  struct Stats {
    uint64_t hits = 0;
    uint64_t negative_hits = 0;
    uint64_t misses = 0;
    uint64_t contended = 0;  // lookups deferred to storage because the shard was busy
    uint64_t inserts = 0;
    uint64_t evictions = 0;
    uint64_t invalidations = 0;
    uint64_t stale_fills = 0;  // InsertIfFresh refused: the shard's epoch had moved
    uint64_t rejected = 0;     // inserts refused: the entry is larger than a shard's budget
    uint64_t bytes_used = 0;
    uint64_t entries = 0;
  };

  // Throws std::invalid_argument if CacheOptions::Validate refuses the options (a startup
  // error, see ARCHITECTURE.md).
  explicit AnswerCache(const CacheOptions& options, NowFn now = {});
  ~AnswerCache();
  AnswerCache(const AnswerCache&) = delete;
  AnswerCache& operator=(const AnswerCache&) = delete;

  // Looks `key` up without ever waiting for a lock. On kHit, calls `visitor` once with the
  // answer's bytes, valid only during the call. The visitor runs under the shard lock: it must be
  // short (copy or encode the bytes, nothing more) and must not call back into this cache.
  template <typename F>
  LookupResult Lookup(std::string_view key, F&& visitor) {
    using Fn = std::remove_reference_t<F>;
    return LookupImpl(
        key,
        [](const void* ctx, std::span<const uint8_t> value) {
          (*static_cast<Fn*>(const_cast<void*>(ctx)))(value);
        },
        std::addressof(visitor));
  }

  // Software prefetching for a batch of lookups (a UDP worker reads up to 64 requests at once):
  // PrefetchBucket(h) for every key of the batch, then PrefetchEntry(h) for every key, then the
  // lookups, so that the memory latency of one request overlaps the others' instead of adding
  // up. `h` is HashOf(key). Neither waits for a lock (a busy shard is skipped) nor changes
  // anything but what the CPU caches hold.
  static uint64_t HashOf(std::string_view key);
  void PrefetchBucket(uint64_t hash);
  void PrefetchEntry(uint64_t hash);

  // The answer's bytes on a hit; nullopt otherwise. Allocates: for tests and tools.
  std::optional<std::vector<uint8_t>> Get(std::string_view key);

  // Inserts or replaces `key`, without an epoch check (warm-up, tests). False if the entry is
  // larger than a shard's budget (it is not stored and any older entry of the key is gone).
  bool Insert(std::string_view key, std::span<const uint8_t> value);
  // The fill protocol (see the top of this file).
  uint64_t FillTicket(std::string_view key) const;
  bool InsertIfFresh(std::string_view key, std::span<const uint8_t> value, uint64_t ticket);

  // Records that `key` is absent for `ttl` (the options' negative_ttl by default).
  bool InsertNegative(std::string_view key);
  bool InsertNegative(std::string_view key, std::chrono::milliseconds ttl);
  bool InsertNegativeIfFresh(std::string_view key, uint64_t ticket);
  bool InsertNegativeIfFresh(std::string_view key, uint64_t ticket, std::chrono::milliseconds ttl);

  // Erases `key` (positive or negative) and bumps its shard's epoch. Waits for the shard lock.
  void Invalidate(std::string_view key);
  // Erases everything and bumps every epoch.
  void Clear();

  size_t capacity_bytes() const { return capacity_bytes_; }
  size_t shard_count() const { return shard_count_; }
  size_t bytes_used() const;  // never above capacity_bytes()
  size_t entries() const;
  Stats stats() const;

 private:
  struct Shard;
  using Visit = void (*)(const void* ctx, std::span<const uint8_t> value);

  LookupResult LookupImpl(std::string_view key, Visit visit, const void* ctx);
  bool InsertImpl(std::string_view key, std::span<const uint8_t> value, bool negative,
                  std::chrono::milliseconds ttl, const uint64_t* ticket);
  Shard& ShardFor(uint64_t hash) const;

  size_t capacity_bytes_;
  size_t shard_count_;
  uint64_t shard_mask_;  // shard = (hash >> 32) & mask; the low bits pick buckets and ghosts
  std::chrono::milliseconds negative_ttl_;
  NowFn now_;
  std::unique_ptr<Shard[]> shards_;
};

}  // namespace idnode::cache
