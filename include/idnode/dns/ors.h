// dns/: the ORS mapping (ITU-T X.672) between OIDs and DNS names, and between OIDs and the handles
// that hold them in the registry.
//
// OID 1.2.156.3001.1 <-> DNS name 1.3001.156.2.1.<apex>: the arcs reversed, one label each, under
// the ORS zone apex. Only canonical OIDs map: numeric arcs without leading zeros, a first arc of
// 0, 1 or 2 (X.660), a second arc below 40 under 0 and 1, and at most kMaxOidLength bytes in all
// (GB/T 26231-2017). A non-canonical name ("01.2.oid-res.org.", "x.oid-res.org.") names no OID.
//
// Where an OID lives: the handle "<oid_prefix>/<oid>" (README.md "DNS for OIDs" says why a prefix).
// Pure functions; any thread; nothing here allocates except the string-returning helpers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "idnode/common/result.h"

namespace idnode::dns {

// GB/T 26231-2017: a whole OID is at most 100 bytes.
inline constexpr size_t kMaxOidLength = 100;

enum class OrsError : uint8_t {
  kNotInZone,  // the name is not at or under the apex
  kApex,       // the name is the apex itself (no OID)
  kNotAnOid,   // a label or arc that is not a canonical numeric arc
  kTooLong,    // more than kMaxOidLength bytes
  kBadApex,    // the apex is not a valid domain name
};

std::string_view OrsErrorName(OrsError error);

// Whether `oid` is a canonical OID as above ("1.2.156.3001.1").
bool IsCanonicalOid(std::string_view oid);

// "1.2.156.3001.1", "oid-res.org" -> "1.3001.156.2.1.oid-res.org." (the apex may omit its final
// dot).
Result<std::string, OrsError> OidToDnsName(std::string_view oid, std::string_view apex);
// The reverse, case-insensitive in the apex: "1.3001.156.2.1.OID-RES.org." -> "1.2.156.3001.1".
Result<std::string, OrsError> DnsNameToOid(std::string_view name, std::string_view apex);

// The OID named by the first `labels` labels of an uncompressed wire-format domain name (as
// libknot hands out a query's name), written into `out`. Returns the OID's length, or the error.
// Reads at most `labels` labels; never writes past `out`.
Result<size_t, OrsError> OidFromWireLabels(const uint8_t* name, int labels,
                                           std::span<char, kMaxOidLength> out);

// The handle that holds `oid`: "<oid_prefix>/<oid>".
std::string HandleForOid(std::string_view oid_prefix, std::string_view oid);

}  // namespace idnode::dns
