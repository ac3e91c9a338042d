#include "idnode/resolver/resolver.h"

#include <cstring>

#include "idnode/identifier/identifier.h"
#include "idnode/protocol/wire.h"

namespace idnode::resolver {

namespace {

constexpr std::string_view kNotHere = "That prefix doesn't live here";
constexpr std::string_view kStorageError = "storage error";
// The reference server's words for an identifier that hashes to another server of its site.
constexpr std::string_view kWrongServer = "Request was hashed incorrectly";

using registry::PrefixEntry;
using registry::PrefixRole;
using registry::PrefixTable;
using registry::TypeMatches;
namespace prefix_flag = registry::prefix_flag;

// The fields a filter needs and the extent of one encoded value, read without allocating.
struct ValueSummary {
  int32_t index = 0;
  uint8_t permissions = 0;
  std::string_view type;
  std::string_view data;
  std::span<const uint8_t> bytes;
};

bool Skim(protocol::WireReader& r, std::span<const uint8_t> all, ValueSummary* v) {
  size_t start = r.offset();
  v->index = r.I32();
  (void)r.U32();  // timestamp
  (void)r.U8();   // ttl type
  (void)r.U32();  // ttl
  v->permissions = r.U8();
  auto type = r.LengthPrefixed();
  v->type = {reinterpret_cast<const char*>(type.data()), type.size()};
  auto data = r.LengthPrefixed();
  v->data = {reinterpret_cast<const char*>(data.data()), data.size()};
  uint32_t refs = r.U32();
  for (uint32_t i = 0; i < refs && r.ok(); ++i) {
    (void)r.LengthPrefixed();
    (void)r.U32();
  }
  if (!r.ok()) return false;
  v->bytes = all.subspan(start, r.offset() - start);
  return true;
}

bool IsPublic(const ValueSummary& v) {
  return (v.permissions & protocol::permission::kPublicRead) != 0;
}

}  // namespace

bool Selects(const Query& q, int32_t index, std::string_view type, uint8_t permissions) {
  if (q.public_only && (permissions & protocol::permission::kPublicRead) == 0) return false;
  bool no_filter =
      q.wire_indexes.empty() && q.wire_types.empty() && q.indexes.empty() && q.types.empty();
  if (no_filter) return true;
  for (uint32_t i = 0; i < q.wire_indexes.size(); ++i) {
    if (q.wire_indexes[i] == index) return true;
  }
  for (int32_t i : q.indexes) {
    if (i == index) return true;
  }
  for (std::string_view t : q.wire_types) {
    if (TypeMatches(t, type)) return true;
  }
  for (std::string_view t : q.types) {
    if (TypeMatches(t, type)) return true;
  }
  return false;
}

Resolver::Resolver(registry::Registry& registry, std::shared_ptr<cache::AnswerCache> cache,
                   ResolverOptions options)
    : registry_(registry), cache_(std::move(cache)), options_(options) {}

// One resolution in progress, on one thread: from the cache only (a miss anywhere sets
// `needs_storage` and the whole resolution is run again on a storage thread) or from storage.
class Resolver::Run {
 public:
  Run(const Resolver& resolver, const Query& query, Scratch& scratch, bool from_storage)
      : r_(resolver), q_(query), s_(scratch), from_storage_(from_storage) {}

  Answer Go() {
    s_.key.assign(q_.handle);
    identifier::NormalizeInPlace(s_.key);
    if (s_.key.find('/') == std::string::npos) {
      s_.key.insert(0, identifier::kPrefixHandlePrefix);  // "88.100" is "0.NA/88.100"
    }
    const PrefixTable::View& table = registry::ThreadView(r_.registry_.prefix_table());
    table_ = &table;
    if (identifier::IsPrefixHandle(s_.key)) return PrefixHandle(table);

    const std::string_view prefix = identifier::PrefixOf(s_.key);
    auto nearest = table.Nearest(prefix);
    if (!nearest) return NotHere();
    switch (nearest->entry.role) {
      case PrefixRole::kHomed:
        if (!r_.registry_.OnThisServer(s_.key)) return WrongServer();
        return Local(nullptr);
      case PrefixRole::kMirrored:
        refer_only_ = true;
        if (!registry::MirrorAnswersLocally(nearest->entry, r_.options_.answer_mirrored))
          return ServiceReferral(nearest->prefix, prefix);
        // A server of a mirror site holds its share only (replication is narrowed to it).
        if (!r_.registry_.OnThisServer(s_.key)) return WrongServer();
        // A copy that is not known complete refers what it lacks to the owner.
        return Local(nearest->entry.has(prefix_flag::kMirrorSynced) ? nullptr : &*nearest);
      case PrefixRole::kDelegated:
        return ServiceReferral(nearest->prefix, prefix);
      default:
        return NotHere();
    }
  }

  bool needs_storage() const { return needs_storage_; }

 private:
  enum class Fetched : uint8_t { kFound, kNotFound, kError, kNeedsStorage };

  // Looks up the encoded values of `key` (normalised) and hands them to `use`, which must copy
  // what it keeps: the bytes are the cache's (under its lock) or the scratch record's.
  template <typename F>
  Fetched Fetch(std::string_view key, F&& use) {
    if (!from_storage_) {
      if (r_.cache_ == nullptr) return Fetched::kNeedsStorage;
      switch (r_.cache_->Lookup(key, use)) {
        case cache::LookupResult::kHit:
          return Fetched::kFound;
        case cache::LookupResult::kNegativeHit:
          return Fetched::kNotFound;
        default:
          return Fetched::kNeedsStorage;
      }
    }
    switch (r_.registry_.GetEncoded(key, &s_.record)) {
      case registry::ReadOutcome::kFound:
        use(std::span<const uint8_t>(s_.record));
        return Fetched::kFound;
      case registry::ReadOutcome::kNotFound:
        return Fetched::kNotFound;
      default:
        return Fetched::kError;
    }
  }

  Answer Stopped(Fetched f) {
    if (f == Fetched::kNeedsStorage) {
      needs_storage_ = true;
      return {};
    }
    Answer a;
    a.code = ResponseCode::kError;
    a.message = kStorageError;
    return a;
  }

  Answer NotHere() {
    Answer a;
    a.code = ResponseCode::kServerNotResponsible;
    a.message = kNotHere;
    return a;
  }

  // Another server of this node's site holds it (the client hashed it to the wrong one).
  Answer WrongServer() {
    Answer a;
    a.code = ResponseCode::kServerNotResponsible;
    a.message = kWrongServer;
    return a;
  }

  // ---- the values section being built in s_.values: count(4) + values ----
  void BeginValues() {
    out_ = 4;
    selected_ = 0;
    if (s_.values.size() < 4) s_.values.resize(4);
  }
  // Appends the values of `encoded` that `wanted` selects; false when `encoded` is malformed.
  template <typename Pred>
  bool AppendValues(std::span<const uint8_t> encoded, Pred&& wanted) {
    if (s_.values.size() < out_ + encoded.size()) s_.values.resize(out_ + encoded.size());
    protocol::WireReader reader(encoded);
    uint32_t count = reader.U32();
    for (uint32_t i = 0; i < count && reader.ok(); ++i) {
      ValueSummary v;
      if (!Skim(reader, encoded, &v)) return false;
      if (!wanted(v)) continue;
      std::memcpy(s_.values.data() + out_, v.bytes.data(), v.bytes.size());
      out_ += v.bytes.size();
      ++selected_;
    }
    return reader.ok();
  }
  void EndValues(Answer& a) {
    s_.values[0] = static_cast<uint8_t>(selected_ >> 24);
    s_.values[1] = static_cast<uint8_t>(selected_ >> 16);
    s_.values[2] = static_cast<uint8_t>(selected_ >> 8);
    s_.values[3] = static_cast<uint8_t>(selected_);
    a.values = std::span<const uint8_t>(s_.values.data(), out_);
    a.value_count = selected_;
  }

  bool Filtered() const {
    return !q_.wire_indexes.empty() || !q_.wire_types.empty() || !q_.indexes.empty() ||
           !q_.types.empty();
  }

  // The record of s_.key, filtered by the query. On a miss: 100, or (a mirror not known
  // complete, `refer_on_miss`) the referral to its owner.
  Answer Local(const PrefixTable::View::Match* refer_on_miss) {
    Answer a;
    bool malformed = false;
    BeginValues();
    Fetched f = Fetch(s_.key, [&](std::span<const uint8_t> encoded) {
      malformed = !AppendValues(encoded, [&](const ValueSummary& v) {
        return Selects(q_, v.index, v.type, v.permissions);
      });
    });
    switch (f) {
      case Fetched::kFound:
        if (malformed) {
          a.code = ResponseCode::kError;
          a.message = kStorageError;
          return a;
        }
        EndValues(a);
        a.code =
            Filtered() && selected_ == 0 ? ResponseCode::kValuesNotFound : ResponseCode::kSuccess;
        return a;
      case Fetched::kNotFound:
        if (refer_on_miss != nullptr)
          return ServiceReferral(refer_on_miss->prefix, identifier::PrefixOf(s_.key));
        a.code = ResponseCode::kHandleNotFound;
        return a;
      default:
        return Stopped(f);
    }
  }

  // RC 302 for an identifier of `own_prefix` whose nearest prefix `delegated` is served
  // elsewhere: the location values of 0.NA/<delegated>, plus the HS_SITE values of the service
  // handles its HS_SERV values name, when those are stored here.
  Answer ServiceReferral(std::string_view delegated, std::string_view own_prefix) {
    // Both views point into s_.key (the identifier), which nothing below changes.
    s_.referral.assign(identifier::kPrefixHandlePrefix);
    s_.referral.append(own_prefix);
    s_.other_key.assign(identifier::kPrefixHandlePrefix);
    s_.other_key.append(delegated);
    Answer a;
    BeginValues();
    services_ = 0;
    bool malformed = false;
    bool names_this_node = false;
    Fetched f = Fetch(s_.other_key, [&](std::span<const uint8_t> encoded) {
      malformed = !AppendValues(encoded, [&](const ValueSummary& v) {
        if (!IsPublic(v) || !registry::IsServiceLocationType(v.type)) return false;
        if (identifier::SameIgnoringAsciiCase(v.type, "HS_SERV")) {
          NoteService(v.data);
        } else if (!names_this_node &&
                   r_.registry_.NamesThisNode(
                       {reinterpret_cast<const uint8_t*>(v.data.data()), v.data.size()})) {
          names_this_node = true;
        }
        return true;
      });
    });
    if (f != Fetched::kFound && f != Fetched::kNotFound) return Stopped(f);
    if (malformed) return Stopped(Fetched::kError);
    // Delegated to this very node under a prefix homed here (a secondary holding its enterprise
    // prefixes' handles with its own site): answered here, never referred to itself; DNRF and
    // DNS (which never refer) get the answer too.
    if (names_this_node && !refer_only_) {
      auto above = table_->Nearest(registry::ParentPrefix(delegated));
      if (above && above->entry.role == PrefixRole::kHomed) return Local(nullptr);
    }
    if (q_.no_referral) return NotHere();
    for (size_t i = 0; i < services_; ++i) {
      Fetched g = AppendServiceSites(i, /*prefix_sites=*/false);
      if (g != Fetched::kFound && g != Fetched::kNotFound) return Stopped(g);
    }
    EndValues(a);
    a.code = ResponseCode::kServiceReferral;
    a.referral_handle = s_.referral;
    return a;
  }

  void NoteService(std::string_view handle) {
    if (services_ >= r_.options_.max_service_handles || handle.empty() ||
        handle.size() > protocol::kMaxHandleLength)
      return;
    for (size_t i = 0; i < services_; ++i) {
      if (identifier::SameIgnoringAsciiCase(s_.services[i], handle)) return;  // followed once
    }
    if (s_.services.size() <= services_) s_.services.resize(services_ + 1);
    s_.services[services_].assign(handle);
    identifier::NormalizeInPlace(s_.services[services_]);
    ++services_;
  }

  // Appends the sites (HS_SITE/HS_SITE.6, or with `prefix_sites` HS_SITE.PREFIX/HS_NA_DELEGATE)
  // of the service handle noted at `i`, if it is stored here.
  Fetched AppendServiceSites(size_t i, bool prefix_sites) {
    bool malformed = false;
    Fetched f = Fetch(s_.services[i], [&](std::span<const uint8_t> encoded) {
      malformed = !AppendValues(encoded, [&](const ValueSummary& v) {
        if (!IsPublic(v) || registry::IsServiceHandleType(v.type)) return false;  // one hop
        return prefix_sites ? registry::IsPrefixLocationType(v.type)
                            : registry::IsServiceLocationType(v.type);
      });
    });
    if (f == Fetched::kFound && malformed) return Fetched::kError;
    return f;
  }

  // A prefix handle: its record, or the prefix referral (303) of its nearest delegated ancestor.
  Answer PrefixHandle(const PrefixTable::View& table) {
    Answer found = Local(nullptr);
    if (needs_storage_ || found.code != ResponseCode::kHandleNotFound) return found;
    const std::string_view prefix =
        std::string_view(s_.key).substr(identifier::kPrefixHandlePrefix.size());
    if (!q_.no_referral) {
      for (std::string_view q = registry::ParentPrefix(prefix); !q.empty();
           q = registry::ParentPrefix(q)) {
        const PrefixEntry* e = table.Find(q);
        if (e == nullptr) continue;
        if (e->role == PrefixRole::kHomed || e->role == PrefixRole::kMirrored) break;  // ours
        if (e->role != PrefixRole::kDelegated) continue;
        if (!e->has(prefix_flag::kHasPrefixSite) && !e->has(prefix_flag::kHasSite)) continue;
        Answer referral = PrefixReferral(q);
        if (needs_storage_) return referral;
        if (referral.code == ResponseCode::kHandleNotFound) return found;  // served here: 100
        if (referral.code != ResponseCode::kPrefixReferral || referral.value_count > 0)
          return referral;
      }
    }
    const PrefixEntry* root = table.Find("0.NA");
    auto nearest = table.Nearest(prefix);
    const bool ours = (root != nullptr && root->role == PrefixRole::kHomed) ||
                      (nearest && (nearest->entry.role == PrefixRole::kHomed ||
                                   nearest->entry.role == PrefixRole::kMirrored));
    return ours ? found : NotHere();
  }

  // RC 303 with the derived-prefix sites of 0.NA/<ancestor> (none: the walk goes on).
  Answer PrefixReferral(std::string_view ancestor) {
    s_.other_key.assign(identifier::kPrefixHandlePrefix);
    s_.other_key.append(ancestor);
    Answer a;
    BeginValues();
    services_ = 0;
    bool malformed = false;
    bool names_this_node = false;
    Fetched f = Fetch(s_.other_key, [&](std::span<const uint8_t> encoded) {
      malformed = !AppendValues(encoded, [&](const ValueSummary& v) {
        if (!IsPublic(v)) return false;
        if (registry::IsServiceHandleType(v.type)) NoteService(v.data);
        if (!registry::IsPrefixLocationType(v.type)) return false;
        if (!registry::IsServiceHandleType(v.type) && !names_this_node &&
            r_.registry_.NamesThisNode(
                {reinterpret_cast<const uint8_t*>(v.data.data()), v.data.size()})) {
          names_this_node = true;
        }
        return true;
      });
    });
    if (f != Fetched::kFound && f != Fetched::kNotFound) return Stopped(f);
    if (malformed) return Stopped(Fetched::kError);
    if (names_this_node) {
      // The derived prefixes of `ancestor` are served by this very node: no referral to itself.
      Answer ours;
      ours.code = ResponseCode::kHandleNotFound;
      return ours;
    }
    for (size_t i = 0; i < services_; ++i) {
      Fetched g = AppendServiceSites(i, /*prefix_sites=*/true);
      if (g != Fetched::kFound && g != Fetched::kNotFound) return Stopped(g);
    }
    EndValues(a);
    a.code = ResponseCode::kPrefixReferral;
    return a;
  }

  const Resolver& r_;
  const Query& q_;
  Scratch& s_;
  const bool from_storage_;
  const PrefixTable::View* table_ = nullptr;
  bool needs_storage_ = false;
  bool refer_only_ = false;  // a mirror's referral to its owner: never answered locally instead
  size_t out_ = 4;
  uint32_t selected_ = 0;
  size_t services_ = 0;
};

Answer Resolver::ResolveFromCache(const Query& query, Scratch& scratch, bool* needs_storage) const {
  Run run(*this, query, scratch, /*from_storage=*/false);
  Answer answer = run.Go();
  *needs_storage = run.needs_storage();
  if (*needs_storage) return {};
  answer.source = Source::kCache;
  return answer;
}

Answer Resolver::ResolveFromStorage(const Query& query, Scratch& scratch) const {
  Run run(*this, query, scratch, /*from_storage=*/true);
  Answer answer = run.Go();
  answer.source = Source::kStorage;
  return answer;
}

Answer Resolver::Resolve(const Query& query, Scratch& scratch) const {
  bool needs_storage = false;
  Answer answer = ResolveFromCache(query, scratch, &needs_storage);
  if (!needs_storage) return answer;
  return ResolveFromStorage(query, scratch);
}

bool Resolver::AnswersFoundRecord(std::string_view handle, Scratch& scratch) const {
  scratch.key.assign(handle);
  identifier::NormalizeInPlace(scratch.key);
  // The key the records are stored (and invalidated) under: "88.100" is "0.NA/88.100".
  if (scratch.key.find('/') == std::string::npos)
    scratch.key.insert(0, identifier::kPrefixHandlePrefix);
  if (identifier::IsPrefixHandle(scratch.key)) return true;
  const PrefixTable::View& table = registry::ThreadView(registry_.prefix_table());
  auto nearest = table.Nearest(identifier::PrefixOf(scratch.key));
  if (!nearest) return false;
  return (nearest->entry.role == PrefixRole::kHomed && registry_.OnThisServer(scratch.key)) ||
         (nearest->entry.role == PrefixRole::kMirrored &&
          registry::MirrorAnswersLocally(nearest->entry, options_.answer_mirrored) &&
          registry_.OnThisServer(scratch.key));
}

uint64_t Resolver::CacheHashFor(std::string_view handle, Scratch& scratch) const {
  if (cache_ == nullptr) return 0;
  scratch.key.assign(handle);
  identifier::NormalizeInPlace(scratch.key);
  return cache::AnswerCache::HashOf(scratch.key);
}

void Resolver::PrefetchBucket(uint64_t hash) const {
  if (cache_ != nullptr) cache_->PrefetchBucket(hash);
}

void Resolver::PrefetchEntry(uint64_t hash) const {
  if (cache_ != nullptr) cache_->PrefetchEntry(hash);
}

}  // namespace idnode::resolver
