// libFuzzer target: the replication stream as a peer sends it (replication/wire.h). A peer is
// authenticated by its certificate, not trusted: its frames and messages are network input.
// Input: [selector][stream bytes]. Selector bit 0: the stream is a source's (SourceMessages, the
// shard count taken from its Welcome), else a replica's (ReplicaMessages against 1 + selector/2
// % 16 shards). The stream is cut into frames as the sessions read it (a length over the limit
// ends it). Nothing may crash or read out of bounds, and what the checks let through must keep
// the promises the appliers rely on (abort otherwise): changes in order within their position,
// snapshot records parsed with one key each in strictly increasing order, shards in range.
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "idnode/replication/subscription.h"
#include "idnode/replication/wire.h"

using namespace idnode::replication;

namespace {

void CheckSource(const idnode::proto::SourceMessage& m, uint32_t shards,
                 const std::vector<std::string>& keys) {
  switch (m.body_case()) {
    case idnode::proto::SourceMessage::kChanges: {
      const auto& c = m.changes();
      if (c.shard() >= shards) std::abort();
      uint64_t previous = 0;
      for (const auto& e : c.entries()) {
        if (e.sequence() <= previous || e.sequence() > c.through()) std::abort();
        previous = e.sequence();
      }
      break;
    }
    case idnode::proto::SourceMessage::kSnapshotChunk: {
      const auto& chunk = m.snapshot_chunk();
      if (chunk.shard() >= shards) std::abort();
      if (keys.size() != static_cast<size_t>(chunk.records_size())) std::abort();
      for (size_t i = 1; i < keys.size(); ++i) {
        if (!(keys[i - 1] < keys[i])) std::abort();
      }
      break;
    }
    default:
      break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t selector = data[0];
  std::span<const uint8_t> stream(data + 1, size - 1);
  const bool from_source = (selector & 1) != 0;
  uint32_t shards = from_source ? 0 : 1 + (selector >> 1) % 16;
  std::vector<std::string> keys;
  while (stream.size() >= kFrameHeadBytes) {
    auto length = FrameLength(stream.first<kFrameHeadBytes>(), 1u << 16);
    if (!length.ok()) break;
    stream = stream.subspan(kFrameHeadBytes);
    if (stream.size() < *length) break;
    auto body = stream.first(*length);
    stream = stream.subspan(*length);
    if (from_source) {
      auto m = ParseSourceMessage(body, shards, &keys);
      if (!m.ok()) continue;
      if (m->has_welcome()) {
        if (shards != 0) std::abort();  // a second welcome must be refused
        shards = m->welcome().shard_count();
        if (shards == 0 || shards > kMaxShards) std::abort();
        continue;
      }
      if (shards == 0 && !m->has_refusal()) std::abort();
      CheckSource(*m, shards, keys);
    } else {
      auto m = ParseReplicaMessage(body, shards);
      if (!m.ok()) continue;
      if (m->has_hello() && !m->hello().everything()) {
        const auto& p = m->hello().prefixes();
        if (!Subscription::Of(std::vector<std::string>(p.begin(), p.end())).ok()) std::abort();
      }
      const auto& positions = m->has_hello() ? m->hello().positions() : m->ack().positions();
      for (const auto& position : positions) {
        if (position.shard() >= shards) std::abort();
      }
    }
  }
  return 0;
}
