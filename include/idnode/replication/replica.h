// replication/: the replica side. For each configured source, a link connects over mutual TLS
// (checking that the source's certificate carries its configured name), says where it stands, and
// applies what comes: snapshots of source shards, then changelog entries, continuously
// (README.md "Replication").
//
// Applying:
//  - idempotent: the replica's position in each source shard is kept per shard of this node (the
//    source's shard count may differ), written in the same batch as the changes it covers; after
//    a crash the link resumes from there and skips what a shard already has;
//  - only what this node may hold from that source: records under a prefix homed here, or
//    mirrored from another node, are never written (a prefix taken over stops being applied at
//    once);
//  - the caches are invalidated before the position is acknowledged (Registry::ApplyReplicated);
//  - a snapshot replaces records one by one in key order and deletes, as it goes, the records of
//    the subscription that the source no longer has: the old data keeps being served until the
//    snapshot completes, and an interrupted snapshot is taken again from the start (its position
//    is marked "resyncing" first);
//  - a mirror whose owner's history changed (take-over, restore) is resynced.
// After a failure a link waits (200 ms doubling to 5 s, with jitter) and connects again with
// nothing kept from the last connection but what is stored.
//
// Owned by the application. One thread (its own io_context) runs every link and applies what it
// receives (blocking on storage there delays only replication). Resubscribe may be called from any
// thread.
#pragma once

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "idnode/common/result.h"
#include "idnode/registry/registry.h"
#include "idnode/replication/status.h"

namespace idnode::replication {

struct SourceLink {
  std::string name;  // the name in the source's certificate; also how mirrors record their owner
  std::string host;  // an IP address
  uint16_t port = 0;
  bool everything = false;
  std::vector<std::string> prefixes;  // mirrored from it (when not everything)
  // prefix_flag::kReferToOwner, kReferWhileOwnerUp, or 0 (answer from the mirror).
  uint8_t answer_policy = 0;
};

struct ReplicaOptions {
  std::string node_name;
  std::vector<SourceLink> sources;
  uint64_t window_bytes = 8u << 20;
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds send_timeout{10000};
  // The longest silence from a source (it sends a heartbeat every second when idle).
  std::chrono::milliseconds idle_timeout{30000};
  std::chrono::milliseconds backoff_min{200};
  std::chrono::milliseconds backoff_max{5000};
  // This node is server site_server of a site of site_servers (> 1; site.servers): each link
  // asks its source for that server's share of the identifiers only.
  uint32_t site_servers = 0;
  uint32_t site_server = 0;
};

class ReplicaClient {
 public:
  ReplicaClient(registry::Registry& registry, ReplicaOptions options,
                std::shared_ptr<boost::asio::ssl::context> tls, StatusBoard& status);
  ~ReplicaClient();
  ReplicaClient(const ReplicaClient&) = delete;
  ReplicaClient& operator=(const ReplicaClient&) = delete;

  // Startup (before Start): mirrors each source's configured prefixes here unless the prefix is
  // homed here (taken over: the operator's command wins over the file) or mirrored from another
  // source, and sets their answer policy. What it skipped comes back as warnings.
  Result<std::vector<std::string>, std::string> Prepare();
  void Start();
  void Stop();
  // The prefixes mirrored here changed (take-over, a mirror command): every link reconnects with
  // its new set. Any thread.
  void Resubscribe();

 private:
  class Link;
  registry::Registry& registry_;
  ReplicaOptions options_;
  std::shared_ptr<boost::asio::ssl::context> tls_;
  StatusBoard& status_;
  boost::asio::io_context io_{1};
  std::vector<std::shared_ptr<Link>> links_;
  std::thread thread_;
  std::future<void> finished_;
  bool stopped_ = false;
};

}  // namespace idnode::replication
