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

#include "idnode/net/tcp_session.h"
#include "idnode/net/udp_service.h"

extern "C" {
#include <libknot/libknot.h>
}

namespace idnode::dns {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;
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
  for (const auto& text : config.delegations) {
    config::DnsDelegation parsed;
    std::string why;
    if (!config::ParseDnsDelegation(text, &parsed, &why)) continue;  // the config room refused it
    o.delegations.push_back({parsed.oid, parsed.nameservers, parsed.addresses});
  }
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

// What DNS keeps per worker (on that worker's thread only).
struct DnsServer::WorkerState {
  WorkerState(metrics::RequestCounters& c, const resolver::Resolver& resolver)
      : counters(c), source(resolver, false), out(kMaxTcpMessage) {}
  metrics::RequestCounters& counters;
  ResolverOidSource source;
  // Shared by the worker's UDP listeners and TCP sessions: Respond() runs to completion on this
  // thread and its answer is copied out before any co_await.
  ResponderScratch scratch;
  std::vector<uint8_t> out;
  std::array<uint8_t, kMaxAnswerDatagram> slip_out{};  // a rate-limited answer's TC reply
  std::atomic<uint64_t> truncated{0};                  // written by this worker only
};

namespace {

void CountTruncated(DnsServer::WorkerState& state, bool truncated) {
  if (truncated) {
    state.truncated.store(state.truncated.load(std::memory_order_relaxed) + 1,
                          std::memory_order_relaxed);
  }
}

// DNS over UDP (net::UdpService's handler): cache hits answered in the batch, misses sent to the
// storage pool (a full pool drops them: the client retries), every answer through the rate limit.
class DnsDatagrams {
 public:
  static constexpr size_t kMaxReceive = kMaxQueryDatagram;
  static constexpr size_t kMaxSend = kMaxAnswerDatagram;
  static constexpr uint32_t kSendSlotsPerRequest = 1;
  static constexpr bool kPrefetch = false;
  struct Info {
    uint8_t opcode = 0;
    uint16_t rcode = 0;
    bool truncated = false;
  };

  DnsDatagrams(DnsServer::WorkerState& state, const Responder& responder,
               const resolver::Resolver& resolver, net::ResponseRateLimiter& limiter)
      : state_(&state), responder_(&responder), resolver_(&resolver), limiter_(&limiter) {}

  void Prefetch(std::span<const std::span<const uint8_t>>) {}

  net::DatagramReply<Info> Receive(std::span<const uint8_t> query, const sockaddr_storage&) {
    using Kind = net::DatagramReply<Info>::Kind;
    net::DatagramReply<Info> r;
    r.request = query;
    Response response =
        responder_->Respond(query, Transport::kUdp, state_->source, state_->out, state_->scratch);
    r.info = {response.opcode, response.rcode, response.truncated};
    switch (response.disposition) {
      case Response::Disposition::kDrop:
        r.kind = Kind::kDrop;
        break;
      case Response::Disposition::kNeedsStorage:
        r.kind = Kind::kNeedsStorage;
        break;
      case Response::Disposition::kAnswered:
        r.kind = Kind::kAnswered;
        r.answer = std::span<const uint8_t>(state_->out.data(), response.size);
        break;
    }
    return r;
  }

  net::StorageReply<Info> AnswerFromStorage(std::span<const uint8_t> query,
                                            const sockaddr_storage&) const {
    StorageThreadState& thread = ThisStorageThread(*resolver_);
    Response response =
        responder_->Respond(query, Transport::kUdp, thread.source, thread.out, thread.scratch);
    net::StorageReply<Info> reply;
    if (response.disposition != Response::Disposition::kAnswered) return reply;
    reply.answered = true;
    reply.answer.assign(thread.out.begin(),
                        thread.out.begin() + static_cast<ptrdiff_t>(response.size));
    reply.info = {response.opcode, response.rcode, response.truncated};
    return reply;
  }

  std::span<const uint8_t> Busy(std::span<const uint8_t>) { return {}; }  // dropped: clients retry

  void Send(net::UdpBatchSocket& socket, std::span<const uint8_t> answer,
            const sockaddr_storage& to, socklen_t to_len, size_t) {
    net::SendRateLimited(
        *limiter_, socket, to, to_len, 1, [&] { socket.Queue(answer, to, to_len); },
        [&]() -> std::span<const uint8_t> {
          size_t size = TruncatedAnswer(answer, state_->slip_out);
          return std::span<const uint8_t>(state_->slip_out.data(), size);
        });
  }

  void Count(const Info& info, uint64_t latency_us) {
    CountTruncated(*state_, info.truncated);
    state_->counters.Count(metrics::Protocol::kDnsUdp, info.opcode, info.rcode, latency_us);
  }
  void Dropped() { state_->counters.Dropped(metrics::Protocol::kDnsUdp); }

 private:
  DnsServer::WorkerState* state_;
  const Responder* responder_;
  const resolver::Resolver* resolver_;
  net::ResponseRateLimiter* limiter_;
};

// DNS over TCP (RFC 7766; net::ServeFramed's handler): a 2-byte length, then the message; the
// answer carries the same framing. A full storage pool closes the connection (the client retries).
class DnsStream {
 public:
  static constexpr size_t kHeadSize = 2;

  DnsStream(DnsServer::WorkerState& state, const Responder& responder,
            const resolver::Resolver& resolver)
      : state_(&state), responder_(&responder), resolver_(&resolver) {}

  std::optional<size_t> BodySize(std::span<const uint8_t> head, std::vector<uint8_t>&) {
    return size_t{head[0]} << 8 | head[1];  // at most 65535: the length field bounds the read
  }

  net::SessionOutcome Answer(std::span<const uint8_t> message, std::vector<uint8_t>& reply) {
    last_ = responder_->Respond(message.subspan(kHeadSize), Transport::kTcp, state_->source,
                                state_->out, state_->scratch);
    if (last_.disposition == Response::Disposition::kNeedsStorage)
      return net::SessionOutcome::kNeedsStorage;
    return Finish(message, state_->out, reply);
  }

  net::SessionOutcome AnswerFromStorage(std::span<const uint8_t> message,
                                        std::vector<uint8_t>& reply) {
    StorageThreadState& thread = ThisStorageThread(*resolver_);
    last_ = responder_->Respond(message.subspan(kHeadSize), Transport::kTcp, thread.source,
                                thread.out, thread.scratch);
    return Finish(message, thread.out, reply);
  }

  net::SessionOutcome Busy(std::span<const uint8_t>, std::vector<uint8_t>&) {
    return net::SessionOutcome::kClose;
  }

  void Answered(net::Clock::time_point start) {
    CountTruncated(*state_, last_.truncated);
    state_->counters.Count(metrics::Protocol::kDnsTcp, last_.opcode, last_.rcode,
                           net::MicrosSince(start));
  }
  void Dropped() { state_->counters.Dropped(metrics::Protocol::kDnsTcp); }

 private:
  net::SessionOutcome Finish(std::span<const uint8_t> message, const std::vector<uint8_t>& out,
                             std::vector<uint8_t>& reply) {
    if (last_.disposition != Response::Disposition::kAnswered) {
      // No header: the stream makes no sense. Otherwise a response sent to us: ignore it.
      return message.size() < kHeadSize + 12 ? net::SessionOutcome::kClose
                                             : net::SessionOutcome::kIgnore;
    }
    reply.resize(2 + last_.size);
    reply[0] = static_cast<uint8_t>(last_.size >> 8);
    reply[1] = static_cast<uint8_t>(last_.size);
    std::memcpy(reply.data() + 2, out.data(), last_.size);
    return net::SessionOutcome::kAnswered;
  }

  DnsServer::WorkerState* state_;
  const Responder* responder_;
  const resolver::Resolver* resolver_;
  Response last_;
};

}  // namespace

struct DnsServer::UdpListeners {
  std::vector<std::unique_ptr<net::UdpService<DnsDatagrams>>> services;
};

DnsServer::DnsServer(const config::DnsConfig& config, const resolver::Resolver& resolver,
                     ResponderOptions options, metrics::MetricsHub& metrics)
    : config_(config),
      resolver_(resolver),
      responder_(std::move(options)),
      metrics_(metrics),
      rate_limiter_(config.rate_limit),
      connections_(config.tcp_max_connections, config.tcp_max_connections_per_source),
      udp_(std::make_unique<UdpListeners>()) {}

DnsServer::~DnsServer() {
  Stop();
}

Result<Unit, std::string> DnsServer::Bind() {
  storage_ = std::make_unique<StoragePool>(config_.storage_threads, config_.storage_queue);
  uint32_t workers =
      config_.workers != 0 ? config_.workers : std::max(1u, std::thread::hardware_concurrency());
  workers_ = std::make_unique<net::WorkerPool>(workers);
  for (size_t i = 0; i < workers_->size(); ++i)
    states_.push_back(std::make_unique<WorkerState>(metrics_.NewCounters(), resolver_));
  port_ = config_.port;
  try {
    for (const std::string& bind : config_.bind) {
      boost::system::error_code ec;
      auto address = asio::ip::make_address(bind, ec);
      if (ec) return Failure{"dns.bind: \"" + bind + "\" is not an IP address"};
      if (port_ == 0 && config_.tcp) {
        auto picked = net::PickPortFreeForBoth(address, "DNS");
        if (!picked.ok()) return Failure{picked.error()};
        port_ = *picked;
      }
      for (size_t w = 0; w < workers_->size(); ++w) {
        net::Worker& worker = (*workers_)[w];
        const bool first = w == 0;  // the first socket of this address checks the port is free
        auto socket = net::OpenUdpSocket(worker.io, address, port_, "DNS UDP",
                                         config_.udp_receive_buffer_bytes, first);
        if (!socket.ok()) return Failure{socket.error()};
        if (port_ == 0) port_ = socket->local_endpoint().port();
        udp_->services.push_back(std::make_unique<net::UdpService<DnsDatagrams>>(
            worker, std::move(*socket), config_.udp_batch, *storage_,
            DnsDatagrams(*states_[w], responder_, resolver_, rate_limiter_)));
        auto* listener = udp_->services.back().get();
        worker.closers.push_back([listener] { listener->Close(); });
        if (config_.tcp) {
          auto acceptor = net::OpenTcpAcceptor(worker.io, address, port_, "DNS TCP", first);
          if (!acceptor.ok()) return Failure{acceptor.error()};
          tcp::acceptor* raw = acceptor->get();
          worker.closers.push_back([raw] {
            boost::system::error_code ignored;
            raw->close(ignored);
          });
          acceptors_.push_back({&worker, w, std::move(*acceptor)});
        }
      }
    }
  } catch (const boost::system::system_error& e) {
    return Failure{std::string("cannot open the DNS listeners: ") + e.what()};
  }
  return Unit{};
}

void DnsServer::Run() {
  for (auto& service : udp_->services) service->Start();
  const net::TcpLimits limits{config_.tcp_idle_timeout, config_.tcp_io_timeout};
  for (auto& a : acceptors_) {
    WorkerState* state = states_[a.worker_index].get();
    net::Worker* worker = a.worker;
    asio::co_spawn(worker->io,
                   net::AcceptLoop(
                       *a.acceptor, connections_, accept_counters_,
                       [this, state, worker, limits](tcp::socket socket, net::ConnectionSlot slot) {
                         asio::co_spawn(
                             worker->io,
                             net::ServeFramed(std::move(socket), std::move(slot), limits, *storage_,
                                              DnsStream(*state, responder_, resolver_)),
                             asio::detached);
                       }),
                   asio::detached);
  }
  workers_->Run();
  started_ = true;
}

void DnsServer::Stop() {
  if (!started_) return;
  started_ = false;
  workers_->Stop(storage_.get());
}

void DnsServer::CollectMetrics(std::string& out) const {
  rate_limiter_.AppendMetrics(out, "idnode_dns_rate_limited_total",
                              "DNS UDP answers not sent by the rate limit (dns.rate_limit).");
  uint64_t truncated = 0;
  for (const auto& w : states_) truncated += w->truncated.load(std::memory_order_relaxed);
  metrics::AppendHelp(out, "idnode_dns_truncated_total", "counter",
                      "DNS answers sent without records and with TC (too large for UDP).");
  metrics::AppendSample(out, "idnode_dns_truncated_total", "", static_cast<double>(truncated));
  metrics::AppendSample(out, "idnode_open_connections", "protocol=\"dns_tcp\"",
                        static_cast<double>(connections_.open()));
  metrics::AppendSample(out, "idnode_connections_refused_total", "protocol=\"dns_tcp\"",
                        static_cast<double>(connections_.refused()));
  net::AppendAcceptMetrics(out, "dns_tcp", accept_counters_, /*help=*/false);
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
