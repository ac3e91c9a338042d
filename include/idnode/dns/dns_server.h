// dns/: the DNS listeners of the ORS front end. One io_context per worker thread, each with its own
// SO_REUSEPORT UDP socket and TCP acceptor per bind address, so workers share no lock on the
// request path (the same shape as net/'s Handle listener, ARCHITECTURE.md "The UDP hot path").
//
// A worker waits for readiness with Asio, drains up to `udp_batch` datagrams with one recvmmsg,
// answers what the answer cache holds on the spot (the Responder over the resolver's cache path,
// no heap allocation), and sends the answers with one sendmmsg. Cache misses go to a bounded
// storage pool, which posts the answer back to the worker; past `storage_queue` misses in flight
// further misses are dropped (the client retries) and counted.
// TCP (RFC 7766): one coroutine per connection, several queries per connection answered in order,
// an idle deadline between queries and an I/O deadline within one, a cap on connections in all.
//
// Owned by the application; Bind(), Run() and Stop() are called from the main thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "idnode/common/connection_caps.h"
#include "idnode/common/result.h"
#include "idnode/config/config.h"
#include "idnode/dns/responder.h"
#include "idnode/metrics/metrics.h"
#include "idnode/net/listeners.h"
#include "idnode/net/rate_limit.h"
#include "idnode/resolver/resolver.h"

namespace idnode::dns {

// The Responder's options from the configuration (`soa_serial` is the caller's to set).
ResponderOptions OptionsFrom(const config::DnsConfig& config);

// The registry as the Responder sees it, through the resolver: from the answer cache only
// (`from_storage` false: a miss is kNeedsStorage) or reading storage. Public values only; a
// prefix that is delegated or not homed here is kNotHere. One per thread (it holds its Scratch).
class ResolverOidSource : public OidSource {
 public:
  ResolverOidSource(const resolver::Resolver& resolver, bool from_storage)
      : resolver_(resolver), from_storage_(from_storage) {}
  LookupStatus Find(std::string_view handle, std::span<const uint8_t>* values) override;
  LookupStatus FindDescendant(std::string_view handle_prefix) override;

 private:
  const resolver::Resolver& resolver_;
  bool from_storage_;
  resolver::Scratch scratch_;
};

class DnsServer {
 public:
  DnsServer(const config::DnsConfig& config, const resolver::Resolver& resolver,
            ResponderOptions options, metrics::MetricsHub& metrics);
  ~DnsServer();
  DnsServer(const DnsServer&) = delete;
  DnsServer& operator=(const DnsServer&) = delete;

  // Binds every socket (the port of the first one when the configured port is 0).
  Result<Unit, std::string> Bind();
  void Run();
  // Stops receiving, lets answers in the storage pool go out, joins the threads.
  void Stop();
  uint16_t port() const { return port_; }
  void CollectMetrics(std::string& out) const;

  struct WorkerState;  // DNS's per-worker buffers and counters

 private:
  struct UdpListeners;
  struct Acceptor {
    net::Worker* worker;
    size_t worker_index;
    std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor;
  };
  config::DnsConfig config_;
  const resolver::Resolver& resolver_;
  Responder responder_;
  metrics::MetricsHub& metrics_;
  net::ResponseRateLimiter rate_limiter_;  // shared by the UDP workers
  ConnectionCaps connections_;             // TCP, all workers: in all and per source
  net::AcceptCounters accept_counters_;
  std::unique_ptr<net::StoragePool> storage_;
  std::unique_ptr<net::WorkerPool> workers_;
  std::vector<std::unique_ptr<WorkerState>> states_;  // one per worker
  std::unique_ptr<UdpListeners> udp_;
  std::vector<Acceptor> acceptors_;
  uint16_t port_ = 0;
  bool started_ = false;
};

}  // namespace idnode::dns
