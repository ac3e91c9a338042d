// replication/: what a replica receives from a source — every record, or the records of some
// prefixes — and whether a peer may ask for it.
//
// A subscription to prefix P covers what identifier::HeldUnderPrefix says P holds: the
// identifiers of P and of every prefix derived from it (P/x, P.1/x, P.1.7/x) and the prefix
// handles of the derived prefixes (0.NA/P.1), which the node that homes P administers; not 0.NA/P
// itself, which belongs to P's parent (the top-level node holds the delegation); a subscription
// to 0.NA covers every prefix handle.
// A subscription can be narrowed to one server's share of a site of several (the replica is
// server `index` of `count`, HANDLE.md §1.7): of the identifiers it covers, only those the site
// hash puts on that server; prefix handles are every server's. This is how each server of a
// mirror site pulls its share only, as the reference's mirrors do with numServers/serverNum.
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

  // This subscription narrowed to server `index` of a site of `count` servers (count <= 1: all).
  Subscription ShareOfServer(uint32_t count, uint32_t index) const;

  bool everything() const { return everything_; }
  uint32_t site_servers() const { return site_servers_; }  // 0 or 1: not narrowed
  uint32_t site_server() const { return site_server_; }
  // Normalised, sorted, none under another.
  const std::vector<std::string>& prefixes() const { return prefixes_; }

  // Whether the record stored under `key` (normalised) is covered.
  bool Covers(std::string_view key) const;
  // Whether prefix `prefix` (normalised) is the subscribed one or derived from one (a PREFIX
  // changelog entry of it is sent).
  bool CoversPrefix(std::string_view prefix) const;
  // Whether every record `other` covers is covered by this one (a peer asks for `other`; this is
  // what it is allowed). A share of a site's server is compared as its whole: narrowing only
  // takes away.
  bool Contains(const Subscription& other) const;
  // Key ranges [begin, end) that hold every covered key (a snapshot scans only these; each key in
  // them is still checked with Covers). Sorted, disjoint.
  std::vector<std::pair<std::string, std::string>> KeyRanges() const;

  std::string ToString() const;

 private:
  bool InShare(std::string_view key) const;

  bool everything_ = false;
  std::vector<std::string> prefixes_;
  uint32_t site_servers_ = 0;
  uint32_t site_server_ = 0;
};

}  // namespace idnode::replication
