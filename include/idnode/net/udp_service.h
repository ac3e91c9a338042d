// net/: a datagram protocol on one UDP socket of one worker (a UdpBatchSocket): every received
// datagram goes to the protocol's Handler; answers from memory go out in the batch's sendmmsg;
// requests the caches cannot answer go to the bounded storage pool and their answers come back to
// this worker's thread to be sent. The Handle and DNS listeners are this loop with their handler.
//
// Owned by its server, one per worker socket; runs on the worker's thread, except the Handler's
// AnswerFromStorage (on a storage thread: it must use no worker-thread state). A Handler provides:
//   static constexpr size_t kMaxReceive, kMaxSend;  // datagram sizes
//   static constexpr uint32_t kSendSlotsPerRequest;   // datagrams one answer may need
//   static constexpr bool kPrefetch;                  // Prefetch(batch) sees each batch first
//   using Info = ...;                                 // what Count records of an answer
//   DatagramReply Receive(std::span<const uint8_t> datagram, const sockaddr_storage& from);
//   StorageReply<Info> AnswerFromStorage(std::span<const uint8_t> request,
//                                        const sockaddr_storage& from) const;
//   std::span<const uint8_t> Busy(std::span<const uint8_t> request);  // pool full (may be empty)
//   void Send(UdpBatchSocket& socket, std::span<const uint8_t> answer, const sockaddr_storage& to,
//             socklen_t to_len, size_t request_size);  // rate limit and datagram split
//   void Count(const Info& info, uint64_t latency_us);
//   void Dropped();
#pragma once

#include <boost/asio.hpp>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "idnode/net/listeners.h"

namespace idnode::net {

template <typename Info>
struct DatagramReply {
  enum class Kind : uint8_t {
    kAnswered,      // `answer` (valid until the next Receive) is the answer to `request`
    kNeedsStorage,  // `request` (valid until the next Receive) goes to the storage pool
    kDrop,          // nothing to answer: counted as dropped
    kPending,       // a part of a request still incomplete: nothing yet
  };
  Kind kind = Kind::kDrop;
  std::span<const uint8_t> request;
  std::span<const uint8_t> answer;
  Info info{};
};

template <typename Info>
struct StorageReply {
  bool answered = false;
  std::vector<uint8_t> answer;
  Info info{};
};

template <typename Handler>
class UdpService {
 public:
  using Info = typename Handler::Info;

  UdpService(Worker& worker, boost::asio::ip::udp::socket socket, uint32_t batch,
             StoragePool& storage, Handler handler)
      : worker_(worker),
        storage_(storage),
        handler_(std::move(handler)),
        socket_(
            std::move(socket), batch, Handler::kMaxReceive, batch * Handler::kSendSlotsPerRequest,
            Handler::kMaxSend,
            [this](std::span<const uint8_t> datagram, const sockaddr_storage& from,
                   socklen_t from_len) { Process(datagram, from, from_len); },
            [this] { handler_.Dropped(); },
            Handler::kPrefetch ? UdpBatchSocket::BatchHandler(
                                     [this](std::span<const std::span<const uint8_t>> received) {
                                       handler_.Prefetch(received);
                                     })
                               : UdpBatchSocket::BatchHandler{}) {}

  void Start() { socket_.Start(); }
  void Close() { socket_.Close(); }
  Handler& handler() { return handler_; }

 private:
  using Reply = DatagramReply<Info>;

  void Process(std::span<const uint8_t> datagram, const sockaddr_storage& from,
               socklen_t from_len) {
    const auto start = Clock::now();
    Reply r = handler_.Receive(datagram, from);
    switch (r.kind) {
      case Reply::Kind::kPending:
        return;
      case Reply::Kind::kDrop:
        handler_.Dropped();
        return;
      case Reply::Kind::kNeedsStorage:
        ToStorage(r.request, from, from_len, start);
        return;
      case Reply::Kind::kAnswered:
        break;
    }
    handler_.Send(socket_, r.answer, from, from_len, r.request.size());
    handler_.Count(r.info, MicrosSince(start));
  }

  void ToStorage(std::span<const uint8_t> request, const sockaddr_storage& from, socklen_t from_len,
                 Clock::time_point start) {
    if (!storage_.TryAcquire()) {
      std::span<const uint8_t> busy = handler_.Busy(request);
      if (!busy.empty()) handler_.Send(socket_, busy, from, from_len, request.size());
      handler_.Dropped();
      return;
    }
    std::vector<uint8_t> copy(request.begin(), request.end());
    boost::asio::post(
        storage_.pool, [this, copy = std::move(copy), from, from_len, start]() mutable {
          StorageReply<Info> reply = std::as_const(handler_).AnswerFromStorage(copy, from);
          storage_.Release();
          if (!reply.answered) return;
          const size_t request_size = copy.size();
          boost::asio::post(worker_.io,
                            [this, reply = std::move(reply), request_size, from, from_len, start] {
                              handler_.Send(socket_, reply.answer, from, from_len, request_size);
                              socket_.Flush();
                              handler_.Count(reply.info, MicrosSince(start));
                            });
        });
  }

  Worker& worker_;
  StoragePool& storage_;
  Handler handler_;
  UdpBatchSocket socket_;
};

// Sends `answer` as `datagrams` datagrams through `limiter` (HARDENING.md rows E, F): sent,
// dropped, or replaced by `slip(answer, out)` (an answer no larger than the request, or nothing).
template <typename Limiter, typename Write, typename Slip>
void SendRateLimited(Limiter& limiter, UdpBatchSocket& socket, const sockaddr_storage& to,
                     socklen_t to_len, uint32_t datagrams, Write&& write, Slip&& slip) {
  if (limiter.enabled()) {
    switch (limiter.Check(to, datagrams)) {
      case Limiter::Verdict::kSend:
        break;
      case Limiter::Verdict::kDrop:
        return;
      case Limiter::Verdict::kSlip: {
        std::span<const uint8_t> short_answer = slip();
        if (!short_answer.empty()) socket.Queue(short_answer, to, to_len);
        return;
      }
    }
  }
  write();
}

}  // namespace idnode::net
