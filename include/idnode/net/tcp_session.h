// net/: the request/response loop of one TCP connection, for every protocol that frames a request
// with a fixed-size head announcing the rest (the Handle protocol's 20-byte envelope, DNS's 2-byte
// length; replication's length-delimited Protobuf later). Several requests per connection,
// answered in order:
//  - between requests the connection may idle up to `idle_timeout`; once a request has begun (its
//    first byte arrived) every read and write must finish within `io_timeout` (a client sending a
//    byte a second is cut, as in Knot); a watchdog closes the socket when a deadline passes;
//  - a request the caches cannot answer goes to the bounded storage pool and the answer comes back
//    to the connection's worker; a full pool gets the protocol's "busy" answer or a close;
//  - each answer is built in the session's own buffer (never a worker's shared one across a
//    co_await), and buffers grown past 64 KiB by a large message are released after it.
// `Stream` is the TCP socket today; an asio::ssl::stream over it (TLS) works the same way, the
// watchdog closing its lowest layer.
//
// A Handler is one per connection, runs on the connection's worker thread, except
// AnswerFromStorage (on a storage thread: it must use no worker-thread state). It provides:
//   static constexpr size_t kHeadSize;
//   std::optional<size_t> BodySize(std::span<const uint8_t> head, std::vector<uint8_t>& reply);
//       the bytes after the head, or nullopt when the framing is lost (the connection closes,
//       after `reply` is sent if the handler put a last answer there)
//   SessionOutcome Answer(std::span<const uint8_t> request, std::vector<uint8_t>& reply);
//   SessionOutcome AnswerFromStorage(std::span<const uint8_t> request, std::vector<uint8_t>&
//   reply); SessionOutcome Busy(std::span<const uint8_t> request, std::vector<uint8_t>& reply);
//   SessionOutcome ContinueFromStorage(std::vector<uint8_t>& reply);  // only handlers that
//       stream long answers (kAnsweredMore) provide it: the next part, on a storage thread
//   void Answered(Clock::time_point start);  // after the answer was written: count it
//   void Dropped();                          // a request not answered: count it
#pragma once

#include <array>
#include <boost/asio.hpp>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "idnode/net/listeners.h"

namespace idnode::net {

enum class SessionOutcome : uint8_t {
  kAnswered,      // `reply` holds the answer, framing included
  kAnsweredMore,  // `reply` holds a part of a streamed answer: write it, then ask for the next
                  // part (ContinueFromStorage, on a storage thread) until kAnswered
  kNeedsStorage,  // run AnswerFromStorage on a storage thread
  kIgnore,        // nothing to answer (a response sent to us); keep the connection
  kClose,         // close the connection
};

struct TcpLimits {
  std::chrono::milliseconds idle_timeout{10000};
  std::chrono::milliseconds io_timeout{2000};
};

// Buffers larger than this are not kept once the message that grew them is answered.
inline constexpr size_t kKeptSessionBuffer = 64 * 1024;

template <typename Handler, typename Stream = boost::asio::ip::tcp::socket>
boost::asio::awaitable<void> ServeFramed(Stream stream, ConnectionSlot slot, TcpLimits limits,
                                         StoragePool& storage, Handler handler) {
  namespace asio = boost::asio;
  auto executor = co_await asio::this_coro::executor;
  auto watch = std::make_shared<Deadline>(executor);
  watch->at = Clock::now() + limits.idle_timeout;
  asio::co_spawn(executor, Watchdog(stream.lowest_layer(), watch), asio::detached);
  std::array<uint8_t, Handler::kHeadSize> head{};
  std::vector<uint8_t> request;
  std::vector<uint8_t> reply;
  for (;;) {
    watch->Set(Clock::now() + limits.idle_timeout);
    auto [ec, n] = co_await asio::async_read(stream, asio::buffer(head), asio::transfer_at_least(1),
                                             asio::as_tuple(asio::use_awaitable));
    if (ec) break;
    // The first byte ends the idle wait: the rest of the request must come within io_timeout.
    watch->Set(Clock::now() + limits.io_timeout);
    if (n < head.size()) {
      auto [rest_ec, rest_n] =
          co_await asio::async_read(stream, asio::buffer(head.data() + n, head.size() - n),
                                    asio::as_tuple(asio::use_awaitable));
      if (rest_ec) break;
    }
    const auto start = Clock::now();
    reply.clear();
    std::optional<size_t> body = handler.BodySize(head, reply);
    if (!body) {
      // The stream has lost its framing: answer what can be answered, then close.
      if (!reply.empty()) {
        watch->Set(Clock::now() + limits.io_timeout);
        co_await asio::async_write(stream, asio::buffer(reply),
                                   asio::as_tuple(asio::use_awaitable));
      }
      handler.Dropped();
      break;
    }
    request.resize(head.size() + *body);
    std::memcpy(request.data(), head.data(), head.size());
    if (*body > 0) {
      auto [read_ec, read_n] =
          co_await asio::async_read(stream, asio::buffer(request.data() + head.size(), *body),
                                    asio::as_tuple(asio::use_awaitable));
      if (read_ec) break;
    }
    SessionOutcome outcome = handler.Answer(request, reply);
    if (outcome == SessionOutcome::kNeedsStorage) {
      if (!storage.TryAcquire()) {
        outcome = handler.Busy(request, reply);
      } else {
        outcome = co_await OnStoragePool<SessionOutcome>(
            storage, [&] { return handler.AnswerFromStorage(request, reply); },
            SessionOutcome::kClose);
      }
    }
    if (outcome == SessionOutcome::kClose || outcome == SessionOutcome::kNeedsStorage) {
      handler.Dropped();
      break;
    }
    if (outcome == SessionOutcome::kIgnore) {
      handler.Dropped();
      continue;
    }
    watch->Set(Clock::now() + limits.io_timeout);
    auto [write_ec, written] = co_await asio::async_write(stream, asio::buffer(reply),
                                                          asio::as_tuple(asio::use_awaitable));
    if (write_ec) break;
    if constexpr (requires { handler.ContinueFromStorage(reply); }) {
      // A streamed answer: each part is made on a storage thread once the previous one is
      // written, so a slow reader holds one part in memory, and every write has its deadline.
      bool failed = false;
      while (outcome == SessionOutcome::kAnsweredMore) {
        if (!storage.TryAcquire()) {
          failed = true;  // the pool is full: the stream ends here, the connection closes
          break;
        }
        outcome = co_await OnStoragePool<SessionOutcome>(
            storage, [&] { return handler.ContinueFromStorage(reply); }, SessionOutcome::kClose);
        if (outcome != SessionOutcome::kAnswered && outcome != SessionOutcome::kAnsweredMore) {
          failed = true;
          break;
        }
        watch->Set(Clock::now() + limits.io_timeout);
        auto [more_ec, more_written] = co_await asio::async_write(
            stream, asio::buffer(reply), asio::as_tuple(asio::use_awaitable));
        if (more_ec) {
          failed = true;
          break;
        }
      }
      if (failed) break;
    }
    handler.Answered(start);
    if (request.capacity() > kKeptSessionBuffer) std::vector<uint8_t>().swap(request);
    if (reply.capacity() > kKeptSessionBuffer) std::vector<uint8_t>().swap(reply);
  }
  boost::system::error_code ignored;
  stream.lowest_layer().close(ignored);
  watch->done = true;
  watch->timer.cancel();  // the watchdog wakes, sees `done`, and ends without touching the socket
  (void)slot;             // released here, with the connection
}

}  // namespace idnode::net
