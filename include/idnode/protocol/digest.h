// Request digests (HANDLE.md §1.5) and the hashes the protocol uses (OpenSSL EVP one-shots).
#pragma once

#include <array>
#include <cstdint>
#include <span>

#include "idnode/protocol/version.h"

namespace idnode::protocol {

struct DigestValue {
  DigestAlgorithm algorithm = DigestAlgorithm::kSha256;
  std::array<uint8_t, 32> bytes{};
  uint8_t size = 0;

  std::span<const uint8_t> view() const { return {bytes.data(), size}; }
};

// Hashes `data` with `algorithm` (kMd5Legacy hashes like kMd5).
DigestValue Digest(DigestAlgorithm algorithm, std::span<const uint8_t> data);

// The digest a response in `response_version` carries for a request whose encoded message
// (envelope included) is `request_message`: the hash of its header and body, excluding the
// envelope and the credential section. Returns nullopt-like size 0 if the message is too short.
DigestValue RequestDigest(std::span<const uint8_t> request_message,
                          ProtocolVersion response_version);

// MD5 of data, as 16 bytes.
std::array<uint8_t, 16> Md5(std::span<const uint8_t> data);

}  // namespace idnode::protocol
