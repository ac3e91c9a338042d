// libFuzzer target: handle values and the typed value decoders (HS_SITE, HS_ADMIN, HS_VLIST,
// HS_PUBKEY). The first byte picks the decoder; whatever a decoder accepts must re-encode to
// exactly the bytes it was given.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "idnode/protocol/value_types.h"

using namespace idnode::protocol;

namespace {

void ExpectSame(const std::vector<uint8_t>& encoded, std::span<const uint8_t> input) {
  if (encoded.size() != input.size() ||
      (!input.empty() && std::memcmp(encoded.data(), input.data(), input.size()) != 0)) {
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::span<const uint8_t> input(data + 1, size - 1);
  switch (data[0] % 5) {
    case 0: {
      auto v = DecodeHandleValue(input);
      if (!v.ok()) return 0;
      std::vector<uint8_t> out(EncodedSize(*v));
      WireWriter w(out);
      WriteHandleValue(w, *v);
      if (!w.ok()) std::abort();
      ExpectSame(out, input);
      break;
    }
    case 1: {
      // The in-place walk never reads out of bounds, whatever the bytes.
      (void)ForEachSiteInterface(
          input, [](std::span<const uint8_t, 16>, uint8_t, uint32_t) { return false; });
      auto site = DecodeSiteInfo(input);
      if (!site.ok()) return 0;
      ExpectSame(EncodeSiteInfo(*site), input);
      // The in-place walk sees exactly the interfaces the decoder found, in order.
      std::vector<uint32_t> ports, walked;
      for (const auto& server : site->servers) {
        for (const auto& i : server.interfaces) ports.push_back(i.port);
      }
      if (!ForEachSiteInterface(input,
                                [&](std::span<const uint8_t, 16>, uint8_t, uint32_t port) {
                                  walked.push_back(port);
                                  return false;
                                }) ||
          walked != ports) {
        std::abort();
      }
      (void)SiteServerIndex("88.100.1/SN1", static_cast<HashOption>(site->hash_option),
                            static_cast<uint32_t>(site->servers.size()));
      break;
    }
    case 2: {
      auto admin = DecodeAdminRecord(input);
      if (!admin.ok()) return 0;
      ExpectSame(EncodeAdminRecord(*admin), input);
      (void)AdminPermissionString(admin->permissions);
      break;
    }
    case 3: {
      auto list = DecodeValueList(input);
      if (!list.ok()) return 0;
      ExpectSame(EncodeValueList(*list), input);
      break;
    }
    case 4: {
      auto key = DecodePublicKey(input);
      if (!key.ok()) return 0;
      ExpectSame(EncodePublicKey(*key), input);
      break;
    }
  }
  return 0;
}
