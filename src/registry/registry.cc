#include "idnode/registry/registry.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstring>

#include "idnode/cache/answer_cache.h"
#include "idnode/common/hex.h"
#include "idnode/identifier/identifier.h"

namespace idnode::registry {

namespace {

using storage::Column;

constexpr std::string_view kMetaSequence = "seq";
constexpr std::string_view kMetaFirstSequence = "first";
constexpr std::string_view kMetaLineage = "lineage";
constexpr std::string_view kMetaPrefixPrefix = "prefix/";
constexpr std::string_view kMetaTransactionPrefix = "txn/";
constexpr size_t kMaxValueTypeLength = 256;

uint64_t NowMs(std::chrono::system_clock::time_point now = std::chrono::system_clock::now()) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count());
}

std::string TransactionKey(std::string_view transaction_id, size_t op_index) {
  std::string key(kMetaTransactionPrefix);
  key.append(transaction_id);
  key.push_back('\0');
  for (int shift = 24; shift >= 0; shift -= 8)
    key.push_back(static_cast<char>((op_index >> shift) & 0xff));
  return key;
}

std::string StorageMessage(const storage::StorageError& e) {
  return e.message;
}

// Handle-level checks of values to be stored (HARDENING.md §3 cases 20-21).
bool ValidValues(const std::vector<proto::Value>& values) {
  std::set<int32_t> seen;
  for (const auto& v : values) {
    if (v.index() <= 0 || !seen.insert(v.index()).second) return false;  // duplicate: refuse all
    if (v.type().empty() || v.type().size() > kMaxValueTypeLength) return false;
    if ((v.permissions() & ~uint32_t{protocol::permission::kDefinedMask}) != 0) return false;
    // Secrets are never public (HARDENING.md row O).
    if (v.type() == "HS_SECKEY" && (v.permissions() & protocol::permission::kPublicRead) != 0)
      return false;
  }
  return true;
}

void SortByIndex(proto::Record& record) {
  std::sort(record.mutable_values()->begin(), record.mutable_values()->end(),
            [](const proto::Value& a, const proto::Value& b) { return a.index() < b.index(); });
}

void Stamp(proto::Value& v, uint32_t now_s) {
  if (v.timestamp() == 0) v.set_timestamp(now_s);
}

int FindIndex(const proto::Record& record, int32_t index) {
  for (int i = 0; i < record.values_size(); ++i) {
    if (record.values(i).index() == index) return i;
  }
  return -1;
}

}  // namespace

// ---- RetentionPin ------------------------------------------------------------------------------

RetentionPin& RetentionPin::operator=(RetentionPin&& other) noexcept {
  if (this != &other) {
    Release();
    release_ = std::move(other.release_);
    sequence_ = other.sequence_;
    other.release_ = nullptr;
  }
  return *this;
}

void RetentionPin::Release() {
  if (release_) {
    release_();
    release_ = nullptr;
  }
}

std::string Digest::hex() const {
  return ToHex(bytes);
}

// ---- open --------------------------------------------------------------------------------------

namespace {
// Each registry's prefix generations start in their own range, so a reader's copy of one
// registry's table is never mistaken for another's (one opened later at the same address).
std::atomic<uint64_t> next_generation_base{1};
}  // namespace

Registry::Registry(RegistryOptions options) : options_(std::move(options)) {
  prefix_generation_.store(next_generation_base.fetch_add(uint64_t{1} << 32));
}
Registry::~Registry() = default;

Result<std::unique_ptr<Registry>, std::string> Registry::Open(RegistryOptions options) {
  std::unique_ptr<Registry> registry(new Registry(std::move(options)));
  auto store = storage::Store::Open(registry->options_.storage);
  if (!store.ok()) return Failure{store.error().message};
  registry->store_ = std::move(*store);
  for (uint32_t i = 0; i < registry->store_->shard_count(); ++i) {
    registry->shards_.push_back(std::make_unique<ShardState>());
    auto loaded = registry->LoadShardState(i);
    if (!loaded.ok()) return Failure{loaded.error()};
  }
  auto prefixes = registry->LoadPrefixes();
  if (!prefixes.ok()) return Failure{prefixes.error()};

  std::string lineage;
  auto got = registry->store_->Get(0, Column::kMeta, kMetaLineage, &lineage);
  if (!got.ok()) return Failure{got.error().message};
  if (!*got) {
    std::array<uint8_t, 16> id{};
    if (RAND_bytes(id.data(), static_cast<int>(id.size())) != 1)
      return Failure{std::string("no randomness for lineage id")};
    lineage = ToHex(id);
    storage::Batch batch;
    batch.Put(Column::kMeta, kMetaLineage, lineage);
    auto written = registry->store_->Write(0, batch);
    if (!written.ok()) return Failure{written.error().message};
  }
  registry->lineage_id_ = lineage;
  return registry;
}

Result<Unit, std::string> Registry::LoadShardState(uint32_t shard) {
  std::string value;
  auto seq = store_->Get(shard, Column::kMeta, kMetaSequence, &value);
  if (!seq.ok()) return Failure{seq.error().message};
  uint64_t last = *seq ? storage::DecodeSequenceKey(value) : 0;
  auto first = store_->Get(shard, Column::kMeta, kMetaFirstSequence, &value);
  if (!first.ok()) return Failure{first.error().message};
  shards_[shard]->last_sequence.store(last);
  shards_[shard]->first_sequence.store(*first ? storage::DecodeSequenceKey(value) : 1);
  return Unit{};
}

Result<Unit, std::string> Registry::LoadPrefixes() {
  std::string end(kMetaPrefixPrefix);
  end.back() = static_cast<char>(end.back() + 1);
  for (uint32_t shard = 0; shard < store_->shard_count(); ++shard) {
    bool bad = false;
    auto scanned = store_->Scan(shard, Column::kMeta, kMetaPrefixPrefix, end,
                                [&](std::string_view, std::string_view v) {
                                  proto::PrefixState state;
                                  if (!state.ParseFromArray(v.data(), static_cast<int>(v.size()))) {
                                    bad = true;
                                    return false;
                                  }
                                  prefixes_[state.prefix()] = state;
                                  return true;
                                });
    if (!scanned.ok()) return Failure{scanned.error().message};
    if (bad)
      return Failure{std::string("corrupt prefix table entry in shard ") + std::to_string(shard)};
  }
  return Unit{};
}

uint32_t Registry::ShardOf(std::string_view handle) const {
  return identifier::ShardOf(handle, store_->shard_count());
}

void Registry::InvalidateCache(std::string_view normalized) const {
  if (options_.cache) options_.cache->Invalidate(normalized);
  if (options_.json_cache) options_.json_cache->Invalidate(normalized);
}

// ---- reads -------------------------------------------------------------------------------------

GetResult Registry::Get(std::string_view handle, const Filter& filter) const {
  GetResult result;
  std::string key = identifier::Normalize(handle);
  std::string value;
  auto got = store_->Get(ShardOf(key), Column::kRecords, key, &value);
  if (!got.ok()) {
    result.code = ResponseCode::kError;
    return result;
  }
  if (!*got) return result;  // kHandleNotFound
  proto::Record record;
  if (!record.ParseFromString(value)) {
    result.code = ResponseCode::kError;
    return result;
  }
  result.record.set_handle(record.handle());
  result.record.set_version(record.version());
  for (const auto& v : record.values()) {
    if (filter.Matches(v)) *result.record.add_values() = v;
  }
  // 200 when the index/type filters select nothing; PO alone leaves values out silently.
  result.code = (!filter.selects_all() && result.record.values_size() == 0)
                    ? ResponseCode::kValuesNotFound
                    : ResponseCode::kSuccess;
  return result;
}

ResponseCode Registry::HasHandlesUnder(std::string_view handle_prefix) const {
  const std::string key = identifier::Normalize(handle_prefix);
  // Records are sharded by the hash of the whole handle: one seek in every shard, the first key at
  // or after the prefix deciding in each.
  for (uint32_t shard = 0; shard < store_->shard_count(); ++shard) {
    bool found = false;
    auto scanned = store_->Scan(shard, Column::kRecords, key, {},
                                [&](std::string_view first, std::string_view) {
                                  found = first.starts_with(key);
                                  return false;
                                });
    if (!scanned.ok()) return ResponseCode::kError;
    if (found) return ResponseCode::kSuccess;
  }
  return ResponseCode::kHandleNotFound;
}

bool Registry::GetEncoded(std::string_view handle, std::vector<uint8_t>* wire_values) const {
  std::string key = identifier::Normalize(handle);
  cache::AnswerCache* cache = options_.cache.get();
  uint64_t ticket = 0;
  if (cache != nullptr) {
    auto outcome = cache->Lookup(key, [wire_values](std::span<const uint8_t> bytes) {
      wire_values->assign(bytes.begin(), bytes.end());
    });
    if (outcome == cache::LookupResult::kHit) return true;
    if (outcome == cache::LookupResult::kNegativeHit) return false;
    ticket = cache->FillTicket(key);  // before the storage read: a write after it voids the fill
  }
  std::string value;
  auto got = store_->Get(ShardOf(key), Column::kRecords, key, &value);
  if (!got.ok()) return false;
  if (!*got) {
    if (cache != nullptr) cache->InsertNegativeIfFresh(key, ticket);
    return false;
  }
  proto::Record record;
  if (!record.ParseFromString(value)) return false;
  *wire_values = EncodeWireValues(record);
  if (cache != nullptr) cache->InsertIfFresh(key, *wire_values, ticket);
  return true;
}

// ---- writes ------------------------------------------------------------------------------------

bool Registry::IsWritable(std::string_view handle) const {
  std::string key = identifier::Normalize(handle);
  std::string_view prefix;
  if (identifier::IsPrefixHandle(key)) {
    prefix = std::string_view(key).substr(identifier::kPrefixHandlePrefix.size());
  } else {
    prefix = identifier::PrefixOf(key);
  }
  std::shared_lock lock(prefixes_mutex_);
  auto homed = [this](std::string_view p) {
    auto it = prefixes_.find(p);
    return it != prefixes_.end() && it->second.role() == proto::PrefixState::HOMED;
  };
  if (homed(prefix)) return true;
  // The node that homes 0.NA (a top-level node) administers every prefix handle.
  return identifier::IsPrefixHandle(key) && homed("0.NA");
}

OpResult Registry::Apply(const Operation& op) {
  return ApplyBatch({}, {op}).front();
}

std::vector<OpResult> Registry::ApplyBatch(std::string_view transaction_id,
                                           const std::vector<Operation>& ops) {
  std::vector<OpResult> results(ops.size());
  if (ops.size() > kMaxBatchOperations) {
    for (auto& r : results) r.code = ResponseCode::kServerTooBusy;
    return results;
  }
  // Operations on different shards touch different keys, so each shard's share can commit on its
  // own, in request order within the shard.
  std::vector<std::vector<std::pair<size_t, const Operation*>>> by_shard(store_->shard_count());
  for (size_t i = 0; i < ops.size(); ++i)
    by_shard[ShardOf(identifier::Normalize(ops[i].handle))].push_back({i, &ops[i]});
  for (uint32_t shard = 0; shard < by_shard.size(); ++shard) {
    if (by_shard[shard].empty()) continue;
    auto shard_results = ApplyOnShard(shard, transaction_id, by_shard[shard]);
    for (size_t j = 0; j < by_shard[shard].size(); ++j)
      results[by_shard[shard][j].first] = shard_results[j];
  }
  return results;
}

std::vector<OpResult> Registry::ApplyOnShard(
    uint32_t shard, std::string_view transaction_id,
    const std::vector<std::pair<size_t, const Operation*>>& ops) {
  ShardState& state = *shards_[shard];
  std::vector<OpResult> results(ops.size());
  for (auto& r : results) r.shard = shard;
  std::lock_guard lock(state.write_mutex);
  if (write_failed()) {
    for (auto& r : results) r.code = ResponseCode::kError;
    return results;
  }

  const uint64_t now_ms = NowMs();
  const uint32_t now_s = static_cast<uint32_t>(now_ms / 1000);
  uint64_t sequence = state.last_sequence.load();
  storage::Batch batch;
  std::map<std::string, std::optional<proto::Record>, std::less<>>
      overlay;  // records changed in this batch
  std::vector<std::string> touched;
  std::vector<bool> replayed(ops.size(), false);

  for (size_t j = 0; j < ops.size(); ++j) {
    const Operation& op = *ops[j].second;
    OpResult& result = results[j];
    std::string key = identifier::Normalize(op.handle);
    std::string marker;
    if (!transaction_id.empty()) {
      marker = TransactionKey(transaction_id, ops[j].first);
      std::string stored;
      auto got = store_->Get(shard, Column::kMeta, marker, &stored);
      proto::TransactionOutcome outcome;
      if (got.ok() && *got && outcome.ParseFromString(stored) &&
          outcome.response_codes_size() == 1) {
        result.code =
            static_cast<ResponseCode>(outcome.response_codes(0));  // a retry: answer as before
        replayed[j] = true;
        continue;
      }
    }

    // The current record: as changed earlier in this batch, or as stored.
    std::optional<proto::Record> current;
    bool read_error = false;
    if (auto it = overlay.find(key); it != overlay.end()) {
      current = it->second;
    } else {
      std::string value;
      auto got = store_->Get(shard, Column::kRecords, key, &value);
      if (!got.ok()) {
        read_error = true;
      } else if (*got) {
        current.emplace();
        if (!current->ParseFromString(value)) read_error = true;
      }
    }

    std::optional<proto::Record> next;  // the record after the operation (nullopt: deleted)
    ResponseCode code = ResponseCode::kSuccess;
    if (read_error) {
      code = ResponseCode::kError;
    } else if (!identifier::IsValidHandle(op.handle)) {
      code = ResponseCode::kInvalidHandle;
    } else if (!IsWritable(key)) {
      code = ResponseCode::kServerNotResponsible;
    } else {
      switch (op.kind) {
        case OpKind::kCreate:
          if (current && !op.overwrite) {
            code = ResponseCode::kHandleAlreadyExists;
          } else if (!ValidValues(op.values) || op.values.size() > protocol::kMaxValuesPerMessage) {
            code = ResponseCode::kInvalidValue;
          } else {
            next.emplace();
            next->set_handle(op.handle);
            next->set_version(current ? current->version() + 1 : 1);
            for (auto v : op.values) {
              Stamp(v, now_s);
              *next->add_values() = std::move(v);
            }
          }
          break;
        case OpKind::kDelete:
          if (!current) code = ResponseCode::kHandleNotFound;
          break;
        case OpKind::kAddValues:
        case OpKind::kModifyValues: {
          bool add = op.kind == OpKind::kAddValues;
          if (!current) {
            code = ResponseCode::kHandleNotFound;
            break;
          }
          if (op.values.empty() || !ValidValues(op.values)) {
            code = ResponseCode::kInvalidValue;
            break;
          }
          next = current;
          for (auto v : op.values) {
            Stamp(v, now_s);
            int at = FindIndex(*next, v.index());
            if (add && at >= 0 && !op.overwrite) {
              code = ResponseCode::kValueAlreadyExists;
              break;
            }
            if (!add && at < 0) {
              code = ResponseCode::kValuesNotFound;
              break;
            }
            if (at >= 0) {
              *next->mutable_values(at) = std::move(v);
            } else {
              *next->add_values() = std::move(v);
            }
          }
          if (code == ResponseCode::kSuccess &&
              next->values_size() > static_cast<int>(protocol::kMaxValuesPerMessage)) {
            code = ResponseCode::kInvalidValue;
          }
          break;
        }
        case OpKind::kRemoveValues: {
          if (!current) {
            code = ResponseCode::kHandleNotFound;
            break;
          }
          if (op.indexes.empty()) {
            code = ResponseCode::kInvalidValue;
            break;
          }
          next = current;
          for (int32_t index : op.indexes) {
            int at = FindIndex(*next, index);
            if (at < 0) {
              code = ResponseCode::kValuesNotFound;
              break;
            }
            next->mutable_values()->erase(next->mutable_values()->begin() + at);
          }
          break;
        }
      }
    }

    result.code = code;
    if (code == ResponseCode::kSuccess) {
      proto::ChangelogEntry entry;
      entry.set_sequence(++sequence);
      entry.set_handle(key);
      entry.set_lineage_id(lineage_id_);
      entry.set_time_ms(now_ms);
      if (next) {
        if (op.kind != OpKind::kCreate) next->set_version(current->version() + 1);
        SortByIndex(*next);
        entry.set_operation(proto::ChangelogEntry::PUT);
        *entry.mutable_record() = *next;
        batch.Put(Column::kRecords, key, next->SerializeAsString());
      } else {
        entry.set_operation(proto::ChangelogEntry::DELETE);
        batch.Delete(Column::kRecords, key);
      }
      batch.Put(Column::kChangelog, storage::EncodeSequenceKey(sequence),
                entry.SerializeAsString());
      overlay[key] = next;
      touched.push_back(key);
      result.sequence = sequence;
    }
    if (!marker.empty() && code != ResponseCode::kError) {
      proto::TransactionOutcome outcome;
      outcome.add_response_codes(static_cast<uint32_t>(code));
      outcome.set_time_ms(now_ms);
      batch.Put(Column::kMeta, marker, outcome.SerializeAsString());
    }
  }

  if (batch.count() == 0) return results;
  if (sequence != state.last_sequence.load()) {
    batch.Put(Column::kMeta, kMetaSequence, storage::EncodeSequenceKey(sequence));
  }
  auto written = store_->Write(shard, batch);
  if (!written.ok()) {
    // Nothing of this batch is acknowledged; the node stops taking writes until an operator has
    // looked (a disk that failed once is not trusted with the next write).
    write_failed_.store(true);
    for (size_t j = 0; j < results.size(); ++j) {
      if (!replayed[j]) {
        results[j].code = ResponseCode::kError;
        results[j].sequence = 0;
      }
    }
    return results;
  }
  state.last_sequence.store(sequence);
  for (const auto& key : touched) InvalidateCache(key);  // before anyone is told "done"
  return results;
}

// ---- prefix table ------------------------------------------------------------------------------

OpResult Registry::WritePrefixState(const proto::PrefixState& prefix_state,
                                    const std::vector<proto::Value>* values, bool replace_values) {
  std::string handle = identifier::Normalize(identifier::PrefixHandleFor(prefix_state.prefix()));
  uint32_t shard = ShardOf(handle);
  ShardState& state = *shards_[shard];
  OpResult result;
  result.shard = shard;
  if (values != nullptr && !ValidValues(*values)) {
    result.code = ResponseCode::kInvalidValue;
    return result;
  }
  std::lock_guard lock(state.write_mutex);
  if (write_failed()) {
    result.code = ResponseCode::kError;
    return result;
  }
  storage::Batch batch;
  std::string meta_key = std::string(kMetaPrefixPrefix) + prefix_state.prefix();
  if (prefix_state.role() == proto::PrefixState::ROLE_UNSPECIFIED) {
    batch.Delete(Column::kMeta, meta_key);
  } else {
    batch.Put(Column::kMeta, meta_key, prefix_state.SerializeAsString());
  }
  uint64_t sequence = state.last_sequence.load();
  bool record_changed = false;
  if (values != nullptr) {
    std::string stored;
    auto got = store_->Get(shard, Column::kRecords, handle, &stored);
    if (!got.ok()) {
      result.code = ResponseCode::kError;
      return result;
    }
    proto::Record current;
    bool exists = *got && current.ParseFromString(stored);
    if ((!exists && !values->empty()) || (exists && replace_values)) {
      proto::Record next;
      next.set_handle(identifier::PrefixHandleFor(prefix_state.prefix()));
      next.set_version(exists ? current.version() + 1 : 1);
      uint32_t now_s = static_cast<uint32_t>(NowMs() / 1000);
      for (auto v : *values) {
        Stamp(v, now_s);
        *next.add_values() = std::move(v);
      }
      SortByIndex(next);
      proto::ChangelogEntry entry;
      entry.set_sequence(++sequence);
      entry.set_operation(proto::ChangelogEntry::PUT);
      entry.set_handle(handle);
      entry.set_lineage_id(lineage_id_);
      entry.set_time_ms(NowMs());
      *entry.mutable_record() = next;
      batch.Put(Column::kRecords, handle, next.SerializeAsString());
      batch.Put(Column::kChangelog, storage::EncodeSequenceKey(sequence),
                entry.SerializeAsString());
      batch.Put(Column::kMeta, kMetaSequence, storage::EncodeSequenceKey(sequence));
      record_changed = true;
    }
  }
  auto written = store_->Write(shard, batch);
  if (!written.ok()) {
    write_failed_.store(true);
    result.code = ResponseCode::kError;
    return result;
  }
  state.last_sequence.store(sequence);
  {
    std::unique_lock prefixes_lock(prefixes_mutex_);
    if (prefix_state.role() == proto::PrefixState::ROLE_UNSPECIFIED) {
      prefixes_.erase(prefix_state.prefix());
    } else {
      prefixes_[prefix_state.prefix()] = prefix_state;
    }
    prefix_generation_.fetch_add(1, std::memory_order_release);
  }
  if (record_changed) {
    InvalidateCache(handle);
    result.sequence = sequence;
  }
  result.code = ResponseCode::kSuccess;
  return result;
}

OpResult Registry::HomePrefix(std::string_view prefix, const std::vector<proto::Value>& values) {
  proto::PrefixState state;
  state.set_prefix(identifier::Normalize(prefix));
  state.set_role(proto::PrefixState::HOMED);
  return WritePrefixState(state, &values, false);
}

OpResult Registry::DelegatePrefix(std::string_view prefix,
                                  const std::vector<proto::Value>& site_values) {
  proto::PrefixState state;
  state.set_prefix(identifier::Normalize(prefix));
  state.set_role(proto::PrefixState::DELEGATED);
  return WritePrefixState(state, &site_values, true);
}

OpResult Registry::MirrorPrefix(std::string_view prefix, std::string_view peer) {
  proto::PrefixState state;
  state.set_prefix(identifier::Normalize(prefix));
  state.set_role(proto::PrefixState::MIRRORED);
  state.set_peer(std::string(peer));
  return WritePrefixState(state, nullptr, false);
}

OpResult Registry::ForgetPrefix(std::string_view prefix) {
  proto::PrefixState state;
  state.set_prefix(identifier::Normalize(prefix));
  return WritePrefixState(state, nullptr, false);
}

std::optional<proto::PrefixState> Registry::FindPrefix(std::string_view prefix) const {
  std::string key = identifier::Normalize(prefix);
  std::shared_lock lock(prefixes_mutex_);
  auto it = prefixes_.find(key);
  if (it == prefixes_.end()) return std::nullopt;
  return it->second;
}

std::vector<proto::PrefixState> Registry::Prefixes() const {
  std::shared_lock lock(prefixes_mutex_);
  std::vector<proto::PrefixState> out;
  for (const auto& [name, state] : prefixes_) out.push_back(state);
  return out;
}

// ---- changelog ---------------------------------------------------------------------------------

uint64_t Registry::LastSequence(uint32_t shard) const {
  return shards_[shard]->last_sequence.load();
}

uint64_t Registry::FirstRetainedSequence(uint32_t shard) const {
  return shards_[shard]->first_sequence.load();
}

Result<uint64_t, std::string> Registry::ReadChangelog(
    uint32_t shard, uint64_t from, size_t max,
    const std::function<bool(const proto::ChangelogEntry&)>& visit) const {
  if (from < FirstRetainedSequence(shard)) {
    return Failure{"sequence " + std::to_string(from) + " is no longer retained (first is " +
                   std::to_string(FirstRetainedSequence(shard)) + "): take a snapshot"};
  }
  uint64_t next = from;
  size_t visited = 0;
  bool corrupt = false;
  auto scanned = store_->Scan(
      shard, Column::kChangelog, storage::EncodeSequenceKey(from), {},
      [&](std::string_view key, std::string_view value) {
        if (visited >= max) return false;
        proto::ChangelogEntry entry;
        if (!entry.ParseFromArray(value.data(), static_cast<int>(value.size())) ||
            entry.sequence() != storage::DecodeSequenceKey(key) || entry.sequence() != next) {
          corrupt = true;  // a hole or a mismatch: never skip silently
          return false;
        }
        ++visited;
        next = entry.sequence() + 1;
        return visit(entry);
      });
  if (!scanned.ok()) return Failure{StorageMessage(scanned.error())};
  if (corrupt)
    return Failure{"changelog of shard " + std::to_string(shard) + " has a gap or a bad entry at " +
                   std::to_string(next)};
  return next;
}

RetentionPin Registry::PinRetention(uint32_t shard, uint64_t from_sequence) {
  ShardState& state = *shards_[shard];
  {
    std::lock_guard lock(state.pins_mutex);
    state.pins.insert(from_sequence);
  }
  RetentionPin pin;
  pin.sequence_ = from_sequence;
  pin.release_ = [&state, from_sequence] {
    std::lock_guard lock(state.pins_mutex);
    auto it = state.pins.find(from_sequence);
    if (it != state.pins.end()) state.pins.erase(it);
  };
  return pin;
}

void Registry::SetRetentionPolicy(const RetentionPolicy& policy) {
  options_.retention = policy;
}

Result<uint64_t, std::string> Registry::ApplyRetention(std::chrono::system_clock::time_point now) {
  uint64_t deleted = 0;
  const uint64_t max_age_ms = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(options_.retention.max_age).count());
  const uint64_t oldest_kept_ms = NowMs(now) > max_age_ms ? NowMs(now) - max_age_ms : 0;
  const uint64_t txn_memory_ms = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(options_.transaction_memory).count());
  const uint64_t oldest_txn_ms = NowMs(now) > txn_memory_ms ? NowMs(now) - txn_memory_ms : 0;

  for (uint32_t shard = 0; shard < store_->shard_count(); ++shard) {
    ShardState& state = *shards_[shard];
    std::lock_guard lock(state.write_mutex);
    uint64_t first = state.first_sequence.load();
    uint64_t last = state.last_sequence.load();
    uint64_t cutoff = first;  // entries below cutoff go
    if (last >= first && last - first + 1 > options_.retention.max_entries_per_shard) {
      cutoff = last - options_.retention.max_entries_per_shard + 1;
    }
    auto scanned =
        store_->Scan(shard, Column::kChangelog, storage::EncodeSequenceKey(cutoff), {},
                     [&](std::string_view key, std::string_view value) {
                       proto::ChangelogEntry entry;
                       if (!entry.ParseFromArray(value.data(), static_cast<int>(value.size())))
                         return false;
                       if (entry.time_ms() >= oldest_kept_ms) return false;
                       cutoff = storage::DecodeSequenceKey(key) + 1;
                       return true;
                     });
    if (!scanned.ok()) return Failure{StorageMessage(scanned.error())};
    {
      std::lock_guard pins_lock(state.pins_mutex);
      if (!state.pins.empty()) cutoff = std::min(cutoff, *state.pins.begin());
    }
    storage::Batch batch;
    if (cutoff > first) {
      batch.DeleteRange(Column::kChangelog, storage::EncodeSequenceKey(first),
                        storage::EncodeSequenceKey(cutoff));
      batch.Put(Column::kMeta, kMetaFirstSequence, storage::EncodeSequenceKey(cutoff));
    }
    std::string txn_end(kMetaTransactionPrefix);
    txn_end.back() = static_cast<char>(txn_end.back() + 1);
    auto txns =
        store_->Scan(shard, Column::kMeta, kMetaTransactionPrefix, txn_end,
                     [&](std::string_view key, std::string_view value) {
                       proto::TransactionOutcome outcome;
                       if (outcome.ParseFromArray(value.data(), static_cast<int>(value.size())) &&
                           outcome.time_ms() < oldest_txn_ms) {
                         batch.Delete(Column::kMeta, key);
                       }
                       return batch.count() < 100000;
                     });
    if (!txns.ok()) return Failure{StorageMessage(txns.error())};
    if (batch.count() == 0) continue;
    auto written = store_->Write(shard, batch);
    if (!written.ok()) return Failure{StorageMessage(written.error())};
    if (cutoff > first) {
      deleted += cutoff - first;
      state.first_sequence.store(cutoff);
    }
  }
  return deleted;
}

// ---- snapshots, digest, bulk load --------------------------------------------------------------

ShardSnapshot Registry::TakeSnapshot(uint32_t shard) {
  ShardState& state = *shards_[shard];
  ShardSnapshot snapshot;
  snapshot.shard = shard;
  // Under the write mutex, the snapshot, its sequence and the pin agree exactly: no write can land
  // between them (the pitfall of pika #2795).
  std::lock_guard lock(state.write_mutex);
  snapshot.sequence = state.last_sequence.load();
  snapshot.snapshot = store_->TakeSnapshot(shard);
  snapshot.pin = PinRetention(shard, snapshot.sequence + 1);
  return snapshot;
}

Result<Unit, std::string> Registry::ScanSnapshot(
    const ShardSnapshot& snapshot, std::string_view prefix,
    const std::function<bool(const proto::Record&)>& visit) const {
  std::string begin, end;
  if (!prefix.empty()) {
    begin = identifier::Normalize(prefix) + "/";
    end = begin;
    end.back() = static_cast<char>('/' + 1);
  }
  bool corrupt = false;
  auto scanned = store_->Scan(
      snapshot.shard, Column::kRecords, begin, end,
      [&](std::string_view, std::string_view value) {
        proto::Record record;
        if (!record.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
          corrupt = true;
          return false;
        }
        return visit(record);
      },
      snapshot.snapshot.get());
  if (!scanned.ok()) return Failure{StorageMessage(scanned.error())};
  if (corrupt)
    return Failure{std::string("corrupt record in shard ") + std::to_string(snapshot.shard)};
  return Unit{};
}

Result<Digest, std::string> Registry::ComputeDigest(std::string_view prefix) const {
  std::array<uint64_t, 4> lanes{};
  uint64_t records = 0;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  for (uint32_t shard = 0; shard < store_->shard_count(); ++shard) {
    ShardSnapshot view;
    view.shard = shard;
    view.snapshot = store_->TakeSnapshot(shard);
    auto scanned = ScanSnapshot(view, prefix, [&](const proto::Record& record) {
      std::string key = identifier::Normalize(record.handle());
      std::vector<uint8_t> wire = EncodeWireValues(record);
      std::array<uint8_t, 32> h{};
      unsigned int len = 0;
      EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
      EVP_DigestUpdate(ctx, key.data(), key.size() + 1);  // with the NUL: the key ends here
      EVP_DigestUpdate(ctx, wire.data(), wire.size());
      EVP_DigestFinal_ex(ctx, h.data(), &len);
      for (size_t lane = 0; lane < 4; ++lane) {
        uint64_t v = 0;
        std::memcpy(&v, h.data() + lane * 8, 8);
        lanes[lane] += v;
      }
      ++records;
      return true;
    });
    if (!scanned.ok()) {
      EVP_MD_CTX_free(ctx);
      return Failure{scanned.error()};
    }
  }
  EVP_MD_CTX_free(ctx);
  Digest digest;
  digest.records = records;
  for (size_t lane = 0; lane < 4; ++lane) {
    for (size_t b = 0; b < 8; ++b)
      digest.bytes[lane * 8 + b] = static_cast<uint8_t>(lanes[lane] >> (56 - 8 * b));
  }
  return digest;
}

Result<Unit, std::string> Registry::IngestSorted(
    uint32_t shard, const std::vector<std::pair<std::string, std::string>>& sorted) {
  std::lock_guard lock(shards_[shard]->write_mutex);
  auto ingested = store_->IngestSorted(shard, Column::kRecords, sorted);
  if (!ingested.ok()) return Failure{StorageMessage(ingested.error())};
  if (options_.cache) {
    for (const auto& [key, value] : sorted) InvalidateCache(key);
  }
  return Unit{};
}

Result<Unit, std::string> Registry::PutRecords(
    uint32_t shard, const std::vector<std::pair<std::string, std::string>>& records) {
  ShardState& state = *shards_[shard];
  std::lock_guard lock(state.write_mutex);
  if (write_failed())
    return Failure{std::string("the registry stopped taking writes after a storage error")};
  const uint64_t now_ms = NowMs();
  for (size_t begin = 0; begin < records.size(); begin += 1000) {
    size_t end = std::min(records.size(), begin + 1000);
    uint64_t sequence = state.last_sequence.load();
    storage::Batch batch;
    for (size_t i = begin; i < end; ++i) {
      proto::ChangelogEntry entry;
      entry.set_sequence(++sequence);
      entry.set_operation(proto::ChangelogEntry::PUT);
      entry.set_handle(records[i].first);
      entry.set_lineage_id(lineage_id_);
      entry.set_time_ms(now_ms);
      if (!entry.mutable_record()->ParseFromString(records[i].second))
        return Failure{std::string("bad record")};
      batch.Put(Column::kRecords, records[i].first, records[i].second);
      batch.Put(Column::kChangelog, storage::EncodeSequenceKey(sequence),
                entry.SerializeAsString());
    }
    batch.Put(Column::kMeta, kMetaSequence, storage::EncodeSequenceKey(sequence));
    auto written = store_->Write(shard, batch);
    if (!written.ok()) {
      write_failed_.store(true);
      return Failure{StorageMessage(written.error())};
    }
    state.last_sequence.store(sequence);
    for (size_t i = begin; i < end; ++i) InvalidateCache(records[i].first);
  }
  return Unit{};
}

}  // namespace idnode::registry
