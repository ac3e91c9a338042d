#include "idnode/protocol/value.h"

#include <algorithm>
#include <cstring>

namespace idnode::protocol {

namespace {

// A reference is at least a handle length (4) and an index (4).
constexpr size_t kMinReferenceSize = 8;
// No real value carries more references than this; it bounds CPU on hostile input.
constexpr uint32_t kMaxReferencesPerValue = 1024;

bool SameBytes(std::span<const uint8_t> a, std::span<const uint8_t> b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

}  // namespace

bool operator==(const HandleValue& a, const HandleValue& b) {
  return a.index == b.index && a.timestamp == b.timestamp && a.ttl_type == b.ttl_type &&
         a.ttl == b.ttl && a.permissions == b.permissions && a.type == b.type &&
         SameBytes(a.data, b.data) && a.references == b.references;
}

std::string_view ReadHandle(WireReader& reader) {
  size_t start = reader.offset();
  std::string_view handle = reader.Text();
  if (!reader.ok()) return {};
  if (handle.size() > kMaxHandleLength || handle.find('\0') != std::string_view::npos) {
    reader.FailAt(ErrorCode::kInvalidHandle, start);
    return {};
  }
  return handle;
}

HandleValue ReadHandleValue(WireReader& reader) {
  HandleValue v;
  v.index = reader.I32();
  v.timestamp = reader.U32();
  uint8_t ttl_type = reader.U8();
  v.ttl = reader.I32();
  v.permissions = reader.U8();
  if (!reader.ok()) return v;
  if (ttl_type > static_cast<uint8_t>(TtlType::kAbsolute) ||
      (v.permissions & ~permission::kDefinedMask) != 0) {
    reader.Fail(ErrorCode::kInvalidValue);
    return v;
  }
  v.ttl_type = static_cast<TtlType>(ttl_type);
  v.type = reader.Text();
  v.data = reader.LengthPrefixed();
  uint32_t ref_count = reader.Count(kMinReferenceSize, kMaxReferencesPerValue);
  if (!reader.ok()) return v;
  v.references.reserve(ref_count);
  for (uint32_t i = 0; i < ref_count && reader.ok(); ++i) {
    ValueReference ref;
    ref.handle = ReadHandle(reader);
    ref.index = reader.I32();
    v.references.push_back(ref);
  }
  return v;
}

std::vector<HandleValue> ReadHandleValues(WireReader& reader) {
  std::vector<HandleValue> values;
  uint32_t count = reader.Count(kMinEncodedValueSize, kMaxValuesPerMessage);
  if (!reader.ok()) return values;
  values.reserve(count);
  for (uint32_t i = 0; i < count && reader.ok(); ++i) values.push_back(ReadHandleValue(reader));
  return values;
}

void WriteHandleValue(WireWriter& writer, const HandleValue& value) {
  writer.I32(value.index);
  writer.U32(value.timestamp);
  writer.U8(static_cast<uint8_t>(value.ttl_type));
  writer.I32(value.ttl);
  writer.U8(value.permissions);
  writer.Text(value.type);
  writer.LengthPrefixed(value.data);
  writer.U32(static_cast<uint32_t>(value.references.size()));
  for (const auto& ref : value.references) {
    writer.Text(ref.handle);
    writer.I32(ref.index);
  }
}

void WriteHandleValues(WireWriter& writer, std::span<const HandleValue> values) {
  writer.U32(static_cast<uint32_t>(values.size()));
  for (const auto& v : values) WriteHandleValue(writer, v);
}

size_t EncodedSize(const HandleValue& value) {
  size_t size = kMinEncodedValueSize + value.type.size() + value.data.size();
  for (const auto& ref : value.references) size += 8 + ref.handle.size();
  return size;
}

Decoded<HandleValue> DecodeHandleValue(std::span<const uint8_t> bytes) {
  WireReader reader(bytes);
  HandleValue v = ReadHandleValue(reader);
  reader.ExpectEnd();
  if (!reader.ok()) return Failure{reader.error()};
  return v;
}

}  // namespace idnode::protocol
