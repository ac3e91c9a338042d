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

extern "C" {
#include <libknot/libknot.h>
}

namespace idnode::dns {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;
using net::Clock;
using net::Deadline;
using net::MicrosSince;
using net::RunWorker;
using net::StopWorkers;
using net::StoragePool;

namespace {

// Larger datagrams arrive with MSG_TRUNC and are dropped: no DNS query needs more.
constexpr size_t kMaxQueryDatagram = 4096;
// The largest UDP answer (config caps max_udp_payload at 4096).
constexpr size_t kMaxAnswerDatagram = 4096;
// The largest DNS message: the TCP length field is 16 bits.
constexpr size_t kMaxTcpMessage = 65535;

// A rate-limited answer's slip (as Knot's RRL): its header and question alone, with TC set, so
// that a real client asks again over TCP. Never larger than the query (which held the same
// question). Written into `out`; its size, or 0 when `answer` has no readable question.
size_t TruncatedAnswer(std::span<const uint8_t> answer, std::span<uint8_t> out) {
  if (answer.size() < KNOT_WIRE_HEADER_SIZE || out.size() < answer.size()) return 0;
  size_t size = KNOT_WIRE_HEADER_SIZE;
  if (knot_wire_get_qdcount(answer.data()) == 1) {
    int name = knot_dname_wire_check(answer.data() + size, answer.data() + answer.size(), nullptr);
    if (name <= 0 || size + static_cast<size_t>(name) + 4 > answer.size()) return 0;
    size += static_cast<size_t>(name) + 4;  // QNAME, QTYPE, QCLASS
  }
  std::memcpy(out.data(), answer.data(), size);
  knot_wire_set_tc(out.data());
  knot_wire_set_qdcount(out.data(), size > KNOT_WIRE_HEADER_SIZE ? 1 : 0);
  knot_wire_set_ancount(out.data(), 0);
  knot_wire_set_nscount(out.data(), 0);
  knot_wire_set_arcount(out.data(), 0);
  return size;
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
  o.empty_non_terminals = config.empty_non_terminals;
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
    case resolver::ResponseCode::kPrefixReferral:
      return LookupStatus::kNotHere;
    default:
      return LookupStatus::kError;
  }
}

LookupStatus ResolverOidSource::FindDescendant(std::string_view handle_prefix) {
  if (!from_storage_) return LookupStatus::kNeedsStorage;  // a seek in RocksDB: not on a worker
  switch (resolver_.HasHandlesUnder(handle_prefix)) {
    case resolver::ResponseCode::kSuccess:
      return LookupStatus::kFound;
    case resolver::ResponseCode::kHandleNotFound:
      return LookupStatus::kNotFound;
    default:
      return LookupStatus::kError;
  }
}

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
        rate_limiter(owner.rate_limiter_),
        source(owner.resolver_, false),
        out(kMaxTcpMessage) {}

  DnsServer& server;
  size_t index;
  asio::io_context io{1};
  std::thread thread;
  metrics::RequestCounters& counters;
  net::ResponseRateLimiter& rate_limiter;
  ResolverOidSource source;
  // Shared by the worker's UDP listeners and TCP sessions: Respond() runs to completion on this
  // thread and its answer is copied out before any co_await.
  ResponderScratch scratch;
  std::vector<uint8_t> out;
  std::atomic<uint64_t> truncated{0};  // written by this worker only
  std::vector<std::unique_ptr<class DnsUdpListener>> udp;
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors;
};

// DNS on one UDP socket of one worker (a net::UdpBatchSocket): cache hits answered in the batch,
// misses sent to the storage pool, whose answers come back to this thread.
class DnsUdpListener {
 public:
  DnsUdpListener(DnsServer::Worker& worker, udp::socket socket, uint32_t batch,
                 const Responder& responder, StoragePool& storage,
                 const resolver::Resolver& resolver)
      : worker_(worker),
        responder_(responder),
        storage_(storage),
        resolver_(resolver),
        socket_(
            std::move(socket), batch, kMaxQueryDatagram, batch, kMaxAnswerDatagram,
            [this](std::span<const uint8_t> query, const sockaddr_storage& from,
                   socklen_t from_len) { Process(query, from, from_len); },
            [this] { worker_.counters.Dropped(metrics::Protocol::kDnsUdp); }) {}

  void Start() { socket_.Start(); }
  void Close() { socket_.Close(); }

 private:
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
    Send(std::span<const uint8_t>(worker_.out.data(), r.size), from, from_len);
    Counted(r, start);
  }

  // Every UDP answer goes out here, through the rate limit (when dns.rate_limit is set).
  void Send(std::span<const uint8_t> answer, const sockaddr_storage& to, socklen_t to_len) {
    if (worker_.rate_limiter.enabled()) {
      switch (worker_.rate_limiter.Check(to, 1)) {
        case net::ResponseRateLimiter::Verdict::kSend:
          break;
        case net::ResponseRateLimiter::Verdict::kDrop:
          return;
        case net::ResponseRateLimiter::Verdict::kSlip: {
          size_t size = TruncatedAnswer(answer, slip_out_);
          if (size != 0)
            socket_.Queue(std::span<const uint8_t>(slip_out_.data(), size), to, to_len);
          return;
        }
      }
    }
    socket_.Queue(answer, to, to_len);
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
            Send(answer, from, from_len);
            socket_.Flush();
            Counted(r, start);
          });
        });
  }

  DnsServer::Worker& worker_;
  const Responder& responder_;
  StoragePool& storage_;
  const resolver::Resolver& resolver_;
  std::array<uint8_t, kMaxAnswerDatagram> slip_out_{};  // a rate-limited answer's TC reply
  net::UdpBatchSocket socket_;
};

namespace {

// One DNS-over-TCP connection (RFC 7766): 2-byte length, message; several queries per connection,
// answered in order. An idle deadline between queries, an I/O deadline within one.
asio::awaitable<void> TcpSession(DnsServer::Worker& worker, const config::DnsConfig& config,
                                 const Responder& responder, StoragePool& storage,
                                 const resolver::Resolver& resolver, tcp::socket socket,
                                 std::function<void()> on_close) {
  auto executor = co_await asio::this_coro::executor;
  auto watch = std::make_shared<Deadline>(executor);
  auto set_deadline = [&watch](Clock::time_point at) { watch->Set(at); };
  watch->at = Clock::now() + config.tcp_idle_timeout;
  asio::co_spawn(executor, net::Watchdog(socket, watch), asio::detached);
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
                             StoragePool& storage, const resolver::Resolver& resolver,
                             ConnectionCaps& connections) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
      continue;  // e.g. EMFILE: keep accepting once descriptors free up
    }
    boost::system::error_code addr_ec;
    std::string source = socket.remote_endpoint(addr_ec).address().to_string();
    if (addr_ec || !connections.Admit(source)) {
      boost::system::error_code ignored;
      socket.close(ignored);
      continue;
    }
    socket.set_option(tcp::no_delay(true), addr_ec);
    asio::co_spawn(worker.io,
                   TcpSession(worker, config, responder, storage, resolver, std::move(socket),
                              [&connections, source] { connections.Release(source); }),
                   asio::detached);
  }
}

}  // namespace

DnsServer::DnsServer(const config::DnsConfig& config, const resolver::Resolver& resolver,
                     ResponderOptions options, metrics::MetricsHub& metrics)
    : config_(config),
      resolver_(resolver),
      responder_(std::move(options)),
      metrics_(metrics),
      rate_limiter_(config.rate_limit),
      connections_(config.tcp_max_connections, config.tcp_max_connections_per_source) {}

DnsServer::~DnsServer() {
  Stop();
}

Result<Unit, std::string> DnsServer::Bind() {
  storage_ = std::make_unique<StoragePool>(config_.storage_threads, config_.storage_queue);
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
        auto socket = net::OpenUdpSocket(worker->io, address, port_, "DNS UDP",
                                         config_.udp_receive_buffer_bytes);
        if (!socket.ok()) return Failure{socket.error()};
        if (port_ == 0) port_ = socket->local_endpoint().port();
        worker->udp.push_back(std::make_unique<DnsUdpListener>(
            *worker, std::move(*socket), config_.udp_batch, responder_, *storage_, resolver_));
        if (config_.tcp) {
          auto acceptor = net::OpenTcpAcceptor(worker->io, address, port_, "DNS TCP");
          if (!acceptor.ok()) return Failure{acceptor.error()};
          worker->acceptors.push_back(std::move(*acceptor));
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
      asio::co_spawn(
          worker->io,
          Accept(*worker, *acceptor, config_, responder_, *storage_, resolver_, connections_),
          asio::detached);
    }
    RunWorker(*worker);
  }
  started_ = true;
}

void DnsServer::Stop() {
  if (!started_) return;
  started_ = false;
  StopWorkers(workers_, *storage_);
}

void DnsServer::CollectMetrics(std::string& out) const {
  rate_limiter_.AppendMetrics(out, "idnode_dns_rate_limited_total",
                              "DNS UDP answers not sent by the rate limit (dns.rate_limit).");
  uint64_t truncated = 0;
  for (const auto& w : workers_) truncated += w->truncated.load(std::memory_order_relaxed);
  metrics::AppendHelp(out, "idnode_dns_truncated_total", "counter",
                      "DNS answers sent without records and with TC (too large for UDP).");
  metrics::AppendSample(out, "idnode_dns_truncated_total", "", static_cast<double>(truncated));
  metrics::AppendSample(out, "idnode_open_connections", "protocol=\"dns_tcp\"",
                        static_cast<double>(connections_.open()));
  metrics::AppendSample(out, "idnode_connections_refused_total", "protocol=\"dns_tcp\"",
                        static_cast<double>(connections_.refused()));
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
