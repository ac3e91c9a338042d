#include "idnode/replication/source.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>

#include "idnode/identifier/identifier.h"
#include "idnode/net/listeners.h"
#include "idnode/replication/tls.h"
#include "idnode/replication/wire.h"
#include "idnode/storage/store.h"
#include "stream_io.h"

namespace idnode::replication {

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

// Keys a snapshot chunk reads at most before it is sent (or, if it holds nothing, before the
// scan goes on in the next turn of the loop).
constexpr size_t kMaxKeysScannedPerChunk = 65536;

// One replica's connection. Owned by its coroutines (shared_ptr); runs on the replication thread.
class ReplicationSource::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(ReplicationSource& owner, tcp::socket socket, net::ConnectionSlot slot)
      : owner_(owner),
        registry_(owner.registry_),
        options_(owner.options_),
        stream_(std::move(socket), *owner.tls_),
        deadline_(std::make_shared<net::Deadline>(stream_.get_executor())),
        wake_(stream_.get_executor()),
        slot_(std::move(slot)) {
    address_ = slot_.source();
  }

  asio::awaitable<void> Run() {
    auto self = shared_from_this();
    deadline_->at = Clock::now() + options_.handshake_timeout;
    asio::co_spawn(stream_.get_executor(), net::Watchdog(stream_.lowest_layer(), deadline_),
                   asio::detached);
    std::string why = co_await Serve();
    Finish(why);
  }

  // Wakes the writer (a change was committed, an acknowledgement came, or the session stops).
  void Wake() {
    woken_ = true;
    wake_.cancel();
  }

  void Close() {
    closing_ = true;
    boost::system::error_code ignored;
    stream_.lowest_layer().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.lowest_layer().close(ignored);
    Wake();
  }

 private:
  struct ShardCursor {
    std::string lineage;
    uint64_t next = 1;           // the next sequence to send
    uint64_t acked = 0;          // the replica's acknowledged position
    bool snapshot = false;       // a snapshot is to be sent first
    registry::RetentionPin pin;  // holds entries from acked + 1
  };

  asio::awaitable<std::string> Serve() {
    auto [hs_ec] = co_await stream_.async_handshake(asio::ssl::stream_base::server,
                                                    asio::as_tuple(asio::use_awaitable));
    if (hs_ec) co_return "TLS handshake: " + hs_ec.message();
    const std::string name = PeerName(stream_.native_handle());
    const PeerGrant* grant = nullptr;
    for (const auto& g : options_.peers) {
      if (g.name == name) grant = &g;
    }
    if (grant == nullptr) {
      // A certificate of the CA but no replica of ours: nothing is sent, and the status board
      // gets no entry for a name that is not configured.
      co_return "certificate \"" + name + "\" is not a configured replication peer";
    }
    peer_ = name;

    std::vector<uint8_t> body;
    if (auto failed = co_await detail::ReadFrame(stream_, 1u << 20, body)) co_return *failed;
    const uint32_t shards = registry_.shard_count();
    auto parsed = ParseReplicaMessage(body, shards);
    if (!parsed.ok() || !parsed->has_hello())
      co_return co_await Refuse(parsed.ok() ? "expected a hello" : parsed.error());
    const proto::Hello& hello = parsed->hello();
    if (hello.everything()) {
      subscription_ = Subscription::Everything();
    } else {
      auto sub = Subscription::Of(
          std::vector<std::string>(hello.prefixes().begin(), hello.prefixes().end()));
      if (!sub.ok()) co_return co_await Refuse(sub.error());
      subscription_ = std::move(*sub);
    }
    // A server of a mirror site gets its share only; the check above refused a bad position.
    subscription_ = subscription_.ShareOfServer(hello.site_servers(), hello.site_server());
    if (!grant->allowed.Contains(subscription_)) {
      co_return co_await Refuse("\"" + peer_ + "\" may replicate " + grant->allowed.ToString() +
                                ", not " + subscription_.ToString());
    }
    // A valid hello: the newest connection of a peer is its stream. An older one (half-open, the
    // replica has reconnected) is closed, and only the newest writes the peer's status.
    generation_ = ++owner_.peer_generations_[peer_];
    for (auto& weak : owner_.sessions_) {
      auto other = weak.lock();
      if (other && other.get() != this && other->peer_ == peer_) other->Close();
    }
    window_ =
        std::min<uint64_t>(hello.window_bytes() == 0 ? options_.window_bytes : hello.window_bytes(),
                           options_.window_bytes);
    window_ = std::max<uint64_t>(window_, 2 * options_.message_bytes + 65536);

    // Where to start in each shard: from the replica's position when it is in this shard's
    // history and still retained and the prefixes' histories agree; a snapshot otherwise.
    proto::SourceMessage welcome_message;
    proto::Welcome& welcome = *welcome_message.mutable_welcome();
    welcome.set_protocol_version(kProtocolVersion);
    welcome.set_node_name(options_.node_name);
    welcome.set_shard_count(shards);
    welcome.set_window_bytes(window_);
    bool histories_agree = true;
    auto states = registry_.Prefixes();
    if (!states.ok()) co_return co_await Refuse("cannot read the prefix table: " + states.error());
    std::map<std::string, std::string> lineages;  // subscribed prefix -> its history here
    for (const auto& st : *states) {
      if ((st.role() == proto::PrefixState::HOMED || st.role() == proto::PrefixState::MIRRORED) &&
          subscription_.CoversPrefix(st.prefix())) {
        *welcome.add_prefix_states() = st;
        auto lineage = registry_.LineageOfPrefix(st.prefix());
        if (lineage.ok()) lineages[st.prefix()] = *lineage;
      }
    }
    for (const auto& p : subscription_.prefixes()) {
      auto lineage = registry_.LineageOfPrefix(p);
      if (!lineage.ok()) co_return co_await Refuse("cannot read the prefix table");
      lineages[p] = *lineage;
    }
    for (const auto& [prefix, lineage] : lineages) {
      auto* l = welcome.add_lineages();
      l->set_prefix(prefix);
      l->set_lineage_id(lineage);
    }
    for (const auto& l : hello.lineages()) {
      auto it = lineages.find(identifier::Normalize(l.prefix()));
      const std::string here = it == lineages.end() ? std::string() : it->second;
      if (here != l.lineage_id()) histories_agree = false;
    }
    std::map<uint32_t, const proto::ShardPosition*> positions;
    for (const auto& p : hello.positions()) positions[p.shard()] = &p;
    cursors_.resize(shards);
    for (uint32_t s = 0; s < shards; ++s) {
      ShardCursor& c = cursors_[s];
      c.lineage = registry_.ShardLineage(s);
      auto it = positions.find(s);
      bool resume = histories_agree && it != positions.end();
      if (resume) {
        const uint64_t position = it->second->sequence();
        c.pin = registry_.PinRetention(s, position + 1);  // first, then check what is retained
        // In this shard's history (or one it forked from, no further than the fork: a restart,
        // a crash that lost unsynced changes, a restored backup), and still retained.
        resume =
            registry_.ResumableFrom(s, it->second->lineage_id(), position, it->second->highest()) &&
            position + 1 >= registry_.FirstRetainedSequence(s);
        if (resume) {
          c.next = position + 1;
          c.acked = position;
        }
      }
      c.snapshot = !resume;
      if (c.snapshot) {
        c.pin.Release();
        welcome.add_snapshot_shards(s);
      }
      auto* shard_position = welcome.add_shards();
      shard_position->set_shard(s);
      shard_position->set_lineage_id(c.lineage);
      shard_position->set_sequence(registry_.LastSequence(s));
    }
    if (auto failed = co_await Send(welcome_message)) co_return *failed;
    owner_.status_.Update("serving", peer_, [&](LinkStatus& l) {
      l.address = address_;
      l.subscription = subscription_.ToString();
      l.state = "streaming";
      if (welcome.snapshot_shards_size() > 0) l.resyncs++;
      l.connects++;
      l.connected_ms = UnixMillis();
    });
    spdlog::info("replication: serving {} ({}) from {}", peer_, subscription_.ToString(), address_);
    asio::co_spawn(stream_.get_executor(), ReadAcks(shared_from_this()), asio::detached);

    auto next_heartbeat = Clock::now() + options_.heartbeat;
    auto next_save = Clock::now() + std::chrono::seconds(1);
    for (;;) {
      if (closing_) co_return reader_failure_.empty() ? "closed" : reader_failure_;
      bool sent = false;
      for (uint32_t s = 0; s < shards; ++s) {
        ShardCursor& c = cursors_[s];
        if (registry_.ShardLineage(s) != c.lineage)
          co_return "shard " + std::to_string(s) +
              "'s history changed (an import, or a snapshot applied here): resync";
        if (c.snapshot) {
          if (auto failed = co_await SendSnapshot(s)) co_return *failed;
          sent = true;
          continue;
        }
        const uint64_t last = registry_.LastSequence(s);
        if (last - std::min(last, c.acked) > options_.max_lag_entries)
          co_return "replica is more than " + std::to_string(options_.max_lag_entries) +
              " changes behind in shard " + std::to_string(s);
        if (c.next <= last) {
          if (auto failed = co_await SendChanges(s)) co_return *failed;
          sent = true;
        }
      }
      const auto now = Clock::now();
      if (now >= next_save) {
        SavePositions();
        next_save = now + std::chrono::seconds(1);
      }
      if (sent) {
        next_heartbeat = Clock::now() + options_.heartbeat;
        continue;
      }
      if (now >= next_heartbeat) {
        if (auto failed = co_await SendHeartbeat()) co_return *failed;
        next_heartbeat = Clock::now() + options_.heartbeat;
      }
      co_await WaitForWake(next_heartbeat);
    }
  }

  asio::awaitable<void> WaitForWake(Clock::time_point until) {
    if (woken_ || closing_) {
      woken_ = false;
      co_return;
    }
    wake_.expires_at(until);
    co_await wake_.async_wait(asio::as_tuple(asio::use_awaitable));
    woken_ = false;
  }

  asio::awaitable<std::string> Refuse(const std::string& reason) {
    proto::SourceMessage m;
    m.mutable_refusal()->set_reason(reason);
    std::string bytes;
    AppendFrame(m, bytes);
    co_await detail::WriteAll(stream_, bytes, *deadline_, options_.send_timeout,
                              options_.send_timeout);
    refused_ = true;
    co_return "refused: " + reason;
  }

  // Sends one message once the window has room for it.
  asio::awaitable<std::optional<std::string>> Send(const google::protobuf::MessageLite& m) {
    frame_.clear();
    if (!AppendFrame(m, frame_)) co_return std::string("a message too large to send");
    const auto waited_since = Clock::now();
    while (!closing_ && sent_bytes_ - acked_bytes_ + frame_.size() > window_ &&
           sent_bytes_ > acked_bytes_) {
      if (Clock::now() - waited_since > options_.ack_timeout)
        co_return "no acknowledgement for " + std::to_string(options_.ack_timeout.count()) +
            " ms with the window full: replica too slow";
      co_await WaitForWake(
          std::min(waited_since + options_.ack_timeout, Clock::now() + options_.heartbeat));
      RefreshStatus();
    }
    if (closing_) co_return reader_failure_.empty() ? std::string("closed") : reader_failure_;
    if (auto failed = co_await detail::WriteAll(stream_, frame_, *deadline_, options_.send_timeout,
                                                options_.ack_timeout + options_.heartbeat * 2))
      co_return failed;
    sent_bytes_ += frame_.size();
    owner_.status_.Update("serving", peer_, [&](LinkStatus& l) { l.bytes_sent += frame_.size(); });
    if (frame_.capacity() > (4u << 20)) std::string().swap(frame_);
    co_return std::nullopt;
  }

  asio::awaitable<std::optional<std::string>> SendSnapshot(uint32_t shard) {
    ShardCursor& c = cursors_[shard];
    owner_.status_.Update("serving", peer_, [&](LinkStatus& l) {
      l.state = "snapshot";
      l.snapshots++;
    });
    registry::ShardSnapshot snapshot = registry_.TakeSnapshot(shard);
    proto::SourceMessage begin;
    begin.mutable_snapshot_begin()->set_shard(shard);
    begin.mutable_snapshot_begin()->set_sequence(snapshot.sequence);
    begin.mutable_snapshot_begin()->set_lineage_id(c.lineage);
    if (auto failed = co_await Send(begin)) co_return failed;
    uint64_t records = 0;
    for (const auto& [range_begin, range_end] : subscription_.KeyRanges()) {
      std::string from = range_begin;
      bool exclusive = false;  // `from` was already sent
      for (;;) {
        proto::SourceMessage chunk_message;
        proto::SnapshotChunk& chunk = *chunk_message.mutable_snapshot_chunk();
        chunk.set_shard(shard);
        size_t bytes = 0;
        size_t keys_scanned = 0;
        bool more = false;
        std::string last_key;
        auto scanned = registry_.store().Scan(
            shard, storage::Column::kRecords, from, range_end,
            [&](std::string_view key, std::string_view value) {
              if (exclusive && key == from) return true;
              // A chunk also ends after so many keys scanned: a narrow subscription (one server's
              // share of a large site) would otherwise read many keys per record sent, all in one
              // turn of the event loop.
              if (bytes >= options_.message_bytes || keys_scanned >= kMaxKeysScannedPerChunk) {
                more = true;
                return false;
              }
              ++keys_scanned;
              last_key.assign(key);
              if (!subscription_.Covers(key)) return true;
              chunk.add_records(value.data(), value.size());
              bytes += value.size() + 8;
              return true;
            },
            snapshot.snapshot.get());
        if (!scanned.ok())
          co_return "snapshot of shard " + std::to_string(shard) + ": " + scanned.error().message;
        records += static_cast<uint64_t>(chunk.records_size());
        if (chunk.records_size() > 0) {
          if (auto failed = co_await Send(chunk_message)) co_return failed;
        } else if (more) {
          // Nothing of this share in those keys: let other sessions run before scanning on.
          co_await asio::post(stream_.get_executor(), asio::use_awaitable);
        }
        if (!more) break;
        from = last_key;
        exclusive = true;
      }
    }
    proto::SourceMessage end;
    end.mutable_snapshot_end()->set_shard(shard);
    end.mutable_snapshot_end()->set_sequence(snapshot.sequence);
    end.mutable_snapshot_end()->set_lineage_id(c.lineage);
    end.mutable_snapshot_end()->set_records(records);
    if (auto failed = co_await Send(end)) co_return failed;
    c.snapshot = false;
    c.next = snapshot.sequence + 1;
    c.acked = std::max(c.acked, snapshot.sequence);
    c.pin = std::move(snapshot.pin);  // entries after the snapshot stay until acknowledged
    owner_.status_.Update("serving", peer_, [&](LinkStatus& l) { l.state = "streaming"; });
    co_return std::nullopt;
  }

  asio::awaitable<std::optional<std::string>> SendChanges(uint32_t shard) {
    ShardCursor& c = cursors_[shard];
    proto::SourceMessage message;
    proto::Changes& changes = *message.mutable_changes();
    changes.set_shard(shard);
    changes.set_lineage_id(c.lineage);
    size_t bytes = 0;
    uint64_t through = c.next - 1;
    auto read = registry_.ReadChangelog(
        shard, c.next, options_.changes_batch_entries, [&](const proto::ChangelogEntry& entry) {
          if (bytes >= options_.message_bytes) return false;
          through = entry.sequence();
          const bool covered = entry.operation() == proto::ChangelogEntry::PREFIX
                                   ? subscription_.CoversPrefix(entry.prefix_state().prefix())
                                   : subscription_.Covers(entry.handle());
          if (covered) {
            *changes.add_entries() = entry;
            bytes += entry.ByteSizeLong();
          }
          return true;
        });
    if (!read.ok()) co_return "changelog of shard " + std::to_string(shard) + ": " + read.error();
    changes.set_through(through);
    c.next = through + 1;
    if (auto failed = co_await Send(message)) co_return failed;
    co_return std::nullopt;
  }

  asio::awaitable<std::optional<std::string>> SendHeartbeat() {
    proto::SourceMessage message;
    proto::Heartbeat& heartbeat = *message.mutable_heartbeat();
    heartbeat.set_time_ms(UnixMillis());
    for (uint32_t s = 0; s < cursors_.size(); ++s) {
      auto* p = heartbeat.add_last();
      p->set_shard(s);
      p->set_lineage_id(cursors_[s].lineage);
      p->set_sequence(registry_.LastSequence(s));
    }
    co_return co_await Send(message);
  }

  static asio::awaitable<void> ReadAcks(std::shared_ptr<Session> self) {
    std::vector<uint8_t> body;
    for (;;) {
      auto failed = co_await detail::ReadFrame(self->stream_, 1u << 20, body);
      if (self->closing_) break;
      if (failed) {
        self->reader_failure_ = *failed;
        break;
      }
      auto parsed = ParseReplicaMessage(body, self->registry_.shard_count());
      if (!parsed.ok() || !parsed->has_ack()) {
        self->reader_failure_ = parsed.ok() ? "expected an acknowledgement" : parsed.error();
        break;
      }
      const proto::Ack& ack = parsed->ack();
      if (ack.bytes() > self->sent_bytes_ || ack.bytes() < self->acked_bytes_) {
        self->reader_failure_ = "an acknowledgement of bytes never sent";
        break;
      }
      self->acked_bytes_ = ack.bytes();
      for (const auto& p : ack.positions()) {
        if (p.shard() >= self->cursors_.size()) continue;
        ShardCursor& c = self->cursors_[p.shard()];
        if (p.lineage_id() != c.lineage || c.snapshot || p.sequence() < c.acked ||
            p.sequence() >= c.next)
          continue;  // a position in another history, or not one we sent: not a pin
        c.acked = p.sequence();
        c.pin = self->registry_.PinRetention(p.shard(), c.acked + 1);
      }
      self->Wake();
    }
    self->Close();
  }

  // Saves the acknowledged positions (they hold the changelog's retention across restarts) and
  // shows them in the status.
  void SavePositions() {
    std::vector<std::pair<uint32_t, uint64_t>> positions;
    for (uint32_t s = 0; s < cursors_.size(); ++s) {
      if (!cursors_[s].snapshot) positions.emplace_back(s, cursors_[s].acked);
    }
    auto saved = registry_.SavePeerPositions(peer_, positions);
    if (!saved.ok())
      spdlog::warn("replication: cannot save {}'s positions: {}", peer_, saved.error());
    RefreshStatus();
  }

  // The status's per-shard positions and lag, from the cursors and the shards' last sequences
  // (cheap: no storage access). Also called while the window is full, so a stalled replica's lag
  // is seen growing.
  void RefreshStatus() {
    uint64_t lag = 0;
    std::vector<ShardProgress> progress;
    for (uint32_t s = 0; s < cursors_.size(); ++s) {
      const ShardCursor& c = cursors_[s];
      const uint64_t last = registry_.LastSequence(s);
      progress.push_back({s, c.acked, last});
      if (!c.snapshot) lag += last - std::min(last, c.acked);
    }
    owner_.status_.Update("serving", peer_, [&](LinkStatus& l) {
      l.shards = std::move(progress);
      l.lag_entries = lag;
      l.unacked_bytes = sent_bytes_ - acked_bytes_;
    });
  }

  void Finish(const std::string& why) {
    // Only the peer's newest connection saves positions and writes status (an older one would
    // move them back); generation 0: the hello never got that far.
    const auto generation = owner_.peer_generations_.find(peer_);
    const bool streamed_before = generation != owner_.peer_generations_.end();
    const bool newest =
        !peer_.empty() && generation_ != 0 && streamed_before && generation->second == generation_;
    if (newest && !cursors_.empty()) SavePositions();
    Close();
    deadline_->done = true;
    deadline_->timer.cancel();
    wake_.cancel();
    cursors_.clear();  // releases the pins
    if (peer_.empty()) {
      spdlog::warn("replication: connection from {} ended: {}", address_, why);
      return;
    }
    if (!newest && (generation_ != 0 || streamed_before)) {
      // An older connection, or a refused one while the peer has a stream: that stream's
      // status stands.
      spdlog::warn("replication: a connection of {} ({}) that is not its stream ended: {}", peer_,
                   address_, why);
      return;
    }
    owner_.status_.Update("serving", peer_, [&](LinkStatus& l) {
      l.state = "disconnected";
      l.disconnects++;
      l.connected_ms = 0;
      l.last_error = why;
      l.last_error_ms = UnixMillis();
    });
    // Expected: replicas restart and links drop. A warning, never an error.
    spdlog::warn("replication: {} ({}) disconnected: {}", peer_, address_, why);
  }

  ReplicationSource& owner_;
  registry::Registry& registry_;
  const SourceOptions& options_;
  detail::Stream stream_;
  std::shared_ptr<net::Deadline> deadline_;
  asio::steady_timer wake_;
  net::ConnectionSlot slot_;
  std::string address_;
  std::string peer_;
  uint64_t generation_ = 0;  // this connection's number among its peer's
  Subscription subscription_;
  std::vector<ShardCursor> cursors_;
  std::string frame_;
  uint64_t window_ = 0;
  uint64_t sent_bytes_ = 0;
  uint64_t acked_bytes_ = 0;
  bool woken_ = false;
  bool closing_ = false;
  bool refused_ = false;
  std::string reader_failure_;
};

ReplicationSource::ReplicationSource(registry::Registry& registry, SourceOptions options,
                                     std::shared_ptr<asio::ssl::context> tls, StatusBoard& status)
    : registry_(registry),
      options_(std::move(options)),
      tls_(std::move(tls)),
      status_(status),
      // A few connections per address (replicas behind one NAT, a reconnect overlapping a
      // half-open old one): one host cannot take every slot from the real replicas.
      caps_(options_.max_connections, std::min<uint32_t>(options_.max_connections, 8)) {}

ReplicationSource::~ReplicationSource() {
  Stop();
}

Result<Unit, std::string> ReplicationSource::Bind() {
  boost::system::error_code ec;
  auto address = asio::ip::make_address(options_.bind_address, ec);
  if (ec) return Failure{"replication.listen: \"" + options_.bind_address + "\" is not an address"};
  auto acceptor = net::OpenTcpAcceptor(io_, address, options_.port, "replication", true);
  if (!acceptor.ok()) return Failure{acceptor.error()};
  acceptor_ = std::move(*acceptor);
  port_ = acceptor_->local_endpoint().port();
  return Unit{};
}

void ReplicationSource::Start() {
  if (!acceptor_) return;
  asio::co_spawn(io_, AcceptLoop(), asio::detached);
  std::promise<void> finished;
  finished_ = finished.get_future();
  thread_ = std::thread([this, done = std::move(finished)]() mutable {
    io_.run();
    done.set_value();
  });
}

asio::awaitable<void> ReplicationSource::AcceptLoop() {
  for (;;) {
    auto [ec, socket] = co_await acceptor_->async_accept(asio::as_tuple(asio::use_awaitable));
    if (ec == asio::error::operation_aborted || !acceptor_->is_open()) co_return;
    if (ec) {
      // Out of descriptors or memory: wait rather than spin on a readable listen queue.
      asio::steady_timer pause(io_, std::chrono::milliseconds(100));
      co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
      continue;
    }
    std::string source = net::PeerAddress(socket);
    if (!caps_.Admit(source)) {
      spdlog::warn("replication: refusing a connection from {}: too many connections", source);
      continue;  // the socket closes here
    }
    socket.set_option(tcp::no_delay(true));
    auto session = std::make_shared<Session>(*this, std::move(socket),
                                             net::ConnectionSlot(&caps_, std::move(source)));
    std::erase_if(sessions_, [](const std::weak_ptr<Session>& s) { return s.expired(); });
    sessions_.push_back(session);
    asio::co_spawn(io_, session->Run(), asio::detached);
  }
}

void ReplicationSource::NotifyChange() {
  if (wake_posted_.exchange(true, std::memory_order_acq_rel)) return;  // one wake-up in flight
  asio::post(io_, [this] {
    wake_posted_.store(false, std::memory_order_release);
    WakeSessions();
  });
}

void ReplicationSource::WakeSessions() {
  for (auto& weak : sessions_) {
    if (auto s = weak.lock()) s->Wake();
  }
}

void ReplicationSource::Stop() {
  if (stopped_) return;
  stopped_ = true;
  if (!thread_.joinable()) return;
  asio::post(io_, [this] {
    boost::system::error_code ignored;
    if (acceptor_) acceptor_->close(ignored);
    for (auto& weak : sessions_) {
      if (auto s = weak.lock()) s->Close();
    }
  });
  // Closed sessions end on their own and the loop runs out of work; one stuck in storage cannot
  // hold the process past the limit.
  if (finished_.wait_for(std::chrono::seconds(5)) != std::future_status::ready) io_.stop();
  thread_.join();
}

}  // namespace idnode::replication
