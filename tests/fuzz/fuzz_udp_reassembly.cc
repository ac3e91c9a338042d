// libFuzzer target: the UDP reassembly table under arbitrary datagram sequences. The input is a
// series of records: 1 byte source, 2 bytes length, then that many datagram bytes. Checks that the
// table never exceeds its limits and that every completed message is exactly its MessageLength.
#include <cstdint>
#include <cstdlib>

#include "idnode/protocol/transport.h"

using namespace idnode::protocol;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ReassemblyLimits limits;
  limits.max_entries = 8;
  limits.max_total_bytes = 16 * 1024;
  limits.max_message_length = 8 * 1024;
  UdpReassembler reassembler(limits);
  auto now = UdpReassembler::Clock::now();
  size_t at = 0;
  while (at + 3 <= size) {
    UdpSource source;
    source.port = data[at];
    size_t length = static_cast<size_t>(data[at + 1]) << 8 | data[at + 2];
    at += 3;
    if (length > size - at) length = size - at;
    auto outcome = reassembler.Offer(source, {data + at, length}, now);
    at += length;
    now += std::chrono::milliseconds(source.port % 2 ? 700 : 1);
    if (auto* done = std::get_if<UdpReassembler::Complete>(&outcome)) {
      auto env = DecodeEnvelope(done->message);
      if (!env.ok() || done->message.size() != kEnvelopeSize + env->message_length) std::abort();
      (void)DecodeMessage(done->message);
    }
    if (reassembler.entries() > limits.max_entries ||
        reassembler.bytes_held() > limits.max_total_bytes) {
      std::abort();
    }
  }
  return 0;
}
