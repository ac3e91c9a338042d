// The listener layer's TCP session (net/tcp_session.h) with a protocol handler of its own: the
// storage hop really runs on a storage thread and comes back to the worker, requests are
// answered in order on one connection, and a full pool gets the handler's busy answer.
#include "idnode/net/tcp_session.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio.hpp>
#include <mutex>
#include <thread>
#include <vector>

namespace idnode::net {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

// Where the handler ran, seen from the test.
struct Seen {
  std::mutex mutex;
  std::vector<std::thread::id> answer, storage, answered;
};

// A toy protocol: a 1-byte length, then that many bytes; the answer is the request reversed, from
// "storage" when the first byte of the body is 'S'.
class EchoHandler {
 public:
  static constexpr size_t kHeadSize = 1;
  explicit EchoHandler(Seen& seen) : seen_(&seen) {}

  // A head of 0 is a framing error, answered with a large last reply before the connection closes
  // (larger than the socket buffers: its write must wait for the client).
  std::optional<size_t> BodySize(std::span<const uint8_t> head, std::vector<uint8_t>& reply) {
    if (head[0] != 0) return head[0];
    reply.resize(kBigReply);
    for (size_t i = 0; i < reply.size(); ++i) reply[i] = static_cast<uint8_t>(i * 7);
    return std::nullopt;
  }
  static constexpr size_t kBigReply = 8 << 20;
  SessionOutcome Answer(std::span<const uint8_t> request, std::vector<uint8_t>& reply) {
    Note(seen_->answer);
    if (request.size() > 1 && request[1] == 'S') return SessionOutcome::kNeedsStorage;
    return Reverse(request, reply);
  }
  SessionOutcome AnswerFromStorage(std::span<const uint8_t> request, std::vector<uint8_t>& reply) {
    Note(seen_->storage);
    return Reverse(request, reply);
  }
  SessionOutcome Busy(std::span<const uint8_t>, std::vector<uint8_t>& reply) {
    reply = {1, 'B'};
    return SessionOutcome::kAnswered;
  }
  void Answered(Clock::time_point) { Note(seen_->answered); }
  void Dropped() {}

 private:
  void Note(std::vector<std::thread::id>& where) {
    std::lock_guard lock(seen_->mutex);
    where.push_back(std::this_thread::get_id());
  }
  static SessionOutcome Reverse(std::span<const uint8_t> request, std::vector<uint8_t>& reply) {
    reply.assign(request.begin(), request.end());
    std::reverse(reply.begin() + 1, reply.end());
    return SessionOutcome::kAnswered;
  }
  Seen* seen_;
};

class TcpSessionTest : public ::testing::Test {
 protected:
  void Start(uint32_t pool_capacity) {
    storage_ = std::make_unique<StoragePool>(1, pool_capacity);
    acceptor_ =
        std::make_unique<tcp::acceptor>(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    port_ = acceptor_->local_endpoint().port();
    asio::co_spawn(io_,
                   AcceptLoop(*acceptor_, caps_, counters_,
                              [this](tcp::socket socket, ConnectionSlot slot) {
                                asio::co_spawn(
                                    io_,
                                    ServeFramed(std::move(socket), std::move(slot), TcpLimits{},
                                                *storage_, EchoHandler(seen_)),
                                    asio::detached);
                              }),
                   asio::detached);
    worker_ = std::thread([this] {
      worker_id_ = std::this_thread::get_id();
      io_.run();
    });
  }
  void TearDown() override {
    asio::post(io_, [this] { acceptor_->close(); });
    storage_->pool.join();
    io_.stop();
    if (worker_.joinable()) worker_.join();
  }

  // Sends each request and reads its answer on one connection (blocking, 5 s timeouts).
  std::vector<std::string> Exchange(const std::vector<std::string>& bodies) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port_);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    std::vector<std::string> answers;
    for (const auto& body : bodies) {
      std::string frame = std::string(1, static_cast<char>(body.size())) + body;
      EXPECT_EQ(::send(fd, frame.data(), frame.size(), 0), static_cast<ssize_t>(frame.size()));
      uint8_t length = 0;
      if (::recv(fd, &length, 1, MSG_WAITALL) != 1) break;
      std::string answer(length, '\0');
      if (length > 0 && ::recv(fd, answer.data(), length, MSG_WAITALL) != length) break;
      answers.push_back(answer);
    }
    ::close(fd);
    return answers;
  }

  asio::io_context io_{1};
  std::unique_ptr<tcp::acceptor> acceptor_;
  std::unique_ptr<StoragePool> storage_;
  ConnectionCaps caps_{16, 16};
  AcceptCounters counters_;
  Seen seen_;
  std::thread worker_;
  std::atomic<std::thread::id> worker_id_;
  uint16_t port_ = 0;
};

// The storage hop must leave the event loop (a RocksDB read there stalls every connection and the
// worker's UDP socket) and come back to it for the write.
TEST_F(TcpSessionTest, StorageWorkRunsOnAStorageThreadAndTheAnswerOnTheWorker) {
  Start(4);
  EXPECT_EQ(Exchange({"Sabc", "xyz", "Sdef"}), (std::vector<std::string>{"cbaS", "zyx", "fedS"}));
  // The last answer is counted just after it is written: wait for it (bounded).
  for (int i = 0; i < 2000; ++i) {
    {
      std::lock_guard lock(seen_.mutex);
      if (seen_.answered.size() == 3) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::lock_guard lock(seen_.mutex);
  ASSERT_EQ(seen_.storage.size(), 2u);
  for (auto id : seen_.storage) EXPECT_NE(id, worker_id_.load());
  ASSERT_EQ(seen_.answer.size(), 3u);
  for (auto id : seen_.answer) EXPECT_EQ(id, worker_id_.load());
  ASSERT_EQ(seen_.answered.size(), 3u);
  for (auto id : seen_.answered) EXPECT_EQ(id, worker_id_.load());
  EXPECT_EQ(storage_->in_flight.load(), 0u);  // every slot released
}

// Defect 6: the framing-error reply was written from the worker's shared buffer across a co_await,
// so another session on the worker could overwrite it mid-write. A reply now lives in its session:
// a large one that waits for a slow client arrives intact while other sessions are answered.
TEST_F(TcpSessionTest, AReplyWaitingForASlowClientIsNotOverwrittenByOtherSessions) {
  Start(4);
  int slow = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port_);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{5, 0};
  ::setsockopt(slow, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ASSERT_EQ(::connect(slow, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const uint8_t bad = 0;
  ASSERT_EQ(::send(slow, &bad, 1, 0), 1);
  // While that reply waits for the slow client, other sessions on the same worker are answered.
  for (int i = 0; i < 20; ++i)
    EXPECT_EQ(Exchange({"abc", "Sdef"}), (std::vector<std::string>{"cba", "fedS"}));
  std::vector<uint8_t> got(EchoHandler::kBigReply);
  size_t have = 0;
  while (have < got.size()) {
    ssize_t n = ::recv(slow, got.data() + have, got.size() - have, 0);
    if (n <= 0) break;
    have += static_cast<size_t>(n);
  }
  ::close(slow);
  ASSERT_EQ(have, got.size());
  bool intact = true;
  for (size_t i = 0; i < got.size() && intact; ++i) intact = got[i] == static_cast<uint8_t>(i * 7);
  EXPECT_TRUE(intact);
}

TEST_F(TcpSessionTest, AFullPoolGetsTheBusyAnswer) {
  Start(0);  // no room at all
  EXPECT_EQ(Exchange({"Sabc", "xyz"}), (std::vector<std::string>{"B", "zyx"}));
  std::lock_guard lock(seen_.mutex);
  EXPECT_TRUE(seen_.storage.empty());
}

}  // namespace
}  // namespace idnode::net
