#include "idnode/replication/wire.h"

#include <set>

#include "idnode/identifier/identifier.h"
#include "idnode/protocol/constants.h"
#include "idnode/replication/subscription.h"

namespace idnode::replication {

namespace {

constexpr size_t kMaxLineageBytes = 64;
constexpr int kMaxListed = 100000;  // prefixes, lineages, prefix states in one message

Result<Unit, std::string> CheckPositions(
    const google::protobuf::RepeatedPtrField<proto::ShardPosition>& positions, uint32_t shard_count,
    const char* what) {
  if (positions.size() > static_cast<int>(kMaxShards))
    return Failure{std::string(what) + ": too many shard positions"};
  std::set<uint32_t> seen;
  for (const auto& p : positions) {
    if (p.shard() >= shard_count || !seen.insert(p.shard()).second)
      return Failure{std::string(what) + ": bad shard " + std::to_string(p.shard())};
    if (p.lineage_id().size() > kMaxLineageBytes)
      return Failure{std::string(what) + ": lineage id too long"};
    if (p.highest() != 0 && p.highest() < p.sequence())
      return Failure{std::string(what) + ": a highest position below the position"};
  }
  return Unit{};
}

Result<Unit, std::string> CheckLineages(
    const google::protobuf::RepeatedPtrField<proto::PrefixLineage>& lineages, const char* what) {
  if (lineages.size() > kMaxListed) return Failure{std::string(what) + ": too many lineages"};
  for (const auto& l : lineages) {
    if (l.lineage_id().size() > kMaxLineageBytes || l.prefix().empty() || l.prefix().size() > 128)
      return Failure{std::string(what) + ": bad prefix lineage"};
  }
  return Unit{};
}

bool ValidRecord(const proto::Record& record) {
  return identifier::IsValidHandle(record.handle()) &&
         record.values_size() <= static_cast<int>(protocol::kMaxValuesPerMessage);
}

Result<Unit, std::string> CheckShard(uint32_t shard, uint32_t shard_count) {
  if (shard >= shard_count) return Failure{"bad shard " + std::to_string(shard)};
  return Unit{};
}

Result<Unit, std::string> CheckChanges(const proto::Changes& changes, uint32_t shard_count) {
  auto shard = CheckShard(changes.shard(), shard_count);
  if (!shard.ok()) return shard;
  if (changes.lineage_id().size() > kMaxLineageBytes) return Failure{std::string("bad lineage")};
  uint64_t previous = 0;
  for (const auto& e : changes.entries()) {
    if (e.sequence() <= previous || e.sequence() > changes.through())
      return Failure{"changes out of order at " + std::to_string(e.sequence())};
    previous = e.sequence();
    switch (e.operation()) {
      case proto::ChangelogEntry::PUT:
        if (!ValidRecord(e.record()) || identifier::Normalize(e.record().handle()) != e.handle())
          return Failure{"a bad record in changes at " + std::to_string(e.sequence())};
        break;
      case proto::ChangelogEntry::DELETE:
        if (!identifier::IsValidHandle(e.handle()) ||
            identifier::Normalize(e.handle()) != e.handle())
          return Failure{"a bad deletion at " + std::to_string(e.sequence())};
        break;
      case proto::ChangelogEntry::PREFIX:
        if (!e.has_prefix_state() || e.prefix_state().prefix().empty() ||
            e.prefix_state().prefix().size() > 128 ||
            e.prefix_state().lineage_id().size() > kMaxLineageBytes)
          return Failure{"a bad prefix change at " + std::to_string(e.sequence())};
        break;
      default:
        return Failure{"an unknown change at " + std::to_string(e.sequence())};
    }
  }
  return Unit{};
}

}  // namespace

bool AppendFrame(const google::protobuf::MessageLite& message, std::string& out) {
  const size_t size = message.ByteSizeLong();
  if (size == 0 || size > kMaxFrameBytes) return false;
  const size_t at = out.size();
  out.resize(at + kFrameHeadBytes + size);
  for (size_t i = 0; i < kFrameHeadBytes; ++i)
    out[at + i] = static_cast<char>((size >> (8 * (kFrameHeadBytes - 1 - i))) & 0xff);
  if (!message.SerializeToArray(out.data() + at + kFrameHeadBytes, static_cast<int>(size))) {
    out.resize(at);
    return false;
  }
  return true;
}

Result<uint32_t, std::string> FrameLength(std::span<const uint8_t, kFrameHeadBytes> head,
                                          uint32_t max) {
  const uint32_t length = (uint32_t{head[0]} << 24) | (uint32_t{head[1]} << 16) |
                          (uint32_t{head[2]} << 8) | uint32_t{head[3]};
  if (length == 0 || length > max)
    return Failure{"a frame of " + std::to_string(length) + " bytes (at most " +
                   std::to_string(max) + ")"};
  return length;
}

Result<proto::ReplicaMessage, std::string> ParseReplicaMessage(std::span<const uint8_t> body,
                                                               uint32_t shard_count) {
  proto::ReplicaMessage m;
  if (body.size() > kMaxFrameBytes || !m.ParseFromArray(body.data(), static_cast<int>(body.size())))
    return Failure{std::string("a replica message that does not parse")};
  switch (m.body_case()) {
    case proto::ReplicaMessage::kHello: {
      const auto& h = m.hello();
      if (h.protocol_version() < kProtocolVersion)
        return Failure{"protocol version " + std::to_string(h.protocol_version())};
      if (!h.everything()) {
        auto subscription =
            Subscription::Of(std::vector<std::string>(h.prefixes().begin(), h.prefixes().end()));
        if (!subscription.ok()) return Failure{"hello: " + subscription.error()};
      } else if (h.prefixes_size() != 0) {
        return Failure{std::string("hello: everything and prefixes")};
      }
      if (h.site_servers() > kMaxSiteServers ||
          (h.site_servers() > 1 && h.site_server() >= h.site_servers()) ||
          (h.site_servers() <= 1 && h.site_server() != 0))
        return Failure{"hello: server " + std::to_string(h.site_server()) + " of a site of " +
                       std::to_string(h.site_servers())};
      auto positions = CheckPositions(h.positions(), shard_count, "hello");
      if (!positions.ok()) return Failure{positions.error()};
      auto lineages = CheckLineages(h.lineages(), "hello");
      if (!lineages.ok()) return Failure{lineages.error()};
      return m;
    }
    case proto::ReplicaMessage::kAck: {
      auto positions = CheckPositions(m.ack().positions(), shard_count, "ack");
      if (!positions.ok()) return Failure{positions.error()};
      return m;
    }
    default:
      return Failure{std::string("an empty replica message")};
  }
}

Result<proto::SourceMessage, std::string> ParseSourceMessage(std::span<const uint8_t> body,
                                                             uint32_t shard_count,
                                                             std::vector<std::string>* chunk_keys) {
  proto::SourceMessage m;
  if (body.size() > kMaxFrameBytes || !m.ParseFromArray(body.data(), static_cast<int>(body.size())))
    return Failure{std::string("a source message that does not parse")};
  const bool welcomed = shard_count != 0;
  switch (m.body_case()) {
    case proto::SourceMessage::kWelcome: {
      const auto& w = m.welcome();
      if (welcomed) return Failure{std::string("a second welcome")};
      if (w.protocol_version() < kProtocolVersion || w.shard_count() == 0 ||
          w.shard_count() > kMaxShards)
        return Failure{std::string("a bad welcome")};
      auto positions = CheckPositions(w.shards(), w.shard_count(), "welcome");
      if (!positions.ok()) return Failure{positions.error()};
      auto lineages = CheckLineages(w.lineages(), "welcome");
      if (!lineages.ok()) return Failure{lineages.error()};
      if (w.prefix_states_size() > kMaxListed) return Failure{std::string("too many prefixes")};
      if (w.snapshot_shards_size() > static_cast<int>(w.shard_count()))
        return Failure{std::string("welcome: too many snapshot shards")};
      for (uint32_t shard : w.snapshot_shards()) {
        if (shard >= w.shard_count()) return Failure{std::string("welcome: a bad snapshot shard")};
      }
      for (const auto& st : w.prefix_states()) {
        if (st.prefix().empty() || st.prefix().size() > 128 ||
            st.lineage_id().size() > kMaxLineageBytes)
          return Failure{std::string("welcome: a bad prefix state")};
      }
      return m;
    }
    case proto::SourceMessage::kRefusal:
      return m;
    default:
      break;
  }
  if (!welcomed) return Failure{std::string("a message before the welcome")};
  switch (m.body_case()) {
    case proto::SourceMessage::kSnapshotBegin: {
      auto ok = CheckShard(m.snapshot_begin().shard(), shard_count);
      if (!ok.ok()) return Failure{ok.error()};
      if (m.snapshot_begin().lineage_id().size() > kMaxLineageBytes)
        return Failure{std::string("bad lineage")};
      return m;
    }
    case proto::SourceMessage::kSnapshotChunk: {
      auto ok = CheckShard(m.snapshot_chunk().shard(), shard_count);
      if (!ok.ok()) return Failure{ok.error()};
      std::string previous;
      if (chunk_keys != nullptr) chunk_keys->clear();
      proto::Record record;
      for (const auto& bytes : m.snapshot_chunk().records()) {
        if (!record.ParseFromString(bytes) || !ValidRecord(record))
          return Failure{std::string("a bad record in a snapshot")};
        std::string key = identifier::Normalize(record.handle());
        if (!previous.empty() && key <= previous)
          return Failure{std::string("snapshot records out of order")};
        if (chunk_keys != nullptr) chunk_keys->push_back(key);
        previous = std::move(key);
      }
      return m;
    }
    case proto::SourceMessage::kSnapshotEnd: {
      auto ok = CheckShard(m.snapshot_end().shard(), shard_count);
      if (!ok.ok()) return Failure{ok.error()};
      if (m.snapshot_end().lineage_id().size() > kMaxLineageBytes)
        return Failure{std::string("bad lineage")};
      return m;
    }
    case proto::SourceMessage::kChanges: {
      auto ok = CheckChanges(m.changes(), shard_count);
      if (!ok.ok()) return Failure{ok.error()};
      return m;
    }
    case proto::SourceMessage::kHeartbeat: {
      auto ok = CheckPositions(m.heartbeat().last(), shard_count, "heartbeat");
      if (!ok.ok()) return Failure{ok.error()};
      return m;
    }
    default:
      return Failure{std::string("an empty source message")};
  }
}

}  // namespace idnode::replication
