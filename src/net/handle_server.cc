#include "idnode/net/handle_server.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <boost/asio.hpp>
#include <chrono>
#include <cstring>

#include "idnode/net/tcp_session.h"
#include "idnode/net/udp_service.h"
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

// What the Handle protocol keeps per worker (on that worker's thread only).
struct HandleServer::WorkerState {
  explicit WorkerState(metrics::RequestCounters& c)
      : counters(c), out(protocol::kMaxMessageLength), reassembler(protocol::ReassemblyLimits{}) {}
  metrics::RequestCounters& counters;
  ServiceScratch scratch;
  std::vector<uint8_t> out;  // an answer being built (copied out before any co_await)
  protocol::UdpReassembler reassembler;
  std::vector<uint8_t> reassembled;
  resolver::Scratch prefetch;
  std::vector<uint64_t> prefetch_hashes;
  std::array<uint8_t, protocol::kMaxUdpDatagramSize> slip_out{};  // a rate-limited answer's error
};

namespace {

// The Handle protocol over UDP (UdpService's handler): multi-packet requests reassembled, cache
// hits answered in the batch, answers over 512 bytes split into datagrams, every answer through
// the response rate limit.
class HandleDatagrams {
 public:
  static constexpr size_t kMaxReceive = protocol::kMaxUdpDatagramSize;
  static constexpr size_t kMaxSend = protocol::kMaxUdpDatagramSize;
  // A batch of answers may need several datagrams each (answers over 512 bytes).
  static constexpr uint32_t kSendSlotsPerRequest = 4;
  static constexpr bool kPrefetch = true;
  struct Info {
    uint32_t opcode = 0;
    uint32_t response_code = 0;
  };

  HandleDatagrams(HandleServer::WorkerState& state, const HandleService& service,
                  ResponseRateLimiter& limiter)
      : state_(&state), service_(&service), limiter_(&limiter) {}

  // With a million cached answers nearly every lookup misses the CPU caches twice (the hash
  // bucket, then the entry): start all of a batch's loads first so that they overlap.
  void Prefetch(std::span<const std::span<const uint8_t>> batch) {
    const resolver::Resolver& resolver = service_->resolver();
    auto& hashes = state_->prefetch_hashes;
    hashes.clear();
    for (auto datagram : batch) {
      std::string_view handle = protocol::PeekResolutionHandle(datagram);
      hashes.push_back(handle.empty() ? 0 : resolver.CacheHashFor(handle, state_->prefetch));
    }
    for (uint64_t h : hashes) {
      if (h != 0) resolver.PrefetchBucket(h);
    }
    for (uint64_t h : hashes) {
      if (h != 0) resolver.PrefetchEntry(h);
    }
  }

  DatagramReply<Info> Receive(std::span<const uint8_t> datagram, const sockaddr_storage& from) {
    using Kind = DatagramReply<Info>::Kind;
    DatagramReply<Info> r;
    r.request = datagram;
    if (datagram.size() >= protocol::kEnvelopeSize &&
        (datagram[2] & protocol::kEnvelopeTruncated) != 0) {
      auto outcome = state_->reassembler.Offer(SourceOf(from), datagram, Clock::now());
      if (std::holds_alternative<protocol::UdpReassembler::NeedMore>(outcome)) {
        r.kind = Kind::kPending;
        return r;
      }
      if (std::holds_alternative<protocol::ProtocolError>(outcome)) {
        r.kind = Kind::kDrop;
        return r;
      }
      state_->reassembled =
          std::move(std::get<protocol::UdpReassembler::Complete>(outcome).message);
      r.request = state_->reassembled;
    }
    Handled h = service_->Handle(r.request, state_->out, state_->scratch,
                                 /*limit_to_request_size=*/true);
    r.info = {h.opcode, h.response_code};
    switch (h.disposition) {
      case Disposition::kDrop:
        r.kind = Kind::kDrop;
        break;
      case Disposition::kNeedsStorage:
        r.kind = Kind::kNeedsStorage;
        break;
      case Disposition::kAnswered:
        r.kind = Kind::kAnswered;
        r.answer = std::span<const uint8_t>(state_->out.data(), h.response_size);
        break;
    }
    return r;
  }

  StorageReply<Info> AnswerFromStorage(std::span<const uint8_t> request,
                                       const sockaddr_storage& from) const {
    StorageThreadState& thread = ThisStorageThread();
    Handled h =
        service_->HandleFromStorage(request, thread.out, thread.scratch, OriginOf(from, true));
    StorageReply<Info> reply;
    if (h.disposition != Disposition::kAnswered) return reply;
    reply.answered = true;
    reply.answer.assign(thread.out.begin(),
                        thread.out.begin() + static_cast<ptrdiff_t>(h.response_size));
    reply.info = {h.opcode, h.response_code};
    return reply;
  }

  // RC_SERVER_TOO_BUSY, never larger than the request (no amplification).
  std::span<const uint8_t> Busy(std::span<const uint8_t> request) {
    Handled busy = service_->Busy(request, state_->out);
    if (busy.disposition != Disposition::kAnswered || busy.response_size > request.size())
      return {};
    return std::span<const uint8_t>(state_->out.data(), busy.response_size);
  }

  void Send(UdpBatchSocket& socket, std::span<const uint8_t> answer, const sockaddr_storage& to,
            socklen_t to_len, size_t request_size) {
    const uint32_t count =
        protocol::UdpDatagramCount(static_cast<uint32_t>(answer.size() - protocol::kEnvelopeSize));
    SendRateLimited(
        *limiter_, socket, to, to_len, count,
        [&] {
          for (uint32_t i = 0; i < count; ++i) {
            auto buffer = socket.NextSendBuffer();
            socket.CommitSend(protocol::WriteUdpDatagram(answer, i, buffer), to, to_len);
          }
        },
        [&]() -> std::span<const uint8_t> {
          Handled slip = service_->RateLimited(answer, state_->slip_out, request_size);
          if (slip.disposition != Disposition::kAnswered) return {};
          return std::span<const uint8_t>(state_->slip_out.data(), slip.response_size);
        });
  }

  void Count(const Info& info, uint64_t latency_us) {
    state_->counters.Count(metrics::Protocol::kHandleUdp, info.opcode, info.response_code,
                           latency_us);
  }
  void Dropped() { state_->counters.Dropped(metrics::Protocol::kHandleUdp); }

 private:
  HandleServer::WorkerState* state_;
  const HandleService* service_;
  ResponseRateLimiter* limiter_;
};

// The Handle protocol over TCP (ServeFramed's handler): the 20-byte envelope announces the rest;
// several requests per connection with or without KC (China's identifier SDK reuses connections
// without it).
class HandleStream {
 public:
  static constexpr size_t kHeadSize = protocol::kEnvelopeSize;

  HandleStream(HandleServer::WorkerState& state, const HandleService& service,
               uint32_t max_message_bytes, auth::Origin origin)
      : state_(&state), service_(&service), max_message_(max_message_bytes), origin_(origin) {}

  std::optional<size_t> BodySize(std::span<const uint8_t> head, std::vector<uint8_t>& reply) {
    auto remainder =
        protocol::TcpFrameRemainder(head.first<protocol::kEnvelopeSize>(), max_message_);
    if (remainder.ok()) return *remainder;
    // Answer what can be answered (the envelope decoded), then the connection closes.
    Handled h = service_->Handle(head, state_->out, state_->scratch, false);
    if (h.disposition == Disposition::kAnswered) Copy(state_->out, h, reply);
    return std::nullopt;
  }

  SessionOutcome Answer(std::span<const uint8_t> request, std::vector<uint8_t>& reply) {
    last_ = service_->Handle(request, state_->out, state_->scratch, false);
    if (last_.disposition == Disposition::kNeedsStorage) return SessionOutcome::kNeedsStorage;
    return Finish(state_->out, reply);
  }

  SessionOutcome AnswerFromStorage(std::span<const uint8_t> request, std::vector<uint8_t>& reply) {
    StorageThreadState& thread = ThisStorageThread();
    last_ = service_->HandleFromStorage(request, thread.out, thread.scratch, origin_, login_.get());
    // A login (OC 2001) holds for the rest of this connection; a failed one ends the last.
    if (last_.opcode == static_cast<uint32_t>(protocol::OpCode::kLoginIdSystem))
      login_ = std::move(last_.login);
    const SessionOutcome outcome = Finish(thread.out, reply);
    if (outcome == SessionOutcome::kAnswered && last_.more) {
      more_ = std::move(last_.more);
      return SessionOutcome::kAnsweredMore;
    }
    return outcome;
  }

  // The next part of a streamed answer (LIST_HANDLES), on a storage thread.
  SessionOutcome ContinueFromStorage(std::vector<uint8_t>& reply) {
    if (!more_) return SessionOutcome::kClose;
    StorageThreadState& thread = ThisStorageThread();
    Handled part = more_->Next(thread.out);
    more_ = std::move(part.more);
    if (part.disposition != Disposition::kAnswered) {
      more_.reset();
      return SessionOutcome::kClose;
    }
    Copy(thread.out, part, reply);
    return more_ ? SessionOutcome::kAnsweredMore : SessionOutcome::kAnswered;
  }

  SessionOutcome Busy(std::span<const uint8_t> request, std::vector<uint8_t>& reply) {
    last_ = service_->Busy(request, state_->out);
    return Finish(state_->out, reply);
  }

  void Answered(Clock::time_point start) {
    state_->counters.Count(metrics::Protocol::kHandleTcp, last_.opcode, last_.response_code,
                           MicrosSince(start));
  }
  void Dropped() { state_->counters.Dropped(metrics::Protocol::kHandleTcp); }

 private:
  static void Copy(const std::vector<uint8_t>& out, const Handled& h, std::vector<uint8_t>& reply) {
    reply.assign(out.begin(), out.begin() + static_cast<ptrdiff_t>(h.response_size));
  }
  SessionOutcome Finish(const std::vector<uint8_t>& out, std::vector<uint8_t>& reply) {
    // A response sent to us is ignored; the connection stays.
    if (last_.disposition != Disposition::kAnswered) return SessionOutcome::kIgnore;
    Copy(out, last_, reply);
    return SessionOutcome::kAnswered;
  }

  HandleServer::WorkerState* state_;
  const HandleService* service_;
  uint32_t max_message_;
  auth::Origin origin_;
  Handled last_;
  std::shared_ptr<Continuation> more_;           // the rest of a streamed answer being written
  std::shared_ptr<const auth::Identity> login_;  // logged in on this connection (OC 2001)
};

auth::Origin OriginOfPeer(const std::string& address) {
  sockaddr_storage addr{};
  boost::system::error_code ec;
  auto ip = asio::ip::make_address(address, ec);
  if (!ec) {
    tcp::endpoint endpoint(ip, 0);
    if (endpoint.size() <= sizeof(addr)) std::memcpy(&addr, endpoint.data(), endpoint.size());
  }
  return OriginOf(addr, /*datagram=*/false);
}

}  // namespace

struct HandleServer::UdpListeners {
  std::vector<std::unique_ptr<UdpService<HandleDatagrams>>> services;
};

HandleServer::HandleServer(const config::HandleConfig& config, const HandleService& service,
                           metrics::MetricsHub& metrics)
    : config_(config),
      service_(service),
      metrics_(metrics),
      rate_limiter_(config.rate_limit),
      connections_(config.tcp_max_connections, config.tcp_max_connections_per_source),
      udp_(std::make_unique<UdpListeners>()) {}

HandleServer::~HandleServer() {
  Stop();
}

Result<Unit, std::string> HandleServer::Bind() {
  storage_ = std::make_unique<StoragePool>(config_.storage_threads, config_.storage_queue);
  workers_ = std::make_unique<WorkerPool>(config_.workers);
  for (size_t i = 0; i < workers_->size(); ++i)
    states_.push_back(std::make_unique<WorkerState>(metrics_.NewCounters()));
  port_ = config_.port;
  try {
    for (const std::string& bind : config_.bind) {
      boost::system::error_code ec;
      auto address = asio::ip::make_address(bind, ec);
      if (ec) return Failure{"handle.bind: \"" + bind + "\" is not an IP address"};
      if (port_ == 0 && config_.tcp && config_.udp) {
        auto picked = PickPortFreeForBoth(address, "Handle");
        if (!picked.ok()) return Failure{picked.error()};
        port_ = *picked;
      }
      for (size_t w = 0; w < workers_->size(); ++w) {
        Worker& worker = (*workers_)[w];
        const bool first = w == 0;  // the first socket of this address checks the port is free
        if (config_.tcp) {
          auto acceptor = OpenTcpAcceptor(worker.io, address, port_, "Handle TCP", first);
          if (!acceptor.ok()) return Failure{acceptor.error()};
          if (port_ == 0) port_ = (*acceptor)->local_endpoint().port();
          acceptors_.push_back({&worker, w, std::move(*acceptor)});
        }
        if (config_.udp) {
          auto socket = OpenUdpSocket(worker.io, address, port_, "Handle UDP",
                                      config_.udp_receive_buffer_bytes, first);
          if (!socket.ok()) return Failure{socket.error()};
          if (port_ == 0) port_ = socket->local_endpoint().port();
          udp_->services.push_back(std::make_unique<UdpService<HandleDatagrams>>(
              worker, std::move(*socket), config_.udp_batch, *storage_,
              HandleDatagrams(*states_[w], service_, rate_limiter_)));
          auto* listener = udp_->services.back().get();
          worker.closers.push_back([listener] { listener->Close(); });
        }
      }
    }
  } catch (const boost::system::system_error& e) {
    return Failure{std::string("cannot open the Handle listeners: ") + e.what()};
  }
  for (auto& a : acceptors_) {
    tcp::acceptor* acceptor = a.acceptor.get();
    a.worker->closers.push_back([acceptor] {
      boost::system::error_code ignored;
      acceptor->close(ignored);
    });
  }
  return Unit{};
}

void HandleServer::Run() {
  for (auto& service : udp_->services) service->Start();
  const TcpLimits limits{config_.tcp_idle_timeout, config_.tcp_io_timeout};
  for (auto& a : acceptors_) {
    WorkerState* state = states_[a.worker_index].get();
    Worker* worker = a.worker;
    asio::co_spawn(
        worker->io,
        AcceptLoop(*a.acceptor, connections_, accept_counters_,
                   [this, state, worker, limits](tcp::socket socket, ConnectionSlot slot) {
                     auth::Origin origin = OriginOfPeer(slot.source());
                     asio::co_spawn(
                         worker->io,
                         ServeFramed(
                             std::move(socket), std::move(slot), limits, *storage_,
                             HandleStream(*state, service_, config_.max_message_bytes, origin)),
                         asio::detached);
                   }),
        asio::detached);
  }
  workers_->Run();
  started_ = true;
}

void HandleServer::Stop() {
  if (!started_) return;
  started_ = false;
  workers_->Stop(storage_.get());
}

void HandleServer::CollectMetrics(std::string& out) const {
  metrics::AppendHelp(out, "idnode_open_connections", "gauge", "Open TCP connections.");
  metrics::AppendSample(out, "idnode_open_connections", "protocol=\"handle_tcp\"",
                        static_cast<double>(connections_.open()));
  metrics::AppendHelp(out, "idnode_connections_refused_total", "counter",
                      "Connections closed at accept by the caps.");
  metrics::AppendSample(out, "idnode_connections_refused_total", "protocol=\"handle_tcp\"",
                        static_cast<double>(connections_.refused()));
  AppendAcceptMetrics(out, "handle_tcp", accept_counters_, /*help=*/true);
  rate_limiter_.AppendMetrics(out, "idnode_udp_rate_limited_total",
                              "Handle UDP answers not sent by the rate limit (handle.rate_limit).");
  metrics::AppendHelp(out, "idnode_storage_queue", "gauge",
                      "Requests waiting for or in the storage pool.");
  metrics::AppendSample(out, "idnode_storage_queue", "", storage_ ? storage_->in_flight.load() : 0);
}

}  // namespace idnode::net
