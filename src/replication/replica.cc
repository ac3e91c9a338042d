#include "idnode/replication/replica.h"

#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>

#include "idnode/identifier/identifier.h"
#include "idnode/registry/prefix_table.h"
#include "idnode/replication/subscription.h"
#include "idnode/replication/wire.h"
#include "idnode/storage/store.h"
#include "stream_io.h"

namespace idnode::replication {

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using registry::prefix_flag::kMirrorSynced;

namespace {

// A replica's position in one source shard, stored in each of its shards:
// "repl/<source name>/<source shard>" -> ReplicaCursor.
std::string CursorKeyPrefix(const std::string& source) {
  return "repl/" + source + "/";
}
std::string CursorKey(const std::string& source, uint32_t source_shard) {
  return CursorKeyPrefix(source) + std::to_string(source_shard);
}

proto::ReplicaCursor Resyncing() {
  proto::ReplicaCursor c;
  c.set_resyncing(true);
  return c;
}

// Deletions and puts of one target shard are written this many at a time.
constexpr size_t kApplyBatch = 5000;

}  // namespace

// One configured source: its connection loop and, per connection, what it has applied. Runs on
// the replica thread only.
class ReplicaClient::Link : public std::enable_shared_from_this<Link> {
 public:
  Link(ReplicaClient& owner, SourceLink config)
      : owner_(owner), registry_(owner.registry_), config_(std::move(config)), pause_(owner.io_) {
    address_ = config_.host + ":" + std::to_string(config_.port);
  }

  asio::awaitable<void> Run() {
    auto self = shared_from_this();
    auto backoff = owner_.options_.backoff_min;
    std::mt19937_64 random(std::random_device{}());
    while (!stopping_) {
      kicked_ = false;
      auto subscription = CurrentSubscription();
      if (!subscription) {
        Status([&](LinkStatus& l) {
          l.state = "idle";
          l.subscription.clear();
        });
        co_await Pause(std::chrono::seconds(5));  // until Resubscribe, or a look now and then
        continue;
      }
      const uint64_t applied_before = records_applied_;
      std::string why = co_await Connect(
          subscription->ShareOfServer(owner_.options_.site_servers, owner_.options_.site_server));
      registry_.SetPeerReachable(config_.name, false);
      if (stopping_) break;
      Status([&](LinkStatus& l) {
        l.state = refused_ ? "refused" : "waiting";
        l.disconnects++;
        l.connected_ms = 0;
        l.last_error = why;
        l.last_error_ms = UnixMillis();
      });
      // Expected: sources restart and links drop. A warning, never an error.
      spdlog::warn("replication: link to {} ({}): {}", config_.name, address_, why);
      if (kicked_ || records_applied_ != applied_before) backoff = owner_.options_.backoff_min;
      if (kicked_) continue;
      auto jitter = std::uniform_int_distribution<int64_t>(0, backoff.count() / 2)(random);
      co_await Pause(backoff + std::chrono::milliseconds(jitter));
      backoff = std::min(backoff * 2, owner_.options_.backoff_max);
      if (refused_) backoff = owner_.options_.backoff_max;
    }
  }

  void Stop() {
    stopping_ = true;
    Kick();
  }

  // Ends the current connection (or pause) so that the link connects again at once.
  void Kick() {
    kicked_ = true;
    pause_.cancel();
    if (stream_) {
      boost::system::error_code ignored;
      stream_->lowest_layer().shutdown(tcp::socket::shutdown_both, ignored);
      stream_->lowest_layer().close(ignored);
    }
  }

 private:
  struct SourceShard {
    std::string lineage;  // the source shard's history (its Welcome, then its snapshot)
    uint64_t source_last = 0;
    std::vector<proto::ReplicaCursor> applied;  // per shard of this node: what it holds
    std::vector<proto::ReplicaCursor> stored;   // ... and what its stored cursor says
    bool snapshot_expected = false;
    bool in_snapshot = false;
    std::vector<std::string> sweep_from;  // per shard of this node: the last key swept
    std::vector<bool> swept_any;
    // Per shard of this node: it held no record of the subscription when the snapshot began (a
    // new replica), so there is nothing to sweep and nothing identical to skip: the snapshot's
    // records are written straight away (no range scans, no lookups).
    std::vector<bool> held_none;
  };

  // Everything, the mirrors this node holds from this source, or nothing to pull.
  std::optional<Subscription> CurrentSubscription() {
    if (config_.everything) return Subscription::Everything();
    auto mirrored = MirroredHere();
    if (mirrored.empty()) return std::nullopt;
    std::vector<std::string> prefixes;
    for (const auto& st : mirrored) prefixes.push_back(st.prefix());
    auto sub = Subscription::Of(prefixes);
    if (!sub.ok()) return std::nullopt;
    return *sub;
  }

  std::vector<proto::PrefixState> MirroredHere() {
    std::vector<proto::PrefixState> out;
    auto states = registry_.Prefixes();
    if (!states.ok()) return out;
    for (auto& st : *states) {
      if (st.role() == proto::PrefixState::MIRRORED && st.peer() == config_.name)
        out.push_back(std::move(st));
    }
    return out;
  }

  asio::awaitable<void> Pause(std::chrono::milliseconds how_long) {
    if (kicked_ || stopping_) co_return;
    pause_.expires_after(how_long);
    co_await pause_.async_wait(asio::as_tuple(asio::use_awaitable));
  }

  void Status(const std::function<void(LinkStatus&)>& change) {
    owner_.status_.Update("pulling", config_.name, [&](LinkStatus& l) {
      l.address = address_;
      change(l);
    });
  }

  // One connection, from connect to its end; returns why it ended.
  asio::awaitable<std::string> Connect(const Subscription& subscription) {
    refused_ = false;
    subscription_ = subscription;
    shards_.clear();
    source_shards_ = 0;
    received_bytes_ = 0;
    allowed_memo_generation_ = UINT64_MAX;
    Status([&](LinkStatus& l) {
      l.state = "connecting";
      l.subscription = subscription.ToString();
    });
    auto executor = co_await asio::this_coro::executor;
    auto endpoints = co_await Resolve();
    if (!endpoints.ok()) co_return endpoints.error();
    stream_.emplace(tcp::socket(executor), *owner_.tls_);
    deadline_ = std::make_shared<net::Deadline>(executor);
    deadline_->at = Clock::now() + owner_.options_.connect_timeout;
    asio::co_spawn(executor, net::Watchdog(stream_->lowest_layer(), deadline_), asio::detached);
    std::string why = co_await Converse(*endpoints);
    if (auto failed = SyncApplied()) spdlog::warn("replication: {}", *failed);
    boost::system::error_code ignored;
    stream_->lowest_layer().close(ignored);
    deadline_->done = true;
    deadline_->timer.cancel();
    stream_.reset();
    FlushCursors();
    co_return why;
  }

  // The source's addresses: its configured address, or its host name resolved afresh at each
  // connection (a container's or a moved node's address changes), within the connect timeout.
  asio::awaitable<Result<std::vector<tcp::endpoint>, std::string>> Resolve() {
    boost::system::error_code ec;
    auto address = asio::ip::make_address(config_.host, ec);
    if (!ec) co_return std::vector<tcp::endpoint>{tcp::endpoint(address, config_.port)};
    auto executor = co_await asio::this_coro::executor;
    // getaddrinfo runs on Asio's resolver thread and cannot be interrupted: the link waits on a
    // timer that the lookup's completion cancels, and gives up on the lookup when the timer fires
    // first (its late result is dropped; a stop meanwhile waits for the C library's timeout).
    struct Lookup {
      boost::system::error_code ec;
      tcp::resolver::results_type results;
      bool done = false;
    };
    auto lookup = std::make_shared<Lookup>();
    auto resolver = std::make_shared<tcp::resolver>(executor);
    auto limit = std::make_shared<asio::steady_timer>(executor, owner_.options_.connect_timeout);
    resolver->async_resolve(config_.host, std::to_string(config_.port),
                            [lookup, limit, resolver](const boost::system::error_code& lookup_ec,
                                                      tcp::resolver::results_type results) {
                              lookup->ec = lookup_ec;
                              lookup->results = std::move(results);
                              lookup->done = true;
                              limit->cancel();
                            });
    co_await limit->async_wait(asio::as_tuple(asio::use_awaitable));
    if (!lookup->done) {
      resolver->cancel();
      co_return Failure{"resolve " + config_.host + ": no answer within the connect timeout"};
    }
    const auto resolve_ec = lookup->ec;
    const auto& results = lookup->results;
    if (resolve_ec) co_return Failure{"resolve " + config_.host + ": " + resolve_ec.message()};
    std::vector<tcp::endpoint> out;
    for (const auto& entry : results) {
      if (out.size() < 8) out.push_back(entry.endpoint());
    }
    if (out.empty()) co_return Failure{"resolve " + config_.host + ": no address"};
    co_return out;
  }

  asio::awaitable<std::string> Converse(const std::vector<tcp::endpoint>& endpoints) {
    auto [connect_ec, connected] = co_await asio::async_connect(
        stream_->lowest_layer(), endpoints, asio::as_tuple(asio::use_awaitable));
    if (connect_ec) co_return "connect: " + connect_ec.message();
    stream_->lowest_layer().set_option(tcp::no_delay(true));
    // The source must be the node configured under this name.
    SSL_set_tlsext_host_name(stream_->native_handle(), config_.name.c_str());
    stream_->set_verify_callback(asio::ssl::host_name_verification(config_.name));
    deadline_->Set(Clock::now() + owner_.options_.connect_timeout);
    auto [hs_ec] = co_await stream_->async_handshake(asio::ssl::stream_base::client,
                                                     asio::as_tuple(asio::use_awaitable));
    if (hs_ec) co_return "TLS handshake: " + hs_ec.message();

    auto hello = BuildHello();
    if (!hello.ok()) co_return hello.error();
    if (auto failed = co_await Send(*hello)) co_return *failed;

    std::vector<uint8_t> body;
    std::vector<std::string> keys;
    for (;;) {
      deadline_->Set(Clock::now() + owner_.options_.idle_timeout);
      if (auto failed = co_await detail::ReadFrame(*stream_, kMaxFrameBytes, body))
        co_return *failed;
      received_bytes_ += kFrameHeadBytes + body.size();
      auto parsed = ParseSourceMessage(body, source_shards_, &keys);
      if (!parsed.ok()) co_return "from the source: " + parsed.error();
      const uint64_t frame_bytes = kFrameHeadBytes + body.size();
      Status([&](LinkStatus& l) { l.bytes_received += frame_bytes; });
      std::optional<std::string> failed;
      switch (parsed->body_case()) {
        case proto::SourceMessage::kRefusal:
          refused_ = true;
          co_return "refused by the source: " + parsed->refusal().reason();
        case proto::SourceMessage::kWelcome:
          failed = OnWelcome(parsed->welcome());
          break;
        case proto::SourceMessage::kSnapshotBegin:
          failed = OnSnapshotBegin(parsed->snapshot_begin());
          break;
        case proto::SourceMessage::kSnapshotChunk:
          failed = OnSnapshotChunk(parsed->snapshot_chunk(), keys);
          break;
        case proto::SourceMessage::kSnapshotEnd:
          failed = OnSnapshotEnd(parsed->snapshot_end());
          break;
        case proto::SourceMessage::kChanges:
          failed = OnChanges(parsed->changes());
          break;
        case proto::SourceMessage::kHeartbeat:
          failed = OnHeartbeat(parsed->heartbeat());
          break;
        default:
          failed = "an unexpected message";
      }
      if (failed) co_return *failed;
      // Group commit: while more of the stream is already here, keep applying; then one fsync
      // per shard written, and one acknowledgement, for the whole burst.
      if (MoreBuffered()) continue;
      if (auto sync_failed = SyncApplied()) co_return *sync_failed;
      if (Clock::now() >= next_flush_) {
        FlushCursors();
        next_flush_ = Clock::now() + std::chrono::seconds(1);
      }
      proto::ReplicaMessage ack_message;
      proto::Ack& ack = *ack_message.mutable_ack();
      ack.set_bytes(received_bytes_);
      for (const auto& p : StoredPositions()) *ack.add_positions() = p;
      if (auto write_failed = co_await Send(ack_message)) co_return *write_failed;
      UpdateLag();
    }
  }

  // Whether stream bytes wait to be read: decrypted (SSL_pending), received but not decrypted
  // (the read BIO), or in the socket. Asio's own small staging buffer is not seen: then the
  // burst ends a little early, which costs an fsync, never correctness.
  bool MoreBuffered() {
    SSL* ssl = stream_->native_handle();
    if (SSL_pending(ssl) > 0 || BIO_ctrl_pending(SSL_get_rbio(ssl)) > 0) return true;
    boost::system::error_code ec;
    return stream_->next_layer().available(ec) > 0 && !ec;
  }

  // Makes the changes applied since the last acknowledgement durable.
  std::optional<std::string> SyncApplied() {
    for (uint32_t j : unsynced_) {
      auto synced = registry_.SyncShard(j);
      if (!synced.ok()) return "apply: " + synced.error();
    }
    unsynced_.clear();
    return std::nullopt;
  }

  asio::awaitable<std::optional<std::string>> Send(const proto::ReplicaMessage& m) {
    frame_.clear();
    if (!AppendFrame(m, frame_)) co_return std::string("a message too large to send");
    co_return co_await detail::WriteAll(*stream_, frame_, *deadline_, owner_.options_.send_timeout,
                                        owner_.options_.idle_timeout);
  }

  // ---- what this node has from the source ----

  // The stored cursors of every shard of this node: source shard -> per target shard.
  Result<std::map<uint32_t, std::vector<std::optional<proto::ReplicaCursor>>>, std::string>
  LoadCursors() {
    std::map<uint32_t, std::vector<std::optional<proto::ReplicaCursor>>> out;
    const uint32_t targets = registry_.shard_count();
    const std::string prefix = CursorKeyPrefix(config_.name);
    for (uint32_t j = 0; j < targets; ++j) {
      bool bad = false;
      auto scanned = registry_.ScanMeta(j, prefix, [&](std::string_view key, std::string_view v) {
        std::string_view number = key.substr(prefix.size());
        uint32_t shard = 0;
        for (char ch : number) {
          if (ch < '0' || ch > '9' || shard > kMaxShards) {
            bad = true;
            return false;
          }
          shard = shard * 10 + static_cast<uint32_t>(ch - '0');
        }
        proto::ReplicaCursor cursor;
        if (number.empty() || !cursor.ParseFromArray(v.data(), static_cast<int>(v.size()))) {
          bad = true;
          return false;
        }
        auto& per_target = out[shard];
        per_target.resize(targets);
        per_target[j] = std::move(cursor);
        return true;
      });
      if (!scanned.ok()) return Failure{scanned.error()};
      if (bad) return Failure{"a corrupt replication cursor in shard " + std::to_string(j)};
    }
    return out;
  }

  Result<proto::ReplicaMessage, std::string> BuildHello() {
    auto cursors = LoadCursors();
    if (!cursors.ok()) return Failure{cursors.error()};
    loaded_ = std::move(*cursors);
    proto::ReplicaMessage m;
    proto::Hello& hello = *m.mutable_hello();
    hello.set_protocol_version(kProtocolVersion);
    hello.set_window_bytes(owner_.options_.window_bytes);
    if (subscription_.everything()) {
      hello.set_everything(true);
    } else {
      for (const auto& p : subscription_.prefixes()) hello.add_prefixes(p);
    }
    if (subscription_.site_servers() > 1) {
      hello.set_site_servers(subscription_.site_servers());
      hello.set_site_server(subscription_.site_server());
    }
    // A position only where every shard of this node has one, in one history, complete.
    for (const auto& [source_shard, per_target] : loaded_) {
      if (source_shard >= kMaxShards) continue;
      bool complete = per_target.size() == registry_.shard_count();
      uint64_t position = UINT64_MAX;
      uint64_t highest = 0;
      for (const auto& c : per_target) {
        if (!c || c->resyncing() || c->lineage_id() != per_target.front()->lineage_id()) {
          complete = false;
          break;
        }
        position = std::min(position, c->sequence());
        highest = std::max(highest, c->sequence());
      }
      if (!complete) continue;
      auto* p = hello.add_positions();
      p->set_shard(source_shard);
      p->set_lineage_id(per_target.front()->lineage_id());
      p->set_sequence(position);
      p->set_highest(highest);
    }
    for (const auto& st : MirroredHere()) {
      auto* l = hello.add_lineages();
      l->set_prefix(st.prefix());
      l->set_lineage_id(st.lineage_id());
    }
    return m;
  }

  std::optional<std::string> OnWelcome(const proto::Welcome& welcome) {
    source_shards_ = welcome.shard_count();
    const uint32_t targets = registry_.shard_count();
    shards_.assign(source_shards_, SourceShard{});
    for (const auto& p : welcome.shards()) {
      shards_[p.shard()].lineage = p.lineage_id();
      shards_[p.shard()].source_last = p.sequence();
    }
    for (uint32_t i = 0; i < source_shards_; ++i) {
      SourceShard& sh = shards_[i];
      sh.applied.assign(targets, Resyncing());
      auto it = loaded_.find(i);
      if (it != loaded_.end()) {
        for (uint32_t j = 0; j < targets && j < it->second.size(); ++j) {
          if (it->second[j]) sh.applied[j] = *it->second[j];
        }
      }
      sh.stored = sh.applied;
      sh.sweep_from.assign(targets, std::string());
      sh.swept_any.assign(targets, false);
    }
    for (uint32_t s : welcome.snapshot_shards()) shards_[s].snapshot_expected = true;
    for (uint32_t i = 0; i < source_shards_; ++i) {
      if (shards_[i].snapshot_expected) continue;
      // Resumed: each shard of this node must hold a position (the source checked that its
      // history is the source shard's, or one the source shard forked from at or after it: such
      // positions carry on under the source's current lineage id).
      for (auto& c : shards_[i].applied) {
        if (c.resyncing())
          return "the source resumes shard " + std::to_string(i) + " from a position not ours";
        if (c.lineage_id() != shards_[i].lineage) c.set_lineage_id(shards_[i].lineage);
      }
    }
    // The relabelled positions are stored at once (synced): a crash before the next flush must
    // not leave cursors of one source shard in two histories (that would cost a snapshot).
    FlushCursors();
    welcome_lineages_.clear();
    homed_on_both_.clear();
    for (const auto& l : welcome.lineages()) welcome_lineages_[l.prefix()] = l.lineage_id();
    if (subscription_.everything()) {
      for (const auto& st : welcome.prefix_states()) EnsureMirror(st.prefix(), st.lineage_id());
    }
    for (const auto& st : welcome.prefix_states()) NoteIfHomedOnBoth(st);
    registry_.SetPeerReachable(config_.name, true);
    Status([&](LinkStatus& l) {
      l.state = welcome.snapshot_shards_size() > 0 ? "snapshot" : "streaming";
      if (welcome.snapshot_shards_size() > 0) l.resyncs++;
      l.connects++;
      l.connected_ms = UnixMillis();
    });
    spdlog::info("replication: pulling {} from {} ({}): {} of {} shards from a snapshot",
                 subscription_.ToString(), config_.name, address_, welcome.snapshot_shards_size(),
                 source_shards_);
    if (welcome.snapshot_shards_size() == 0) MarkSynced();
    return std::nullopt;
  }

  // Mirrors `prefix` from this source (a replica of everything follows the source's homed and
  // mirrored prefixes), unless it is homed here or mirrored from elsewhere.
  void EnsureMirror(const std::string& prefix, const std::string& lineage) {
    auto here = registry_.ReadPrefix(prefix);
    if (!here.ok()) return;
    const auto& st = *here;
    if (st && st->role() == proto::PrefixState::HOMED) {
      spdlog::warn("replication: {} is homed here; not mirrored from {}", prefix, config_.name);
      return;
    }
    if (st && st->role() == proto::PrefixState::MIRRORED) return;  // from us, or elsewhere
    if (registry_.MirrorPrefix(prefix, config_.name).code != protocol::ResponseCode::kSuccess)
      return;
    if (config_.answer_policy != 0) registry_.SetMirrorAnswerPolicy(prefix, config_.answer_policy);
    welcome_lineages_[prefix] = lineage;
  }

  // Every mirror from this source is complete: a miss there is now "not found".
  void MarkSynced() {
    for (const auto& st : MirroredHere()) {
      auto it = welcome_lineages_.find(st.prefix());
      const std::string lineage = it == welcome_lineages_.end() ? st.lineage_id() : it->second;
      if ((st.flags() & kMirrorSynced) != 0 && st.lineage_id() == lineage) continue;
      registry_.SetMirrorState(st.prefix(), config_.name, lineage, true);
    }
    Status([&](LinkStatus& l) { l.state = "streaming"; });
  }

  // Whether the record under `key` may be written here from this source: its nearest homed or
  // mirrored prefix is mirrored from this source (none at all: only for a replica of everything).
  bool Allowed(std::string_view key) {
    std::string_view start;
    bool prefix_handle = identifier::IsPrefixHandle(key);
    if (prefix_handle) {
      start = registry::ParentPrefix(key.substr(identifier::kPrefixHandlePrefix.size()));
    } else {
      start = identifier::PrefixOf(key);
    }
    const uint64_t generation = registry_.prefix_generation();
    if (generation == allowed_memo_generation_ && prefix_handle == allowed_memo_handle_ &&
        start == allowed_memo_prefix_)
      return allowed_memo_;
    const auto& table = registry::ThreadView(registry_.prefix_table());
    bool allowed = subscription_.everything();
    bool decided = false;
    auto decide = [&](std::string_view q) {
      const registry::PrefixEntry* e = table.Find(q);
      if (e == nullptr) return false;
      if (e->role == registry::PrefixRole::kHomed) {
        allowed = false;
        return true;
      }
      if (e->role == registry::PrefixRole::kMirrored) {
        allowed = registry_.MirrorPeerOf(q) == config_.name;
        return true;
      }
      return false;
    };
    for (std::string_view q = start; !q.empty() && !decided; q = registry::ParentPrefix(q))
      decided = decide(q);
    if (!decided && prefix_handle) decide("0.NA");
    allowed_memo_generation_ = generation;
    allowed_memo_handle_ = prefix_handle;
    allowed_memo_prefix_.assign(start);
    allowed_memo_ = allowed;
    return allowed;
  }

  // ---- snapshots ----

  std::optional<std::string> OnSnapshotBegin(const proto::SnapshotBegin& begin) {
    SourceShard& sh = shards_[begin.shard()];
    if (!sh.snapshot_expected || sh.in_snapshot)
      return "a snapshot of shard " + std::to_string(begin.shard()) + " not announced";
    sh.in_snapshot = true;
    sh.lineage = begin.lineage_id();
    sh.held_none.assign(registry_.shard_count(), false);
    for (uint32_t j = 0; j < registry_.shard_count(); ++j) {
      bool any = false;
      for (const auto& [range_begin, range_end] : subscription_.KeyRanges()) {
        auto scanned = registry_.store().Scan(j, storage::Column::kRecords, range_begin, range_end,
                                              [&](std::string_view, std::string_view) {
                                                any = true;
                                                return false;
                                              });
        if (!scanned.ok()) return "snapshot: " + scanned.error().message;
        if (any) break;
      }
      sh.held_none[j] = !any;
    }
    // From here until its end the position means nothing: a crash takes the snapshot again.
    const std::string key = CursorKey(config_.name, begin.shard());
    const std::string value = Resyncing().SerializeAsString();
    for (uint32_t j = 0; j < registry_.shard_count(); ++j) {
      if (sh.stored[j].resyncing()) continue;
      auto written = registry_.WriteMeta(j, {{key, value}});
      if (!written.ok()) return "cannot write a cursor: " + written.error();
      sh.stored[j] = sh.applied[j] = Resyncing();
    }
    Status([&](LinkStatus& l) {
      l.state = "snapshot";
      l.snapshots++;
    });
    return std::nullopt;
  }

  // Deletions for the records of shard `target` in (after, up_to] (after "" and !swept: from the
  // start; up_to empty: to the end) that the snapshot of source shard `source_shard` does not
  // hold (`present`, sorted): covered by the subscription, of that source shard, and ours to
  // write. Deletions are applied as they reach kApplyBatch, so memory stays bounded however many
  // records the source no longer has.
  Result<Unit, std::string> Sweep(uint32_t source_shard, uint32_t target, const std::string& after,
                                  bool has_after, const std::string* up_to,
                                  const std::vector<std::string_view>& present,
                                  std::vector<registry::Registry::ReplicatedChange>& deletes) {
    std::string hi;
    if (up_to != nullptr) {
      hi = *up_to;
      hi.push_back('\0');  // up_to itself included
    }
    std::string failure;
    for (const auto& [range_begin, range_end] : subscription_.KeyRanges()) {
      std::string begin = has_after ? std::max(range_begin, after) : range_begin;
      std::string end = range_end;
      if (up_to != nullptr && (end.empty() || hi < end)) end = hi;
      if (!end.empty() && begin >= end) continue;
      auto scanned = registry_.store().Scan(
          target, storage::Column::kRecords, begin, end,
          [&](std::string_view key, std::string_view) {
            if (has_after && key == after) return true;
            if (std::binary_search(present.begin(), present.end(), key)) return true;
            if (!subscription_.Covers(key)) return true;
            if (identifier::ShardOf(key, source_shards_) != source_shard) return true;
            if (!Allowed(key)) return true;
            deletes.push_back({std::string(key), std::nullopt});
            if (deletes.size() < kApplyBatch) return true;
            auto applied = registry_.ApplyReplicated(target, deletes, {}, false);
            if (!applied.ok()) {
              failure = applied.error();
              return false;
            }
            records_applied_ += deletes.size();
            deletes.clear();
            return true;
          });
      if (!failure.empty()) return Failure{failure};
      if (!scanned.ok()) return Failure{scanned.error().message};
    }
    return Unit{};
  }

  std::optional<std::string> OnSnapshotChunk(const proto::SnapshotChunk& chunk,
                                             const std::vector<std::string>& keys) {
    SourceShard& sh = shards_[chunk.shard()];
    if (!sh.in_snapshot) return std::string("snapshot records outside a snapshot");
    const uint32_t targets = registry_.shard_count();
    std::vector<std::vector<size_t>> by_target(targets);
    for (size_t k = 0; k < keys.size(); ++k) by_target[registry_.ShardOf(keys[k])].push_back(k);
    for (uint32_t j = 0; j < targets; ++j) {
      if (by_target[j].empty()) continue;
      std::vector<registry::Registry::ReplicatedChange> changes;
      if (sh.held_none[j]) {
        for (size_t k : by_target[j]) {
          if (Allowed(keys[k])) changes.push_back({keys[k], chunk.records(static_cast<int>(k))});
        }
      } else {
        std::vector<std::string_view> present;
        std::vector<std::string> lookup;
        for (size_t k : by_target[j]) {
          present.emplace_back(keys[k]);
          lookup.push_back(keys[k]);
        }
        auto swept = Sweep(chunk.shard(), j, sh.sweep_from[j], sh.swept_any[j],
                           &keys[by_target[j].back()], present, changes);
        if (!swept.ok()) return "snapshot: " + swept.error();
        // Records this node already holds exactly as the source does are not written again.
        auto existing = registry_.store().MultiGet(j, storage::Column::kRecords, lookup);
        if (!existing.ok()) return "snapshot: " + existing.error().message;
        for (size_t n = 0; n < by_target[j].size(); ++n) {
          const size_t k = by_target[j][n];
          const std::string& bytes = chunk.records(static_cast<int>(k));
          if ((*existing)[n] && *(*existing)[n] == bytes) continue;
          if (!Allowed(keys[k])) continue;
          changes.push_back({keys[k], bytes});
        }
      }
      if (!changes.empty()) {
        auto applied = registry_.ApplyReplicated(j, changes, {}, /*logged=*/false);
        if (!applied.ok()) return "snapshot: " + applied.error();
        records_applied_ += changes.size();
      }
      sh.sweep_from[j] = keys[by_target[j].back()];
      sh.swept_any[j] = true;
    }
    Status([&](LinkStatus& l) { l.records_applied = records_applied_; });
    return std::nullopt;
  }

  std::optional<std::string> OnSnapshotEnd(const proto::SnapshotEnd& end) {
    SourceShard& sh = shards_[end.shard()];
    if (!sh.in_snapshot || end.lineage_id() != sh.lineage)
      return std::string("a snapshot end outside its snapshot");
    proto::ReplicaCursor cursor;
    cursor.set_lineage_id(sh.lineage);
    cursor.set_sequence(end.sequence());
    const std::string key = CursorKey(config_.name, end.shard());
    const std::string value = cursor.SerializeAsString();
    for (uint32_t j = 0; j < registry_.shard_count(); ++j) {
      std::vector<registry::Registry::ReplicatedChange> deletes;
      if (!sh.held_none[j]) {
        auto swept = Sweep(end.shard(), j, sh.sweep_from[j], sh.swept_any[j], nullptr, {}, deletes);
        if (!swept.ok()) return "snapshot: " + swept.error();
      }
      // The last batch carries the cursor (and is written synced, with all before it).
      for (size_t from = 0;; from += kApplyBatch) {
        const size_t to = std::min(deletes.size(), from + kApplyBatch);
        std::vector<registry::Registry::ReplicatedChange> part(deletes.begin() + from,
                                                               deletes.begin() + to);
        const bool last = to == deletes.size();
        std::vector<std::pair<std::string, std::string>> meta;
        if (last) meta.emplace_back(key, value);
        auto applied = registry_.ApplyReplicated(j, part, meta, /*logged=*/false);
        if (!applied.ok()) return "snapshot: " + applied.error();
        records_applied_ += part.size();
        if (last) break;
      }
      sh.applied[j] = sh.stored[j] = cursor;
    }
    sh.in_snapshot = false;
    sh.snapshot_expected = false;
    sh.source_last = std::max(sh.source_last, end.sequence());
    const bool all_done = std::none_of(shards_.begin(), shards_.end(),
                                       [](const SourceShard& s) { return s.snapshot_expected; });
    if (all_done) MarkSynced();
    Status([&](LinkStatus& l) { l.records_applied = records_applied_; });
    return std::nullopt;
  }

  // ---- the changelog ----

  std::optional<std::string> OnChanges(const proto::Changes& changes) {
    SourceShard& sh = shards_[changes.shard()];
    if (sh.snapshot_expected || changes.lineage_id() != sh.lineage)
      return "changes of shard " + std::to_string(changes.shard()) + " out of their history";
    for (const auto& e : changes.entries()) {
      if (e.operation() != proto::ChangelogEntry::PREFIX) continue;
      if (auto failed = OnPrefixChange(e.prefix_state())) return failed;
    }
    const uint32_t targets = registry_.shard_count();
    std::vector<std::vector<registry::Registry::ReplicatedChange>> by_target(targets);
    uint64_t last_time_ms = 0;
    for (const auto& e : changes.entries()) {
      last_time_ms = e.time_ms();
      if (e.operation() == proto::ChangelogEntry::PREFIX) continue;
      const uint32_t j = registry_.ShardOf(e.handle());
      if (e.sequence() <= sh.applied[j].sequence()) continue;  // applied before a restart
      if (!Allowed(e.handle())) continue;
      if (e.operation() == proto::ChangelogEntry::PUT) {
        by_target[j].push_back({e.handle(), e.record().SerializeAsString()});
      } else {
        by_target[j].push_back({e.handle(), std::nullopt});
      }
    }
    proto::ReplicaCursor cursor;
    cursor.set_lineage_id(sh.lineage);
    cursor.set_sequence(changes.through());
    const std::string key = CursorKey(config_.name, changes.shard());
    for (uint32_t j = 0; j < targets; ++j) {
      if (sh.applied[j].sequence() >= changes.through() && !sh.applied[j].resyncing()) continue;
      if (by_target[j].empty()) {
        sh.applied[j] = cursor;  // nothing for this shard: stored at the next flush
        continue;
      }
      auto applied = registry_.ApplyReplicated(j, by_target[j], {{key, cursor.SerializeAsString()}},
                                               /*logged=*/true, /*sync=*/false);
      if (!applied.ok()) return "apply: " + applied.error();
      unsynced_.insert(j);
      records_applied_ += by_target[j].size();
      sh.applied[j] = sh.stored[j] = cursor;
    }
    sh.source_last = std::max(sh.source_last, changes.through());
    if (changes.entries_size() > 0) last_change_ms_ = last_time_ms;
    Status([&](LinkStatus& l) { l.records_applied = records_applied_; });
    return std::nullopt;
  }

  // A prefix's role changed at the source.
  // A prefix of the subscription that the source homes and this node homes too: two writable
  // copies (an old owner restarted after a take-over without `idctl prefix mirror`). Nothing is
  // applied to it from the source (Allowed, ApplyReplicated); the operator is told, loudly, in
  // the log and in the link's status.
  void NoteIfHomedOnBoth(const proto::PrefixState& st) {
    if (st.role() != proto::PrefixState::HOMED) return;
    const std::string prefix = identifier::Normalize(st.prefix());
    if (!subscription_.everything() && !subscription_.CoversPrefix(prefix)) return;
    auto here = registry_.ReadPrefix(prefix);
    if (!here.ok() || !*here || (*here)->role() != proto::PrefixState::HOMED) return;
    const std::string problem = prefix + " is homed both here and at " + config_.name +
                                ": one of them must become a mirror (idctl prefix mirror)";
    if (!homed_on_both_.insert(prefix).second) return;  // once per connection
    spdlog::error("replication: {}", problem);
    Status([&](LinkStatus& l) {
      l.last_error = problem;
      l.last_error_ms = UnixMillis();
    });
  }

  std::optional<std::string> OnPrefixChange(const proto::PrefixState& st) {
    NoteIfHomedOnBoth(st);
    const std::string prefix = identifier::Normalize(st.prefix());
    auto here_read = registry_.ReadPrefix(prefix);
    if (!here_read.ok()) return "cannot read the prefix table: " + here_read.error();
    const auto& here = *here_read;
    const bool has_role =
        st.role() == proto::PrefixState::HOMED || st.role() == proto::PrefixState::MIRRORED;
    const bool ours =
        here && here->role() == proto::PrefixState::MIRRORED && here->peer() == config_.name;
    if (has_role && ours) {
      if (!here->lineage_id().empty() && here->lineage_id() != st.lineage_id() &&
          (here->flags() & kMirrorSynced) != 0) {
        ForceResync();
        return "the history of " + prefix + " changed at the source (taken over?): resync";
      }
      return std::nullopt;
    }
    if (has_role && subscription_.everything()) {
      EnsureMirror(prefix, st.lineage_id());
      registry_.SetMirrorState(prefix, config_.name, st.lineage_id(), true);
      return std::nullopt;
    }
    if (!has_role && ours && subscription_.everything()) registry_.ForgetPrefix(prefix);
    return std::nullopt;
  }

  // Every position from this source is void: the next connection takes snapshots.
  void ForceResync() {
    const std::string value = Resyncing().SerializeAsString();
    for (uint32_t i = 0; i < shards_.size(); ++i) {
      for (uint32_t j = 0; j < registry_.shard_count(); ++j) {
        auto written = registry_.WriteMeta(j, {{CursorKey(config_.name, i), value}});
        if (!written.ok()) spdlog::warn("replication: cannot write a cursor: {}", written.error());
      }
      shards_[i].applied.assign(registry_.shard_count(), Resyncing());
      shards_[i].stored = shards_[i].applied;
    }
  }

  std::optional<std::string> OnHeartbeat(const proto::Heartbeat& heartbeat) {
    for (const auto& p : heartbeat.last()) {
      SourceShard& sh = shards_[p.shard()];
      if (p.lineage_id() == sh.lineage) sh.source_last = std::max(sh.source_last, p.sequence());
    }
    FlushCursors();
    return std::nullopt;
  }

  // Stores the positions that moved without changes for a shard of this node.
  void FlushCursors() {
    for (uint32_t i = 0; i < shards_.size(); ++i) {
      SourceShard& sh = shards_[i];
      for (uint32_t j = 0; j < sh.applied.size(); ++j) {
        if (sh.applied[j].SerializeAsString() == sh.stored[j].SerializeAsString()) continue;
        auto written = registry_.WriteMeta(
            j, {{CursorKey(config_.name, i), sh.applied[j].SerializeAsString()}});
        if (!written.ok()) {
          spdlog::warn("replication: cannot write a cursor: {}", written.error());
          return;
        }
        sh.stored[j] = sh.applied[j];
      }
    }
  }

  // The positions stored in every shard of this node, per source shard (what the source may
  // rely on to keep its changelog).
  std::vector<proto::ShardPosition> StoredPositions() const {
    std::vector<proto::ShardPosition> out;
    for (uint32_t i = 0; i < shards_.size(); ++i) {
      const SourceShard& sh = shards_[i];
      if (sh.snapshot_expected || sh.stored.empty()) continue;
      uint64_t position = UINT64_MAX;
      bool complete = true;
      for (const auto& c : sh.stored) {
        if (c.resyncing() || c.lineage_id() != sh.lineage) complete = false;
        position = std::min(position, c.sequence());
      }
      if (!complete) continue;
      proto::ShardPosition p;
      p.set_shard(i);
      p.set_lineage_id(sh.lineage);
      p.set_sequence(position);
      out.push_back(std::move(p));
    }
    return out;
  }

  void UpdateLag() {
    uint64_t lag = 0;
    std::vector<ShardProgress> progress;
    for (uint32_t i = 0; i < shards_.size(); ++i) {
      const SourceShard& sh = shards_[i];
      uint64_t position = UINT64_MAX;
      for (const auto& c : sh.applied) position = std::min(position, c.sequence());
      if (sh.applied.empty() || sh.snapshot_expected) position = 0;
      progress.push_back({i, position, sh.source_last});
      lag += sh.source_last - std::min(sh.source_last, position);
    }
    const uint64_t now = UnixMillis();
    const uint64_t lag_ms =
        lag == 0 || last_change_ms_ == 0 ? 0 : now - std::min(now, last_change_ms_);
    Status([&](LinkStatus& l) {
      l.shards = std::move(progress);
      l.lag_entries = lag;
      l.lag_ms = lag_ms;
    });
  }

  ReplicaClient& owner_;
  registry::Registry& registry_;
  const SourceLink config_;
  std::string address_;
  asio::steady_timer pause_;
  bool stopping_ = false;
  bool kicked_ = false;
  bool refused_ = false;
  uint64_t records_applied_ = 0;
  // Per connection (reset by Connect):
  std::optional<detail::Stream> stream_;
  std::shared_ptr<net::Deadline> deadline_;
  Subscription subscription_;
  uint32_t source_shards_ = 0;
  std::vector<SourceShard> shards_;
  std::map<uint32_t, std::vector<std::optional<proto::ReplicaCursor>>> loaded_;
  std::map<std::string, std::string> welcome_lineages_;
  std::set<std::string> homed_on_both_;  // prefixes reported this connection
  std::set<uint32_t> unsynced_;          // shards written since the last fsync
  uint64_t received_bytes_ = 0;
  uint64_t last_change_ms_ = 0;
  Clock::time_point next_flush_{};
  std::string frame_;
  uint64_t allowed_memo_generation_ = UINT64_MAX;
  bool allowed_memo_handle_ = false;
  std::string allowed_memo_prefix_;
  bool allowed_memo_ = false;
};

ReplicaClient::ReplicaClient(registry::Registry& registry, ReplicaOptions options,
                             std::shared_ptr<asio::ssl::context> tls, StatusBoard& status)
    : registry_(registry), options_(std::move(options)), tls_(std::move(tls)), status_(status) {
  for (const auto& source : options_.sources)
    links_.push_back(std::make_shared<Link>(*this, source));
}

ReplicaClient::~ReplicaClient() {
  Stop();
}

Result<std::vector<std::string>, std::string> ReplicaClient::Prepare() {
  std::vector<std::string> warnings;
  for (const auto& source : options_.sources) {
    for (const auto& prefix : source.prefixes) {
      auto here = registry_.ReadPrefix(prefix);
      if (!here.ok()) return Failure{here.error()};
      const auto& st = *here;
      if (st && st->role() == proto::PrefixState::HOMED) {
        warnings.push_back(prefix + " is homed here (taken over?): not mirrored from " +
                           source.name);
        continue;
      }
      if (st && st->role() == proto::PrefixState::MIRRORED) {
        if (st->peer() != source.name)
          warnings.push_back(prefix + " is mirrored from " + st->peer() + ", not from " +
                             source.name + " (a mirror command wins over the file)");
        continue;
      }
      if (registry_.MirrorPrefix(prefix, source.name).code != protocol::ResponseCode::kSuccess)
        return Failure{"cannot mirror " + prefix + " from " + source.name};
    }
    auto states = registry_.Prefixes();
    if (!states.ok()) return Failure{states.error()};
    for (const auto& st : *states) {
      if (st.role() != proto::PrefixState::MIRRORED || st.peer() != source.name) continue;
      constexpr uint32_t kPolicy =
          registry::prefix_flag::kReferToOwner | registry::prefix_flag::kReferWhileOwnerUp;
      if ((st.flags() & kPolicy) == source.answer_policy) continue;
      registry_.SetMirrorAnswerPolicy(st.prefix(), source.answer_policy);
    }
    // Until its link is up, a source counts as unreachable (mirror_when_owner_down answers).
    registry_.SetPeerReachable(source.name, false);
  }
  return warnings;
}

void ReplicaClient::Start() {
  if (links_.empty()) return;
  for (auto& link : links_) asio::co_spawn(io_, link->Run(), asio::detached);
  std::promise<void> finished;
  finished_ = finished.get_future();
  thread_ = std::thread([this, done = std::move(finished)]() mutable {
    io_.run();
    done.set_value();
  });
}

void ReplicaClient::Resubscribe() {
  asio::post(io_, [this] {
    for (auto& link : links_) link->Kick();
  });
}

void ReplicaClient::Stop() {
  if (stopped_) return;
  stopped_ = true;
  if (!thread_.joinable()) return;
  asio::post(io_, [this] {
    for (auto& link : links_) link->Stop();
  });
  if (finished_.wait_for(std::chrono::seconds(5)) != std::future_status::ready) io_.stop();
  thread_.join();
}

}  // namespace idnode::replication
