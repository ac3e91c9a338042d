// storage/: N RocksDB shards, each its own DB with three column families (records, changelog,
// meta). rocksdb::Status never leaves this room: errors become StorageError values.
//
// A Store is owned by the registry and shared by every thread; RocksDB is thread-safe for reads,
// writes and iterators, and this class adds no lock of its own. Ordering of writes within a shard
// (sequence numbers, read-modify-write) is the registry's job.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "idnode/common/result.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
class Snapshot;
class WriteBatch;
class FileSystem;
class Env;
}  // namespace rocksdb

namespace idnode::storage {

enum class Column : uint8_t { kRecords = 0, kChangelog = 1, kMeta = 2 };
inline constexpr size_t kColumnCount = 3;

struct StorageError {
  enum class Code : uint8_t {
    kIo,
    kCorruption,
    kInvalidArgument,
    kNoSpace,
    kBusy,
    kUnsafeOptions,
    kOther
  };
  Code code = Code::kOther;
  std::string message;
};

template <typename T>
using StorageResult = Result<T, StorageError>;

struct StorageOptions {
  std::string path;  // one sub-directory per shard: shard-000, shard-001, ...
  uint32_t shard_count = 8;
  size_t block_cache_bytes = 256u << 20;  // one block cache shared by all shards
  bool sync_writes = true;                // fsync the WAL before a write is acknowledged
  int bloom_bits_per_key = 10;
  bool compression = true;  // LZ4 above the bottom level, ZSTD at the bottom
  bool create_if_missing = true;
  // Tests only: a FileSystem to run the shards on (fault injection). Null means the default.
  std::shared_ptr<rocksdb::FileSystem> file_system;
  // Tests only: skip flushing memtables on close, as a crash would.
  bool avoid_flush_on_close = false;
};

// A consistent read view of one shard.
class Snapshot {
 public:
  Snapshot(rocksdb::DB* db, const rocksdb::Snapshot* snapshot) : db_(db), snapshot_(snapshot) {}
  ~Snapshot();
  Snapshot(const Snapshot&) = delete;
  Snapshot& operator=(const Snapshot&) = delete;
  const rocksdb::Snapshot* get() const { return snapshot_; }

 private:
  rocksdb::DB* db_;
  const rocksdb::Snapshot* snapshot_;
};

// Writes that commit together on one shard (one RocksDB WriteBatch: one WAL record).
class Batch {
 public:
  void Put(Column column, std::string_view key, std::string_view value);
  void Delete(Column column, std::string_view key);
  void DeleteRange(Column column, std::string_view begin, std::string_view end);
  size_t count() const;
  size_t byte_size() const;

 private:
  friend class Store;
  struct Op {
    enum class Kind : uint8_t { kPut, kDelete, kDeleteRange } kind;
    Column column;
    std::string key;
    std::string value;  // the value of a put, the end key of a range delete
  };
  std::vector<Op> ops_;
  size_t bytes_ = 0;
};

struct ShardStats {
  uint64_t estimated_keys = 0;
  uint64_t live_sst_bytes = 0;
  uint64_t memtable_bytes = 0;
  uint64_t pending_compaction_bytes = 0;
  bool write_stopped = false;
  bool write_delayed = false;
};

// A key and its value, viewed (bulk loads keep them in arenas).
using KeyValueView = std::pair<std::string_view, std::string_view>;
inline std::vector<KeyValueView> Views(const std::vector<std::pair<std::string, std::string>>& kv) {
  std::vector<KeyValueView> out;
  out.reserve(kv.size());
  for (const auto& [k, v] : kv) out.emplace_back(k, v);
  return out;
}

class Store {
 public:
  // Opens (or creates) every shard and checks the durability settings of each. Throwing is not
  // used: errors come back as values, including kUnsafeOptions if a setting is not what the
  // durability policy requires (HARDENING.md row J).
  static StorageResult<std::unique_ptr<Store>> Open(const StorageOptions& options);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  uint32_t shard_count() const { return static_cast<uint32_t>(shards_.size()); }
  const StorageOptions& options() const { return options_; }

  // Point read. Returns false when the key is absent.
  StorageResult<bool> Get(uint32_t shard, Column column, std::string_view key, std::string* value,
                          const Snapshot* snapshot = nullptr) const;
  // Point reads of many keys of one column (one MultiGet).
  StorageResult<std::vector<std::optional<std::string>>> MultiGet(
      uint32_t shard, Column column, const std::vector<std::string>& keys) const;

  // Commits a batch on one shard. With sync_writes the WAL is fsynced before this returns,
  // unless `sync` is false: then the batch is in the WAL and becomes durable with the shard's
  // next synced write (the WAL is one sequence), for work that a crash would redo anyway (a
  // snapshot being applied, whose completion is written synced).
  StorageResult<Unit> Write(uint32_t shard, Batch& batch, bool sync = true);

  // Makes every write of the shard so far durable (one fsync of its WAL): how a group of
  // unsynced writes is committed at once.
  StorageResult<Unit> SyncWal(uint32_t shard);

  std::unique_ptr<Snapshot> TakeSnapshot(uint32_t shard) const;

  // Visits keys of a column in order from `begin` (inclusive) to `end` (exclusive; empty = to the
  // end), at `snapshot` if given. The visitor returns false to stop.
  using Visitor = std::function<bool(std::string_view key, std::string_view value)>;
  StorageResult<Unit> Scan(uint32_t shard, Column column, std::string_view begin,
                           std::string_view end, const Visitor& visit,
                           const Snapshot* snapshot = nullptr) const;

  // Bulk load: writes sorted, unique key/value pairs of `column` into an SST file and ingests it
  // into the shard (fast path for importing into a stopped node).
  StorageResult<Unit> IngestSorted(uint32_t shard, Column column,
                                   std::span<const KeyValueView> sorted);
  StorageResult<Unit> IngestSorted(uint32_t shard, Column column,
                                   const std::vector<std::pair<std::string, std::string>>& sorted) {
    return IngestSorted(shard, column, Views(sorted));
  }

  StorageResult<Unit> CompactAll();
  StorageResult<Unit> Flush();
  // A consistent copy of `shard` in `directory` (which must not exist), taken while the store is
  // open: SST files hard-linked where the file system allows, the rest copied (RocksDB's
  // checkpoint).
  StorageResult<Unit> Checkpoint(uint32_t shard, const std::string& directory);
  // Bytes of live SST files, WAL and manifest in all shards.
  uint64_t DiskBytes() const;
  ShardStats Stats(uint32_t shard) const;

 private:
  struct ShardHandles {
    rocksdb::DB* db = nullptr;
    std::vector<rocksdb::ColumnFamilyHandle*> columns;
  };
  explicit Store(StorageOptions options);
  rocksdb::ColumnFamilyHandle* Cf(uint32_t shard, Column column) const {
    return shards_[shard].columns[static_cast<size_t>(column)];
  }

  StorageOptions options_;
  std::vector<ShardHandles> shards_;
  std::shared_ptr<void> block_cache_;  // rocksdb::Cache, kept alive for the shards' lifetime
  std::unique_ptr<rocksdb::Env> env_;  // wraps options_.file_system when set
};

// Big-endian fixed-width keys sort numerically (changelog sequence numbers).
std::string EncodeSequenceKey(uint64_t sequence);
uint64_t DecodeSequenceKey(std::string_view key);

}  // namespace idnode::storage
