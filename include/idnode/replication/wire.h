// replication/: the stream's framing and the checks every received message passes before it is
// used (a peer is authenticated, not trusted: its messages are network input). Each frame is a
// 4-byte big-endian length, then one Protobuf message (proto/idnode/replication.proto). Pure
// functions; any thread.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "idnode/common/result.h"
#include "idnode/replication.pb.h"

namespace idnode::replication {

inline constexpr uint32_t kProtocolVersion = 1;
// No frame is larger: a snapshot chunk or a changes message is cut well below it.
inline constexpr uint32_t kMaxFrameBytes = 16u << 20;
inline constexpr size_t kFrameHeadBytes = 4;
inline constexpr uint32_t kMaxShards = 4096;
inline constexpr uint32_t kMaxSiteServers = 1024;  // as site.servers allows

// Appends `message` framed to `out`; false (nothing appended) when it would exceed
// kMaxFrameBytes.
bool AppendFrame(const google::protobuf::MessageLite& message, std::string& out);

// The body length a frame head announces; an error when it is 0 or beyond `max`.
Result<uint32_t, std::string> FrameLength(std::span<const uint8_t, kFrameHeadBytes> head,
                                          uint32_t max);

// A replica's message, parsed and checked against the source's `shard_count`.
Result<proto::ReplicaMessage, std::string> ParseReplicaMessage(std::span<const uint8_t> body,
                                                               uint32_t shard_count);
// A source's message, parsed and checked; `shard_count` is the source's (from its Welcome), 0
// before the Welcome (when only a Welcome or a Refusal may come). For a snapshot chunk,
// `chunk_keys` (when given) receives each record's storage key (its normalised handle).
Result<proto::SourceMessage, std::string> ParseSourceMessage(
    std::span<const uint8_t> body, uint32_t shard_count,
    std::vector<std::string>* chunk_keys = nullptr);

}  // namespace idnode::replication
