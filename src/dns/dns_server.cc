#include "idnode/dns/dns_server.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <chrono>
#include <cstring>
#include <functional>
#include <thread>

namespace idnode::dns {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;
using Clock = std::chrono::steady_clock;

namespace {

// Larger datagrams arrive with MSG_TRUNC and are dropped: no DNS query needs more.
constexpr size_t kMaxQueryDatagram = 4096;
// The largest UDP answer (config caps max_udp_payload at 4096).
constexpr size_t kMaxAnswerDatagram = 4096;
// The largest DNS message: the TCP length field is 16 bits.
constexpr size_t kMaxTcpMessage = 65535;

uint64_t MicrosSince(Clock::time_point start) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count());
}

}  // namespace

ResponderOptions OptionsFrom(const config::DnsConfig& config) {
  ResponderOptions o;
  o.apex = config.apex;
  o.oid_prefix = config.oid_prefix;
  o.naptr_service = config.naptr_service;
  o.nameserver = config.nameserver;
  o.max_udp_payload = static_cast<uint16_t>(config.max_udp_payload);
  o.default_ttl = config.default_ttl;
  o.negative_ttl = config.negative_ttl;
  return o;
}

LookupStatus ResolverOidSource::Find(std::string_view handle, std::span<const uint8_t>* values) {
  resolver::Query query;
  query.handle = handle;
  query.public_only = true;  // DNS has no authentication: only what anyone may read
  query.no_referral = true;  // a delegated prefix is answered elsewhere: REFUSED here
  resolver::Answer answer;
  if (from_storage_) {
    answer = resolver_.ResolveFromStorage(query, scratch_);
  } else {
    bool needs_storage = false;
    answer = resolver_.ResolveFromCache(query, scratch_, &needs_storage);
    if (needs_storage) return LookupStatus::kNeedsStorage;
  }
  switch (answer.code) {
    case resolver::ResponseCode::kSuccess:
      *values = answer.values;
      return LookupStatus::kFound;
    case resolver::ResponseCode::kHandleNotFound:
      return LookupStatus::kNotFound;
    case resolver::ResponseCode::kServerNotResponsible:
    case resolver::ResponseCode::kServiceReferral:
      return LookupStatus::kNotHere;
    default:
      return LookupStatus::kError;
  }
}

// Storage reads run here: RocksDB can stall, so they never run on a network worker. Bounded: past
// `capacity` misses in flight, new misses are dropped.
struct DnsStoragePool {
  DnsStoragePool(uint32_t threads, uint32_t queue_capacity)
      : pool(threads), capacity(queue_capacity) {}
  asio::thread_pool pool;
  uint32_t capacity;
  std::atomic<uint32_t> in_flight{0};
  std::atomic<uint64_t> refused{0};

  bool TryAcquire() {
    uint32_t n = in_flight.load();
    while (n < capacity) {
      if (in_flight.compare_exchange_weak(n, n + 1)) return true;
    }
    refused.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  void Release() { in_flight.fetch_sub(1); }
};

namespace {

// What a storage thread reuses across queries.
struct StorageThreadState {
  explicit StorageThreadState(const resolver::Resolver& resolver) : source(resolver, true) {}
  ResolverOidSource source;
  ResponderScratch scratch;
  std::vector<uint8_t> out = std::vector<uint8_t>(kMaxTcpMessage);
};

StorageThreadState& ThisStorageThread(const resolver::Resolver& resolver) {
  thread_local StorageThreadState state(resolver);
  return state;
}

}  // namespace

struct DnsServer::Worker {
  Worker(DnsServer& owner, size_t worker_index)
      : server(owner),
        index(worker_index),
        counters(owner.metrics_.NewCounters()),
        source(owner.resolver_, false),
        out(kMaxTcpMessage) {}

  DnsServer& server;
  size_t index;
  asio::io_context io{1};
  std::thread thread;
  metrics::RequestCounters& counters;
  ResolverOidSource source;
  // Shared by the worker's UDP listeners and TCP sessions: Respond() runs to completion on this
  // thread and its answer is copied out before any co_await.
  ResponderScratch scratch;
  std::vector<uint8_t> out;
  std::atomic<uint64_t> truncated{0};  // written by this worker only
  std::vector<std::unique_ptr<class DnsUdpListener>> udp;
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors;
};

// One UDP socket of one worker: recvmmsg/sendmmsg batches.
class DnsUdpListener {
 public:
  DnsUdpListener(DnsServer::Worker& worker, udp::socket socket, uint32_t batch,
                 const Responder& responder, DnsStoragePool& storage,
                 const resolver::Resolver& resolver)
      : worker_(worker),
        socket_(std::move(socket)),
        batch_(batch),
        responder_(responder),
        storage_(storage),
        resolver_(resolver) {
    rx_buffers_.resize(size_t{batch_} * kMaxQueryDatagram);
    rx_addresses_.resize(batch_);
    rx_iov_.resize(batch_);
    rx_headers_.resize(batch_);
    tx_buffers_.resize(size_t{batch_} * kMaxAnswerDatagram);
    tx_addresses_.resize(batch_);
    tx_iov_.resize(batch_);
    tx_headers_.resize(batch_);
    socket_.non_blocking(true);
  }

  void Start() { Arm(); }
  void Close() {
    boost::system::error_code ec;
    socket_.close(ec);
  }

 private:
  void Arm() {
    socket_.async_wait(udp::socket::wait_read, [this](const boost::system::error_code& ec) {
      if (ec) return;  // closed
      Drain();
      Arm();
    });
  }

  void Drain() {
    const int fd = socket_.native_handle();
    // At most 16 batches per wake-up, so one busy socket cannot starve the worker's other work.
    for (int round = 0; round < 16; ++round) {
      for (uint32_t i = 0; i < batch_; ++i) {
        rx_iov_[i] = {rx_buffers_.data() + size_t{i} * kMaxQueryDatagram, kMaxQueryDatagram};
        rx_headers_[i] = {};
        rx_headers_[i].msg_hdr.msg_name = &rx_addresses_[i];
        rx_headers_[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage);
        rx_headers_[i].msg_hdr.msg_iov = &rx_iov_[i];
        rx_headers_[i].msg_hdr.msg_iovlen = 1;
      }
      int n = ::recvmmsg(fd, rx_headers_.data(), batch_, MSG_DONTWAIT, nullptr);
      if (n <= 0) break;
      for (int i = 0; i < n; ++i) {
        if ((rx_headers_[i].msg_hdr.msg_flags & MSG_TRUNC) != 0) {
          worker_.counters.Dropped(metrics::Protocol::kDnsUdp);
          continue;
        }
        Process(std::span<const uint8_t>(rx_buffers_.data() + size_t(i) * kMaxQueryDatagram,
                                         rx_headers_[i].msg_len),
                rx_addresses_[i], rx_headers_[i].msg_hdr.msg_namelen);
      }
      Flush();
      if (static_cast<uint32_t>(n) < batch_) break;
    }
  }

  void Process(std::span<const uint8_t> query, const sockaddr_storage& from, socklen_t from_len) {
    const auto start = Clock::now();
    Response r =
        responder_.Respond(query, Transport::kUdp, worker_.source, worker_.out, worker_.scratch);
    switch (r.disposition) {
      case Response::Disposition::kDrop:
        worker_.counters.Dropped(metrics::Protocol::kDnsUdp);
        return;
      case Response::Disposition::kNeedsStorage:
        ToStorage(query, from, from_len, start);
        return;
      case Response::Disposition::kAnswered:
        break;
    }
    Queue(std::span<const uint8_t>(worker_.out.data(), r.size), from, from_len);
    Counted(r, start);
  }

  void Counted(const Response& r, Clock::time_point start) {
    if (r.truncated)
      worker_.truncated.store(worker_.truncated.load(std::memory_order_relaxed) + 1,
                              std::memory_order_relaxed);
    worker_.counters.Count(metrics::Protocol::kDnsUdp, r.opcode, r.rcode, MicrosSince(start));
  }

  void ToStorage(std::span<const uint8_t> query, const sockaddr_storage& from, socklen_t from_len,
                 Clock::time_point start) {
    if (!storage_.TryAcquire()) {
      worker_.counters.Dropped(metrics::Protocol::kDnsUdp);
      return;
    }
    std::vector<uint8_t> request(query.begin(), query.end());
    asio::post(
        storage_.pool, [this, request = std::move(request), from, from_len, start]() mutable {
          StorageThreadState& state = ThisStorageThread(resolver_);
          Response r =
              responder_.Respond(request, Transport::kUdp, state.source, state.out, state.scratch);
          storage_.Release();
          if (r.disposition != Response::Disposition::kAnswered) return;
          std::vector<uint8_t> answer(state.out.begin(),
                                      state.out.begin() + static_cast<ptrdiff_t>(r.size));
          asio::post(worker_.io, [this, answer = std::move(answer), from, from_len, start, r] {
            Queue(answer, from, from_len);
            Flush();
            Counted(r, start);
          });
        });
  }

  void Queue(std::span<const uint8_t> answer, const sockaddr_storage& to, socklen_t to_len) {
    if (answer.size() > kMaxAnswerDatagram) return;  // never: the responder honours the limit
    if (tx_count_ == batch_) Flush();
    uint8_t* slot = tx_buffers_.data() + size_t{tx_count_} * kMaxAnswerDatagram;
    std::memcpy(slot, answer.data(), answer.size());
    tx_addresses_[tx_count_] = to;
    tx_iov_[tx_count_] = {slot, answer.size()};
    tx_headers_[tx_count_] = {};
    tx_headers_[tx_count_].msg_hdr.msg_name = &tx_addresses_[tx_count_];
    tx_headers_[tx_count_].msg_hdr.msg_namelen = to_len;
    tx_headers_[tx_count_].msg_hdr.msg_iov = &tx_iov_[tx_count_];
    tx_headers_[tx_count_].msg_hdr.msg_iovlen = 1;
    ++tx_count_;
  }

  void Flush() {
    uint32_t sent = 0;
    while (sent < tx_count_) {
      int n = ::sendmmsg(socket_.native_handle(), tx_headers_.data() + sent, tx_count_ - sent,
                         MSG_DONTWAIT);
      if (n <= 0) {
        // The socket buffer is full: drop the rest rather than block the worker (clients retry).
        for (uint32_t i = sent; i < tx_count_; ++i)
          worker_.counters.Dropped(metrics::Protocol::kDnsUdp);
        break;
      }
      sent += static_cast<uint32_t>(n);
    }
    tx_count_ = 0;
  }

  DnsServer::Worker& worker_;
  udp::socket socket_;
  uint32_t batch_;
  const Responder& responder_;
  DnsStoragePool& storage_;
  const resolver::Resolver& resolver_;
  std::vector<uint8_t> rx_buffers_;
  std::vector<sockaddr_storage> rx_addresses_;
  std::vector<iovec> rx_iov_;
  std::vector<mmsghdr> rx_headers_;
  uint32_t tx_count_ = 0;
  std::vector<uint8_t> tx_buffers_;
  std::vector<sockaddr_storage> tx_addresses_;
  std::vector<iovec> tx_iov_;
  std::vector<mmsghdr> tx_headers_;
};

namespace {

// The deadline of one TCP connection, shared by its session and its watchdog (both on the
// worker's thread): re-armed by every read and write; when it passes, the socket is closed.
struct Deadline {
  explicit Deadline(const asio::any_io_executor& executor) : timer(executor) {}
  Clock::time_point at;
  asio::steady_timer timer;
  bool done = false;
};

asio::awaitable<void> Watchdog(tcp::socket& socket, std::shared_ptr<Deadline> deadline) {
  while (!deadline->done) {
    deadline->timer.expires_at(deadline->at);
    co_await deadline->timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (deadline->done) co_return;  // the session has ended; its socket is gone
    if (deadline->at <= Clock::now()) {
      boost::system::error_code ignored;
      socket.shutdown(tcp::socket::shutdown_both, ignored);
      socket.close(ignored);
      co_return;
    }
  }
}

// One DNS-over-TCP connection (RFC 7766): 2-byte length, message; several queries per connection,
// answered in order. An idle deadline between queries, an I/O deadline within one.
asio::awaitable<void> TcpSession(DnsServer::Worker& worker, const config::DnsConfig& config,
                                 const Responder& responder, DnsStoragePool& storage,
                                 const resolver::Resolver& resolver, tcp::socket socket,
                                 std::function<void()> on_close) {
  auto executor = co_await asio::this_coro::executor;
  auto watch = std::make_shared<Deadline>(executor);
  auto set_deadline = [&watch](Clock::time_point at) {
    bool earlier = at < watch->at;
    watch->at = at;
    if (earlier) watch->timer.cancel();
  };
  watch->at = Clock::now() + config.tcp_idle_timeout;
  asio::co_spawn(executor, Watchdog(socket, watch), asio::detached);
  std::vector<uint8_t> query;
  std::vector<uint8_t> answer;
  std::array<uint8_t, 2> length{};
  for (;;) {
    set_deadline(Clock::now() + config.tcp_idle_timeout);
    auto [ec, n] =
        co_await asio::async_read(socket, asio::buffer(length), asio::transfer_at_least(1),
                                  asio::as_tuple(asio::use_awaitable));
    if (ec) break;
    set_deadline(Clock::now() + config.tcp_io_timeout);
    if (n < length.size()) {
      auto [rest_ec, rest_n] =
          co_await asio::async_read(socket, asio::buffer(length.data() + n, length.size() - n),
                                    asio::as_tuple(asio::use_awaitable));
      if (rest_ec) break;
    }
    // At most 65535 bytes: the length field bounds what is read.
    const size_t size = size_t{length[0]} << 8 | length[1];
    query.resize(size);
    auto [read_ec, read_n] =
        co_await asio::async_read(socket, asio::buffer(query), asio::as_tuple(asio::use_awaitable));
    if (read_ec) break;
    const auto start = Clock::now();
    Response r =
        responder.Respond(query, Transport::kTcp, worker.source, worker.out, worker.scratch);
    if (r.disposition == Response::Disposition::kNeedsStorage) {
      if (!storage.TryAcquire()) {
        worker.counters.Dropped(metrics::Protocol::kDnsTcp);
        break;  // the client retries (elsewhere or later)
      }
      co_await asio::post(storage.pool, asio::use_awaitable);
      StorageThreadState& state = ThisStorageThread(resolver);
      r = responder.Respond(query, Transport::kTcp, state.source, state.out, state.scratch);
      answer.resize(2 + r.size);
      std::memcpy(answer.data() + 2, state.out.data(), r.size);
      storage.Release();
      co_await asio::post(worker.io, asio::use_awaitable);
    } else {
      answer.resize(2 + r.size);
      std::memcpy(answer.data() + 2, worker.out.data(), r.size);
    }
    if (r.disposition != Response::Disposition::kAnswered) {
      worker.counters.Dropped(metrics::Protocol::kDnsTcp);
      if (query.size() < 12) break;  // no header: the stream makes no sense
      continue;                      // a response sent to us: ignore it
    }
    answer[0] = static_cast<uint8_t>(r.size >> 8);
    answer[1] = static_cast<uint8_t>(r.size);
    set_deadline(Clock::now() + config.tcp_io_timeout);
    auto [write_ec, written] = co_await asio::async_write(socket, asio::buffer(answer),
                                                          asio::as_tuple(asio::use_awaitable));
    if (write_ec) break;
    worker.counters.Count(metrics::Protocol::kDnsTcp, r.opcode, r.rcode, MicrosSince(start));
  }
  boost::system::error_code ignored;
  socket.close(ignored);
  watch->done = true;
  watch->timer.cancel();  // the watchdog wakes, sees `done`, and ends without touching the socket
  on_close();
}

asio::awaitable<void> Accept(DnsServer::Worker& worker, tcp::acceptor& acceptor,
                             const config::DnsConfig& config, const Responder& responder,
                             DnsStoragePool& storage, const resolver::Resolver& resolver,
                             std::atomic<uint32_t>& connections, std::atomic<uint64_t>& refused) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
      continue;  // e.g. EMFILE: keep accepting once descriptors free up
    }
    uint32_t open = connections.load();
    bool admitted = false;
    while (open < config.tcp_max_connections) {
      if (connections.compare_exchange_weak(open, open + 1)) {
        admitted = true;
        break;
      }
    }
    if (!admitted) {
      boost::system::error_code ignored;
      socket.close(ignored);
      refused.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    boost::system::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    asio::co_spawn(worker.io,
                   TcpSession(worker, config, responder, storage, resolver, std::move(socket),
                              [&connections] { connections.fetch_sub(1); }),
                   asio::detached);
  }
}

}  // namespace

DnsServer::DnsServer(const config::DnsConfig& config, const resolver::Resolver& resolver,
                     ResponderOptions options, metrics::MetricsHub& metrics)
    : config_(config), resolver_(resolver), responder_(std::move(options)), metrics_(metrics) {}

DnsServer::~DnsServer() {
  Stop();
}

Result<Unit, std::string> DnsServer::Bind() {
  storage_ = std::make_unique<DnsStoragePool>(config_.storage_threads, config_.storage_queue);
  uint32_t workers =
      config_.workers != 0 ? config_.workers : std::max(1u, std::thread::hardware_concurrency());
  for (uint32_t i = 0; i < workers; ++i) workers_.push_back(std::make_unique<Worker>(*this, i));
  port_ = config_.port;
  try {
    for (const std::string& bind : config_.bind) {
      boost::system::error_code ec;
      auto address = asio::ip::make_address(bind, ec);
      if (ec) return Failure{"dns.bind: \"" + bind + "\" is not an IP address"};
      for (auto& worker : workers_) {
        udp::socket socket(worker->io);
        udp::endpoint endpoint(address, port_);
        socket.open(endpoint.protocol());
        int one = 1;
        ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
        socket.bind(endpoint, ec);
        if (ec)
          return Failure{"cannot bind DNS UDP " + bind + ":" + std::to_string(port_) + ": " +
                         ec.message()};
        if (port_ == 0) port_ = socket.local_endpoint().port();
        worker->udp.push_back(std::make_unique<DnsUdpListener>(
            *worker, std::move(socket), config_.udp_batch, responder_, *storage_, resolver_));
        if (config_.tcp) {
          auto acceptor = std::make_unique<tcp::acceptor>(worker->io);
          tcp::endpoint tcp_endpoint(address, port_);
          acceptor->open(tcp_endpoint.protocol());
          acceptor->set_option(tcp::acceptor::reuse_address(true));
          ::setsockopt(acceptor->native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
          acceptor->bind(tcp_endpoint, ec);
          if (ec)
            return Failure{"cannot bind DNS TCP " + bind + ":" + std::to_string(port_) + ": " +
                           ec.message()};
          acceptor->listen(asio::socket_base::max_listen_connections);
          worker->acceptors.push_back(std::move(acceptor));
        }
      }
    }
  } catch (const boost::system::system_error& e) {
    return Failure{std::string("cannot open the DNS listeners: ") + e.what()};
  }
  return Unit{};
}

void DnsServer::Run() {
  for (auto& worker : workers_) {
    for (auto& listener : worker->udp) listener->Start();
    for (auto& acceptor : worker->acceptors) {
      asio::co_spawn(worker->io,
                     Accept(*worker, *acceptor, config_, responder_, *storage_, resolver_,
                            connections_, connections_refused_),
                     asio::detached);
    }
    Worker* w = worker.get();
    worker->thread = std::thread([w] {
      auto guard = asio::make_work_guard(w->io);
      w->io.run();
    });
  }
  started_ = true;
}

void DnsServer::Stop() {
  if (!started_) return;
  started_ = false;
  for (auto& worker : workers_) {
    Worker* w = worker.get();
    asio::post(w->io, [w] {
      for (auto& acceptor : w->acceptors) {
        boost::system::error_code ignored;
        acceptor->close(ignored);
      }
      for (auto& listener : w->udp) listener->Close();
    });
  }
  // Let answers in the storage pool go out, then stop the loops.
  storage_->pool.join();
  for (auto& worker : workers_) worker->io.stop();
  for (auto& worker : workers_) {
    if (worker->thread.joinable()) worker->thread.join();
  }
}

void DnsServer::CollectMetrics(std::string& out) const {
  uint64_t truncated = 0;
  for (const auto& w : workers_) truncated += w->truncated.load(std::memory_order_relaxed);
  metrics::AppendHelp(out, "idnode_dns_truncated_total", "counter",
                      "DNS answers sent without records and with TC (too large for UDP).");
  metrics::AppendSample(out, "idnode_dns_truncated_total", "", static_cast<double>(truncated));
  metrics::AppendSample(out, "idnode_open_connections", "protocol=\"dns_tcp\"",
                        static_cast<double>(connections_.load()));
  metrics::AppendSample(out, "idnode_connections_refused_total", "protocol=\"dns_tcp\"",
                        static_cast<double>(connections_refused_.load()));
  metrics::AppendHelp(out, "idnode_dns_storage_queue", "gauge",
                      "DNS cache misses waiting for or in the DNS storage pool.");
  metrics::AppendSample(out, "idnode_dns_storage_queue", "",
                        storage_ ? storage_->in_flight.load() : 0);
  metrics::AppendHelp(out, "idnode_dns_storage_refused_total", "counter",
                      "DNS cache misses dropped because the storage pool was full.");
  metrics::AppendSample(out, "idnode_dns_storage_refused_total", "",
                        storage_ ? static_cast<double>(storage_->refused.load()) : 0);
}

}  // namespace idnode::dns
