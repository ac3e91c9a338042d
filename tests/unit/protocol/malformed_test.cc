// HARDENING.md §3, cases 1-25 as they concern the codec: each malformed input gives a typed error
// that maps to a defined response code (or to a silent drop when not even an envelope is there).
// Cases 13, 14, 17 and 21 are policies of the resolver, auth and registry rooms: here the codec
// only has to carry their fields faithfully, which the tests below check too.
#include <gtest/gtest.h>

#include "idnode/protocol/message.h"
#include "idnode/protocol/transport.h"
#include "idnode/protocol/value_types.h"
#include "test_util.h"

namespace idnode::protocol {
namespace {

using testing::LoadMessage;

void Put32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
  b[at] = static_cast<uint8_t>(v >> 24);
  b[at + 1] = static_cast<uint8_t>(v >> 16);
  b[at + 2] = static_cast<uint8_t>(v >> 8);
  b[at + 3] = static_cast<uint8_t>(v);
}

void Append32(std::vector<uint8_t>& b, uint32_t v) {
  b.resize(b.size() + 4);
  Put32(b, b.size() - 4, v);
}

void AppendText(std::vector<uint8_t>& b, std::string_view t) {
  Append32(b, static_cast<uint32_t>(t.size()));
  b.insert(b.end(), t.begin(), t.end());
}

// A request message around `body`, with correct lengths unless the test breaks them.
std::vector<uint8_t> RequestWithBody(uint32_t opcode, const std::vector<uint8_t>& body) {
  std::vector<uint8_t> m = LoadMessage("01-udp-resolve-test1.request.hex");
  m.resize(kEnvelopeSize + kHeaderSize);
  Put32(m, kEnvelopeSize, opcode);
  Put32(m, kEnvelopeSize + 20, static_cast<uint32_t>(body.size()));
  m.insert(m.end(), body.begin(), body.end());
  Append32(m, 0);  // empty credential section
  Put32(m, 16, static_cast<uint32_t>(m.size() - kEnvelopeSize));
  return m;
}

ErrorCode DecodeError(const std::vector<uint8_t>& bytes) {
  auto r = DecodeMessage(bytes);
  EXPECT_FALSE(r.ok());
  return r.ok() ? ErrorCode::kBufferTooSmall : r.error().code;
}

std::vector<uint8_t> ResolutionBody(std::string_view handle) {
  std::vector<uint8_t> body;
  AppendText(body, handle);
  Append32(body, 0);
  Append32(body, 0);
  return body;
}

TEST(Malformed, Case01ShorterThanTheEnvelope) {
  for (size_t n : {0u, 1u, 19u}) {
    std::vector<uint8_t> bytes(n, 0x02);
    EXPECT_EQ(DecodeError(bytes), ErrorCode::kTruncated) << n;
    EXPECT_FALSE(DecodeEnvelope(bytes).ok());  // no request id: the server drops it silently
  }
}

TEST(Malformed, Case02UnsupportedMajorVersion) {
  for (uint8_t major : {0, 1, 3, 9, 255}) {
    auto m = LoadMessage("01-udp-resolve-test1.request.hex");
    m[0] = major;
    EXPECT_EQ(DecodeError(m), ErrorCode::kUnsupportedVersion) << int{major};
    EXPECT_EQ(ResponseCodeFor(ErrorCode::kUnsupportedVersion), ResponseCode::kProtocolError);
  }
  auto newer_minor = LoadMessage("01-udp-resolve-test1.request.hex");
  newer_minor[1] = 255;  // a newer 2.x client is answered in 2.11, not refused
  EXPECT_TRUE(DecodeMessage(newer_minor).ok());
}

TEST(Malformed, Case03MessageLengthBeyondTheBytesReceived) {
  auto m = LoadMessage("01-udp-resolve-test1.request.hex");
  Put32(m, 16, 1u << 20);  // claims 1 MiB in a 78-byte datagram
  EXPECT_EQ(DecodeError(m), ErrorCode::kMessageTooLarge);
  Put32(m, 16, 200);
  EXPECT_EQ(DecodeError(m), ErrorCode::kLengthMismatch);
  UdpReassembler reassembler;
  auto outcome = reassembler.Offer({}, m, UdpReassembler::Clock::now());
  EXPECT_TRUE(std::holds_alternative<ProtocolError>(outcome));
  EXPECT_EQ(reassembler.bytes_held(), 0u);
}

TEST(Malformed, Case04TcpLengthCapCheckedBeforeReading) {
  auto m = LoadMessage("08-tcp-resolve-test1.request.hex");
  Put32(m, 16, 0xffffffff);
  auto r = TcpFrameRemainder(std::span<const uint8_t, kEnvelopeSize>(m.data(), kEnvelopeSize));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kMessageTooLarge);
  Put32(m, 16, kMaxMessageLength + 1);
  EXPECT_FALSE(
      TcpFrameRemainder(std::span<const uint8_t, kEnvelopeSize>(m.data(), kEnvelopeSize)).ok());
  Put32(m, 16, 4096);  // a server may configure a smaller cap
  EXPECT_FALSE(
      TcpFrameRemainder(std::span<const uint8_t, kEnvelopeSize>(m.data(), kEnvelopeSize), 1024)
          .ok());
  Put32(m, 16, kMaxMessageLength);
  EXPECT_TRUE(
      TcpFrameRemainder(std::span<const uint8_t, kEnvelopeSize>(m.data(), kEnvelopeSize)).ok());
}

TEST(Malformed, Case05LengthsThatDisagree) {
  auto m = LoadMessage("01-udp-resolve-test1.request.hex");
  std::vector<uint8_t> short_message(m.begin(), m.begin() + kEnvelopeSize + 10);
  Put32(short_message, 16, 10);  // no room for the header
  EXPECT_EQ(DecodeError(short_message), ErrorCode::kLengthMismatch);
  auto m8 = LoadMessage("08-tcp-resolve-test1.request.hex");
  Put32(m8, 16, 10);
  EXPECT_FALSE(
      TcpFrameRemainder(std::span<const uint8_t, kEnvelopeSize>(m8.data(), kEnvelopeSize)).ok());

  auto extra = m;  // one byte after the credential section
  extra.push_back(0);
  Put32(extra, 16, static_cast<uint32_t>(extra.size() - kEnvelopeSize));
  EXPECT_EQ(DecodeError(extra), ErrorCode::kLengthMismatch);

  auto body_too_short = m;  // BodyLength smaller than the body: the rest is not a credential
  Put32(body_too_short, kEnvelopeSize + 20, 20);
  EXPECT_FALSE(DecodeMessage(body_too_short).ok());
}

TEST(Malformed, Case06BodyLengthThatWouldOverflow) {
  auto m = LoadMessage("01-udp-resolve-test1.request.hex");
  Put32(m, kEnvelopeSize + 20, 0xfffffff0);
  EXPECT_EQ(DecodeError(m), ErrorCode::kLengthMismatch);
}

std::vector<uint8_t> Fragment(uint32_t request_id, uint32_t seq, uint32_t message_length,
                              uint8_t fill) {
  std::vector<uint8_t> d = LoadMessage("01-udp-resolve-test1.request.hex");
  d.resize(kEnvelopeSize);
  d[2] |= kEnvelopeTruncated;
  Put32(d, 8, request_id);
  Put32(d, 12, seq);
  Put32(d, 16, message_length);
  uint32_t count = UdpDatagramCount(message_length);
  size_t size = seq + 1 < count ? kUdpPayloadPerDatagram
                                : message_length - (count - 1) * kUdpPayloadPerDatagram;
  d.resize(kEnvelopeSize + size, fill);
  return d;
}

TEST(Malformed, Case07ManyIncompleteMessagesStayBounded) {
  ReassemblyLimits limits;
  limits.max_entries = 256;
  limits.max_total_bytes = 1u << 20;
  UdpReassembler reassembler(limits);
  auto now = UdpReassembler::Clock::now();
  for (uint32_t id = 0; id < 10000; ++id) {
    auto outcome = reassembler.Offer({}, Fragment(id, 1, 4000, 0xaa), now);
    EXPECT_FALSE(std::holds_alternative<UdpReassembler::Complete>(outcome));
    ASSERT_LE(reassembler.entries(), limits.max_entries);
    ASSERT_LE(reassembler.bytes_held(), limits.max_total_bytes);
  }
  EXPECT_GE(reassembler.stats().evicted_for_space, 10000u - limits.max_entries);
  reassembler.Expire(now + limits.max_age);
  EXPECT_EQ(reassembler.entries(), 0u);
  EXPECT_EQ(reassembler.bytes_held(), 0u);
}

TEST(Malformed, Case08ConflictingDuplicatesGapsAndHugeFragmentCounts) {
  UdpReassembler reassembler;
  auto now = UdpReassembler::Clock::now();
  EXPECT_TRUE(std::holds_alternative<UdpReassembler::NeedMore>(
      reassembler.Offer({}, Fragment(1, 0, 1000, 1), now)));
  // An identical retry is harmless; a conflicting one drops the whole message.
  EXPECT_TRUE(std::holds_alternative<UdpReassembler::NeedMore>(
      reassembler.Offer({}, Fragment(1, 0, 1000, 1), now)));
  EXPECT_TRUE(
      std::holds_alternative<ProtocolError>(reassembler.Offer({}, Fragment(1, 0, 1000, 2), now)));
  EXPECT_EQ(reassembler.entries(), 0u);
  // A sequence number past the fragment count, a fragment of the wrong size.
  EXPECT_TRUE(
      std::holds_alternative<ProtocolError>(reassembler.Offer({}, Fragment(2, 5, 1000, 1), now)));
  auto wrong_size = Fragment(3, 0, 1000, 1);
  wrong_size.pop_back();
  EXPECT_TRUE(std::holds_alternative<ProtocolError>(reassembler.Offer({}, wrong_size, now)));
  // A message length that would need 65 535 fragments is above the UDP request cap.
  auto huge = Fragment(4, 0, 1000, 1);
  Put32(huge, 16, 65535 * kUdpPayloadPerDatagram);
  Put32(huge, 12, 65534);
  EXPECT_TRUE(std::holds_alternative<ProtocolError>(reassembler.Offer({}, huge, now)));
  // A gap never completes and ages out.
  EXPECT_TRUE(std::holds_alternative<UdpReassembler::NeedMore>(
      reassembler.Offer({}, Fragment(5, 0, 1500, 1), now)));
  EXPECT_TRUE(std::holds_alternative<UdpReassembler::NeedMore>(
      reassembler.Offer({}, Fragment(5, 2, 1500, 1), now)));
  reassembler.Expire(now + std::chrono::seconds(5));
  EXPECT_EQ(reassembler.entries(), 0u);
  // Fragments from another source do not join someone else's message.
  UdpSource other;
  other.port = 9;
  EXPECT_TRUE(std::holds_alternative<UdpReassembler::NeedMore>(
      reassembler.Offer({}, Fragment(6, 0, 600, 1), now)));
  EXPECT_TRUE(std::holds_alternative<UdpReassembler::NeedMore>(
      reassembler.Offer(other, Fragment(6, 1, 600, 1), now)));
  EXPECT_EQ(reassembler.entries(), 2u);
}

TEST(Malformed, Case09CompressedIsRefused) {
  auto m = LoadMessage("01-udp-resolve-test1.request.hex");
  m[2] |= kEnvelopeCompressed;
  EXPECT_EQ(DecodeError(m), ErrorCode::kCompressed);
  EXPECT_EQ(ResponseCodeFor(ErrorCode::kCompressed), ResponseCode::kProtocolError);
}

TEST(Malformed, Case10EncryptedWithoutSession) {
  auto m = LoadMessage("01-udp-resolve-test1.request.hex");
  m[2] |= kEnvelopeEncrypted;
  EXPECT_EQ(DecodeError(m), ErrorCode::kEncryptedWithoutSession);
  EXPECT_EQ(ResponseCodeFor(ErrorCode::kEncryptedWithoutSession), ResponseCode::kSessionFailed);
  Put32(m, 4, 99);  // with a session id the payload is carried for the session layer to judge
  auto decoded = DecodeMessage(m);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->encrypted_payload.size(), m.size() - kEnvelopeSize);
}

TEST(Malformed, Case11ResponseSentToTheServerIsRecognisable) {
  auto decoded = DecodeMessage(LoadMessage("01-udp-resolve-test1.response.hex"));
  ASSERT_TRUE(decoded.ok());
  EXPECT_FALSE(decoded->header.is_request());  // the server drops these, never answers
}

TEST(Malformed, Case12UnknownOpcodesAndReservedFlags) {
  EXPECT_EQ(DecodeError(RequestWithBody(0, ResolutionBody("a/b"))), ErrorCode::kReservedOpCode);
  EXPECT_EQ(ResponseCodeFor(ErrorCode::kReservedOpCode), ResponseCode::kProtocolError);
  for (uint32_t op : {3u, 99u, 106u, 0xffffffffu}) {
    EXPECT_EQ(DecodeError(RequestWithBody(op, ResolutionBody("a/b"))), ErrorCode::kUnknownOpCode)
        << op;
  }
  EXPECT_EQ(ResponseCodeFor(ErrorCode::kUnknownOpCode), ResponseCode::kOperationNotSupported);
  auto m = RequestWithBody(1, ResolutionBody("a/b"));
  Put32(m, kEnvelopeSize + 8, 0x190fffff);  // undefined low flag bits are carried, not obeyed
  auto decoded = DecodeMessage(m);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->header.op_flags, 0x190fffffu);
}

TEST(Malformed, Case13And14RecursionAndExpirationAreCarriedForPolicy) {
  auto m = LoadMessage("01-udp-resolve-test1.request.hex");
  m[kEnvelopeSize + 14] = 255;
  Put32(m, kEnvelopeSize + 16, 0);
  auto decoded = DecodeMessage(m);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->header.recursion_count, 255);
  EXPECT_EQ(decoded->header.expiration_time, 0u);
}

TEST(Malformed, Case15HandleLengthBeyondTheBody) {
  for (uint32_t claimed : {23u, 1000u, 0x80000000u, 0xffffffffu}) {
    std::vector<uint8_t> body;
    Append32(body, claimed);
    const std::string_view handle = "20.500.12345/test1";
    body.insert(body.end(), handle.begin(), handle.end());
    Append32(body, 0);
    EXPECT_EQ(DecodeError(RequestWithBody(1, body)), ErrorCode::kTruncated) << claimed;
  }
}

TEST(Malformed, Case16HandleShapes) {
  for (std::string_view ok : {"", "/", "prefix/", "0.NA/88.100.1", "noslash"}) {
    EXPECT_TRUE(DecodeMessage(RequestWithBody(1, ResolutionBody(ok))).ok())
        << ok;  // the resolver judges
  }
  EXPECT_EQ(DecodeError(RequestWithBody(1, ResolutionBody(std::string_view("a/\0b", 4)))),
            ErrorCode::kInvalidHandle);
  EXPECT_EQ(ResponseCodeFor(ErrorCode::kInvalidHandle), ResponseCode::kInvalidHandle);
  EXPECT_EQ(DecodeError(RequestWithBody(1, ResolutionBody("a/\xc0\xaf"))), ErrorCode::kInvalidUtf8);
  EXPECT_EQ(DecodeError(RequestWithBody(1, ResolutionBody("a/\xed\xa0\x80"))),
            ErrorCode::kInvalidUtf8);
  std::string long_handle = "88.100.1/" + std::string(65536, 'x');
  EXPECT_EQ(DecodeError(RequestWithBody(1, ResolutionBody(long_handle))),
            ErrorCode::kInvalidHandle);
  std::string longest = "88.100.1/" + std::string(kMaxHandleLength - 9, 'x');
  EXPECT_TRUE(DecodeMessage(RequestWithBody(1, ResolutionBody(longest))).ok());
}

TEST(Malformed, Case18IndexCountLargerThanTheData) {
  std::vector<uint8_t> body;
  AppendText(body, "a/b");
  Append32(body, 0xffffffff);
  Append32(body, 1);
  EXPECT_EQ(DecodeError(RequestWithBody(1, body)), ErrorCode::kCountTooLarge);
}

TEST(Malformed, Case19TypeListsAreBounded) {
  std::vector<uint8_t> body;
  AppendText(body, "a/b");
  Append32(body, 0);
  Append32(body, 10000);  // more filters than any record could match
  for (int i = 0; i < 10000; ++i) AppendText(body, "T");
  EXPECT_EQ(DecodeError(RequestWithBody(1, body)), ErrorCode::kCountTooLarge);
  std::vector<uint8_t> big;  // 3 types of 64 KiB each fit in a TCP message and decode
  AppendText(big, "a/b");
  Append32(big, 0);
  Append32(big, 3);
  for (int i = 0; i < 3; ++i) AppendText(big, std::string(65536, 'T'));
  auto decoded = DecodeMessage(RequestWithBody(1, big));
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(std::get<ResolutionRequest>(decoded->body).types.size(), 3u);
}

std::vector<uint8_t> ValueBytes(uint8_t ttl_type, uint8_t permissions, uint32_t ref_count,
                                uint32_t data_length) {
  std::vector<uint8_t> v;
  Append32(v, 1);
  Append32(v, 0);
  v.push_back(ttl_type);
  Append32(v, 86400);
  v.push_back(permissions);
  AppendText(v, "URL");
  Append32(v, data_length);
  v.push_back('x');
  Append32(v, ref_count);
  return v;
}

TEST(Malformed, Case20ValueFields) {
  EXPECT_TRUE(DecodeHandleValue(ValueBytes(0, 0x0e, 0, 1)).ok());
  EXPECT_TRUE(DecodeHandleValue(ValueBytes(1, 0x0f, 0, 1)).ok());
  for (uint8_t ttl_type : {2, 100, 255}) {
    EXPECT_EQ(DecodeHandleValue(ValueBytes(ttl_type, 0x0e, 0, 1)).error().code,
              ErrorCode::kInvalidValue);
  }
  EXPECT_EQ(DecodeHandleValue(ValueBytes(0, 0x1e, 0, 1)).error().code, ErrorCode::kInvalidValue);
  EXPECT_EQ(DecodeHandleValue(ValueBytes(0, 0x0e, 0xffffffff, 1)).error().code,
            ErrorCode::kCountTooLarge);
  EXPECT_EQ(DecodeHandleValue(ValueBytes(0, 0x0e, 0, 1000)).error().code, ErrorCode::kTruncated);
  // In a create request the same errors surface through the message decoder.
  std::vector<uint8_t> body;
  AppendText(body, "88.100.1/SN1");
  Append32(body, 1);
  auto bad = ValueBytes(7, 0x0e, 0, 1);
  body.insert(body.end(), bad.begin(), bad.end());
  EXPECT_EQ(DecodeError(RequestWithBody(100, body)), ErrorCode::kInvalidValue);
  std::vector<uint8_t> too_many;
  AppendText(too_many, "88.100.1/SN1");
  Append32(too_many, kMaxValuesPerMessage + 1);
  EXPECT_EQ(DecodeError(RequestWithBody(100, too_many)), ErrorCode::kCountTooLarge);
}

TEST(Malformed, Case22AdminRecords) {
  std::vector<uint8_t> admin{0x0f, 0xff};
  AppendText(admin, "0.NA/88.100.1");
  Append32(admin, 300);
  ASSERT_TRUE(DecodeAdminRecord(admin).ok());
  auto overflow = admin;
  Put32(overflow, 2, 0xfffffff0);
  EXPECT_EQ(DecodeAdminRecord(overflow).error().code, ErrorCode::kTruncated);
  auto all_bits = admin;
  all_bits[0] = all_bits[1] = 0xff;
  EXPECT_EQ(DecodeAdminRecord(all_bits).error().code, ErrorCode::kInvalidValue);
  auto index_zero = admin;
  Put32(index_zero, index_zero.size() - 4, 0);
  ASSERT_TRUE(DecodeAdminRecord(index_zero).ok());  // index 0 means "any index" (HANDLE.md §1.7)
  EXPECT_EQ(DecodeAdminRecord(index_zero)->admin_index, 0);
  auto trailing = admin;
  trailing.push_back(1);
  EXPECT_EQ(DecodeAdminRecord(trailing).error().code, ErrorCode::kTrailingBytes);
}

TEST(Malformed, Case25CredentialSection) {
  auto m = LoadMessage("09-tcp-create-with-session.request.hex");
  const size_t cred_at = kEnvelopeSize + kHeaderSize + 146;
  auto longer = m;
  Put32(longer, cred_at, 1000);
  EXPECT_EQ(DecodeError(longer), ErrorCode::kLengthMismatch);
  auto unknown_type = m;  // "HS_MAC" -> "HS_XYZ"
  unknown_type[cred_at + 4 + 16 + 3] = 'X';
  unknown_type[cred_at + 4 + 16 + 4] = 'Y';
  unknown_type[cred_at + 4 + 16 + 5] = 'Z';
  EXPECT_EQ(DecodeError(unknown_type), ErrorCode::kInvalidValue);
  auto bad_inner = m;  // signedInfo's signature length runs past signedInfo
  Put32(bad_inner, m.size() - 36, 33);
  EXPECT_FALSE(DecodeMessage(bad_inner).ok());
  // RD prefix with an undefined hash type.
  for (uint8_t hash_type : {4, 255}) {
    auto r = LoadMessage("05-udp-resolve-RD-digest.response.hex");
    r[kEnvelopeSize + kHeaderSize] = hash_type;
    EXPECT_EQ(DecodeError(r), ErrorCode::kUnknownDigestAlgorithm) << int{hash_type};
  }
}

TEST(Malformed, EveryTruncationOfEveryVectorFailsCleanly) {
  for (const char* name :
       {"01-udp-resolve-test1.response.hex", "07-udp-get-site-info.response.hex",
        "09-tcp-create-with-session.request.hex", "09-tcp-response-to-challenge.request.hex",
        "06-udp-resolve-certified.response-2-datagrams.hex"}) {
    auto m = LoadMessage(name);
    auto full = DecodeMessage(m);
    ASSERT_TRUE(full.ok());
    // Cutting exactly where the credential section starts leaves a valid message without one.
    const size_t body_end = kEnvelopeSize + kHeaderSize + full->header.body_length;
    for (size_t cut = 0; cut < m.size(); ++cut) {
      if (cut == body_end) continue;
      std::vector<uint8_t> prefix(m.begin(), m.begin() + static_cast<ptrdiff_t>(cut));
      if (cut >= kEnvelopeSize) Put32(prefix, 16, static_cast<uint32_t>(cut - kEnvelopeSize));
      auto r = DecodeMessage(prefix);
      EXPECT_FALSE(r.ok()) << name << " cut at " << cut;
    }
  }
}

}  // namespace
}  // namespace idnode::protocol
