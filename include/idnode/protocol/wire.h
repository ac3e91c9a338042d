// Bounds-checked big-endian reader and writer over byte spans.
//
// WireReader has a sticky error: the first failure is recorded with its offset, every later read
// returns zero/empty, and the caller checks ok() before it trusts a value that drives a loop or an
// allocation. Nothing here allocates. Both classes are plain values used by one thread at a time.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

#include "idnode/protocol/error.h"
#include "idnode/protocol/utf8.h"

namespace idnode::protocol {

class WireReader {
 public:
  explicit WireReader(std::span<const uint8_t> data) : data_(data) {}

  [[nodiscard]] bool ok() const { return !failed_; }
  [[nodiscard]] ProtocolError error() const { return error_; }
  [[nodiscard]] size_t offset() const { return pos_; }
  [[nodiscard]] size_t remaining() const { return data_.size() - pos_; }
  [[nodiscard]] std::span<const uint8_t> rest() const { return data_.subspan(pos_); }

  void Fail(ErrorCode code) { FailAt(code, pos_); }
  // Records an error found in a field that started at `at` (an offset already read past).
  void FailAt(ErrorCode code, size_t at) {
    if (!failed_) {
      failed_ = true;
      error_ = ProtocolError{code, static_cast<uint32_t>(at)};
    }
  }

  uint8_t U8() {
    if (!Need(1)) return 0;
    return data_[pos_++];
  }
  uint16_t U16() {
    if (!Need(2)) return 0;
    uint16_t v = static_cast<uint16_t>(data_[pos_] << 8 | data_[pos_ + 1]);
    pos_ += 2;
    return v;
  }
  uint32_t U32() {
    if (!Need(4)) return 0;
    uint32_t v =
        static_cast<uint32_t>(data_[pos_]) << 24 | static_cast<uint32_t>(data_[pos_ + 1]) << 16 |
        static_cast<uint32_t>(data_[pos_ + 2]) << 8 | static_cast<uint32_t>(data_[pos_ + 3]);
    pos_ += 4;
    return v;
  }
  int32_t I32() { return static_cast<int32_t>(U32()); }
  uint64_t U64() {
    uint64_t high = U32();
    return high << 32 | U32();
  }

  std::span<const uint8_t> Bytes(size_t n) {
    if (!Need(n)) return {};
    auto out = data_.subspan(pos_, n);
    pos_ += n;
    return out;
  }

  // A 4-byte length then that many bytes. The length is checked against what is left before use,
  // and a length with the top bit set (negative as a Java int) is as truncated as any other.
  std::span<const uint8_t> LengthPrefixed() {
    uint32_t n = U32();
    if (failed_) return {};
    if (n > remaining()) {
      FailAt(ErrorCode::kTruncated, pos_ - 4);  // the offset of the length field itself
      return {};
    }
    return Bytes(n);
  }

  // A length-prefixed string that must be valid UTF-8 (text fields: handles, types, messages).
  std::string_view Text() {
    size_t start = pos_;
    auto bytes = LengthPrefixed();
    if (failed_) return {};
    std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    if (!IsValidUtf8(text)) {
      FailAt(ErrorCode::kInvalidUtf8, start);
      return {};
    }
    return text;
  }

  // A 4-byte count of elements that each take at least min_element_bytes, capped at max_count.
  // Fails unless the remaining bytes can hold that many, so no caller ever reserves or loops on an
  // unchecked count.
  uint32_t Count(size_t min_element_bytes, uint32_t max_count) {
    uint32_t n = U32();
    if (failed_) return 0;
    if (n > max_count || static_cast<uint64_t>(n) * min_element_bytes > remaining()) {
      FailAt(ErrorCode::kCountTooLarge, pos_ - 4);
      return 0;
    }
    return n;
  }

  // Fails with kTrailingBytes unless every byte was consumed.
  void ExpectEnd() {
    if (!failed_ && pos_ != data_.size()) Fail(ErrorCode::kTrailingBytes);
  }

 private:
  bool Need(size_t n) {
    if (failed_) return false;
    if (n > remaining()) {
      Fail(ErrorCode::kTruncated);
      return false;
    }
    return true;
  }

  std::span<const uint8_t> data_;
  size_t pos_ = 0;
  bool failed_ = false;
  ProtocolError error_{ErrorCode::kTruncated, 0};
};

// Writes into a caller-provided buffer. On overflow it stops writing but keeps counting, so
// needed() tells the size the caller must provide.
class WireWriter {
 public:
  explicit WireWriter(std::span<uint8_t> out) : out_(out) {}

  [[nodiscard]] bool ok() const { return pos_ <= out_.size(); }
  [[nodiscard]] size_t size() const { return pos_; }
  [[nodiscard]] size_t needed() const { return pos_; }

  void U8(uint8_t v) {
    if (Room(1)) out_[pos_] = v;
    pos_ += 1;
  }
  void U16(uint16_t v) {
    if (Room(2)) {
      out_[pos_] = static_cast<uint8_t>(v >> 8);
      out_[pos_ + 1] = static_cast<uint8_t>(v);
    }
    pos_ += 2;
  }
  void U32(uint32_t v) {
    if (Room(4)) Put32(pos_, v);
    pos_ += 4;
  }
  void I32(int32_t v) { U32(static_cast<uint32_t>(v)); }
  void U64(uint64_t v) {
    U32(static_cast<uint32_t>(v >> 32));
    U32(static_cast<uint32_t>(v));
  }
  void Bytes(std::span<const uint8_t> bytes) {
    if (Room(bytes.size()) && !bytes.empty())
      std::memcpy(out_.data() + pos_, bytes.data(), bytes.size());
    pos_ += bytes.size();
  }
  void LengthPrefixed(std::span<const uint8_t> bytes) {
    U32(static_cast<uint32_t>(bytes.size()));
    Bytes(bytes);
  }
  void Text(std::string_view text) {
    LengthPrefixed({reinterpret_cast<const uint8_t*>(text.data()), text.size()});
  }

  // Reserves a 4-byte field to be filled in later (lengths known only after the content).
  size_t Reserve32() {
    size_t at = pos_;
    U32(0);
    return at;
  }
  void Patch32(size_t at, uint32_t v) {
    if (at + 4 <= out_.size()) Put32(at, v);
  }

 private:
  bool Room(size_t n) const { return pos_ <= out_.size() && n <= out_.size() - pos_; }
  void Put32(size_t at, uint32_t v) {
    out_[at] = static_cast<uint8_t>(v >> 24);
    out_[at + 1] = static_cast<uint8_t>(v >> 16);
    out_[at + 2] = static_cast<uint8_t>(v >> 8);
    out_[at + 3] = static_cast<uint8_t>(v);
  }

  std::span<uint8_t> out_;
  size_t pos_ = 0;
};

}  // namespace idnode::protocol
