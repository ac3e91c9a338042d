#include "replication_status.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cstdio>
#include <cstring>
#include <iostream>

namespace idnode::cmd {

bool HttpGet(const std::string& host, uint16_t port, const std::string& path, std::string* body,
             std::string* why) {
  sockaddr_storage addr{};
  socklen_t length = 0;
  int family = AF_INET;
  if (auto* a4 = reinterpret_cast<sockaddr_in*>(&addr);
      inet_pton(AF_INET, host.c_str(), &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons(port);
    length = sizeof(sockaddr_in);
  } else if (auto* a6 = reinterpret_cast<sockaddr_in6*>(&addr);
             inet_pton(AF_INET6, host.c_str(), &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(port);
    length = sizeof(sockaddr_in6);
    family = AF_INET6;
  } else {
    *why = host + " is not an IP address";
    return false;
  }
  int fd = ::socket(family, SOCK_STREAM, 0);
  if (fd < 0) {
    *why = std::strerror(errno);
    return false;
  }
  timeval deadline{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &deadline, sizeof deadline);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &deadline, sizeof deadline);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), length) != 0) {
    *why = "cannot connect to " + host + ":" + std::to_string(port) + ": " + std::strerror(errno);
    ::close(fd);
    return false;
  }
  std::string request = "GET " + path + " HTTP/1.1\r\nHost: " + host +
                        "\r\nConnection: close\r\nAccept: application/json\r\n\r\n";
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    *why = std::string("send: ") + std::strerror(errno);
    ::close(fd);
    return false;
  }
  std::string response;
  char buffer[16384];
  for (;;) {
    ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n < 0) {
      *why = std::string("receive: ") + std::strerror(errno);
      ::close(fd);
      return false;
    }
    if (n == 0) break;
    response.append(buffer, static_cast<size_t>(n));
    if (response.size() > (64u << 20)) {
      *why = "answer too large";
      ::close(fd);
      return false;
    }
  }
  ::close(fd);
  size_t end = response.find("\r\n\r\n");
  if (end == std::string::npos || response.compare(0, 9, "HTTP/1.1 ") != 0) {
    *why = "not an HTTP answer";
    return false;
  }
  if (response.compare(9, 3, "200") != 0) {
    *why = response.substr(0, response.find("\r\n"));
    return false;
  }
  *body = response.substr(end + 4);
  return true;
}

namespace {

std::string Text(const boost::json::value& v) {
  if (v.is_string()) return std::string(v.as_string());
  if (v.is_uint64()) return std::to_string(v.as_uint64());
  if (v.is_int64()) return std::to_string(v.as_int64());
  if (v.is_double()) {
    char out[32];
    std::snprintf(out, sizeof out, "%.3f", v.as_double());
    return out;
  }
  return boost::json::serialize(v);
}

}  // namespace

int PrintReplicationStatus(const ReplicationStatusOptions& options) {
  std::string body, why;
  if (!HttpGet(options.host, options.port, "/api/replication", &body, &why)) {
    std::cerr << "idctl: " << why << "\n";
    return 1;
  }
  if (options.json) {
    std::cout << body << "\n";
    return 0;
  }
  boost::system::error_code ec;
  boost::json::value root = boost::json::parse(body, ec);
  if (ec || !root.is_object()) {
    std::cerr << "idctl: the node's answer is not JSON\n";
    return 1;
  }
  const auto& object = root.as_object();
  std::cout << "node " << Text(object.at("node")) << "\n";
  const auto* links = object.if_contains("links");
  if (links == nullptr || !links->is_array() || links->as_array().empty()) {
    std::cout << "no replication links\n";
    return 0;
  }
  for (const auto& link_value : links->as_array()) {
    const auto& l = link_value.as_object();
    std::cout << Text(l.at("direction")) << " " << Text(l.at("peer")) << " ("
              << Text(l.at("address")) << ") " << Text(l.at("state")) << "  subscription "
              << Text(l.at("subscription")) << "\n"
              << "  lag " << Text(l.at("lag_entries")) << " entries, " << Text(l.at("lag_seconds"))
              << " s; bytes sent " << Text(l.at("bytes_sent")) << ", received "
              << Text(l.at("bytes_received")) << "; records applied "
              << Text(l.at("records_applied")) << "; resyncs " << Text(l.at("resyncs")) << " ("
              << Text(l.at("snapshots")) << " shard snapshots)"
              << "; connects " << Text(l.at("connects")) << ", disconnects "
              << Text(l.at("disconnects")) << "\n";
    if (!Text(l.at("last_error")).empty())
      std::cout << "  last error: " << Text(l.at("last_error")) << "\n";
    for (const auto& shard_value : l.at("shards").as_array()) {
      const auto& s = shard_value.as_object();
      std::cout << "  shard " << Text(s.at("shard")) << ": position " << Text(s.at("position"))
                << " of " << Text(s.at("source_last")) << " (" << Text(s.at("behind"))
                << " behind)\n";
    }
  }
  return 0;
}

}  // namespace idnode::cmd
