// replication/ (room-private): reading and writing frames on a TLS stream, for the source and the
// replica sides. The connection's net::Deadline watchdog closes the socket when a deadline
// passes; these helpers set it around each operation.
#pragma once

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <optional>
#include <string>
#include <vector>

#include "idnode/net/listeners.h"
#include "idnode/replication/wire.h"

namespace idnode::replication::detail {

using Stream = boost::asio::ssl::stream<boost::asio::ip::tcp::socket>;

// Reads one frame's body into `body` (its capacity kept across frames); nullopt on success, else
// why the stream ended.
inline boost::asio::awaitable<std::optional<std::string>> ReadFrame(Stream& stream, uint32_t max,
                                                                    std::vector<uint8_t>& body) {
  namespace asio = boost::asio;
  std::array<uint8_t, kFrameHeadBytes> head{};
  auto [ec, n] =
      co_await asio::async_read(stream, asio::buffer(head), asio::as_tuple(asio::use_awaitable));
  if (ec) co_return "read: " + ec.message();
  auto length = FrameLength(head, max);
  if (!length.ok()) co_return length.error();
  body.resize(*length);  // bounded by `max`
  auto [body_ec, body_n] =
      co_await asio::async_read(stream, asio::buffer(body), asio::as_tuple(asio::use_awaitable));
  if (body_ec) co_return "read: " + body_ec.message();
  co_return std::nullopt;
}

// Writes `bytes` within `timeout`; afterwards the deadline is `idle` from now (how long the
// connection may then go without another write before the watchdog closes it).
inline boost::asio::awaitable<std::optional<std::string>> WriteAll(
    Stream& stream, const std::string& bytes, net::Deadline& deadline,
    std::chrono::milliseconds timeout, std::chrono::milliseconds idle) {
  namespace asio = boost::asio;
  deadline.Set(net::Clock::now() + timeout);
  auto [ec, n] =
      co_await asio::async_write(stream, asio::buffer(bytes), asio::as_tuple(asio::use_awaitable));
  deadline.Set(net::Clock::now() + idle);
  if (ec) co_return "write: " + ec.message();
  co_return std::nullopt;
}

}  // namespace idnode::replication::detail
