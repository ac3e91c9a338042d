#include "idnode/registry/registry.h"

#include <ifaddrs.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cstring>

#include "idnode/cache/answer_cache.h"
#include "idnode/common/hex.h"
#include "idnode/identifier/identifier.h"
#include "idnode/protocol/value_types.h"
#include "idnode/protocol/wire.h"

namespace idnode::registry {

namespace {

using storage::Column;

constexpr std::string_view kMetaSequence = "seq";
constexpr std::string_view kMetaFirstSequence = "first";
constexpr std::string_view kMetaLineage = "lineage";
constexpr std::string_view kMetaLineageForks = "lineage_forks";
constexpr int kMaxLineageForks = 32;
// A replica's acknowledged position in this shard: "peer/<name>" -> sequence (8 bytes, BE).
constexpr std::string_view kMetaPeerPrefix = "peer/";
constexpr std::string_view kMetaPrefixPrefix = "prefix/";
// Set in a shard's meta once its prefix handles' prefix states have been derived.
constexpr std::string_view kMetaPrefixDerivation = "prefix-derivation";
constexpr std::string_view kMetaTransactionPrefix = "txn/";
// Audit entries: "audit/" + big-endian time (ms) + a counter, so a shard's keys are in time order.
constexpr std::string_view kMetaAuditPrefix = "audit/";
constexpr size_t kMaxValueTypeLength = 256;

uint64_t NowMs(std::chrono::system_clock::time_point now = std::chrono::system_clock::now()) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count());
}

// A fresh history id: 16 random bytes in hex.
Result<std::string, std::string> NewLineageId() {
  std::array<uint8_t, 16> id{};
  if (RAND_bytes(id.data(), static_cast<int>(id.size())) != 1)
    return Failure{std::string("no randomness for a lineage id")};
  return ToHex(id);
}

std::string TransactionKey(std::string_view transaction_id, size_t op_index) {
  std::string key(kMetaTransactionPrefix);
  key.append(transaction_id);
  key.push_back('\0');
  for (int shift = 24; shift >= 0; shift -= 8)
    key.push_back(static_cast<char>((op_index >> shift) & 0xff));
  return key;
}

std::string AuditKey(uint64_t time_ms, uint64_t counter) {
  std::string key(kMetaAuditPrefix);
  for (int shift = 56; shift >= 0; shift -= 8) key.push_back(static_cast<char>(time_ms >> shift));
  for (int shift = 56; shift >= 0; shift -= 8) key.push_back(static_cast<char>(counter >> shift));
  return key;
}

std::string AuditBytes(uint64_t time_ms, std::string_view handle, std::string_view operation,
                       const AuditContext& who, ResponseCode result) {
  proto::AuditEntry entry;
  entry.set_time_ms(time_ms);
  entry.set_identity(who.identity);
  entry.set_source(reinterpret_cast<const char*>(who.source.data()), who.source.size());
  entry.set_via(who.via);
  entry.set_operation(std::string(operation));
  entry.set_handle(std::string(handle));
  entry.set_response_code(static_cast<uint32_t>(result));
  return entry.SerializeAsString();
}

// What an operation is, for its transaction outcome: kind, handle, flags, values as given (before
// their timestamps), indexes.
std::string OperationHash(const Operation& op) {
  std::string text;
  text.push_back(static_cast<char>(op.kind));
  text.push_back(op.overwrite ? 1 : 0);
  text += identifier::Normalize(op.handle);
  text.push_back('\0');
  for (const auto& v : op.values) {
    proto::Value stripped = v;
    stripped.set_timestamp(0);
    text += stripped.SerializeAsString();
    text.push_back('\0');
  }
  for (int32_t i : op.indexes) text += std::to_string(i) + ",";
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  return std::string(reinterpret_cast<const char*>(digest), sizeof digest);
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
    // Compared as every reader of keys does, ignoring case ("hs_seckey" is a secret too).
    if (TypeMatches("HS_SECKEY", v.type()) &&
        (v.permissions() & protocol::permission::kPublicRead) != 0)
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

PrefixEntry EntryOf(const proto::PrefixState& state) {
  PrefixEntry entry;
  switch (state.role()) {
    case proto::PrefixState::HOMED:
      entry.role = PrefixRole::kHomed;
      break;
    case proto::PrefixState::DELEGATED:
      entry.role = PrefixRole::kDelegated;
      break;
    case proto::PrefixState::MIRRORED:
      entry.role = PrefixRole::kMirrored;
      break;
    default:
      break;
  }
  entry.flags = static_cast<uint8_t>(state.flags());
  return entry;
}

// The location flags a prefix handle's record gives its prefix (prefix_flag).
uint32_t LocationFlags(const proto::Record* record) {
  uint32_t flags = 0;
  if (record == nullptr) return flags;
  for (const auto& v : record->values()) {
    if (IsServiceLocationType(v.type())) flags |= prefix_flag::kHasSite;
    if (IsPrefixLocationType(v.type())) flags |= prefix_flag::kHasPrefixSite;
  }
  return flags;
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

Digest& Digest::operator+=(const Digest& other) {
  for (size_t lane = 0; lane < 4; ++lane) {
    uint64_t a = 0, b = 0;
    for (size_t i = 0; i < 8; ++i) {
      a = a << 8 | bytes[lane * 8 + i];
      b = b << 8 | other.bytes[lane * 8 + i];
    }
    const uint64_t sum = a + b;  // modulo 2^64, as the lanes are summed
    for (size_t i = 0; i < 8; ++i) bytes[lane * 8 + i] = static_cast<uint8_t>(sum >> (56 - 8 * i));
  }
  records += other.records;
  return *this;
}

// ---- open --------------------------------------------------------------------------------------

Registry::Registry(RegistryOptions options) : options_(std::move(options)) {}
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
  auto derived = registry->DerivePrefixStatesOnce();
  if (!derived.ok()) return Failure{derived.error()};
  auto prefixes = registry->LoadPrefixes();
  if (!prefixes.ok()) return Failure{prefixes.error()};

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

  std::string lineage;
  auto got = store_->Get(shard, Column::kMeta, kMetaLineage, &lineage);
  if (!got.ok()) return Failure{got.error().message};
  proto::LineageForks forks;
  std::string forks_bytes;
  auto got_forks = store_->Get(shard, Column::kMeta, kMetaLineageForks, &forks_bytes);
  if (!got_forks.ok()) return Failure{got_forks.error().message};
  if (*got_forks && !forks.ParseFromString(forks_bytes))
    return Failure{std::string("shard ") + std::to_string(shard) + ": unreadable lineage forks"};
  {
    // Every open forks the history: whatever this shard's last sequence is now (after a crash
    // that lost unsynced changes, or a restored backup) continues under a new id, and the old
    // id is kept with the sequence it ends at, so that replicas at or below it resume.
    if (*got) {
      auto* fork = forks.add_forks();
      fork->set_lineage_id(lineage);
      fork->set_last_sequence(last);
      if (forks.forks_size() > kMaxLineageForks)
        forks.mutable_forks()->DeleteSubrange(0, forks.forks_size() - kMaxLineageForks);
    }
    auto fresh = NewLineageId();
    if (!fresh.ok()) return Failure{fresh.error()};
    lineage = *fresh;
    storage::Batch batch;
    batch.Put(Column::kMeta, kMetaLineage, lineage);
    batch.Put(Column::kMeta, kMetaLineageForks, forks.SerializeAsString());
    auto written = store_->Write(shard, batch);
    if (!written.ok()) return Failure{written.error().message};
  }
  std::map<std::string, uint64_t, std::less<>> peers;
  std::string end(kMetaPeerPrefix);
  end.back() = static_cast<char>(end.back() + 1);
  auto scanned = store_->Scan(shard, Column::kMeta, kMetaPeerPrefix, end,
                              [&](std::string_view key, std::string_view v) {
                                peers.emplace(std::string(key.substr(kMetaPeerPrefix.size())),
                                              storage::DecodeSequenceKey(v));
                                return true;
                              });
  if (!scanned.ok()) return Failure{scanned.error().message};
  std::lock_guard lock(shards_[shard]->pins_mutex);
  shards_[shard]->lineage = std::move(lineage);
  shards_[shard]->forks = std::move(forks);
  shards_[shard]->peer_positions = std::move(peers);
  return Unit{};
}

Result<Unit, std::string> Registry::DerivePrefixStatesOnce() {
  // Prefix handles written before the registry derived prefix states from them (delegations by
  // ordinary admin writes) get their states once, per shard, marked done in the shard's meta.
  std::string begin(identifier::kPrefixHandlePrefix);
  std::string end = begin;
  end.back() = static_cast<char>(end.back() + 1);
  for (uint32_t shard = 0; shard < store_->shard_count(); ++shard) {
    std::string marker;
    auto got = store_->Get(shard, Column::kMeta, kMetaPrefixDerivation, &marker);
    if (!got.ok()) return Failure{got.error().message};
    if (*got && marker == "1") continue;
    storage::Batch batch;
    std::string failure;
    auto flush = [&]() {
      if (batch.count() == 0) return true;
      auto written = store_->Write(shard, batch);
      if (!written.ok()) {
        failure = StorageMessage(written.error());
        return false;
      }
      batch = storage::Batch();
      return true;
    };
    auto scanned = store_->Scan(
        shard, Column::kRecords, begin, end, [&](std::string_view key, std::string_view value) {
          std::string prefix(key.substr(identifier::kPrefixHandlePrefix.size()));
          auto stored = ReadPrefixState(shard, prefix);
          proto::Record record;
          if (!stored.ok() ||
              !record.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
            failure = "cannot derive the prefix state of " + prefix;
            return false;
          }
          auto next = DerivePrefixState(prefix, *stored, &record);
          const bool same = next.has_value() == stored->has_value() &&
                            (!next || next->SerializeAsString() == (*stored)->SerializeAsString());
          if (!same) StagePrefixState(batch, prefix, next);
          return batch.count() < 10000 || flush();
        });
    if (!scanned.ok()) return Failure{StorageMessage(scanned.error())};
    if (!failure.empty()) return Failure{failure};
    batch.Put(Column::kMeta, kMetaPrefixDerivation, "1");
    if (!flush()) return Failure{failure};
  }
  return Unit{};
}

Result<Unit, std::string> Registry::LoadPrefixes() {
  std::string end(kMetaPrefixPrefix);
  end.back() = static_cast<char>(end.back() + 1);
  std::vector<std::pair<std::string, PrefixEntry>> entries;
  for (uint32_t shard = 0; shard < store_->shard_count(); ++shard) {
    bool bad = false;
    std::vector<proto::PrefixState> unflagged;  // delegations written before flags existed
    auto scanned = store_->Scan(
        shard, Column::kMeta, kMetaPrefixPrefix, end, [&](std::string_view, std::string_view v) {
          proto::PrefixState state;
          if (!state.ParseFromArray(v.data(), static_cast<int>(v.size()))) {
            bad = true;
            return false;
          }
          if (state.role() == proto::PrefixState::DELEGATED && state.flags() == 0) {
            unflagged.push_back(std::move(state));
          } else {
            if (state.role() == proto::PrefixState::MIRRORED) {
              std::lock_guard lock(mirrors_mutex_);
              mirror_peers_[state.prefix()] = state.peer();
            }
            entries.emplace_back(state.prefix(), EntryOf(state));
          }
          return true;
        });
    if (!scanned.ok()) return Failure{scanned.error().message};
    if (bad)
      return Failure{std::string("corrupt prefix table entry in shard ") + std::to_string(shard)};
    for (auto& state : unflagged) {
      std::string serialized;
      if (GetSerialized(identifier::PrefixHandleFor(state.prefix()), &serialized) ==
          ReadOutcome::kError) {
        return Failure{"cannot read the prefix handle of " + state.prefix()};
      }
      proto::Record record;
      bool exists = !serialized.empty() && record.ParseFromString(serialized);
      auto derived = DerivePrefixState(state.prefix(), std::nullopt, exists ? &record : nullptr);
      if (derived) entries.emplace_back(state.prefix(), EntryOf(*derived));
    }
  }
  prefix_table_.Load(std::move(entries));
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
    read_errors_.fetch_add(1, std::memory_order_relaxed);
    result.code = ResponseCode::kError;
    return result;
  }
  if (!*got) return result;  // kHandleNotFound
  proto::Record record;
  if (!record.ParseFromString(value)) {
    read_errors_.fetch_add(1, std::memory_order_relaxed);
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

ReadOutcome Registry::GetEncoded(std::string_view handle, std::vector<uint8_t>* wire_values) const {
  std::string key = identifier::Normalize(handle);
  cache::AnswerCache* cache = options_.cache.get();
  uint64_t ticket = 0;
  if (cache != nullptr) {
    auto outcome = cache->Lookup(key, [wire_values](std::span<const uint8_t> bytes) {
      wire_values->assign(bytes.begin(), bytes.end());
    });
    if (outcome == cache::LookupResult::kHit) return ReadOutcome::kFound;
    if (outcome == cache::LookupResult::kNegativeHit) return ReadOutcome::kNotFound;
    ticket = cache->FillTicket(key);  // before the storage read: a write after it voids the fill
  }
  std::string value;
  auto got = store_->Get(ShardOf(key), Column::kRecords, key, &value);
  if (!got.ok()) {
    // Never "not found" (which clients and resolvers cache): an error, counted, not cached.
    read_errors_.fetch_add(1, std::memory_order_relaxed);
    return ReadOutcome::kError;
  }
  if (!*got) {
    if (cache != nullptr) cache->InsertNegativeIfFresh(key, ticket);
    return ReadOutcome::kNotFound;
  }
  proto::Record record;
  if (!record.ParseFromString(value)) {
    read_errors_.fetch_add(1, std::memory_order_relaxed);
    return ReadOutcome::kError;
  }
  *wire_values = EncodeWireValues(record);
  if (cache != nullptr) cache->InsertIfFresh(key, *wire_values, ticket);
  return ReadOutcome::kFound;
}

ReadOutcome Registry::GetSerialized(std::string_view handle, std::string* serialized) const {
  std::string key = identifier::Normalize(handle);
  serialized->clear();
  auto got = store_->Get(ShardOf(key), Column::kRecords, key, serialized);
  if (!got.ok()) {
    read_errors_.fetch_add(1, std::memory_order_relaxed);
    return ReadOutcome::kError;
  }
  if (!*got) {
    serialized->clear();
    return ReadOutcome::kNotFound;
  }
  return ReadOutcome::kFound;
}

// ---- writes ------------------------------------------------------------------------------------

namespace {

// IPv4 right-aligned after 12 zero bytes (CNRI's HS_SITE form), whether written that way or as
// ::ffff:a.b.c.d.
std::array<uint8_t, 16> CanonicalAddress(std::array<uint8_t, 16> a) {
  bool mapped = std::all_of(a.begin(), a.begin() + 10, [](uint8_t b) { return b == 0; }) &&
                a[10] == 0xff && a[11] == 0xff;
  if (mapped) a[10] = a[11] = 0;
  return a;
}

bool IsUnspecified(const std::array<uint8_t, 16>& a) {
  return std::all_of(a.begin(), a.end(), [](uint8_t b) { return b == 0; });
}

// The addresses of this machine's interfaces (for a node bound to the wildcard address).
std::vector<std::array<uint8_t, 16>> LocalAddresses() {
  std::vector<std::array<uint8_t, 16>> out;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return out;
  for (ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
    if (i->ifa_addr == nullptr) continue;
    std::array<uint8_t, 16> a{};
    if (i->ifa_addr->sa_family == AF_INET) {
      std::memcpy(a.data() + 12, &reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr, 4);
    } else if (i->ifa_addr->sa_family == AF_INET6) {
      std::memcpy(a.data(), &reinterpret_cast<const sockaddr_in6*>(i->ifa_addr)->sin6_addr, 16);
    } else {
      continue;
    }
    out.push_back(CanonicalAddress(a));
  }
  freeifaddrs(list);
  return out;
}

}  // namespace

void Registry::SetOwnSite(std::span<const uint8_t> site_info) {
  own_endpoints_.clear();
  auto site = protocol::DecodeSiteInfo(site_info);
  if (!site.ok()) return;
  std::vector<std::array<uint8_t, 16>> local;
  for (const auto& server : site->servers) {
    const auto address = CanonicalAddress(server.address);
    for (const auto& i : server.interfaces) {
      if (i.protocol != protocol::interface_protocol::kUdp &&
          i.protocol != protocol::interface_protocol::kTcp)
        continue;
      if (!IsUnspecified(address)) {
        own_endpoints_.emplace_back(address, i.port);
        continue;
      }
      // Bound to every address: this node is each of the machine's own addresses on that port,
      // never "any address" (another server on the same port elsewhere is not this node).
      if (local.empty()) local = LocalAddresses();
      for (const auto& a : local) own_endpoints_.emplace_back(a, i.port);
    }
  }
}

void Registry::SetSiteServer(uint32_t count, uint32_t index) {
  site_servers_.store(std::max<uint32_t>(count, 1), std::memory_order_relaxed);
  this_server_.store(index, std::memory_order_relaxed);
}

bool Registry::HashedToServer(std::string_view key, uint32_t count, uint32_t index) {
  if (count <= 1 || identifier::IsPrefixHandle(key)) return true;
  int32_t at = protocol::SiteServerIndex(key, protocol::HashOption::kWhole, count);
  // The one hash Java's abs leaves negative (INT_MIN) folds as a shard index does, so that a
  // split by shards (shard s to server s mod count) agrees with this.
  if (at < 0) at += static_cast<int32_t>(count);
  return at == static_cast<int32_t>(index);
}

bool Registry::HeldByServer(std::string_view key, uint32_t count, uint32_t index) const {
  if (count <= 1 || identifier::IsPrefixHandle(key)) return true;
  const PrefixTable::View& table = ThreadView(prefix_table_);
  auto nearest = table.Nearest(identifier::PrefixOf(key));
  if (!nearest ||
      (nearest->entry.role != PrefixRole::kHomed && nearest->entry.role != PrefixRole::kMirrored))
    return true;
  return HashedToServer(key, count, index);
}

bool Registry::OnThisServer(std::string_view key) const {
  return HeldByServer(key, site_servers_.load(std::memory_order_relaxed),
                      this_server_.load(std::memory_order_relaxed));
}

Result<uint64_t, std::string> Registry::DropOtherServersRecords(uint32_t shard, uint32_t count,
                                                                uint32_t index, size_t chunk) {
  if (shard >= store_->shard_count()) return Failure{std::string("no such shard")};
  ShardState& state = *shards_[shard];
  std::lock_guard lock(state.write_mutex);
  auto lineage = NewLineageId();
  if (!lineage.ok()) return Failure{lineage.error()};
  {
    storage::Batch batch;
    batch.Put(Column::kMeta, kMetaLineage, *lineage);
    batch.Delete(Column::kMeta, kMetaLineageForks);  // not a continuation of any earlier history
    auto written = store_->Write(shard, batch);
    if (!written.ok()) return Failure{StorageMessage(written.error())};
    std::lock_guard pins_lock(state.pins_mutex);
    state.lineage = *lineage;
    state.forks.Clear();
  }
  const size_t chunk_keys = std::max<size_t>(chunk, 1);
  uint64_t deleted = 0;
  std::string from;  // scan position: after the last key of the previous chunk
  for (;;) {
    std::vector<std::string> doomed;
    std::string last;
    size_t seen = 0;
    auto scanned = store_->Scan(shard, Column::kRecords, from, {},
                                [&](std::string_view key, std::string_view) {
                                  last.assign(key);
                                  if (!HeldByServer(key, count, index)) doomed.emplace_back(key);
                                  return ++seen < chunk_keys;
                                });
    if (!scanned.ok()) return Failure{StorageMessage(scanned.error())};
    if (!doomed.empty()) {
      storage::Batch batch;
      for (const auto& key : doomed) batch.Delete(Column::kRecords, key);
      auto written = store_->Write(shard, batch, /*sync=*/false);
      if (!written.ok()) return Failure{StorageMessage(written.error())};
      deleted += doomed.size();
    }
    if (seen < chunk_keys) break;
    from = last;
    from.push_back('\0');  // the next key after `last`
  }
  return deleted;
}

bool Registry::NamesThisNode(std::span<const uint8_t> data) const {
  if (own_endpoints_.empty()) return false;
  bool found = false;
  // Read in place: this runs for referrals on network workers, where nothing may allocate.
  protocol::ForEachSiteInterface(
      data, [&](std::span<const uint8_t, 16> raw, uint8_t protocol, uint32_t port) {
        if (protocol != protocol::interface_protocol::kUdp &&
            protocol != protocol::interface_protocol::kTcp)
          return false;
        std::array<uint8_t, 16> address{};
        std::memcpy(address.data(), raw.data(), 16);
        address = CanonicalAddress(address);
        for (const auto& [own_address, own_port] : own_endpoints_) {
          if (own_port == port && own_address == address) return found = true;
        }
        return false;
      });
  return found;
}

bool Registry::DelegatedToThisNode(const PrefixTable::View& table,
                                   std::string_view delegated) const {
  if (own_endpoints_.empty()) return false;
  // Only under a prefix homed here (a secondary node holding its enterprise prefixes' handles):
  // anyone who may edit a prefix handle could otherwise name this node in it and have the
  // prefix's identifiers served, and written, here.
  auto above = table.Nearest(ParentPrefix(delegated));
  if (!above || above->entry.role != PrefixRole::kHomed) return false;
  auto record = Get(identifier::PrefixHandleFor(delegated));
  for (const auto& v : record.record.values()) {
    if (identifier::SameIgnoringAsciiCase(v.type(), "HS_SITE") ||
        identifier::SameIgnoringAsciiCase(v.type(), "HS_SITE.6")) {
      if ((v.permissions() & protocol::permission::kPublicRead) != 0 &&
          NamesThisNode({reinterpret_cast<const uint8_t*>(v.data().data()), v.data().size()}))
        return true;
    }
  }
  return false;
}

bool Registry::IsWritable(std::string_view handle) const {
  std::string key = identifier::Normalize(handle);
  const PrefixTable::View& table = ThreadView(prefix_table_);
  auto served_here = [&](const std::optional<PrefixTable::View::Match>& m) {
    if (!m) return false;
    if (m->entry.role == PrefixRole::kHomed) return true;
    return m->entry.role == PrefixRole::kDelegated && m->entry.has(prefix_flag::kHasSite) &&
           DelegatedToThisNode(table, m->prefix);
  };
  if (!identifier::IsPrefixHandle(key))
    return served_here(table.Nearest(identifier::PrefixOf(key)));
  // A prefix handle 0.NA/P: this node writes it when it homes 0.NA (a top-level node administers
  // every prefix handle), homes P itself, or serves P's parent (its derived prefixes' handles are
  // its own, delegated or not: a node that delegated 0.NA/P.5 can still change or revoke it).
  const std::string_view prefix =
      std::string_view(key).substr(identifier::kPrefixHandlePrefix.size());
  const PrefixEntry* root = table.Find("0.NA");
  if (root != nullptr && root->role == PrefixRole::kHomed) return true;
  const PrefixEntry* own = table.Find(prefix);
  if (own != nullptr && own->role == PrefixRole::kHomed) return true;
  return served_here(table.Nearest(ParentPrefix(prefix)));
}

bool Registry::OwnedHere(std::string_view key) const {
  const PrefixTable::View& table = ThreadView(prefix_table_);
  const bool prefix_handle = identifier::IsPrefixHandle(key);
  std::string_view start = prefix_handle
                               ? ParentPrefix(key.substr(identifier::kPrefixHandlePrefix.size()))
                               : identifier::PrefixOf(key);
  for (std::string_view q = start; !q.empty(); q = ParentPrefix(q)) {
    const PrefixEntry* e = table.Find(q);
    if (e == nullptr) continue;
    if (e->role == PrefixRole::kHomed) return true;
    if (e->role == PrefixRole::kMirrored) return false;
  }
  if (!prefix_handle) return false;
  const PrefixEntry* root = table.Find("0.NA");
  return root != nullptr && root->role == PrefixRole::kHomed;
}

bool Registry::HoldsData(std::string_view handle) const {
  if (IsWritable(handle)) return true;
  std::string key = identifier::Normalize(handle);
  if (identifier::IsPrefixHandle(key)) return false;
  const auto match = ThreadView(prefix_table_).Nearest(identifier::PrefixOf(key));
  return match && match->entry.role == PrefixRole::kMirrored &&
         !match->entry.has(prefix_flag::kMirrorStale);
}

OpResult Registry::Apply(const Operation& op) {
  return ApplyBatch({}, {op}).front();
}

std::vector<OpResult> Registry::ApplyBatch(std::string_view transaction_id,
                                           const std::vector<Operation>& ops,
                                           std::span<const uint32_t> positions) {
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
    auto shard_results =
        ApplyOnShard(shard, transaction_id, by_shard[shard],
                     positions.size() == ops.size() ? positions : std::span<const uint32_t>{});
    for (size_t j = 0; j < by_shard[shard].size(); ++j)
      results[by_shard[shard][j].first] = shard_results[j];
  }
  return results;
}

std::vector<OpResult> Registry::ApplyOnShard(
    uint32_t shard, std::string_view transaction_id,
    const std::vector<std::pair<size_t, const Operation*>>& ops,
    std::span<const uint32_t> positions) {
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
  // Prefix states changed by prefix handles written in this batch (nullopt: leaves the table).
  std::map<std::string, std::optional<proto::PrefixState>, std::less<>> prefix_states;

  for (size_t j = 0; j < ops.size(); ++j) {
    const Operation& op = *ops[j].second;
    OpResult& result = results[j];
    std::string key = identifier::Normalize(op.handle);
    std::string marker;
    if (!transaction_id.empty()) {
      marker = TransactionKey(transaction_id,
                              positions.empty() ? ops[j].first : positions[ops[j].first]);
      std::string stored;
      auto got = store_->Get(shard, Column::kMeta, marker, &stored);
      proto::TransactionOutcome outcome;
      if (got.ok() && *got && outcome.ParseFromString(stored) &&
          outcome.response_codes_size() == 1) {
        if (!outcome.operation_hash().empty() && outcome.operation_hash() != OperationHash(op)) {
          result.code = ResponseCode::kError;  // the id was used for another operation here
          result.transaction_mismatch = true;
        } else {
          result.code =
              static_cast<ResponseCode>(outcome.response_codes(0));  // a retry: answer as before
        }
        replayed[j] = true;
        continue;
      }
    }

    // The current record: as changed earlier in this batch, or as stored.
    std::optional<proto::Record> current;
    std::string current_bytes;  // as stored (serialised), for compare-and-apply
    bool read_error = false;
    if (auto it = overlay.find(key); it != overlay.end()) {
      current = it->second;
      if (current && op.expected_record) current_bytes = current->SerializeAsString();
    } else {
      auto got = store_->Get(shard, Column::kRecords, key, &current_bytes);
      if (!got.ok()) {
        read_error = true;
      } else if (*got) {
        current.emplace();
        if (!current->ParseFromString(current_bytes)) read_error = true;
      } else {
        current_bytes.clear();
      }
    }

    std::optional<proto::Record> next;  // the record after the operation (nullopt: deleted)
    ResponseCode code = ResponseCode::kSuccess;
    if (read_error) {
      read_errors_.fetch_add(1, std::memory_order_relaxed);
      code = ResponseCode::kError;
    } else if (op.expected_record && *op.expected_record != current_bytes) {
      // The record changed since the caller authorised this change: nothing is written, and the
      // caller decides again on the record as it is now.
      code = ResponseCode::kError;
      result.conflict = true;
    } else if (!identifier::IsValidHandle(op.handle)) {
      code = ResponseCode::kInvalidHandle;
    } else if (!IsWritable(key) || !OnThisServer(key)) {
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
    if (op.audit && !result.conflict) {
      // In the batch that makes the change (or that records nothing else, for a refused one).
      batch.Put(Column::kMeta, AuditKey(now_ms, audit_counter_.fetch_add(1)),
                AuditBytes(now_ms, op.handle, OperationName(op.kind), *op.audit, code));
    }
    if (code == ResponseCode::kSuccess) {
      proto::ChangelogEntry entry;
      entry.set_sequence(++sequence);
      entry.set_handle(key);
      entry.set_lineage_id(state.lineage);
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
      if (identifier::IsPrefixHandle(key)) {
        // The prefix's place in the table follows its prefix handle, in this same batch.
        std::string prefix = key.substr(identifier::kPrefixHandlePrefix.size());
        auto staged = prefix_states.find(prefix);
        if (staged == prefix_states.end()) {
          auto stored = ReadPrefixState(shard, prefix);
          if (!stored.ok()) {
            read_errors_.fetch_add(1, std::memory_order_relaxed);
            for (auto& r : results) r.code = ResponseCode::kError;
            return results;  // nothing of this batch was written
          }
          staged = prefix_states.emplace(prefix, *stored).first;
        }
        staged->second = DerivePrefixState(prefix, staged->second, next ? &*next : nullptr);
        StagePrefixState(batch, prefix, staged->second);
      }
      overlay[key] = next;
      touched.push_back(key);
      result.sequence = sequence;
    }
    if (!marker.empty() && code != ResponseCode::kError) {
      proto::TransactionOutcome outcome;
      outcome.add_response_codes(static_cast<uint32_t>(code));
      outcome.set_time_ms(now_ms);
      outcome.set_operation_hash(OperationHash(op));
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
  NotifyChange(shard);
  if (!prefix_states.empty()) {
    std::vector<std::pair<std::string, std::optional<proto::PrefixState>>> states(
        prefix_states.begin(), prefix_states.end());
    PublishPrefixStates(states);
  }
  for (const auto& key : touched) InvalidateCache(key);  // before anyone is told "done"
  return results;
}

// ---- prefix table ------------------------------------------------------------------------------

std::optional<proto::PrefixState> Registry::DerivePrefixState(
    std::string_view prefix, const std::optional<proto::PrefixState>& stored,
    const proto::Record* record) {
  const uint32_t location = LocationFlags(record);
  const bool explicit_role = stored && (stored->role() == proto::PrefixState::HOMED ||
                                        stored->role() == proto::PrefixState::MIRRORED);
  proto::PrefixState next;
  next.set_prefix(std::string(prefix));
  if (explicit_role) {
    next.set_role(stored->role());
    next.set_peer(stored->peer());
    next.set_flags(location | (stored->flags() & prefix_flag::kExplicitRoleFlags));
    next.set_lineage_id(stored->lineage_id());
    return next;
  }
  if (location == 0) return std::nullopt;  // no role, nothing to refer to: not in the table
  next.set_role(proto::PrefixState::DELEGATED);
  next.set_flags(location);
  return next;
}

Result<std::optional<proto::PrefixState>, std::string> Registry::ReadPrefixState(
    uint32_t shard, std::string_view prefix) const {
  std::string value;
  auto got = store_->Get(shard, Column::kMeta, std::string(kMetaPrefixPrefix) + std::string(prefix),
                         &value);
  if (!got.ok()) return Failure{got.error().message};
  if (!*got) return std::optional<proto::PrefixState>{};
  proto::PrefixState state;
  if (!state.ParseFromString(value))
    return Failure{"corrupt prefix table entry for " + std::string(prefix)};
  return std::optional<proto::PrefixState>{std::move(state)};
}

void Registry::StagePrefixState(storage::Batch& batch, std::string_view prefix,
                                const std::optional<proto::PrefixState>& next) {
  std::string meta_key = std::string(kMetaPrefixPrefix) + std::string(prefix);
  if (next) {
    batch.Put(Column::kMeta, meta_key, next->SerializeAsString());
  } else {
    batch.Delete(Column::kMeta, meta_key);
  }
}

PrefixEntry Registry::EntryOfLocked(const proto::PrefixState& state) const {
  PrefixEntry entry = EntryOf(state);
  if (state.role() == proto::PrefixState::MIRRORED && unreachable_peers_.contains(state.peer()))
    entry.flags |= prefix_flag::kOwnerDown;
  return entry;
}

void Registry::PublishPrefixState(std::string_view prefix,
                                  const std::optional<proto::PrefixState>& next) {
  PublishPrefixStates({{std::string(prefix), next}});
}

void Registry::PublishPrefixStates(
    const std::vector<std::pair<std::string, std::optional<proto::PrefixState>>>& states) {
  std::vector<std::pair<std::string, PrefixEntry>> changes;
  changes.reserve(states.size());
  std::lock_guard lock(mirrors_mutex_);
  for (const auto& [prefix, next] : states) {
    if (next && next->role() == proto::PrefixState::MIRRORED) {
      mirror_peers_[prefix] = next->peer();
    } else if (auto it = mirror_peers_.find(prefix); it != mirror_peers_.end()) {
      mirror_peers_.erase(it);
    }
    changes.emplace_back(prefix, next ? EntryOfLocked(*next) : PrefixEntry{});
  }
  prefix_table_.SetMany(changes);
}

std::string Registry::MirrorPeerOf(std::string_view prefix) const {
  std::lock_guard lock(mirrors_mutex_);
  auto it = mirror_peers_.find(prefix);
  return it == mirror_peers_.end() ? std::string() : it->second;
}

void Registry::SetPeerReachable(std::string_view peer, bool reachable) {
  std::lock_guard lock(mirrors_mutex_);
  auto it = unreachable_peers_.find(peer);
  if (reachable == (it == unreachable_peers_.end())) return;  // no change
  if (reachable) {
    unreachable_peers_.erase(it);
  } else {
    unreachable_peers_.emplace(peer);
  }
  std::vector<std::pair<std::string, PrefixEntry>> changes;
  auto table = prefix_table_.Snapshot();
  for (const auto& [prefix, owner] : mirror_peers_) {
    if (owner != peer) continue;
    const PrefixEntry* current = table->Find(prefix);
    if (current == nullptr) continue;
    PrefixEntry entry = *current;
    entry.flags = static_cast<uint8_t>(reachable ? entry.flags & ~prefix_flag::kOwnerDown
                                                 : entry.flags | prefix_flag::kOwnerDown);
    changes.emplace_back(prefix, entry);
  }
  if (!changes.empty()) prefix_table_.SetMany(changes);
}

namespace {

// `values` with every location value (HS_SITE, HS_SITE.6, HS_SERV) replaced by `replacements`;
// a replacement whose index a kept value holds moves to the next free index.
std::vector<proto::Value> ReplaceLocationValues(const proto::Record* record,
                                                const std::vector<proto::Value>& replacements) {
  std::vector<proto::Value> out;
  std::set<int32_t> taken;
  if (record != nullptr) {
    for (const auto& v : record->values()) {
      if (IsServiceLocationType(v.type())) continue;
      out.push_back(v);
      taken.insert(v.index());
    }
  }
  for (auto v : replacements) {
    int32_t index = v.index() > 0 ? v.index() : 1;
    while (taken.count(index) != 0) ++index;
    v.set_index(index);
    taken.insert(index);
    out.push_back(std::move(v));
  }
  return out;
}

}  // namespace

OpResult Registry::ChangePrefix(
    std::string_view prefix_text,
    const std::function<bool(std::optional<proto::PrefixState>& state,
                             std::optional<proto::Record>& record)>& change) {
  const std::string prefix = identifier::Normalize(prefix_text);
  const std::string handle = identifier::Normalize(identifier::PrefixHandleFor(prefix));
  const uint32_t shard = ShardOf(handle);
  ShardState& state = *shards_[shard];
  OpResult result;
  result.shard = shard;
  std::lock_guard lock(state.write_mutex);
  if (write_failed()) {
    result.code = ResponseCode::kError;
    return result;
  }
  auto stored_state = ReadPrefixState(shard, prefix);
  std::string stored_bytes;
  auto got = store_->Get(shard, Column::kRecords, handle, &stored_bytes);
  std::optional<proto::Record> current;
  if (got.ok() && *got) {
    current.emplace();
    if (!current->ParseFromString(stored_bytes)) {
      got = Failure{
          storage::StorageError{storage::StorageError::Code::kCorruption, "corrupt record"}};
    }
  }
  if (!stored_state.ok() || !got.ok()) {
    read_errors_.fetch_add(1, std::memory_order_relaxed);
    result.code = ResponseCode::kError;
    return result;
  }
  std::optional<proto::PrefixState> explicit_state = *stored_state;
  std::optional<proto::Record> next = current;
  if (!change(explicit_state, next)) {
    result.code = ResponseCode::kInvalidValue;
    return result;
  }
  if (next &&
      !ValidValues(std::vector<proto::Value>(next->values().begin(), next->values().end()))) {
    result.code = ResponseCode::kInvalidValue;
    return result;
  }
  const bool record_changed = next.has_value() != current.has_value() ||
                              (next && next->SerializeAsString() != current->SerializeAsString());
  std::optional<proto::PrefixState> final_state =
      DerivePrefixState(prefix, explicit_state, next ? &*next : nullptr);

  storage::Batch batch;
  StagePrefixState(batch, prefix, final_state);
  uint64_t sequence = state.last_sequence.load();
  const uint64_t now_ms = NowMs();
  // A change of the operator's part of the state (role homed/mirrored, owner, lineage, mirror
  // flags) is logged, so that replicas of everything follow the prefix table too.
  auto explicit_part = [](const std::optional<proto::PrefixState>& st) {
    proto::PrefixState part;
    if (st &&
        (st->role() == proto::PrefixState::HOMED || st->role() == proto::PrefixState::MIRRORED)) {
      part.set_prefix(st->prefix());
      part.set_role(st->role());
      part.set_peer(st->peer());
      part.set_lineage_id(st->lineage_id());
      part.set_flags(st->flags() & prefix_flag::kExplicitRoleFlags);
    }
    return part.SerializeAsString();
  };
  const bool role_changed = explicit_part(*stored_state) != explicit_part(final_state);
  if (role_changed) {
    proto::ChangelogEntry entry;
    entry.set_sequence(++sequence);
    entry.set_handle(handle);
    entry.set_lineage_id(state.lineage);
    entry.set_time_ms(now_ms);
    entry.set_operation(proto::ChangelogEntry::PREFIX);
    proto::PrefixState* logged = entry.mutable_prefix_state();
    logged->set_prefix(prefix);
    if (final_state && (final_state->role() == proto::PrefixState::HOMED ||
                        final_state->role() == proto::PrefixState::MIRRORED)) {
      *logged = *final_state;
    }
    batch.Put(Column::kChangelog, storage::EncodeSequenceKey(sequence), entry.SerializeAsString());
  }
  if (record_changed) {
    proto::ChangelogEntry entry;
    entry.set_sequence(++sequence);
    entry.set_handle(handle);
    entry.set_lineage_id(state.lineage);
    entry.set_time_ms(now_ms);
    if (next) {
      next->set_handle(current ? current->handle() : identifier::PrefixHandleFor(prefix));
      next->set_version(current ? current->version() + 1 : 1);
      for (auto& v : *next->mutable_values()) Stamp(v, static_cast<uint32_t>(now_ms / 1000));
      SortByIndex(*next);
      entry.set_operation(proto::ChangelogEntry::PUT);
      *entry.mutable_record() = *next;
      batch.Put(Column::kRecords, handle, next->SerializeAsString());
    } else {
      entry.set_operation(proto::ChangelogEntry::DELETE);
      batch.Delete(Column::kRecords, handle);
    }
    batch.Put(Column::kChangelog, storage::EncodeSequenceKey(sequence), entry.SerializeAsString());
  }
  if (sequence != state.last_sequence.load())
    batch.Put(Column::kMeta, kMetaSequence, storage::EncodeSequenceKey(sequence));
  auto written = store_->Write(shard, batch);
  if (!written.ok()) {
    write_failed_.store(true);
    result.code = ResponseCode::kError;
    return result;
  }
  const bool logged = sequence != state.last_sequence.load();
  state.last_sequence.store(sequence);
  PublishPrefixState(prefix, final_state);
  if (record_changed) InvalidateCache(handle);
  if (logged) {
    result.sequence = sequence;
    NotifyChange(shard);
  }
  result.code = ResponseCode::kSuccess;
  return result;
}

OpResult Registry::HomePrefix(std::string_view prefix, const std::vector<proto::Value>& values) {
  std::string name = identifier::Normalize(prefix);
  if (!ValidValues(values)) {
    OpResult r;
    r.code = ResponseCode::kInvalidValue;
    return r;
  }
  auto lineage = NewLineageId();
  if (!lineage.ok()) {
    OpResult r;
    r.code = ResponseCode::kError;
    return r;
  }
  return ChangePrefix(
      name, [&](std::optional<proto::PrefixState>& state, std::optional<proto::Record>& record) {
        // Homed anew: a new history (already homed: the same one).
        const bool was_homed = state && state->role() == proto::PrefixState::HOMED;
        std::string keep = was_homed ? state->lineage_id() : std::string();
        state.emplace();
        state->set_prefix(name);
        state->set_role(proto::PrefixState::HOMED);
        state->set_lineage_id(was_homed && !keep.empty() ? keep : *lineage);
        if (!record && !values.empty()) {
          record.emplace();
          for (const auto& v : values) *record->add_values() = v;
        }
        return true;
      });
}

OpResult Registry::DelegatePrefix(std::string_view prefix,
                                  const std::vector<proto::Value>& site_values) {
  std::string name = identifier::Normalize(prefix);
  return ChangePrefix(
      name, [&](std::optional<proto::PrefixState>& state, std::optional<proto::Record>& record) {
        if (site_values.empty()) return false;
        state.reset();  // delegated: what the record says
        auto values = ReplaceLocationValues(record ? &*record : nullptr, site_values);
        if (!record) record.emplace();
        record->clear_values();
        for (auto& v : values) *record->add_values() = std::move(v);
        return true;
      });
}

OpResult Registry::MirrorPrefix(std::string_view prefix, std::string_view peer,
                                const std::vector<proto::Value>& owner_site_values) {
  std::string name = identifier::Normalize(prefix);
  return ChangePrefix(
      name, [&](std::optional<proto::PrefixState>& state, std::optional<proto::Record>& record) {
        const bool was_homed = state && state->role() == proto::PrefixState::HOMED;
        const bool same_mirror =
            state && state->role() == proto::PrefixState::MIRRORED && state->peer() == peer;
        proto::PrefixState next;
        next.set_prefix(name);
        next.set_role(proto::PrefixState::MIRRORED);
        next.set_peer(std::string(peer));
        if (same_mirror) {
          next.set_flags(state->flags() & prefix_flag::kExplicitRoleFlags);
          next.set_lineage_id(state->lineage_id());
        } else if (was_homed) {
          // Its records here are this node's, no longer the owner's: refer every request to the
          // owner until replication has replaced them.
          next.set_flags(prefix_flag::kMirrorStale);
        }
        state = std::move(next);
        if (!owner_site_values.empty()) {
          auto values = ReplaceLocationValues(record ? &*record : nullptr, owner_site_values);
          if (!record) record.emplace();
          record->clear_values();
          for (auto& v : values) *record->add_values() = std::move(v);
        }
        return true;
      });
}

OpResult Registry::ForgetPrefix(std::string_view prefix) {
  std::string name = identifier::Normalize(prefix);
  return ChangePrefix(
      name, [&](std::optional<proto::PrefixState>& state, std::optional<proto::Record>& record) {
        const bool had_role = state && (state->role() == proto::PrefixState::HOMED ||
                                        state->role() == proto::PrefixState::MIRRORED);
        state.reset();
        if (!had_role && record) {
          // A delegation is what its record says: forgetting it drops the location values.
          auto values = ReplaceLocationValues(&*record, {});
          for (auto it = values.begin(); it != values.end();) {
            it = IsPrefixLocationType(it->type()) ? values.erase(it) : it + 1;
          }
          if (values.empty()) {
            record.reset();
          } else {
            record->clear_values();
            for (auto& v : values) *record->add_values() = std::move(v);
          }
        }
        return true;
      });
}

OpResult Registry::SetMirrorSynced(std::string_view prefix, bool synced) {
  std::string name = identifier::Normalize(prefix);
  return ChangePrefix(name,
                      [&](std::optional<proto::PrefixState>& state, std::optional<proto::Record>&) {
                        if (!state || state->role() != proto::PrefixState::MIRRORED) return false;
                        uint32_t flags = state->flags() & ~uint32_t{prefix_flag::kMirrorSynced};
                        state->set_flags(flags | (synced ? prefix_flag::kMirrorSynced : 0));
                        return true;
                      });
}

OpResult Registry::SetMirrorState(std::string_view prefix, std::string_view peer,
                                  std::string_view lineage_id, bool synced) {
  std::string name = identifier::Normalize(prefix);
  return ChangePrefix(
      name, [&](std::optional<proto::PrefixState>& state, std::optional<proto::Record>&) {
        if (!state || state->role() != proto::PrefixState::MIRRORED || state->peer() != peer)
          return false;
        state->set_lineage_id(std::string(lineage_id));
        uint32_t flags = state->flags() & ~uint32_t{prefix_flag::kMirrorSynced};
        if (synced) flags &= ~uint32_t{prefix_flag::kMirrorStale};
        state->set_flags(flags | (synced ? prefix_flag::kMirrorSynced : 0));
        return true;
      });
}

OpResult Registry::SetMirrorAnswerPolicy(std::string_view prefix, uint8_t policy_flags) {
  std::string name = identifier::Normalize(prefix);
  constexpr uint32_t kPolicy = prefix_flag::kReferToOwner | prefix_flag::kReferWhileOwnerUp;
  return ChangePrefix(name, [&](std::optional<proto::PrefixState>& state,
                                std::optional<proto::Record>&) {
    if (!state || state->role() != proto::PrefixState::MIRRORED || (policy_flags & ~kPolicy) != 0)
      return false;
    state->set_flags((state->flags() & ~kPolicy) | policy_flags);
    return true;
  });
}

OpResult Registry::TakeOverPrefix(std::string_view prefix) {
  std::string name = identifier::Normalize(prefix);
  auto lineage = NewLineageId();
  if (!lineage.ok()) {
    OpResult r;
    r.code = ResponseCode::kError;
    return r;
  }
  return ChangePrefix(name,
                      [&](std::optional<proto::PrefixState>& state, std::optional<proto::Record>&) {
                        if (!state || state->role() != proto::PrefixState::MIRRORED) return false;
                        state->set_role(proto::PrefixState::HOMED);
                        state->clear_peer();
                        state->set_flags(0);
                        state->set_lineage_id(*lineage);
                        return true;
                      });
}

Result<std::string, std::string> Registry::LineageOfPrefix(std::string_view prefix) const {
  std::string name = identifier::Normalize(prefix);
  for (std::string_view q = name; !q.empty(); q = ParentPrefix(q)) {
    auto stored = ReadPrefix(q);
    if (!stored.ok()) return Failure{stored.error()};
    const auto& st = *stored;
    if (st &&
        (st->role() == proto::PrefixState::HOMED || st->role() == proto::PrefixState::MIRRORED)) {
      if (st->role() == proto::PrefixState::MIRRORED &&
          (st->flags() & prefix_flag::kMirrorSynced) == 0)
        return std::string();
      return st->lineage_id();
    }
  }
  return std::string();
}

Result<std::optional<proto::PrefixState>, std::string> Registry::ReadPrefix(
    std::string_view prefix) const {
  std::string name = identifier::Normalize(prefix);
  return ReadPrefixState(ShardOf(identifier::Normalize(identifier::PrefixHandleFor(name))), name);
}

std::optional<proto::PrefixState> Registry::FindPrefix(std::string_view prefix) const {
  auto stored = ReadPrefix(prefix);
  if (!stored.ok()) return std::nullopt;
  return *stored;
}

Result<std::vector<proto::PrefixState>, std::string> Registry::Prefixes() const {
  std::string end(kMetaPrefixPrefix);
  end.back() = static_cast<char>(end.back() + 1);
  std::vector<proto::PrefixState> out;
  for (uint32_t shard = 0; shard < store_->shard_count(); ++shard) {
    bool bad = false;
    auto scanned = store_->Scan(shard, Column::kMeta, kMetaPrefixPrefix, end,
                                [&](std::string_view, std::string_view v) {
                                  proto::PrefixState state;
                                  if (!state.ParseFromArray(v.data(), static_cast<int>(v.size()))) {
                                    bad = true;
                                    return false;
                                  }
                                  out.push_back(std::move(state));
                                  return true;
                                });
    if (!scanned.ok()) return Failure{StorageMessage(scanned.error())};
    if (bad) return Failure{"corrupt prefix table entry in shard " + std::to_string(shard)};
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.prefix() < b.prefix(); });
  return out;
}

// ---- changelog ---------------------------------------------------------------------------------

bool Registry::ResumableFrom(uint32_t shard, std::string_view lineage, uint64_t sequence,
                             uint64_t highest) const {
  const ShardState& state = *shards_[shard];
  const uint64_t top = std::max(sequence, highest);
  std::lock_guard lock(state.pins_mutex);
  if (lineage == state.lineage) return top <= state.last_sequence.load();
  // An earlier history: found, and no fork since it cuts below what the replica holds.
  bool found = false;
  for (const auto& fork : state.forks.forks()) {
    if (!found && fork.lineage_id() != lineage) continue;
    found = true;
    if (top > fork.last_sequence()) return false;
  }
  return found && top <= state.last_sequence.load();
}

std::string Registry::ShardLineage(uint32_t shard) const {
  std::lock_guard lock(shards_[shard]->pins_mutex);
  return shards_[shard]->lineage;
}

void Registry::SetChangeListener(std::function<void(uint32_t shard)> listener) {
  change_listener_ = std::move(listener);
}

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

Result<Unit, std::string> Registry::SavePeerPositions(
    std::string_view peer, const std::vector<std::pair<uint32_t, uint64_t>>& positions) {
  const std::string key = std::string(kMetaPeerPrefix) + std::string(peer);
  for (const auto& [shard, sequence] : positions) {
    if (shard >= shards_.size()) return Failure{std::string("no such shard")};
    ShardState& state = *shards_[shard];
    {
      std::lock_guard lock(state.pins_mutex);
      auto it = state.peer_positions.find(key.substr(kMetaPeerPrefix.size()));
      if (it != state.peer_positions.end() && it->second == sequence) continue;
    }
    storage::Batch batch;
    batch.Put(Column::kMeta, key, storage::EncodeSequenceKey(sequence));
    auto written = store_->Write(shard, batch);
    if (!written.ok()) return Failure{StorageMessage(written.error())};
    std::lock_guard lock(state.pins_mutex);
    state.peer_positions[std::string(peer)] = sequence;
  }
  return Unit{};
}

Result<Unit, std::string> Registry::SyncShard(uint32_t shard) {
  auto synced = store_->SyncWal(shard);
  if (!synced.ok()) {
    write_failed_.store(true);
    return Failure{StorageMessage(synced.error())};
  }
  return Unit{};
}

Result<uint64_t, std::string> Registry::ForgetPeerPositionsExcept(
    const std::vector<std::string>& peers) {
  uint64_t forgotten = 0;
  for (uint32_t shard = 0; shard < shards_.size(); ++shard) {
    ShardState& state = *shards_[shard];
    std::vector<std::string> gone;
    {
      std::lock_guard lock(state.pins_mutex);
      for (const auto& [peer, sequence] : state.peer_positions) {
        if (std::find(peers.begin(), peers.end(), peer) == peers.end()) gone.push_back(peer);
      }
    }
    if (gone.empty()) continue;
    storage::Batch batch;
    for (const auto& peer : gone) batch.Delete(Column::kMeta, std::string(kMetaPeerPrefix) + peer);
    auto written = store_->Write(shard, batch);
    if (!written.ok()) return Failure{StorageMessage(written.error())};
    std::lock_guard lock(state.pins_mutex);
    for (const auto& peer : gone) state.peer_positions.erase(peer);
    forgotten += gone.size();
  }
  return forgotten;
}

std::vector<std::pair<std::string, uint64_t>> Registry::PeerPositions(uint32_t shard) const {
  std::lock_guard lock(shards_[shard]->pins_mutex);
  return {shards_[shard]->peer_positions.begin(), shards_[shard]->peer_positions.end()};
}

void Registry::SetRetentionPolicy(const RetentionPolicy& policy) {
  options_.retention = policy;
}

Result<uint64_t, std::string> Registry::ApplyRetention(std::chrono::system_clock::time_point now) {
  uint64_t deleted = 0;
  const RetentionPolicy policy = options_.retention;
  const uint64_t max_age_ms = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(policy.max_age).count());
  const uint64_t oldest_kept_ms = NowMs(now) > max_age_ms ? NowMs(now) - max_age_ms : 0;
  const uint64_t txn_memory_ms = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(options_.transaction_memory).count());
  const uint64_t oldest_txn_ms = NowMs(now) > txn_memory_ms ? NowMs(now) - txn_memory_ms : 0;

  for (uint32_t shard = 0; shard < store_->shard_count(); ++shard) {
    ShardState& state = *shards_[shard];
    // The scans run without the shard's write lock: entries up to `last` never change once
    // written, and only this function (one caller at a time) deletes them. Writers wait only for
    // the final batch below.
    const uint64_t first = state.first_sequence.load();
    const uint64_t last = state.last_sequence.load();
    uint64_t cutoff = first;  // entries below cutoff go
    if (last >= first && last - first + 1 > policy.max_entries_per_shard) {
      cutoff = last - policy.max_entries_per_shard + 1;
    }
    auto scanned = store_->Scan(
        shard, Column::kChangelog, storage::EncodeSequenceKey(cutoff),
        storage::EncodeSequenceKey(last + 1), [&](std::string_view key, std::string_view value) {
          proto::ChangelogEntry entry;
          if (!entry.ParseFromArray(value.data(), static_cast<int>(value.size()))) return false;
          if (entry.time_ms() >= oldest_kept_ms) return false;
          cutoff = storage::DecodeSequenceKey(key) + 1;
          return true;
        });
    if (!scanned.ok()) return Failure{StorageMessage(scanned.error())};
    if (policy.during_scan_for_test) policy.during_scan_for_test(shard);
    storage::Batch batch;
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
    // Audit entries past their age go as one range (their keys are in time order).
    const uint64_t audit_age_ms = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(policy.audit_max_age).count());
    if (NowMs(now) > audit_age_ms) {
      const std::string audit_cutoff = AuditKey(NowMs(now) - audit_age_ms, 0);
      bool any_expired = false;  // no range tombstone every interval for nothing
      auto audit = store_->Scan(shard, Column::kMeta, AuditKey(0, 0), audit_cutoff,
                                [&](std::string_view, std::string_view) {
                                  any_expired = true;
                                  return false;
                                });
      if (!audit.ok()) return Failure{StorageMessage(audit.error())};
      if (any_expired) batch.DeleteRange(Column::kMeta, AuditKey(0, 0), audit_cutoff);
    }

    std::lock_guard lock(state.write_mutex);
    {
      // A snapshot taken since the scan pinned its sequence under this lock: honour it. So are
      // the saved positions of replicas (the entries after them), unless one is so far behind
      // that it will take a snapshot anyway.
      std::lock_guard pins_lock(state.pins_mutex);
      if (!state.pins.empty()) cutoff = std::min(cutoff, *state.pins.begin());
      for (const auto& [peer, position] : state.peer_positions) {
        if (position + 1 >= first && last - std::min(last, position) <= policy.max_peer_lag_entries)
          cutoff = std::min(cutoff, position + 1);
      }
      cutoff = std::max(cutoff, first);
    }
    if (cutoff > first) {
      batch.DeleteRange(Column::kChangelog, storage::EncodeSequenceKey(first),
                        storage::EncodeSequenceKey(cutoff));
      batch.Put(Column::kMeta, kMetaFirstSequence, storage::EncodeSequenceKey(cutoff));
    }
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
  std::vector<std::pair<std::string, std::string>> ranges{{"", ""}};
  const std::string held = identifier::Normalize(prefix);
  if (!prefix.empty()) ranges = identifier::KeyRangesUnderPrefix(held);
  bool corrupt = false;
  bool stopped = false;
  for (const auto& [begin, end] : ranges) {
    auto scanned = store_->Scan(
        snapshot.shard, Column::kRecords, begin, end,
        [&](std::string_view key, std::string_view value) {
          if (!prefix.empty() && !identifier::HeldUnderPrefix(key, held)) return true;
          proto::Record record;
          if (!record.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
            corrupt = true;
            return false;
          }
          stopped = !visit(record);
          return !stopped;
        },
        snapshot.snapshot.get());
    if (!scanned.ok()) return Failure{StorageMessage(scanned.error())};
    if (corrupt)
      return Failure{std::string("corrupt record in shard ") + std::to_string(snapshot.shard)};
    if (stopped) break;
  }
  return Unit{};
}

Result<Digest, std::string> Registry::ComputeDigest(
    std::string_view prefix, const std::function<bool(std::string_view key)>& keep) const {
  std::array<uint64_t, 4> lanes{};
  uint64_t records = 0;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  for (uint32_t shard = 0; shard < store_->shard_count(); ++shard) {
    ShardSnapshot view;
    view.shard = shard;
    view.snapshot = store_->TakeSnapshot(shard);
    auto scanned = ScanSnapshot(view, prefix, [&](const proto::Record& record) {
      std::string key = identifier::Normalize(record.handle());
      if (keep && !keep(key)) return true;
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

Result<Unit, std::string> Registry::IngestSorted(uint32_t shard,
                                                 std::span<const storage::KeyValueView> sorted) {
  std::lock_guard lock(shards_[shard]->write_mutex);
  // The prefix states the imported prefix handles give their prefixes are written first: were the
  // records written first, a crash in between would leave prefix handles on disk with no place in
  // the table. Written first, a crash leaves states whose records a new import writes (and
  // deriving them again gives the same states).
  //
  // The records bypass the changelog, so the shard's history moves to a new lineage id in the
  // same first batch: a replica's position in the old history then asks for a snapshot.
  storage::Batch batch;
  std::vector<std::pair<std::string, std::optional<proto::PrefixState>>> states;
  for (const auto& [key, value] : sorted) {
    if (!identifier::IsPrefixHandle(key)) continue;
    auto staged = StageImportedPrefixHandle(shard, key, value, batch);
    if (!staged.ok()) return Failure{staged.error()};
    states.push_back(std::move(*staged));
  }
  auto lineage = NewLineageId();
  if (!lineage.ok()) return Failure{lineage.error()};
  batch.Put(Column::kMeta, kMetaLineage, *lineage);
  batch.Delete(Column::kMeta, kMetaLineageForks);  // not a continuation of any earlier history
  auto written = store_->Write(shard, batch);
  if (!written.ok()) return Failure{StorageMessage(written.error())};
  {
    std::lock_guard pins_lock(shards_[shard]->pins_mutex);
    shards_[shard]->lineage = *lineage;
    shards_[shard]->forks.Clear();
  }
  auto ingested = store_->IngestSorted(shard, Column::kRecords, sorted);
  if (!ingested.ok()) return Failure{StorageMessage(ingested.error())};
  PublishPrefixStates(states);
  if (options_.cache) {
    for (const auto& [key, value] : sorted) InvalidateCache(key);
  }
  return Unit{};
}

Result<std::pair<std::string, std::optional<proto::PrefixState>>, std::string>
Registry::StageImportedPrefixHandle(uint32_t shard, std::string_view key,
                                    std::string_view serialized, storage::Batch& batch) const {
  std::string prefix(key.substr(identifier::kPrefixHandlePrefix.size()));
  auto stored = ReadPrefixState(shard, prefix);
  if (!stored.ok()) return Failure{stored.error()};
  proto::Record record;
  if (!record.ParseFromArray(serialized.data(), static_cast<int>(serialized.size())))
    return Failure{std::string("bad record")};
  auto next = DerivePrefixState(prefix, *stored, &record);
  StagePrefixState(batch, prefix, next);
  return std::pair<std::string, std::optional<proto::PrefixState>>{std::move(prefix),
                                                                   std::move(next)};
}

Result<Unit, std::string> Registry::PutRecords(uint32_t shard,
                                               std::span<const storage::KeyValueView> records) {
  ShardState& state = *shards_[shard];
  std::lock_guard lock(state.write_mutex);
  if (write_failed())
    return Failure{std::string("the registry stopped taking writes after a storage error")};
  const uint64_t now_ms = NowMs();
  for (size_t begin = 0; begin < records.size(); begin += 1000) {
    size_t end = std::min(records.size(), begin + 1000);
    uint64_t sequence = state.last_sequence.load();
    storage::Batch batch;
    std::vector<std::pair<std::string, std::optional<proto::PrefixState>>> states;
    for (size_t i = begin; i < end; ++i) {
      proto::ChangelogEntry entry;
      entry.set_sequence(++sequence);
      entry.set_operation(proto::ChangelogEntry::PUT);
      entry.set_handle(records[i].first.data(), records[i].first.size());
      entry.set_lineage_id(state.lineage);
      entry.set_time_ms(now_ms);
      if (!entry.mutable_record()->ParseFromArray(records[i].second.data(),
                                                  static_cast<int>(records[i].second.size())))
        return Failure{std::string("bad record")};
      batch.Put(Column::kRecords, records[i].first, records[i].second);
      batch.Put(Column::kChangelog, storage::EncodeSequenceKey(sequence),
                entry.SerializeAsString());
      if (identifier::IsPrefixHandle(records[i].first)) {
        auto staged = StageImportedPrefixHandle(shard, records[i].first, records[i].second, batch);
        if (!staged.ok()) return Failure{staged.error()};
        states.push_back(std::move(*staged));
      }
    }
    batch.Put(Column::kMeta, kMetaSequence, storage::EncodeSequenceKey(sequence));
    auto written = store_->Write(shard, batch);
    if (!written.ok()) {
      write_failed_.store(true);
      return Failure{StorageMessage(written.error())};
    }
    state.last_sequence.store(sequence);
    PublishPrefixStates(states);
    for (size_t i = begin; i < end; ++i) InvalidateCache(records[i].first);
    NotifyChange(shard);
  }
  return Unit{};
}

Result<Unit, std::string> Registry::ApplyReplicated(
    uint32_t shard, const std::vector<ReplicatedChange>& changes,
    const std::vector<std::pair<std::string, std::string>>& meta, bool logged, bool sync) {
  ShardState& state = *shards_[shard];
  std::lock_guard lock(state.write_mutex);
  if (write_failed())
    return Failure{std::string("the registry stopped taking writes after a storage error")};
  const uint64_t now_ms = NowMs();
  uint64_t sequence = state.last_sequence.load();
  storage::Batch batch;
  std::map<std::string, std::optional<proto::PrefixState>> prefix_states;
  std::string new_lineage;
  if (!logged && !changes.empty()) {
    auto fresh = NewLineageId();
    if (!fresh.ok()) return Failure{fresh.error()};
    new_lineage = *fresh;
    batch.Put(Column::kMeta, kMetaLineage, new_lineage);
    batch.Delete(Column::kMeta, kMetaLineageForks);
  }
  for (const auto& change : changes) {
    // Checked again under the shard's write lock: a take-over (or a HOME_NA) that made the
    // prefix ours after the replica vetted this batch wins, and a write acknowledged here since
    // is never overwritten by the old owner's copy.
    if (OwnedHere(change.key)) continue;
    proto::Record record;
    const bool prefix_handle = identifier::IsPrefixHandle(change.key);
    if (change.record) {
      batch.Put(Column::kRecords, change.key, *change.record);
    } else {
      batch.Delete(Column::kRecords, change.key);
    }
    if (change.record && (logged || prefix_handle) && !record.ParseFromString(*change.record))
      return Failure{"a replicated record of " + change.key + " does not parse"};
    if (logged) {
      proto::ChangelogEntry entry;
      entry.set_sequence(++sequence);
      entry.set_handle(change.key);
      entry.set_lineage_id(state.lineage);
      entry.set_time_ms(now_ms);
      if (change.record) {
        entry.set_operation(proto::ChangelogEntry::PUT);
        *entry.mutable_record() = record;
      } else {
        entry.set_operation(proto::ChangelogEntry::DELETE);
      }
      batch.Put(Column::kChangelog, storage::EncodeSequenceKey(sequence),
                entry.SerializeAsString());
    }
    if (prefix_handle) {
      std::string prefix = change.key.substr(identifier::kPrefixHandlePrefix.size());
      auto staged = prefix_states.find(prefix);
      if (staged == prefix_states.end()) {
        auto stored = ReadPrefixState(shard, prefix);
        if (!stored.ok()) return Failure{stored.error()};
        staged = prefix_states.emplace(prefix, *stored).first;
      }
      staged->second = DerivePrefixState(prefix, staged->second, change.record ? &record : nullptr);
      StagePrefixState(batch, prefix, staged->second);
    }
  }
  for (const auto& [key, value] : meta) batch.Put(Column::kMeta, key, value);
  if (sequence != state.last_sequence.load())
    batch.Put(Column::kMeta, kMetaSequence, storage::EncodeSequenceKey(sequence));
  if (batch.count() == 0) return Unit{};
  // A snapshot's records need no sync of their own: until its end (meta: the cursor, written
  // synced, which makes the WAL before it durable too) a crash takes the snapshot again.
  auto written = store_->Write(shard, batch, /*sync=*/sync && (logged || !meta.empty()));
  if (!written.ok()) {
    write_failed_.store(true);
    return Failure{StorageMessage(written.error())};
  }
  state.last_sequence.store(sequence);
  if (!new_lineage.empty()) {
    std::lock_guard pins_lock(state.pins_mutex);
    state.lineage = std::move(new_lineage);
    state.forks.Clear();
  }
  if (!prefix_states.empty()) {
    std::vector<std::pair<std::string, std::optional<proto::PrefixState>>> states(
        prefix_states.begin(), prefix_states.end());
    PublishPrefixStates(states);
  }
  for (const auto& change : changes) InvalidateCache(change.key);  // before the source hears
  if (!changes.empty()) NotifyChange(shard);
  return Unit{};
}

Result<std::optional<std::string>, std::string> Registry::ReadMeta(uint32_t shard,
                                                                   std::string_view key) const {
  std::string value;
  auto got = store_->Get(shard, Column::kMeta, key, &value);
  if (!got.ok()) return Failure{StorageMessage(got.error())};
  if (!*got) return std::optional<std::string>{};
  return std::optional<std::string>{std::move(value)};
}

Result<Unit, std::string> Registry::ScanMeta(
    uint32_t shard, std::string_view key_prefix,
    const std::function<bool(std::string_view key, std::string_view value)>& visit) const {
  std::string end(key_prefix);
  while (!end.empty() && static_cast<unsigned char>(end.back()) == 0xff) end.pop_back();
  if (!end.empty()) end.back() = static_cast<char>(end.back() + 1);
  auto scanned = store_->Scan(shard, Column::kMeta, key_prefix, end, visit);
  if (!scanned.ok()) return Failure{StorageMessage(scanned.error())};
  return Unit{};
}

Result<Unit, std::string> Registry::WriteMeta(
    uint32_t shard, const std::vector<std::pair<std::string, std::string>>& puts,
    const std::vector<std::string>& deletes) {
  storage::Batch batch;
  for (const auto& [key, value] : puts) batch.Put(Column::kMeta, key, value);
  for (const auto& key : deletes) batch.Delete(Column::kMeta, key);
  if (batch.count() == 0) return Unit{};
  auto written = store_->Write(shard, batch);
  if (!written.ok()) return Failure{StorageMessage(written.error())};
  return Unit{};
}

std::string_view Registry::OperationName(OpKind kind) {
  switch (kind) {
    case OpKind::kCreate:
      return "create";
    case OpKind::kDelete:
      return "delete";
    case OpKind::kAddValues:
      return "add";
    case OpKind::kModifyValues:
      return "modify";
    case OpKind::kRemoveValues:
      return "remove";
  }
  return "write";
}

Result<Unit, std::string> Registry::AppendAudit(std::string_view handle, std::string_view operation,
                                                const AuditContext& who, ResponseCode result) {
  const uint64_t now_ms = NowMs();
  const uint32_t shard = ShardOf(identifier::Normalize(handle));
  storage::Batch batch;
  batch.Put(Column::kMeta, AuditKey(now_ms, audit_counter_.fetch_add(1)),
            AuditBytes(now_ms, handle, operation, who, result));
  // Not synced: a flood of refusals must not buy an fsync each; the next synced write (or the
  // WAL's own flush) carries it.
  auto written = store_->Write(shard, batch, /*sync=*/false);
  if (!written.ok()) return Failure{StorageMessage(written.error())};
  return Unit{};
}

Result<std::vector<proto::AuditEntry>, std::string> Registry::ReadAudit(
    uint64_t since_ms, size_t limit,
    const std::function<bool(const proto::AuditEntry&)>& keep) const {
  // Each shard's entries are in time order: take the first `limit` kept from each, then merge.
  std::vector<std::pair<std::string, proto::AuditEntry>> all;
  std::string end(kMetaAuditPrefix);
  end.back() = static_cast<char>(end.back() + 1);
  for (uint32_t shard = 0; shard < store_->shard_count(); ++shard) {
    size_t taken = 0;
    auto scanned =
        store_->Scan(shard, Column::kMeta, AuditKey(since_ms, 0), end,
                     [&](std::string_view key, std::string_view value) {
                       proto::AuditEntry entry;
                       if (!entry.ParseFromArray(value.data(), static_cast<int>(value.size())))
                         return true;  // unreadable: skipped
                       if (!keep || keep(entry)) {
                         all.emplace_back(std::string(key), std::move(entry));
                         ++taken;
                       }
                       return taken < limit;
                     });
    if (!scanned.ok()) return Failure{StorageMessage(scanned.error())};
  }
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  if (all.size() > limit) all.resize(limit);
  std::vector<proto::AuditEntry> out;
  out.reserve(all.size());
  for (auto& [key, entry] : all) out.push_back(std::move(entry));
  return out;
}

Result<bool, std::string> Registry::ListHandles(std::string_view prefix, ListCursor* cursor,
                                                size_t max, std::vector<std::string>* handles,
                                                size_t max_bytes) const {
  // P's own handles are the keys "P/..." : [P "/", P "0") ('0' follows '/').
  std::string begin_of_prefix(prefix);
  begin_of_prefix.push_back('/');
  std::string end_of_prefix(prefix);
  end_of_prefix.push_back('0');
  size_t added = 0;
  size_t bytes = 0;
  while (cursor->shard < store_->shard_count() && added < max && bytes < max_bytes) {
    std::string begin = begin_of_prefix;
    if (!cursor->after.empty()) {
      begin = cursor->after;
      begin.push_back('\0');  // just after the last key given
    }
    bool filled = false;
    auto scanned =
        store_->Scan(cursor->shard, Column::kRecords, begin, end_of_prefix,
                     [&](std::string_view key, std::string_view value) {
                       proto::Record record;
                       if (record.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
                         handles->push_back(record.handle());
                       } else {
                         handles->emplace_back(key);  // unreadable: its key
                       }
                       cursor->after.assign(key);
                       bytes += handles->back().size();
                       if (++added < max && bytes < max_bytes) return true;
                       filled = true;
                       return false;
                     });
    if (!scanned.ok()) return Failure{StorageMessage(scanned.error())};
    if (filled) break;  // the shard may hold more
    ++cursor->shard;
    cursor->after.clear();
  }
  return cursor->shard >= store_->shard_count();
}

std::optional<OpResult> Registry::StoredOutcome(std::string_view transaction_id, uint32_t position,
                                                const Operation& op) const {
  if (transaction_id.empty()) return std::nullopt;
  const uint32_t shard = ShardOf(identifier::Normalize(op.handle));
  std::string stored;
  auto got = store_->Get(shard, Column::kMeta, TransactionKey(transaction_id, position), &stored);
  proto::TransactionOutcome outcome;
  if (!got.ok() || !*got || !outcome.ParseFromString(stored) || outcome.response_codes_size() != 1)
    return std::nullopt;
  OpResult r;
  r.shard = shard;
  if (!outcome.operation_hash().empty() && outcome.operation_hash() != OperationHash(op)) {
    r.code = ResponseCode::kError;
    r.transaction_mismatch = true;
  } else {
    r.code = static_cast<ResponseCode>(outcome.response_codes(0));
  }
  return r;
}

uint64_t Registry::RandomSeed() {
  uint64_t seed = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&seed), sizeof seed) != 1)
    seed = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  return seed >> 1;  // far from wrapping
}

}  // namespace idnode::registry
