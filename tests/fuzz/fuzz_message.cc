// libFuzzer target: whole Handle messages (envelope, header, every body, credential).
// Property (HARDENING.md row B): an accepted message re-encodes to exactly its input bytes, and
// that encoding decodes again, so decode(encode(decode(x))) == decode(x).
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "idnode/protocol/describe.h"
#include "idnode/protocol/message.h"

using namespace idnode::protocol;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> input(data, size);
  auto decoded = DecodeMessage(input);
  // The prefetch peek never reads out of bounds, and agrees with the decoder on what it accepts.
  std::string_view peeked = PeekResolutionHandle(input);
  if (decoded.ok() && !peeked.empty()) {
    const auto* request = std::get_if<ResolutionRequest>(&decoded->body);
    if (request == nullptr || request->handle != peeked) std::abort();
  }
  if (!decoded.ok()) {
    (void)ResponseCodeFor(decoded.error().code);
    return 0;
  }
  std::vector<uint8_t> encoded(EncodedMessageSize(*decoded));
  auto written = EncodeMessage(*decoded, encoded);
  if (!written.ok() || *written != size || std::memcmp(encoded.data(), data, size) != 0)
    std::abort();
  auto again = DecodeMessage(encoded);
  if (!again.ok() || Describe(*again) != Describe(*decoded)) std::abort();
  return 0;
}
