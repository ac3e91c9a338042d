// Framing of Handle messages over UDP and TCP (HANDLE.md §1.8).
#pragma once

#include <chrono>
#include <cstdint>
#include <list>
#include <span>
#include <unordered_map>
#include <variant>
#include <vector>

#include "idnode/protocol/error.h"
#include "idnode/protocol/message.h"

namespace idnode::protocol {

// ---- TCP --------------------------------------------------------------------------------------

// After the first 20 bytes of a TCP frame: how many more bytes to read. Rejects unsupported
// versions, a MessageLength below the header size, and one above `max_message_length` (capped at
// kMaxMessageLength), before anything is allocated.
Decoded<uint32_t> TcpFrameRemainder(std::span<const uint8_t, kEnvelopeSize> envelope,
                                    uint32_t max_message_length = kMaxMessageLength);

// ---- UDP: sending -----------------------------------------------------------------------------

// Number of datagrams a message of `message_length` bytes (after the envelope) needs.
constexpr uint32_t UdpDatagramCount(uint32_t message_length) {
  if (message_length == 0) return 1;
  return static_cast<uint32_t>((size_t{message_length} + kUdpPayloadPerDatagram - 1) /
                               kUdpPayloadPerDatagram);
}

// Splits an encoded message (envelope + payload) into datagrams of at most 512 bytes, each with
// the same envelope and SequenceNumber 0, 1, ... The TC flag is left as the message has it
// (clients set it on multi-packet requests; servers do not set it on responses).
// Writes datagram `index` into `out` (at least kMaxUdpDatagramSize bytes) and returns its size.
size_t WriteUdpDatagram(std::span<const uint8_t> message, uint32_t index, std::span<uint8_t> out);
std::vector<std::vector<uint8_t>> SplitForUdp(std::span<const uint8_t> message);

// ---- UDP: receiving ---------------------------------------------------------------------------

// The sender of a datagram, as the network layer sees it (address bytes and port), opaque here.
struct UdpSource {
  std::array<uint8_t, 16> address{};
  uint16_t port = 0;
  friend bool operator==(const UdpSource&, const UdpSource&) = default;
};

struct ReassemblyLimits {
  size_t max_entries = 1024;                // messages being reassembled at once
  size_t max_total_bytes = 8u << 20;        // fragment bytes held across all entries
  uint32_t max_message_length = 65536;      // largest multi-packet request accepted over UDP
  std::chrono::milliseconds max_age{3000};  // a client retries after 500/1000/1500 ms
};

struct ReassemblyStats {
  uint64_t completed = 0;
  uint64_t evicted_for_space = 0;
  uint64_t expired = 0;
  uint64_t rejected = 0;
};

// Reassembles multi-packet UDP messages keyed by (source, RequestId). Bounded in entries, bytes
// and age; memory grows only with fragments actually received, never with a declared length.
// Owned by one UDP worker and used only on its thread.
class UdpReassembler {
 public:
  using Clock = std::chrono::steady_clock;

  struct NeedMore {};
  // The whole message (envelope with SequenceNumber 0 + payload), ready for DecodeMessage.
  struct Complete {
    std::vector<uint8_t> message;
  };
  using Outcome = std::variant<NeedMore, Complete, ProtocolError>;

  explicit UdpReassembler(ReassemblyLimits limits = {}) : limits_(limits) {}

  // Offers one datagram. A datagram that is a whole message by itself (MessageLength fits)
  // completes at once without touching the table.
  Outcome Offer(const UdpSource& source, std::span<const uint8_t> datagram, Clock::time_point now);

  // Drops entries older than max_age.
  void Expire(Clock::time_point now);

  size_t entries() const { return entries_.size(); }
  size_t bytes_held() const { return bytes_held_; }
  const ReassemblyStats& stats() const { return stats_; }

 private:
  struct Key {
    UdpSource source;
    uint32_t request_id;
    friend bool operator==(const Key&, const Key&) = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const;
  };
  struct Entry {
    Key key;
    Envelope envelope;  // of the first fragment seen; later ones must agree
    Clock::time_point started;
    uint32_t fragment_count = 0;
    uint32_t received = 0;
    size_t bytes = 0;
    std::vector<std::vector<uint8_t>> fragments;  // indexed by sequence number; empty = missing
  };
  using Order = std::list<Entry>;

  void Erase(Order::iterator it);
  void EvictOldest();

  ReassemblyLimits limits_;
  Order order_;  // oldest first
  std::unordered_map<Key, Order::iterator, KeyHash> entries_;
  size_t bytes_held_ = 0;
  ReassemblyStats stats_;
};

}  // namespace idnode::protocol
