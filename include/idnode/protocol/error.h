// Decoding and encoding errors of the Handle codec, and their one mapping to response codes.
#pragma once

#include <cstdint>
#include <string_view>

#include "idnode/common/result.h"
#include "idnode/protocol/constants.h"

namespace idnode::protocol {

enum class ErrorCode : uint8_t {
  kTruncated,           // a field runs past the end of its buffer
  kTrailingBytes,       // bytes left over where the format allows none
  kUnsupportedVersion,  // envelope major version we do not speak
  kMessageTooLarge,     // MessageLength above the cap
  kLengthMismatch,      // MessageLength / BodyLength / credential length disagree with the bytes
  kCountTooLarge,       // a count that the remaining bytes cannot hold, or above a protocol limit
  kInvalidUtf8,         // a text field that is not valid UTF-8
  kInvalidHandle,       // handle too long or containing NUL
  kReservedOpCode,      // opcode 0 in a request
  kUnknownOpCode,       // opcode not in HANDLE.md §1.3
  kInvalidValue,        // bad TTL type, permission bits, or a typed value out of range
  kUnknownDigestAlgorithm,   // request digest hash type not 0-3
  kCompressed,               // CP flag: compression is not supported by CNRI peers or by us
  kEncryptedWithoutSession,  // EC flag with SessionId 0
  kFragmentError,            // bad UDP fragment (sequence, size, conflicting duplicate)
  kReassemblyLimit,          // reassembly table full or the entry aged out
  kBufferTooSmall,           // encoder: the caller's buffer cannot hold the message
  kUnknownKeyType,           // HS_PUBKEY key type not RSA/DSA/DH
  kWeakKey,                  // key parameters out of the accepted range
};

struct ProtocolError {
  ErrorCode code;
  uint32_t offset = 0;  // byte offset in the decoded buffer where the problem was found
};

template <typename T>
using Decoded = Result<T, ProtocolError>;

std::string_view ErrorCodeName(ErrorCode code);

// The response code a server answers with for a request that failed to decode.
// This is the only place where codec errors become response codes.
ResponseCode ResponseCodeFor(ErrorCode code);

}  // namespace idnode::protocol
