// Encoding and decoding of every body type, version negotiation and response headers.
#include "idnode/protocol/message.h"

#include <gtest/gtest.h>

#include "idnode/common/hex.h"
#include "idnode/protocol/digest.h"
#include "test_util.h"

namespace idnode::protocol {
namespace {

using testing::AsBytes;

std::vector<uint8_t> Encode(const Message& m) {
  std::vector<uint8_t> out(EncodedMessageSize(m));
  auto n = EncodeMessage(m, out);
  EXPECT_TRUE(n.ok());
  EXPECT_EQ(n.ok() ? *n : 0, out.size());
  return out;
}

Message Request(OpCode opcode, Body body) {
  Message m;
  m.envelope.request_id = 42;
  m.header.opcode = static_cast<uint32_t>(opcode);
  m.header.op_flags = opflag::kRecursive | opflag::kCacheCertify | opflag::kPublicOnly;
  m.header.expiration_time = 1795670243;
  m.body = std::move(body);
  return m;
}

Message Response(OpCode opcode, ResponseCode rc, Body body) {
  Message m = Request(opcode, std::move(body));
  m.header.response_code = static_cast<uint32_t>(rc);
  m.header.op_flags |= opflag::kAuthoritative;
  return m;
}

// Encodes, decodes, re-encodes: the bytes must be stable and the body type preserved.
template <typename T>
T RoundTrip(const Message& m, std::vector<uint8_t>& storage) {
  storage = Encode(m);
  auto decoded = DecodeMessage(storage);
  EXPECT_TRUE(decoded.ok()) << (decoded.ok() ? "" : ErrorCodeName(decoded.error().code));
  if (!decoded.ok()) return T{};
  EXPECT_EQ(Encode(*decoded), storage);
  EXPECT_EQ(decoded->header.body_length, storage.size() - kEnvelopeSize - kHeaderSize - 4);
  EXPECT_EQ(decoded->envelope.message_length, storage.size() - kEnvelopeSize);
  EXPECT_TRUE(std::holds_alternative<T>(decoded->body));
  return std::holds_alternative<T>(decoded->body) ? std::get<T>(decoded->body) : T{};
}

const std::vector<uint8_t> kData{'h', 't', 't', 'p', ':', '/', '/', 'x'};

HandleValue UrlValue() {
  HandleValue v;
  v.index = 1;
  v.timestamp = 1795627007;
  v.type = "URL";
  v.data = kData;
  return v;
}

TEST(Message, ResolutionRequestWithFilters) {
  // Built by hand on the wire: handle, indexes [2, -1], types ["URL", "HS_"].
  std::vector<uint8_t> body_bytes;
  auto put32 = [&](uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) body_bytes.push_back(static_cast<uint8_t>(v >> s));
  };
  auto put_text = [&](std::string_view t) {
    put32(static_cast<uint32_t>(t.size()));
    body_bytes.insert(body_bytes.end(), t.begin(), t.end());
  };
  put_text("88.100.1/SN0001");
  put32(2);
  put32(2);
  put32(0xffffffff);
  put32(2);
  put_text("URL");
  put_text("HS_");
  Message m = Request(OpCode::kResolution, OpaqueBody{body_bytes});
  std::vector<uint8_t> wire = Encode(m);
  auto decoded = DecodeMessage(wire);
  ASSERT_TRUE(decoded.ok());
  const auto& req = std::get<ResolutionRequest>(decoded->body);
  EXPECT_EQ(req.handle, "88.100.1/SN0001");
  ASSERT_EQ(req.indexes.size(), 2u);
  EXPECT_EQ(req.indexes[0], 2);
  EXPECT_EQ(req.indexes[1], -1);
  std::vector<std::string_view> types(req.types.begin(), req.types.end());
  EXPECT_EQ(types, (std::vector<std::string_view>{"URL", "HS_"}));
  EXPECT_EQ(Encode(*decoded), wire);
}

TEST(Message, PeekResolutionHandleReadsOnlyPlainResolutionRequests) {
  auto request =
      Encode(Request(OpCode::kResolution, ResolutionRequest{"88.100.1/SN1", {}, {}, {}}));
  EXPECT_EQ(PeekResolutionHandle(request), "88.100.1/SN1");
  // Truncated anywhere before the end of the handle: nothing.
  for (size_t n = 0; n < kEnvelopeSize + kHeaderSize + 4 + 12; ++n) {
    EXPECT_EQ(PeekResolutionHandle(std::span<const uint8_t>(request).first(n)), "") << n;
  }
  // A handle length past the end of the message.
  auto long_length = request;
  long_length[kEnvelopeSize + kHeaderSize] = 0x7f;
  EXPECT_EQ(PeekResolutionHandle(long_length), "");
  // Multi-packet, encrypted and compressed envelopes, other opcodes and responses: nothing.
  for (uint8_t flag : {kEnvelopeTruncated, kEnvelopeEncrypted, kEnvelopeCompressed}) {
    auto flagged = request;
    flagged[2] |= flag;
    EXPECT_EQ(PeekResolutionHandle(flagged), "");
  }
  EXPECT_EQ(
      PeekResolutionHandle(Encode(Request(OpCode::kDeleteHandle, HandleBody{"88.100.1/SN1"}))), "");
  auto response = request;
  response[kEnvelopeSize + 7] = 1;  // RC 1
  EXPECT_EQ(PeekResolutionHandle(response), "");
}

TEST(Message, EveryRequestBodyRoundTrips) {
  std::vector<uint8_t> storage;
  HandleValue url = UrlValue();
  url.references = {{"0.NA/88.100.1", 300}, {"88.100.1/ADMIN", 1}};

  auto create = RoundTrip<HandleValuesBody>(
      Request(OpCode::kCreateHandle, HandleValuesBody{"88.100.1/SN1", {url}}), storage);
  EXPECT_EQ(create.handle, "88.100.1/SN1");
  ASSERT_EQ(create.values.size(), 1u);
  EXPECT_EQ(create.values[0], url);

  for (OpCode op : {OpCode::kAddValue, OpCode::kModifyValue}) {
    auto b =
        RoundTrip<HandleValuesBody>(Request(op, HandleValuesBody{"88.100.1/SN1", {url}}), storage);
    EXPECT_EQ(b.values.size(), 1u);
  }
  for (OpCode op :
       {OpCode::kGetSiteInfo, OpCode::kDeleteHandle, OpCode::kListHandles, OpCode::kHomeNa,
        OpCode::kUnhomeNa, OpCode::kListHomedNas, OpCode::kGetNextTxnId, OpCode::kBackupServer}) {
    EXPECT_EQ(RoundTrip<HandleBody>(Request(op, HandleBody{"0.NA/88.100.1"}), storage).handle,
              "0.NA/88.100.1");
  }

  const std::vector<uint8_t> indexes{0, 0, 0, 1, 0, 0, 0, 100};
  auto remove = RoundTrip<RemoveValuesRequest>(
      Request(OpCode::kRemoveValue, RemoveValuesRequest{"88.100.1/SN1", WireIntList(indexes, 2)}),
      storage);
  ASSERT_EQ(remove.indexes.size(), 2u);
  EXPECT_EQ(remove.indexes[1], 100);

  const std::vector<uint8_t> signature(64, 0x5a);
  auto answer = RoundTrip<ChallengeAnswer>(
      Request(OpCode::kResponseToChallenge,
              ChallengeAnswer{"HS_SECKEY", "88.100.1/ADMIN", 301, signature}),
      storage);
  EXPECT_EQ(answer.auth_type, "HS_SECKEY");
  EXPECT_EQ(answer.user_id_handle, "88.100.1/ADMIN");
  EXPECT_EQ(answer.user_id_index, 301);
  EXPECT_EQ(answer.signed_response.size(), 64u);

  const std::vector<uint8_t> nonce(16, 1), digest(32, 2);
  auto verify = RoundTrip<VerifyChallengeRequest>(
      Request(OpCode::kVerifyChallenge,
              VerifyChallengeRequest{"88.100.1/ADMIN", 301, nonce, digest, signature}),
      storage);
  EXPECT_EQ(verify.index, 301);
  EXPECT_EQ(verify.nonce.size(), 16u);
  EXPECT_EQ(verify.original_request_digest.size(), 32u);

  const std::vector<uint8_t> session_blob{1, 2, 3};
  EXPECT_EQ(RoundTrip<OpaqueBody>(Request(OpCode::kSessionSetup, OpaqueBody{session_blob}), storage)
                .bytes.size(),
            3u);
}

TEST(Message, EveryResponseBodyRoundTrips) {
  std::vector<uint8_t> storage;
  HandleValue url = UrlValue();
  auto values = RoundTrip<HandleValuesBody>(Response(OpCode::kResolution, ResponseCode::kSuccess,
                                                     HandleValuesBody{"88.100.1/SN1", {url, url}}),
                                            storage);
  EXPECT_EQ(values.values.size(), 2u);

  EXPECT_EQ(RoundTrip<ErrorBody>(Response(OpCode::kResolution, ResponseCode::kServerNotResponsible,
                                          ErrorBody{"That prefix doesn't live here"}),
                                 storage)
                .message,
            "That prefix doesn't live here");

  for (ResponseCode rc : {ResponseCode::kServiceReferral, ResponseCode::kPrefixReferral}) {
    auto referral = RoundTrip<ReferralBody>(
        Response(OpCode::kResolution, rc, ReferralBody{"0.NA/88.100.1", true, {url}}), storage);
    EXPECT_TRUE(referral.has_values);
    EXPECT_EQ(referral.values.size(), 1u);
    auto bare = RoundTrip<ReferralBody>(
        Response(OpCode::kResolution, rc, ReferralBody{"0.NA/88.100.1", false, {}}), storage);
    EXPECT_FALSE(bare.has_values);
  }

  const std::vector<uint8_t> nonce(16, 9);
  Message challenge =
      Response(OpCode::kCreateHandle, ResponseCode::kAuthenticationNeeded, ChallengeBody{nonce});
  challenge.header.op_flags |= opflag::kRequestDigest;
  const std::vector<uint8_t> digest(32, 7);
  challenge.request_digest = RequestDigestField{DigestAlgorithm::kSha256, digest};
  EXPECT_EQ(RoundTrip<ChallengeBody>(challenge, storage).nonce.size(), 16u);

  EXPECT_TRUE(
      RoundTrip<VerifyChallengeResult>(
          Response(OpCode::kVerifyChallenge, ResponseCode::kSuccess, VerifyChallengeResult{true}),
          storage)
          .valid);
  auto list = RoundTrip<HandleListBody>(Response(OpCode::kListHandles, ResponseCode::kSuccess,
                                                 HandleListBody{{"88.100.1/A", "88.100.1/B"}}),
                                        storage);
  EXPECT_EQ(list.handles, (std::vector<std::string_view>{"88.100.1/A", "88.100.1/B"}));
  for (OpCode op : {OpCode::kDeleteHandle, OpCode::kAddValue, OpCode::kRemoveValue,
                    OpCode::kModifyValue, OpCode::kHomeNa, OpCode::kUnhomeNa}) {
    (void)RoundTrip<EmptyBody>(Response(op, ResponseCode::kSuccess, EmptyBody{}), storage);
  }
  EXPECT_EQ(RoundTrip<HandleBody>(
                Response(OpCode::kCreateHandle, ResponseCode::kSuccess, HandleBody{"88.100.1/X"}),
                storage)
                .handle,
            "88.100.1/X");
}

TEST(Message, LegacyMd5DigestPrefixRoundTrips) {
  std::vector<uint8_t> storage;
  Message m = Response(OpCode::kDeleteHandle, ResponseCode::kSuccess, EmptyBody{});
  m.header.op_flags |= opflag::kRequestDigest;
  const std::vector<uint8_t> digest(16, 3);
  m.request_digest = RequestDigestField{DigestAlgorithm::kMd5Legacy, digest};
  (void)RoundTrip<EmptyBody>(m, storage);
  EXPECT_EQ(storage.size(), kEnvelopeSize + kHeaderSize + 1 + 4 + 16 + 4);
}

TEST(Message, EncryptedPayloadIsCarriedNotParsed) {
  Message m;
  m.envelope.encrypted = true;
  m.envelope.session_id = 12;
  const std::vector<uint8_t> ciphertext(48, 0xab);
  m.encrypted_payload = ciphertext;
  std::vector<uint8_t> wire = Encode(m);
  auto decoded = DecodeMessage(wire);
  ASSERT_TRUE(decoded.ok());
  EXPECT_TRUE(decoded->envelope.encrypted);
  EXPECT_EQ(decoded->encrypted_payload.size(), 48u);
  EXPECT_EQ(Encode(*decoded), wire);
}

TEST(Message, EncoderReportsTheSizeItNeeds) {
  Message m = Request(OpCode::kDeleteHandle, HandleBody{"88.100.1/SN1"});
  std::array<uint8_t, 30> small{};
  auto result = EncodeMessage(m, small);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().code, ErrorCode::kBufferTooSmall);
  EXPECT_EQ(result.error().offset, EncodedMessageSize(m));
}

TEST(Message, MessageWithoutCredentialFieldIsAccepted) {
  Message m = Request(OpCode::kDeleteHandle, HandleBody{"88.100.1/SN1"});
  m.has_credential_field = false;
  std::vector<uint8_t> wire = Encode(m);
  auto decoded = DecodeMessage(wire);
  ASSERT_TRUE(decoded.ok());
  EXPECT_FALSE(decoded->has_credential_field);
  EXPECT_EQ(Encode(*decoded), wire);
}

TEST(Versions, ResponseUsesTheSuggestedVersionCappedAtOurs) {
  Envelope req;
  req.major_version = 2;
  req.minor_version = 10;
  req.suggested_major = 2;
  req.suggested_minor = 11;
  req.request_id = 7;
  req.session_id = 3;
  Envelope resp = ResponseEnvelopeFor(req);
  EXPECT_EQ(resp.version(), (ProtocolVersion{2, 11}));
  EXPECT_EQ(resp.suggested_version(), (ProtocolVersion{2, 11}));
  EXPECT_EQ(resp.request_id, 7u);
  EXPECT_EQ(resp.session_id, 3u);

  req.suggested_minor = 14;  // a newer client: we answer in ours
  EXPECT_EQ(ResponseEnvelopeFor(req).version(), (ProtocolVersion{2, 11}));
  req.suggested_major = 3;
  EXPECT_EQ(ResponseEnvelopeFor(req).version(), (ProtocolVersion{2, 11}));
  req.suggested_major = 2;
  req.suggested_minor = 5;  // an older client's suggestion wins
  EXPECT_EQ(ResponseEnvelopeFor(req).version(), (ProtocolVersion{2, 5}));
  req.suggested_major = 0;  // no suggestion: the message's own version
  req.minor_version = 3;
  EXPECT_EQ(ResponseEnvelopeFor(req).version(), (ProtocolVersion{2, 3}));
}

TEST(Versions, VersionDependentEncodings) {
  EXPECT_EQ(DigestAlgorithmFor({2, 0}), DigestAlgorithm::kMd5Legacy);
  EXPECT_EQ(DigestAlgorithmFor({2, 1}), DigestAlgorithm::kSha1);
  EXPECT_EQ(DigestAlgorithmFor({2, 6}), DigestAlgorithm::kSha1);
  EXPECT_EQ(DigestAlgorithmFor({2, 7}), DigestAlgorithm::kSha256);
  EXPECT_EQ(DigestAlgorithmFor({2, 11}), DigestAlgorithm::kSha256);
  EXPECT_EQ(DigestAlgorithmFor({5, 0}), DigestAlgorithm::kMd5Legacy);  // legacy numbering
  EXPECT_EQ(ResponseCodeOnWire(7, {2, 4}), 303u);
  EXPECT_EQ(ResponseCodeOnWire(202, {2, 4}), 201u);
  EXPECT_EQ(ResponseCodeOnWire(7, {2, 5}), 7u);
  EXPECT_EQ(ResponseCodeOnWire(202, {2, 11}), 202u);
  EXPECT_EQ(ResponseCodeOnWire(100, {2, 0}), 100u);
}

TEST(Versions, DigestsUseTheResponseVersionsAlgorithm) {
  Message m = Request(OpCode::kResolution, OpaqueBody{});
  std::vector<uint8_t> body{0, 0, 0, 1, '/', 0, 0, 0, 0, 0, 0, 0, 0};
  m.body = OpaqueBody{body};
  std::vector<uint8_t> wire = Encode(m);
  std::span<const uint8_t> header_and_body(wire.data() + kEnvelopeSize, kHeaderSize + body.size());
  EXPECT_EQ(ToHex(RequestDigest(wire, {2, 11}).view()),
            ToHex(Digest(DigestAlgorithm::kSha256, header_and_body).view()));
  EXPECT_EQ(RequestDigest(wire, {2, 6}).size, 20);
  EXPECT_EQ(RequestDigest(wire, {2, 0}).size, 16);
  EXPECT_EQ(ToHex(Md5(AsBytes(""))), "d41d8cd98f00b204e9800998ecf8427e");
}

TEST(ResponseHeader, EchoesTheRequestAndAddsAuthoritative) {
  Header req;
  req.opcode = 100;
  req.op_flags = 0x19000000;
  req.expiration_time = 1795670248;
  Header h = ResponseHeaderFor(req, ResponseCode::kAuthenticationNeeded, 1, {2, 11});
  EXPECT_EQ(h.opcode, 100u);
  EXPECT_EQ(h.response_code, 402u);
  EXPECT_EQ(h.op_flags, 0x99800000u);  // AT added, RD always set on a challenge (CAP #27)
  EXPECT_EQ(h.site_info_serial, 1);
  EXPECT_EQ(h.expiration_time, 1795670248u);
  Header ok = ResponseHeaderFor(req, ResponseCode::kSuccess, 1, {2, 11});
  EXPECT_EQ(ok.op_flags, 0x99000000u);
  EXPECT_EQ(ResponseHeaderFor(req, ResponseCode::kServerBackup, 1, {2, 3}).response_code, 303u);
}

TEST(Names, OpcodesResponseCodesAndFlags) {
  EXPECT_EQ(OpCodeName(1), "OC_RESOLUTION");
  EXPECT_EQ(OpCodeName(302), "OC_LIST_HOMED_NAS");
  EXPECT_EQ(OpCodeName(1002), "OC_DUMP_HANDLES");
  EXPECT_EQ(OpCodeName(99), "OC_UNKNOWN(99)");
  EXPECT_EQ(ResponseCodeName(301), "RC_SERVER_NOT_RESP");
  EXPECT_EQ(ResponseCodeName(505), "RC_SESSION_MESSAGE_REJECTED");
  EXPECT_EQ(ResponseCodeName(900), "RC_UNKNOWN(900)");
  EXPECT_EQ(OpFlagNames(0xd9800000), "AT,CT,REC,CA,PO,RD");
  EXPECT_EQ(OpFlagNames(0x00700000), "OVRW,MINT,DNRF");
  EXPECT_TRUE(IsKnownOpCode(1003));
  EXPECT_FALSE(IsKnownOpCode(0));
  EXPECT_FALSE(IsKnownOpCode(3));
  EXPECT_FALSE(IsKnownOpCode(106));  // the RFC's OC_LIST_NA, unused by CNRI
}

}  // namespace
}  // namespace idnode::protocol
