// replication/: the source side. Replicas connect over mutual TLS, say what they want and where
// they stand (Hello), and receive, per shard of this node, a snapshot when they have nothing or
// are behind the retained changelog or their history is not this node's, then the changelog from
// there on, continuously (README.md "Replication").
//
// The pitfalls of STYLE.md's list are designed out:
//  - client writes never wait for a replica: writers only flag a change (NotifyChange); sessions
//    read the changelog from storage on the replication thread;
//  - in-flight bytes are capped by the replica's acknowledgements (the window); every write has a
//    deadline; a replica that acknowledges nothing for ack_timeout, or falls max_lag_entries
//    behind, is disconnected (and takes a snapshot if the changelog it needs is then trimmed);
//  - a batch goes out as soon as there is anything to send: nothing waits to fill it;
//  - a snapshot's sequence and its retention pin are taken together under the shard's write lock
//    (Registry::TakeSnapshot), and a streaming replica's position pins retention, in memory and
//    (saved every second) across restarts;
//  - every session starts from nothing but the replica's Hello.
//
// Owned by the application. One thread (its own io_context) runs the acceptor and every session;
// it reads storage (changelog, snapshots) and may block on it, which delays only replication.
// NotifyChange may be called from any thread.
#pragma once

#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <chrono>
#include <cstdint>
#include <future>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "idnode/common/connection_caps.h"
#include "idnode/common/result.h"
#include "idnode/registry/registry.h"
#include "idnode/replication/status.h"
#include "idnode/replication/subscription.h"

namespace idnode::replication {

// A replica this node serves: the name its certificate carries, and what it may receive.
struct PeerGrant {
  std::string name;
  Subscription allowed;
};

struct SourceOptions {
  std::string node_name;
  std::string bind_address = "127.0.0.1";
  uint16_t port = 0;  // 0: an ephemeral port (tests)
  std::vector<PeerGrant> peers;
  uint64_t window_bytes = 8u << 20;  // unacknowledged bytes in flight, at most
  std::chrono::milliseconds handshake_timeout{3000};
  std::chrono::milliseconds send_timeout{10000};
  std::chrono::milliseconds ack_timeout{30000};
  std::chrono::milliseconds heartbeat{1000};
  uint64_t max_lag_entries = 20'000'000;
  uint32_t max_connections = 64;
  // One Changes message: at most this many changelog entries read, this many bytes sent.
  uint32_t changes_batch_entries = 2000;
  uint32_t message_bytes = 256u << 10;  // also the size of a snapshot chunk
};

class ReplicationSource {
 public:
  ReplicationSource(registry::Registry& registry, SourceOptions options,
                    std::shared_ptr<boost::asio::ssl::context> tls, StatusBoard& status);
  ~ReplicationSource();
  ReplicationSource(const ReplicationSource&) = delete;
  ReplicationSource& operator=(const ReplicationSource&) = delete;

  Result<Unit, std::string> Bind();
  uint16_t port() const { return port_; }
  void Start();
  // Closes the listener and every session, then joins the thread.
  void Stop();
  // A change was committed (any thread; never blocks).
  void NotifyChange();

 private:
  class Session;
  boost::asio::awaitable<void> AcceptLoop();
  void WakeSessions();

  registry::Registry& registry_;
  SourceOptions options_;
  std::shared_ptr<boost::asio::ssl::context> tls_;
  StatusBoard& status_;
  // Declared before io_ so that they outlive it: coroutine frames that io_ destroys (sessions
  // still running when Stop gave up waiting) release their connection slots into caps_.
  ConnectionCaps caps_;
  std::list<std::weak_ptr<Session>> sessions_;        // replication thread only
  std::map<std::string, uint64_t> peer_generations_;  // connections per peer: replication thread
  boost::asio::io_context io_{1};
  std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor_;
  uint16_t port_ = 0;
  std::thread thread_;
  std::future<void> finished_;  // ready once the thread's loop has returned
  std::atomic<bool> wake_posted_{false};
  bool stopped_ = false;
};

}  // namespace idnode::replication
