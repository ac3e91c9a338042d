// net/: the pieces every UDP/TCP front end shares (the Handle listener here, the DNS listener in
// dns/): opening SO_REUSEPORT sockets, the batched UDP socket (wait for readiness with Asio, drain
// with recvmmsg, answer with one sendmmsg: ARCHITECTURE.md "The UDP hot path"), the bounded
// storage pool that cache misses go to, and the deadline watchdog of a TCP connection.
//
// A UdpBatchSocket belongs to one worker and runs on that worker's io_context thread only; a
// StoragePool is shared by a server's workers; a Deadline by one connection's session and watchdog.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "idnode/common/result.h"

namespace idnode::net {

// The IP of `addr` as 16 bytes, IPv4 as ::ffff:a.b.c.d (as a dual-stack socket reports it); all
// zeros for another family.
std::array<uint8_t, 16> AddressOf(const sockaddr_storage& addr);

using Clock = std::chrono::steady_clock;

uint64_t MicrosSince(Clock::time_point start);

// Opens and binds a UDP socket / a listening TCP acceptor with SO_REUSEPORT (each worker gets its
// own and the kernel spreads traffic over them). `what` names the listener in errors ("DNS UDP").
// `receive_buffer` is the UDP socket's SO_RCVBUF (the kernel caps it at net.core.rmem_max).
Result<boost::asio::ip::udp::socket, std::string> OpenUdpSocket(
    boost::asio::io_context& io, const boost::asio::ip::address& address, uint16_t port,
    std::string_view what, uint64_t receive_buffer);
Result<std::unique_ptr<boost::asio::ip::tcp::acceptor>, std::string> OpenTcpAcceptor(
    boost::asio::io_context& io, const boost::asio::ip::address& address, uint16_t port,
    std::string_view what);

// Storage work runs here: RocksDB reads (and admin writes) can stall, so they never run on a
// network worker. Bounded: past `capacity` jobs in flight, TryAcquire fails and the caller answers
// "busy" or drops.
struct StoragePool {
  StoragePool(uint32_t threads, uint32_t queue_capacity)
      : pool(threads), capacity(queue_capacity) {}
  boost::asio::thread_pool pool;
  uint32_t capacity;
  std::atomic<uint32_t> in_flight{0};
  std::atomic<uint64_t> refused{0};

  bool TryAcquire() {
    uint32_t n = in_flight.load();
    while (n < capacity) {
      if (in_flight.compare_exchange_weak(n, n + 1)) return true;
    }
    refused.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  void Release() { in_flight.fetch_sub(1); }
};

// The deadline of one TCP connection, shared by its session and its watchdog: the watchdog
// outlives neither the session's socket (it checks `done` before touching it) nor this state (it
// holds a reference). Both run on the worker's single thread.
struct Deadline {
  explicit Deadline(const boost::asio::any_io_executor& executor) : timer(executor) {}
  Clock::time_point at;
  boost::asio::steady_timer timer;
  bool done = false;

  // A deadline that moves earlier wakes the watchdog at once; one that moves later is picked up
  // when its timer next fires.
  void Set(Clock::time_point when) {
    bool earlier = when < at;
    at = when;
    if (earlier) timer.cancel();
  }
};

// Closes the socket when the connection's deadline passes (the watchdog of the Asio examples):
// one timer per connection, re-armed by every read and write.
boost::asio::awaitable<void> Watchdog(boost::asio::ip::tcp::socket& socket,
                                      std::shared_ptr<Deadline> deadline);

// One UDP socket of one worker, read and written in batches. Each received datagram goes to
// `on_datagram`, which queues answers with Queue() or NextSendBuffer()/CommitSend(); what is
// queued goes out with one sendmmsg after each received batch (or when the send batch is full).
// At most 16 batches are read per wake-up, so one busy socket cannot starve the worker's other
// work. `on_drop` counts datagrams dropped: truncated on receipt (larger than `max_receive`), or
// not sent because the socket buffer was full (never block the worker: clients retry).
class UdpBatchSocket {
 public:
  using DatagramHandler = std::function<void(std::span<const uint8_t> datagram,
                                             const sockaddr_storage& from, socklen_t from_len)>;
  // Sees every received batch before its datagrams are handled one by one (for prefetching).
  using BatchHandler = std::function<void(std::span<const std::span<const uint8_t>> batch)>;
  UdpBatchSocket(boost::asio::ip::udp::socket socket, uint32_t batch, size_t max_receive,
                 uint32_t send_capacity, size_t max_send, DatagramHandler on_datagram,
                 std::function<void()> on_drop, BatchHandler on_batch = {});

  void Start() { Arm(); }
  void Close();

  // A buffer of max_send bytes for the next datagram to send (a full send batch is flushed
  // first); CommitSend() queues the first `length` bytes of it for `to`.
  std::span<uint8_t> NextSendBuffer();
  void CommitSend(size_t length, const sockaddr_storage& to, socklen_t to_len);
  // Queues a copy of `datagram` (at most max_send bytes; longer ones are dropped).
  void Queue(std::span<const uint8_t> datagram, const sockaddr_storage& to, socklen_t to_len);
  void Flush();

 private:
  void Arm();
  void Drain();

  boost::asio::ip::udp::socket socket_;
  const uint32_t batch_;
  const size_t max_receive_;
  const uint32_t send_capacity_;
  const size_t max_send_;
  DatagramHandler on_datagram_;
  std::function<void()> on_drop_;
  BatchHandler on_batch_;
  std::vector<std::span<const uint8_t>> batch_views_;
  std::vector<uint8_t> rx_buffers_;
  std::vector<sockaddr_storage> rx_addresses_;
  std::vector<iovec> rx_iov_;
  std::vector<mmsghdr> rx_headers_;
  uint32_t tx_count_ = 0;
  std::vector<uint8_t> tx_buffers_;
  std::vector<sockaddr_storage> tx_addresses_;
  std::vector<iovec> tx_iov_;
  std::vector<mmsghdr> tx_headers_;
};

// The worker threads of a listener. `Worker` has an io_context `io`, a std::thread `thread`,
// `acceptors` (unique_ptrs to tcp::acceptor) and `udp` (unique_ptrs to something with Close()).
// RunWorker starts the worker's loop on its thread; StopWorkers closes every worker's sockets on
// its own thread, lets what the storage pool holds be answered, then stops and joins the loops
// (open TCP sessions end with them).
template <typename Worker>
void RunWorker(Worker& worker) {
  Worker* w = &worker;
  worker.thread = std::thread([w] {
    auto guard = boost::asio::make_work_guard(w->io);
    w->io.run();
  });
}

template <typename Worker>
void StopWorkers(std::vector<std::unique_ptr<Worker>>& workers, StoragePool& storage) {
  for (auto& worker : workers) {
    Worker* w = worker.get();
    boost::asio::post(w->io, [w] {
      for (auto& acceptor : w->acceptors) {
        boost::system::error_code ignored;
        acceptor->close(ignored);
      }
      for (auto& listener : w->udp) listener->Close();
    });
  }
  storage.pool.join();
  for (auto& worker : workers) worker->io.stop();
  for (auto& worker : workers) {
    if (worker->thread.joinable()) worker->thread.join();
  }
}

}  // namespace idnode::net
