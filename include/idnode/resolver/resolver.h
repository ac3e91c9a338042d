// resolver/: the answer to a resolution, whatever protocol asked (Handle over UDP/TCP, the JSON
// API). Decides from the prefix table whether the handle lives here, is delegated (a referral
// carrying the delegate's HS_SITE/HS_SERV values), is mirrored, or is unknown here (301); filters
// the record's values by index, type and PO. Values are written in Handle wire form into the
// caller's buffer, straight from the cache's encoded answer on a hit, with no heap allocation.
//
// One Resolver is shared by all worker and storage threads; it holds no lock of its own. Each
// thread passes its own Scratch (buffers reused across requests).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "idnode/cache/answer_cache.h"
#include "idnode/protocol/constants.h"
#include "idnode/protocol/message.h"
#include "idnode/registry/registry.h"

namespace idnode::resolver {

using protocol::ResponseCode;

// What a resolution asks. Index and type lists come either as wire views (Handle requests) or as
// plain spans (the JSON API); both combine with OR.
struct Query {
  std::string_view handle;
  protocol::WireIntList wire_indexes;
  protocol::WireTextList wire_types;
  std::span<const int32_t> indexes;
  std::span<const std::string_view> types;
  bool public_only = false;
  bool no_referral = false;  // DNRF: answer 301 rather than refer
};

enum class Source : uint8_t { kCache, kStorage, kNone };

struct Answer {
  ResponseCode code = ResponseCode::kError;
  // For kSuccess, kServiceReferral: `values` holds count(4) + the selected values in wire form.
  std::span<const uint8_t> values;
  uint32_t value_count = 0;
  Source source = Source::kNone;
  std::string_view message;  // error text, if any
};

// Per-thread buffers; sized once, reused.
struct Scratch {
  std::string key;              // the normalised handle
  std::vector<uint8_t> values;  // the answer's values section
  std::vector<uint8_t> record;  // an encoded record read from storage
  Scratch() {
    key.reserve(protocol::kMaxHandleLength);
    values.reserve(64 * 1024);
    record.reserve(64 * 1024);
  }
};

struct ResolverOptions {
  bool answer_mirrored = true;  // answer mirrored prefixes from the local copy
};

class Resolver {
 public:
  Resolver(registry::Registry& registry, std::shared_ptr<cache::AnswerCache> cache,
           ResolverOptions options = {});

  // The hot path, on a network worker: answers from the cache or says it needs storage
  // (`needs_storage` true). Never blocks, never allocates once Scratch has grown.
  Answer ResolveFromCache(const Query& query, Scratch& scratch, bool* needs_storage) const;
  // On a storage thread: reads the registry (filling the cache) and answers.
  Answer ResolveFromStorage(const Query& query, Scratch& scratch) const;
  // Either, for callers that may block (the JSON API, tools).
  Answer Resolve(const Query& query, Scratch& scratch) const;
  // Whether some handle begins with `handle_prefix` (see Registry::HasHandlesUnder); blocks.
  ResponseCode HasHandlesUnder(std::string_view handle_prefix) const {
    return registry_.HasHandlesUnder(handle_prefix);
  }
  // Moves whenever the prefix table changes (a cache of rendered answers must be dropped then).
  uint64_t prefix_generation() const { return registry_.prefix_generation(); }

 private:
  enum class Route : uint8_t { kLocal, kReferral, kNotHere };
  Route RouteFor(std::string_view normalized_handle, std::string* prefix_handle) const;
  // Normalises the handle into scratch.key and routes it; false (with the 301 in `refusal`) when
  // it is not answered here.
  bool Admit(const Query& query, Scratch& scratch, Route* route, std::string* referral_key,
             Answer* refusal) const;
  Answer Select(const Query& query, std::span<const uint8_t> encoded_values, Scratch& scratch,
                ResponseCode ok) const;
  Answer Finish(const Query& query, Route route, const std::string& referral_key, bool found,
                std::span<const uint8_t> encoded, Scratch& scratch) const;

  registry::Registry& registry_;
  std::shared_ptr<cache::AnswerCache> cache_;
  ResolverOptions options_;

 public:
  // Batch prefetching (see AnswerCache::PrefetchBucket): the cache hash of a resolution of
  // `handle` (0 without a cache), and the two stages.
  uint64_t CacheHashFor(std::string_view handle, Scratch& scratch) const;
  void PrefetchBucket(uint64_t hash) const;
  void PrefetchEntry(uint64_t hash) const;
};

// Whether a value with this index, type and permissions is selected by `query`.
bool Selects(const Query& query, int32_t index, std::string_view type, uint8_t permissions);

}  // namespace idnode::resolver
