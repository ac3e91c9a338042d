#include "idnode/net/handle_server.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <boost/asio.hpp>
#include <chrono>
#include <cstring>

#include "idnode/net/listeners.h"
#include "idnode/protocol/transport.h"

namespace idnode::net {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;

namespace {

protocol::UdpSource SourceOf(const sockaddr_storage& addr) {
  protocol::UdpSource s;
  s.address = AddressOf(addr);
  if (addr.ss_family == AF_INET) {
    s.port = ntohs(reinterpret_cast<const sockaddr_in*>(&addr)->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    s.port = ntohs(reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_port);
  }
  return s;
}

// The source of a request for the admin path: its IP and whether it came over UDP.
auth::Origin OriginOf(const sockaddr_storage& addr, bool datagram) {
  return auth::Origin{datagram, AddressOf(addr)};
}

// Buffers a storage thread reuses across requests.
struct StorageThreadState {
  ServiceScratch scratch;
  std::vector<uint8_t> out = std::vector<uint8_t>(protocol::kMaxMessageLength);
};

StorageThreadState& ThisStorageThread() {
  thread_local StorageThreadState state;
  return state;
}

}  // namespace

struct HandleServer::Worker {
  Worker(HandleServer& owner, size_t worker_index)
      : server(owner),
        index(worker_index),
        counters(owner.metrics_.NewCounters()),
        rate_limiter(owner.rate_limiter_),
        out(protocol::kMaxMessageLength),
        reassembler(protocol::ReassemblyLimits{}) {}

  HandleServer& server;
  size_t index;
  asio::io_context io{1};
  std::thread thread;
  metrics::RequestCounters& counters;
  ResponseRateLimiter& rate_limiter;
  ServiceScratch scratch;
  std::vector<uint8_t> out;  // a response being built on this thread (never held across a co_await)
  protocol::UdpReassembler reassembler;
  std::vector<std::unique_ptr<class UdpListener>> udp;
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors;
};

// The Handle protocol on one UDP socket of one worker (a UdpBatchSocket): multi-packet requests
// reassembled, cache hits answered in the batch, misses sent to the storage pool.
class UdpListener {
 public:
  UdpListener(HandleServer::Worker& worker, udp::socket socket, uint32_t batch,
              const HandleService& service, StoragePool& storage)
      : worker_(worker),
        service_(service),
        storage_(storage),
        // A batch of answers may need several datagrams each (answers over 512 bytes).
        socket_(
            std::move(socket), batch, protocol::kMaxUdpDatagramSize, batch * 4,
            protocol::kMaxUdpDatagramSize,
            [this](std::span<const uint8_t> datagram, const sockaddr_storage& from,
                   socklen_t from_len) { Process(datagram, from, from_len); },
            [this] { worker_.counters.Dropped(metrics::Protocol::kHandleUdp); },
            [this](std::span<const std::span<const uint8_t>> received) { Prefetch(received); }) {
    prefetch_hashes_.reserve(batch);
  }

  void Start() { socket_.Start(); }
  void Close() { socket_.Close(); }

  // Sends a response computed elsewhere (a storage thread) to `to`, from this worker's thread.
  void SendLater(const sockaddr_storage& to, socklen_t to_len, std::vector<uint8_t> response,
                 size_t request_size) {
    Send(response, to, to_len, request_size);
    socket_.Flush();
  }

 private:
  // Every UDP answer goes out here, through the rate limit (when handle.rate_limit is set).
  void Send(std::span<const uint8_t> response, const sockaddr_storage& to, socklen_t to_len,
            size_t request_size) {
    uint32_t count = protocol::UdpDatagramCount(
        static_cast<uint32_t>(response.size() - protocol::kEnvelopeSize));
    if (worker_.rate_limiter.enabled()) {
      switch (worker_.rate_limiter.Check(to, count)) {
        case ResponseRateLimiter::Verdict::kSend:
          break;
        case ResponseRateLimiter::Verdict::kDrop:
          return;
        case ResponseRateLimiter::Verdict::kSlip: {
          Handled slip = service_.RateLimited(response, slip_out_, request_size);
          if (slip.disposition == Disposition::kAnswered) {
            socket_.Queue(std::span<const uint8_t>(slip_out_.data(), slip.response_size), to,
                          to_len);
          }
          return;
        }
      }
    }
    for (uint32_t i = 0; i < count; ++i) {
      auto buffer = socket_.NextSendBuffer();
      socket_.CommitSend(protocol::WriteUdpDatagram(response, i, buffer), to, to_len);
    }
  }

  // With a million cached answers nearly every lookup misses the CPU caches twice (the hash
  // bucket, then the entry): start all of a batch's loads first so that they overlap.
  void Prefetch(std::span<const std::span<const uint8_t>> batch) {
    const resolver::Resolver& resolver = service_.resolver();
    prefetch_hashes_.clear();
    for (auto datagram : batch) {
      std::string_view handle = protocol::PeekResolutionHandle(datagram);
      prefetch_hashes_.push_back(handle.empty() ? 0 : resolver.CacheHashFor(handle, prefetch_));
    }
    for (uint64_t h : prefetch_hashes_) {
      if (h != 0) resolver.PrefetchBucket(h);
    }
    for (uint64_t h : prefetch_hashes_) {
      if (h != 0) resolver.PrefetchEntry(h);
    }
  }

  void Process(std::span<const uint8_t> datagram, const sockaddr_storage& from,
               socklen_t from_len) {
    const auto start = Clock::now();
    std::span<const uint8_t> message = datagram;
    std::vector<uint8_t> reassembled;
    if (datagram.size() >= protocol::kEnvelopeSize &&
        (datagram[2] & protocol::kEnvelopeTruncated) != 0) {
      auto outcome = worker_.reassembler.Offer(SourceOf(from), datagram, start);
      if (std::holds_alternative<protocol::UdpReassembler::NeedMore>(outcome)) return;
      if (std::holds_alternative<protocol::ProtocolError>(outcome)) {
        worker_.counters.Dropped(metrics::Protocol::kHandleUdp);
        return;
      }
      reassembled = std::move(std::get<protocol::UdpReassembler::Complete>(outcome).message);
      message = reassembled;
    }
    Handled h =
        service_.Handle(message, worker_.out, worker_.scratch, /*limit_to_request_size=*/true);
    switch (h.disposition) {
      case Disposition::kDrop:
        worker_.counters.Dropped(metrics::Protocol::kHandleUdp);
        return;
      case Disposition::kNeedsStorage:
        ToStorage(message, from, from_len, start);
        return;
      case Disposition::kAnswered:
        break;
    }
    Send(std::span<const uint8_t>(worker_.out.data(), h.response_size), from, from_len,
         message.size());
    worker_.counters.Count(metrics::Protocol::kHandleUdp, h.opcode, h.response_code,
                           MicrosSince(start));
  }

  void ToStorage(std::span<const uint8_t> message, const sockaddr_storage& from, socklen_t from_len,
                 Clock::time_point start) {
    if (!storage_.TryAcquire()) {
      Handled busy = service_.Busy(message, worker_.out);
      if (busy.disposition == Disposition::kAnswered && busy.response_size <= message.size()) {
        Send(std::span<const uint8_t>(worker_.out.data(), busy.response_size), from, from_len,
             message.size());
      }
      worker_.counters.Dropped(metrics::Protocol::kHandleUdp);
      return;
    }
    std::vector<uint8_t> request(message.begin(), message.end());
    const size_t request_size = message.size();
    asio::post(storage_.pool, [this, request = std::move(request), request_size, from, from_len,
                               start]() mutable {
      StorageThreadState& state = ThisStorageThread();
      Handled h =
          service_.HandleFromStorage(request, state.out, state.scratch, OriginOf(from, true));
      storage_.Release();
      if (h.disposition != Disposition::kAnswered) return;
      std::vector<uint8_t> response(state.out.begin(),
                                    state.out.begin() + static_cast<ptrdiff_t>(h.response_size));
      asio::post(worker_.io, [this, response = std::move(response), request_size, from, from_len,
                              start, h]() mutable {
        SendLater(from, from_len, std::move(response), request_size);
        worker_.counters.Count(metrics::Protocol::kHandleUdp, h.opcode, h.response_code,
                               MicrosSince(start));
      });
    });
  }

  HandleServer::Worker& worker_;
  const HandleService& service_;
  StoragePool& storage_;
  std::vector<uint64_t> prefetch_hashes_;
  std::array<uint8_t, protocol::kMaxUdpDatagramSize> slip_out_{};  // a rate-limited answer's error
  resolver::Scratch prefetch_;
  UdpBatchSocket socket_;
};

namespace {

asio::awaitable<void> TcpSession(HandleServer::Worker& worker, const config::HandleConfig& config,
                                 const HandleService& service, StoragePool& storage,
                                 tcp::socket socket, std::function<void()> on_close) {
  auto executor = co_await asio::this_coro::executor;
  auth::Origin origin;
  {
    boost::system::error_code ec;
    tcp::endpoint peer = socket.remote_endpoint(ec);
    sockaddr_storage addr{};
    if (!ec && peer.size() <= sizeof(addr)) std::memcpy(&addr, peer.data(), peer.size());
    origin = OriginOf(addr, /*datagram=*/false);
  }
  auto watch = std::make_shared<Deadline>(executor);
  auto set_deadline = [&watch](Clock::time_point at) { watch->Set(at); };
  watch->at = Clock::now() + config.tcp_idle_timeout;
  asio::co_spawn(executor, Watchdog(socket, watch), asio::detached);
  std::vector<uint8_t> request;
  std::vector<uint8_t> response;
  std::array<uint8_t, protocol::kEnvelopeSize> envelope{};
  for (;;) {
    // Between requests the connection may idle up to tcp_idle_timeout; once a message has begun,
    // each read and write must finish within tcp_io_timeout (slow clients are cut).
    set_deadline(Clock::now() + config.tcp_idle_timeout);
    auto [ec, n] =
        co_await asio::async_read(socket, asio::buffer(envelope), asio::transfer_at_least(1),
                                  asio::as_tuple(asio::use_awaitable));
    if (ec) break;
    // The first byte ends the idle wait: the rest of the message must come within the I/O
    // deadline (a client sending a byte a second is cut after tcp_io_timeout, as in Knot).
    if (n < envelope.size()) {
      set_deadline(Clock::now() + config.tcp_io_timeout);
      auto [rest_ec, rest_n] =
          co_await asio::async_read(socket, asio::buffer(envelope.data() + n, envelope.size() - n),
                                    asio::as_tuple(asio::use_awaitable));
      if (rest_ec) break;
    }
    const auto start = Clock::now();
    auto remainder = protocol::TcpFrameRemainder(envelope, config.max_message_bytes);
    if (!remainder.ok()) {
      // Answer what can be answered (the envelope decoded), then close: the stream has lost its
      // framing.
      Handled h = service.Handle(envelope, worker.out, worker.scratch, false);
      if (h.disposition == Disposition::kAnswered) {
        set_deadline(Clock::now() + config.tcp_io_timeout);
        co_await asio::async_write(socket, asio::buffer(worker.out.data(), h.response_size),
                                   asio::as_tuple(asio::use_awaitable));
      }
      worker.counters.Dropped(metrics::Protocol::kHandleTcp);
      break;
    }
    request.resize(protocol::kEnvelopeSize + *remainder);
    std::memcpy(request.data(), envelope.data(), envelope.size());
    set_deadline(Clock::now() + config.tcp_io_timeout);
    auto [read_ec, read_n] = co_await asio::async_read(
        socket, asio::buffer(request.data() + protocol::kEnvelopeSize, *remainder),
        asio::as_tuple(asio::use_awaitable));
    if (read_ec) break;

    Handled h = service.Handle(request, worker.out, worker.scratch, false);
    if (h.disposition == Disposition::kNeedsStorage) {
      if (!storage.TryAcquire()) {
        h = service.Busy(request, worker.out);
        response.assign(worker.out.begin(),
                        worker.out.begin() + static_cast<ptrdiff_t>(h.response_size));
      } else {
        co_await asio::post(storage.pool, asio::use_awaitable);
        StorageThreadState& state = ThisStorageThread();
        h = service.HandleFromStorage(request, state.out, state.scratch, origin);
        response.assign(state.out.begin(),
                        state.out.begin() + static_cast<ptrdiff_t>(h.response_size));
        storage.Release();
        co_await asio::post(worker.io, asio::use_awaitable);
      }
    } else {
      response.assign(worker.out.begin(),
                      worker.out.begin() + static_cast<ptrdiff_t>(h.response_size));
    }
    if (h.disposition != Disposition::kAnswered) {
      worker.counters.Dropped(metrics::Protocol::kHandleTcp);
      continue;  // a response sent to us: ignore it, keep the connection
    }
    set_deadline(Clock::now() + config.tcp_io_timeout);
    auto [write_ec, written] = co_await asio::async_write(socket, asio::buffer(response),
                                                          asio::as_tuple(asio::use_awaitable));
    if (write_ec) break;
    worker.counters.Count(metrics::Protocol::kHandleTcp, h.opcode, h.response_code,
                          MicrosSince(start));
    if (request.capacity() > 65536) request.shrink_to_fit();  // a large request is not kept around
  }
  boost::system::error_code ignored;
  socket.close(ignored);
  watch->done = true;
  watch->timer.cancel();  // the watchdog wakes, sees `done`, and ends without touching the socket
  on_close();
}

asio::awaitable<void> Accept(HandleServer::Worker& worker, tcp::acceptor& acceptor,
                             const config::HandleConfig& config, const HandleService& service,
                             StoragePool& storage, std::function<bool(const std::string&)> admit,
                             std::function<void(const std::string&)> release) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
      continue;  // e.g. EMFILE: keep accepting once descriptors free up
    }
    boost::system::error_code addr_ec;
    std::string source = socket.remote_endpoint(addr_ec).address().to_string();
    if (addr_ec || !admit(source)) {
      boost::system::error_code ignored;
      socket.close(ignored);
      worker.counters.Dropped(metrics::Protocol::kHandleTcp);
      continue;
    }
    socket.set_option(tcp::no_delay(true), addr_ec);
    asio::co_spawn(worker.io,
                   TcpSession(worker, config, service, storage, std::move(socket),
                              [release, source] { release(source); }),
                   asio::detached);
  }
}

}  // namespace

HandleServer::HandleServer(const config::HandleConfig& config, const HandleService& service,
                           metrics::MetricsHub& metrics)
    : config_(config),
      service_(service),
      metrics_(metrics),
      rate_limiter_(config.rate_limit),
      connections_(config.tcp_max_connections, config.tcp_max_connections_per_source) {}

HandleServer::~HandleServer() {
  Stop();
}

Result<Unit, std::string> HandleServer::Bind() {
  storage_ = std::make_unique<StoragePool>(config_.storage_threads, config_.storage_queue);
  for (uint32_t i = 0; i < config_.workers; ++i)
    workers_.push_back(std::make_unique<Worker>(*this, i));
  port_ = config_.port;
  try {
    for (const std::string& bind : config_.bind) {
      boost::system::error_code ec;
      auto address = asio::ip::make_address(bind, ec);
      if (ec) return Failure{"handle.bind: \"" + bind + "\" is not an IP address"};
      for (auto& worker : workers_) {
        if (config_.tcp) {
          auto acceptor = OpenTcpAcceptor(worker->io, address, port_, "Handle TCP");
          if (!acceptor.ok()) return Failure{acceptor.error()};
          if (port_ == 0) port_ = (*acceptor)->local_endpoint().port();
          worker->acceptors.push_back(std::move(*acceptor));
        }
        if (config_.udp) {
          auto socket = OpenUdpSocket(worker->io, address, port_, "Handle UDP",
                                      config_.udp_receive_buffer_bytes);
          if (!socket.ok()) return Failure{socket.error()};
          if (port_ == 0) port_ = socket->local_endpoint().port();
          worker->udp.push_back(std::make_unique<UdpListener>(
              *worker, std::move(*socket), config_.udp_batch, service_, *storage_));
        }
      }
    }
  } catch (const boost::system::system_error& e) {
    return Failure{std::string("cannot open the Handle listeners: ") + e.what()};
  }
  return Unit{};
}

void HandleServer::Run() {
  for (auto& worker : workers_) {
    for (auto& listener : worker->udp) listener->Start();
    for (auto& acceptor : worker->acceptors) {
      asio::co_spawn(worker->io,
                     Accept(
                         *worker, *acceptor, config_, service_, *storage_,
                         [this](const std::string& s) { return connections_.Admit(s); },
                         [this](const std::string& s) { connections_.Release(s); }),
                     asio::detached);
    }
    RunWorker(*worker);
  }
  started_ = true;
}

void HandleServer::Stop() {
  if (!started_) return;
  started_ = false;
  StopWorkers(workers_, *storage_);
}

void HandleServer::CollectMetrics(std::string& out) const {
  metrics::AppendHelp(out, "idnode_open_connections", "gauge", "Open Handle TCP connections.");
  metrics::AppendSample(out, "idnode_open_connections", "protocol=\"handle_tcp\"",
                        static_cast<double>(connections_.open()));
  metrics::AppendHelp(out, "idnode_connections_refused_total", "counter",
                      "Connections closed at accept by the caps.");
  metrics::AppendSample(out, "idnode_connections_refused_total", "protocol=\"handle_tcp\"",
                        static_cast<double>(connections_.refused()));
  rate_limiter_.AppendMetrics(out, "idnode_udp_rate_limited_total",
                              "Handle UDP answers not sent by the rate limit (handle.rate_limit).");
  metrics::AppendHelp(out, "idnode_storage_queue", "gauge",
                      "Requests waiting for or in the storage pool.");
  metrics::AppendSample(out, "idnode_storage_queue", "", storage_ ? storage_->in_flight.load() : 0);
}

}  // namespace idnode::net
