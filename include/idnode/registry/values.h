// Conversions between stored records (proto/) and the Handle wire format (protocol/), and the
// value filters of a resolution (HANDLE.md §1.6).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "idnode/protocol/value.h"
#include "idnode/registry.pb.h"

namespace idnode::registry {

proto::Value ToStored(const protocol::HandleValue& wire);
// A wire view of a stored value; valid while `stored` lives.
protocol::HandleValue ToWire(const proto::Value& stored);

// count(4) + values, as in a resolution response body: the encoded answer the cache holds.
std::vector<uint8_t> EncodeWireValues(const proto::Record& record);

// Which values a resolution asks for: indexes and types combine with OR; no filter means all; a
// type ending in "." also matches its sub-types ("HS_SITE." matches "HS_SITE.PREFIX"). Types
// compare case-insensitively (ASCII), as CNRI's hasType does. `public_only` (the PO flag) drops
// values without PUBLIC_READ.
struct Filter {
  std::vector<int32_t> indexes;
  std::vector<std::string> types;
  bool public_only = false;

  bool selects_all() const { return indexes.empty() && types.empty(); }
  bool Matches(int32_t index, std::string_view type, uint8_t permissions) const;
  bool Matches(const proto::Value& v) const {
    return Matches(v.index(), v.type(), static_cast<uint8_t>(v.permissions()));
  }
};

bool TypeMatches(std::string_view requested, std::string_view type);

// Where a prefix's identifiers are served: HS_SITE, HS_SITE.6, HS_SERV (a service referral).
bool IsServiceLocationType(std::string_view type);
// Where the prefix handles of derived prefixes are served: HS_SITE.PREFIX, its legacy name
// HS_NA_DELEGATE, HS_SERV.PREFIX (a prefix referral, HANDLE.md §1.11).
bool IsPrefixLocationType(std::string_view type);
// HS_SERV or HS_SERV.PREFIX: the value's data names a service handle holding the sites.
bool IsServiceHandleType(std::string_view type);

}  // namespace idnode::registry
