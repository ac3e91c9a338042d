// The prefix table at a top-level node's scale (issue: 1,000,000 delegated prefixes): its memory
// per prefix, the cost of a lookup that walks three levels up the dots, the time to publish one
// change, and what that adds to a resolution answered from the cache. Beside each, the figure of
// the design it replaced (every thread's own std::map copy, rebuilt whole on every change).
//
//   prefix_bench [--prefixes N] [Google Benchmark flags]
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "idnode/cache/answer_cache.h"
#include "idnode/registry/prefix_table.h"
#include "idnode/registry/registry.h"
#include "idnode/resolver/resolver.h"

namespace {

using idnode::registry::PrefixEntry;
using idnode::registry::PrefixRole;
using idnode::registry::PrefixTable;
namespace prefix_flag = idnode::registry::prefix_flag;

size_t g_prefixes = 1000000;

// Secondary nodes 88.<100..>, each with 1,000 enterprise prefixes 88.<s>.<10000..10999>.
std::vector<std::string> Prefixes(size_t n) {
  std::vector<std::string> out;
  out.reserve(n);
  for (size_t i = 0; out.size() < n; ++i) {
    const size_t secondary = 100 + i / 1001;
    const size_t within = i % 1001;
    out.push_back(within == 0 ? "88." + std::to_string(secondary)
                              : "88." + std::to_string(secondary) + "." +
                                    std::to_string(10000 + within - 1));
  }
  return out;
}

// Bytes malloc has handed out, the large (mmap'd) blocks included.
size_t HeapInUse() {
  struct mallinfo2 info = mallinfo2();
  return info.uordblks + info.hblkhd;
}

struct Fixture {
  std::vector<std::string> prefixes;
  PrefixTable table;
  size_t heap_bytes = 0;             // the table's, measured on the heap
  std::vector<std::string> queries;  // "<enterprise>.7.3": two misses, then the hit
};

Fixture* g = nullptr;

void Build() {
  g = new Fixture;
  g->prefixes = Prefixes(g_prefixes);
  std::vector<std::pair<std::string, PrefixEntry>> entries;
  entries.reserve(g->prefixes.size());
  for (const auto& p : g->prefixes)
    entries.emplace_back(p, PrefixEntry{PrefixRole::kDelegated, prefix_flag::kHasSite});
  const size_t before = HeapInUse();
  g->table.Load(std::move(entries));
  g->heap_bytes = HeapInUse() - before;
  std::mt19937 rng(7);
  for (int i = 0; i < 1 << 16; ++i)
    g->queries.push_back(g->prefixes[rng() % g->prefixes.size()] + ".7.3");
}

void BM_TableMemoryPerPrefix(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(g->table.Snapshot()->size());
  auto view = g->table.Snapshot();
  state.counters["prefixes"] = static_cast<double>(view->size());
  state.counters["heap_bytes_per_prefix"] =
      static_cast<double>(g->heap_bytes) / static_cast<double>(view->size());
  state.counters["slot_bytes_per_prefix"] =
      static_cast<double>(view->MemoryBytes()) / static_cast<double>(view->size());
}

// The old design: a std::map of PrefixState copies; memory per prefix of one copy (each thread
// held its own).
void BM_OldMapMemoryPerPrefix(benchmark::State& state) {
  const size_t before = HeapInUse();
  auto* old = new std::map<std::string, std::pair<std::string, int>, std::less<>>;
  for (const auto& p : g->prefixes) old->emplace(p, std::pair<std::string, int>(p, 2));
  const size_t bytes = HeapInUse() - before;
  for (auto _ : state) benchmark::DoNotOptimize(old->size());
  state.counters["heap_bytes_per_prefix_per_thread"] =
      static_cast<double>(bytes) / static_cast<double>(old->size());
  delete old;
}

// A lookup that walks three levels: "88.123.10456.7.3" misses twice, then finds 88.123.10456.
void BM_NearestThreeLevels(benchmark::State& state) {
  size_t i = 0, found = 0;
  for (auto _ : state) {
    const auto& view = idnode::registry::ThreadView(g->table);
    auto match = view.Nearest(g->queries[i++ & 0xffff]);
    found += match.has_value();
  }
  if (found != static_cast<size_t>(state.iterations())) state.SkipWithError("a lookup missed");
}

void BM_NearestOneLevel(benchmark::State& state) {
  size_t i = 0, found = 0;
  for (auto _ : state) {
    const auto& view = idnode::registry::ThreadView(g->table);
    const auto& q = g->queries[i++ & 0xffff];
    auto match = view.Nearest(std::string_view(q).substr(0, q.size() - 4));
    found += match.has_value();
  }
  if (found != static_cast<size_t>(state.iterations())) state.SkipWithError("a lookup missed");
}

// The old lookup: std::map::find of the exact prefix in the thread's copy.
void BM_OldMapFind(benchmark::State& state) {
  std::map<std::string, int, std::less<>> old;
  for (const auto& p : g->prefixes) old.emplace(p, 2);
  size_t i = 0, found = 0;
  for (auto _ : state) {
    const auto& q = g->queries[i++ & 0xffff];
    found += old.find(std::string_view(q).substr(0, q.size() - 4)) != old.end();
  }
  if (found != static_cast<size_t>(state.iterations())) state.SkipWithError("a lookup missed");
}

// Publishing one change (a prefix delegated, then forgotten) with the whole table loaded.
void BM_PublishOneChange(benchmark::State& state) {
  size_t i = 0;
  for (auto _ : state) {
    std::string name = "99." + std::to_string(i++ % 64);
    g->table.Set(name, PrefixEntry{PrefixRole::kDelegated, prefix_flag::kHasSite});
    g->table.Set(name, PrefixEntry{});
  }
  state.SetItemsProcessed(state.iterations() * 2);
  state.counters["us_per_change"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * 2,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// The old design's cost of one change: every thread rebuilds its copy of the whole table.
void BM_OldRebuildOnChange(benchmark::State& state) {
  for (auto _ : state) {
    std::map<std::string, int, std::less<>> copy;
    for (const auto& p : g->prefixes) copy.emplace(p, 2);
    benchmark::DoNotOptimize(copy.size());
  }
}

// ---- what the table adds to an answer from the cache ----

struct ResolverFixture {
  std::filesystem::path dir;
  std::shared_ptr<idnode::cache::AnswerCache> cache;
  std::unique_ptr<idnode::registry::Registry> registry;
  std::unique_ptr<idnode::resolver::Resolver> resolver;
  std::vector<std::string> handles;
};

ResolverFixture* r = nullptr;

void BuildResolver(bool with_prefixes) {
  r = new ResolverFixture;
  char tmpl[] = "/tmp/prefix_bench.XXXXXX";
  r->dir = mkdtemp(tmpl);
  idnode::cache::CacheOptions co;
  co.capacity_bytes = 64 << 20;
  r->cache = std::make_shared<idnode::cache::AnswerCache>(co);
  idnode::registry::RegistryOptions o;
  o.storage.path = r->dir / "data";
  o.storage.shard_count = 8;
  o.storage.sync_writes = false;
  o.cache = r->cache;
  r->registry = std::move(*idnode::registry::Registry::Open(std::move(o)));
  // The identifiers answered: under enterprise prefixes three levels below a homed prefix.
  r->registry->HomePrefix("86");
  for (int i = 0; i < 4096; ++i) {
    idnode::registry::Operation op;
    op.handle = "86.100." + std::to_string(10000 + i % 1000) + "/SN" + std::to_string(i);
    idnode::proto::Value v;
    v.set_index(1);
    v.set_type("URL");
    v.set_data("https://example.org/products/" + std::to_string(i));
    v.set_permissions(0x0e);
    op.values.push_back(v);
    r->registry->Apply(op);
    r->handles.push_back(op.handle);
  }
  if (with_prefixes) {
    // The million delegations, as a top-level node holds them: 0.NA/<prefix> records with an
    // HS_SITE each, loaded by the bulk path (which places them in the table as writes do).
    const auto names = Prefixes(g_prefixes);
    std::vector<std::vector<std::pair<std::string, std::string>>> by_shard(8);
    for (const auto& p : names) {
      idnode::proto::Record record;
      record.set_handle("0.NA/" + p);
      auto* v = record.add_values();
      v->set_index(1);
      v->set_type("HS_SITE");
      v->set_data("site bytes");
      v->set_permissions(0x0e);
      std::string key = "0.NA/" + p;
      by_shard[r->registry->ShardOf(key)].emplace_back(key, record.SerializeAsString());
    }
    for (uint32_t s = 0; s < 8; ++s) (void)r->registry->PutRecords(s, by_shard[s]);
  }
  r->resolver = std::make_unique<idnode::resolver::Resolver>(*r->registry, r->cache);
  idnode::resolver::Scratch scratch;
  for (const auto& h : r->handles) {
    idnode::resolver::Query q;
    q.handle = h;
    (void)r->resolver->Resolve(q, scratch);  // warm the cache
  }
}

void TearDownResolver() {
  r->resolver.reset();
  r->registry.reset();
  std::filesystem::remove_all(r->dir);
  delete r;
  r = nullptr;
}

void ResolveFromCache(benchmark::State& state) {
  idnode::resolver::Scratch scratch;
  size_t i = 0, hits = 0;
  for (auto _ : state) {
    idnode::resolver::Query q;
    q.handle = r->handles[i++ & 4095];
    q.public_only = true;
    bool needs_storage = false;
    auto answer = r->resolver->ResolveFromCache(q, scratch, &needs_storage);
    hits += answer.code == idnode::protocol::ResponseCode::kSuccess;
  }
  if (hits != static_cast<size_t>(state.iterations()))
    state.SkipWithError("an answer was not a cache hit");
  state.counters["prefixes_in_table"] =
      static_cast<double>(r->registry->prefix_table().Snapshot()->size());
}

void BM_ResolveFromCacheSmallTable(benchmark::State& state) {
  ResolveFromCache(state);
}
void BM_ResolveFromCacheMillionPrefixes(benchmark::State& state) {
  ResolveFromCache(state);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--prefixes") == 0 && i + 1 < argc) {
      g_prefixes = std::strtoull(argv[++i], nullptr, 10);
    } else {
      rest.push_back(argv[i]);
    }
  }
  int rest_argc = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  Build();
  std::printf("prefix table: %zu prefixes\n", g->table.Snapshot()->size());
  benchmark::RegisterBenchmark("BM_TableMemoryPerPrefix", BM_TableMemoryPerPrefix)->Iterations(1);
  benchmark::RegisterBenchmark("BM_OldMapMemoryPerPrefix", BM_OldMapMemoryPerPrefix)->Iterations(1);
  benchmark::RegisterBenchmark("BM_NearestOneLevel", BM_NearestOneLevel);
  benchmark::RegisterBenchmark("BM_NearestThreeLevels", BM_NearestThreeLevels);
  benchmark::RegisterBenchmark("BM_OldMapFind", BM_OldMapFind);
  benchmark::RegisterBenchmark("BM_PublishOneChange", BM_PublishOneChange);
  benchmark::RegisterBenchmark("BM_OldRebuildOnChange", BM_OldRebuildOnChange)
      ->Unit(benchmark::kMillisecond)
      ->Iterations(3);
  // Fixed iteration counts: Setup (loading a million prefix handles) runs once per run.
  benchmark::RegisterBenchmark("BM_ResolveFromCacheSmallTable", BM_ResolveFromCacheSmallTable)
      ->Iterations(4000000)
      ->Setup([](const benchmark::State&) { BuildResolver(false); })
      ->Teardown([](const benchmark::State&) { TearDownResolver(); });
  benchmark::RegisterBenchmark("BM_ResolveFromCacheMillionPrefixes",
                               BM_ResolveFromCacheMillionPrefixes)
      ->Iterations(4000000)
      ->Setup([](const benchmark::State&) { BuildResolver(true); })
      ->Teardown([](const benchmark::State&) { TearDownResolver(); });
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
