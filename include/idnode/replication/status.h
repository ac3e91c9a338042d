// replication/: what replication is doing, for operators: `idctl replication status`, /metrics
// and the JSON the HTTP port serves at /api/replication (README.md "Replication").
//
// One StatusBoard is owned by the application. The replication threads update it (a few times a
// second at most, per link); the HTTP thread reads it. One mutex guards it: nothing on a request
// path touches it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace idnode::replication {

struct ShardProgress {
  uint32_t shard = 0;        // the source's shard
  uint64_t position = 0;     // the replica's position (last change applied, or acknowledged)
  uint64_t source_last = 0;  // the source's last sequence, as last heard
};

// One replication link, seen from this node: a replica pulling from us ("serving") or a source
// we pull from ("pulling").
struct LinkStatus {
  std::string peer;       // the other node's name (its certificate's)
  std::string direction;  // "serving" or "pulling"
  std::string address;
  // pulling: idle (nothing to pull), connecting, snapshot, streaming, waiting (backing off after
  // a failure), refused; serving: snapshot, streaming, disconnected.
  std::string state = "idle";
  std::string subscription;
  std::vector<ShardProgress> shards;
  uint64_t lag_entries = 0;  // changes committed at the source, not yet applied by the replica
  uint64_t lag_ms = 0;       // how old the oldest change not yet applied is (0: caught up)
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
  uint64_t unacked_bytes = 0;    // serving: sent, not yet acknowledged (at most the window)
  uint64_t records_applied = 0;  // pulling: records and deletions applied, snapshots included
  uint64_t snapshots = 0;        // shard snapshots sent or applied
  uint64_t resyncs = 0;          // connections that began with snapshots (first syncs included)
  uint64_t connects = 0;
  uint64_t disconnects = 0;
  std::string last_error;
  uint64_t last_error_ms = 0;  // Unix milliseconds
  uint64_t connected_ms = 0;   // Unix milliseconds of the current connection's start (0: none)
};

class StatusBoard {
 public:
  // Changes the link (created idle when new) under the board's lock.
  void Update(const std::string& direction, const std::string& peer,
              const std::function<void(LinkStatus&)>& change);
  std::vector<LinkStatus> Links() const;
  // {"node": .., "links": [...]} (README.md documents the fields).
  std::string Json(const std::string& node_name) const;
  // idnode_replication_* samples.
  void AppendMetrics(std::string& out) const;

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, std::string>, LinkStatus> links_;
};

uint64_t UnixMillis();

}  // namespace idnode::replication
