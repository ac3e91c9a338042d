// net/: the Handle protocol listeners. One io_context per worker thread, each with its own
// SO_REUSEPORT UDP socket and TCP acceptor per bind address (the kernel spreads datagrams and
// connections over them), so workers share no lock on the request path.
//
// UDP: the worker waits for readiness with Asio, then drains up to `udp_batch` datagrams with one
// recvmmsg and answers them with one sendmmsg; cache hits are answered there, without heap
// allocation. Misses go to the storage pool, which posts the answer back to the worker.
// Multi-packet requests (TC) are reassembled in a per-worker, bounded table.
// TCP: one coroutine per connection; several requests per connection with or without KC (China's
// identifier SDK reuses connections without it); an idle deadline between requests and an I/O
// deadline within one; a cap on message size, on connections in all and per source address.
//
// Owned by the application; Start() and Stop() are called from the main thread.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "idnode/common/connection_caps.h"
#include "idnode/common/result.h"
#include "idnode/config/config.h"
#include "idnode/metrics/metrics.h"
#include "idnode/net/handle_service.h"
#include "idnode/net/listeners.h"
#include "idnode/net/rate_limit.h"

namespace idnode::net {

class HandleServer {
 public:
  HandleServer(const config::HandleConfig& config, const HandleService& service,
               metrics::MetricsHub& metrics);
  ~HandleServer();
  HandleServer(const HandleServer&) = delete;
  HandleServer& operator=(const HandleServer&) = delete;

  // Binds every socket (the port of the first one when the configured port is 0). An error names
  // the address that could not be bound, or says that another process holds the port.
  Result<Unit, std::string> Bind();
  // Starts the workers (after Bind).
  void Run();
  // Stops accepting and receiving, closes connections, joins the threads.
  void Stop();
  uint16_t port() const { return port_; }
  size_t open_connections() const { return connections_.open(); }
  void CollectMetrics(std::string& out) const;

  struct WorkerState;  // the protocol's per-worker buffers and counters

 private:
  struct UdpListeners;
  struct Acceptor {
    Worker* worker;
    size_t worker_index;
    std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor;
  };

  config::HandleConfig config_;
  const HandleService& service_;
  metrics::MetricsHub& metrics_;
  ResponseRateLimiter rate_limiter_;  // shared by the UDP workers
  ConnectionCaps connections_;        // TCP, in all and per source
  AcceptCounters accept_counters_;
  std::unique_ptr<StoragePool> storage_;
  std::unique_ptr<WorkerPool> workers_;
  std::vector<std::unique_ptr<WorkerState>> states_;  // one per worker
  std::unique_ptr<UdpListeners> udp_;
  std::vector<Acceptor> acceptors_;
  uint16_t port_ = 0;
  bool started_ = false;
};

}  // namespace idnode::net
