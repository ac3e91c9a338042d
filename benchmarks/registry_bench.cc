// The registry's numbers, in one binary, as ratios to a peer measured in the same run:
//   - import rate (records/s) of `idctl import`'s path for records of three values (a 40-byte URL,
//     a 45-byte description, an HS_ADMIN), and bytes on disk per record after compaction;
//   - registry cold reads (cache off) against raw rocksdb::DB::Get of the same records in a plain
//     RocksDB with the same block cache and bloom filters;
//   - (cache_bench.cc, linked in) cache hits against std::unordered_map lookups, S3-FIFO hit ratio
//     against LRU, and bytes per cached entry.
// Flags (before Google Benchmark's own): --records N (default 1000000), --scale (100M records and
// the same figures, next to 1M: slow, never in CI).
#include <benchmark/benchmark.h>
#include <malloc.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/table.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include "idnode/cache/answer_cache.h"
#include "idnode/identifier/identifier.h"
#include "idnode/registry/bulk.h"
#include "idnode/registry/registry.h"

namespace {

using namespace idnode;

struct Dataset {
  std::string dir;
  uint64_t records = 0;
  double import_seconds = 0;
  uint64_t disk_bytes = 0;
  double average_record_bytes = 0;
  std::vector<std::string> keys;  // a sample of normalised handles for lookups
};

std::string RandomText(std::mt19937_64& rng, size_t n) {
  static constexpr char kChars[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::string s(n, ' ');
  for (auto& c : s) c = kChars[rng() % 36];
  return s;
}

// One JSON line of record `i`: realistic, not trivially compressible content.
std::string RecordLine(uint64_t i, std::mt19937_64& rng) {
  std::string url =
      "https://p" + std::to_string(rng() % 1000) + ".example.cn/" + RandomText(rng, 40);
  url.resize(40);
  std::string desc = "part " + RandomText(rng, 12) + " lot " + std::to_string(rng() % 100000) +
                     " " + RandomText(rng, 30);
  desc.resize(45);
  std::string prefix = "88.100." + std::to_string(i % 50);
  return R"({"handle":")" + prefix + "/SN" + std::to_string(i) +
         R"(","values":[{"index":1,"type":"URL","data":{"format":"string","value":")" + url +
         R"("},"ttl":86400},{"index":2,"type":"DESC","data":{"format":"string","value":")" + desc +
         R"("},"ttl":86400},{"index":100,"type":"HS_ADMIN","data":{"format":"admin","value":{"handle":"0.NA/)" +
         prefix + R"(","index":300,"permissions":"111111111111"}},"ttl":86400}]})" + "\n";
}

// Generates the records' JSON Lines on demand, so that even the 100M-record scale run needs no
// 40 GB input file: the import reads it like any stream.
class GeneratedRecords : public std::streambuf {
 public:
  explicit GeneratedRecords(uint64_t count) : count_(count), rng_(42) {}

 protected:
  int_type underflow() override {
    if (gptr() < egptr()) return traits_type::to_int_type(*gptr());
    buffer_.clear();
    while (next_ < count_ && buffer_.size() < (1u << 20)) buffer_ += RecordLine(next_++, rng_);
    if (buffer_.empty()) return traits_type::eof();
    setg(buffer_.data(), buffer_.data(), buffer_.data() + buffer_.size());
    return traits_type::to_int_type(*gptr());
  }

 private:
  uint64_t count_;
  uint64_t next_ = 0;
  std::mt19937_64 rng_;
  std::string buffer_;
};

std::unique_ptr<registry::Registry> OpenRegistry(const std::string& dir) {
  registry::RegistryOptions options;
  options.storage.path = dir;
  options.storage.block_cache_bytes = 64u << 20;
  options.storage.sync_writes = false;
  auto opened = registry::Registry::Open(std::move(options));
  if (!opened.ok()) {
    std::fprintf(stderr, "open %s: %s\n", dir.c_str(), opened.error().c_str());
    std::exit(1);
  }
  return std::move(*opened);
}

Dataset Build(const std::string& root, uint64_t count) {
  Dataset d;
  d.dir = root + "/registry-" + std::to_string(count);
  std::filesystem::remove_all(d.dir);
  d.average_record_bytes = 40 + 45 + 27 + 3 + 4 + 8 + 18;  // values' data and types, and the handle
  {
    auto registry = OpenRegistry(d.dir);
    GeneratedRecords generator(count);
    std::istream in(&generator);
    auto start = std::chrono::steady_clock::now();
    auto result = registry::ImportJsonLines(*registry, in, {});
    if (!result.ok() || result->records != count) {
      std::fprintf(stderr, "import failed\n");
      std::exit(1);
    }
    (void)registry->store().Flush();
    d.import_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    d.records = result->records;
    (void)registry->store().CompactAll();
  }
  d.disk_bytes = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(d.dir)) {
    if (e.is_regular_file() && e.path().extension() == ".sst") d.disk_bytes += e.file_size();
  }
  std::mt19937_64 rng(7);
  for (int i = 0; i < 100000; ++i) {
    d.keys.push_back(identifier::Normalize("88.100." + std::to_string(0) + "/SN0"));
    uint64_t n = rng() % count;
    d.keys.back() =
        identifier::Normalize("88.100." + std::to_string(n % 50) + "/SN" + std::to_string(n));
  }
  return d;
}

Dataset* g_data = nullptr;
std::unique_ptr<registry::Registry> g_registry;
rocksdb::DB* g_raw = nullptr;

// The peer: a plain RocksDB holding the same (key, serialised record) pairs, with the same block
// cache size and bloom filters, read with DB::Get.
void BuildRaw(const std::string& root) {
  std::string dir = root + "/raw";
  std::filesystem::remove_all(dir);
  // The same table and compression settings as a registry shard (storage/store.cc), so that the
  // ratio measures the registry's own work, not a different file layout.
  rocksdb::Options options;
  options.create_if_missing = true;
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(64u << 20, -1, false, 0.5);
  table.format_version = 5;
  table.cache_index_and_filter_blocks = true;
  table.cache_index_and_filter_blocks_with_high_priority = true;
  table.pin_top_level_index_and_filter = true;
  table.pin_l0_filter_and_index_blocks_in_cache = true;
  table.index_type = rocksdb::BlockBasedTableOptions::kTwoLevelIndexSearch;
  table.metadata_block_size = 4096;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10, false));
  table.partition_filters = true;
  table.whole_key_filtering = true;
  table.data_block_index_type = rocksdb::BlockBasedTableOptions::kDataBlockBinaryAndHash;
  options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  options.compression = rocksdb::kLZ4Compression;
  options.bottommost_compression = rocksdb::kZSTD;
  options.bottommost_compression_opts.level = 3;
  options.bottommost_compression_opts.enabled = true;
  options.level_compaction_dynamic_level_bytes = true;
  if (!rocksdb::DB::Open(options, dir, &g_raw).ok()) std::exit(1);
  rocksdb::WriteOptions wo;
  wo.disableWAL = true;
  for (uint32_t shard = 0; shard < g_registry->shard_count(); ++shard) {
    auto snap = g_registry->TakeSnapshot(shard);
    rocksdb::WriteBatch batch;
    (void)g_registry->ScanSnapshot(snap, {}, [&](const proto::Record& r) {
      batch.Put(identifier::Normalize(r.handle()), r.SerializeAsString());
      if (batch.Count() >= 10000) {
        (void)g_raw->Write(wo, &batch);
        batch.Clear();
      }
      return true;
    });
    (void)g_raw->Write(wo, &batch);
  }
  rocksdb::CompactRangeOptions compact;
  compact.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
  (void)g_raw->CompactRange(compact, nullptr, nullptr);
}

void BM_RawRocksDbGet(benchmark::State& state) {
  std::string value;
  size_t i = 0;
  for (auto _ : state) {
    auto s = g_raw->Get(rocksdb::ReadOptions(), g_data->keys[i++ % g_data->keys.size()], &value);
    benchmark::DoNotOptimize(s);
  }
}

void BM_RegistryColdGet(benchmark::State& state) {
  size_t i = 0;
  for (auto _ : state) {
    auto r = g_registry->Get(g_data->keys[i++ % g_data->keys.size()]);
    benchmark::DoNotOptimize(r);
  }
}

void BM_RegistryColdGetEncoded(benchmark::State& state) {
  std::vector<uint8_t> wire;
  size_t i = 0;
  for (auto _ : state) {
    bool found = g_registry->GetEncoded(g_data->keys[i++ % g_data->keys.size()], &wire) ==
                 idnode::registry::ReadOutcome::kFound;
    benchmark::DoNotOptimize(found);
  }
}

// One MODIFY_VALUE as an admin write commits it (issue 12's session writes): the record, its
// changelog entry and its audit entry in one WriteBatch, the WAL written (not fsynced: "fsync
// aside"), the caches invalidated. Its peer: one raw rocksdb::DB::Put of a record-sized value
// with the WAL on, the least any acknowledged write can cost in RocksDB.
void BM_RegistryModify(benchmark::State& state) {
  for (int p = 0; p < 50; ++p) (void)g_registry->HomePrefix("88.100." + std::to_string(p));
  size_t i = 0;
  proto::Value value;
  value.set_index(1);
  value.set_type("URL");
  for (auto _ : state) {
    registry::Operation op;
    op.kind = registry::OpKind::kAddValues;
    op.overwrite = true;
    op.handle = g_data->keys[i % g_data->keys.size()];
    value.set_data("https://example.org/modified/" + std::to_string(i++));
    op.values = {value};
    op.audit = registry::AuditContext{"300:0.NA/88.100", {}, "bench"};
    auto r = g_registry->Apply(op);
    if (r.code != registry::ResponseCode::kSuccess) {
      state.SkipWithError(
          ("modify failed: rc " + std::to_string(static_cast<int>(r.code))).c_str());
      break;
    }
  }
}

void BM_RawRocksDbPut(benchmark::State& state) {
  rocksdb::WriteOptions wo;  // WAL on, no fsync
  std::string value(180, 'v');
  size_t i = 0;
  for (auto _ : state) {
    auto s = g_raw->Put(wo, g_data->keys[i++ % g_data->keys.size()], value);
    if (!s.ok()) state.SkipWithError("put failed");
  }
}

// Captures each benchmark's time per iteration for the ratio table.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const auto& run : runs) {
      if (run.run_type == Run::RT_Iteration)
        times_[run.benchmark_name()] = run.GetAdjustedRealTime();
    }
    ConsoleReporter::ReportRuns(runs);
  }
  double Get(const std::string& name) const {
    auto it = times_.find(name);
    return it == times_.end() ? 0 : it->second;
  }
  const std::map<std::string, double>& times() const { return times_; }

 private:
  std::map<std::string, double> times_;
};

void PrintDataset(const char* label, const Dataset& d) {
  std::printf(
      "%-10s %12llu records  import %9.0f records/s  disk %6.1f bytes/record (payload ~%.0f bytes; "
      "reference server: 338)\n",
      label, static_cast<unsigned long long>(d.records), d.records / d.import_seconds,
      static_cast<double>(d.disk_bytes) / d.records, d.average_record_bytes);
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t records = 1000000;
  bool scale = false;
  std::vector<char*> rest{argv[0]};
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--records" && i + 1 < argc) {
      records = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--scale") {
      scale = true;
    } else {
      rest.push_back(argv[i]);
    }
  }
  std::string root =
      (std::filesystem::temp_directory_path() / ("idnode-bench-" + std::to_string(getpid())))
          .string();
  std::filesystem::create_directories(root);

  Dataset data = Build(root, records);
  g_data = &data;
  g_registry = OpenRegistry(data.dir);
  BuildRaw(root);

  benchmark::RegisterBenchmark("BM_RawRocksDbGet", BM_RawRocksDbGet);
  benchmark::RegisterBenchmark("BM_RegistryColdGet", BM_RegistryColdGet);
  benchmark::RegisterBenchmark("BM_RegistryColdGetEncoded", BM_RegistryColdGetEncoded);
  // After the reads: they change the records.
  benchmark::RegisterBenchmark("BM_RawRocksDbPut", BM_RawRocksDbPut);
  benchmark::RegisterBenchmark("BM_RegistryModify", BM_RegistryModify);
  int rest_argc = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);

  std::printf("\n== registry figures (same machine, same run)\n");
  PrintDataset("dataset", data);
  double raw = reporter.Get("BM_RawRocksDbGet");
  if (raw > 0) {
    std::printf(
        "cold get (cache off) vs raw rocksdb::DB::Get: %.2fx (goal >= 0.8x; %.0f ns vs %.0f ns)\n",
        raw / reporter.Get("BM_RegistryColdGet"), reporter.Get("BM_RegistryColdGet"), raw);
    std::printf("cold get as encoded answer vs raw:           %.2fx (%.0f ns)\n",
                raw / reporter.Get("BM_RegistryColdGetEncoded"),
                reporter.Get("BM_RegistryColdGetEncoded"));
  }
  const double raw_put = reporter.Get("BM_RawRocksDbPut");
  if (raw_put > 0) {
    std::printf(
        "admin modify (record + changelog + audit, WAL, no fsync) vs raw rocksdb Put: %.2fx "
        "(%.0f ns vs %.0f ns)\n",
        raw_put / reporter.Get("BM_RegistryModify"), reporter.Get("BM_RegistryModify"), raw_put);
  }
  for (const auto& [name, t] : reporter.times()) {
    if (name.rfind("BM_CacheHit/", 0) == 0 && name.find("threads") == std::string::npos) {
      std::string map_name =
          "BM_UnorderedMapHit/" + name.substr(std::string("BM_CacheHit/").size());
      double map = reporter.Get(map_name);
      if (map > 0)
        std::printf("cache hit vs std::unordered_map (%s): %.2fx (%.1f ns vs %.1f ns)\n",
                    name.c_str(), map / t, t, map);
    }
  }
  std::printf("import goal: >= 200000 records/s; disk goal: <= 169 bytes/record\n");

  if (scale) {
    delete g_raw;
    g_raw = nullptr;
    g_registry.reset();
    Dataset big = Build(root, 100000000);
    g_data = &big;
    g_registry = OpenRegistry(big.dir);
    std::printf("\n== scale: 100M records next to %llu\n",
                static_cast<unsigned long long>(records));
    PrintDataset("small", data);
    PrintDataset("100M", big);
    auto time_lookups = [&](const std::vector<std::string>& keys) {
      auto start = std::chrono::steady_clock::now();
      for (const auto& k : keys) benchmark::DoNotOptimize(g_registry->Get(k));
      return keys.size() /
             std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    };
    std::vector<std::string> hot(big.keys.begin(), big.keys.begin() + 1000);
    std::vector<std::string> hot_loop;
    for (int r = 0; r < 100; ++r) hot_loop.insert(hot_loop.end(), hot.begin(), hot.end());
    std::printf("100M lookups: uniform %.0f/s, hot set of 1000 keys %.0f/s\n",
                time_lookups(big.keys), time_lookups(hot_loop));
  }
  delete g_raw;
  g_registry.reset();
  std::filesystem::remove_all(root);
  return 0;
}
