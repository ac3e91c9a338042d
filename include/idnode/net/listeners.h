// net/: the listener layer every front end plugs into (Handle and DNS over UDP and TCP, HTTP, and
// later replication and HTTPS), as Knot has one layer under its query processing:
//  - sockets: SO_REUSEPORT sockets per worker, after checking that no other process holds the
//    port (OpenUdpSocket, OpenTcpAcceptor);
//  - workers: one thread and io_context each (WorkerPool);
//  - UDP: the batched socket (wait for readiness with Asio, drain with recvmmsg, answer with one
//    sendmmsg: ARCHITECTURE.md "The UDP hot path"), and a protocol-independent datagram loop over
//    it with the storage-pool hop and the response rate limit (udp_service.h);
//  - TCP: the accept loop with caps in all and per source, and back-off when descriptors or
//    memory run out (AcceptLoop); a connection's deadline watchdog; the framed request/response
//    session loop with idle and I/O deadlines and the storage-pool hop (tcp_session.h);
//  - the bounded storage pool that requests the caches cannot answer go to.
//
// A UdpBatchSocket belongs to one worker and runs on that worker's io_context thread only; a
// StoragePool is shared by a server's workers; a Deadline by one connection's session and watchdog;
// AcceptCounters by a server's acceptors.
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
#include <utility>
#include <vector>

#include "idnode/common/connection_caps.h"
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
// With `exclusive` (the first socket of a listener on a given port), the port is first bound
// without SO_REUSEPORT: if another process holds it (a second idnode started by mistake, which
// SO_REUSEPORT would otherwise let in to take part of the traffic with other data), the error says
// so and nothing is opened.
Result<boost::asio::ip::udp::socket, std::string> OpenUdpSocket(
    boost::asio::io_context& io, const boost::asio::ip::address& address, uint16_t port,
    std::string_view what, uint64_t receive_buffer, bool exclusive);
Result<std::unique_ptr<boost::asio::ip::tcp::acceptor>, std::string> OpenTcpAcceptor(
    boost::asio::io_context& io, const boost::asio::ip::address& address, uint16_t port,
    std::string_view what, bool exclusive);
// For a listener configured on port 0 that serves both UDP and TCP: an ephemeral port free for
// both on `address`. Taking the UDP socket's ephemeral port and then binding TCP to the same
// number fails whenever another process's connection already holds that TCP port; this tries
// ports the kernel hands out until one is free for both.
Result<uint16_t, std::string> PickPortFreeForBoth(const boost::asio::ip::address& address,
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

// Runs `work` on a thread of `storage`'s pool and resumes the calling coroutine on its own
// executor with the result: a RocksDB read or a signature check never runs on an event loop. The
// caller holds a slot (TryAcquire); it is released here whatever happens, and an exception thrown
// by `work` becomes `on_error` (the session ends rather than the process). (co_await post(pool)
// would not do: the awaiting coroutine is resumed on its own executor, so `work` would run on the
// event loop after all.)
template <typename T, typename Work>
boost::asio::awaitable<T> OnStoragePool(StoragePool& storage, Work work, T on_error) {
  struct Slot {
    StoragePool* pool;
    ~Slot() { pool->Release(); }
  } slot{&storage};
  co_return co_await boost::asio::co_spawn(
      storage.pool,
      [&]() -> boost::asio::awaitable<T> {
        T result = on_error;
        try {
          result = work();
        } catch (const std::exception&) {
          // on_error: a request that cannot be answered, not a process that stops.
        }
        co_return result;
      },
      boost::asio::use_awaitable);
}

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
// `socket` is the lowest layer of the connection's stream (the TCP socket under TLS too).
boost::asio::awaitable<void> Watchdog(boost::asio::ip::tcp::socket::lowest_layer_type& socket,
                                      std::shared_ptr<Deadline> deadline);

// A network worker: one thread running one io_context (ARCHITECTURE.md "Threads"), and the
// sockets it owns, closed on its own thread when the pool stops.
struct Worker {
  explicit Worker(size_t worker_index) : index(worker_index) {}
  size_t index;
  boost::asio::io_context io{1};
  std::thread thread;
  std::vector<std::function<void()>> closers;  // run on this worker's thread by Stop
};

// The workers of one server. Owned by the server; Run and Stop from the main thread.
class WorkerPool {
 public:
  explicit WorkerPool(uint32_t count);
  ~WorkerPool() { Stop(nullptr); }
  size_t size() const { return workers_.size(); }
  Worker& operator[](size_t i) { return *workers_[i]; }
  const Worker& operator[](size_t i) const { return *workers_[i]; }
  void Run();
  // Closes every worker's sockets on its own thread, lets what `storage` holds be answered
  // (answers posted back to a worker still go out), then stops the loops and joins the threads
  // (open TCP sessions end with them).
  void Stop(StoragePool* storage);

 private:
  std::vector<std::unique_ptr<Worker>> workers_;
  bool running_ = false;
};

// Accept failures of one server's acceptors (all its workers).
struct AcceptCounters {
  std::atomic<uint64_t> errors{0};    // accept() failed
  std::atomic<uint64_t> backoffs{0};  // ... for lack of descriptors or memory: the loop waited
};

// A connection counted by a ConnectionCaps; released when the slot is destroyed (the session that
// owns it ends), whatever way it ends.
class ConnectionSlot {
 public:
  ConnectionSlot() = default;
  ConnectionSlot(ConnectionCaps* caps, std::string source)
      : caps_(caps), source_(std::move(source)) {}
  ConnectionSlot(ConnectionSlot&& other) noexcept
      : caps_(std::exchange(other.caps_, nullptr)), source_(std::move(other.source_)) {}
  ConnectionSlot& operator=(ConnectionSlot&& other) noexcept {
    if (this != &other) {
      Release();
      caps_ = std::exchange(other.caps_, nullptr);
      source_ = std::move(other.source_);
    }
    return *this;
  }
  ~ConnectionSlot() { Release(); }
  const std::string& source() const { return source_; }

 private:
  void Release() {
    if (caps_ != nullptr) caps_->Release(source_);
    caps_ = nullptr;
  }
  ConnectionCaps* caps_ = nullptr;
  std::string source_;
};

using ConnectionHandler =
    std::function<void(boost::asio::ip::tcp::socket socket, ConnectionSlot slot)>;

// Accepts connections on `acceptor` until it is closed, on the acceptor's executor (a worker's
// loop, which keeps serving its UDP socket and timers meanwhile). Connections beyond the caps are
// closed at once and counted. When accept fails for lack of descriptors or memory (EMFILE,
// ENFILE, ENOBUFS, ENOMEM) the loop waits before trying again, 10 ms doubling to 1 s, instead of
// spinning on a listen queue that stays readable; other failures (a connection reset before it
// was accepted) are counted and the loop goes on.
boost::asio::awaitable<void> AcceptLoop(boost::asio::ip::tcp::acceptor& acceptor,
                                        ConnectionCaps& caps, AcceptCounters& counters,
                                        ConnectionHandler on_connection);

// idnode_accept_errors_total / idnode_accept_backoffs_total for `protocol` ("handle_tcp").
void AppendAcceptMetrics(std::string& out, std::string_view protocol,
                         const AcceptCounters& counters, bool help);

// The address of a connected socket's peer as text (the key of ConnectionCaps), "" if unknown.
std::string PeerAddress(const boost::asio::ip::tcp::socket& socket);

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

}  // namespace idnode::net
