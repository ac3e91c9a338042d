#include "idnode/protocol/digest.h"

#include <openssl/evp.h>

#include "idnode/protocol/constants.h"

namespace idnode::protocol {

DigestValue Digest(DigestAlgorithm algorithm, std::span<const uint8_t> data) {
  const EVP_MD* md = nullptr;
  switch (algorithm) {
    case DigestAlgorithm::kMd5Legacy:
    case DigestAlgorithm::kMd5:
      md = EVP_md5();
      break;
    case DigestAlgorithm::kSha1:
      md = EVP_sha1();
      break;
    case DigestAlgorithm::kSha256:
      md = EVP_sha256();
      break;
  }
  DigestValue out;
  out.algorithm = algorithm;
  unsigned int size = 0;
  // EVP_Digest cannot fail for these built-in algorithms short of memory exhaustion; a zero size
  // tells the caller if it ever does.
  if (EVP_Digest(data.data(), data.size(), out.bytes.data(), &size, md, nullptr) != 1) size = 0;
  out.size = static_cast<uint8_t>(size);
  return out;
}

DigestValue RequestDigest(std::span<const uint8_t> request_message,
                          ProtocolVersion response_version) {
  DigestAlgorithm algorithm = DigestAlgorithmFor(response_version);
  if (request_message.size() < kEnvelopeSize + kHeaderSize) return DigestValue{algorithm, {}, 0};
  const uint8_t* h = request_message.data() + kEnvelopeSize;
  uint32_t body_length =
      uint32_t{h[20]} << 24 | uint32_t{h[21]} << 16 | uint32_t{h[22]} << 8 | h[23];
  size_t available = request_message.size() - kEnvelopeSize - kHeaderSize;
  if (body_length > available) return DigestValue{algorithm, {}, 0};
  return Digest(algorithm, request_message.subspan(kEnvelopeSize, kHeaderSize + body_length));
}

std::array<uint8_t, 16> Md5(std::span<const uint8_t> data) {
  DigestValue d = Digest(DigestAlgorithm::kMd5, data);
  std::array<uint8_t, 16> out{};
  for (size_t i = 0; i < 16; ++i) out[i] = d.bytes[i];
  return out;
}

}  // namespace idnode::protocol
