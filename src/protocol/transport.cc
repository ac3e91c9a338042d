#include "idnode/protocol/transport.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <string_view>

namespace idnode::protocol {

// ---- TCP --------------------------------------------------------------------------------------

Decoded<uint32_t> TcpFrameRemainder(std::span<const uint8_t, kEnvelopeSize> envelope,
                                    uint32_t max_message_length) {
  auto e = DecodeEnvelope(envelope);
  if (!e.ok()) return Failure{e.error()};
  uint32_t cap = std::min(max_message_length, kMaxMessageLength);
  if (e->message_length > cap) return Failure{ProtocolError{ErrorCode::kMessageTooLarge, 16}};
  // Encrypted payloads have no readable header, so only plaintext frames need room for one.
  if (!e->encrypted && e->message_length < kHeaderSize) {
    return Failure{ProtocolError{ErrorCode::kLengthMismatch, 16}};
  }
  return e->message_length;
}

// ---- UDP: sending -----------------------------------------------------------------------------

size_t WriteUdpDatagram(std::span<const uint8_t> message, uint32_t index, std::span<uint8_t> out) {
  if (message.size() < kEnvelopeSize || out.size() < kMaxUdpDatagramSize) return 0;
  std::span<const uint8_t> payload = message.subspan(kEnvelopeSize);
  size_t offset = size_t{index} * kUdpPayloadPerDatagram;
  if (offset > payload.size() || (offset == payload.size() && index != 0)) return 0;
  size_t chunk = std::min(kUdpPayloadPerDatagram, payload.size() - offset);
  std::memcpy(out.data(), message.data(), kEnvelopeSize);
  out[12] = static_cast<uint8_t>(index >> 24);
  out[13] = static_cast<uint8_t>(index >> 16);
  out[14] = static_cast<uint8_t>(index >> 8);
  out[15] = static_cast<uint8_t>(index);
  if (chunk > 0) std::memcpy(out.data() + kEnvelopeSize, payload.data() + offset, chunk);
  return kEnvelopeSize + chunk;
}

std::vector<std::vector<uint8_t>> SplitForUdp(std::span<const uint8_t> message) {
  std::vector<std::vector<uint8_t>> datagrams;
  if (message.size() < kEnvelopeSize) return datagrams;
  uint32_t count = UdpDatagramCount(static_cast<uint32_t>(message.size() - kEnvelopeSize));
  datagrams.reserve(count);
  std::array<uint8_t, kMaxUdpDatagramSize> buffer;
  for (uint32_t i = 0; i < count; ++i) {
    size_t n = WriteUdpDatagram(message, i, buffer);
    datagrams.emplace_back(buffer.begin(), buffer.begin() + static_cast<ptrdiff_t>(n));
  }
  return datagrams;
}

// ---- UDP: receiving ---------------------------------------------------------------------------

size_t UdpReassembler::KeyHash::operator()(const Key& k) const {
  std::string_view address(reinterpret_cast<const char*>(k.source.address.data()),
                           k.source.address.size());
  size_t h = std::hash<std::string_view>{}(address);
  h ^= (size_t{k.source.port} << 32 | k.request_id) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  return h;
}

void UdpReassembler::Erase(Order::iterator it) {
  bytes_held_ -= it->bytes;
  entries_.erase(it->key);
  order_.erase(it);
}

void UdpReassembler::EvictOldest() {
  if (order_.empty()) return;
  Erase(order_.begin());
  ++stats_.evicted_for_space;
}

void UdpReassembler::Expire(Clock::time_point now) {
  while (!order_.empty() && now - order_.front().started >= limits_.max_age) {
    Erase(order_.begin());
    ++stats_.expired;
  }
}

namespace {

bool SameMessage(const Envelope& a, const Envelope& b) {
  return a.major_version == b.major_version && a.minor_version == b.minor_version &&
         a.compressed == b.compressed && a.encrypted == b.encrypted && a.truncated == b.truncated &&
         a.suggested_major == b.suggested_major && a.suggested_minor == b.suggested_minor &&
         a.session_id == b.session_id && a.message_length == b.message_length;
}

}  // namespace

UdpReassembler::Outcome UdpReassembler::Offer(const UdpSource& source,
                                              std::span<const uint8_t> datagram,
                                              Clock::time_point now) {
  auto reject = [this](ErrorCode code, uint32_t offset) -> Outcome {
    ++stats_.rejected;
    return ProtocolError{code, offset};
  };
  if (datagram.size() > kMaxUdpDatagramSize) return reject(ErrorCode::kFragmentError, 0);
  auto decoded = DecodeEnvelope(datagram);
  if (!decoded.ok()) {
    ++stats_.rejected;
    return decoded.error();
  }
  const Envelope& env = *decoded;
  std::span<const uint8_t> payload = datagram.subspan(kEnvelopeSize);

  const uint32_t count = UdpDatagramCount(env.message_length);
  if (count == 1) {
    if (env.sequence_number != 0 || payload.size() != env.message_length) {
      return reject(ErrorCode::kLengthMismatch, 16);
    }
    return Complete{std::vector<uint8_t>(datagram.begin(), datagram.end())};
  }
  if (env.message_length > limits_.max_message_length)
    return reject(ErrorCode::kMessageTooLarge, 16);
  const uint32_t seq = env.sequence_number;
  if (seq >= count) return reject(ErrorCode::kFragmentError, 12);
  const size_t expected = seq + 1 < count
                              ? kUdpPayloadPerDatagram
                              : env.message_length - size_t{count - 1} * kUdpPayloadPerDatagram;
  if (payload.size() != expected) return reject(ErrorCode::kFragmentError, 16);

  Expire(now);
  Key key{source, env.request_id};
  auto found = entries_.find(key);
  Order::iterator entry;
  if (found == entries_.end()) {
    const size_t overhead = sizeof(Entry) + size_t{count} * sizeof(std::vector<uint8_t>);
    while (!order_.empty() && (entries_.size() >= limits_.max_entries ||
                               bytes_held_ + overhead + payload.size() > limits_.max_total_bytes)) {
      EvictOldest();
    }
    if (entries_.size() >= limits_.max_entries ||
        bytes_held_ + overhead + payload.size() > limits_.max_total_bytes) {
      return reject(ErrorCode::kReassemblyLimit, 0);
    }
    order_.push_back(Entry{key, env, now, count, 0, overhead, {}});
    entry = std::prev(order_.end());
    entry->fragments.resize(count);
    entries_.emplace(key, entry);
    bytes_held_ += overhead;
  } else {
    entry = found->second;
    if (!SameMessage(entry->envelope, env)) {
      Erase(entry);
      return reject(ErrorCode::kFragmentError, 0);
    }
  }

  auto& slot = entry->fragments[seq];
  if (!slot.empty()) {
    if (slot.size() == payload.size() &&
        std::memcmp(slot.data(), payload.data(), payload.size()) == 0) {
      return NeedMore{};  // an identical duplicate (a client retry): harmless
    }
    Erase(entry);
    return reject(ErrorCode::kFragmentError, kEnvelopeSize);
  }
  // Make room for this fragment by evicting older entries, never the one being filled.
  while (bytes_held_ + payload.size() > limits_.max_total_bytes && order_.begin() != entry) {
    EvictOldest();
  }
  if (bytes_held_ + payload.size() > limits_.max_total_bytes) {
    Erase(entry);
    return reject(ErrorCode::kReassemblyLimit, 0);
  }
  slot.assign(payload.begin(), payload.end());
  entry->bytes += payload.size();
  bytes_held_ += payload.size();
  if (++entry->received < entry->fragment_count) return NeedMore{};

  std::vector<uint8_t> message(kEnvelopeSize + size_t{env.message_length});
  Envelope first = entry->envelope;
  first.sequence_number = 0;
  WriteEnvelope(first, std::span<uint8_t, kEnvelopeSize>(message.data(), kEnvelopeSize));
  size_t at = kEnvelopeSize;
  for (const auto& fragment : entry->fragments) {
    std::memcpy(message.data() + at, fragment.data(), fragment.size());
    at += fragment.size();
  }
  Erase(entry);
  ++stats_.completed;
  return Complete{std::move(message)};
}

}  // namespace idnode::protocol
