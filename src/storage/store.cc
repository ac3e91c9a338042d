#include "idnode/storage/store.h"

#include <rocksdb/utilities/checkpoint.h>

#include <rocksdb/cache.h>
#include <rocksdb/convenience.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/sst_file_writer.h>
#include <rocksdb/table.h>
#include <rocksdb/utilities/options_util.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

namespace idnode::storage {

namespace {

const char* const kColumnNames[kColumnCount] = {"records", "changelog", "meta"};

StorageError Translate(const rocksdb::Status& s) {
  StorageError e;
  e.message = s.ToString();
  if (s.IsIOError()) {
    e.code = s.IsNoSpace() ? StorageError::Code::kNoSpace : StorageError::Code::kIo;
  } else if (s.IsCorruption()) {
    e.code = StorageError::Code::kCorruption;
  } else if (s.IsInvalidArgument()) {
    e.code = StorageError::Code::kInvalidArgument;
  } else if (s.IsBusy() || s.IsTryAgain() || s.IsIncomplete()) {
    e.code = StorageError::Code::kBusy;
  } else {
    e.code = StorageError::Code::kOther;
  }
  return e;
}

rocksdb::Slice AsSlice(std::string_view s) {
  return {s.data(), s.size()};
}

bool Supported(rocksdb::CompressionType type) {
  auto supported = rocksdb::GetSupportedCompressions();
  return std::find(supported.begin(), supported.end(), type) != supported.end();
}

// Point lookups over data far larger than the block cache: partitioned index and whole-key bloom
// filters, cached with high priority and their top level pinned, so that a miss costs one small
// partition read instead of reloading a whole multi-megabyte filter (which made cold reads a
// hundred times slower in registry_bench before), and a hash index inside each data block.
rocksdb::BlockBasedTableOptions TableOptions(const StorageOptions& options, bool point_lookups) {
  rocksdb::BlockBasedTableOptions table;
  table.format_version = 5;
  table.cache_index_and_filter_blocks = true;
  table.cache_index_and_filter_blocks_with_high_priority = true;
  table.pin_top_level_index_and_filter = true;
  table.pin_l0_filter_and_index_blocks_in_cache = true;
  table.index_type = rocksdb::BlockBasedTableOptions::kTwoLevelIndexSearch;
  table.metadata_block_size = 4096;
  if (point_lookups) {
    table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(options.bloom_bits_per_key, false));
    table.partition_filters = true;
    table.whole_key_filtering = true;
    table.data_block_index_type = rocksdb::BlockBasedTableOptions::kDataBlockBinaryAndHash;
  }
  return table;
}

rocksdb::ColumnFamilyOptions ColumnOptions(const StorageOptions& options,
                                           const std::shared_ptr<rocksdb::Cache>& cache,
                                           Column column) {
  rocksdb::ColumnFamilyOptions cf;
  rocksdb::BlockBasedTableOptions table = TableOptions(options, column != Column::kChangelog);
  table.block_cache = cache;
  cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  if (options.compression) {
    cf.compression = Supported(rocksdb::kLZ4Compression) ? rocksdb::kLZ4Compression
                                                         : rocksdb::kSnappyCompression;
    if (Supported(rocksdb::kZSTD)) {
      cf.bottommost_compression = rocksdb::kZSTD;
      cf.bottommost_compression_opts.level = 3;
      cf.bottommost_compression_opts.enabled = true;
    }
  } else {
    cf.compression = rocksdb::kNoCompression;
  }
  cf.level_compaction_dynamic_level_bytes = true;
  if (column == Column::kRecords) cf.optimize_filters_for_hits = false;
  return cf;
}

// The durability policy (HARDENING.md row J), checked on the options the DB actually runs with.
std::optional<std::string> CheckDurability(rocksdb::DB* db) {
  rocksdb::DBOptions o = db->GetDBOptions();
  if (o.manual_wal_flush) return "manual_wal_flush must be false";
  if (o.recycle_log_file_num != 0) return "recycle_log_file_num must be 0";
  if (!o.track_and_verify_wals_in_manifest) return "track_and_verify_wals_in_manifest must be true";
  if (!o.atomic_flush) return "atomic_flush must be true (three column families share one WAL)";
  if (!o.paranoid_checks) return "paranoid_checks must be true";
  return std::nullopt;
}

}  // namespace

Snapshot::~Snapshot() {
  if (db_ != nullptr && snapshot_ != nullptr) db_->ReleaseSnapshot(snapshot_);
}

void Batch::Put(Column column, std::string_view key, std::string_view value) {
  ops_.push_back({Op::Kind::kPut, column, std::string(key), std::string(value)});
  bytes_ += key.size() + value.size();
}

void Batch::Delete(Column column, std::string_view key) {
  ops_.push_back({Op::Kind::kDelete, column, std::string(key), {}});
  bytes_ += key.size();
}

void Batch::DeleteRange(Column column, std::string_view begin, std::string_view end) {
  ops_.push_back({Op::Kind::kDeleteRange, column, std::string(begin), std::string(end)});
  bytes_ += begin.size() + end.size();
}

size_t Batch::count() const {
  return ops_.size();
}
size_t Batch::byte_size() const {
  return bytes_;
}

StorageResult<std::unique_ptr<Store>> Store::Open(const StorageOptions& options) {
  if (options.shard_count == 0 || options.shard_count > 4096) {
    return Failure{
        StorageError{StorageError::Code::kInvalidArgument, "shard_count must be 1..4096"}};
  }
  std::unique_ptr<Store> store(new Store(options));
  // Half the cache is reserved for index and filter partitions (high priority).
  auto cache = rocksdb::NewLRUCache(options.block_cache_bytes, -1, false, 0.5);
  store->block_cache_ = cache;
  if (options.file_system) store->env_ = rocksdb::NewCompositeEnv(options.file_system);

  std::error_code ec;
  std::filesystem::create_directories(options.path, ec);
  if (ec)
    return Failure{StorageError{StorageError::Code::kIo,
                                "cannot create " + options.path + ": " + ec.message()}};

  // The shard count is fixed when a data directory is created: opening it with another count
  // would hash identifiers to the wrong shards.
  const std::filesystem::path layout = std::filesystem::path(options.path) / "LAYOUT";
  {
    std::ifstream existing(layout);
    if (existing) {
      std::string word;
      uint32_t shards = 0;
      existing >> word >> shards;
      if (word != "shards" || shards != options.shard_count) {
        return Failure{StorageError{StorageError::Code::kInvalidArgument,
                                    options.path + " was created with " + std::to_string(shards) +
                                        " shards; it cannot be opened with " +
                                        std::to_string(options.shard_count)}};
      }
    } else if (options.create_if_missing) {
      std::ofstream created(layout);
      created << "shards " << options.shard_count << "\n";
      created.close();
      if (!created)
        return Failure{StorageError{StorageError::Code::kIo, "cannot write " + layout.string()}};
    }
  }

  for (uint32_t i = 0; i < options.shard_count; ++i) {
    char name[32];
    std::snprintf(name, sizeof(name), "shard-%03u", i);
    std::string path = (std::filesystem::path(options.path) / name).string();

    rocksdb::DBOptions db;
    db.create_if_missing = options.create_if_missing;
    db.create_missing_column_families = options.create_if_missing;
    db.paranoid_checks = true;
    db.manual_wal_flush = false;
    db.recycle_log_file_num = 0;
    db.track_and_verify_wals_in_manifest = true;
    db.atomic_flush = true;
    db.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
    db.avoid_flush_during_shutdown = options.avoid_flush_on_close;
    db.max_background_jobs = 2;
    db.bytes_per_sync = 1 << 20;
    db.keep_log_file_num = 4;
    if (store->env_) db.env = store->env_.get();

    std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
    descriptors.emplace_back(rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions());
    for (size_t c = 0; c < kColumnCount; ++c) {
      descriptors.emplace_back(kColumnNames[c],
                               ColumnOptions(options, cache, static_cast<Column>(c)));
    }
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    rocksdb::Status s = rocksdb::DB::Open(db, path, descriptors, &handles, &raw);
    if (!s.ok()) {
      StorageError e = Translate(s);
      e.message = path + ": " + e.message;
      return Failure{e};
    }
    ShardHandles shard;
    shard.db = raw;
    shard.columns.assign(handles.begin() + 1, handles.end());
    raw->DestroyColumnFamilyHandle(handles[0]);
    store->shards_.push_back(std::move(shard));
    if (auto problem = CheckDurability(raw)) {
      return Failure{StorageError{StorageError::Code::kUnsafeOptions, path + ": " + *problem}};
    }
  }
  return store;
}

Store::Store(StorageOptions options) : options_(std::move(options)) {}

Store::~Store() {
  for (auto& shard : shards_) {
    for (auto* cf : shard.columns) shard.db->DestroyColumnFamilyHandle(cf);
    shard.db->Close().PermitUncheckedError();
    delete shard.db;
  }
}

StorageResult<bool> Store::Get(uint32_t shard, Column column, std::string_view key,
                               std::string* value, const Snapshot* snapshot) const {
  rocksdb::ReadOptions ro;
  if (snapshot) ro.snapshot = snapshot->get();
  rocksdb::PinnableSlice pinned;
  rocksdb::Status s = shards_[shard].db->Get(ro, Cf(shard, column), AsSlice(key), &pinned);
  if (s.IsNotFound()) return false;
  if (!s.ok()) return Failure{Translate(s)};
  value->assign(pinned.data(), pinned.size());
  return true;
}

StorageResult<std::vector<std::optional<std::string>>> Store::MultiGet(
    uint32_t shard, Column column, const std::vector<std::string>& keys) const {
  std::vector<rocksdb::Slice> slices;
  slices.reserve(keys.size());
  for (const auto& k : keys) slices.emplace_back(k);
  std::vector<rocksdb::PinnableSlice> values(keys.size());
  std::vector<rocksdb::Status> statuses(keys.size());
  shards_[shard].db->MultiGet(rocksdb::ReadOptions(), Cf(shard, column), keys.size(), slices.data(),
                              values.data(), statuses.data());
  std::vector<std::optional<std::string>> out(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    if (statuses[i].ok()) {
      out[i] = values[i].ToString();
    } else if (!statuses[i].IsNotFound()) {
      return Failure{Translate(statuses[i])};
    }
  }
  return out;
}

StorageResult<Unit> Store::Write(uint32_t shard, Batch& batch, bool sync) {
  rocksdb::WriteBatch wb(0, 0, 0, 0);
  for (const auto& op : batch.ops_) {
    rocksdb::Status s;
    switch (op.kind) {
      case Batch::Op::Kind::kPut:
        s = wb.Put(Cf(shard, op.column), op.key, op.value);
        break;
      case Batch::Op::Kind::kDelete:
        s = wb.Delete(Cf(shard, op.column), op.key);
        break;
      case Batch::Op::Kind::kDeleteRange:
        s = wb.DeleteRange(Cf(shard, op.column), op.key, op.value);
        break;
    }
    if (!s.ok()) return Failure{Translate(s)};
  }
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync_writes && sync;
  wo.disableWAL = false;
  rocksdb::Status s = shards_[shard].db->Write(wo, &wb);
  if (!s.ok()) return Failure{Translate(s)};
  return Unit{};
}

StorageResult<Unit> Store::SyncWal(uint32_t shard) {
  if (!options_.sync_writes) return Unit{};
  rocksdb::Status s = shards_[shard].db->SyncWAL();
  if (!s.ok()) return Failure{Translate(s)};
  return Unit{};
}

std::unique_ptr<Snapshot> Store::TakeSnapshot(uint32_t shard) const {
  rocksdb::DB* db = shards_[shard].db;
  return std::make_unique<Snapshot>(db, db->GetSnapshot());
}

StorageResult<Unit> Store::Scan(uint32_t shard, Column column, std::string_view begin,
                                std::string_view end, const Visitor& visit,
                                const Snapshot* snapshot) const {
  rocksdb::ReadOptions ro;
  if (snapshot) ro.snapshot = snapshot->get();
  ro.fill_cache = false;  // scans must not push hot blocks out of the block cache
  std::string end_key(end);
  rocksdb::Slice upper(end_key);
  if (!end.empty()) ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(shards_[shard].db->NewIterator(ro, Cf(shard, column)));
  for (it->Seek(AsSlice(begin)); it->Valid(); it->Next()) {
    if (!visit(std::string_view(it->key().data(), it->key().size()),
               std::string_view(it->value().data(), it->value().size()))) {
      break;
    }
  }
  if (!it->status().ok()) return Failure{Translate(it->status())};
  return Unit{};
}

StorageResult<Unit> Store::IngestSorted(uint32_t shard, Column column,
                                        std::span<const KeyValueView> sorted) {
  if (sorted.empty()) return Unit{};
  static std::atomic<uint64_t> counter{0};
  std::string file =
      (std::filesystem::path(options_.path) /
       ("ingest-" + std::to_string(shard) + "-" + std::to_string(counter.fetch_add(1)) + ".sst"))
          .string();
  rocksdb::Options writer_options;
  // LZ4, as the shards' upper levels: compressing an import with zstd cost a quarter of its CPU.
  // Compaction (`idctl compact`, or RocksDB's own) rewrites the data with the bottommost level's
  // zstd.
  writer_options.compression = options_.compression && Supported(rocksdb::kLZ4Compression)
                                   ? rocksdb::kLZ4Compression
                                   : rocksdb::kNoCompression;
  writer_options.table_factory.reset(
      rocksdb::NewBlockBasedTableFactory(TableOptions(options_, column != Column::kChangelog)));
  rocksdb::SstFileWriter writer(rocksdb::EnvOptions(), writer_options, Cf(shard, column));
  rocksdb::Status s = writer.Open(file);
  for (size_t i = 0; s.ok() && i < sorted.size(); ++i)
    s = writer.Put(rocksdb::Slice(sorted[i].first.data(), sorted[i].first.size()),
                   rocksdb::Slice(sorted[i].second.data(), sorted[i].second.size()));
  if (s.ok()) s = writer.Finish();
  if (s.ok()) {
    rocksdb::IngestExternalFileOptions ingest;
    ingest.move_files = true;
    s = shards_[shard].db->IngestExternalFile(Cf(shard, column), {file}, ingest);
  }
  std::error_code ec;
  std::filesystem::remove(file, ec);
  if (!s.ok()) return Failure{Translate(s)};
  return Unit{};
}

StorageResult<Unit> Store::CompactAll() {
  for (uint32_t i = 0; i < shard_count(); ++i) {
    for (size_t c = 0; c < kColumnCount; ++c) {
      rocksdb::CompactRangeOptions o;
      o.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
      rocksdb::Status s = shards_[i].db->CompactRange(o, shards_[i].columns[c], nullptr, nullptr);
      if (!s.ok()) return Failure{Translate(s)};
    }
  }
  return Unit{};
}

StorageResult<Unit> Store::Flush() {
  for (auto& shard : shards_) {
    rocksdb::Status s = shard.db->Flush(rocksdb::FlushOptions(), shard.columns);
    if (!s.ok()) return Failure{Translate(s)};
  }
  return Unit{};
}

StorageResult<Unit> Store::Checkpoint(uint32_t shard, const std::string& directory) {
  if (shard >= shards_.size())
    return Failure{StorageError{StorageError::Code::kInvalidArgument, "no such shard"}};
  rocksdb::Checkpoint* raw = nullptr;
  rocksdb::Status s = rocksdb::Checkpoint::Create(shards_[shard].db, &raw);
  std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
  if (s.ok()) s = checkpoint->CreateCheckpoint(directory);
  if (!s.ok()) return Failure{Translate(s)};
  return Unit{};
}

uint64_t Store::DiskBytes() const {
  uint64_t total = 0;
  std::error_code ec;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(options_.path, ec)) {
    if (entry.is_regular_file(ec)) total += entry.file_size(ec);
  }
  return total;
}

ShardStats Store::Stats(uint32_t shard) const {
  ShardStats stats;
  rocksdb::DB* db = shards_[shard].db;
  auto* records = Cf(shard, Column::kRecords);
  db->GetIntProperty(records, rocksdb::DB::Properties::kEstimateNumKeys, &stats.estimated_keys);
  for (auto* cf : shards_[shard].columns) {
    uint64_t v = 0;
    if (db->GetIntProperty(cf, rocksdb::DB::Properties::kLiveSstFilesSize, &v))
      stats.live_sst_bytes += v;
    if (db->GetIntProperty(cf, rocksdb::DB::Properties::kCurSizeAllMemTables, &v))
      stats.memtable_bytes += v;
    if (db->GetIntProperty(cf, rocksdb::DB::Properties::kEstimatePendingCompactionBytes, &v)) {
      stats.pending_compaction_bytes += v;
    }
  }
  uint64_t delayed = 0;
  if (db->GetIntProperty(rocksdb::DB::Properties::kActualDelayedWriteRate, &delayed)) {
    stats.write_delayed = delayed > 0;
  }
  uint64_t stopped = 0;
  if (db->GetIntProperty(rocksdb::DB::Properties::kIsWriteStopped, &stopped))
    stats.write_stopped = stopped != 0;
  return stats;
}

std::string EncodeSequenceKey(uint64_t sequence) {
  std::string key(8, '\0');
  for (int i = 7; i >= 0; --i) {
    key[static_cast<size_t>(i)] = static_cast<char>(sequence & 0xff);
    sequence >>= 8;
  }
  return key;
}

uint64_t DecodeSequenceKey(std::string_view key) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8 && i < key.size(); ++i) v = v << 8 | static_cast<uint8_t>(key[i]);
  return v;
}

}  // namespace idnode::storage
