#include "resolve_client.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <random>

#include "idnode/protocol/message.h"
#include "idnode/protocol/transport.h"
#include "idnode/protocol/value_types.h"
#include "idnode/registry/json_records.h"
#include "idnode/registry/values.h"

namespace idnode::cmd {

namespace {

using namespace idnode::protocol;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

bool Address(const std::string& host, uint16_t port, sockaddr_storage* out, socklen_t* len) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  addrinfo* result = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &result) != 0 ||
      result == nullptr)
    return false;
  std::memcpy(out, result->ai_addr, result->ai_addrlen);
  *len = result->ai_addrlen;
  freeaddrinfo(result);
  return true;
}

bool WaitReadable(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, timeout_ms) == 1;
}

std::vector<uint8_t> BuildRequest(const ResolveOptions& o, uint32_t request_id) {
  std::vector<uint8_t> indexes(o.indexes.size() * 4);
  for (size_t i = 0; i < o.indexes.size(); ++i) {
    uint32_t v = static_cast<uint32_t>(o.indexes[i]);
    for (int b = 0; b < 4; ++b) indexes[i * 4 + b] = static_cast<uint8_t>(v >> (24 - 8 * b));
  }
  std::vector<uint8_t> types;
  for (const auto& t : o.types) {
    uint32_t n = static_cast<uint32_t>(t.size());
    for (int b = 0; b < 4; ++b) types.push_back(static_cast<uint8_t>(n >> (24 - 8 * b)));
    types.insert(types.end(), t.begin(), t.end());
  }
  Message m;
  m.envelope.request_id = request_id;
  m.header.opcode = static_cast<uint32_t>(OpCode::kResolution);
  m.header.op_flags = opflag::kRecursive | opflag::kCacheCertify | opflag::kPublicOnly;
  m.header.expiration_time =
      static_cast<uint32_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count() +
                            12 * 3600);
  ResolutionRequest body;
  body.handle = o.handle;
  body.indexes = WireIntList(indexes, static_cast<uint32_t>(o.indexes.size()));
  body.types = WireTextList(types, static_cast<uint32_t>(o.types.size()));
  m.body = body;
  std::vector<uint8_t> out(EncodedMessageSize(m));
  (void)EncodeMessage(m, out);
  return out;
}

// One UDP exchange: sends and waits up to `timeout_ms` for the whole (possibly multi-datagram)
// answer.
std::vector<uint8_t> TryUdp(const sockaddr_storage& to, socklen_t to_len,
                            const std::vector<uint8_t>& request, uint32_t request_id,
                            int timeout_ms) {
  Fd fd(::socket(to.ss_family, SOCK_DGRAM, 0));
  if (fd.get() < 0) return {};
  if (request.size() > kMaxUdpDatagramSize) return {};  // this client sends small requests only
  ::sendto(fd.get(), request.data(), request.size(), 0, reinterpret_cast<const sockaddr*>(&to),
           to_len);
  UdpReassembler reassembler;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  std::array<uint8_t, kMaxUdpDatagramSize> buffer;
  for (;;) {
    int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                    deadline - std::chrono::steady_clock::now())
                                    .count());
    if (left <= 0 || !WaitReadable(fd.get(), left)) return {};
    ssize_t n = ::recv(fd.get(), buffer.data(), buffer.size(), 0);
    if (n < static_cast<ssize_t>(kEnvelopeSize)) continue;
    auto env = DecodeEnvelope(std::span<const uint8_t>(buffer.data(), static_cast<size_t>(n)));
    if (!env.ok() || env->request_id != request_id) continue;
    auto outcome =
        reassembler.Offer({}, std::span<const uint8_t>(buffer.data(), static_cast<size_t>(n)),
                          UdpReassembler::Clock::now());
    if (auto* done = std::get_if<UdpReassembler::Complete>(&outcome)) return done->message;
  }
}

std::vector<uint8_t> TryTcp(const std::string& host, uint16_t port,
                            const std::vector<uint8_t>& request, int timeout_ms) {
  HandleTcpConnection connection;
  if (!connection.Connect(host, port, timeout_ms) || !connection.Send(request)) return {};
  return connection.Receive();
}

}  // namespace

HandleTcpConnection::~HandleTcpConnection() {
  if (fd_ >= 0) ::close(fd_);
}

bool HandleTcpConnection::Connect(const std::string& host, uint16_t port, int timeout_ms) {
  sockaddr_storage to{};
  socklen_t to_len = 0;
  if (!Address(host, port, &to, &to_len)) return false;
  fd_ = ::socket(to.ss_family, SOCK_STREAM, 0);
  if (fd_ < 0) return false;
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  return ::connect(fd_, reinterpret_cast<const sockaddr*>(&to), to_len) == 0;
}

bool HandleTcpConnection::Send(const std::vector<uint8_t>& message) {
  return fd_ >= 0 && ::send(fd_, message.data(), message.size(), MSG_NOSIGNAL) ==
                         static_cast<ssize_t>(message.size());
}

std::vector<uint8_t> HandleTcpConnection::Receive() {
  if (fd_ < 0) return {};
  std::vector<uint8_t> message(kEnvelopeSize);
  auto read_exact = [this](uint8_t* p, size_t n) {
    while (n > 0) {
      ssize_t r = ::recv(fd_, p, n, 0);
      if (r <= 0) return false;
      p += r;
      n -= static_cast<size_t>(r);
    }
    return true;
  };
  if (!read_exact(message.data(), kEnvelopeSize)) return {};
  auto remainder =
      TcpFrameRemainder(std::span<const uint8_t, kEnvelopeSize>(message.data(), kEnvelopeSize));
  if (!remainder.ok()) return {};
  message.resize(kEnvelopeSize + *remainder);
  if (!read_exact(message.data() + kEnvelopeSize, *remainder)) return {};
  return message;
}

int Resolve(const ResolveOptions& o) {
  sockaddr_storage to{};
  socklen_t to_len = 0;
  if (!Address(o.host, o.port, &to, &to_len)) {
    std::cerr << "idctl: cannot resolve host " << o.host << "\n";
    return 2;
  }
  std::mt19937 rng(std::random_device{}());
  uint32_t request_id = rng() & 0x7fffffff;
  std::vector<uint8_t> request = BuildRequest(o, request_id);
  std::vector<uint8_t> response;
  std::string via;
  if (!o.tcp_only) {
    for (int timeout : {500, 1000, 1500}) {  // the CNRI client's udpRetryScheme
      response = TryUdp(to, to_len, request, request_id, timeout);
      if (!response.empty()) {
        via = "udp";
        break;
      }
    }
  }
  if (response.empty() && !o.udp_only) {
    response = TryTcp(o.host, o.port, request, 5000);
    via = "tcp";
  }
  if (response.empty()) {
    std::cerr << "idctl: no answer from " << o.host << ":" << o.port << "\n";
    return 1;
  }
  auto decoded = DecodeMessage(response);
  if (!decoded.ok()) {
    std::cerr << "idctl: undecodable answer: " << ErrorCodeName(decoded.error().code) << "\n";
    return 1;
  }
  uint32_t rc = decoded->header.response_code;
  const auto* values = std::get_if<HandleValuesBody>(&decoded->body);
  if (o.json) {
    google::protobuf::RepeatedPtrField<proto::Value> stored;
    if (values) {
      for (const auto& v : values->values) *stored.Add() = registry::ToStored(v);
    }
    std::cout << R"({"responseCode":)" << rc << R"(,"handle":")" << o.handle << "\"";
    if (values) std::cout << R"(,"values":)" << registry::ValuesToJson(stored);
    if (const auto* e = std::get_if<ErrorBody>(&decoded->body); e && !e->message.empty()) {
      std::cout << R"(,"message":")" << e->message << "\"";
    }
    std::cout << "}\n";
  } else {
    std::cout << o.handle << ": " << ResponseCodeName(rc) << " (" << rc << ") via " << via << "\n";
    if (values) {
      std::printf("%7s  %-12s %-20s %6s  %s\n", "index", "type", "timestamp", "ttl", "data");
      for (const auto& v : values->values) {
        std::string data;
        proto::Value stored = registry::ToStored(v);
        if (v.type == kTypeAdmin) {
          auto admin = DecodeAdminRecord(v.data);
          if (admin.ok()) {
            data = std::to_string(admin->admin_index) + ":" + std::string(admin->admin_handle) +
                   " " + AdminPermissionString(admin->permissions);
          }
        }
        if (data.empty()) {
          bool text = IsValidUtf8(v.data_as_text());
          for (unsigned char c : v.data_as_text()) text = text && c >= 0x20;
          data = text ? std::string(v.data_as_text())
                      : "(" + std::to_string(v.data.size()) + " bytes)";
        }
        std::printf("%7d  %-12s %-20s %6d  %s\n", v.index, std::string(v.type).c_str(),
                    registry::FormatIsoTime(v.timestamp).c_str(), v.ttl, data.c_str());
      }
    } else if (const auto* e = std::get_if<ErrorBody>(&decoded->body); e && !e->message.empty()) {
      std::cout << "  " << e->message << "\n";
    } else if (const auto* r = std::get_if<ReferralBody>(&decoded->body)) {
      std::cout << "  referral with " << r->values.size() << " values\n";
    }
  }
  return rc == static_cast<uint32_t>(ResponseCode::kSuccess) ? 0 : 3;
}

}  // namespace idnode::cmd
