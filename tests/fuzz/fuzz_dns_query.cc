// libFuzzer target: the DNS front end (HARDENING.md rows A, B, D, F, R). The first byte picks the
// transport and what the registry says; the rest is a query as it would arrive. libknot parses
// it (Knot DNS fuzzes that parser itself: fuzz_packet); this target covers what idnode does with
// the result, and checks what every answer must be:
//  - no bigger than the transport allows (UDP: 512 without EDNS, at most max_udp_payload);
//  - a response (QR) to the same id and opcode, never to a response;
//  - parsable again by libknot (render -> parse round trip, row B), with the counts it claims;
//  - a FORMERR without a parsable query is the header alone (no amplification).
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "idnode/dns/ors.h"
#include "idnode/dns/responder.h"
#include "idnode/protocol/value.h"
#include "idnode/protocol/wire.h"

extern "C" {
#include <libknot/libknot.h>
}

using namespace idnode;

namespace {

protocol::HandleValue Value(int32_t index, std::string_view type, const std::string& data,
                            uint8_t permissions = 0x0e) {
  protocol::HandleValue v;
  v.index = index;
  v.type = type;
  v.data = std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(data.data()), data.size());
  v.permissions = permissions;
  return v;
}

std::vector<uint8_t> Encode(const std::vector<protocol::HandleValue>& values) {
  size_t size = 4;
  for (const auto& v : values) size += protocol::EncodedSize(v);
  std::vector<uint8_t> out(size);
  protocol::WireWriter w(out);
  protocol::WriteHandleValues(w, values);
  return out;
}

// Every OID has the same record: URLs (one with characters to escape, one too long for a NAPTR
// regexp), texts short and long (split into character-strings), a non-public value and an
// HS_ value; enough to overflow 512 bytes. OID 1.2.3 has none.
class Source : public dns::OidSource {
 public:
  Source() {
    static const std::string kUrl = "https://example.org/oid";
    static const std::string kEscaped = "https://example.org/a!b\\c";
    static const std::string kLongUrl = "https://example.org/" + std::string(300, 'u');
    static const std::string kDesc = "an OID";
    static const std::string kLongDesc(700, 'd');
    static const std::string kSecret = "secret";
    std::vector<protocol::HandleValue> values = {
        Value(1, "URL", kUrl),   Value(2, "URL.x", kEscaped), Value(3, "URL", kLongUrl),
        Value(4, "DESC", kDesc), Value(5, "DESC", kLongDesc), Value(6, "HS_SECKEY", kSecret, 0x0c),
        Value(7, "EMAIL", kDesc)};
    for (int i = 0; i < 12; ++i) values.push_back(Value(100 + i, "URL", kUrl));
    record_ = Encode(values);
    empty_ = Encode({});
  }
  dns::LookupStatus Find(std::string_view handle, std::span<const uint8_t>* values) override {
    if (handle == "OID/1.2.3") {
      *values = empty_;
      return dns::LookupStatus::kFound;
    }
    if (handle.size() > 4 + dns::kMaxOidLength) std::abort();  // the mapping's bound
    if (forced != dns::LookupStatus::kFound) return forced;
    *values = record_;
    return dns::LookupStatus::kFound;
  }
  dns::LookupStatus forced = dns::LookupStatus::kFound;

 private:
  std::vector<uint8_t> record_;
  std::vector<uint8_t> empty_;
};

void Check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static dns::Responder responder([] {
    dns::ResponderOptions o;
    o.max_udp_payload = 1232;
    return o;
  }());
  static dns::ResponderScratch scratch;
  static Source source;
  static std::vector<uint8_t> out(65535);
  if (size == 0) return 0;
  const dns::Transport transport = (data[0] & 1) ? dns::Transport::kTcp : dns::Transport::kUdp;
  static const dns::LookupStatus kStatuses[] = {
      dns::LookupStatus::kFound,   dns::LookupStatus::kFound, dns::LookupStatus::kNotFound,
      dns::LookupStatus::kNotHere, dns::LookupStatus::kError, dns::LookupStatus::kNeedsStorage};
  source.forced = kStatuses[(data[0] >> 1) % 6];
  std::span<const uint8_t> query(data + 1, size - 1);

  dns::Response r = responder.Respond(query, transport, source, out, scratch);
  if (r.disposition == dns::Response::Disposition::kDrop) {
    Check(query.size() < KNOT_WIRE_HEADER_SIZE || query.size() > 65535 ||
          knot_wire_get_qr(query.data()) != 0);
    return 0;
  }
  if (r.disposition == dns::Response::Disposition::kNeedsStorage) {
    Check(source.forced == dns::LookupStatus::kNeedsStorage && r.size == 0);
    return 0;
  }
  Check(r.size >= KNOT_WIRE_HEADER_SIZE);
  Check(r.size <= (transport == dns::Transport::kUdp ? 1232u : 65535u));
  const uint8_t* w = out.data();
  Check(knot_wire_get_qr(w) != 0);
  Check(knot_wire_get_id(w) == knot_wire_get_id(query.data()));
  Check(knot_wire_get_opcode(w) == knot_wire_get_opcode(query.data()));
  if (r.size == KNOT_WIRE_HEADER_SIZE) {
    Check(knot_wire_get_qdcount(w) == 0 && knot_wire_get_ancount(w) == 0);
    return 0;
  }
  // Not header-only: a query libknot parsed, so the answer must parse too.
  std::vector<uint8_t> copy(out.begin(), out.begin() + static_cast<ptrdiff_t>(r.size));
  knot_pkt_t* pkt = knot_pkt_new(copy.data(), static_cast<uint16_t>(copy.size()), nullptr);
  Check(pkt != nullptr);
  Check(knot_pkt_parse(pkt, 0) == KNOT_EOK);
  Check(knot_wire_get_qdcount(w) <= 1);
  if (transport == dns::Transport::kUdp && pkt->opt_rr == nullptr) Check(r.size <= 512);
  if (r.truncated) Check(knot_wire_get_tc(w) != 0 && knot_wire_get_ancount(w) == 0);
  knot_pkt_free(pkt);
  return 0;
}
