#include "idnode/cache/answer_cache.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstring>
#include <limits>
#include <mutex>
#include <new>
#include <stdexcept>
#include <utility>

namespace idnode::cache {
namespace {

constexpr uint8_t kMaxFrequency = 3;
constexpr size_t kInitialBuckets = 16;
// The ghost table is sized when the shard is built, from the number of entries its main queue
// would hold if every entry carried this many key and value bytes (a typical encoded answer).
constexpr size_t kTypicalEntryPayload = 128;
constexpr size_t kGhostWays = 8;  // slots per ghost bucket: 8 x 8 bytes, one cache line
constexpr size_t kMinGhostSlots = 2 * kGhostWays;

enum class Queue : uint8_t { kSmall, kMain };

// One allocation per entry: this header, then the key bytes, then the value bytes.
struct Entry {
  Entry* chain;  // next entry in the same hash bucket
  Entry* prev;   // toward the head (older) of its queue
  Entry* next;   // toward the tail (newer) of its queue
  uint64_t hash;
  AnswerCache::Clock::time_point expires;  // negative entries only
  uint32_t key_size;
  uint32_t value_size;
  uint8_t frequency;  // 0..kMaxFrequency, bumped by hits
  Queue queue;
  bool negative;

  char* key_bytes() { return reinterpret_cast<char*>(this + 1); }
  uint8_t* value_bytes() { return reinterpret_cast<uint8_t*>(this + 1) + key_size; }
  std::string_view key() { return {key_bytes(), key_size}; }
  size_t charge() const { return kEntryOverhead + key_size + value_size; }
};
static_assert(std::is_trivially_destructible_v<Entry>);
// kEntryOverhead (header) promises the header plus at most 24 bytes of malloc overhead.
static_assert(sizeof(Entry) + 24 == kEntryOverhead);

void FreeEntry(Entry* e) {
  ::operator delete(static_cast<void*>(e));
}

// Intrusive FIFO: entries leave at the head and join at the tail; Unlink serves invalidation.
struct Fifo {
  Entry* head = nullptr;
  Entry* tail = nullptr;
  size_t bytes = 0;
  size_t count = 0;

  void PushTail(Entry* e) {
    e->next = nullptr;
    e->prev = tail;
    (tail != nullptr ? tail->next : head) = e;
    tail = e;
    bytes += e->charge();
    ++count;
  }
  void Unlink(Entry* e) {
    (e->prev != nullptr ? e->prev->next : head) = e->next;
    (e->next != nullptr ? e->next->prev : tail) = e->prev;
    bytes -= e->charge();
    --count;
  }
};

// The ghost FIFO: hashes of keys recently dropped from the small queue. Stored as 32-bit
// fingerprints with the sequence number of their addition, 8 to a bucket; an addition replaces
// the oldest slot of its bucket, and a fingerprint older than `limit` additions counts as gone.
// That is a FIFO by age at 8 bytes per remembered key and no allocation after construction. A
// false match (two keys, one fingerprint) only sends a new key to main instead of small.
class Ghost {
 public:
  void Init(size_t slots) {
    slots_.assign(slots, Slot{});
    bucket_bits_ = std::countr_zero(slots / kGhostWays);
  }
  size_t slot_count() const { return slots_.size(); }
  size_t bytes() const { return slots_.size() * sizeof(Slot); }
  void Clear() { std::fill(slots_.begin(), slots_.end(), Slot{}); }

  void Add(uint64_t hash) {
    uint32_t fp = Fingerprint(hash);
    Slot* bucket = Bucket(fp);
    ++sequence_;
    Slot* victim = &bucket[0];
    for (size_t i = 0; i < kGhostWays; ++i) {
      Slot& s = bucket[i];
      if (s.fingerprint == fp || s.fingerprint == 0) {
        victim = &s;
        break;
      }
      if (sequence_ - s.sequence > sequence_ - victim->sequence) victim = &s;
    }
    *victim = Slot{fp, sequence_};
  }

  // True if `hash` was added within the last `limit` additions; forgets it either way.
  bool Take(uint64_t hash, uint64_t limit) {
    uint32_t fp = Fingerprint(hash);
    Slot* bucket = Bucket(fp);
    for (size_t i = 0; i < kGhostWays; ++i) {
      if (bucket[i].fingerprint == fp) {
        bool recent = sequence_ - bucket[i].sequence < limit;
        bucket[i] = Slot{};
        return recent;
      }
    }
    return false;
  }

 private:
  struct Slot {
    uint32_t fingerprint = 0;  // 0: empty
    uint32_t sequence = 0;
  };
  // The low half of the key hash (the shard took bits from the high half); never 0.
  static uint32_t Fingerprint(uint64_t hash) {
    auto fp = static_cast<uint32_t>(hash);
    return fp != 0 ? fp : 1;
  }
  Slot* Bucket(uint32_t fp) {
    // Fibonacci hashing spreads the fingerprint over the buckets (bucket_bits_ >= 1).
    uint64_t index = (uint64_t{fp} * 0x9E3779B97F4A7C15ull) >> (64 - bucket_bits_);
    return &slots_[index * kGhostWays];
  }

  std::vector<Slot> slots_;
  int bucket_bits_ = 1;
  uint32_t sequence_ = 0;  // wraps; ages are computed modulo 2^32
};

// Relaxed increment of a counter written only under the shard lock (read by stats() without
// it): a plain load and store, no locked read-modify-write on the hit path.
void Bump(std::atomic<uint64_t>& counter) {
  counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

uint64_t HashKey(std::string_view key) {
  return std::hash<std::string_view>{}(key);
}

}  // namespace

// One shard: its lock, its epoch and its S3-FIFO queues. Everything but the atomics is guarded
// by `mu`.
struct alignas(64) AnswerCache::Shard {
  std::mutex mu;
  std::atomic<uint64_t> epoch{0};
  std::atomic<uint64_t> used{0};  // bytes charged: fixed + buckets + entries
  std::atomic<uint64_t> count{0};

  std::vector<Entry*> buckets;
  Fifo small;
  Fifo main;
  Ghost ghost;
  size_t budget = 0;        // bytes this shard may use, everything included
  size_t fixed = 0;         // the shard and its ghost table
  size_t small_target = 0;  // ~10% of the entry bytes
  size_t main_capacity = 0;

  // Counters. `contended` is the only one written without the lock.
  std::atomic<uint64_t> hits{0};
  std::atomic<uint64_t> negative_hits{0};
  std::atomic<uint64_t> misses{0};
  std::atomic<uint64_t> inserts{0};
  std::atomic<uint64_t> evictions{0};
  std::atomic<uint64_t> invalidations{0};
  std::atomic<uint64_t> stale_fills{0};
  std::atomic<uint64_t> rejected{0};
  alignas(64) std::atomic<uint64_t> contended{0};

  void Init(size_t shard_budget) {
    budget = shard_budget;
    size_t main_estimate = budget - budget / 10;
    size_t ghost_slots = std::max(
        kMinGhostSlots, std::bit_ceil(main_estimate / (kEntryOverhead + kTypicalEntryPayload)));
    ghost.Init(ghost_slots);
    fixed = sizeof(Shard) + ghost.bytes();
    ResetTable();
  }

  void ResetTable() {
    buckets.assign(kInitialBuckets, nullptr);
    buckets.shrink_to_fit();
    size_t entry_bytes = budget - fixed - buckets.size() * sizeof(Entry*);
    small_target = entry_bytes / 10;
    main_capacity = entry_bytes - small_target;
    SetUsed(fixed + buckets.size() * sizeof(Entry*));
  }

  size_t Used() const { return used.load(std::memory_order_relaxed); }
  void SetUsed(size_t bytes) { used.store(bytes, std::memory_order_relaxed); }
  size_t Count() const { return count.load(std::memory_order_relaxed); }
  void SetCount(size_t n) { count.store(n, std::memory_order_relaxed); }

  Entry*& Bucket(uint64_t hash) { return buckets[hash & (buckets.size() - 1)]; }

  Entry* Find(uint64_t hash, std::string_view key) {
    for (Entry* e = Bucket(hash); e != nullptr; e = e->chain) {
      if (e->hash == hash && e->key() == key) return e;
    }
    return nullptr;
  }

  Fifo& QueueOf(const Entry* e) { return e->queue == Queue::kSmall ? small : main; }

  void Link(Entry* e) {
    Entry*& head = Bucket(e->hash);
    e->chain = head;
    head = e;
    QueueOf(e).PushTail(e);
    SetUsed(Used() + e->charge());
    SetCount(Count() + 1);
  }

  void Erase(Entry* e) {
    Entry** link = &Bucket(e->hash);
    while (*link != e) link = &(*link)->chain;
    *link = e->chain;
    QueueOf(e).Unlink(e);
    SetUsed(Used() - e->charge());
    SetCount(Count() - 1);
    FreeEntry(e);
  }

  // How many recent ghost additions count: as many entries as the main queue holds when full,
  // estimated from the average size of the entries it holds now.
  uint64_t GhostLimit() const {
    if (main.count == 0) return ghost.slot_count();
    return std::max<uint64_t>(1, main_capacity * main.count / main.bytes);
  }

  // Small queue: an entry hit while there moves to main; the first one never hit is dropped and
  // remembered in the ghost. False if the whole queue moved to main without dropping anything.
  bool EvictFromSmall() {
    while (Entry* e = small.head) {
      if (e->frequency > 0) {
        small.Unlink(e);
        e->frequency = 0;
        e->queue = Queue::kMain;
        main.PushTail(e);
        continue;
      }
      ghost.Add(e->hash);
      Erase(e);
      Bump(evictions);
      return true;
    }
    return false;
  }

  // Main queue: an entry hit since it last passed the head goes round again one count poorer.
  bool EvictFromMain() {
    while (Entry* e = main.head) {
      if (e->frequency > 0) {
        --e->frequency;
        main.Unlink(e);
        main.PushTail(e);
        continue;
      }
      Erase(e);
      Bump(evictions);
      return true;
    }
    return false;
  }

  bool EvictOne() {
    if (small.head != nullptr && (small.bytes >= small_target || main.head == nullptr)) {
      if (EvictFromSmall()) return true;
    }
    return EvictFromMain();
  }

  // Bytes a bucket-array doubling would add if the next entry needs one. At most one entry per
  // two buckets: a hit then walks 1.25 entries on average instead of 1.5 at load factor 1, and
  // every entry walked is a cache miss once the cache outgrows the CPU's (8 more bytes an entry).
  size_t PendingGrowth() const {
    return 2 * (Count() + 1) > buckets.size() ? buckets.size() * sizeof(Entry*) : 0;
  }

  // Evicts until `charge` more bytes fit; grows the bucket array only if that fits too, so a
  // full shard holds at most one entry per bucket instead of outgrowing its budget. The caller
  // has checked that `charge` fits in an empty shard.
  void MakeRoom(size_t charge) {
    while (Used() + charge + PendingGrowth() > budget) {
      if (!EvictOne()) break;
    }
    size_t growth = PendingGrowth();
    if (growth == 0 || Used() + charge + growth > budget) return;
    std::vector<Entry*> grown(buckets.size() * 2, nullptr);
    size_t mask = grown.size() - 1;
    for (Entry* head : buckets) {
      while (head != nullptr) {
        Entry* next = head->chain;
        head->chain = grown[head->hash & mask];
        grown[head->hash & mask] = head;
        head = next;
      }
    }
    buckets.swap(grown);
    SetUsed(Used() + growth);
  }

  void EraseAll() {
    for (Fifo* q : {&small, &main}) {
      while (Entry* e = q->head) {
        q->Unlink(e);
        FreeEntry(e);
      }
    }
    SetCount(0);
  }
};

std::optional<std::string> CacheOptions::Validate(const CacheOptions& options) {
  if (options.shard_count == 0 || !std::has_single_bit(options.shard_count)) {
    return "cache shard_count must be a power of two, got " + std::to_string(options.shard_count);
  }
  if (options.shard_count > 65536) {
    return "cache shard_count must be at most 65536, got " + std::to_string(options.shard_count);
  }
  if (options.capacity_bytes < options.shard_count * kMinShardBytes) {
    return "cache capacity_bytes must be at least " +
           std::to_string(options.shard_count * kMinShardBytes) + " (" +
           std::to_string(kMinShardBytes) + " per shard), got " +
           std::to_string(options.capacity_bytes);
  }
  if (options.negative_ttl.count() <= 0) {
    return "cache negative_ttl must be positive, got " +
           std::to_string(options.negative_ttl.count()) + " ms";
  }
  return std::nullopt;
}

AnswerCache::AnswerCache(const CacheOptions& options, NowFn now)
    : capacity_bytes_(options.capacity_bytes),
      shard_count_(options.shard_count),
      shard_mask_(options.shard_count - 1),
      negative_ttl_(options.negative_ttl),
      now_(now ? std::move(now) : NowFn(&Clock::now)) {
  if (auto error = CacheOptions::Validate(options)) throw std::invalid_argument(*error);
  shards_ = std::make_unique<Shard[]>(shard_count_);
  for (size_t i = 0; i < shard_count_; ++i) shards_[i].Init(capacity_bytes_ / shard_count_);
}

AnswerCache::~AnswerCache() {
  for (size_t i = 0; i < shard_count_; ++i) shards_[i].EraseAll();
}

AnswerCache::Shard& AnswerCache::ShardFor(uint64_t hash) const {
  return shards_[(hash >> 32) & shard_mask_];
}

LookupResult AnswerCache::LookupImpl(std::string_view key, Visit visit, const void* ctx) {
  uint64_t hash = HashKey(key);
  Shard& shard = ShardFor(hash);
  std::unique_lock lock(shard.mu, std::try_to_lock);
  if (!lock.owns_lock()) {
    shard.contended.fetch_add(1, std::memory_order_relaxed);
    return LookupResult::kContended;
  }
  Entry* e = shard.Find(hash, key);
  if (e == nullptr) {
    Bump(shard.misses);
    return LookupResult::kMiss;
  }
  if (e->negative && now_() >= e->expires) {
    shard.Erase(e);
    Bump(shard.misses);
    return LookupResult::kMiss;
  }
  if (e->frequency < kMaxFrequency) ++e->frequency;
  if (e->negative) {
    Bump(shard.negative_hits);
    return LookupResult::kNegativeHit;
  }
  Bump(shard.hits);
  visit(ctx, std::span<const uint8_t>(e->value_bytes(), e->value_size));
  return LookupResult::kHit;
}

uint64_t AnswerCache::HashOf(std::string_view key) {
  return HashKey(key);
}

void AnswerCache::PrefetchBucket(uint64_t hash) {
  Shard& shard = ShardFor(hash);
  std::unique_lock lock(shard.mu, std::try_to_lock);
  if (!lock.owns_lock()) return;
  __builtin_prefetch(&shard.Bucket(hash));
}

void AnswerCache::PrefetchEntry(uint64_t hash) {
  Shard& shard = ShardFor(hash);
  std::unique_lock lock(shard.mu, std::try_to_lock);
  if (!lock.owns_lock()) return;
  const auto* e = reinterpret_cast<const char*>(shard.Bucket(hash));
  if (e == nullptr) return;
  // The header and key, and the first lines of the value (a typical answer is 100-300 bytes).
  // A prefetch never faults, so lines past the entry's end are harmless.
  for (int line = 0; line < 4; ++line) __builtin_prefetch(e + 64 * line);
}

std::optional<std::vector<uint8_t>> AnswerCache::Get(std::string_view key) {
  std::optional<std::vector<uint8_t>> out;
  Lookup(key, [&](std::span<const uint8_t> value) { out.emplace(value.begin(), value.end()); });
  return out;
}

bool AnswerCache::InsertImpl(std::string_view key, std::span<const uint8_t> value, bool negative,
                             std::chrono::milliseconds ttl, const uint64_t* ticket) {
  uint64_t hash = HashKey(key);
  Shard& shard = ShardFor(hash);
  Clock::time_point expires = negative ? now_() + ttl : Clock::time_point{};
  size_t charge = kEntryOverhead + key.size() + value.size();
  std::lock_guard lock(shard.mu);
  if (ticket != nullptr && shard.epoch.load(std::memory_order_relaxed) != *ticket) {
    Bump(shard.stale_fills);
    return false;
  }
  Queue queue = Queue::kSmall;
  uint8_t frequency = 0;
  if (Entry* old = shard.Find(hash, key)) {
    // A replacement keeps its place in S3-FIFO's eyes: same queue, same frequency.
    queue = old->queue;
    frequency = old->frequency;
    shard.Erase(old);
  } else if (shard.ghost.Take(hash, shard.GhostLimit())) {
    queue = Queue::kMain;
  }
  // Buckets never shrink, so what does not fit beside them now never will: refuse before
  // evicting anything for it.
  if (key.size() > std::numeric_limits<uint32_t>::max() ||
      value.size() > std::numeric_limits<uint32_t>::max() ||
      charge > shard.budget - shard.fixed - shard.buckets.size() * sizeof(Entry*)) {
    Bump(shard.rejected);
    return false;
  }
  shard.MakeRoom(charge);
  void* memory = ::operator new(sizeof(Entry) + key.size() + value.size());
  auto* e = new (memory) Entry{nullptr,
                               nullptr,
                               nullptr,
                               hash,
                               expires,
                               static_cast<uint32_t>(key.size()),
                               static_cast<uint32_t>(value.size()),
                               frequency,
                               queue,
                               negative};
  if (!key.empty()) std::memcpy(e->key_bytes(), key.data(), key.size());
  if (!value.empty()) std::memcpy(e->value_bytes(), value.data(), value.size());
  shard.Link(e);
  Bump(shard.inserts);
  return true;
}

bool AnswerCache::Insert(std::string_view key, std::span<const uint8_t> value) {
  return InsertImpl(key, value, false, {}, nullptr);
}

uint64_t AnswerCache::FillTicket(std::string_view key) const {
  // Acquire: the storage read that follows cannot be ordered before this load.
  return ShardFor(HashKey(key)).epoch.load(std::memory_order_acquire);
}

bool AnswerCache::InsertIfFresh(std::string_view key, std::span<const uint8_t> value,
                                uint64_t ticket) {
  return InsertImpl(key, value, false, {}, &ticket);
}

bool AnswerCache::InsertNegative(std::string_view key) {
  return InsertImpl(key, {}, true, negative_ttl_, nullptr);
}

bool AnswerCache::InsertNegative(std::string_view key, std::chrono::milliseconds ttl) {
  return InsertImpl(key, {}, true, ttl, nullptr);
}

bool AnswerCache::InsertNegativeIfFresh(std::string_view key, uint64_t ticket) {
  return InsertImpl(key, {}, true, negative_ttl_, &ticket);
}

bool AnswerCache::InsertNegativeIfFresh(std::string_view key, uint64_t ticket,
                                        std::chrono::milliseconds ttl) {
  return InsertImpl(key, {}, true, ttl, &ticket);
}

void AnswerCache::Invalidate(std::string_view key) {
  uint64_t hash = HashKey(key);
  Shard& shard = ShardFor(hash);
  std::lock_guard lock(shard.mu);
  if (Entry* e = shard.Find(hash, key)) shard.Erase(e);
  shard.epoch.fetch_add(1, std::memory_order_release);
  Bump(shard.invalidations);
}

void AnswerCache::Clear() {
  for (size_t i = 0; i < shard_count_; ++i) {
    Shard& shard = shards_[i];
    std::lock_guard lock(shard.mu);
    shard.EraseAll();
    shard.ghost.Clear();
    shard.ResetTable();
    shard.epoch.fetch_add(1, std::memory_order_release);
  }
}

size_t AnswerCache::bytes_used() const {
  size_t total = 0;
  for (size_t i = 0; i < shard_count_; ++i) total += shards_[i].Used();
  return total;
}

size_t AnswerCache::entries() const {
  size_t total = 0;
  for (size_t i = 0; i < shard_count_; ++i) total += shards_[i].Count();
  return total;
}

AnswerCache::Stats AnswerCache::stats() const {
  Stats s;
  auto get = [](const std::atomic<uint64_t>& c) { return c.load(std::memory_order_relaxed); };
  for (size_t i = 0; i < shard_count_; ++i) {
    const Shard& shard = shards_[i];
    s.hits += get(shard.hits);
    s.negative_hits += get(shard.negative_hits);
    s.misses += get(shard.misses);
    s.contended += get(shard.contended);
    s.inserts += get(shard.inserts);
    s.evictions += get(shard.evictions);
    s.invalidations += get(shard.invalidations);
    s.stale_fills += get(shard.stale_fills);
    s.rejected += get(shard.rejected);
    s.bytes_used += shard.Used();
    s.entries += shard.Count();
  }
  return s;
}

}  // namespace idnode::cache
