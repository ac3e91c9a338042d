#include "idnode/loadgen/engine.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>
#include <deque>
#include <memory>
#include <random>

extern "C" {  // libknot's headers have no C++ guards
#include <libknot/libknot.h>
}

#include <unordered_map>

#include "idnode/auth/credentials.h"
#include "idnode/dns/ors.h"
#include "idnode/protocol/message.h"

namespace idnode::loadgen {

namespace {

using Clock = std::chrono::steady_clock;

uint64_t Nanos(Clock::time_point t, Clock::time_point start) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(t - start).count());
}

uint32_t Get32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
}

std::string PathEscape(std::string_view handle) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : handle) {
    if (std::isalnum(c) || c == '/' || c == '.' || c == '-' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

struct Slot {
  bool busy = false;
  uint32_t generation = 0;
  uint64_t intended_ns = 0;
  uint64_t sent_ns = 0;
  uint32_t expected = 0;  // UDP: message length once the first datagram is in
  uint32_t received = 0;
  int connection = -1;
  uint32_t target = 0;  // the server it went to (an index into the run's targets)
  bool write = false;
  bool answering = false;  // the challenge answer is out; the next answer is final
  bool modify = false;
  std::string write_handle;
};

struct Connection {
  int fd = -1;
  uint32_t target = 0;
  std::deque<uint32_t> pending;  // slots, in request order
  std::vector<uint8_t> in;
  std::vector<uint8_t> out;
  size_t out_sent = 0;
};

bool ResolveAddress(const std::string& host, uint16_t port, sockaddr_storage* addr,
                    socklen_t* len) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0 || res == nullptr)
    return false;
  std::memcpy(addr, res->ai_addr, res->ai_addrlen);
  *len = res->ai_addrlen;
  freeaddrinfo(res);
  return true;
}

int Connect(const sockaddr_storage& addr, socklen_t len) {
  int fd = ::socket(addr.ss_family, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), len) != 0) {
    ::close(fd);
    return -1;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  ::fcntl(fd, F_SETFL, O_NONBLOCK);
  return fd;
}

class Engine {
 public:
  Engine(const RunOptions& o, KeySource& keys)
      : o_(o),
        keys_(keys),
        targets_(o.targets.empty() ? std::vector<Target>{{o.host, o.port}} : o.targets),
        slots_(o.concurrency) {
    free_slots_.reserve(slots_.size());
    for (uint32_t s = static_cast<uint32_t>(slots_.size()); s-- > 0;) free_slots_.push_back(s);
  }

  RunResult Go(const std::function<void(const Second&)>& progress) {
    addrs_.resize(targets_.size());
    addr_lens_.resize(targets_.size());
    for (size_t t = 0; t < targets_.size(); ++t) {
      if (!ResolveAddress(targets_[t].host, targets_[t].port, &addrs_[t], &addr_lens_[t])) {
        result_.error = "cannot resolve " + targets_[t].host;
        return result_;
      }
      if (addrs_[t].ss_family != addrs_[0].ss_family) {
        result_.error = "the site's servers mix IPv4 and IPv6 addresses";
        return result_;
      }
      TargetTally tally;
      tally.server = targets_[t].host + ":" + std::to_string(targets_[t].port);
      result_.targets.push_back(std::move(tally));
    }
    const uint32_t per_target = std::max(1u, o_.connections);
    if (o_.protocol == Protocol::kUdp || o_.protocol == Protocol::kDns) {
      udp_ = ::socket(addrs_[0].ss_family, SOCK_DGRAM, 0);
      int buf = 8 << 20;
      ::setsockopt(udp_, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
      ::setsockopt(udp_, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
      // One server: a connected socket (the kernel filters what it reads). Several: each
      // datagram names its server.
      if (targets_.size() == 1 &&
          ::connect(udp_, reinterpret_cast<const sockaddr*>(&addrs_[0]), addr_lens_[0]) != 0) {
        result_.error = "cannot reach " + targets_[0].host;
        return result_;
      }
      ::fcntl(udp_, F_SETFL, O_NONBLOCK);
      udp_buffers_.resize(slots_.size() * kUdpRequestBytes);
      udp_iov_.resize(slots_.size());
      udp_headers_.resize(slots_.size());
    } else {
      for (uint32_t t = 0; t < targets_.size(); ++t) {
        for (uint32_t i = 0; i < per_target; ++i) {
          Connection c;
          c.target = t;
          c.fd = Connect(addrs_[t], addr_lens_[t]);
          if (c.fd < 0) {
            result_.error = "cannot connect to " + result_.targets[t].server;
            return result_;
          }
          conns_.push_back(std::move(c));
        }
      }
    }
    start_ = Clock::now();
    const uint64_t duration_ns = static_cast<uint64_t>(o_.seconds * 1e9);
    const uint64_t timeout_ns = static_cast<uint64_t>(o_.timeout_seconds * 1e9);
    const double interval_ns = o_.rate > 0 ? 1e9 / o_.rate : 0;
    double next_intended = 0;
    uint64_t next_second = 1000000000ull, last_timeout_scan = 0;
    Histogram second_histogram;
    Second current;
    const bool capped = o_.max_requests > 0;
    for (;;) {
      uint64_t now = Nanos(Clock::now(), start_);
      if (now >= duration_ns) break;
      if (capped && result_.sent >= o_.max_requests && free_slots_.size() == slots_.size()) break;
      // Send: all free slots (closed loop), or what is due (open loop).
      // Free slots come off a stack: finding one must not cost a scan of the busy ones, or a
      // backlog would slow the sender just when it is behind.
      while (!free_slots_.empty() && !(capped && result_.sent >= o_.max_requests)) {
        uint64_t intended = now;
        if (interval_ns > 0) {
          if (next_intended > static_cast<double>(now)) break;
          intended = static_cast<uint64_t>(next_intended);
          next_intended += interval_ns;
        }
        const uint32_t s = free_slots_.back();
        free_slots_.pop_back();
        Send(s, intended, now);
      }
      FlushUdp();
      FlushTcp();
      // Open loop: never wait past the next request's intended send time (a late send would be
      // charged to the server as latency). Closed loop: up to 1 ms for an answer.
      uint64_t wait_ns = 1000000;
      if (interval_ns > 0) {
        double until = next_intended - static_cast<double>(Nanos(Clock::now(), start_));
        wait_ns = until <= 0 ? 0 : std::min<uint64_t>(wait_ns, static_cast<uint64_t>(until));
      }
      Receive(wait_ns, second_histogram, current);
      if (now - last_timeout_scan > 100000000ull) {
        last_timeout_scan = now;
        for (uint32_t s = 0; s < slots_.size(); ++s) {
          if (slots_[s].busy && now - slots_[s].sent_ns > timeout_ns) TimeOut(s, current);
        }
      }
      if (now >= next_second) {
        current.at = static_cast<double>(next_second) / 1e9;
        current.p50_ns = second_histogram.Percentile(0.5);
        current.p99_ns = second_histogram.Percentile(0.99);
        result_.timeline.push_back(current);
        if (progress) progress(current);
        current = Second{};
        second_histogram.Clear();
        next_second += 1000000000ull;
      }
    }
    result_.seconds = static_cast<double>(Nanos(Clock::now(), start_)) / 1e9;
    if (udp_ >= 0) ::close(udp_);
    for (auto& c : conns_) {
      if (c.fd >= 0) ::close(c.fd);
    }
    return std::move(result_);
  }

 private:
  void Send(uint32_t s, uint64_t intended, uint64_t now) {
    Slot& slot = slots_[s];
    slot.busy = true;
    slot.generation = (slot.generation + 1) & 0x7ffff;
    slot.intended_ns = intended;
    slot.sent_ns = now;
    if (o_.rate > 0) result_.send_lag.Record(now > intended ? now - intended : 0);
    slot.expected = slot.received = 0;
    slot.write = slot.answering = false;
    write_credit_ += o_.writes.share;
    if (write_credit_ >= 1) {
      write_credit_ -= 1;
      slot.write = true;
      ++result_.writes_sent;
    }
    const std::string_view key = slot.write ? std::string_view() : keys_.Next();
    ++result_.sent;
    const uint32_t id = (slot.generation << 12) | s;
    // A write's handle is chosen as its request is built; it is routed then.
    std::vector<uint8_t> write_request;
    if (slot.write && o_.protocol != Protocol::kDns) write_request = WriteRequest(slot, id);
    slot.target = RouteOf(slot.write ? std::string_view(slot.write_handle) : key);
    ++result_.targets[slot.target].sent;
    if (o_.protocol == Protocol::kDns) {
      // A 16-bit DNS id: the slot and four bits of its generation.
      const auto& query = DnsQuery(key);
      std::span<uint8_t> buffer = UdpBuffer(s);
      std::memcpy(buffer.data(), query.data(), query.size());
      knot_wire_set_id(buffer.data(), static_cast<uint16_t>(((slot.generation & 0xf) << 12) | s));
      QueueUdp(s, query.size());
      return;
    }
    if (o_.protocol == Protocol::kUdp) {
      if (slot.write) {
        QueueUdp(s, write_request);
      } else {
        QueueUdp(s, WriteResolutionRequest(key, id, UdpBuffer(s)));
      }
      return;
    }
    // TCP and HTTP: the target's connection with the fewest requests waiting.
    const size_t per_target = conns_.size() / targets_.size();
    const size_t first = size_t{slot.target} * per_target;
    size_t best = first;
    for (size_t i = first + 1; i < first + per_target; ++i) {
      if (conns_[i].pending.size() < conns_[best].pending.size()) best = i;
    }
    Connection& c = conns_[best];
    slot.connection = static_cast<int>(best);
    c.pending.push_back(s);
    if (o_.protocol == Protocol::kTcp) {
      auto req = slot.write ? std::move(write_request) : ResolutionRequest(key, id);
      c.out.insert(c.out.end(), req.begin(), req.end());
    } else {
      std::string req = "GET /api/handles/" + PathEscape(key) +
                        " HTTP/1.1\r\nHost: " + targets_[slot.target].host + "\r\n\r\n";
      c.out.insert(c.out.end(), req.begin(), req.end());
    }
  }

  uint32_t RouteOf(std::string_view handle) const {
    if (targets_.size() < 2 || !o_.route) return 0;
    const uint32_t t = o_.route(handle);
    return t < targets_.size() ? t : 0;
  }

  // UDP requests are built in place, one preallocated buffer per slot (a slot has at most one
  // datagram waiting to go out), and sent in one sendmmsg.
  std::span<uint8_t> UdpBuffer(uint32_t s) {
    return {udp_buffers_.data() + size_t{s} * kUdpRequestBytes, kUdpRequestBytes};
  }
  void QueueUdp(uint32_t s, std::span<const uint8_t> bytes) {
    if (bytes.empty() || bytes.size() > kUdpRequestBytes) {
      ++result_.errors;  // too large for one datagram: left to time out
      return;
    }
    std::memcpy(UdpBuffer(s).data(), bytes.data(), bytes.size());
    QueueUdp(s, bytes.size());
  }
  void QueueUdp(uint32_t s, size_t size) {
    if (size == 0) {
      ++result_.errors;
      return;
    }
    udp_iov_[udp_queued_] = {UdpBuffer(s).data(), size};
    udp_headers_[udp_queued_] = {};
    udp_headers_[udp_queued_].msg_hdr.msg_iov = &udp_iov_[udp_queued_];
    udp_headers_[udp_queued_].msg_hdr.msg_iovlen = 1;
    if (targets_.size() > 1) {
      const uint32_t t = slots_[s].target;
      udp_headers_[udp_queued_].msg_hdr.msg_name = &addrs_[t];
      udp_headers_[udp_queued_].msg_hdr.msg_namelen = addr_lens_[t];
    }
    result_.bytes_out += size;
    ++udp_queued_;
  }

  void FlushUdp() {
    size_t done = 0;
    while (done < udp_queued_) {
      int n = ::sendmmsg(udp_, udp_headers_.data() + done,
                         static_cast<unsigned>(udp_queued_ - done), 0);
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        // This datagram failed (e.g. its server unreachable): it times out and is counted so;
        // the rest, which may go to other servers of a site, are still sent.
        ++done;
        continue;
      }
      if (n <= 0) break;  // the rest times out and is counted so
      done += static_cast<size_t>(n);
    }
    udp_queued_ = 0;
  }

  void FlushTcp() {
    for (auto& c : conns_) {
      while (c.fd >= 0 && c.out_sent < c.out.size()) {
        ssize_t n =
            ::send(c.fd, c.out.data() + c.out_sent, c.out.size() - c.out_sent, MSG_NOSIGNAL);
        if (n <= 0) break;
        c.out_sent += static_cast<size_t>(n);
        result_.bytes_out += static_cast<uint64_t>(n);
      }
      if (c.out_sent == c.out.size()) {
        c.out.clear();
        c.out_sent = 0;
      }
    }
  }

  // A write: CREATE_HANDLE of a fresh handle, or (every other write, once some exist) a
  // MODIFY_VALUE of one this run created.
  std::vector<uint8_t> WriteRequest(Slot& slot, uint32_t id) {
    ++write_counter_;
    slot.modify = !created_.empty() && write_counter_ % 2 == 0;
    if (slot.modify) {
      slot.write_handle = created_[rng_() % created_.size()];
    } else {
      slot.write_handle = o_.writes.prefix + "/IDBENCH-" + std::to_string(run_tag_) + "-" +
                          std::to_string(write_counter_);
    }
    std::string url = "https://example.org/idbench/" + std::to_string(write_counter_);
    protocol::HandleValue value;
    value.index = 1;
    value.type = "URL";
    value.data = {reinterpret_cast<const uint8_t*>(url.data()), url.size()};
    protocol::Message m;
    m.envelope.request_id = id;
    m.header.opcode = static_cast<uint32_t>(slot.modify ? protocol::OpCode::kModifyValue
                                                        : protocol::OpCode::kCreateHandle);
    m.header.op_flags = protocol::opflag::kRecursive | protocol::opflag::kCacheCertify |
                        (slot.modify ? 0 : protocol::opflag::kOverwrite);
    m.header.site_info_serial = 0xffff;
    m.header.expiration_time = static_cast<uint32_t>(time(nullptr) + 43200);
    m.body = protocol::HandleValuesBody{slot.write_handle, {value}};
    return Encoded(m);
  }

  // The DNS query for `key`, id 0 (kept per key: building names is slower than sending them).
  const std::vector<uint8_t>& DnsQuery(std::string_view key) {
    auto it = dns_queries_.find(key);
    if (it == dns_queries_.end()) {
      std::string name(key);
      if (dns::IsCanonicalOid(key)) {
        auto mapped = dns::OidToDnsName(key, o_.dns_apex);
        if (mapped.ok()) name = *mapped;
      }
      std::vector<uint8_t> q(KNOT_WIRE_HEADER_SIZE + KNOT_DNAME_MAXLEN + 4, 0);
      q[5] = 1;  // QDCOUNT 1; RD clear: an authoritative server is asked
      size_t at = KNOT_WIRE_HEADER_SIZE + 1;  // the root, if the key is no DNS name
      if (knot_dname_from_str(q.data() + KNOT_WIRE_HEADER_SIZE, name.c_str(), KNOT_DNAME_MAXLEN) !=
          nullptr) {
        at = KNOT_WIRE_HEADER_SIZE + knot_dname_size(q.data() + KNOT_WIRE_HEADER_SIZE);
      } else {
        q[KNOT_WIRE_HEADER_SIZE] = 0;
      }
      q.resize(at + 4);
      knot_wire_write_u16(q.data() + at, o_.dns_qtype);
      knot_wire_write_u16(q.data() + at + 2, KNOT_CLASS_IN);
      if (dns_queries_.size() >= kMaxDnsQueriesKept) dns_queries_.clear();
      it = dns_queries_.emplace(std::string(key), std::move(q)).first;
    }
    return it->second;
  }

  static std::vector<uint8_t> Encoded(const protocol::Message& m) {
    std::vector<uint8_t> out(protocol::EncodedMessageSize(m));
    auto n = protocol::EncodeMessage(m, out);
    if (!n.ok()) return {};
    out.resize(*n);
    return out;
  }

  // The answer to the 402 `challenge` for slot `s`, sent under a new request id; false if the
  // challenge does not decode (the write then counts as answered with 402).
  bool AnswerChallenge(uint32_t s, std::span<const uint8_t> challenge) {
    auto decoded = protocol::DecodeMessage(challenge);
    if (!decoded.ok() || !decoded->request_digest) return false;
    const auto* body = std::get_if<protocol::ChallengeBody>(&decoded->body);
    if (body == nullptr) return false;
    Slot& slot = slots_[s];
    const auto& w = o_.writes;
    const bool by_key = !w.private_key_pem.empty();
    auto mac = by_key ? auth::PublicKeyAnswer(w.private_key_pem, body->nonce,
                                              decoded->request_digest->digest, w.identity_handle)
                      : auth::SecretKeyAnswer(
                            auth::mac_code::kHmacSha256,
                            {reinterpret_cast<const uint8_t*>(w.secret.data()), w.secret.size()},
                            body->nonce, decoded->request_digest->digest);
    slot.generation = (slot.generation + 1) & 0x7ffff;
    slot.answering = true;
    slot.expected = slot.received = 0;
    protocol::Message m;
    m.envelope.session_id = decoded->envelope.session_id;
    m.envelope.request_id = (slot.generation << 12) | s;
    m.header.opcode = static_cast<uint32_t>(protocol::OpCode::kResponseToChallenge);
    m.header.op_flags = protocol::opflag::kRecursive | protocol::opflag::kCacheCertify;
    m.header.site_info_serial = 0xffff;
    m.header.expiration_time = decoded->header.expiration_time;
    m.body = protocol::ChallengeAnswer{by_key ? auth::kAuthTypePublicKey : auth::kAuthTypeSecretKey,
                                       w.identity_handle, w.identity_index, mac};
    auto bytes = Encoded(m);
    if (o_.protocol == Protocol::kUdp) {
      QueueUdp(s, bytes);
    } else {
      Connection& c = conns_[static_cast<size_t>(slot.connection)];
      c.out.insert(c.out.end(), bytes.begin(), bytes.end());
      c.pending.push_back(s);  // answered after what is already in flight on the connection
    }
    return true;
  }

  void Complete(uint32_t s, uint32_t code, Histogram& second, Second& current) {
    Slot& slot = slots_[s];
    uint64_t latency = Nanos(Clock::now(), start_) - slot.intended_ns;
    Release(s);
    if (slot.write) {
      result_.write_latency.Record(latency);
      ++result_.writes_answered;
      ++result_.write_codes[code];
      if (code == 1 && !slot.modify && created_.size() < kMaxCreatedKept) {
        created_.push_back(slot.write_handle);
      }
    }
    result_.latency.Record(latency);
    second.Record(latency);
    ++result_.targets[slot.target].answered;
    // Per-server codes only for a site: one server's are the aggregate's (a map lookup saved on
    // idbench's per-answer path).
    if (targets_.size() > 1) ++result_.targets[slot.target].codes[code];
    ++result_.answered;
    ++current.answered;
    ++result_.codes[code];
  }

  void Release(uint32_t s) {
    slots_[s].busy = false;
    free_slots_.push_back(s);
  }

  void TimeOut(uint32_t s, Second& current) {
    Release(s);
    ++result_.timeouts;
    ++result_.targets[slots_[s].target].timeouts;
    ++current.timeouts;
    if (slots_[s].connection >= 0) {
      // A pipelined connection that lost an answer cannot be trusted: reconnect, fail its queue.
      Reconnect(conns_[static_cast<size_t>(slots_[s].connection)], result_.timeouts,
                current.timeouts);
    }
  }

  // Fails every request still waiting on `c` (counted in `total` and `this_second`) and opens a
  // fresh connection in its place.
  void Reconnect(Connection& c, uint64_t& total, uint64_t& this_second) {
    for (uint32_t s : c.pending) {
      if (slots_[s].busy) {
        Release(s);
        ++total;
        ++this_second;
        ++result_.targets[c.target].failed;
      }
    }
    c.pending.clear();
    c.in.clear();
    c.out.clear();
    c.out_sent = 0;
    if (c.fd >= 0) ::close(c.fd);
    c.fd = Connect(addrs_[c.target], addr_lens_[c.target]);
    if (c.fd < 0) ++result_.errors;
  }

  void Receive(uint64_t wait_ns, Histogram& second, Second& current) {
    const timespec wait{static_cast<time_t>(wait_ns / 1000000000),
                        static_cast<long>(wait_ns % 1000000000)};
    if (conns_.empty()) {
      // UDP alone: read what has arrived; wait (at most `wait_ns`) only when nothing has.
      if (ReceiveUdp(second, current) > 0 || wait_ns == 0) return;
      pollfd fd{udp_, POLLIN, 0};
      if (::ppoll(&fd, 1, &wait, nullptr) > 0) ReceiveUdp(second, current);
      return;
    }
    std::vector<pollfd> fds;
    if (udp_ >= 0) fds.push_back({udp_, POLLIN, 0});
    for (auto& c : conns_)
      fds.push_back({c.fd, static_cast<short>(POLLIN | (c.out.empty() ? 0 : POLLOUT)), 0});
    if (::ppoll(fds.data(), fds.size(), &wait, nullptr) <= 0) return;
    if (udp_ >= 0 && (fds[0].revents & POLLIN)) ReceiveUdp(second, current);
    size_t base = udp_ >= 0 ? 1 : 0;
    for (size_t i = 0; i < conns_.size(); ++i) {
      if (fds[base + i].revents & (POLLIN | POLLERR | POLLHUP))
        ReceiveStream(conns_[i], second, current);
    }
  }

  // Returns the number of datagrams read.
  size_t ReceiveUdp(Histogram& second, Second& current) {
    size_t received = 0;
    constexpr size_t kBatch = 64;
    std::array<std::array<uint8_t, 1536>, kBatch> buffers;
    std::array<iovec, kBatch> iov;
    std::array<mmsghdr, kBatch> headers;
    for (int round = 0; round < 8; ++round) {
      for (size_t i = 0; i < kBatch; ++i) {
        iov[i] = {buffers[i].data(), buffers[i].size()};
        headers[i] = {};
        headers[i].msg_hdr.msg_iov = &iov[i];
        headers[i].msg_hdr.msg_iovlen = 1;
      }
      int n = ::recvmmsg(udp_, headers.data(), kBatch, MSG_DONTWAIT, nullptr);
      if (n <= 0) return received;
      received += static_cast<size_t>(n);
      for (int i = 0; i < n; ++i) {
        result_.bytes_in += headers[i].msg_len;
        const uint8_t* b = buffers[i].data();
        if (o_.protocol == Protocol::kDns) {
          if (headers[i].msg_len < KNOT_WIRE_HEADER_SIZE || !knot_wire_get_qr(b)) continue;
          uint16_t id = knot_wire_get_id(b);
          uint32_t s = id & 0xfff;
          if (s >= slots_.size() || !slots_[s].busy || (slots_[s].generation & 0xf) != id >> 12)
            continue;
          Complete(s, knot_wire_get_rcode(b), second, current);
          continue;
        }
        if (headers[i].msg_len < 20) continue;
        uint32_t id = Get32(b + 8), length = Get32(b + 16);
        uint32_t s = id & 0xfff;
        if (s >= slots_.size() || !slots_[s].busy ||
            (((slots_[s].generation << 12) | s) & 0x7fffffff) != id)
          continue;
        Slot& slot = slots_[s];
        slot.expected = length;
        slot.received += headers[i].msg_len - 20;
        if (slot.received >= slot.expected) {
          // The response code is in the first datagram; keep the code of whichever carried it.
          uint32_t code = Get32(b + 12) == 0 && headers[i].msg_len >= 28 ? Get32(b + 24) : 1;
          if (code == 402 && slot.write && !slot.answering &&
              AnswerChallenge(s, {b, headers[i].msg_len})) {
            continue;
          }
          Complete(s, code, second, current);
        }
      }
      if (static_cast<size_t>(n) < kBatch) return received;
    }
    return received;
  }

  void ReceiveStream(Connection& c, Histogram& second, Second& current) {
    std::array<uint8_t, 65536> buffer;
    for (;;) {
      ssize_t n = ::recv(c.fd, buffer.data(), buffer.size(), MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
        // Closed under us: every request waiting on it fails; reconnect.
        Reconnect(c, result_.errors, current.errors);
        return;
      }
      if (n < 0) break;
      result_.bytes_in += static_cast<uint64_t>(n);
      c.in.insert(c.in.end(), buffer.begin(), buffer.begin() + n);
      if (static_cast<size_t>(n) < buffer.size()) break;
    }
    size_t at = 0;
    while (!c.pending.empty()) {
      size_t available = c.in.size() - at;
      uint32_t code = 0;
      size_t consumed = 0;
      if (o_.protocol == Protocol::kTcp) {
        if (available < 20) break;
        uint32_t length = Get32(c.in.data() + at + 16);
        if (available < 20 + size_t{length}) break;
        code = length >= 8 ? Get32(c.in.data() + at + 24) : 0;
        consumed = 20 + length;
      } else {
        std::string_view text(reinterpret_cast<const char*>(c.in.data() + at), available);
        size_t head_end = text.find("\r\n\r\n");
        if (head_end == std::string_view::npos) break;
        code = static_cast<uint32_t>(std::atoi(std::string(text.substr(9, 3)).c_str()));
        size_t length = 0;
        std::string head(text.substr(0, head_end));
        for (char& ch : head) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        size_t cl = head.find("\r\ncontent-length:");
        if (cl != std::string::npos) length = std::strtoull(head.c_str() + cl + 17, nullptr, 10);
        if (available < head_end + 4 + length) break;
        consumed = head_end + 4 + length;
      }
      uint32_t s = c.pending.front();
      c.pending.pop_front();
      if (slots_[s].busy) {
        Slot& slot = slots_[s];
        if (!(code == 402 && slot.write && !slot.answering &&
              AnswerChallenge(s, {c.in.data() + at, consumed}))) {
          Complete(s, code, second, current);
        }
      }
      at += consumed;
    }
    c.in.erase(c.in.begin(), c.in.begin() + static_cast<ptrdiff_t>(at));
  }

  static constexpr size_t kMaxCreatedKept = 1'000'000;
  static constexpr size_t kMaxDnsQueriesKept = 4'000'000;

  const RunOptions& o_;
  KeySource& keys_;
  std::vector<Target> targets_;  // host:port alone, or the site's servers
  double write_credit_ = 0;
  uint64_t write_counter_ = 0;
  std::vector<std::string> created_;  // handles this run created, for modifications
  // Heterogeneous lookup: keys arrive as string_views.
  struct KeyHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, std::vector<uint8_t>, KeyHash, std::equal_to<>> dns_queries_;
  std::mt19937_64 rng_{std::random_device{}()};
  // Distinguishes this run's handles from an earlier run's under the same prefix.
  uint64_t run_tag_ = static_cast<uint64_t>(time(nullptr));
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_slots_;  // the slots not busy, a stack
  std::vector<Connection> conns_;
  static constexpr size_t kUdpRequestBytes = 512;
  std::vector<uint8_t> udp_buffers_;
  std::vector<iovec> udp_iov_;
  std::vector<mmsghdr> udp_headers_;
  size_t udp_queued_ = 0;
  int udp_ = -1;
  std::vector<sockaddr_storage> addrs_;
  std::vector<socklen_t> addr_lens_;
  Clock::time_point start_;
  RunResult result_;
};

std::string Json(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.3f", v);
  return buf;
}

}  // namespace

size_t WriteResolutionRequest(std::string_view handle, uint32_t request_id,
                              std::span<uint8_t> out) {
  const uint32_t body = 4 + static_cast<uint32_t>(handle.size()) + 4 + 4;
  const size_t size = 20 + 24 + body + 4;
  if (size > out.size()) return 0;
  uint8_t* p = out.data();
  auto put32 = [&p](uint32_t v) {
    p[0] = static_cast<uint8_t>(v >> 24);
    p[1] = static_cast<uint8_t>(v >> 16);
    p[2] = static_cast<uint8_t>(v >> 8);
    p[3] = static_cast<uint8_t>(v);
    p += 4;
  };
  put32(0x020b020b);  // version 2.11, suggesting 2.11
  put32(0);           // session
  put32(request_id);
  put32(0);  // sequence
  put32(24 + body + 4);
  put32(1);           // OC_RESOLUTION
  put32(0);           // a request
  put32(0x19000000);  // REC CA PO, as the CNRI client
  put32(0xffff0000);  // site info serial, recursion count, reserved
  put32(static_cast<uint32_t>(time(nullptr) + 43200));
  put32(body);
  put32(static_cast<uint32_t>(handle.size()));
  std::memcpy(p, handle.data(), handle.size());
  p += handle.size();
  put32(0);  // no indexes
  put32(0);  // no types
  put32(0);  // empty credential section
  return size;
}

std::vector<uint8_t> ResolutionRequest(std::string_view handle, uint32_t request_id) {
  std::vector<uint8_t> m(20 + 24 + 4 + handle.size() + 12);
  m.resize(WriteResolutionRequest(handle, request_id, m));
  return m;
}

RunResult Run(const RunOptions& options, KeySource& keys,
              const std::function<void(const Second&)>& progress) {
  if (options.concurrency == 0 || options.concurrency > 4096) {
    RunResult r;
    r.error = "--concurrency must be 1..4096";
    return r;
  }
  if (!options.targets.empty() &&
      (options.protocol == Protocol::kDns || options.targets.size() > 1024 || !options.route)) {
    RunResult r;
    r.error = options.protocol == Protocol::kDns
                  ? "a site's servers are driven over the Handle protocol or HTTP, not DNS"
                  : "a site of 1 to 1024 servers, with a route";
    return r;
  }
  const WriteMix& w = options.writes;
  if (w.share < 0 || w.share > 1) {
    RunResult r;
    r.error = "the share of writes must be from 0 to 1";
    return r;
  }
  if (w.share > 0 && (options.protocol == Protocol::kHttp || options.protocol == Protocol::kDns ||
                      w.prefix.empty() || w.identity_handle.empty() ||
                      (w.secret.empty() && w.private_key_pem.empty()))) {
    RunResult r;
    r.error = options.protocol == Protocol::kHttp || options.protocol == Protocol::kDns
                  ? "writes go over the Handle protocol (udp or tcp)"
                  : "writes need a prefix, an identity and its secret or key";
    return r;
  }
  auto cpu_seconds = [] {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
  };
  const double cpu_before = cpu_seconds();
  Engine engine(options, keys);
  RunResult result = engine.Go(progress);
  result.client_cpu_seconds = cpu_seconds() - cpu_before;
  return result;
}

std::string ToJson(const RunOptions& o, const RunResult& r) {
  static constexpr const char* kProtocols[] = {"udp", "tcp", "http", "dns"};
  std::string s =
      "{\"protocol\":\"" + std::string(kProtocols[static_cast<int>(o.protocol)]) +
      "\",\"server\":\"" + o.host + ":" + std::to_string(o.port) + "\",\"mode\":\"" +
      (o.rate > 0 ? "open" : "closed") + "\",\"concurrency\":" + std::to_string(o.concurrency) +
      ",\"rate\":" + Json(o.rate) + ",\"seconds\":" + Json(r.seconds) +
      ",\"sent\":" + std::to_string(r.sent) + ",\"answered\":" + std::to_string(r.answered) +
      ",\"timeouts\":" + std::to_string(r.timeouts) + ",\"errors\":" + std::to_string(r.errors) +
      ",\"bytes_out\":" + std::to_string(r.bytes_out) +
      ",\"bytes_in\":" + std::to_string(r.bytes_in) +
      ",\"requests_per_second\":" + Json(r.seconds > 0 ? r.answered / r.seconds : 0) +
      ",\"client_cpu_seconds\":" + Json(r.client_cpu_seconds) +
      ",\"requests_per_client_cpu_second\":" +
      Json(r.client_cpu_seconds > 0 ? r.answered / r.client_cpu_seconds : 0) +
      ",\"write_share\":" + Json(o.writes.share) +
      ",\"writes_sent\":" + std::to_string(r.writes_sent) +
      ",\"writes_answered\":" + std::to_string(r.writes_answered) +
      ",\"send_lag_us\":{\"p50\":" + Json(r.send_lag.Percentile(0.5) / 1e3) +
      ",\"p99\":" + Json(r.send_lag.Percentile(0.99) / 1e3) +
      ",\"p999\":" + Json(r.send_lag.Percentile(0.999) / 1e3) +
      ",\"max\":" + Json(r.send_lag.max() / 1e3) + "}" +
      ",\"write_latency_us\":{\"p50\":" + Json(r.write_latency.Percentile(0.5) / 1e3) +
      ",\"p99\":" + Json(r.write_latency.Percentile(0.99) / 1e3) +
      ",\"max\":" + Json(r.write_latency.max() / 1e3) + "},\"write_codes\":{";
  bool first_write = true;
  for (const auto& [code, n] : r.write_codes) {
    s += (first_write ? "\"" : ",\"") + std::to_string(code) + "\":" + std::to_string(n);
    first_write = false;
  }
  s += "},\"latency_us\":{";
  const std::pair<const char*, double> qs[] = {
      {"p50", 0.5}, {"p90", 0.9}, {"p99", 0.99}, {"p999", 0.999}};
  for (const auto& [name, q] : qs)
    s += "\"" + std::string(name) + "\":" + Json(r.latency.Percentile(q) / 1e3) + ",";
  s += "\"max\":" + Json(r.latency.max() / 1e3) + ",\"mean\":" + Json(r.latency.mean() / 1e3) +
       "},\"codes\":{";
  bool first = true;
  for (const auto& [code, n] : r.codes) {
    s += (first ? "\"" : ",\"") + std::to_string(code) + "\":" + std::to_string(n);
    first = false;
  }
  s += "},\"servers\":[";
  for (size_t i = 0; i < r.targets.size(); ++i) {
    const auto& t = r.targets[i];
    s += (i ? "," : "") + std::string("{\"server\":\"") + t.server +
         "\",\"sent\":" + std::to_string(t.sent) + ",\"answered\":" + std::to_string(t.answered) +
         ",\"timeouts\":" + std::to_string(t.timeouts) + ",\"failed\":" + std::to_string(t.failed) +
         ",\"requests_per_second\":" + Json(r.seconds > 0 ? t.answered / r.seconds : 0) + "}";
  }
  s += "],\"timeline\":[";
  for (size_t i = 0; i < r.timeline.size(); ++i) {
    const auto& t = r.timeline[i];
    s += (i ? "," : "") + std::string("{\"t\":") + Json(t.at) +
         ",\"answered\":" + std::to_string(t.answered) + ",\"errors\":" + std::to_string(t.errors) +
         ",\"timeouts\":" + std::to_string(t.timeouts) + ",\"p50_us\":" + Json(t.p50_ns / 1e3) +
         ",\"p99_us\":" + Json(t.p99_ns / 1e3) + "}";
  }
  s += "],\"histogram_us\":[";
  auto buckets = r.latency.Buckets();
  for (size_t i = 0; i < buckets.size(); ++i) {
    s += (i ? ",[" : "[") + Json(buckets[i].first / 1e3) + "," + std::to_string(buckets[i].second) +
         "]";
  }
  return s + "]}";
}

namespace {

// A line chart as an SVG polyline, scaled to its own maximum.
std::string Chart(const std::string& title, const std::vector<double>& xs,
                  const std::vector<std::pair<std::string, std::vector<double>>>& series,
                  const std::string& unit, bool log_x = false) {
  const double w = 640, h = 240, pad = 40;
  double max_y = 0, max_x = 0, min_x = 1e300;
  for (const auto& [_, ys] : series) {
    for (double y : ys) max_y = std::max(max_y, y);
  }
  for (double x : xs) {
    max_x = std::max(max_x, x);
    min_x = std::min(min_x, x);
  }
  if (max_y <= 0) max_y = 1;
  if (xs.empty()) min_x = 0;
  auto sx = [&](double x) {
    if (log_x) {
      double lo = std::log10(std::max(min_x, 1e-9)), hi = std::log10(std::max(max_x, min_x * 10));
      return pad + (w - 2 * pad) * (std::log10(std::max(x, 1e-9)) - lo) / std::max(1e-9, hi - lo);
    }
    return pad + (w - 2 * pad) * (x - min_x) / std::max(1e-9, max_x - min_x);
  };
  auto sy = [&](double y) { return h - pad - (h - 2 * pad) * y / max_y; };
  static constexpr const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c"};
  std::string svg = "<h2>" + title + "</h2><svg xmlns='http://www.w3.org/2000/svg' width='" +
                    Json(w) + "' height='" + Json(h) + "' style='border:1px solid #ccc'>";
  svg += "<text x='5' y='15' font-size='11'>" + Json(max_y) + " " + unit + "</text>";
  svg += "<text x='5' y='" + Json(h - 5) + "' font-size='11'>" + Json(min_x) + "</text><text x='" +
         Json(w - 80) + "' y='" + Json(h - 5) + "' font-size='11'>" + Json(max_x) + "</text>";
  for (size_t k = 0; k < series.size(); ++k) {
    std::string points;
    for (size_t i = 0; i < xs.size() && i < series[k].second.size(); ++i) {
      points += Json(sx(xs[i])) + "," + Json(sy(series[k].second[i])) + " ";
    }
    svg += "<polyline fill='none' stroke='" + std::string(kColors[k % 3]) +
           "' stroke-width='2' points='" + points + "'/>";
    svg += "<text x='" + Json(w - 150) + "' y='" + Json(20 + 14 * static_cast<double>(k)) +
           "' font-size='12' fill='" + kColors[k % 3] + "'>" + series[k].first + "</text>";
  }
  return svg + "</svg>";
}

}  // namespace

std::string ToHtml(const RunOptions& o, const RunResult& r, const std::string& title) {
  std::vector<double> t, rps, p50, p99;
  for (const auto& s : r.timeline) {
    t.push_back(s.at);
    rps.push_back(static_cast<double>(s.answered));
    p50.push_back(s.p50_ns / 1e3);
    p99.push_back(s.p99_ns / 1e3);
  }
  std::vector<double> dist_x, dist_y;
  for (double q : {0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9999, 1.0}) {
    dist_x.push_back(r.latency.Percentile(q) / 1e3);
    dist_y.push_back(q * 100);
  }
  std::string html = "<!DOCTYPE html><html><head><meta charset='utf-8'><title>" + title +
                     "</title><style>body{font-family:sans-serif;margin:2em}td,th{padding:2px "
                     "10px;text-align:right}"
                     "</style></head><body><h1>" +
                     title + "</h1><table>";
  auto row = [&html](const std::string& k, const std::string& v) {
    html += "<tr><th>" + k + "</th><td>" + v + "</td></tr>";
  };
  row("server", o.host + ":" + std::to_string(o.port));
  row("mode", o.rate > 0 ? "open loop, " + Json(o.rate) + " requests/s"
                         : "closed loop, " + std::to_string(o.concurrency) + " in flight");
  row("requests/s", Json(r.seconds > 0 ? r.answered / r.seconds : 0));
  row("answered / sent", std::to_string(r.answered) + " / " + std::to_string(r.sent));
  row("timeouts, errors", std::to_string(r.timeouts) + ", " + std::to_string(r.errors));
  for (auto [name, q] : {std::pair{"p50", 0.5}, std::pair{"p90", 0.9}, std::pair{"p99", 0.99},
                         std::pair{"p99.9", 0.999}}) {
    row(std::string("latency ") + name, Json(r.latency.Percentile(q) / 1e3) + " us");
  }
  row("latency max", Json(r.latency.max() / 1e3) + " us");
  if (o.rate > 0) {
    // How far behind its schedule idbench itself sent: a tail here is the generator's.
    row("send lag p99 / max",
        Json(r.send_lag.Percentile(0.99) / 1e3) + " / " + Json(r.send_lag.max() / 1e3) + " us");
  }
  for (const auto& [code, n] : r.codes) row("code " + std::to_string(code), std::to_string(n));
  html += "</table>";
  html += Chart("Throughput over time", t, {{"answered/s", rps}}, "req/s");
  html += Chart("Latency over time", t, {{"p50", p50}, {"p99", p99}}, "us");
  html += Chart("Latency distribution (percentile by latency, log scale)", dist_x,
                {{"percentile", dist_y}}, "%", true);
  return html + "</body></html>\n";
}

}  // namespace idnode::loadgen
