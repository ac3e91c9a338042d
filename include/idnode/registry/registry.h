// registry/: identifier records with Handle semantics, the prefix table, and a changelog with a
// sequence number per shard (ARCHITECTURE.md "Decisions already made").
//
// Every mutation writes, in ONE storage batch on the identifier's shard, the new record (or its
// deletion), a changelog entry with the shard's next sequence number, the shard's sequence
// counter, and, for retried client transactions, the outcome of the operation. The answer cache is
// invalidated on the same path, after the commit and before the caller gets the result.
//
// A Registry is owned by the application and shared by all threads. Writes to one shard are
// serialised by that shard's mutex (sequence numbers and read-modify-write need it); reads take
// no registry lock.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "idnode/common/result.h"
#include "idnode/protocol/constants.h"
#include "idnode/registry.pb.h"
#include "idnode/registry/prefix_table.h"
#include "idnode/registry/values.h"
#include "idnode/storage/store.h"

namespace idnode::cache {
class AnswerCache;
}

namespace idnode::registry {

using protocol::ResponseCode;

inline constexpr size_t kMaxBatchOperations = 2000;

struct RetentionPolicy {
  uint64_t max_entries_per_shard = 10'000'000;  // keep at most this many changelog entries
  std::chrono::seconds max_age{7 * 24 * 3600};  // and none older than this
  // A replica's saved position (SavePeerPositions) holds entries past the two limits above, even
  // across restarts, unless it is this far behind the shard's last sequence: that replica is lost
  // and will take a snapshot.
  uint64_t max_peer_lag_entries = 20'000'000;
  // Audit log entries older than this are deleted.
  std::chrono::seconds audit_max_age{365 * 24 * 3600};
  // Called in ApplyRetention after each shard's changelog scan, before its trim is written (a test
  // writes from there to show that the scan does not hold the shard's writers).
  std::function<void(uint32_t shard)> during_scan_for_test;
};

struct RegistryOptions {
  storage::StorageOptions storage;
  RetentionPolicy retention;
  // How long the outcome of a client transaction is remembered for retries.
  std::chrono::seconds transaction_memory{24 * 3600};
  // The answer cache to keep coherent with writes; may be null (no cache).
  std::shared_ptr<cache::AnswerCache> cache;
  // The JSON API's cache of rendered values; invalidated on the same path. May be null.
  std::shared_ptr<cache::AnswerCache> json_cache;
};

enum class OpKind : uint8_t { kCreate, kDelete, kAddValues, kRemoveValues, kModifyValues };

// Who asked for a write, for the audit log (written in the same batch as the write).
struct AuditContext {
  std::string identity;  // "index:handle"
  std::array<uint8_t, 16> source{};
  std::string via;  // "handle/tcp", "handle/udp", "http"
};

struct Operation {
  OpKind kind = OpKind::kCreate;
  // When set, the operation's outcome is appended to the audit log in its own WriteBatch.
  std::optional<AuditContext> audit;
  std::string handle;
  std::vector<proto::Value> values;  // create, add, modify
  std::vector<int32_t> indexes;      // remove
  bool overwrite = false;  // create: replace an existing record; add: replace taken indexes
  // Compare-and-apply: when set, the operation applies only if the record is still exactly this
  // one (its serialised bytes as read when the change was authorised; empty: it did not exist).
  // Otherwise nothing is written and OpResult::conflict is set, so that the caller decides again.
  std::optional<std::string> expected_record;
};

struct OpResult {
  ResponseCode code = ResponseCode::kError;
  uint64_t sequence = 0;  // the changelog sequence of the change, 0 if nothing changed
  uint32_t shard = 0;
  bool conflict = false;  // expected_record no longer matched (code is kError then)
  // The transaction id and place were used before for another operation (code is kError then).
  bool transaction_mismatch = false;
};

// The outcome of a read: a storage failure or a corrupt record is never "not found".
enum class ReadOutcome : uint8_t { kFound, kNotFound, kError };

struct GetResult {
  ResponseCode code = ResponseCode::kHandleNotFound;
  proto::Record record;  // filtered values when code is kSuccess
};

// Holds changelog entries of a shard from `sequence` on against retention while it lives.
class RetentionPin {
 public:
  RetentionPin() = default;
  RetentionPin(RetentionPin&& other) noexcept { *this = std::move(other); }
  RetentionPin& operator=(RetentionPin&& other) noexcept;
  ~RetentionPin() { Release(); }
  uint64_t sequence() const { return sequence_; }
  void Release();

 private:
  friend class Registry;
  std::function<void()> release_;
  uint64_t sequence_ = 0;
};

// A consistent view of one shard: its records at `sequence`, pinned so that the changelog after
// `sequence` is kept until the view is released (a peer resumes from there).
struct ShardSnapshot {
  uint32_t shard = 0;
  uint64_t sequence = 0;
  std::unique_ptr<storage::Snapshot> snapshot;
  RetentionPin pin;
};

struct Digest {
  std::array<uint8_t, 32> bytes{};
  uint64_t records = 0;
  std::string hex() const;
  // The digest of the union of two disjoint sets of records (lane by lane, modulo 2^64): the
  // servers of a site add up to the node they were split from.
  Digest& operator+=(const Digest& other);
  friend bool operator==(const Digest&, const Digest&) = default;
};

class Registry {
 public:
  static Result<std::unique_ptr<Registry>, std::string> Open(RegistryOptions options);
  ~Registry();

  uint32_t shard_count() const { return store_->shard_count(); }
  uint32_t ShardOf(std::string_view handle) const;
  storage::Store& store() { return *store_; }
  const storage::Store& store() const { return *store_; }

  // ---- reads ----
  // The record of `handle` with the values `filter` selects: 100 if there is no such handle,
  // 200 if a filter selects nothing.
  GetResult Get(std::string_view handle, const Filter& filter = {}) const;
  // All values of `handle` encoded as a resolution answer (count + values), from the cache when it
  // holds them (filling it otherwise). kError (counted in read_errors(), never cached) when
  // storage fails or the stored record does not parse.
  ReadOutcome GetEncoded(std::string_view handle, std::vector<uint8_t>* wire_values) const;
  // The record of `handle` serialised as stored ("" with kNotFound), for compare-and-apply.
  ReadOutcome GetSerialized(std::string_view handle, std::string* serialized) const;
  // Reads that failed (storage errors, corrupt records) since the registry was opened.
  uint64_t read_errors() const { return read_errors_.load(std::memory_order_relaxed); }
  // Whether some handle begins with `handle_prefix` (compared normalized, as handles are): one
  // seek in each shard. kSuccess, kHandleNotFound, or kError when storage fails. Blocks: storage
  // threads only.
  ResponseCode HasHandlesUnder(std::string_view handle_prefix) const;

  // ---- writes ----
  OpResult Apply(const Operation& op);
  // Applies up to kMaxBatchOperations operations, a result for each in order. Operations on one
  // shard commit together; with a non-empty transaction id, each operation's outcome is stored
  // with it so that a retried batch returns the same results without applying anything twice.
  // The stored outcome of the operation at `position` of `transaction_id`, if that transaction
  // was applied before (transaction_mismatch set when it was another operation there).
  std::optional<OpResult> StoredOutcome(std::string_view transaction_id, uint32_t position,
                                        const Operation& op) const;
  // `positions` (when given, one per operation) names each operation's place in the client's
  // transaction, for a caller that passes only some of its operations (the others refused).
  std::vector<OpResult> ApplyBatch(std::string_view transaction_id,
                                   const std::vector<Operation>& ops,
                                   std::span<const uint32_t> positions = {});

  // ---- listing ----
  // Where a listing of a prefix's handles stands: the shard, and the last key given in it.
  struct ListCursor {
    uint32_t shard = 0;
    std::string after;
  };
  // Appends to `handles` up to `max` handles of `prefix` (normalised; its own handles, not those
  // of its derived prefixes), as first spelled, shard by shard in key order from `*cursor`, which
  // it advances. True when none are left. Reads storage (a storage thread's work).
  // Stops early, too, once the handles given hold `max_bytes`.
  Result<bool, std::string> ListHandles(std::string_view prefix, ListCursor* cursor, size_t max,
                                        std::vector<std::string>* handles,
                                        size_t max_bytes = SIZE_MAX) const;

  // ---- the audit log ----
  // Appends a refused administrative decision (or any event without a write) for `handle`, in a
  // batch of its own on the handle's shard.
  Result<Unit, std::string> AppendAudit(std::string_view handle, std::string_view operation,
                                        const AuditContext& who, ResponseCode result);
  // The entries at or after `since_ms`, oldest first, that `keep` accepts, at most `limit`.
  Result<std::vector<proto::AuditEntry>, std::string> ReadAudit(
      uint64_t since_ms, size_t limit,
      const std::function<bool(const proto::AuditEntry&)>& keep) const;
  // The name of an operation kind in the audit log.
  static std::string_view OperationName(OpKind kind);

  // ---- prefix table (stored with the 0.NA/<prefix> records) ----
  // A prefix is homed or mirrored here by the operator (these calls, HOME_NA/UNHOME_NA), and
  // delegated by the content of its prefix handle 0.NA/<prefix> here: whenever that record is
  // written (by any path, in the same batch) and the prefix is neither homed nor mirrored, it is
  // delegated if the record carries HS_SITE / HS_SITE.6 / HS_SERV values (a service referral for
  // its identifiers) or HS_SITE.PREFIX / HS_NA_DELEGATE / HS_SERV.PREFIX values (a prefix referral
  // for the prefix handles of prefixes derived from it), and not in the table otherwise.
  //
  // Homes `prefix` here and creates its prefix handle with `values` (HS_SITE, HS_ADMIN, ...) if
  // it does not exist.
  OpResult HomePrefix(std::string_view prefix, const std::vector<proto::Value>& values = {});
  // Delegates `prefix` to another node: the location values (HS_SITE, HS_SITE.6, HS_SERV) of its
  // 0.NA/<prefix> record are replaced by `site_values`; its other values (HS_ADMIN, keys, ...)
  // are kept (an index a kept value holds is given to the new value's next free index).
  OpResult DelegatePrefix(std::string_view prefix, const std::vector<proto::Value>& site_values);
  // Mirrors `prefix` from `peer`; with `owner_site_values`, they replace the location values of
  // its 0.NA/<prefix> record (as DelegatePrefix), so that the mirror can refer to its owner
  // until its copy is complete.
  OpResult MirrorPrefix(std::string_view prefix, std::string_view peer,
                        const std::vector<proto::Value>& owner_site_values = {});
  // Removes the prefix's role: a homed or mirrored prefix is then whatever its 0.NA/<prefix>
  // record makes it (delegated if it carries location values); a delegated prefix loses the
  // location values of that record (its other values are kept), so it leaves the table.
  OpResult ForgetPrefix(std::string_view prefix);
  // Marks a mirrored prefix's copy complete (a miss there is then "not found", not a referral).
  OpResult SetMirrorSynced(std::string_view prefix, bool synced);
  // Replication's view of a mirror: its owner's lineage id for the prefix, and whether the copy
  // is complete (which also ends a stale copy's referrals). Refused unless `prefix` is mirrored
  // from `peer`.
  OpResult SetMirrorState(std::string_view prefix, std::string_view peer,
                          std::string_view lineage_id, bool synced);
  // A mirror's answer policy: 0, prefix_flag::kReferToOwner or kReferWhileOwnerUp.
  OpResult SetMirrorAnswerPolicy(std::string_view prefix, uint8_t policy_flags);
  // Emergency take-over: a prefix mirrored here becomes homed here and writable, with a new
  // lineage id (replicas of the old owner's history then resync). Refused (kInvalidValue) unless
  // the prefix is mirrored.
  OpResult TakeOverPrefix(std::string_view prefix);
  // Whether replication can reach `peer` (runtime only): mirrors from an unreachable owner with
  // the kReferWhileOwnerUp policy are answered from their copy.
  void SetPeerReachable(std::string_view peer, bool reachable);
  // The node `prefix` is mirrored from ("" when it is not mirrored here).
  std::string MirrorPeerOf(std::string_view prefix) const;
  // The prefix's lineage id as this node knows it: that of its nearest homed or mirrored entry at
  // or above it ("" when there is none, or for a mirror not synced yet).
  Result<std::string, std::string> LineageOfPrefix(std::string_view prefix) const;
  // The stored state of `prefix` (read from storage), or why it could not be read.
  Result<std::optional<proto::PrefixState>, std::string> ReadPrefix(std::string_view prefix) const;
  // The same, a read failure taken as no state (for tools and tests).
  std::optional<proto::PrefixState> FindPrefix(std::string_view prefix) const;
  // Every stored prefix state (read from storage: for tools and listings, not per request).
  Result<std::vector<proto::PrefixState>, std::string> Prefixes() const;
  // The table resolution routes by; readers use a PrefixTable::Reader per thread.
  const PrefixTable& prefix_table() const { return prefix_table_; }
  // Whether writes to `handle` are accepted here: the nearest entry of its prefix (walking up the
  // dots) is homed here. A prefix handle 0.NA/P is writable when P's nearest entry is homed here,
  // or when this node homes 0.NA (a top-level node administers every prefix handle).
  bool IsWritable(std::string_view handle) const;
  // Whether this node holds `handle`'s data completely: writable here, or under a mirrored prefix
  // whose copy is whole (not waiting on its first snapshot). Identities are verified against what
  // the node holds, so a standby's server admins can authenticate with mirrored keys (take-over).
  bool HoldsData(std::string_view handle) const;
  // Whether a replicated change to `key` (normalised) would overwrite this node's own data: the
  // nearest homed or mirrored entry above it is homed here (for an identifier, from its prefix
  // up; for a prefix handle 0.NA/P, from P's parent up, then 0.NA: the rule replicas filter by).
  bool OwnedHere(std::string_view key) const;
  // Moves whenever the prefix table changes.
  uint64_t prefix_generation() const { return prefix_table_.generation(); }
  // This node's own HS_SITE (the application sets it once, after binding and before requests are
  // served). A delegated prefix whose HS_SITE values name this node (a secondary node holding the
  // prefix handles of its enterprise prefixes, with its own site in them) is served here like a
  // homed one: answered, and writable, instead of referred to itself.
  void SetOwnSite(std::span<const uint8_t> site_info);
  // Whether HS_SITE data `site` lists this node (a server with a Handle interface on one of this
  // node's addresses and ports; for a node bound to the wildcard address, its interfaces'
  // addresses); false before SetOwnSite. Reads in place, allocates nothing.
  bool NamesThisNode(std::span<const uint8_t> site) const;
  // Whether the delegated prefix `delegated` is delegated to this node itself under a prefix homed
  // here (its prefix handle's public HS_SITE values name this node): then it is served, and
  // writable, here like a homed one. Reads the prefix handle: not for network workers.
  bool DelegatedToThisNode(const PrefixTable::View& table, std::string_view delegated) const;
  // This node is server `index` of a site of `count` servers (site.servers; the application sets
  // it once, before requests are served): it holds and answers only the identifiers whose hash
  // (HANDLE.md §1.7, the whole handle) picks it.
  void SetSiteServer(uint32_t count, uint32_t index);
  // Whether `key` (a normalised handle) is this server's in its site: always in a one-server
  // site, and for prefix handles (0.NA/...: every server of the site holds those, which decide
  // what it serves and who administers it). Allocates nothing.
  bool OnThisServer(std::string_view key) const;
  uint32_t site_server_count() const { return site_servers_.load(std::memory_order_relaxed); }
  // Whether normalised handle `key` hashes to server `index` of a site of `count` servers
  // (HANDLE.md §1.7, the whole handle; prefix handles are every server's). The hash alone.
  static bool HashedToServer(std::string_view key, uint32_t count, uint32_t index);
  // Whether server `index` of such a site holds `key`: identifiers of prefixes homed or mirrored
  // here are divided by the hash (each server of a mirror site replicates its share only: the
  // subscription is narrowed to it); prefix handles, and identifiers of prefixes delegated to
  // this node, are every server's (the site's clients reach those through another site record,
  // which names one server).
  bool HeldByServer(std::string_view key, uint32_t count, uint32_t index) const;
  // For `idctl site split`, on a stopped node's copy: deletes from `shard` the records another
  // server of a site of `count` servers holds (HeldByServer), `chunk` keys a batch, bypassing the
  // changelog; the shard's history moves to a new lineage first. Returns how many were deleted.
  Result<uint64_t, std::string> DropOtherServersRecords(uint32_t shard, uint32_t count,
                                                        uint32_t index, size_t chunk = 10000);

  // ---- changelog ----
  // The shard's history id (ChangelogEntry.lineage_id): a sequence number is a position only
  // within it. It changes when records enter the shard outside the changelog (IngestSorted).
  // Whether a replica at `sequence` (and holding changes up to `highest`) of `lineage` can go on
  // from there in this shard's current history: the current lineage, up to the last sequence; or
  // an earlier one that the shard forked from (each open forks), no further than any fork since.
  bool ResumableFrom(uint32_t shard, std::string_view lineage, uint64_t sequence,
                     uint64_t highest) const;
  std::string ShardLineage(uint32_t shard) const;
  // Called after every commit that added changelog entries to `shard`, on the writer's thread
  // and possibly under the shard's write lock: it must not block or call into the registry. Set
  // once, before writes begin.
  void SetChangeListener(std::function<void(uint32_t shard)> listener);
  uint64_t LastSequence(uint32_t shard) const;
  // The oldest sequence still retained (LastSequence + 1 when the changelog is empty).
  uint64_t FirstRetainedSequence(uint32_t shard) const;
  // Visits entries of `shard` with sequence >= from, in order, at most `max`. Returns the
  // sequence to continue from, or an error if `from` is older than what is retained (the reader
  // must take a snapshot instead).
  Result<uint64_t, std::string> ReadChangelog(
      uint32_t shard, uint64_t from, size_t max,
      const std::function<bool(const proto::ChangelogEntry&)>& visit) const;
  RetentionPin PinRetention(uint32_t shard, uint64_t from_sequence);
  // A replica's acknowledged positions (source shard -> the last sequence it applied), kept in
  // the shard's meta so that they hold retention across restarts (RetentionPolicy).
  Result<Unit, std::string> SavePeerPositions(
      std::string_view peer, const std::vector<std::pair<uint32_t, uint64_t>>& positions);
  // Every replica's saved position in `shard`.
  std::vector<std::pair<std::string, uint64_t>> PeerPositions(uint32_t shard) const;
  // Deletes the saved positions of replicas not in `peers` (no longer configured: they would hold
  // the changelog for nobody). Returns how many positions went.
  Result<uint64_t, std::string> ForgetPeerPositionsExcept(const std::vector<std::string>& peers);
  // Deletes changelog entries beyond the retention policy (never pinned ones) and forgotten
  // transaction outcomes. Returns the number of changelog entries deleted.
  Result<uint64_t, std::string> ApplyRetention(std::chrono::system_clock::time_point now);
  void SetRetentionPolicy(const RetentionPolicy& policy);

  // ---- snapshots, digests, bulk load ----
  ShardSnapshot TakeSnapshot(uint32_t shard);
  // Visits the records of a snapshot (optionally only those `prefix` holds with its derived
  // prefixes: identifier::HeldUnderPrefix), in key order.
  Result<Unit, std::string> ScanSnapshot(
      const ShardSnapshot& snapshot, std::string_view prefix,
      const std::function<bool(const proto::Record&)>& visit) const;
  // Order-independent digest of all records (or of those `prefix` holds: its identifiers, those
  // of its derived prefixes and their prefix handles, as a replica of it holds them): the sum,
  // lane by lane
  // modulo 2^64, of SHA-256(normalised handle, values in wire form). Equal on any two nodes that
  // hold the same data, whatever order it arrived in.
  // `keep` (optional) sees each record's normalised handle and says whether it counts.
  Result<Digest, std::string> ComputeDigest(
      std::string_view prefix = {},
      const std::function<bool(std::string_view key)>& keep = {}) const;
  // Writes records straight into a shard, bypassing the changelog: for `idctl import` into a
  // stopped node. `sorted` holds (normalised handle, serialised record) in key order.
  Result<Unit, std::string> IngestSorted(uint32_t shard,
                                         std::span<const storage::KeyValueView> sorted);
  Result<Unit, std::string> IngestSorted(
      uint32_t shard, const std::vector<std::pair<std::string, std::string>>& sorted) {
    return IngestSorted(shard, storage::Views(sorted));
  }
  // The other bulk path: (normalised handle, serialised record) pairs written as ordinary changes
  // of `shard` (record, changelog entry and sequence in one batch per thousand), without the
  // writability check: an operator's import, not a client's request.
  Result<Unit, std::string> PutRecords(uint32_t shard,
                                       std::span<const storage::KeyValueView> records);
  Result<Unit, std::string> PutRecords(
      uint32_t shard, const std::vector<std::pair<std::string, std::string>>& records) {
    return PutRecords(shard, storage::Views(records));
  }

  // ---- applying what a replication source sent ----
  // One change from a source: the record now under `key` (normalised), or its deletion.
  struct ReplicatedChange {
    std::string key;
    std::optional<std::string> record;  // serialised proto::Record; nullopt: deleted
  };
  // Writes `changes` to `shard` as this node's own changes (records, changelog entries with this
  // shard's sequences, prefix states derived from prefix handles) together with `meta` (the
  // replica's cursors: key, value) in ONE batch, then invalidates the caches: so a crash never
  // loses a cursor's changes or applies them twice. The caller decides what it may apply
  // (mirrored prefixes); a change to a handle owned here (OwnedHere: a take-over since the
  // caller checked) is skipped under the shard's write lock, never applied. Without `logged` (a
  // snapshot being applied), no changelog entries are written and the shard's history moves to a
  // new lineage id in the same batch, as for an import: this node's own replicas then take a
  // snapshot too.
  // `sync` false: the batch is committed (visible, in the WAL) but durable only with the shard's
  // next synced write or SyncShard, so that a replica applying a burst of changes pays one fsync
  // per shard for the burst (group commit) before it acknowledges.
  Result<Unit, std::string> ApplyReplicated(
      uint32_t shard, const std::vector<ReplicatedChange>& changes,
      const std::vector<std::pair<std::string, std::string>>& meta, bool logged = true,
      bool sync = true);
  // Makes the shard's committed writes durable (see ApplyReplicated's `sync`).
  Result<Unit, std::string> SyncShard(uint32_t shard);
  // Small values of the shard's meta column for other rooms (replication cursors: keys under
  // "repl/"). ReadMeta gives nullopt when absent.
  Result<std::optional<std::string>, std::string> ReadMeta(uint32_t shard,
                                                           std::string_view key) const;
  Result<Unit, std::string> ScanMeta(
      uint32_t shard, std::string_view key_prefix,
      const std::function<bool(std::string_view key, std::string_view value)>& visit) const;
  Result<Unit, std::string> WriteMeta(uint32_t shard,
                                      const std::vector<std::pair<std::string, std::string>>& puts,
                                      const std::vector<std::string>& deletes = {});

  // Storage errors make the registry refuse further writes (RC_ERROR) until restarted: reads
  // are still served (HARDENING.md row I).
  bool write_failed() const { return write_failed_.load(std::memory_order_relaxed); }

 private:
  struct ShardState {
    std::mutex write_mutex;
    std::atomic<uint64_t> last_sequence{0};
    std::atomic<uint64_t> first_sequence{1};
    mutable std::mutex pins_mutex;
    std::multiset<uint64_t> pins;
    std::map<std::string, uint64_t, std::less<>> peer_positions;  // under pins_mutex
    std::string lineage;                                          // under pins_mutex
    proto::LineageForks forks;                                    // under pins_mutex
  };
  class ShardWriter;

  explicit Registry(RegistryOptions options);
  Result<Unit, std::string> LoadShardState(uint32_t shard);
  // The table entry of a stored state, with the runtime kOwnerDown flag (under mirrors_mutex_).
  PrefixEntry EntryOfLocked(const proto::PrefixState& state) const;
  void NotifyChange(uint32_t shard) const {
    if (change_listener_) change_listener_(shard);
  }
  Result<Unit, std::string> LoadPrefixes();
  Result<Unit, std::string> DerivePrefixStatesOnce();
  // The prefix state that the 0.NA/<prefix> record `record` (nullptr: deleted) gives `prefix`
  // whose stored state is `stored` (nullopt: none); nullopt when it leaves the table.
  static std::optional<proto::PrefixState> DerivePrefixState(
      std::string_view prefix, const std::optional<proto::PrefixState>& stored,
      const proto::Record* record);
  Result<std::optional<proto::PrefixState>, std::string> ReadPrefixState(
      uint32_t shard, std::string_view prefix) const;
  // Adds the meta write for `next` (nullopt: delete) of `prefix` to `batch`.
  static void StagePrefixState(storage::Batch& batch, std::string_view prefix,
                               const std::optional<proto::PrefixState>& next);
  void PublishPrefixState(std::string_view prefix, const std::optional<proto::PrefixState>& next);
  void PublishPrefixStates(
      const std::vector<std::pair<std::string, std::optional<proto::PrefixState>>>& states);
  // For bulk loads: stages the state an imported prefix handle gives its prefix.
  Result<std::pair<std::string, std::optional<proto::PrefixState>>, std::string>
  StageImportedPrefixHandle(uint32_t shard, std::string_view key, std::string_view serialized,
                            storage::Batch& batch) const;
  std::vector<OpResult> ApplyOnShard(uint32_t shard, std::string_view transaction_id,
                                     const std::vector<std::pair<size_t, const Operation*>>& ops,
                                     std::span<const uint32_t> positions);
  // Reads the stored state and prefix handle record of `prefix` under its shard's write lock,
  // lets `change` edit both (the state: homed/mirrored/none; false refuses with kInvalidValue),
  // then writes the record (with its changelog entry) and the derived state in one batch and
  // publishes the state.
  OpResult ChangePrefix(std::string_view prefix,
                        const std::function<bool(std::optional<proto::PrefixState>& state,
                                                 std::optional<proto::Record>& record)>& change);
  void InvalidateCache(std::string_view normalized) const;

  RegistryOptions options_;
  std::unique_ptr<storage::Store> store_;
  std::vector<std::unique_ptr<ShardState>> shards_;
  PrefixTable prefix_table_;
  mutable std::atomic<uint64_t> read_errors_{0};
  // Makes audit keys written in the same millisecond distinct; random from the start, so that
  // a clock stepped back after a restart does not repeat a key (and overwrite its entry).
  std::atomic<uint64_t> audit_counter_{RandomSeed()};
  static uint64_t RandomSeed();
  // This node's Handle endpoints (address as 16 bytes, IPv4 right-aligned; port), from SetOwnSite.
  std::vector<std::pair<std::array<uint8_t, 16>, uint32_t>> own_endpoints_;
  std::atomic<uint32_t> site_servers_{1};
  std::atomic<uint32_t> this_server_{0};
  std::atomic<bool> write_failed_{false};
  std::function<void(uint32_t)> change_listener_;
  // Mirrored prefixes and their owners, and the owners replication cannot reach (the runtime
  // kOwnerDown flag); under mirrors_mutex_.
  mutable std::mutex mirrors_mutex_;
  std::map<std::string, std::string, std::less<>> mirror_peers_;
  std::set<std::string, std::less<>> unreachable_peers_;
};

}  // namespace idnode::registry
