#include "idnode/protocol/wire.h"

#include <gtest/gtest.h>

#include <array>
#include <vector>

#include "idnode/protocol/utf8.h"

namespace idnode::protocol {
namespace {

TEST(WireReader, ReadsBigEndianIntegers) {
  const std::array<uint8_t, 11> bytes{0x01, 0x02, 0x03, 0x04, 0x05, 0x06,
                                      0x07, 0xff, 0xff, 0xff, 0xfe};
  WireReader r(bytes);
  EXPECT_EQ(r.U8(), 0x01);
  EXPECT_EQ(r.U16(), 0x0203);
  EXPECT_EQ(r.U32(), 0x04050607u);
  EXPECT_EQ(r.I32(), -2);
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.remaining(), 0u);
}

TEST(WireReader, ErrorIsStickyAndKeepsTheFirstOffset) {
  const std::array<uint8_t, 3> bytes{0, 0, 0};
  WireReader r(bytes);
  EXPECT_EQ(r.U16(), 0);
  EXPECT_EQ(r.U32(), 0u);  // needs 4, has 1
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kTruncated);
  EXPECT_EQ(r.error().offset, 2u);
  EXPECT_EQ(r.U8(), 0);  // later reads return zero and do not move the error
  EXPECT_EQ(r.error().offset, 2u);
}

TEST(WireReader, LengthPrefixLargerThanTheRestFailsAtTheLengthField) {
  for (uint32_t claimed : {5u, 0x80000000u, 0xffffffffu}) {
    std::vector<uint8_t> bytes{static_cast<uint8_t>(claimed >> 24),
                               static_cast<uint8_t>(claimed >> 16),
                               static_cast<uint8_t>(claimed >> 8),
                               static_cast<uint8_t>(claimed),
                               'a',
                               'b'};
    WireReader r(bytes);
    EXPECT_TRUE(r.LengthPrefixed().empty());
    EXPECT_EQ(r.error().code, ErrorCode::kTruncated) << claimed;
    EXPECT_EQ(r.error().offset, 0u);
  }
}

TEST(WireReader, CountIsBoundedByTheBytesLeftAndTheCap) {
  std::vector<uint8_t> bytes{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1};
  WireReader r(bytes);
  EXPECT_EQ(r.Count(4, UINT32_MAX), 0u);
  EXPECT_EQ(r.error().code, ErrorCode::kCountTooLarge);

  std::vector<uint8_t> two{0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2};
  WireReader ok(two);
  EXPECT_EQ(ok.Count(4, 2), 2u);
  WireReader capped(two);
  EXPECT_EQ(capped.Count(4, 1), 0u);
  EXPECT_EQ(capped.error().code, ErrorCode::kCountTooLarge);
}

TEST(WireReader, TextMustBeUtf8) {
  std::vector<uint8_t> bytes{0, 0, 0, 2, 0xc0, 0xaf};  // overlong '/'
  WireReader r(bytes);
  EXPECT_TRUE(r.Text().empty());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidUtf8);
}

TEST(WireWriter, CountsWhatItCouldNotWrite) {
  std::array<uint8_t, 6> out{};
  WireWriter w(out);
  w.U32(0x01020304);
  w.Text("hello");
  EXPECT_FALSE(w.ok());
  EXPECT_EQ(w.needed(), 4u + 4u + 5u);
  EXPECT_EQ(out[0], 1);
  EXPECT_EQ(out[3], 4);
  EXPECT_EQ(out[4], 0);  // nothing partial was written past the room
}

TEST(WireWriter, PatchesReservedLengths) {
  std::array<uint8_t, 12> out{};
  WireWriter w(out);
  size_t at = w.Reserve32();
  w.U32(7);
  w.Patch32(at, 0xa0b0c0d0);
  EXPECT_TRUE(w.ok());
  EXPECT_EQ(out[0], 0xa0);
  EXPECT_EQ(out[3], 0xd0);
  EXPECT_EQ(out[7], 7);
}

TEST(Utf8, AcceptsValidAndRejectsMalformedSequences) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("88.100.1/SN0001"));
  EXPECT_TRUE(IsValidUtf8("\xe6\xa0\x87\xe8\xaf\x86"));  // 标识
  EXPECT_TRUE(IsValidUtf8("\xf0\x9f\x98\x80"));          // U+1F600
  EXPECT_TRUE(IsValidUtf8("\xf4\x8f\xbf\xbf"));          // U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));                 // overlong
  EXPECT_FALSE(IsValidUtf8("\xe0\x80\xaf"));             // overlong, 3 bytes
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));             // lone surrogate U+D800
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));         // above U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xe6\xa0"));                 // truncated
  EXPECT_FALSE(IsValidUtf8("\x80"));                     // lone continuation
  EXPECT_FALSE(IsValidUtf8("\xff"));
}

}  // namespace
}  // namespace idnode::protocol
