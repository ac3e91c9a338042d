// Handle values on the wire (HANDLE.md §1.6, RFC 3651 §3).
//
// Decoded values are views: their strings and data point into the buffer that was decoded, which
// must outlive them.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "idnode/protocol/constants.h"
#include "idnode/protocol/error.h"
#include "idnode/protocol/wire.h"

namespace idnode::protocol {

struct ValueReference {
  std::string_view handle;
  int32_t index = 0;

  friend bool operator==(const ValueReference&, const ValueReference&) = default;
};

struct HandleValue {
  int32_t index = 0;
  uint32_t timestamp = 0;  // Unix seconds, unsigned so that it lasts until 2106
  TtlType ttl_type = TtlType::kRelative;
  int32_t ttl = 86400;
  uint8_t permissions = permission::kCnriDefault;
  std::string_view type;
  std::span<const uint8_t> data;
  std::vector<ValueReference> references;

  bool publicly_readable() const { return (permissions & permission::kPublicRead) != 0; }
  std::string_view data_as_text() const {
    return {reinterpret_cast<const char*>(data.data()), data.size()};
  }
};

bool operator==(const HandleValue& a, const HandleValue& b);

// Smallest encoding of a value: index, timestamp, ttl type, ttl, permissions, empty type, empty
// data, zero references. Used to bound value counts by the bytes left.
inline constexpr size_t kMinEncodedValueSize = 4 + 4 + 1 + 4 + 1 + 4 + 4 + 4;

// Reads one value; on failure the reader holds the error.
HandleValue ReadHandleValue(WireReader& reader);
// Reads count(4) + values, with count bounded by kMaxValuesPerMessage and the bytes left.
std::vector<HandleValue> ReadHandleValues(WireReader& reader);

void WriteHandleValue(WireWriter& writer, const HandleValue& value);
void WriteHandleValues(WireWriter& writer, std::span<const HandleValue> values);
size_t EncodedSize(const HandleValue& value);

// Decodes exactly one value occupying all of `bytes`.
Decoded<HandleValue> DecodeHandleValue(std::span<const uint8_t> bytes);

// Handle strings: valid UTF-8 (checked by the reader), at most kMaxHandleLength bytes, no NUL.
std::string_view ReadHandle(WireReader& reader);

}  // namespace idnode::protocol
