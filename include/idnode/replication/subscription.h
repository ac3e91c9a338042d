// replication/: what a replica receives from a source — every record, or the records of some
// prefixes — and whether a peer may ask for it.
//
// A subscription to prefix P covers what identifier::HeldUnderPrefix says P holds: the
// identifiers of P and of every prefix derived from it (P/x, P.1/x, P.1.7/x) and the prefix
// handles of the derived prefixes (0.NA/P.1), which the node that homes P administers; not 0.NA/P
// itself, which belongs to P's parent (the top-level node holds the delegation); a subscription
// to 0.NA covers every prefix handle.
// Keys are compared normalised (identifier::Normalize). A Subscription is immutable once built
// and read by one replication session at a time.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "idnode/common/result.h"

namespace idnode::replication {

class Subscription {
 public:
  // Everything the source holds.
  static Subscription Everything();
  // The records of `prefixes` (validated: non-empty, no '/', at most 128 bytes, at most 10,000
  // of them); a prefix under another listed one is folded into it.
  static Result<Subscription, std::string> Of(const std::vector<std::string>& prefixes);

  bool everything() const { return everything_; }
  // Normalised, sorted, none under another.
  const std::vector<std::string>& prefixes() const { return prefixes_; }

  // Whether the record stored under `key` (normalised) is covered.
  bool Covers(std::string_view key) const;
  // Whether prefix `prefix` (normalised) is the subscribed one or derived from one (a PREFIX
  // changelog entry of it is sent).
  bool CoversPrefix(std::string_view prefix) const;
  // Whether every record `other` covers is covered by this one (a peer asks for `other`; this is
  // what it is allowed).
  bool Contains(const Subscription& other) const;
  // Key ranges [begin, end) that hold every covered key (a snapshot scans only these; each key in
  // them is still checked with Covers). Sorted, disjoint.
  std::vector<std::pair<std::string, std::string>> KeyRanges() const;

  std::string ToString() const;

 private:
  bool everything_ = false;
  std::vector<std::string> prefixes_;
};

}  // namespace idnode::replication
