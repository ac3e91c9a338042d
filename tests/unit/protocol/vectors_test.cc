// The captured vectors (HANDLE.md, ../shared/vectors/handle): every message decodes to the fields
// its transcript shows, and re-encodes to the same bytes.
#include <gtest/gtest.h>

#include <filesystem>
#include <iomanip>
#include <list>
#include <map>
#include <regex>
#include <tuple>

#include "idnode/protocol/describe.h"
#include "idnode/protocol/digest.h"
#include "idnode/protocol/message.h"
#include "idnode/protocol/value_types.h"
#include "test_util.h"

namespace idnode::protocol {
namespace {

using testing::AsBytes;
using testing::LoadHexLines;
using testing::LoadMessage;

constexpr std::string_view kTest1 = "20.500.12345/test1";
constexpr uint32_t kRecordTimestamp = 1795627007;  // 2026-11-25T17:16:47Z in records.jsonl

Message MustDecode(const std::vector<uint8_t>& bytes) {
  auto decoded = DecodeMessage(bytes);
  EXPECT_TRUE(decoded.ok()) << (decoded.ok() ? "" : ErrorCodeName(decoded.error().code)) << " at "
                            << (decoded.ok() ? 0 : decoded.error().offset);
  return decoded.ok() ? *decoded : Message{};
}

// Decoded messages are views into their bytes; this keeps every vector's bytes alive for the
// whole test program so that the views stay valid.
Message DecodeVector(const std::string& name) {
  static std::list<std::vector<uint8_t>> storage;
  storage.push_back(LoadMessage(name));
  return MustDecode(storage.back());
}

std::vector<uint8_t> Reencode(const Message& m) {
  std::vector<uint8_t> out(EncodedMessageSize(m));
  auto written = EncodeMessage(m, out);
  EXPECT_TRUE(written.ok());
  if (written.ok()) out.resize(*written);
  return out;
}

std::string Text(std::span<const uint8_t> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

void ExpectRequestEnvelope(const Envelope& e, uint32_t request_id, uint32_t length,
                           uint8_t minor = 11) {
  EXPECT_EQ(e.major_version, 2);
  EXPECT_EQ(e.minor_version, minor);
  EXPECT_EQ(e.suggested_major, 2);
  EXPECT_EQ(e.suggested_minor, 11);
  EXPECT_FALSE(e.compressed || e.encrypted || e.truncated);
  EXPECT_EQ(e.request_id, request_id);
  EXPECT_EQ(e.sequence_number, 0u);
  EXPECT_EQ(e.message_length, length);
}

// The four values of 20.500.12345/test1, in order, as records.jsonl and the transcript show them.
void ExpectTest1Values(const std::vector<HandleValue>& values, size_t count = 4) {
  ASSERT_EQ(values.size(), count);
  struct Expected {
    int32_t index;
    std::string_view type;
    std::string_view data;
  };
  const Expected expected[] = {{1, "URL", "https://example.org/item/1"},
                               {2, "EMAIL", "someone@example.org"},
                               {3, "DESC", "industrial identifier test record"}};
  for (size_t i = 0; i < count && i < 3; ++i) {
    EXPECT_EQ(values[i].index, expected[i].index);
    EXPECT_EQ(values[i].type, expected[i].type);
    EXPECT_EQ(Text(values[i].data), expected[i].data);
    EXPECT_EQ(values[i].timestamp, kRecordTimestamp);
    EXPECT_EQ(values[i].ttl_type, TtlType::kRelative);
    EXPECT_EQ(values[i].ttl, 86400);
    EXPECT_EQ(values[i].permissions, 0x0e);
    EXPECT_TRUE(values[i].references.empty());
  }
  if (count == 4) {
    const HandleValue& admin = values[3];
    EXPECT_EQ(admin.index, 100);
    EXPECT_EQ(admin.type, "HS_ADMIN");
    auto record = DecodeAdminRecord(admin.data);
    ASSERT_TRUE(record.ok());
    EXPECT_EQ(record->permissions, 0x0fff);
    EXPECT_EQ(record->admin_handle, "0.NA/20.500.12345");
    EXPECT_EQ(record->admin_index, 300);
    EXPECT_EQ(AdminPermissionString(record->permissions), "111111111111");
  }
}

// ---- every vector round-trips byte for byte ---------------------------------------------------

class VectorRoundTrip : public ::testing::TestWithParam<std::string> {};

TEST_P(VectorRoundTrip, DecodesAndReencodesToTheSameBytes) {
  auto lines = LoadHexLines(GetParam());
  auto message = LoadMessage(GetParam());
  Message m = MustDecode(message);
  EXPECT_EQ(Reencode(m), message);
  EXPECT_EQ(EncodedMessageSize(m), message.size());
  if (lines.size() > 1) {
    // A multi-datagram message splits back into exactly the captured datagrams.
    EXPECT_EQ(SplitForUdp(message).size(), lines.size());
    auto datagrams = SplitForUdp(message);
    for (size_t i = 0; i < lines.size() && i < datagrams.size(); ++i)
      EXPECT_EQ(datagrams[i], lines[i]);
  }
}

std::vector<std::string> AllVectorFiles() {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(testing::VectorPath(""))) {
    std::string name = entry.path().filename().string();
    if (name.size() > 4 && name.substr(name.size() - 4) == ".hex") names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

INSTANTIATE_TEST_SUITE_P(AllVectors, VectorRoundTrip, ::testing::ValuesIn(AllVectorFiles()),
                         [](const auto& param_info) {
                           const std::string& file = param_info.param;
                           std::string name = file.substr(0, file.size() - 4);
                           for (char& c : name) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });

TEST(Vectors, AllTwentySixCapturedMessagesAreCovered) {
  EXPECT_EQ(AllVectorFiles().size(), 26u);
}

// ---- field by field -----------------------------------------------------------------------------

TEST(Vectors, V01ResolveRequest) {
  Message m = DecodeVector("01-udp-resolve-test1.request.hex");
  ExpectRequestEnvelope(m.envelope, 492964239, 58);
  EXPECT_EQ(m.envelope.session_id, 0u);
  EXPECT_EQ(m.header.opcode, 1u);
  EXPECT_EQ(m.header.response_code, 0u);
  EXPECT_EQ(m.header.op_flags, 0x19000000u);
  EXPECT_EQ(OpFlagNames(m.header.op_flags), "REC,CA,PO");
  EXPECT_EQ(m.header.site_info_serial, 0xffff);
  EXPECT_EQ(m.header.recursion_count, 0);
  EXPECT_EQ(m.header.expiration_time, 1795670243u);
  EXPECT_EQ(m.header.body_length, 30u);
  const auto& body = std::get<ResolutionRequest>(m.body);
  EXPECT_EQ(body.handle, kTest1);
  EXPECT_TRUE(body.indexes.empty());
  EXPECT_TRUE(body.types.empty());
  EXPECT_TRUE(body.extension.empty());
  EXPECT_FALSE(m.credential.present);
  EXPECT_TRUE(m.has_credential_field);
  EXPECT_FALSE(m.request_digest.has_value());
}

TEST(Vectors, V01ResolveResponse) {
  Message m = DecodeVector("01-udp-resolve-test1.response.hex");
  EXPECT_EQ(m.envelope.request_id, 492964239u);
  EXPECT_EQ(m.envelope.message_length, 283u);
  EXPECT_EQ(m.header.opcode, 1u);
  EXPECT_EQ(m.header.response_code, 1u);
  EXPECT_EQ(m.header.op_flags, 0x99000000u);
  EXPECT_EQ(m.header.site_info_serial, 1);
  EXPECT_EQ(m.header.expiration_time, 1795670243u);
  EXPECT_EQ(m.header.body_length, 255u);
  const auto& body = std::get<HandleValuesBody>(m.body);
  EXPECT_EQ(body.handle, kTest1);
  ExpectTest1Values(body.values);
}

TEST(Vectors, V02NotFound) {
  Message req = DecodeVector("02-udp-resolve-nope.request.hex");
  ExpectRequestEnvelope(req.envelope, 300581665, 57);
  EXPECT_EQ(std::get<ResolutionRequest>(req.body).handle, "20.500.12345/nope");
  Message m = DecodeVector("02-udp-resolve-nope.response-RC100.hex");
  EXPECT_EQ(m.envelope.request_id, 300581665u);
  EXPECT_EQ(m.envelope.message_length, 32u);
  EXPECT_EQ(m.header.response_code, static_cast<uint32_t>(ResponseCode::kHandleNotFound));
  EXPECT_EQ(ResponseCodeName(m.header.response_code), "RC_HANDLE_NOT_FOUND");
  EXPECT_EQ(m.header.body_length, 4u);
  EXPECT_EQ(std::get<ErrorBody>(m.body).message, "");
}

TEST(Vectors, V03TypeFilterWithNoMatch) {
  Message req = DecodeVector("03-udp-resolve-type-NOSUCHTYPE.request.hex");
  ExpectRequestEnvelope(req.envelope, 44122520, 72);
  const auto& body = std::get<ResolutionRequest>(req.body);
  ASSERT_EQ(body.types.size(), 1u);
  EXPECT_EQ(*body.types.begin(), "NOSUCHTYPE");
  EXPECT_TRUE(body.indexes.empty());
  Message m = DecodeVector("03-udp-resolve-type-NOSUCHTYPE.response-RC200.hex");
  EXPECT_EQ(m.header.response_code, static_cast<uint32_t>(ResponseCode::kValuesNotFound));
  EXPECT_EQ(std::get<ErrorBody>(m.body).message, "");
}

TEST(Vectors, V04TypeAndIndexFilters) {
  Message req = DecodeVector("04-udp-resolve-type-URL-index-2.request.hex");
  ExpectRequestEnvelope(req.envelope, 420972667, 69);
  EXPECT_EQ(req.header.body_length, 41u);
  const auto& body = std::get<ResolutionRequest>(req.body);
  ASSERT_EQ(body.indexes.size(), 1u);
  EXPECT_EQ(body.indexes[0], 2);
  ASSERT_EQ(body.types.size(), 1u);
  EXPECT_EQ(*body.types.begin(), "URL");
  Message m = DecodeVector("04-udp-resolve-type-URL-index-2.response.hex");
  EXPECT_EQ(m.header.body_length, 131u);
  ExpectTest1Values(std::get<HandleValuesBody>(m.body).values, 2);
}

TEST(Vectors, V05RequestDigestIsSha256OfHeaderAndBody) {
  auto request = LoadMessage("05-udp-resolve-RD-digest.request.hex");
  Message req = MustDecode(request);
  EXPECT_EQ(req.header.op_flags, 0x19800000u);
  Message m = DecodeVector("05-udp-resolve-RD-digest.response.hex");
  EXPECT_EQ(m.header.op_flags, 0x99800000u);
  EXPECT_EQ(m.header.body_length, 288u);
  ASSERT_TRUE(m.request_digest.has_value());
  EXPECT_EQ(m.request_digest->algorithm, DigestAlgorithm::kSha256);
  EXPECT_EQ(ToHex(m.request_digest->digest),
            "2bcdb97d3ed6b8d3a3a7a7bb224c95a4b151ae5f30222e365494b918358d938e");
  DigestValue computed = RequestDigest(request, m.envelope.version());
  EXPECT_EQ(computed.algorithm, DigestAlgorithm::kSha256);
  EXPECT_EQ(ToHex(computed.view()), ToHex(m.request_digest->digest));
  ExpectTest1Values(std::get<HandleValuesBody>(m.body).values);
}

TEST(Vectors, V06CertifiedResponseSpansTwoDatagrams) {
  Message req = DecodeVector("06-udp-resolve-certified.request.hex");
  EXPECT_EQ(req.header.op_flags, 0x59000000u);
  auto lines = LoadHexLines("06-udp-resolve-certified.response-2-datagrams.hex");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].size(), 512u);
  EXPECT_EQ(lines[1].size(), 111u);
  EXPECT_FALSE(DecodeEnvelope(lines[0])->truncated);  // servers do not set TC on responses
  Message m = DecodeVector("06-udp-resolve-certified.response-2-datagrams.hex");
  EXPECT_EQ(m.envelope.message_length, 583u);
  EXPECT_EQ(m.header.op_flags, 0xd9000000u);
  EXPECT_EQ(m.header.body_length, 255u);
  ExpectTest1Values(std::get<HandleValuesBody>(m.body).values);
  ASSERT_TRUE(m.credential.present);
  EXPECT_EQ(m.credential.version, 0);
  EXPECT_EQ(m.credential.signer_handle, "");
  EXPECT_EQ(m.credential.signer_index, 0);
  EXPECT_EQ(m.credential.type, "HS_SIGNED");
  EXPECT_EQ(m.credential.digest_algorithm, "SHA-256");
  EXPECT_EQ(m.credential.signature.size(), 256u);  // RSA-2048
  EXPECT_EQ(m.credential.signature[0], 0x20);
}

TEST(Vectors, V07SiteInfo) {
  Message req = DecodeVector("07-udp-get-site-info.request.hex");
  EXPECT_EQ(req.header.opcode, static_cast<uint32_t>(OpCode::kGetSiteInfo));
  EXPECT_EQ(std::get<HandleBody>(req.body).handle, "/");
  Message m = DecodeVector("07-udp-get-site-info.response.hex");
  EXPECT_EQ(m.envelope.message_length, 413u);
  EXPECT_EQ(m.header.body_length, 385u);
  auto site = DecodeSiteInfo(std::get<SiteInfoBody>(m.body).site_data);
  ASSERT_TRUE(site.ok()) << ErrorCodeName(site.error().code) << " at " << site.error().offset;
  EXPECT_EQ(site->data_format_version, 1);
  EXPECT_EQ(site->protocol_major, 2);
  EXPECT_EQ(site->protocol_minor, 11);
  EXPECT_EQ(site->serial_number, 1);
  EXPECT_TRUE(site->is_primary());
  EXPECT_FALSE(site->is_multi_primary());
  EXPECT_EQ(site->hash_option, static_cast<uint8_t>(HashOption::kWhole));
  EXPECT_TRUE(site->hash_filter.empty());
  ASSERT_EQ(site->attributes.size(), 1u);
  EXPECT_EQ(site->attributes[0].name, "desc");
  EXPECT_EQ(site->attributes[0].value, "research test site");
  ASSERT_EQ(site->servers.size(), 1u);
  const SiteServer& server = site->servers[0];
  EXPECT_EQ(server.server_id, 1);
  std::array<uint8_t, 16> loopback{};
  loopback[12] = 127;
  loopback[15] = 1;
  EXPECT_EQ(server.address, loopback);
  auto key = DecodePublicKey(server.public_key);
  ASSERT_TRUE(key.ok());
  const auto& rsa = std::get<RsaPublicKey>(key->key);
  EXPECT_EQ(ToHex(rsa.exponent), "010001");
  EXPECT_EQ(rsa.modulus.size(), 257u);  // 2048 bits with BigInteger's leading zero
  EXPECT_TRUE(rsa.has_trailing_field);
  EXPECT_TRUE(rsa.trailing_field.empty());
  EXPECT_EQ(EncodePublicKey(*key),
            std::vector<uint8_t>(server.public_key.begin(), server.public_key.end()));
  ASSERT_EQ(server.interfaces.size(), 3u);
  EXPECT_EQ(server.interfaces[0], (SiteInterface{3, 1, 2641}));
  EXPECT_EQ(server.interfaces[1], (SiteInterface{2, 0, 2641}));
  EXPECT_EQ(server.interfaces[2], (SiteInterface{3, 2, 8000}));
  auto site_bytes = std::get<SiteInfoBody>(m.body).site_data;
  EXPECT_EQ(EncodeSiteInfo(*site), std::vector<uint8_t>(site_bytes.begin(), site_bytes.end()));
}

TEST(Vectors, V08TcpResolveMatchesUdp) {
  Message m = DecodeVector("08-tcp-resolve-test1.response.hex");
  EXPECT_EQ(m.envelope.request_id, 0x1bd62d3fu);
  ExpectTest1Values(std::get<HandleValuesBody>(m.body).values);
  auto remainder = TcpFrameRemainder(std::span<const uint8_t, kEnvelopeSize>(
      LoadMessage("08-tcp-resolve-test1.request.hex").data(), kEnvelopeSize));
  ASSERT_TRUE(remainder.ok());
  EXPECT_EQ(*remainder, 58u);
}

TEST(Vectors, V09CreateWithSessionChallengeAndAnswer) {
  auto create_bytes = LoadMessage("09-tcp-create-with-session.request.hex");
  Message create = MustDecode(create_bytes);
  EXPECT_EQ(create.envelope.session_id, 7u);
  EXPECT_EQ(create.envelope.request_id, 0x134b3e8eu);
  EXPECT_EQ(create.header.opcode, static_cast<uint32_t>(OpCode::kCreateHandle));
  EXPECT_EQ(create.header.site_info_serial, 1);
  EXPECT_EQ(create.header.body_length, 146u);
  const auto& body = std::get<HandleValuesBody>(create.body);
  EXPECT_EQ(body.handle, "20.500.12345/created1");
  ASSERT_EQ(body.values.size(), 2u);
  EXPECT_EQ(body.values[0].index, 1);
  EXPECT_EQ(body.values[0].timestamp, 0u);
  EXPECT_EQ(body.values[0].type, "URL");
  EXPECT_EQ(Text(body.values[0].data), "https://example.org/created");
  EXPECT_EQ(body.values[1].index, 100);
  EXPECT_EQ(body.values[1].type, "HS_ADMIN");
  ASSERT_TRUE(create.credential.present);
  EXPECT_EQ(create.credential.type, "HS_MAC");
  EXPECT_EQ(create.credential.signer_index, 1);
  EXPECT_EQ(create.credential.digest_algorithm, "HMAC-SHA256");
  EXPECT_EQ(create.credential.signature.size(), 32u);

  Message challenge = DecodeVector("09-tcp-create.response-RC402-challenge.hex");
  EXPECT_EQ(challenge.envelope.session_id, 7u);
  EXPECT_EQ(challenge.envelope.request_id, 0x134b3e8eu);
  EXPECT_EQ(challenge.header.response_code,
            static_cast<uint32_t>(ResponseCode::kAuthenticationNeeded));
  EXPECT_EQ(challenge.header.op_flags, 0x99800000u);
  ASSERT_TRUE(challenge.request_digest.has_value());
  EXPECT_EQ(challenge.request_digest->algorithm, DigestAlgorithm::kSha256);
  // The challenge's digest is the SHA-256 of the create request's header and body.
  EXPECT_EQ(ToHex(challenge.request_digest->digest),
            ToHex(RequestDigest(create_bytes, challenge.envelope.version()).view()));
  EXPECT_EQ(ToHex(std::get<ChallengeBody>(challenge.body).nonce),
            "d164ffaca8df82f05e706941b963f8e4");

  Message answer = DecodeVector("09-tcp-response-to-challenge.request.hex");
  EXPECT_EQ(answer.header.opcode, static_cast<uint32_t>(OpCode::kResponseToChallenge));
  EXPECT_EQ(answer.envelope.session_id, 7u);
  EXPECT_EQ(answer.envelope.request_id, 0x39dc51a1u);
  const auto& a = std::get<ChallengeAnswer>(answer.body);
  EXPECT_EQ(a.auth_type, "HS_PUBKEY");
  EXPECT_EQ(a.user_id_handle, "0.NA/20.500.12345");
  EXPECT_EQ(a.user_id_index, 300);
  ASSERT_EQ(a.signed_response.size(), 271u);
  WireReader signed_response(a.signed_response);
  EXPECT_EQ(signed_response.Text(), "SHA-256");
  EXPECT_EQ(signed_response.LengthPrefixed().size(), 256u);

  Message done = DecodeVector("09-tcp-create.response-RC1.hex");
  EXPECT_EQ(done.envelope.request_id, 0x39dc51a1u);  // the OC 200 message's id
  EXPECT_EQ(done.header.opcode, static_cast<uint32_t>(OpCode::kCreateHandle));
  EXPECT_EQ(done.header.response_code, 1u);
  EXPECT_EQ(std::get<HandleBody>(done.body).handle, "20.500.12345/created1");
}

TEST(Vectors, V10DeleteResponseIsEmpty) {
  Message m = DecodeVector("10-tcp-delete.response-RC1-empty.hex");
  EXPECT_EQ(m.header.opcode, static_cast<uint32_t>(OpCode::kDeleteHandle));
  EXPECT_EQ(m.header.response_code, 1u);
  EXPECT_EQ(m.header.body_length, 0u);
  EXPECT_TRUE(std::holds_alternative<EmptyBody>(m.body));
}

TEST(Vectors, V11ChinaSdkSendsTenSuggestsElevenAndFourExtraBytes) {
  Message req = DecodeVector("11-cnsdk-tcp-resolve-test1.request.hex");
  ExpectRequestEnvelope(req.envelope, 1, 62, /*minor=*/10);
  EXPECT_EQ(req.header.body_length, 34u);
  const auto& body = std::get<ResolutionRequest>(req.body);
  EXPECT_EQ(body.handle, kTest1);
  EXPECT_EQ(ToHex(body.extension), "00000000");
  // The answer is in 2.11: the suggested version, capped at ours.
  Envelope reply = ResponseEnvelopeFor(req.envelope);
  EXPECT_EQ(reply.version(), (ProtocolVersion{2, 11}));
  Message m = DecodeVector("11-cnsdk-tcp-resolve-test1.response.hex");
  EXPECT_EQ(m.envelope.version(), reply.version());
  EXPECT_EQ(m.envelope.request_id, 1u);
  ExpectTest1Values(std::get<HandleValuesBody>(m.body).values);
}

TEST(Vectors, V12V13ChinaSdkSequentialIdsWithoutKeepConnection) {
  Message nope = DecodeVector("12-cnsdk-tcp-resolve-nope.request.hex");
  EXPECT_EQ(nope.envelope.request_id, 1u);
  EXPECT_FALSE(nope.header.has(opflag::kKeepConnection));
  Message reply = DecodeVector("12-cnsdk-tcp-resolve-nope.response-RC100.hex");
  EXPECT_EQ(reply.header.response_code, 100u);
  Message second = DecodeVector("13-cnsdk-tcp-second-request-same-connection.request.hex");
  EXPECT_EQ(second.envelope.request_id, 2u);
  EXPECT_FALSE(second.header.has(opflag::kKeepConnection));
  EXPECT_EQ(std::get<ResolutionRequest>(second.body).handle, kTest1);
}

// Responses built with ResponseHeaderFor/ResponseEnvelopeFor from the request and the record's
// values reproduce the captured response bytes exactly.
TEST(Vectors, BuildingTheResolutionResponseGivesTheCapturedBytes) {
  for (auto [request_file, response_file] :
       {std::pair{"01-udp-resolve-test1.request.hex", "01-udp-resolve-test1.response.hex"},
        std::pair{"05-udp-resolve-RD-digest.request.hex", "05-udp-resolve-RD-digest.response.hex"},
        std::pair{"11-cnsdk-tcp-resolve-test1.request.hex",
                  "11-cnsdk-tcp-resolve-test1.response.hex"}}) {
    SCOPED_TRACE(request_file);
    auto request_bytes = LoadMessage(request_file);
    Message req = MustDecode(request_bytes);
    Message captured = DecodeVector((response_file));
    Message resp;
    resp.envelope = ResponseEnvelopeFor(req.envelope);
    resp.header = ResponseHeaderFor(req.header, ResponseCode::kSuccess, 1, resp.envelope.version());
    DigestValue digest = RequestDigest(request_bytes, resp.envelope.version());
    if (req.header.has(opflag::kRequestDigest)) {
      resp.request_digest = RequestDigestField{digest.algorithm, digest.view()};
    }
    resp.body = HandleValuesBody{std::get<ResolutionRequest>(req.body).handle,
                                 std::get<HandleValuesBody>(captured.body).values};
    EXPECT_EQ(Reencode(resp), LoadMessage(response_file));
  }
}

TEST(Vectors, BuildingErrorResponsesGivesTheCapturedBytes) {
  for (auto [request_file, response_file, rc] :
       {std::tuple{"02-udp-resolve-nope.request.hex", "02-udp-resolve-nope.response-RC100.hex",
                   ResponseCode::kHandleNotFound},
        std::tuple{"03-udp-resolve-type-NOSUCHTYPE.request.hex",
                   "03-udp-resolve-type-NOSUCHTYPE.response-RC200.hex",
                   ResponseCode::kValuesNotFound},
        std::tuple{"12-cnsdk-tcp-resolve-nope.request.hex",
                   "12-cnsdk-tcp-resolve-nope.response-RC100.hex",
                   ResponseCode::kHandleNotFound}}) {
    SCOPED_TRACE(request_file);
    Message req = DecodeVector((request_file));
    Message resp;
    resp.envelope = ResponseEnvelopeFor(req.envelope);
    resp.header = ResponseHeaderFor(req.header, rc, 1, resp.envelope.version());
    resp.body = ErrorBody{""};
    EXPECT_EQ(Reencode(resp), LoadMessage(response_file));
  }
}

// ---- whole sessions against their decoded transcripts -------------------------------------------

struct TranscriptEntry {
  int number = 0;
  std::map<std::string, std::string> fields;  // "requestId" -> "492964239", "opcode" -> "OC_..."
};

// Parses session-*.decoded.txt: "#N ..." starts an entry; the envelope and header lines give
// key=value fields; the header line starts with the opcode and response-code names.
std::vector<TranscriptEntry> ParseTranscript(const std::string& name) {
  std::vector<TranscriptEntry> entries;
  std::istringstream in(testing::ReadFile(testing::VectorPath(name)));
  std::string line;
  static const std::regex kField(R"(([A-Za-z]+)=([^ \[]+))");
  while (std::getline(in, line)) {
    if (!line.empty() && line[0] == '#') {
      entries.push_back({std::stoi(line.substr(1)), {}});
      continue;
    }
    if (entries.empty()) continue;
    auto& fields = entries.back().fields;
    std::string_view text = line;
    bool envelope = text.find("  envelope:") == 0;
    bool header = text.find("  header:") == 0;
    if (!envelope && !header) continue;
    if (header) {
      std::istringstream words(line.substr(line.find(':') + 1));
      words >> fields["opcode"] >> fields["rc"];
    }
    for (std::sregex_iterator it(line.begin(), line.end(), kField), end; it != end; ++it) {
      fields[(header ? "h." : "e.") + (*it)[1].str()] = (*it)[2].str();
    }
  }
  return entries;
}

// Reads session-*.hex.txt into whole messages numbered like the transcript (a multi-datagram
// message takes the number of its last datagram).
std::map<int, std::vector<uint8_t>> LoadSession(const std::string& name) {
  std::map<int, std::vector<uint8_t>> messages;
  std::istringstream in(testing::ReadFile(testing::VectorPath(name)));
  std::string line;
  UdpReassembler reassembler;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    int number = 0;
    std::string transport, direction, length, hex;
    words >> number >> transport >> direction >> length >> hex;
    auto bytes = FromHex(hex);
    EXPECT_TRUE(bytes.has_value()) << name << " #" << number;
    if (!bytes) continue;
    EXPECT_EQ(std::to_string(bytes->size()), length);
    if (transport == "TCP") {
      messages[number] = *bytes;
      continue;
    }
    auto outcome = reassembler.Offer({}, *bytes, UdpReassembler::Clock::now());
    if (auto* done = std::get_if<UdpReassembler::Complete>(&outcome))
      messages[number] = done->message;
    EXPECT_FALSE(std::holds_alternative<ProtocolError>(outcome)) << name << " #" << number;
  }
  return messages;
}

void CheckSession(const std::string& hex_name, const std::string& decoded_name) {
  auto messages = LoadSession(hex_name);
  auto transcript = ParseTranscript(decoded_name);
  ASSERT_FALSE(transcript.empty());
  size_t checked = 0;
  for (const auto& entry : transcript) {
    SCOPED_TRACE(hex_name + " #" + std::to_string(entry.number));
    ASSERT_TRUE(messages.count(entry.number));
    const auto& bytes = messages[entry.number];
    Message m = MustDecode(bytes);
    EXPECT_EQ(Reencode(m), bytes);
    const auto& f = entry.fields;
    EXPECT_EQ(std::to_string(m.envelope.request_id), f.at("e.requestId"));
    EXPECT_EQ(std::to_string(m.envelope.session_id), f.at("e.sessionId"));
    EXPECT_EQ(std::to_string(m.envelope.message_length), f.at("e.msgLen"));
    EXPECT_EQ(
        std::to_string(m.envelope.major_version) + "." + std::to_string(m.envelope.minor_version),
        f.at("e.version"));
    if (m.envelope.encrypted) continue;  // the transcript's header of ciphertext is noise
    EXPECT_EQ(OpCodeName(m.header.opcode), f.at("opcode"));
    EXPECT_EQ(
        m.header.is_request() ? "RC_RESERVED(request)" : ResponseCodeName(m.header.response_code),
        f.at("rc"));
    std::ostringstream flags;
    flags << "0x" << std::hex << std::setw(8) << std::setfill('0') << m.header.op_flags;
    EXPECT_EQ(flags.str(), f.at("h.opFlags"));
    EXPECT_EQ(std::to_string(m.header.site_info_serial), f.at("h.siteSerial"));
    EXPECT_EQ(std::to_string(m.header.expiration_time), f.at("h.expiration"));
    EXPECT_EQ(std::to_string(m.header.body_length), f.at("h.bodyLen"));
    ++checked;
  }
  EXPECT_GT(checked, 10u);
}

TEST(Vectors, UdpAndTcpSessionMatchesItsTranscript) {
  CheckSession("session-udp.hex.txt", "session-udp.decoded.txt");
}

TEST(Vectors, AdminSessionMatchesItsTranscript) {
  CheckSession("session-admin.hex.txt", "session-admin.decoded.txt");
}

TEST(Vectors, DescribeNamesTheFields) {
  std::string text = Describe(DecodeVector("01-udp-resolve-test1.response.hex"));
  EXPECT_NE(text.find("OC_RESOLUTION RC_SUCCESS opFlags=0x99000000[AT,REC,CA,PO]"),
            std::string::npos);
  EXPECT_NE(text.find("value idx=1 ts=1795627007 ttlType=0 ttl=86400 perm=0xe type=URL "
                      "data=https://example.org/item/1 refs=0"),
            std::string::npos);
}

}  // namespace
}  // namespace idnode::protocol
