// AnswerCache: lookups and fills, the byte budget, S3-FIFO's scan resistance and ghost, negative
// entries, the epoch protocol against stale fills, contended lookups, and concurrent use.
#include "idnode/cache/answer_cache.h"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <future>
#include <new>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

// Counts this thread's heap allocations, to check that a hit allocates nothing. GCC cannot see
// that these replacements pair malloc with free, hence the pragma.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
namespace {
thread_local size_t allocations = 0;
}  // namespace

void* operator new(size_t size) {
  ++allocations;
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, size_t) noexcept {
  std::free(p);
}

namespace idnode::cache {
namespace {

using std::chrono::milliseconds;

std::vector<uint8_t> Bytes(std::string_view s) {
  return {s.begin(), s.end()};
}

std::vector<uint8_t> Filled(size_t size, uint8_t seed) {
  std::vector<uint8_t> v(size);
  for (size_t i = 0; i < size; ++i) v[i] = static_cast<uint8_t>(seed + i);
  return v;
}

CacheOptions Options(size_t capacity, size_t shards) {
  CacheOptions o;
  o.capacity_bytes = capacity;
  o.shard_count = shards;
  return o;
}

// A clock the test moves by hand.
struct FakeClock {
  AnswerCache::Clock::time_point now{std::chrono::hours(1)};
  AnswerCache::NowFn fn() {
    return [this] { return now; };
  }
};

TEST(AnswerCacheTest, HitMissAndReplace) {
  AnswerCache cache(Options(1 << 20, 8));
  auto value = Bytes("encoded answer");
  EXPECT_TRUE(cache.Insert("88.100.1/sn0001", value));

  std::vector<uint8_t> seen;
  auto result = cache.Lookup("88.100.1/sn0001",
                             [&](std::span<const uint8_t> v) { seen.assign(v.begin(), v.end()); });
  EXPECT_EQ(result, LookupResult::kHit);
  EXPECT_EQ(seen, value);

  bool called = false;
  EXPECT_EQ(cache.Lookup("88.100.1/sn0002", [&](std::span<const uint8_t>) { called = true; }),
            LookupResult::kMiss);
  EXPECT_FALSE(called);

  EXPECT_TRUE(cache.Insert("88.100.1/sn0001", Bytes("newer")));
  EXPECT_EQ(cache.Get("88.100.1/sn0001"), Bytes("newer"));
  EXPECT_EQ(cache.entries(), 1u);

  auto stats = cache.stats();
  EXPECT_EQ(stats.hits, 2u);
  EXPECT_EQ(stats.misses, 1u);
  EXPECT_EQ(stats.inserts, 2u);
  EXPECT_EQ(stats.entries, 1u);
  EXPECT_EQ(stats.bytes_used, cache.bytes_used());
}

TEST(AnswerCacheTest, PrefetchingChangesNothingAndAllocatesNothing) {
  AnswerCache cache(Options(1 << 20, 8));
  ASSERT_TRUE(cache.Insert("88.100.1/A", Bytes("a")));
  const auto before = cache.stats();
  size_t allocated = allocations;
  for (std::string_view key : {"88.100.1/A", "88.100.1/ABSENT", ""}) {
    uint64_t h = AnswerCache::HashOf(key);
    cache.PrefetchBucket(h);
    cache.PrefetchEntry(h);
  }
  EXPECT_EQ(allocations, allocated);
  const auto after = cache.stats();
  EXPECT_EQ(after.hits, before.hits);
  EXPECT_EQ(after.misses, before.misses);
  EXPECT_EQ(after.entries, before.entries);
  EXPECT_EQ(cache.Get("88.100.1/A"), Bytes("a"));
}

TEST(AnswerCacheTest, EmptyKeyAndEmptyValue) {
  AnswerCache cache(Options(1 << 20, 8));
  EXPECT_TRUE(cache.Insert("", Bytes("x")));
  EXPECT_TRUE(cache.Insert("k", {}));
  EXPECT_EQ(cache.Get(""), Bytes("x"));
  EXPECT_EQ(cache.Get("k"), std::vector<uint8_t>{});
}

TEST(AnswerCacheTest, ChargesKeyValueAndOverheadPerEntry) {
  AnswerCache cache(Options(1 << 20, 1));
  size_t before = cache.bytes_used();
  ASSERT_TRUE(cache.Insert("0.na/88.100", Filled(300, 1)));
  EXPECT_EQ(cache.bytes_used() - before, kEntryOverhead + 11 + 300);
  cache.Invalidate("0.na/88.100");
  EXPECT_EQ(cache.bytes_used(), before);
}

TEST(AnswerCacheTest, HitDoesNotAllocate) {
  AnswerCache cache(Options(1 << 20, 8));
  ASSERT_TRUE(cache.Insert("88.100.1/sn0001", Filled(200, 3)));
  size_t sum = 0;
  size_t before = allocations;
  auto result =
      cache.Lookup("88.100.1/sn0001", [&](std::span<const uint8_t> v) { sum += v.size(); });
  EXPECT_EQ(allocations, before);
  EXPECT_EQ(result, LookupResult::kHit);
  EXPECT_EQ(sum, 200u);
}

TEST(AnswerCacheTest, ValidatesOptions) {
  EXPECT_EQ(CacheOptions::Validate(Options(1 << 20, 64)), std::nullopt);
  EXPECT_NE(CacheOptions::Validate(Options(1 << 20, 0)), std::nullopt);
  EXPECT_NE(CacheOptions::Validate(Options(1 << 20, 48)), std::nullopt);
  EXPECT_NE(CacheOptions::Validate(Options(1 << 30, 1 << 17)), std::nullopt);
  EXPECT_NE(CacheOptions::Validate(Options(64 * kMinShardBytes - 1, 64)), std::nullopt);
  EXPECT_EQ(CacheOptions::Validate(Options(64 * kMinShardBytes, 64)), std::nullopt);
  CacheOptions zero_ttl = Options(1 << 20, 64);
  zero_ttl.negative_ttl = milliseconds(0);
  EXPECT_NE(CacheOptions::Validate(zero_ttl), std::nullopt);
  EXPECT_THROW(AnswerCache(Options(1000, 64)), std::invalid_argument);
}

TEST(AnswerCacheTest, ByteBudgetNeverExceeded) {
  constexpr size_t kCapacity = 1 << 20;
  AnswerCache cache(Options(kCapacity, 16));  // 64 KiB a shard
  ASSERT_LE(cache.bytes_used(), kCapacity);
  std::mt19937_64 rng(42);
  std::unordered_map<std::string, std::vector<uint8_t>> last;  // what each key was last set to
  size_t refused = 0;
  for (int i = 0; i < 100000; ++i) {
    std::string key = "88.100." + std::to_string(rng() % 20000) + "/" +
                      std::string(rng() % 48, static_cast<char>('a' + rng() % 26));
    // Mostly answer-sized values, some large, a few larger than a shard.
    size_t size = rng() % 100 == 0 ? rng() % 100000 : rng() % 2000;
    auto value = Filled(size, static_cast<uint8_t>(rng()));
    bool inserted = cache.Insert(key, value);
    if (inserted) {
      last[key] = std::move(value);
    } else {
      ++refused;
      last.erase(key);
    }
    ASSERT_LE(cache.bytes_used(), kCapacity) << "after insert " << i;
  }
  EXPECT_GT(refused, 0u);
  auto stats = cache.stats();
  EXPECT_EQ(stats.rejected, refused);
  EXPECT_GT(stats.evictions, 0u);
  EXPECT_GT(stats.entries, 100u);
  // What survived is what was inserted last.
  size_t found = 0;
  for (const auto& [key, value] : last) {
    if (auto got = cache.Get(key)) {
      ++found;
      ASSERT_EQ(*got, value) << key;
    }
  }
  EXPECT_EQ(found, cache.entries());
}

TEST(AnswerCacheTest, RefusesEntryLargerThanShard) {
  AnswerCache cache(Options(64 * kMinShardBytes, 64));
  ASSERT_TRUE(cache.Insert("small", Filled(100, 1)));
  size_t used = cache.bytes_used();
  EXPECT_FALSE(cache.Insert("huge", Filled(kMinShardBytes, 2)));
  EXPECT_EQ(cache.Get("huge"), std::nullopt);
  EXPECT_EQ(cache.Get("small"), Filled(100, 1));  // nothing was evicted for it
  EXPECT_EQ(cache.bytes_used(), used);
  EXPECT_EQ(cache.stats().rejected, 1u);
}

TEST(AnswerCacheTest, NegativeEntriesExpire) {
  FakeClock clock;
  CacheOptions options = Options(1 << 20, 8);
  options.negative_ttl = milliseconds(5000);
  AnswerCache cache(options, clock.fn());

  ASSERT_TRUE(cache.InsertNegative("88.100.1/gone", milliseconds(10)));
  ASSERT_TRUE(cache.InsertNegative("88.100.1/default"));
  bool called = false;
  auto visitor = [&](std::span<const uint8_t>) { called = true; };
  EXPECT_EQ(cache.Lookup("88.100.1/gone", visitor), LookupResult::kNegativeHit);
  EXPECT_EQ(cache.Get("88.100.1/gone"), std::nullopt);

  clock.now += milliseconds(9);
  EXPECT_EQ(cache.Lookup("88.100.1/gone", visitor), LookupResult::kNegativeHit);
  clock.now += milliseconds(1);
  EXPECT_EQ(cache.Lookup("88.100.1/gone", visitor), LookupResult::kMiss);
  EXPECT_EQ(cache.entries(), 1u);  // the expired entry was removed

  clock.now += milliseconds(4989);
  EXPECT_EQ(cache.Lookup("88.100.1/default", visitor), LookupResult::kNegativeHit);
  clock.now += milliseconds(1);
  EXPECT_EQ(cache.Lookup("88.100.1/default", visitor), LookupResult::kMiss);
  EXPECT_EQ(cache.entries(), 0u);
  EXPECT_FALSE(called);

  auto stats = cache.stats();
  EXPECT_EQ(stats.negative_hits, 4u);
  EXPECT_EQ(stats.misses, 2u);
}

TEST(AnswerCacheTest, PositiveInsertReplacesNegativeEntry) {
  AnswerCache cache(Options(1 << 20, 8));
  ASSERT_TRUE(cache.InsertNegative("88.100.1/new"));
  ASSERT_TRUE(cache.Insert("88.100.1/new", Bytes("created")));
  EXPECT_EQ(cache.Get("88.100.1/new"), Bytes("created"));
  EXPECT_EQ(cache.entries(), 1u);
}

TEST(AnswerCacheTest, HotSetSurvivesScan) {
  constexpr size_t kCapacity = 256 << 10;
  AnswerCache cache(Options(kCapacity, 4));
  constexpr int kHot = 100;
  auto hot_key = [](int i) { return "88.100.1/hot" + std::to_string(i); };
  for (int i = 0; i < kHot; ++i) ASSERT_TRUE(cache.Insert(hot_key(i), Filled(200, 7)));
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < kHot; ++i) ASSERT_TRUE(cache.Get(hot_key(i)).has_value());
  }
  // A one-time scan of cold keys, 10x the cache, each missed then filled.
  for (int i = 0; i < 8000; ++i) {
    std::string key = "88.100.2/cold" + std::to_string(i);
    ASSERT_EQ(cache.Get(key), std::nullopt);
    ASSERT_TRUE(cache.Insert(key, Filled(300, 9)));
  }
  ASSERT_GT(cache.stats().evictions, 7000u);
  int hits = 0;
  for (int i = 0; i < kHot; ++i) hits += cache.Get(hot_key(i)).has_value() ? 1 : 0;
  EXPECT_GE(hits, kHot * 9 / 10);
}

TEST(AnswerCacheTest, GhostHitInsertsIntoMain) {
  AnswerCache cache(Options(64 << 10, 1));
  ASSERT_TRUE(cache.Insert("victim", Filled(200, 1)));
  // Fill until the first eviction: the small queue's head, never hit, goes to the ghost.
  int cold = 0;
  while (cache.stats().evictions == 0) {
    ASSERT_TRUE(cache.Insert("cold" + std::to_string(cold++), Filled(200, 2)));
  }
  ASSERT_EQ(cache.Get("victim"), std::nullopt);

  // Back from the ghost: into main. A never-seen key goes to small.
  ASSERT_TRUE(cache.Insert("victim", Filled(200, 3)));
  ASSERT_TRUE(cache.Insert("stranger", Filled(200, 4)));
  // A scan flushes small and leaves main alone, whether or not its entries were hit.
  for (int i = 0; i < 2000; ++i) {
    ASSERT_TRUE(cache.Insert("scan" + std::to_string(i), Filled(200, 5)));
  }
  EXPECT_EQ(cache.Get("victim"), Filled(200, 3));
  EXPECT_EQ(cache.Get("stranger"), std::nullopt);
}

TEST(AnswerCacheTest, InsertIfFreshRefusedAfterInvalidate) {
  AnswerCache cache(Options(1 << 20, 8));
  uint64_t ticket = cache.FillTicket("88.100.1/a");
  cache.Invalidate("88.100.1/a");  // a write committed while the reader was at storage
  EXPECT_FALSE(cache.InsertIfFresh("88.100.1/a", Bytes("stale"), ticket));
  EXPECT_FALSE(cache.InsertNegativeIfFresh("88.100.1/a", ticket));
  EXPECT_EQ(cache.Get("88.100.1/a"), std::nullopt);
  EXPECT_EQ(cache.stats().stale_fills, 2u);

  uint64_t fresh = cache.FillTicket("88.100.1/a");
  EXPECT_NE(fresh, ticket);
  EXPECT_TRUE(cache.InsertIfFresh("88.100.1/a", Bytes("fresh"), fresh));
  EXPECT_EQ(cache.Get("88.100.1/a"), Bytes("fresh"));

  // A fill that lands before the invalidation is erased by it.
  cache.Invalidate("88.100.1/a");
  EXPECT_EQ(cache.Get("88.100.1/a"), std::nullopt);
  EXPECT_EQ(cache.stats().invalidations, 2u);
}

TEST(AnswerCacheTest, InvalidateRemovesNegativeEntry) {
  AnswerCache cache(Options(1 << 20, 8));
  ASSERT_TRUE(cache.InsertNegative("88.100.1/absent"));
  ASSERT_EQ(cache.Lookup("88.100.1/absent", [](std::span<const uint8_t>) {}),
            LookupResult::kNegativeHit);
  cache.Invalidate("88.100.1/absent");
  EXPECT_EQ(cache.Lookup("88.100.1/absent", [](std::span<const uint8_t>) {}), LookupResult::kMiss);
  EXPECT_EQ(cache.entries(), 0u);
}

TEST(AnswerCacheTest, ClearEmptiesAndRefusesEarlierTickets) {
  AnswerCache cache(Options(1 << 20, 8));
  size_t empty = cache.bytes_used();
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(cache.Insert("k" + std::to_string(i), Filled(50, 1)));
  uint64_t ticket = cache.FillTicket("k1");
  cache.Clear();
  EXPECT_EQ(cache.entries(), 0u);
  EXPECT_EQ(cache.bytes_used(), empty);
  EXPECT_EQ(cache.Get("k1"), std::nullopt);
  EXPECT_FALSE(cache.InsertIfFresh("k1", Bytes("v"), ticket));
}

TEST(AnswerCacheTest, LookupOnBusyShardIsContended) {
  AnswerCache cache(Options(64 << 10, 1));  // one shard: every key shares its lock
  ASSERT_TRUE(cache.Insert("a", Bytes("1")));
  ASSERT_TRUE(cache.Insert("b", Bytes("2")));
  std::promise<void> inside;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::thread holder([&] {
    auto result = cache.Lookup("a", [&](std::span<const uint8_t>) {
      inside.set_value();
      released.wait();  // keeps the shard lock held
    });
    EXPECT_EQ(result, LookupResult::kHit);
  });
  inside.get_future().wait();
  bool called = false;
  EXPECT_EQ(cache.Lookup("b", [&](std::span<const uint8_t>) { called = true; }),
            LookupResult::kContended);
  EXPECT_EQ(cache.Lookup("a", [&](std::span<const uint8_t>) { called = true; }),
            LookupResult::kContended);
  EXPECT_FALSE(called);
  release.set_value();
  holder.join();
  EXPECT_EQ(cache.Get("b"), Bytes("2"));
  auto stats = cache.stats();
  EXPECT_EQ(stats.contended, 2u);
  EXPECT_EQ(stats.hits, 2u);
}

// Four threads read through the cache, fill it from a fake storage, and write (commit, then
// invalidate, then acknowledge). A hit must never show a version older than the last one
// acknowledged before the lookup began, and its bytes must be exactly that version's.
TEST(AnswerCacheTest, ConcurrentFillsAndInvalidationsStayConsistent) {
  constexpr int kKeys = 256;
  constexpr int kThreads = 4;
  constexpr int kOps = 20000;
  AnswerCache cache(Options(64 << 10, 4));
  std::array<std::atomic<uint64_t>, kKeys> committed{};
  std::array<std::atomic<uint64_t>, kKeys> acknowledged{};

  auto key_of = [](int k) { return "88.100.9/" + std::to_string(k); };
  auto encode = [](int k, uint64_t version) {
    std::vector<uint8_t> v(16 + (k * 7 + version) % 200);
    for (int i = 0; i < 8; ++i) v[i] = static_cast<uint8_t>(version >> (8 * i));
    for (size_t i = 8; i < v.size(); ++i) v[i] = static_cast<uint8_t>(k + version + i);
    return v;
  };
  std::atomic<uint64_t> stale{0}, corrupt{0}, hits{0};

  auto worker = [&](int seed) {
    std::mt19937 rng(seed);
    for (int op = 0; op < kOps; ++op) {
      int k = static_cast<int>(rng() % kKeys);
      std::string key = key_of(k);
      if (rng() % 10 == 0) {  // a write
        uint64_t version = committed[k].fetch_add(1) + 1;
        cache.Invalidate(key);
        uint64_t acked = acknowledged[k].load();
        while (acked < version && !acknowledged[k].compare_exchange_weak(acked, version)) {
        }
        continue;
      }
      uint64_t floor = acknowledged[k].load();
      uint64_t seen = 0;
      bool ok = true;
      auto result = cache.Lookup(key, [&](std::span<const uint8_t> v) {
        for (int i = 0; i < 8 && i < static_cast<int>(v.size()); ++i) {
          seen |= uint64_t{v[i]} << (8 * i);
        }
        auto expected = encode(k, seen);
        ok = v.size() == expected.size() && std::equal(v.begin(), v.end(), expected.begin());
      });
      if (result == LookupResult::kHit) {
        hits.fetch_add(1);
        if (seen < floor) stale.fetch_add(1);
        if (!ok) corrupt.fetch_add(1);
      } else if (result == LookupResult::kMiss) {
        uint64_t ticket = cache.FillTicket(key);
        uint64_t version = committed[k].load();
        std::this_thread::yield();  // storage takes time: let writers in
        cache.InsertIfFresh(key, encode(k, version), ticket);
      }
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back(worker, t + 1);
  for (auto& t : threads) t.join();

  EXPECT_EQ(stale.load(), 0u);
  EXPECT_EQ(corrupt.load(), 0u);
  EXPECT_GT(hits.load(), 0u);
  auto stats = cache.stats();
  EXPECT_LE(cache.bytes_used(), cache.capacity_bytes());
  EXPECT_EQ(stats.hits, hits.load());
  // Every key's cached version, if any, is its latest.
  for (int k = 0; k < kKeys; ++k) {
    if (auto v = cache.Get(key_of(k))) {
      EXPECT_EQ(*v, encode(k, committed[k].load())) << k;
    }
  }
}

}  // namespace
}  // namespace idnode::cache
