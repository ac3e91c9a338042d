#include "idnode/registry/values.h"

#include "idnode/identifier/identifier.h"

#include <algorithm>

#include "idnode/protocol/wire.h"

namespace idnode::registry {

namespace {

using identifier::SameIgnoringAsciiCase;

}  // namespace

proto::Value ToStored(const protocol::HandleValue& wire) {
  proto::Value v;
  v.set_index(wire.index);
  v.set_type(std::string(wire.type));
  v.set_data(std::string(reinterpret_cast<const char*>(wire.data.data()), wire.data.size()));
  v.set_ttl(wire.ttl);
  v.set_ttl_absolute(wire.ttl_type == protocol::TtlType::kAbsolute);
  v.set_timestamp(wire.timestamp);
  v.set_permissions(wire.permissions);
  for (const auto& ref : wire.references) {
    auto* r = v.add_references();
    r->set_handle(std::string(ref.handle));
    r->set_index(ref.index);
  }
  return v;
}

protocol::HandleValue ToWire(const proto::Value& stored) {
  protocol::HandleValue v;
  v.index = stored.index();
  v.timestamp = stored.timestamp();
  v.ttl_type = stored.ttl_absolute() ? protocol::TtlType::kAbsolute : protocol::TtlType::kRelative;
  v.ttl = stored.ttl();
  v.permissions = static_cast<uint8_t>(stored.permissions());
  v.type = stored.type();
  v.data = {reinterpret_cast<const uint8_t*>(stored.data().data()), stored.data().size()};
  for (const auto& ref : stored.references()) v.references.push_back({ref.handle(), ref.index()});
  return v;
}

std::vector<uint8_t> EncodeWireValues(const proto::Record& record) {
  std::vector<protocol::HandleValue> values;
  values.reserve(static_cast<size_t>(record.values_size()));
  size_t size = 4;
  for (const auto& v : record.values()) {
    values.push_back(ToWire(v));
    size += protocol::EncodedSize(values.back());
  }
  std::vector<uint8_t> out(size);
  protocol::WireWriter w(out);
  protocol::WriteHandleValues(w, values);
  return out;
}

bool TypeMatches(std::string_view requested, std::string_view type) {
  if (!requested.empty() && requested.back() == '.') {
    return type.size() >= requested.size() &&
           SameIgnoringAsciiCase(type.substr(0, requested.size()), requested);
  }
  return SameIgnoringAsciiCase(requested, type);
}

bool Filter::Matches(int32_t index, std::string_view type, uint8_t permissions) const {
  if (public_only && (permissions & protocol::permission::kPublicRead) == 0) return false;
  if (selects_all()) return true;
  if (std::find(indexes.begin(), indexes.end(), index) != indexes.end()) return true;
  return std::any_of(types.begin(), types.end(),
                     [type](const std::string& t) { return TypeMatches(t, type); });
}

bool IsServiceLocationType(std::string_view type) {
  return SameIgnoringAsciiCase(type, "HS_SITE") || SameIgnoringAsciiCase(type, "HS_SITE.6") ||
         SameIgnoringAsciiCase(type, "HS_SERV");
}

bool IsPrefixLocationType(std::string_view type) {
  return SameIgnoringAsciiCase(type, "HS_SITE.PREFIX") ||
         SameIgnoringAsciiCase(type, "HS_NA_DELEGATE") ||
         SameIgnoringAsciiCase(type, "HS_SERV.PREFIX");
}

bool IsServiceHandleType(std::string_view type) {
  return SameIgnoringAsciiCase(type, "HS_SERV") || SameIgnoringAsciiCase(type, "HS_SERV.PREFIX");
}

}  // namespace idnode::registry
