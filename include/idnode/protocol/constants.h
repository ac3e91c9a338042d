// Handle protocol constants as CNRI Handle.Net 9.x speaks them (protocol 2.11).
// Source of truth: ../shared/protocol/HANDLE.md §1.1-1.4, 1.8; RFC 3652.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace idnode::protocol {

inline constexpr size_t kEnvelopeSize = 20;
inline constexpr size_t kHeaderSize = 24;
// Common.MAX_MESSAGE_LENGTH: the largest MessageLength a peer may announce.
inline constexpr uint32_t kMaxMessageLength = 262144;
// Common.MAX_UDP_PACKET_SIZE and the payload left after each datagram's envelope.
inline constexpr size_t kMaxUdpDatagramSize = 512;
inline constexpr size_t kUdpPayloadPerDatagram = kMaxUdpDatagramSize - kEnvelopeSize;
// Common limits: values per message, bytes per handle.
inline constexpr uint32_t kMaxValuesPerMessage = 2048;
inline constexpr size_t kMaxHandleLength = 2048;

// Envelope byte 2 (HANDLE.md §1.1). The low two bits carry the suggested major version.
inline constexpr uint8_t kEnvelopeCompressed = 0x80;  // CP
inline constexpr uint8_t kEnvelopeEncrypted = 0x40;   // EC
inline constexpr uint8_t kEnvelopeTruncated = 0x20;   // TC: multi-packet request
inline constexpr uint8_t kEnvelopeSuggestedMajorMask = 0x03;
inline constexpr uint8_t kEnvelopeReservedMask = 0x1c;

// Opcodes (AbstractMessage.OC_*).
enum class OpCode : uint32_t {
  kReserved = 0,
  kResolution = 1,
  kGetSiteInfo = 2,
  kCreateHandle = 100,
  kDeleteHandle = 101,
  kAddValue = 102,
  kRemoveValue = 103,
  kModifyValue = 104,
  kListHandles = 105,
  kListNas = 106,  // RFC only; CNRI uses kListHomedNas
  kResponseToChallenge = 200,
  kVerifyChallenge = 201,
  kHomeNa = 300,
  kUnhomeNa = 301,
  kListHomedNas = 302,
  // China's identifier SDK (Teleinfo, HANDLE.md §3): log in an identity on a TCP connection
  // (body: identity handle, index); challenged like an admin request, then remembered for the
  // connection's later admin requests.
  kLoginIdSystem = 2001,
  // idnode's own (README.md "Replication"): make a prefix mirrored here homed here and writable
  // (emergency take-over). Body as HOME_NA's: "0.NA/prefix"; server admins only. (Not 2001: the
  // SDK's login holds that.)
  kTakeoverNa = 2101,
  kSessionSetup = 400,
  kSessionTerminate = 401,
  kSessionExchangeKey = 402,
  kGetNextTxnId = 1000,
  kRetrieveTxnLog = 1001,
  kDumpHandles = 1002,
  kBackupServer = 1003,
};

// Response codes (AbstractMessage.RC_*). 0 marks a request.
enum class ResponseCode : uint32_t {
  kReserved = 0,
  kSuccess = 1,
  kError = 2,
  kServerTooBusy = 3,
  kProtocolError = 4,
  kOperationNotSupported = 5,
  kRecursionCountTooHigh = 6,
  kServerBackup = 7,
  kHandleNotFound = 100,
  kHandleAlreadyExists = 101,
  kInvalidHandle = 102,
  kValuesNotFound = 200,
  kValueAlreadyExists = 201,
  kInvalidValue = 202,
  kOutOfDateSiteInfo = 300,
  kServerNotResponsible = 301,
  kServiceReferral = 302,
  kPrefixReferral = 303,
  kInvalidAdmin = 400,
  kInsufficientPermissions = 401,
  kAuthenticationNeeded = 402,
  kAuthenticationFailed = 403,
  kInvalidCredential = 404,
  kAuthenticationTimeout = 405,
  kAuthenticationError = 406,
  kSessionTimeout = 500,
  kSessionFailed = 501,
  kInvalidSessionKey = 502,
  kNeedRsaKeyForSessionExchange = 503,
  kInvalidSessionSetupRequest = 504,
  kSessionMessageRejected = 505,
};

// OpFlags (Encoder.MSG_FLAG_*), header bytes 8-11.
namespace opflag {
inline constexpr uint32_t kAuthoritative = 0x80000000;   // AT
inline constexpr uint32_t kCertify = 0x40000000;         // CT
inline constexpr uint32_t kEncrypt = 0x20000000;         // ENC
inline constexpr uint32_t kRecursive = 0x10000000;       // REC
inline constexpr uint32_t kCacheCertify = 0x08000000;    // CA
inline constexpr uint32_t kContinuous = 0x04000000;      // CN
inline constexpr uint32_t kKeepConnection = 0x02000000;  // KC
inline constexpr uint32_t kPublicOnly = 0x01000000;      // PO
inline constexpr uint32_t kRequestDigest = 0x00800000;   // RD
inline constexpr uint32_t kOverwrite = 0x00400000;       // OVRW (CNRI)
inline constexpr uint32_t kMintSuffix = 0x00200000;      // MINT (CNRI)
inline constexpr uint32_t kDoNotRefer = 0x00100000;      // DNRF (CNRI)
inline constexpr uint32_t kDefinedMask = 0xfff00000;
}  // namespace opflag

// Value permissions (HANDLE.md §1.6).
namespace permission {
inline constexpr uint8_t kAdminRead = 0x08;
inline constexpr uint8_t kAdminWrite = 0x04;
inline constexpr uint8_t kPublicRead = 0x02;
inline constexpr uint8_t kPublicWrite = 0x01;
inline constexpr uint8_t kDefinedMask = 0x0f;
inline constexpr uint8_t kCnriDefault = 0x0e;
}  // namespace permission

// HS_ADMIN permission bits (HANDLE.md §1.7).
namespace admin_permission {
inline constexpr uint16_t kAddHandle = 0x0001;
inline constexpr uint16_t kDeleteHandle = 0x0002;
inline constexpr uint16_t kAddNa = 0x0004;
inline constexpr uint16_t kDeleteNa = 0x0008;
inline constexpr uint16_t kModifyValue = 0x0010;
inline constexpr uint16_t kRemoveValue = 0x0020;
inline constexpr uint16_t kAddValue = 0x0040;
inline constexpr uint16_t kModifyAdmin = 0x0080;
inline constexpr uint16_t kRemoveAdmin = 0x0100;
inline constexpr uint16_t kAddAdmin = 0x0200;
inline constexpr uint16_t kReadValue = 0x0400;
inline constexpr uint16_t kListHandles = 0x0800;
inline constexpr uint16_t kDefinedMask = 0x0fff;
}  // namespace admin_permission

enum class TtlType : uint8_t { kRelative = 0, kAbsolute = 1 };

// CNRI names ("OC_RESOLUTION", "RC_HANDLE_NOT_FOUND"); "OC_UNKNOWN(n)" / "RC_UNKNOWN(n)" otherwise.
std::string OpCodeName(uint32_t opcode);
std::string ResponseCodeName(uint32_t response_code);
// Comma-separated short names of the defined OpFlags that are set ("AT,REC,CA,PO").
std::string OpFlagNames(uint32_t op_flags);
// True for the opcodes listed in HANDLE.md §1.3 (0 excluded).
bool IsKnownOpCode(uint32_t opcode);

}  // namespace idnode::protocol
