#include "idnode/dns/ors.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

extern "C" {
#include <libknot/libknot.h>
}

namespace idnode::dns {

namespace {

bool CanonicalArc(std::string_view arc) {
  if (arc.empty() || arc.size() > 63) return false;  // 63: it must also fit a DNS label
  for (char c : arc) {
    if (c < '0' || c > '9') return false;
  }
  return arc.size() == 1 || arc[0] != '0';
}

// X.660: the root arcs are 0, 1 and 2; under 0 and 1 the second arc is below 40.
bool ArcAllowedAt(size_t position, std::string_view arc, std::string_view first) {
  if (position == 0) return arc == "0" || arc == "1" || arc == "2";
  if (position == 1 && first != "2") return arc.size() == 1 || (arc.size() == 2 && arc[0] < '4');
  return true;
}

// The apex as an absolute, lower-cased wire name.
bool ApexToWire(std::string_view apex, std::array<uint8_t, KNOT_DNAME_MAXLEN>& wire) {
  std::string text(apex);
  if (text.empty() || text.back() != '.') text.push_back('.');
  if (knot_dname_from_str(wire.data(), text.c_str(), wire.size()) == nullptr) return false;
  knot_dname_to_lower(wire.data());
  return true;
}

}  // namespace

std::string_view OrsErrorName(OrsError error) {
  switch (error) {
    case OrsError::kNotInZone:
      return "not in the ORS zone";
    case OrsError::kApex:
      return "the zone apex names no OID";
    case OrsError::kNotAnOid:
      return "not a canonical numeric OID";
    case OrsError::kTooLong:
      return "longer than 100 bytes";
    case OrsError::kBadApex:
      return "the apex is not a domain name";
  }
  return "unknown";
}

bool IsCanonicalOid(std::string_view oid) {
  if (oid.empty() || oid.size() > kMaxOidLength) return false;
  std::string_view first;
  size_t position = 0;
  size_t start = 0;
  while (true) {
    size_t dot = oid.find('.', start);
    std::string_view arc =
        oid.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (!CanonicalArc(arc) || !ArcAllowedAt(position, arc, first)) return false;
    if (position == 0) first = arc;
    ++position;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

Result<std::string, OrsError> OidToDnsName(std::string_view oid, std::string_view apex) {
  if (oid.size() > kMaxOidLength) return Failure{OrsError::kTooLong};
  if (!IsCanonicalOid(oid)) return Failure{OrsError::kNotAnOid};
  std::array<uint8_t, KNOT_DNAME_MAXLEN> apex_wire{};
  if (!ApexToWire(apex, apex_wire)) return Failure{OrsError::kBadApex};
  std::string name;
  name.reserve(oid.size() + apex.size() + 2);
  size_t end = oid.size();
  while (true) {
    size_t dot = oid.rfind('.', end - 1);
    size_t begin = dot == std::string_view::npos ? 0 : dot + 1;
    name.append(oid.substr(begin, end - begin));
    name.push_back('.');
    if (dot == std::string_view::npos) break;
    end = dot;
  }
  std::string apex_text(apex);
  if (apex_text.empty() || apex_text.back() != '.') apex_text.push_back('.');
  if (apex_text != ".") name.append(apex_text);
  if (name.size() > KNOT_DNAME_TXT_MAXLEN) return Failure{OrsError::kTooLong};
  return name;
}

Result<size_t, OrsError> OidFromWireLabels(const uint8_t* name, int labels,
                                           std::span<char, kMaxOidLength> out) {
  if (labels <= 0) return Failure{OrsError::kApex};
  // The labels hold the arcs last-first: collect them, then write them in reverse.
  std::array<std::string_view, kMaxOidLength / 2 + 1> arcs{};
  size_t count = 0;
  size_t length = 0;
  const uint8_t* label = name;
  for (int i = 0; i < labels; ++i) {
    uint8_t n = *label;
    if (n == 0 || n > 63) return Failure{OrsError::kNotAnOid};  // pointers never reach here
    std::string_view arc(reinterpret_cast<const char*>(label + 1), n);
    length += arc.size() + (count > 0 ? 1 : 0);
    // Every arc takes at least 2 bytes with its dot, so 51 arcs can never fit in 100 bytes.
    if (length > kMaxOidLength || count == arcs.size()) return Failure{OrsError::kTooLong};
    if (!CanonicalArc(arc)) return Failure{OrsError::kNotAnOid};
    arcs[count++] = arc;
    label += 1 + n;
  }
  size_t at = 0;
  std::string_view first = arcs[count - 1];
  for (size_t i = 0; i < count; ++i) {
    std::string_view arc = arcs[count - 1 - i];
    if (!ArcAllowedAt(i, arc, first)) return Failure{OrsError::kNotAnOid};
    if (i > 0) out[at++] = '.';
    std::memcpy(out.data() + at, arc.data(), arc.size());
    at += arc.size();
  }
  return at;
}

Result<std::string, OrsError> DnsNameToOid(std::string_view name, std::string_view apex) {
  std::array<uint8_t, KNOT_DNAME_MAXLEN> apex_wire{};
  if (!ApexToWire(apex, apex_wire)) return Failure{OrsError::kBadApex};
  std::array<uint8_t, KNOT_DNAME_MAXLEN> wire{};
  std::string text(name);
  if (text.empty() || text.back() != '.') text.push_back('.');
  if (knot_dname_from_str(wire.data(), text.c_str(), wire.size()) == nullptr)
    return Failure{OrsError::kNotInZone};
  knot_dname_to_lower(wire.data());
  int labels = knot_dname_in_bailiwick(wire.data(), apex_wire.data());
  if (labels < 0) return Failure{OrsError::kNotInZone};
  std::array<char, kMaxOidLength> oid{};
  auto got = OidFromWireLabels(wire.data(), labels, oid);
  if (!got.ok()) return Failure{got.error()};
  return std::string(oid.data(), *got);
}

std::string HandleForOid(std::string_view oid_prefix, std::string_view oid) {
  std::string handle;
  handle.reserve(oid_prefix.size() + 1 + oid.size());
  handle.append(oid_prefix);
  handle.push_back('/');
  handle.append(oid);
  return handle;
}

}  // namespace idnode::dns
