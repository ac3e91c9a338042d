#include "resolve_client.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <optional>
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

// A query's message without its body: the flags and the 12-hour expiration real clients send.
Message QueryOf(OpCode opcode, uint32_t request_id) {
  Message m;
  m.envelope.request_id = request_id;
  m.header.opcode = static_cast<uint32_t>(opcode);
  m.header.op_flags = opflag::kRecursive | opflag::kCacheCertify | opflag::kPublicOnly;
  m.header.expiration_time =
      static_cast<uint32_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count() +
                            12 * 3600);
  return m;
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
  Message m = QueryOf(OpCode::kResolution, request_id);
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

namespace {

struct Exchanged {
  std::vector<uint8_t> response;
  std::string via;
  std::string error;
};

// One resolution at one server: over UDP with the CNRI client's retry schedule, then TCP.
Exchanged Exchange(const ResolveOptions& o) {
  Exchanged out;
  sockaddr_storage to{};
  socklen_t to_len = 0;
  if (!Address(o.host, o.port, &to, &to_len)) {
    out.error = "cannot resolve host " + o.host;
    return out;
  }
  std::mt19937 rng(std::random_device{}());
  uint32_t request_id = rng() & 0x7fffffff;
  std::vector<uint8_t> request = BuildRequest(o, request_id);
  if (!o.tcp_only) {
    for (int timeout : {500, 1000, 1500}) {  // the CNRI client's udpRetryScheme
      out.response = TryUdp(to, to_len, request, request_id, timeout);
      if (!out.response.empty()) {
        out.via = "udp";
        return out;
      }
    }
  }
  if (!o.udp_only) {
    out.response = TryTcp(o.host, o.port, request, 5000);
    out.via = "tcp";
  }
  if (out.response.empty()) out.error = "no answer from " + o.host + ":" + std::to_string(o.port);
  return out;
}

std::string DataText(const HandleValue& v) {
  if (v.type == kTypeAdmin) {
    auto admin = DecodeAdminRecord(v.data);
    if (admin.ok()) {
      return std::to_string(admin->admin_index) + ":" + std::string(admin->admin_handle) + " " +
             AdminPermissionString(admin->permissions);
    }
  }
  bool text = IsValidUtf8(v.data_as_text());
  for (unsigned char c : v.data_as_text()) text = text && c >= 0x20;
  return text ? std::string(v.data_as_text()) : "(" + std::to_string(v.data.size()) + " bytes)";
}

void PrintValues(const std::vector<HandleValue>& values) {
  std::printf("%7s  %-12s %-20s %6s  %s\n", "index", "type", "timestamp", "ttl", "data");
  for (const auto& v : values) {
    std::printf("%7d  %-12s %-20s %6d  %s\n", v.index, std::string(v.type).c_str(),
                registry::FormatIsoTime(v.timestamp).c_str(), v.ttl, DataText(v).c_str());
  }
}

int Print(const ResolveOptions& o, const Message& decoded, const std::string& via) {
  uint32_t rc = decoded.header.response_code;
  const auto* values = std::get_if<HandleValuesBody>(&decoded.body);
  if (o.json) {
    google::protobuf::RepeatedPtrField<proto::Value> stored;
    if (values) {
      for (const auto& v : values->values) *stored.Add() = registry::ToStored(v);
    }
    std::cout << R"({"responseCode":)" << rc << R"(,"handle":")" << o.handle << "\"";
    if (values) std::cout << R"(,"values":)" << registry::ValuesToJson(stored);
    if (const auto* e = std::get_if<ErrorBody>(&decoded.body); e && !e->message.empty()) {
      std::cout << R"(,"message":")" << e->message << "\"";
    }
    std::cout << "}\n";
  } else {
    std::cout << o.handle << ": " << ResponseCodeName(rc) << " (" << rc << ") via " << via << "\n";
    if (values) {
      PrintValues(values->values);
    } else if (const auto* e = std::get_if<ErrorBody>(&decoded.body); e && !e->message.empty()) {
      std::cout << "  " << e->message << "\n";
    } else if (const auto* r = std::get_if<ReferralBody>(&decoded.body)) {
      std::cout << "  referral with " << r->values.size() << " values\n";
    }
  }
  return rc == static_cast<uint32_t>(ResponseCode::kSuccess) ? 0 : 3;
}

// ---- the walk ----

struct Endpoint {
  std::string host;
  uint16_t port = 0;
  bool tcp = false;
  std::string Text() const {
    bool v6 = host.find(':') != std::string::npos;
    return std::string(tcp ? "tcp://" : "udp://") + (v6 ? "[" + host + "]" : host) + ":" +
           std::to_string(port);
  }
};

// The server a client asks for `handle` among the sites in `values` of the given types: a
// primary site first, the server by the site's hash, its UDP query interface (TCP with tcp_only,
// or when the site has no UDP).
std::optional<Endpoint> PickServer(const std::vector<HandleValue>& values,
                                   const std::vector<std::string_view>& site_types,
                                   std::string_view handle, bool tcp_only) {
  std::vector<SiteInfo> sites;
  for (const auto& v : values) {
    bool wanted = false;
    for (auto t : site_types) wanted = wanted || registry::TypeMatches(t, v.type);
    if (!wanted) continue;
    auto site = DecodeSiteInfo(v.data);
    if (site.ok() && !site->servers.empty()) sites.push_back(*site);
  }
  std::stable_sort(sites.begin(), sites.end(), [](const SiteInfo& a, const SiteInfo& b) {
    return a.is_primary() > b.is_primary();
  });
  for (const auto& site : sites) {
    int32_t index = SiteServerIndex(handle, static_cast<HashOption>(site.hash_option),
                                    static_cast<uint32_t>(site.servers.size()));
    // The INT_MIN quirk (Java's abs leaves it negative), folded as the servers fold it
    // (Registry::HashedToServer): the server that holds the identifier.
    if (index < 0) index += static_cast<int32_t>(site.servers.size());
    const SiteServer& server = site.servers[static_cast<size_t>(index) % site.servers.size()];
    std::optional<Endpoint> udp, tcp;
    for (const auto& i : server.interfaces) {
      if (i.type != interface_type::kQuery && i.type != interface_type::kBoth) continue;
      if (i.protocol == interface_protocol::kUdp && !udp)
        udp = Endpoint{protocol::SiteAddressText(server.address), static_cast<uint16_t>(i.port),
                       false};
      if (i.protocol == interface_protocol::kTcp && !tcp)
        tcp = Endpoint{protocol::SiteAddressText(server.address), static_cast<uint16_t>(i.port),
                       true};
    }
    if (!tcp_only && udp) return udp;
    if (tcp) return tcp;
  }
  return std::nullopt;
}

std::vector<HandleValue> ValuesOf(const Message& m) {
  if (const auto* v = std::get_if<HandleValuesBody>(&m.body)) return v->values;
  if (const auto* r = std::get_if<ReferralBody>(&m.body)) return r->values;
  return {};
}

int Walk(const ResolveOptions& o) {
  std::string handle = o.handle;
  const bool prefix_handle_only =
      handle.find('/') == std::string::npos ||
      (handle.size() > 5 && registry::TypeMatches("0.NA/", handle.substr(0, 5)));
  std::string prefix_handle = handle.find('/') == std::string::npos ? "0.NA/" + handle
                              : prefix_handle_only                  ? handle
                                                   : "0.NA/" + handle.substr(0, handle.find('/'));
  Endpoint at{o.host, o.port, o.tcp_only};
  int hop = 0;
  // The bytes of the last answer: the decoded message (and its values) are views into them.
  std::vector<uint8_t> last_response;
  auto ask = [&](const std::string& name, const std::vector<std::string>& types,
                 Message* decoded) -> bool {
    ResolveOptions one = o;
    one.handle = name;
    one.host = at.host;
    one.port = at.port;
    one.tcp_only = at.tcp;
    one.types = types;
    if (!types.empty()) one.indexes.clear();
    Exchanged e = Exchange(one);
    ++hop;
    if (!e.error.empty()) {
      std::cout << "hop " << hop << ": " << name << " at " << at.Text() << ": " << e.error << "\n";
      return false;
    }
    last_response = std::move(e.response);
    auto message = DecodeMessage(last_response);
    if (!message.ok()) {
      std::cout << "hop " << hop << ": " << name << " at " << at.Text() << ": undecodable answer\n";
      return false;
    }
    *decoded = *message;
    uint32_t rc = message->header.response_code;
    std::cout << "hop " << hop << ": " << name << " at " << at.Text() << " (" << e.via << ") -> "
              << ResponseCodeName(rc) << " (" << rc << ")";
    if (const auto* r = std::get_if<ReferralBody>(&message->body); r && !r->handle.empty())
      std::cout << " referral handle " << r->handle;
    auto values = ValuesOf(*message);
    if (!values.empty()) std::cout << ", " << values.size() << " value(s)";
    std::cout << "\n";
    return true;
  };

  // 1. The prefix handle, following prefix referrals to the service of a derived prefix.
  static const std::vector<std::string> kLocation = {
      "HS_SITE", "HS_SITE.6", "HS_SERV", "HS_SITE.PREFIX", "HS_SERV.PREFIX", "HS_NA_DELEGATE"};
  Message answer;
  std::vector<HandleValue> sites;
  for (;;) {
    if (hop >= o.max_hops) {
      std::cout << "too many hops\n";
      return 3;
    }
    if (!ask(prefix_handle, prefix_handle_only ? o.types : kLocation, &answer)) return 1;
    const auto rc = static_cast<ResponseCode>(answer.header.response_code);
    if (rc == ResponseCode::kPrefixReferral || rc == ResponseCode::kServiceReferral) {
      auto next = PickServer(ValuesOf(answer),
                             rc == ResponseCode::kPrefixReferral
                                 ? std::vector<std::string_view>{"HS_SITE.PREFIX", "HS_NA_DELEGATE"}
                                 : std::vector<std::string_view>{"HS_SITE", "HS_SITE.6"},
                             prefix_handle, o.tcp_only);
      if (!next) {
        std::cout << "  no site to follow in the referral\n";
        return 3;
      }
      at = *next;
      continue;
    }
    if (rc != ResponseCode::kSuccess) return Print(o, answer, at.Text());
    if (prefix_handle_only) {
      ResolveOptions shown = o;
      shown.handle = prefix_handle;
      return Print(shown, answer, at.Text());
    }
    sites = ValuesOf(answer);
    break;
  }
  // 2. The identifier, at the site of its prefix, following service referrals.
  for (;;) {
    auto next = PickServer(sites, {"HS_SITE", "HS_SITE.6"}, handle, o.tcp_only);
    if (!next) {
      std::cout << "  " << prefix_handle << " names no site to ask\n";
      return 3;
    }
    at = *next;
    if (hop >= o.max_hops) {
      std::cout << "too many hops\n";
      return 3;
    }
    if (!ask(handle, {}, &answer)) return 1;
    if (answer.header.response_code != static_cast<uint32_t>(ResponseCode::kServiceReferral))
      return Print(o, answer, at.Text());
    sites = ValuesOf(answer);
  }
}

}  // namespace

int Resolve(const ResolveOptions& options) {
  if (options.walk) return Walk(options);
  ResolveOptions o = options;
  std::string routed;  // how the site's hash picked the server, when it did
  const size_t slash = o.handle.find('/');
  // At most two asks: the named server, then, after its 301 "Request was hashed incorrectly"
  // (another server of its site holds it; not a 301 for a prefix that does not live there), the
  // server the site's hash picks, found as the field's clients find it. Only then, so that a
  // one-server node costs no extra round trip.
  for (bool first = true;; first = false) {
    Exchanged e = Exchange(o);
    if (!e.error.empty()) {
      std::cerr << "idctl: " << e.error << "\n";
      return 1;
    }
    auto decoded = DecodeMessage(e.response);
    if (!decoded.ok()) {
      std::cerr << "idctl: undecodable answer: " << ErrorCodeName(decoded.error().code) << "\n";
      return 1;
    }
    const auto* refusal = std::get_if<ErrorBody>(&decoded->body);
    if (first && o.route_by_site && slash != std::string::npos &&
        decoded->header.response_code ==
            static_cast<uint32_t>(ResponseCode::kServerNotResponsible) &&
        refusal != nullptr && refusal->message == "Request was hashed incorrectly") {
      auto site = SiteOfPrefix(o.handle.substr(0, slash), o.host, o.port);
      if (site.ok()) {
        const uint32_t k = site->ServerFor(o.handle);
        const auto& server = site->servers[k];
        const uint16_t port = o.tcp_only || server.udp == 0 ? server.tcp : server.udp;
        if (port != 0 && !(server.host == o.host && port == o.port)) {
          o.host = server.host;
          o.port = port;
          if (server.udp == 0) o.tcp_only = true;
          routed = ", server " + std::to_string(k) + " of " + std::to_string(site->servers.size()) +
                   " (" + o.host + ":" + std::to_string(o.port) + ") by the site's hash";
          continue;
        }
      }
    }
    return Print(o, *decoded, e.via + routed);
  }
}

uint32_t SiteRoute::ServerFor(std::string_view handle) const {
  if (servers.empty()) return 0;
  int32_t index = SiteServerIndex(handle, hash, static_cast<uint32_t>(servers.size()));
  if (index < 0) index += static_cast<int32_t>(servers.size());
  return static_cast<uint32_t>(index) % static_cast<uint32_t>(servers.size());
}

namespace {

// Whether `site` lists host:port among its servers' Handle interfaces.
bool ListsServer(const SiteInfo& site, const std::string& host, uint16_t port) {
  for (const auto& server : site.servers) {
    for (const auto& i : server.interfaces) {
      if (i.protocol != interface_protocol::kHttp && i.protocol != interface_protocol::kHttps &&
          i.port == port && protocol::SiteAddressText(server.address) == host)
        return true;
    }
  }
  return false;
}

SiteRoute RouteOf(const SiteInfo& site) {
  SiteRoute route;
  route.hash = static_cast<HashOption>(site.hash_option);
  for (const auto& server : site.servers) {
    SiteRoute::Server s;
    s.host = protocol::SiteAddressText(server.address);
    for (const auto& i : server.interfaces) {
      const bool query = i.type == interface_type::kQuery || i.type == interface_type::kBoth;
      const auto p = static_cast<uint16_t>(i.port);
      if (query && i.protocol == interface_protocol::kUdp && s.udp == 0) s.udp = p;
      if (query && i.protocol == interface_protocol::kTcp && s.tcp == 0) s.tcp = p;
      if (i.protocol == interface_protocol::kHttp && s.http == 0) s.http = p;
    }
    route.servers.push_back(std::move(s));
  }
  return route;
}

// The site of the server at host:port itself (OC_GET_SITE_INFO over TCP, as the reference
// client asks it), when it is a site of several servers that lists host:port.
std::optional<SiteRoute> OwnSiteOf(const std::string& host, uint16_t port) {
  std::mt19937 rng(std::random_device{}());
  Message m = QueryOf(OpCode::kGetSiteInfo, rng() & 0x7fffffff);
  m.body = HandleBody{"/"};
  std::vector<uint8_t> request(EncodedMessageSize(m));
  if (!EncodeMessage(m, request).ok()) return std::nullopt;
  const std::vector<uint8_t> response = TryTcp(host, port, request, 5000);
  auto decoded = DecodeMessage(response);
  if (!decoded.ok() ||
      decoded->header.response_code != static_cast<uint32_t>(ResponseCode::kSuccess))
    return std::nullopt;
  const auto* body = std::get_if<SiteInfoBody>(&decoded->body);
  if (body == nullptr) return std::nullopt;
  auto site = DecodeSiteInfo(body->site_data);
  if (!site.ok() || site->servers.size() < 2 || !ListsServer(*site, host, port))
    return std::nullopt;
  return RouteOf(*site);
}

}  // namespace

Result<SiteRoute, std::string> SiteOfPrefix(const std::string& prefix, const std::string& host,
                                            uint16_t port) {
  ResolveOptions one;
  one.handle = "0.NA/" + prefix;
  one.types = {"HS_SITE"};
  one.host = host;
  one.port = port;
  one.tcp_only = true;
  Exchanged e = Exchange(one);
  std::string why = e.error;
  if (why.empty()) {
    auto decoded = DecodeMessage(e.response);
    if (!decoded.ok()) {
      why = "an undecodable answer for " + one.handle;
    } else if (decoded->header.response_code != static_cast<uint32_t>(ResponseCode::kSuccess)) {
      why = one.handle + ": " + std::string(ResponseCodeName(decoded->header.response_code));
    } else {
      std::vector<SiteInfo> sites;
      for (const auto& v : ValuesOf(*decoded)) {
        if (!registry::TypeMatches("HS_SITE", v.type)) continue;
        auto site = DecodeSiteInfo(v.data);
        if (site.ok() && site->servers.size() >= 2 && ListsServer(*site, host, port))
          sites.push_back(*site);
      }
      if (!sites.empty()) {
        std::stable_sort(sites.begin(), sites.end(), [](const SiteInfo& a, const SiteInfo& b) {
          return a.is_primary() > b.is_primary();
        });
        return RouteOf(sites.front());
      }
      why = one.handle + " names no site of several servers that " + host + ":" +
            std::to_string(port) + " belongs to";
    }
  }
  // A mirror site's servers do not hold the prefix handle (it is the parent's): the server's own
  // site record, which is how a client that knows one server of a site learns the others. Not
  // when the server did not answer at all (a second wait for nothing).
  if (!e.error.empty()) return Failure{why};
  if (auto own = OwnSiteOf(host, port)) return *own;
  return Failure{why + ", and " + host + ":" + std::to_string(port) +
                 " is not a server of a site of several"};
}

std::optional<RoutedServer> AdminServerFor(const std::string& handle, const std::string& host,
                                           uint16_t port) {
  const size_t slash = handle.find('/');
  if (slash == std::string::npos || registry::TypeMatches("0.NA/", handle.substr(0, 5)))
    return std::nullopt;  // a prefix handle: every server of a site holds it
  auto site = SiteOfPrefix(handle.substr(0, slash), host, port);
  if (!site.ok()) return std::nullopt;  // one server, or not this server's site
  const auto& server = site->servers[site->ServerFor(handle)];
  if (server.tcp == 0) return std::nullopt;
  return RoutedServer{server.host, server.tcp};
}

}  // namespace idnode::cmd
