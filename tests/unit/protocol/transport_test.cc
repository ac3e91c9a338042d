#include "idnode/protocol/transport.h"

#include <gtest/gtest.h>

#include "test_util.h"

namespace idnode::protocol {
namespace {

using testing::LoadMessage;

Message BigResponse(size_t data_bytes, std::vector<uint8_t>& data) {
  data.assign(data_bytes, 'x');
  Message m;
  m.envelope.request_id = 77;
  m.header.opcode = 1;
  m.header.response_code = 1;
  HandleValue v;
  v.index = 1;
  v.type = "DESC";
  v.data = data;
  m.body = HandleValuesBody{"88.100.1/BIG", {v}};
  return m;
}

std::vector<uint8_t> Encode(const Message& m) {
  std::vector<uint8_t> out(EncodedMessageSize(m));
  EXPECT_TRUE(EncodeMessage(m, out).ok());
  return out;
}

TEST(Udp, DatagramCount) {
  EXPECT_EQ(UdpDatagramCount(0), 1u);
  EXPECT_EQ(UdpDatagramCount(492), 1u);
  EXPECT_EQ(UdpDatagramCount(493), 2u);
  EXPECT_EQ(UdpDatagramCount(583), 2u);  // CAP: 512 + 111
  EXPECT_EQ(UdpDatagramCount(kMaxMessageLength), 533u);
}

TEST(Udp, SplitAndReassembleALargeMessage) {
  std::vector<uint8_t> data;
  auto message = Encode(BigResponse(5000, data));
  auto datagrams = SplitForUdp(message);
  ASSERT_EQ(datagrams.size(),
            UdpDatagramCount(static_cast<uint32_t>(message.size() - kEnvelopeSize)));
  for (size_t i = 0; i < datagrams.size(); ++i) {
    EXPECT_LE(datagrams[i].size(), kMaxUdpDatagramSize);
    auto env = DecodeEnvelope(datagrams[i]);
    ASSERT_TRUE(env.ok());
    EXPECT_EQ(env->sequence_number, i);
    EXPECT_EQ(env->message_length, message.size() - kEnvelopeSize);
    EXPECT_EQ(env->request_id, 77u);
  }
  // Reassembly in reverse order gives the original message.
  UdpReassembler reassembler;
  auto now = UdpReassembler::Clock::now();
  UdpReassembler::Outcome outcome = UdpReassembler::NeedMore{};
  for (size_t i = datagrams.size(); i-- > 0;) outcome = reassembler.Offer({}, datagrams[i], now);
  ASSERT_TRUE(std::holds_alternative<UdpReassembler::Complete>(outcome));
  EXPECT_EQ(std::get<UdpReassembler::Complete>(outcome).message, message);
  EXPECT_EQ(reassembler.entries(), 0u);
  EXPECT_EQ(reassembler.bytes_held(), 0u);
  EXPECT_EQ(reassembler.stats().completed, 1u);
}

TEST(Udp, MultiPacketRequestWithTcFlag) {
  // A create request large enough for three datagrams, as a client sends it (TC set).
  std::vector<uint8_t> data(1200, 'u');
  Message m;
  m.envelope.truncated = true;
  m.envelope.request_id = 5;
  m.header.opcode = static_cast<uint32_t>(OpCode::kCreateHandle);
  HandleValue v;
  v.index = 1;
  v.type = "URL";
  v.data = data;
  m.body = HandleValuesBody{"88.100.1/SN1", {v}};
  auto message = Encode(m);
  auto datagrams = SplitForUdp(message);
  ASSERT_EQ(datagrams.size(), 3u);
  UdpReassembler reassembler;
  auto now = UdpReassembler::Clock::now();
  EXPECT_TRUE(
      std::holds_alternative<UdpReassembler::NeedMore>(reassembler.Offer({}, datagrams[0], now)));
  EXPECT_TRUE(
      std::holds_alternative<UdpReassembler::NeedMore>(reassembler.Offer({}, datagrams[2], now)));
  auto outcome = reassembler.Offer({}, datagrams[1], now);
  ASSERT_TRUE(std::holds_alternative<UdpReassembler::Complete>(outcome));
  auto decoded = DecodeMessage(std::get<UdpReassembler::Complete>(outcome).message);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(std::get<HandleValuesBody>(decoded->body).values[0].data.size(), 1200u);
}

TEST(Udp, WriteDatagramRejectsOutOfRangeIndexes) {
  auto message = LoadMessage("01-udp-resolve-test1.request.hex");
  std::array<uint8_t, kMaxUdpDatagramSize> out{};
  EXPECT_EQ(WriteUdpDatagram(message, 0, out), message.size());
  EXPECT_EQ(WriteUdpDatagram(message, 1, out), 0u);
  std::array<uint8_t, 100> small{};
  EXPECT_EQ(WriteUdpDatagram(message, 0, small), 0u);
}

TEST(Udp, SingleDatagramCompletesWithoutTableEntry) {
  UdpReassembler reassembler;
  auto message = LoadMessage("01-udp-resolve-test1.request.hex");
  auto outcome = reassembler.Offer({}, message, UdpReassembler::Clock::now());
  ASSERT_TRUE(std::holds_alternative<UdpReassembler::Complete>(outcome));
  EXPECT_EQ(std::get<UdpReassembler::Complete>(outcome).message, message);
  EXPECT_EQ(reassembler.entries(), 0u);
}

TEST(Udp, FragmentsWhoseEnvelopesDisagreeAreDropped) {
  std::vector<uint8_t> data;
  auto message = Encode(BigResponse(1200, data));
  auto datagrams = SplitForUdp(message);
  ASSERT_GE(datagrams.size(), 2u);
  datagrams[1][4] = 0x01;  // another session id
  UdpReassembler reassembler;
  auto now = UdpReassembler::Clock::now();
  EXPECT_TRUE(
      std::holds_alternative<UdpReassembler::NeedMore>(reassembler.Offer({}, datagrams[0], now)));
  EXPECT_TRUE(std::holds_alternative<ProtocolError>(reassembler.Offer({}, datagrams[1], now)));
  EXPECT_EQ(reassembler.entries(), 0u);
}

TEST(Udp, ByteBudgetEvictsOldestFirst) {
  ReassemblyLimits limits;
  limits.max_total_bytes = 16 * 1024;
  UdpReassembler reassembler(limits);
  std::vector<uint8_t> data;
  auto message = Encode(BigResponse(4000, data));
  auto datagrams = SplitForUdp(message);
  auto now = UdpReassembler::Clock::now();
  for (uint32_t id = 0; id < 100; ++id) {
    for (size_t i = 0; i + 1 < datagrams.size(); ++i) {
      auto d = datagrams[i];
      d[8] = static_cast<uint8_t>(id);
      (void)reassembler.Offer({}, d, now);
      ASSERT_LE(reassembler.bytes_held(), limits.max_total_bytes);
    }
  }
  EXPECT_GT(reassembler.stats().evicted_for_space, 0u);
}

TEST(Tcp, FrameRemainderIsTheMessageLength) {
  auto message = LoadMessage("09-tcp-create-with-session.request.hex");
  auto r =
      TcpFrameRemainder(std::span<const uint8_t, kEnvelopeSize>(message.data(), kEnvelopeSize));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, message.size() - kEnvelopeSize);
}

}  // namespace
}  // namespace idnode::protocol
