// Helpers of the DNS tests: queries built and answers parsed with libknot, and an OidSource over
// an in-memory map of Handle-encoded records.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "idnode/dns/responder.h"
#include "idnode/protocol/value.h"
#include "idnode/protocol/wire.h"

extern "C" {
#include <libknot/libknot.h>
}

namespace idnode::dns::testing {

struct QuerySpec {
  std::string name = "1.3001.156.2.1.oid-res.org.";
  uint16_t qtype = KNOT_RRTYPE_NAPTR;
  uint16_t qclass = KNOT_CLASS_IN;
  uint16_t id = 0x1234;
  bool rd = true;
  uint8_t opcode = KNOT_OPCODE_QUERY;
  std::optional<uint16_t> edns_payload;  // an OPT record with this payload size
  uint8_t edns_version = 0;
  bool edns_do = false;
};

inline std::vector<uint8_t> MakeQuery(const QuerySpec& spec) {
  knot_pkt_t* pkt = knot_pkt_new(nullptr, 65535, nullptr);
  knot_wire_set_id(pkt->wire, spec.id);
  if (spec.rd) knot_wire_set_rd(pkt->wire);
  knot_wire_set_opcode(pkt->wire, spec.opcode);
  knot_dname_t* name = knot_dname_from_str_alloc(spec.name.c_str());
  knot_pkt_put_question(pkt, name, spec.qclass, spec.qtype);
  knot_dname_free(name, nullptr);
  knot_rrset_t opt;
  bool has_opt = spec.edns_payload.has_value();
  if (has_opt) {
    knot_edns_init(&opt, *spec.edns_payload, 0, spec.edns_version, nullptr);
    if (spec.edns_do) knot_edns_set_do(&opt);
    knot_pkt_begin(pkt, KNOT_ADDITIONAL);
    knot_pkt_put(pkt, KNOT_COMPR_HINT_NONE, &opt, 0);
  }
  std::vector<uint8_t> wire(pkt->wire, pkt->wire + pkt->size);
  if (has_opt) knot_rrset_clear(&opt, nullptr);
  knot_pkt_free(pkt);
  return wire;
}

// An answer parsed back with libknot (owns its copy of the wire).
class Parsed {
 public:
  explicit Parsed(std::vector<uint8_t> wire) : wire_(std::move(wire)) {
    pkt_ = knot_pkt_new(wire_.data(), static_cast<uint16_t>(wire_.size()), nullptr);
    ok_ = pkt_ != nullptr && knot_pkt_parse(pkt_, 0) == KNOT_EOK;
  }
  ~Parsed() { knot_pkt_free(pkt_); }
  Parsed(const Parsed&) = delete;
  Parsed& operator=(const Parsed&) = delete;

  bool ok() const { return ok_; }
  knot_pkt_t* pkt() const { return pkt_; }
  const uint8_t* wire() const { return wire_.data(); }
  size_t size() const { return wire_.size(); }
  uint16_t rcode() const { return knot_pkt_ext_rcode(pkt_); }
  // The RRs of a section, one per entry (libknot parses each RR as its own set).
  std::vector<const knot_rrset_t*> Section(knot_section_t id) const {
    std::vector<const knot_rrset_t*> out;
    const knot_pktsection_t* s = knot_pkt_section(pkt_, id);
    for (uint16_t i = 0; i < s->count; ++i) out.push_back(knot_pkt_rr(s, i));
    return out;
  }

 private:
  std::vector<uint8_t> wire_;
  knot_pkt_t* pkt_ = nullptr;
  bool ok_ = false;
};

inline std::string Text(const uint8_t* p, size_t n) {
  return std::string(reinterpret_cast<const char*>(p), n);
}

struct Naptr {
  uint16_t order = 0, preference = 0;
  std::string flags, service, regexp;
  bool root_replacement = false;
};

inline Naptr ReadNaptr(const knot_rdata_t* rd) {
  Naptr n;
  const uint8_t* p = rd->data;
  n.order = static_cast<uint16_t>(p[0] << 8 | p[1]);
  n.preference = static_cast<uint16_t>(p[2] << 8 | p[3]);
  size_t at = 4;
  auto string = [&]() {
    size_t len = p[at];
    std::string s = Text(p + at + 1, len);
    at += 1 + len;
    return s;
  };
  n.flags = string();
  n.service = string();
  n.regexp = string();
  n.root_replacement = at + 1 == rd->len && p[at] == 0;
  return n;
}

// The character-strings of a TXT rdata.
inline std::vector<std::string> ReadTxt(const knot_rdata_t* rd) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < rd->len) {
    size_t len = rd->data[at];
    out.push_back(Text(rd->data + at + 1, len));
    at += 1 + len;
  }
  return out;
}

inline protocol::HandleValue Value(int32_t index, std::string_view type, std::string_view data,
                                   int32_t ttl = 86400, uint8_t permissions = 0x0e) {
  protocol::HandleValue v;
  v.index = index;
  v.type = type;
  v.data = std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(data.data()), data.size());
  v.ttl = ttl;
  v.permissions = permissions;
  return v;
}

inline std::vector<uint8_t> Encode(const std::vector<protocol::HandleValue>& values) {
  size_t size = 4;
  for (const auto& v : values) size += protocol::EncodedSize(v);
  std::vector<uint8_t> out(size);
  protocol::WireWriter w(out);
  protocol::WriteHandleValues(w, values);
  return out;
}

class FakeSource : public OidSource {
 public:
  LookupStatus Find(std::string_view handle, std::span<const uint8_t>* values) override {
    ++calls;
    last_handle = std::string(handle);
    if (forced) return *forced;
    auto it = records.find(last_handle);
    if (it == records.end()) return LookupStatus::kNotFound;
    *values = it->second;
    return LookupStatus::kFound;
  }
  LookupStatus FindDescendant(std::string_view handle_prefix) override {
    ++descendant_calls;
    if (forced_descendant) return *forced_descendant;
    auto it = records.lower_bound(std::string(handle_prefix));
    return it != records.end() && it->first.starts_with(handle_prefix) ? LookupStatus::kFound
                                                                       : LookupStatus::kNotFound;
  }
  std::map<std::string, std::vector<uint8_t>> records;
  std::optional<LookupStatus> forced;
  std::optional<LookupStatus> forced_descendant;
  int descendant_calls = 0;
  std::string last_handle;
  int calls = 0;
};

}  // namespace idnode::dns::testing
