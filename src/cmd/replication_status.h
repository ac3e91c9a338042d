// idctl replication status: what a running node's replication is doing, read from its HTTP port
// (GET /api/replication), printed as a table or as the JSON itself.
#pragma once

#include <string>

namespace idnode::cmd {

struct ReplicationStatusOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8000;
  bool json = false;
};

int PrintReplicationStatus(const ReplicationStatusOptions& options);

// The body of GET `path` on host:port (HTTP/1.1, 10 s deadline), or an error in `*why`.
bool HttpGet(const std::string& host, uint16_t port, const std::string& path, std::string* body,
             std::string* why);

}  // namespace idnode::cmd
