// registry/: the prefix table every thread routes by (ARCHITECTURE.md: homed / delegated /
// mirrored), one copy shared by all threads and published read-copy-update.
//
// A top-level node holds hundreds of thousands of delegated prefixes, and every resolution walks
// up its prefix (88.100.1.7 -> 88.100.1 -> 88.100 -> 88) through this table, so it is built for
// that: 256 shards, each an immutable open-addressing map (boost::unordered_flat_map; prefixes of
// up to 15 bytes stay inline in the slot), reached from an immutable array of shard pointers. A
// change copies the one shard it touches and a new array of 256 pointers, then publishes the new
// array; readers keep the snapshot they hold until they see the generation move. With 1M prefixes
// a shard holds about 4,000, so publishing a change costs a copy of a few hundred KiB, never the
// whole table, and no reader waits for it.
//
// Owned by the Registry. Writers (the registry, under the written prefix handle's shard lock) are
// serialised by the table's own mutex; readers on any thread use a PrefixTable::Reader (one per
// thread) or Snapshot() and take no lock on the hot path: one atomic load of the generation.
#pragma once

#include <array>
#include <atomic>
#include <boost/unordered/unordered_flat_map.hpp>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace idnode::registry {

enum class PrefixRole : uint8_t {
  kNone = 0,
  kHomed = 1,      // authoritative here, writable
  kDelegated = 2,  // its 0.NA/<prefix> record here carries HS_SITE / HS_SERV (.PREFIX) values
  kMirrored = 3,   // another node's, copied here read-only by replication
};

namespace prefix_flag {
// The 0.NA/<prefix> record here has HS_SITE, HS_SITE.6 or HS_SERV values: where the prefix's
// identifiers are served (a service referral, RC 302, carries them).
inline constexpr uint8_t kHasSite = 0x01;
// ... has HS_SITE.PREFIX, HS_NA_DELEGATE or HS_SERV.PREFIX values: where the prefix handles of
// prefixes derived from it are served (a prefix referral, RC 303, carries them).
inline constexpr uint8_t kHasPrefixSite = 0x02;
// A mirror whose copy is complete (set by replication): a miss there is a real "not found".
inline constexpr uint8_t kMirrorSynced = 0x04;
// A mirror's answer policy (replication.sources): refer every request to the owner; or refer
// while the owner is reachable and answer from the copy while it is not.
inline constexpr uint8_t kReferToOwner = 0x08;
inline constexpr uint8_t kReferWhileOwnerUp = 0x10;
// Runtime only (never stored): replication cannot reach the mirror's owner.
inline constexpr uint8_t kOwnerDown = 0x20;
// A mirror whose local records are not its owner's (it was homed here, then taken over by another
// node): every request is referred to the owner until the first snapshot completes.
inline constexpr uint8_t kMirrorStale = 0x40;
// The flags an explicit role (homed, mirrored) keeps when its prefix handle is rewritten.
inline constexpr uint8_t kExplicitRoleFlags =
    kMirrorSynced | kReferToOwner | kReferWhileOwnerUp | kMirrorStale;
}  // namespace prefix_flag

struct PrefixEntry {
  PrefixRole role = PrefixRole::kNone;
  uint8_t flags = 0;
  bool has(uint8_t flag) const { return (flags & flag) != 0; }
  friend bool operator==(const PrefixEntry&, const PrefixEntry&) = default;
};

// Whether a mirrored prefix's found records are answered from the local copy (node-wide
// `answer_mirrored`, then the mirror's policy and state) rather than referred to its owner.
inline bool MirrorAnswersLocally(const PrefixEntry& mirror, bool answer_mirrored) {
  if (!answer_mirrored || mirror.has(prefix_flag::kMirrorStale) ||
      mirror.has(prefix_flag::kReferToOwner))
    return false;
  return !mirror.has(prefix_flag::kReferWhileOwnerUp) || mirror.has(prefix_flag::kOwnerDown);
}

// The parent of a dot-separated prefix ("88.100.1" -> "88.100"), empty for a top-level one.
std::string_view ParentPrefix(std::string_view prefix);

class PrefixTable {
 public:
  static constexpr size_t kShardCount = 256;

  // A prefix with its hash computed once: the shard is picked from the hash's top bits and the
  // map looks it up with the same hash (heterogeneous lookup), so a walk hashes each level once.
  struct HashedKey {
    std::string_view text;
    size_t hash;
  };
  static size_t HashOf(std::string_view s);
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return HashOf(s); }
    size_t operator()(const HashedKey& k) const { return k.hash; }
  };
  struct Equal {
    using is_transparent = void;
    bool operator()(std::string_view a, std::string_view b) const { return a == b; }
    bool operator()(const HashedKey& a, std::string_view b) const { return a.text == b; }
    bool operator()(std::string_view a, const HashedKey& b) const { return a == b.text; }
  };
  using Map = boost::unordered_flat_map<std::string, PrefixEntry, Hash, Equal>;

  // One published version of the table; immutable.
  class View {
   public:
    // The entry of `prefix` (normalised), if it has one.
    const PrefixEntry* Find(std::string_view prefix) const;
    // The nearest of `prefix` and its dot-separated ancestors that has an entry, with that
    // ancestor (a view into `prefix`): the longest matching prefix.
    struct Match {
      std::string_view prefix;
      PrefixEntry entry;
    };
    std::optional<Match> Nearest(std::string_view prefix) const;
    size_t size() const { return size_; }
    uint64_t generation() const { return generation_; }
    // Visits every entry (unordered).
    template <typename F>
    void ForEach(F&& visit) const {
      for (const auto& shard : shards_) {
        for (const auto& [name, entry] : *shard) visit(std::string_view(name), entry);
      }
    }
    // Bytes the maps hold (slots, control bytes and out-of-line prefix text): for the benchmark.
    size_t MemoryBytes() const;

   private:
    friend class PrefixTable;
    std::array<std::shared_ptr<const Map>, kShardCount> shards_;
    size_t size_ = 0;
    uint64_t generation_ = 0;
  };

  PrefixTable();

  // The current version (a mutex-protected copy of one shared_ptr: not for the per-request path).
  std::shared_ptr<const View> Snapshot() const;
  // Moves with every published change.
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

  // A thread's handle on the table: Get() returns the version it last saw, refreshed when the
  // generation has moved (one atomic load when it has not). One per thread; not shared.
  class Reader {
   public:
    explicit Reader(const PrefixTable& table) : table_(&table) {}
    const View& Get() {
      uint64_t now = table_->generation();
      if (view_ == nullptr || now != seen_) {
        // The view handed out before stays alive until the next refresh: a caller still holding
        // it while a nested call refreshes is safe.
        previous_ = std::move(view_);
        view_ = table_->Snapshot();
        seen_ = view_->generation();
      }
      return *view_;
    }

   private:
    const PrefixTable* table_;
    std::shared_ptr<const View> view_;
    std::shared_ptr<const View> previous_;
    uint64_t seen_ = 0;
  };

  // Sets (or, with role kNone and no flags, removes) the entry of `prefix` and publishes.
  void Set(std::string_view prefix, PrefixEntry entry);
  // The same for many prefixes in one publication: each shard they touch is copied once (bulk
  // loads place thousands of prefixes at a time).
  void SetMany(const std::vector<std::pair<std::string, PrefixEntry>>& changes);
  // Replaces the whole table in one publication (at startup).
  void Load(std::vector<std::pair<std::string, PrefixEntry>> entries);

  static size_t ShardOf(std::string_view prefix) { return ShardOfHash(HashOf(prefix)); }
  static size_t ShardOfHash(size_t hash) { return (hash >> 56) % kShardCount; }

 private:
  void Publish(std::shared_ptr<View> next);

  mutable std::mutex publish_mutex_;  // guards current_ (readers copy it; writers replace it)
  std::mutex writer_mutex_;           // one writer at a time builds the next version
  std::shared_ptr<const View> current_;
  std::atomic<uint64_t> generation_{0};
};

// This thread's view of `table`: a thread-local Reader (rebuilt when the thread turns to another
// table), so the per-request cost is one atomic load. Valid until this thread's next call.
const PrefixTable::View& ThreadView(const PrefixTable& table);

}  // namespace idnode::registry
