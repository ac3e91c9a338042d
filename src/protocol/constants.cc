#include "idnode/protocol/constants.h"

#include "idnode/protocol/error.h"

namespace idnode::protocol {

namespace {

const char* KnownOpCodeName(uint32_t opcode) {
  switch (static_cast<OpCode>(opcode)) {
    case OpCode::kReserved:
      return "OC_RESERVED";
    case OpCode::kResolution:
      return "OC_RESOLUTION";
    case OpCode::kGetSiteInfo:
      return "OC_GET_SITE_INFO";
    case OpCode::kCreateHandle:
      return "OC_CREATE_HANDLE";
    case OpCode::kDeleteHandle:
      return "OC_DELETE_HANDLE";
    case OpCode::kAddValue:
      return "OC_ADD_VALUE";
    case OpCode::kRemoveValue:
      return "OC_REMOVE_VALUE";
    case OpCode::kModifyValue:
      return "OC_MODIFY_VALUE";
    case OpCode::kListHandles:
      return "OC_LIST_HANDLES";
    case OpCode::kListNas:
      return "OC_LIST_NAS";
    case OpCode::kResponseToChallenge:
      return "OC_RESPONSE_TO_CHALLENGE";
    case OpCode::kVerifyChallenge:
      return "OC_VERIFY_CHALLENGE";
    case OpCode::kHomeNa:
      return "OC_HOME_NA";
    case OpCode::kUnhomeNa:
      return "OC_UNHOME_NA";
    case OpCode::kListHomedNas:
      return "OC_LIST_HOMED_NAS";
    case OpCode::kTakeoverNa:
      return "OC_TAKEOVER_NA";
    case OpCode::kLoginIdSystem:
      return "OC_LOGIN_ID_SYSTEM";
    case OpCode::kSessionSetup:
      return "OC_SESSION_SETUP";
    case OpCode::kSessionTerminate:
      return "OC_SESSION_TERMINATE";
    case OpCode::kSessionExchangeKey:
      return "OC_SESSION_EXCHANGEKEY";
    case OpCode::kGetNextTxnId:
      return "OC_GET_NEXT_TXN_ID";
    case OpCode::kRetrieveTxnLog:
      return "OC_RETRIEVE_TXN_LOG";
    case OpCode::kDumpHandles:
      return "OC_DUMP_HANDLES";
    case OpCode::kBackupServer:
      return "OC_BACKUP_SERVER";
  }
  return nullptr;
}

const char* KnownResponseCodeName(uint32_t rc) {
  switch (static_cast<ResponseCode>(rc)) {
    case ResponseCode::kReserved:
      return "RC_RESERVED";
    case ResponseCode::kSuccess:
      return "RC_SUCCESS";
    case ResponseCode::kError:
      return "RC_ERROR";
    case ResponseCode::kServerTooBusy:
      return "RC_SERVER_TOO_BUSY";
    case ResponseCode::kProtocolError:
      return "RC_PROTOCOL_ERROR";
    case ResponseCode::kOperationNotSupported:
      return "RC_OPERATION_NOT_SUPPORTED";
    case ResponseCode::kRecursionCountTooHigh:
      return "RC_RECURSION_COUNT_TOO_HIGH";
    case ResponseCode::kServerBackup:
      return "RC_SERVER_BACKUP";
    case ResponseCode::kHandleNotFound:
      return "RC_HANDLE_NOT_FOUND";
    case ResponseCode::kHandleAlreadyExists:
      return "RC_HANDLE_ALREADY_EXISTS";
    case ResponseCode::kInvalidHandle:
      return "RC_INVALID_HANDLE";
    case ResponseCode::kValuesNotFound:
      return "RC_VALUES_NOT_FOUND";
    case ResponseCode::kValueAlreadyExists:
      return "RC_VALUE_ALREADY_EXISTS";
    case ResponseCode::kInvalidValue:
      return "RC_INVALID_VALUE";
    case ResponseCode::kOutOfDateSiteInfo:
      return "RC_OUT_OF_DATE_SITE_INFO";
    case ResponseCode::kServerNotResponsible:
      return "RC_SERVER_NOT_RESP";
    case ResponseCode::kServiceReferral:
      return "RC_SERVICE_REFERRAL";
    case ResponseCode::kPrefixReferral:
      return "RC_PREFIX_REFERRAL";
    case ResponseCode::kInvalidAdmin:
      return "RC_INVALID_ADMIN";
    case ResponseCode::kInsufficientPermissions:
      return "RC_INSUFFICIENT_PERMISSIONS";
    case ResponseCode::kAuthenticationNeeded:
      return "RC_AUTHENTICATION_NEEDED";
    case ResponseCode::kAuthenticationFailed:
      return "RC_AUTHENTICATION_FAILED";
    case ResponseCode::kInvalidCredential:
      return "RC_INVALID_CREDENTIAL";
    case ResponseCode::kAuthenticationTimeout:
      return "RC_AUTHEN_TIMEOUT";
    case ResponseCode::kAuthenticationError:
      return "RC_AUTHEN_ERROR";
    case ResponseCode::kSessionTimeout:
      return "RC_SESSION_TIMEOUT";
    case ResponseCode::kSessionFailed:
      return "RC_SESSION_FAILED";
    case ResponseCode::kInvalidSessionKey:
      return "RC_INVALID_SESSION_KEY";
    case ResponseCode::kNeedRsaKeyForSessionExchange:
      return "RC_NEED_RSAKEY_FOR_SESSIONEXCHANGE";
    case ResponseCode::kInvalidSessionSetupRequest:
      return "RC_INVALID_SESSIONSETUP_REQUEST";
    case ResponseCode::kSessionMessageRejected:
      return "RC_SESSION_MESSAGE_REJECTED";
  }
  return nullptr;
}

}  // namespace

std::string OpCodeName(uint32_t opcode) {
  if (const char* name = KnownOpCodeName(opcode)) return name;
  return "OC_UNKNOWN(" + std::to_string(opcode) + ")";
}

std::string ResponseCodeName(uint32_t response_code) {
  if (const char* name = KnownResponseCodeName(response_code)) return name;
  return "RC_UNKNOWN(" + std::to_string(response_code) + ")";
}

bool IsKnownOpCode(uint32_t opcode) {
  return opcode != 0 && opcode != static_cast<uint32_t>(OpCode::kListNas) &&
         KnownOpCodeName(opcode) != nullptr;
}

std::string OpFlagNames(uint32_t op_flags) {
  static constexpr struct {
    uint32_t bit;
    const char* name;
  } kNames[] = {{opflag::kAuthoritative, "AT"},  {opflag::kCertify, "CT"},
                {opflag::kEncrypt, "ENC"},       {opflag::kRecursive, "REC"},
                {opflag::kCacheCertify, "CA"},   {opflag::kContinuous, "CN"},
                {opflag::kKeepConnection, "KC"}, {opflag::kPublicOnly, "PO"},
                {opflag::kRequestDigest, "RD"},  {opflag::kOverwrite, "OVRW"},
                {opflag::kMintSuffix, "MINT"},   {opflag::kDoNotRefer, "DNRF"}};
  std::string out;
  for (const auto& n : kNames) {
    if ((op_flags & n.bit) == 0) continue;
    if (!out.empty()) out += ',';
    out += n.name;
  }
  return out;
}

std::string_view ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kTruncated:
      return "truncated";
    case ErrorCode::kTrailingBytes:
      return "trailing bytes";
    case ErrorCode::kUnsupportedVersion:
      return "unsupported protocol version";
    case ErrorCode::kMessageTooLarge:
      return "message too large";
    case ErrorCode::kLengthMismatch:
      return "length mismatch";
    case ErrorCode::kCountTooLarge:
      return "count too large";
    case ErrorCode::kInvalidUtf8:
      return "invalid UTF-8";
    case ErrorCode::kInvalidHandle:
      return "invalid handle";
    case ErrorCode::kReservedOpCode:
      return "reserved opcode";
    case ErrorCode::kUnknownOpCode:
      return "unknown opcode";
    case ErrorCode::kInvalidValue:
      return "invalid value";
    case ErrorCode::kUnknownDigestAlgorithm:
      return "unknown digest algorithm";
    case ErrorCode::kCompressed:
      return "compressed messages are not supported";
    case ErrorCode::kEncryptedWithoutSession:
      return "encrypted message without a session";
    case ErrorCode::kFragmentError:
      return "bad UDP fragment";
    case ErrorCode::kReassemblyLimit:
      return "reassembly limit";
    case ErrorCode::kBufferTooSmall:
      return "buffer too small";
    case ErrorCode::kUnknownKeyType:
      return "unknown key type";
    case ErrorCode::kWeakKey:
      return "key parameters out of range";
  }
  return "unknown error";
}

ResponseCode ResponseCodeFor(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidHandle:
      return ResponseCode::kInvalidHandle;
    case ErrorCode::kUnknownOpCode:
      return ResponseCode::kOperationNotSupported;
    case ErrorCode::kEncryptedWithoutSession:
      return ResponseCode::kSessionFailed;
    case ErrorCode::kReassemblyLimit:
      return ResponseCode::kServerTooBusy;
    case ErrorCode::kBufferTooSmall:
      return ResponseCode::kError;
    default:
      return ResponseCode::kProtocolError;
  }
}

}  // namespace idnode::protocol
