// resolver/: the answer to a resolution, whatever protocol asked (Handle over UDP/TCP, the JSON
// API, DNS for OIDs). Routes by the registry's prefix table, walking up the dot-separated prefix
// to the nearest entry (88.100.1.7 -> 88.100.1 -> 88.100 -> 88), for identifiers and prefix
// handles alike:
//  - an identifier P/x whose nearest prefix is homed here (or mirrored and answered here) is
//    answered from its record: its values filtered by index, type and PO; 100 if there is no such
//    handle, 200 if the filter selects nothing;
//  - one whose nearest prefix Q is delegated gets RC 302 (service referral) carrying the HS_SITE,
//    HS_SITE.6 and HS_SERV values of 0.NA/Q, and the HS_SITE values of the service handles those
//    HS_SERV values name when they are stored here; the referral's handle is 0.NA/P, which a
//    client resolves itself when there are no values to follow (DNRF: 301 instead);
//  - a mirrored prefix is answered from the local copy when `answer_mirrored` and its policy
//    (replication.sources: mirror, refer, or mirror only while the owner is unreachable) say so
//    and the copy is not stale (a prefix taken over elsewhere, until its first snapshot); a handle
//    missing from a copy that replication has not marked complete, or every handle when the mirror
//    is not answered, gets the referral to its owner (the location values of 0.NA/Q here);
//  - a prefix handle 0.NA/P stored here is answered from its record (RC 1); one that is not gets
//    RC 303 (prefix referral, HANDLE.md §1.11) with the HS_SITE.PREFIX / HS_NA_DELEGATE /
//    HS_SERV.PREFIX values of its nearest delegated ancestor 0.NA/Q that has them (or whose HS_SERV
//    names a service handle here that has them), as the reference server's
//    getPrefixReferralResponseIfAppropriate; the walk stops at an ancestor homed here (its derived
//    prefixes are ours: 100);
//  - anything else: 301 "That prefix doesn't live here".
// A handle without a slash is the prefix handle of that prefix, as the reference server treats it.
// A storage failure or a corrupt record is RC 2 (never "not found", which clients cache).
// Values are written in Handle wire form into the caller's Scratch, straight from the cache's
// encoded answer on a hit, with no heap allocation once the Scratch has grown.
//
// One Resolver is shared by all worker and storage threads; it holds no lock of its own (the
// prefix table is read through a per-thread view). Each thread passes its own Scratch.
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
  // For kSuccess, kServiceReferral and kPrefixReferral: count(4) + the selected values in wire
  // form (a referral's may hold none).
  std::span<const uint8_t> values;
  uint32_t value_count = 0;
  Source source = Source::kNone;
  std::string_view message;  // error text, if any
  // For kServiceReferral: the prefix handle (0.NA/P) a client resolves when the values give no
  // site; empty for kPrefixReferral (as the reference server sends it).
  std::string_view referral_handle;
};

// Per-thread buffers; sized once, reused.
struct Scratch {
  std::string key;              // the normalised handle
  std::string other_key;        // a second record's key (a referral's prefix handle, a service)
  std::string referral;         // Answer::referral_handle
  std::vector<uint8_t> values;  // the answer's values section
  std::vector<uint8_t> record;  // an encoded record read from storage
  std::vector<std::string> services;  // service handles a referral follows
  Scratch() {
    key.reserve(protocol::kMaxHandleLength + 8);
    other_key.reserve(protocol::kMaxHandleLength + 8);
    referral.reserve(protocol::kMaxHandleLength + 8);
    values.reserve(64 * 1024);
    record.reserve(64 * 1024);
  }
};

struct ResolverOptions {
  // Answer mirrored prefixes from the local copy (node.answer_mirrored); false: always refer to
  // the owner.
  bool answer_mirrored = true;
  // Service handles followed per referral (HS_SERV values whose HS_SITE values are added).
  uint32_t max_service_handles = 4;
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
  // Either, for callers that may block (tools, tests).
  Answer Resolve(const Query& query, Scratch& scratch) const;
  // Whether a record of `handle` found here is answered as it is (its prefix is homed here, or
  // mirrored and answered here, or it is a prefix handle): a cache of rendered answers may then
  // serve it without routing again. No storage access. Leaves in scratch.key the normalised key
  // the record is stored and invalidated under ("88.100" is "0.NA/88.100").
  bool AnswersFoundRecord(std::string_view handle, Scratch& scratch) const;
  // Whether some handle begins with `handle_prefix` (see Registry::HasHandlesUnder); blocks.
  ResponseCode HasHandlesUnder(std::string_view handle_prefix) const {
    return registry_.HasHandlesUnder(handle_prefix);
  }
  // Moves whenever the prefix table changes.
  uint64_t prefix_generation() const { return registry_.prefix_generation(); }
  const ResolverOptions& options() const { return options_; }

  // Batch prefetching (see AnswerCache::PrefetchBucket): the cache hash of a resolution of
  // `handle` (0 without a cache), and the two stages.
  uint64_t CacheHashFor(std::string_view handle, Scratch& scratch) const;
  void PrefetchBucket(uint64_t hash) const;
  void PrefetchEntry(uint64_t hash) const;

 private:
  class Run;
  registry::Registry& registry_;
  std::shared_ptr<cache::AnswerCache> cache_;
  ResolverOptions options_;
};

// Whether a value with this index, type and permissions is selected by `query`.
bool Selects(const Query& query, int32_t index, std::string_view type, uint8_t permissions);

}  // namespace idnode::resolver
