// AnswerCache cost per hit against the floor of a plain std::unordered_map<std::string,
// std::string> lookup of the same keys (no lock, no eviction, no stats), the bytes each cached
// answer really costs (accounted by the cache, and measured on the heap with mallinfo2), and the
// hit ratio of S3-FIFO against a byte-budgeted LRU on a Zipf workload crossed by a one-time scan.
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <algorithm>
#include <cmath>
#include <list>
#include <numeric>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "idnode/cache/answer_cache.h"

namespace {

using idnode::cache::AnswerCache;
using idnode::cache::CacheOptions;
using idnode::cache::kEntryOverhead;
using idnode::cache::LookupResult;

constexpr size_t kValueSize = 256;  // a typical encoded resolution answer

std::string KeyOf(size_t i) {
  return "88.100." + std::to_string(i % 1000) + "/sn" + std::to_string(1000000 + i);
}

std::vector<std::string> Keys(size_t n) {
  std::vector<std::string> keys;
  keys.reserve(n);
  for (size_t i = 0; i < n; ++i) keys.push_back(KeyOf(i));
  return keys;
}

// A random visiting order, so that neither side profits from the prefetcher.
std::vector<uint32_t> Order(size_t n, unsigned seed = 7) {
  std::vector<uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937(seed));
  return order;
}

// Room for every key with no eviction: the comparison is of hits only.
CacheOptions RoomFor(size_t n) {
  CacheOptions options;
  options.capacity_bytes = n * (kEntryOverhead + 32 + kValueSize) * 2 + (64u << 20);
  return options;
}

size_t HeapInUse() {
  return mallinfo2().uordblks;
}

// Shared by the threads of one run (Google Benchmark runs them on the same fixture function).
AnswerCache* shared_cache = nullptr;
std::vector<std::string>* shared_keys = nullptr;

void BM_CacheHit(benchmark::State& state) {
  auto n = static_cast<size_t>(state.range(0));
  if (state.thread_index() == 0) {
    shared_keys = new std::vector<std::string>(Keys(n));
    shared_cache = new AnswerCache(RoomFor(n));
    std::vector<uint8_t> value(kValueSize, 0x5A);
    for (const auto& k : *shared_keys) {
      if (!shared_cache->Insert(k, value)) state.SkipWithError("insert refused");
    }
  }
  auto order = Order(n, 7 + static_cast<unsigned>(state.thread_index()));
  size_t i = 0;
  uint64_t sum = 0;
  uint64_t contended = 0;
  for (auto _ : state) {
    const std::string& key = (*shared_keys)[order[i++ % n]];
    auto result = shared_cache->Lookup(key, [&](std::span<const uint8_t> v) { sum += v[0]; });
    contended += result == LookupResult::kContended ? 1 : 0;
  }
  benchmark::DoNotOptimize(sum);
  state.counters["contended"] =
      benchmark::Counter(static_cast<double>(contended), benchmark::Counter::kAvgIterations);
  if (state.thread_index() == 0) {
    delete shared_cache;
    delete shared_keys;
  }
}
BENCHMARK(BM_CacheHit)->Arg(1 << 16)->Arg(1 << 20);
BENCHMARK(BM_CacheHit)->Arg(1 << 20)->Threads(2)->UseRealTime();

void BM_UnorderedMapHit(benchmark::State& state) {
  auto n = static_cast<size_t>(state.range(0));
  auto keys = Keys(n);
  std::unordered_map<std::string, std::string> map;
  for (const auto& k : keys) map.emplace(k, std::string(kValueSize, '\x5A'));
  auto order = Order(n);
  size_t i = 0;
  uint64_t sum = 0;
  for (auto _ : state) {
    auto it = map.find(keys[order[i++ % n]]);
    sum += static_cast<uint8_t>(it->second[0]);
  }
  benchmark::DoNotOptimize(sum);
}
BENCHMARK(BM_UnorderedMapHit)->Arg(1 << 16)->Arg(1 << 20);

// Bytes per entry: what the cache charges against its budget, what the heap really gave it,
// and the same heap figure for the unordered_map. Reported per million entries too.
void BM_BytesPerEntry(benchmark::State& state) {
  auto n = static_cast<size_t>(state.range(0));
  auto keys = Keys(n);
  std::vector<uint8_t> value(kValueSize, 0x5A);
  for (auto _ : state) {
    auto* cache = new AnswerCache(RoomFor(n));
    size_t heap_before = HeapInUse();  // after the fixed part (shards, ghost tables)
    size_t empty = cache->bytes_used();
    for (const auto& k : keys) benchmark::DoNotOptimize(cache->Insert(k, value));
    double accounted = static_cast<double>(cache->bytes_used() - empty) / static_cast<double>(n);
    double cache_heap = static_cast<double>(HeapInUse() - heap_before) / static_cast<double>(n);
    delete cache;

    heap_before = HeapInUse();
    auto* map = new std::unordered_map<std::string, std::string>;
    for (const auto& k : keys) map->emplace(k, std::string(kValueSize, '\x5A'));
    double map_heap = static_cast<double>(HeapInUse() - heap_before) / static_cast<double>(n);
    delete map;

    state.counters["cache_accounted_B"] = accounted;
    state.counters["cache_heap_B"] = cache_heap;
    state.counters["map_heap_B"] = map_heap;
    state.counters["cache_peak_bytes_per_1M"] = benchmark::Counter(
        accounted * 1e6, benchmark::Counter::kDefaults, benchmark::Counter::kIs1024);
  }
  state.counters["key_B"] = static_cast<double>(keys[n / 2].size());
  state.counters["value_B"] = kValueSize;
}
BENCHMARK(BM_BytesPerEntry)->Arg(1 << 20)->Iterations(1)->Unit(benchmark::kMillisecond);

// ---- Hit ratio: S3-FIFO against LRU -----------------------------------------------------------

// The textbook LRU with the same byte charge per entry, for comparison only.
class LruCache {
 public:
  explicit LruCache(size_t budget) : budget_(budget) {}
  bool Lookup(const std::string& key) {
    auto it = index_.find(key);
    if (it == index_.end()) return false;
    order_.splice(order_.begin(), order_, it->second);
    return true;
  }
  void Insert(const std::string& key, size_t value_size) {
    size_t charge = kEntryOverhead + key.size() + value_size;
    while (used_ + charge > budget_ && !order_.empty()) {
      used_ -= order_.back().second;
      index_.erase(order_.back().first);
      order_.pop_back();
    }
    order_.emplace_front(key, charge);
    index_[key] = order_.begin();
    used_ += charge;
  }

 private:
  size_t budget_;
  size_t used_ = 0;
  std::list<std::pair<std::string, size_t>> order_;
  std::unordered_map<std::string, std::list<std::pair<std::string, size_t>>::iterator> index_;
};

// 200k hot-ish keys drawn Zipf(0.99); the cache holds ~10% of their bytes. Halfway through, one
// pass over 200k never-again keys (an export, a crawler). Hit ratio counted after warm-up.
template <typename Hit, typename Fill>
double RunZipfWithScan(Hit hit, Fill fill) {
  constexpr size_t kUniverse = 200000;
  constexpr size_t kRequests = 2000000;
  constexpr size_t kScan = 200000;
  std::vector<double> cdf(kUniverse);
  double total = 0;
  for (size_t i = 0; i < kUniverse; ++i) cdf[i] = total += 1.0 / std::pow(double(i + 1), 0.99);
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> uniform(0, total);
  auto keys = Keys(kUniverse);
  size_t hits = 0;
  size_t counted = 0;
  for (size_t r = 0; r < kRequests; ++r) {
    if (r == kRequests / 2) {
      for (size_t s = 0; s < kScan; ++s) {
        std::string cold = "88.200.1/scan" + std::to_string(s);
        if (!hit(cold)) fill(cold);
      }
    }
    size_t k = std::lower_bound(cdf.begin(), cdf.end(), uniform(rng)) - cdf.begin();
    bool h = hit(keys[std::min(k, kUniverse - 1)]);
    if (!h) fill(keys[std::min(k, kUniverse - 1)]);
    if (r >= kRequests / 10) {
      ++counted;
      hits += h ? 1 : 0;
    }
  }
  return static_cast<double>(hits) / static_cast<double>(counted);
}

constexpr size_t kHitRatioBudget = 200000 / 10 * (kEntryOverhead + 24 + kValueSize);

void BM_HitRatioS3Fifo(benchmark::State& state) {
  for (auto _ : state) {
    CacheOptions options;
    options.capacity_bytes = kHitRatioBudget;
    options.shard_count = 16;
    AnswerCache cache(options);
    std::vector<uint8_t> value(kValueSize, 1);
    double ratio = RunZipfWithScan(
        [&](const std::string& k) {
          return cache.Lookup(k, [](std::span<const uint8_t>) {}) == LookupResult::kHit;
        },
        [&](const std::string& k) { cache.Insert(k, value); });
    state.counters["hit_ratio"] = ratio;
  }
}
BENCHMARK(BM_HitRatioS3Fifo)->Iterations(1)->Unit(benchmark::kMillisecond);

void BM_HitRatioLru(benchmark::State& state) {
  for (auto _ : state) {
    LruCache cache(kHitRatioBudget);
    double ratio = RunZipfWithScan([&](const std::string& k) { return cache.Lookup(k); },
                                   [&](const std::string& k) { cache.Insert(k, kValueSize); });
    state.counters["hit_ratio"] = ratio;
  }
}
BENCHMARK(BM_HitRatioLru)->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace

// main() is in registry_bench.cc: these benchmarks run in the registry binary.
