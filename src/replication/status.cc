#include "idnode/replication/status.h"

#include <boost/json.hpp>
#include <chrono>

#include "idnode/metrics/metrics.h"

namespace idnode::replication {

uint64_t UnixMillis() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

void StatusBoard::Update(const std::string& direction, const std::string& peer,
                         const std::function<void(LinkStatus&)>& change) {
  std::lock_guard lock(mutex_);
  auto [it, fresh] = links_.try_emplace({direction, peer});
  if (fresh) {
    it->second.direction = direction;
    it->second.peer = peer;
  }
  change(it->second);
}

std::vector<LinkStatus> StatusBoard::Links() const {
  std::lock_guard lock(mutex_);
  std::vector<LinkStatus> out;
  out.reserve(links_.size());
  for (const auto& [key, link] : links_) out.push_back(link);
  return out;
}

std::string StatusBoard::Json(const std::string& node_name) const {
  boost::json::array links;
  for (const auto& l : Links()) {
    boost::json::array shards;
    for (const auto& s : l.shards) {
      shards.push_back(boost::json::object{
          {"shard", s.shard},
          {"position", s.position},
          {"source_last", s.source_last},
          {"behind", s.source_last > s.position ? s.source_last - s.position : 0}});
    }
    links.push_back(boost::json::object{{"peer", l.peer},
                                        {"direction", l.direction},
                                        {"address", l.address},
                                        {"state", l.state},
                                        {"subscription", l.subscription},
                                        {"lag_entries", l.lag_entries},
                                        {"lag_seconds", static_cast<double>(l.lag_ms) / 1000.0},
                                        {"bytes_sent", l.bytes_sent},
                                        {"bytes_received", l.bytes_received},
                                        {"unacked_bytes", l.unacked_bytes},
                                        {"records_applied", l.records_applied},
                                        {"snapshots", l.snapshots},
                                        {"resyncs", l.resyncs},
                                        {"connects", l.connects},
                                        {"disconnects", l.disconnects},
                                        {"last_error", l.last_error},
                                        {"last_error_ms", l.last_error_ms},
                                        {"connected_ms", l.connected_ms},
                                        {"shards", std::move(shards)}});
  }
  boost::json::object root{{"node", node_name}, {"links", std::move(links)}};
  return boost::json::serialize(root);
}

void StatusBoard::AppendMetrics(std::string& out) const {
  auto links = Links();
  if (links.empty()) return;
  // One family at a time: the exposition format wants each family's samples together.
  auto family = [&](const std::string& name, const std::string& type, const std::string& help,
                    const std::function<void(const LinkStatus&, const std::string&)>& samples) {
    metrics::AppendHelp(out, name, type, help);
    for (const auto& l : links)
      samples(l, "peer=\"" + l.peer + "\",direction=\"" + l.direction + "\"");
  };
  family("idnode_replication_lag_entries", "gauge",
         "Changes committed at the source and not yet applied by the replica.",
         [&](const LinkStatus& l, const std::string& labels) {
           metrics::AppendSample(out, "idnode_replication_lag_entries", labels,
                                 static_cast<double>(l.lag_entries));
         });
  family("idnode_replication_lag_seconds", "gauge",
         "Age of the oldest change the replica has not applied (0: caught up).",
         [&](const LinkStatus& l, const std::string& labels) {
           metrics::AppendSample(out, "idnode_replication_lag_seconds", labels,
                                 static_cast<double>(l.lag_ms) / 1000.0);
         });
  family("idnode_replication_connected", "gauge",
         "1 while the link is connected (snapshot or streaming).",
         [&](const LinkStatus& l, const std::string& labels) {
           metrics::AppendSample(out, "idnode_replication_connected", labels,
                                 l.state == "snapshot" || l.state == "streaming" ? 1 : 0);
         });
  family("idnode_replication_bytes_total", "counter", "Replication stream bytes, by way of travel.",
         [&](const LinkStatus& l, const std::string& labels) {
           metrics::AppendSample(out, "idnode_replication_bytes_total", labels + ",way=\"sent\"",
                                 static_cast<double>(l.bytes_sent));
           metrics::AppendSample(out, "idnode_replication_bytes_total",
                                 labels + ",way=\"received\"",
                                 static_cast<double>(l.bytes_received));
         });
  family("idnode_replication_snapshots_total", "counter",
         "Shard snapshots sent (serving) or applied (pulling): resyncs.",
         [&](const LinkStatus& l, const std::string& labels) {
           metrics::AppendSample(out, "idnode_replication_snapshots_total", labels,
                                 static_cast<double>(l.snapshots));
         });
  family("idnode_replication_resyncs_total", "counter",
         "Connections that began with snapshots (a first sync, or a replica behind the changelog).",
         [&](const LinkStatus& l, const std::string& labels) {
           metrics::AppendSample(out, "idnode_replication_resyncs_total", labels,
                                 static_cast<double>(l.resyncs));
         });
  family("idnode_replication_disconnects_total", "counter",
         "Links lost or closed, expected ones included.",
         [&](const LinkStatus& l, const std::string& labels) {
           metrics::AppendSample(out, "idnode_replication_disconnects_total", labels,
                                 static_cast<double>(l.disconnects));
         });
}

}  // namespace idnode::replication
