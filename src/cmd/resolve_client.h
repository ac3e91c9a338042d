// The Handle client behind `idctl resolve`: builds a resolution request, sends it over UDP with the
// retry schedule of real clients (500, 1000, 1500 ms) and then TCP, or over TCP only.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "idnode/common/result.h"
#include "idnode/protocol/value_types.h"

namespace idnode::cmd {

struct ResolveOptions {
  std::string handle;
  std::vector<std::string> types;
  std::vector<int32_t> indexes;
  std::string host = "127.0.0.1";
  uint16_t port = 2641;
  bool tcp_only = false;
  bool udp_only = false;
  bool json = false;
  // Start at the server and follow the answers (HANDLE.md §1.11), printing each hop: resolve
  // the prefix handle 0.NA/P, following prefix referrals (303) to the service of a derived
  // prefix, then resolve the identifier at the site its HS_SITE (or HS_SERV) values name,
  // following service referrals (302).
  bool walk = false;
  int max_hops = 10;
  // Without walk: when host:port answers RC 301 (another server of its site holds the handle),
  // the request is sent again to the server the site's hash picks (found from the prefix
  // handle's HS_SITE, as the field's clients route), unless this is false.
  bool route_by_site = true;
};

// Prints the answer; returns the process exit status (0 when the handle resolved).
int Resolve(const ResolveOptions& options);

// A site of several servers as a client routes by it: each server's Handle query ports (UDP, TCP)
// and HTTP port (0 where the site record names none), and the hash that picks one.
struct SiteRoute {
  struct Server {
    std::string host;
    uint16_t udp = 0;
    uint16_t tcp = 0;
    uint16_t http = 0;
  };
  std::vector<Server> servers;
  protocol::HashOption hash = protocol::HashOption::kWhole;
  // The index of the server that holds `handle`, with the INT_MIN quirk folded as the servers
  // fold it (registry::Registry::HashedToServer).
  uint32_t ServerFor(std::string_view handle) const;
};

// The site that serves `prefix`'s identifiers, found as the field's clients find it: the prefix
// handle 0.NA/<prefix> resolved at host:port (TCP), its HS_SITE values read, a primary site first;
// failing that (a mirror site's servers do not hold the parent's prefix handle), the server's own
// site record (OC_GET_SITE_INFO). Only a site that lists host:port itself among its servers
// counts: a copy of another node's data (a staging server) must not send traffic to the addresses
// in that data. An error names why there is none.
Result<SiteRoute, std::string> SiteOfPrefix(const std::string& prefix, const std::string& host,
                                            uint16_t port);

// Where an administrative request for `handle` goes when host:port is a server of a site of
// several servers (HANDLE.md §1.7): the site found by SiteOfPrefix, and the server its hash picks,
// as the reference's clients route. nullopt for a prefix handle, or when host:port is no server
// of such a site: the request then goes to host:port itself.
struct RoutedServer {
  std::string host;
  uint16_t port = 0;
};
std::optional<RoutedServer> AdminServerFor(const std::string& handle, const std::string& host,
                                           uint16_t port);

// One TCP connection to a Handle server, every send and receive bounded by `timeout_ms`. Used by
// `idctl resolve` and `idctl admin`; one thread.
class HandleTcpConnection {
 public:
  HandleTcpConnection() = default;
  ~HandleTcpConnection();
  HandleTcpConnection(const HandleTcpConnection&) = delete;
  HandleTcpConnection& operator=(const HandleTcpConnection&) = delete;

  bool Connect(const std::string& host, uint16_t port, int timeout_ms);
  bool Send(const std::vector<uint8_t>& message);
  // The next whole message (envelope + MessageLength bytes, capped as the server caps them);
  // empty on a timeout, a closed connection or a bad length.
  std::vector<uint8_t> Receive();

 private:
  int fd_ = -1;
};

}  // namespace idnode::cmd
