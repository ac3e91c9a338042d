#include "idnode/net/listeners.h"

#include "idnode/metrics/metrics.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <future>

namespace idnode::net {

std::array<uint8_t, 16> AddressOf(const sockaddr_storage& addr) {
  std::array<uint8_t, 16> out{};
  if (addr.ss_family == AF_INET) {
    out[10] = out[11] = 0xff;
    std::memcpy(out.data() + 12, &reinterpret_cast<const sockaddr_in*>(&addr)->sin_addr, 4);
  } else if (addr.ss_family == AF_INET6) {
    std::memcpy(out.data(), &reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_addr, 16);
  }
  return out;
}

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;

namespace {

void SetReusePort(int fd) {
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
}

std::string Where(std::string_view what, const asio::ip::address& address, uint16_t port) {
  return "cannot bind " + std::string(what) + " " + address.to_string() + ":" +
         std::to_string(port) + ": ";
}

// Binds a socket of `type` to `address`:`port` without SO_REUSEPORT (TCP with SO_REUSEADDR, so
// that connections of an earlier run in TIME_WAIT do not count). Returns the fd (the caller
// closes it) and the bound port, or -1 with the bind's errno in `*error`.
int BindProbe(const asio::ip::address& address, uint16_t port, int type, uint16_t* bound_port,
              int* error) {
  const int family = address.is_v4() ? AF_INET : AF_INET6;
  int fd = ::socket(family, type, 0);
  if (fd < 0) {
    *error = errno;
    return -1;
  }
  if (type == SOCK_STREAM) {
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  }
  sockaddr_storage addr{};
  socklen_t length = 0;
  if (address.is_v4()) {
    auto* a = reinterpret_cast<sockaddr_in*>(&addr);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    auto bytes = address.to_v4().to_bytes();
    std::memcpy(&a->sin_addr, bytes.data(), bytes.size());
    length = sizeof(sockaddr_in);
  } else {
    auto* a = reinterpret_cast<sockaddr_in6*>(&addr);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    auto bytes = address.to_v6().to_bytes();
    std::memcpy(&a->sin6_addr, bytes.data(), bytes.size());
    a->sin6_scope_id = address.to_v6().scope_id();
    length = sizeof(sockaddr_in6);
  }
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), length) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length) != 0) {
    *error = errno;
    ::close(fd);
    return -1;
  }
  *bound_port = ntohs(address.is_v4() ? reinterpret_cast<sockaddr_in*>(&addr)->sin_port
                                      : reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
  return fd;
}

// Binds `port` once without SO_REUSEPORT: that fails while any other socket holds the port, even
// one with SO_REUSEPORT of the same user (which a SO_REUSEPORT bind would silently join).
Result<Unit, std::string> CheckPortFree(const asio::ip::address& address, uint16_t port, bool tcp,
                                        std::string_view what) {
  if (port == 0) return Unit{};
  uint16_t bound = 0;
  int error = 0;
  int fd = BindProbe(address, port, tcp ? SOCK_STREAM : SOCK_DGRAM, &bound, &error);
  if (fd >= 0) {
    ::close(fd);
    return Unit{};
  }
  if (error == EADDRINUSE) {
    return Failure{Where(what, address, port) +
                   "the port is in use by another process (is another idnode running?)"};
  }
  return Failure{Where(what, address, port) + std::strerror(error)};
}

}  // namespace

Result<uint16_t, std::string> PickPortFreeForBoth(const asio::ip::address& address,
                                                  std::string_view what) {
  for (int attempt = 0; attempt < 64; ++attempt) {
    uint16_t port = 0;
    int error = 0;
    int udp_fd = BindProbe(address, 0, SOCK_DGRAM, &port, &error);
    if (udp_fd < 0) return Failure{Where(what, address, 0) + std::strerror(error)};
    uint16_t same = 0;
    int tcp_fd = BindProbe(address, port, SOCK_STREAM, &same, &error);
    ::close(udp_fd);
    if (tcp_fd >= 0) {
      ::close(tcp_fd);
      return port;
    }
  }
  return Failure{Where(what, address, 0) + "no ephemeral port was free for both UDP and TCP"};
}

uint64_t MicrosSince(Clock::time_point start) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count());
}

Result<udp::socket, std::string> OpenUdpSocket(asio::io_context& io,
                                               const asio::ip::address& address, uint16_t port,
                                               std::string_view what, uint64_t receive_buffer,
                                               bool exclusive) {
  if (exclusive) {
    auto free = CheckPortFree(address, port, /*tcp=*/false, what);
    if (!free.ok()) return Failure{free.error()};
  }
  udp::socket socket(io);
  udp::endpoint endpoint(address, port);
  boost::system::error_code ec;
  socket.open(endpoint.protocol(), ec);
  if (!ec) {
    SetReusePort(socket.native_handle());
    int bytes = static_cast<int>(std::min<uint64_t>(receive_buffer, INT32_MAX / 2));
    ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes));
    socket.bind(endpoint, ec);
  }
  if (ec) return Failure{Where(what, address, port) + ec.message()};
  return socket;
}

Result<std::unique_ptr<tcp::acceptor>, std::string> OpenTcpAcceptor(
    asio::io_context& io, const asio::ip::address& address, uint16_t port, std::string_view what,
    bool exclusive) {
  if (exclusive) {
    auto free = CheckPortFree(address, port, /*tcp=*/true, what);
    if (!free.ok()) return Failure{free.error()};
  }
  auto acceptor = std::make_unique<tcp::acceptor>(io);
  tcp::endpoint endpoint(address, port);
  boost::system::error_code ec;
  acceptor->open(endpoint.protocol(), ec);
  if (!ec) acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) {
    SetReusePort(acceptor->native_handle());
    acceptor->bind(endpoint, ec);
  }
  if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Failure{Where(what, address, port) + ec.message()};
  return acceptor;
}

// ---- workers ------------------------------------------------------------------------------------

WorkerPool::WorkerPool(uint32_t count) {
  for (uint32_t i = 0; i < std::max(1u, count); ++i)
    workers_.push_back(std::make_unique<Worker>(i));
}

void WorkerPool::Run() {
  for (auto& worker : workers_) {
    Worker* w = worker.get();
    w->thread = std::thread([w] {
      auto guard = asio::make_work_guard(w->io);
      w->io.run();
    });
  }
  running_ = true;
}

void WorkerPool::Stop(StoragePool* storage) {
  if (!running_) return;
  running_ = false;
  // Runs `work` on every worker's thread after what is queued there, and waits (bounded) until
  // each has.
  auto on_each_worker = [this](auto work) {
    std::vector<std::future<void>> done;
    for (auto& worker : workers_) {
      Worker* w = worker.get();
      auto promise = std::make_shared<std::promise<void>>();
      done.push_back(promise->get_future());
      asio::post(w->io, [w, promise, work] {
        work(*w);
        promise->set_value();
      });
    }
    for (auto& f : done) f.wait_for(std::chrono::seconds(5));
  };
  // 1. No new requests: every socket closed, on its own thread.
  on_each_worker([](Worker& w) {
    for (auto& close : w.closers) close();
  });
  // 2. What the storage pool holds is answered; its answers are posted back to the workers.
  if (storage != nullptr) storage->pool.join();
  // 3. The workers send those answers, then stop (open TCP sessions end with them).
  on_each_worker([](Worker&) {});
  for (auto& worker : workers_) worker->io.stop();
  for (auto& worker : workers_) {
    if (worker->thread.joinable()) worker->thread.join();
  }
}

// ---- TCP ---------------------------------------------------------------------------------------

void AppendAcceptMetrics(std::string& out, std::string_view protocol,
                         const AcceptCounters& counters, bool help) {
  const std::string label = "protocol=\"" + std::string(protocol) + "\"";
  if (help) {
    metrics::AppendHelp(out, "idnode_accept_errors_total", "counter",
                        "accept() failures of TCP listeners.");
    metrics::AppendHelp(out, "idnode_accept_backoffs_total", "counter",
                        "Waits of an accept loop out of descriptors or memory (EMFILE, ...).");
  }
  metrics::AppendSample(out, "idnode_accept_errors_total", label,
                        static_cast<double>(counters.errors.load(std::memory_order_relaxed)));
  metrics::AppendSample(out, "idnode_accept_backoffs_total", label,
                        static_cast<double>(counters.backoffs.load(std::memory_order_relaxed)));
}

std::string PeerAddress(const tcp::socket& socket) {
  boost::system::error_code ec;
  auto endpoint = socket.remote_endpoint(ec);
  if (ec) return {};
  return endpoint.address().to_string();
}

asio::awaitable<void> AcceptLoop(tcp::acceptor& acceptor, ConnectionCaps& caps,
                                 AcceptCounters& counters, ConnectionHandler on_connection) {
  constexpr auto kFirstBackoff = std::chrono::milliseconds(10);
  constexpr auto kLongestBackoff = std::chrono::seconds(1);
  std::chrono::milliseconds backoff = kFirstBackoff;
  asio::steady_timer timer(acceptor.get_executor());
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
      counters.errors.fetch_add(1, std::memory_order_relaxed);
      if (ec == asio::error::no_descriptors || ec.value() == ENFILE ||
          ec == asio::error::no_buffer_space || ec == asio::error::no_memory) {
        // The connection stays in the listen queue, so the acceptor stays readable: accepting
        // again at once would spin this worker. Wait, and let the worker serve what it can.
        counters.backoffs.fetch_add(1, std::memory_order_relaxed);
        timer.expires_after(backoff);
        auto [wait_ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
        if (wait_ec || !acceptor.is_open()) co_return;
        backoff = std::min<std::chrono::milliseconds>(backoff * 2, kLongestBackoff);
      }
      continue;
    }
    backoff = kFirstBackoff;
    std::string source = PeerAddress(socket);
    if (source.empty() || !caps.Admit(source)) {
      boost::system::error_code ignored;
      socket.close(ignored);
      continue;
    }
    boost::system::error_code option_ec;
    socket.set_option(tcp::no_delay(true), option_ec);
    on_connection(std::move(socket), ConnectionSlot(&caps, std::move(source)));
  }
}

asio::awaitable<void> Watchdog(tcp::socket::lowest_layer_type& socket,
                               std::shared_ptr<Deadline> deadline) {
  while (!deadline->done) {
    deadline->timer.expires_at(deadline->at);
    co_await deadline->timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (deadline->done) co_return;  // the session has ended; its socket is gone
    if (deadline->at <= Clock::now()) {
      boost::system::error_code ignored;
      socket.shutdown(tcp::socket::shutdown_both, ignored);
      socket.close(ignored);
      co_return;
    }
  }
}

UdpBatchSocket::UdpBatchSocket(udp::socket socket, uint32_t batch, size_t max_receive,
                               uint32_t send_capacity, size_t max_send, DatagramHandler on_datagram,
                               std::function<void()> on_drop, BatchHandler on_batch)
    : socket_(std::move(socket)),
      batch_(batch),
      max_receive_(max_receive),
      send_capacity_(send_capacity),
      max_send_(max_send),
      on_datagram_(std::move(on_datagram)),
      on_drop_(std::move(on_drop)),
      on_batch_(std::move(on_batch)) {
  batch_views_.reserve(batch_);
  rx_buffers_.resize(size_t{batch_} * max_receive_);
  rx_addresses_.resize(batch_);
  rx_iov_.resize(batch_);
  rx_headers_.resize(batch_);
  tx_buffers_.resize(size_t{send_capacity_} * max_send_);
  tx_addresses_.resize(send_capacity_);
  tx_iov_.resize(send_capacity_);
  tx_headers_.resize(send_capacity_);
  socket_.non_blocking(true);
}

void UdpBatchSocket::Close() {
  boost::system::error_code ec;
  socket_.close(ec);
}

void UdpBatchSocket::Arm() {
  socket_.async_wait(udp::socket::wait_read, [this](const boost::system::error_code& ec) {
    if (ec) return;  // closed
    Drain();
    Arm();
  });
}

void UdpBatchSocket::Drain() {
  const int fd = socket_.native_handle();
  for (int round = 0; round < 16; ++round) {
    for (uint32_t i = 0; i < batch_; ++i) {
      rx_iov_[i] = {rx_buffers_.data() + size_t{i} * max_receive_, max_receive_};
      rx_headers_[i] = {};
      rx_headers_[i].msg_hdr.msg_name = &rx_addresses_[i];
      rx_headers_[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage);
      rx_headers_[i].msg_hdr.msg_iov = &rx_iov_[i];
      rx_headers_[i].msg_hdr.msg_iovlen = 1;
    }
    int n = ::recvmmsg(fd, rx_headers_.data(), batch_, MSG_DONTWAIT, nullptr);
    if (n <= 0) break;
    if (on_batch_) {
      batch_views_.clear();
      for (int i = 0; i < n; ++i) {
        if ((rx_headers_[i].msg_hdr.msg_flags & MSG_TRUNC) != 0) continue;
        batch_views_.emplace_back(rx_buffers_.data() + size_t(i) * max_receive_,
                                  rx_headers_[i].msg_len);
      }
      on_batch_(batch_views_);
    }
    for (int i = 0; i < n; ++i) {
      // Larger than any datagram of the protocol: it arrived truncated (MSG_TRUNC).
      if ((rx_headers_[i].msg_hdr.msg_flags & MSG_TRUNC) != 0) {
        on_drop_();
        continue;
      }
      on_datagram_(std::span<const uint8_t>(rx_buffers_.data() + size_t(i) * max_receive_,
                                            rx_headers_[i].msg_len),
                   rx_addresses_[i], rx_headers_[i].msg_hdr.msg_namelen);
    }
    Flush();
    if (static_cast<uint32_t>(n) < batch_) break;
  }
}

std::span<uint8_t> UdpBatchSocket::NextSendBuffer() {
  if (tx_count_ == send_capacity_) Flush();
  return {tx_buffers_.data() + size_t{tx_count_} * max_send_, max_send_};
}

void UdpBatchSocket::CommitSend(size_t length, const sockaddr_storage& to, socklen_t to_len) {
  if (length == 0 || length > max_send_) return;
  uint8_t* slot = tx_buffers_.data() + size_t{tx_count_} * max_send_;
  tx_addresses_[tx_count_] = to;
  tx_iov_[tx_count_] = {slot, length};
  tx_headers_[tx_count_] = {};
  tx_headers_[tx_count_].msg_hdr.msg_name = &tx_addresses_[tx_count_];
  tx_headers_[tx_count_].msg_hdr.msg_namelen = to_len;
  tx_headers_[tx_count_].msg_hdr.msg_iov = &tx_iov_[tx_count_];
  tx_headers_[tx_count_].msg_hdr.msg_iovlen = 1;
  ++tx_count_;
}

void UdpBatchSocket::Queue(std::span<const uint8_t> datagram, const sockaddr_storage& to,
                           socklen_t to_len) {
  if (datagram.size() > max_send_) {
    on_drop_();
    return;
  }
  auto buffer = NextSendBuffer();
  std::memcpy(buffer.data(), datagram.data(), datagram.size());
  CommitSend(datagram.size(), to, to_len);
}

void UdpBatchSocket::Flush() {
  uint32_t sent = 0;
  while (sent < tx_count_) {
    int n = ::sendmmsg(socket_.native_handle(), tx_headers_.data() + sent, tx_count_ - sent,
                       MSG_DONTWAIT);
    if (n <= 0) {
      // The socket buffer is full: drop the rest rather than block the worker (clients retry).
      for (uint32_t i = sent; i < tx_count_; ++i) on_drop_();
      break;
    }
    sent += static_cast<uint32_t>(n);
  }
  tx_count_ = 0;
}

}  // namespace idnode::net
