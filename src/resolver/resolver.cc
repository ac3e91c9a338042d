#include "idnode/resolver/resolver.h"

#include <cstring>
#include <map>

#include "idnode/identifier/identifier.h"
#include "idnode/protocol/wire.h"

namespace idnode::resolver {

namespace {

constexpr std::string_view kNotHere = "That prefix doesn't live here";

using registry::TypeMatches;

// The fields a filter needs and the extent of one encoded value, read without allocating.
struct ValueSummary {
  int32_t index = 0;
  uint8_t permissions = 0;
  std::string_view type;
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
  (void)r.LengthPrefixed();  // data
  uint32_t refs = r.U32();
  for (uint32_t i = 0; i < refs && r.ok(); ++i) {
    (void)r.LengthPrefixed();
    (void)r.U32();
  }
  if (!r.ok()) return false;
  v->bytes = all.subspan(start, r.offset() - start);
  return true;
}

// The prefix table as this thread last saw it; refreshed when the registry's generation moves.
struct PrefixSnapshot {
  const registry::Registry* owner = nullptr;
  uint64_t generation = 0;
  std::map<std::string, proto::PrefixState, std::less<>> table;
};

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

Resolver::Route Resolver::RouteFor(std::string_view key, std::string* prefix_handle) const {
  thread_local PrefixSnapshot snapshot;
  uint64_t generation = registry_.prefix_generation();
  if (snapshot.owner != &registry_ || snapshot.generation != generation) {
    snapshot.table.clear();
    for (auto& state : registry_.Prefixes())
      snapshot.table.emplace(state.prefix(), std::move(state));
    snapshot.owner = &registry_;
    snapshot.generation = generation;
  }
  if (identifier::IsPrefixHandle(key))
    return Route::kLocal;  // prefix handles: from the records here
  std::string_view prefix = identifier::PrefixOf(key);
  auto it = snapshot.table.find(prefix);
  if (it == snapshot.table.end()) return Route::kNotHere;
  switch (it->second.role()) {
    case proto::PrefixState::HOMED:
      return Route::kLocal;
    case proto::PrefixState::MIRRORED:
      return options_.answer_mirrored ? Route::kLocal : Route::kNotHere;
    case proto::PrefixState::DELEGATED:
      prefix_handle->assign(identifier::kPrefixHandlePrefix);
      prefix_handle->append(prefix);
      return Route::kReferral;
    default:
      return Route::kNotHere;
  }
}

Answer Resolver::Select(const Query& query, std::span<const uint8_t> encoded, Scratch& scratch,
                        ResponseCode ok) const {
  Answer answer;
  scratch.values.resize(std::max<size_t>(scratch.values.size(), encoded.size()));
  protocol::WireReader r(encoded);
  uint32_t count = r.U32();
  size_t out = 4;
  uint32_t selected = 0;
  for (uint32_t i = 0; i < count && r.ok(); ++i) {
    ValueSummary v;
    if (!Skim(r, encoded, &v)) break;
    bool wanted = ok == ResponseCode::kServiceReferral
                      ? (TypeMatches("HS_SITE", v.type) || TypeMatches("HS_SITE.6", v.type) ||
                         TypeMatches("HS_SERV", v.type))
                      : Selects(query, v.index, v.type, v.permissions);
    if (!wanted) continue;
    std::memcpy(scratch.values.data() + out, v.bytes.data(), v.bytes.size());
    out += v.bytes.size();
    ++selected;
  }
  if (!r.ok()) {
    answer.code = ResponseCode::kError;
    return answer;
  }
  scratch.values[0] = static_cast<uint8_t>(selected >> 24);
  scratch.values[1] = static_cast<uint8_t>(selected >> 16);
  scratch.values[2] = static_cast<uint8_t>(selected >> 8);
  scratch.values[3] = static_cast<uint8_t>(selected);
  answer.values = std::span<const uint8_t>(scratch.values.data(), out);
  answer.value_count = selected;
  bool filtered = !query.wire_indexes.empty() || !query.wire_types.empty() ||
                  !query.indexes.empty() || !query.types.empty();
  answer.code = (ok == ResponseCode::kSuccess && filtered && selected == 0)
                    ? ResponseCode::kValuesNotFound
                    : ok;
  if (ok == ResponseCode::kServiceReferral && selected == 0)
    answer.code = ResponseCode::kServerNotResponsible;
  return answer;
}

Answer Resolver::Finish(const Query& query, Route route, const std::string& referral_key,
                        bool found, std::span<const uint8_t> encoded, Scratch& scratch) const {
  (void)referral_key;
  if (!found) {
    Answer a;
    a.code = route == Route::kReferral ? ResponseCode::kServerNotResponsible
                                       : ResponseCode::kHandleNotFound;
    if (route == Route::kReferral) a.message = kNotHere;
    return a;
  }
  return Select(
      query, encoded, scratch,
      route == Route::kReferral ? ResponseCode::kServiceReferral : ResponseCode::kSuccess);
}

bool Resolver::Admit(const Query& query, Scratch& scratch, Route* route, std::string* referral_key,
                     Answer* refusal) const {
  scratch.key.assign(query.handle);
  identifier::NormalizeInPlace(scratch.key);
  *route = RouteFor(scratch.key, referral_key);
  if (*route == Route::kNotHere || (*route == Route::kReferral && query.no_referral)) {
    refusal->code = ResponseCode::kServerNotResponsible;
    refusal->message = kNotHere;
    return false;
  }
  return true;
}

Answer Resolver::ResolveFromCache(const Query& query, Scratch& scratch, bool* needs_storage) const {
  *needs_storage = false;
  std::string referral_key;
  Route route;
  Answer refusal;
  if (!Admit(query, scratch, &route, &referral_key, &refusal)) return refusal;
  const std::string& key =
      route == Route::kReferral ? referral_key : scratch.key;  // both normalised
  if (cache_ == nullptr) {
    *needs_storage = true;
    return {};
  }
  Answer answer;
  auto outcome = cache_->Lookup(key, [&](std::span<const uint8_t> encoded) {
    answer = Finish(query, route, referral_key, true, encoded, scratch);
  });
  switch (outcome) {
    case cache::LookupResult::kHit:
      answer.source = Source::kCache;
      return answer;
    case cache::LookupResult::kNegativeHit:
      answer = Finish(query, route, referral_key, false, {}, scratch);
      answer.source = Source::kCache;
      return answer;
    default:
      *needs_storage = true;
      return {};
  }
}

Answer Resolver::ResolveFromStorage(const Query& query, Scratch& scratch) const {
  std::string referral_key;
  Route route;
  Answer refusal;
  if (!Admit(query, scratch, &route, &referral_key, &refusal)) return refusal;
  std::string lookup = route == Route::kReferral ? referral_key : std::string(query.handle);
  bool found = registry_.GetEncoded(lookup, &scratch.record);
  Answer answer = Finish(query, route, referral_key, found, scratch.record, scratch);
  answer.source = Source::kStorage;
  return answer;
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

Answer Resolver::Resolve(const Query& query, Scratch& scratch) const {
  bool needs_storage = false;
  Answer answer = ResolveFromCache(query, scratch, &needs_storage);
  if (!needs_storage) return answer;
  return ResolveFromStorage(query, scratch);
}

}  // namespace idnode::resolver
