// Protocol versions and the negotiation rules of HANDLE.md §1.9.
#pragma once

#include <cstdint>

#include "idnode/protocol/constants.h"

namespace idnode::protocol {

struct ProtocolVersion {
  uint8_t major = 2;
  uint8_t minor = 11;

  friend bool operator==(ProtocolVersion, ProtocolVersion) = default;
};

// The version this implementation speaks (CNRI 9.2: Common.MAJOR_VERSION.MINOR_VERSION).
inline constexpr ProtocolVersion kOurVersion{2, 11};
// The version a client uses when it talks to an interface without knowing the site.
inline constexpr ProtocolVersion kCompatibilityVersion{2, 3};

// CNRI's hasEqualOrGreaterVersion: is `v` at least major.minor? Major 5 is the legacy numbering of
// very old servers and compares below every 2.x version.
constexpr bool AtLeast(ProtocolVersion v, uint8_t major, uint8_t minor) {
  if (v.major == 5) return false;
  if (v.major != major) return v.major > major;
  return v.minor >= minor;
}

// Majors we decode: 2 (current) and 5 (legacy). Anything else gets kUnsupportedVersion.
constexpr bool IsSupportedMajor(uint8_t major) {
  return major == 2 || major == 5;
}

enum class DigestAlgorithm : uint8_t {
  kMd5Legacy = 0,  // hashType 0: MD5 written as a length-prefixed string
  kMd5 = 1,
  kSha1 = 2,
  kSha256 = 3,
};

// AbstractResponse.takeDigestOfRequest: the request digest algorithm for a response in version v.
constexpr DigestAlgorithm DigestAlgorithmFor(ProtocolVersion v) {
  if (!AtLeast(v, 2, 1)) return DigestAlgorithm::kMd5Legacy;
  if (!AtLeast(v, 2, 7)) return DigestAlgorithm::kSha1;
  return DigestAlgorithm::kSha256;
}

constexpr size_t DigestSize(DigestAlgorithm a) {
  switch (a) {
    case DigestAlgorithm::kMd5Legacy:
    case DigestAlgorithm::kMd5:
      return 16;
    case DigestAlgorithm::kSha1:
      return 20;
    case DigestAlgorithm::kSha256:
      return 32;
  }
  return 0;
}

// Encoder.writeHeader: clients below 2.5 know RC 7 as 303 and RC 202 as 201.
constexpr uint32_t ResponseCodeOnWire(uint32_t rc, ProtocolVersion v) {
  if (!AtLeast(v, 2, 5)) {
    if (rc == static_cast<uint32_t>(ResponseCode::kServerBackup)) return 303;
    if (rc == static_cast<uint32_t>(ResponseCode::kInvalidValue)) return 201;
  }
  return rc;
}

}  // namespace idnode::protocol
