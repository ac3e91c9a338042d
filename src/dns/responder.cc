#include "idnode/dns/responder.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "idnode/dns/ors.h"
#include "idnode/protocol/utf8.h"
#include "idnode/protocol/wire.h"

extern "C" {
#include <libknot/libknot.h>
}

namespace idnode::dns {

namespace {

constexpr uint16_t kMinUdpPayload = 512;
// libknot's packets, parsed RRs and EDNS options come from this arena, reset per query. A query
// too complex to parse within it (thousands of RRs) gets FORMERR, as any unparsable one does.
constexpr size_t kArenaBytes = size_t{1} << 20;
// The rdata of one answer RRset: filling stops once it exceeds the packet (which then truncates),
// so it never holds more than one packet plus one largest rdata.
constexpr size_t kRdataBytes = 2 * (size_t{65535} + 2) + 64;
constexpr size_t kMaxHandleBytes = 512;  // config caps oid_prefix well below this

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'a' && x <= 'z') x = static_cast<char>(x - 32);
    if (y >= 'a' && y <= 'z') y = static_cast<char>(y - 32);
    if (x != y) return false;
  }
  return true;
}

bool IStartsWith(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() && IEquals(text.substr(0, prefix.size()), prefix);
}

// "URL" and its sub-types ("URL.x"), as Handle type matching treats them.
bool IsUrlType(std::string_view type) {
  return IEquals(type, "URL") || IStartsWith(type, "URL.");
}

void PutU16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}

void PutU32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}

// One Handle value, as much of it as an answer needs (views into the lookup's buffer).
struct ValueView {
  int32_t index = 0;
  uint8_t ttl_type = 0;
  int32_t ttl = 0;
  uint8_t permissions = 0;
  std::string_view type;
  std::string_view data;
};

bool ReadValue(protocol::WireReader& r, ValueView* v) {
  v->index = r.I32();
  (void)r.U32();  // timestamp
  v->ttl_type = r.U8();
  v->ttl = r.I32();
  v->permissions = r.U8();
  auto type = r.LengthPrefixed();
  auto data = r.LengthPrefixed();
  uint32_t refs = r.U32();
  // Each reference takes at least 8 bytes, so this loop ends when the bytes do.
  for (uint32_t i = 0; i < refs && r.ok(); ++i) {
    (void)r.LengthPrefixed();
    (void)r.U32();
  }
  if (!r.ok()) return false;
  v->type = {reinterpret_cast<const char*>(type.data()), type.size()};
  v->data = {reinterpret_cast<const char*>(data.data()), data.size()};
  return true;
}

}  // namespace

// A bump allocator handed to libknot as its memory context: every allocation of one query comes
// from here, freeing is a no-op, and Reset() reclaims everything at once.
struct ResponderScratch::Impl {
  Impl()
      : arena(new std::max_align_t[kArenaBytes / sizeof(std::max_align_t)]),
        rdata(new uint16_t[kRdataBytes / 2]) {
    mm.ctx = this;
    mm.alloc = &Impl::Alloc;
    mm.free = &Impl::Free;
    handle.reserve(kMaxHandleBytes);
  }
  static void* Alloc(void* ctx, size_t len) {
    auto* self = static_cast<Impl*>(ctx);
    constexpr size_t kAlign = alignof(std::max_align_t);
    size_t at = (self->used + kAlign - 1) & ~(kAlign - 1);
    if (at > kArenaBytes || len > kArenaBytes - at) return nullptr;
    self->used = at + len;
    return reinterpret_cast<uint8_t*>(self->arena.get()) + at;
  }
  static void Free(void*) {}
  void Reset() { used = 0; }

  std::unique_ptr<std::max_align_t[]> arena;
  size_t used = 0;
  knot_mm_t mm{};
  // A copy of the query: knot_pkt_parse may rewrite its wire (it strips a TSIG record).
  std::array<uint8_t, 65535> query{};
  std::unique_ptr<uint16_t[]> rdata;  // knot_rdata_t entries, 2-byte aligned
  std::string handle;
};

ResponderScratch::ResponderScratch() : impl_(std::make_unique<Impl>()) {}
ResponderScratch::~ResponderScratch() = default;

// A delegated arc, ready to be sent: its name, NS rrset and glue (built once; only read after).
struct Cut {
  std::vector<uint8_t> owner;  // lower-case wire form, under the apex
  knot_rrset_t* ns = nullptr;
  std::vector<knot_rrset_t*> glue;
};

struct Responder::Zone {
  std::array<uint8_t, KNOT_DNAME_MAXLEN> apex{};  // lower-case wire form
  std::vector<uint8_t> soa_rdata;
  std::vector<uint8_t> ns_rdata;
  std::vector<uint8_t> naptr_service;  // as a character-string
  std::vector<Cut> cuts;
  ~Zone() {
    for (auto& cut : cuts) {
      knot_rrset_free(cut.ns, nullptr);
      for (auto* g : cut.glue) knot_rrset_free(g, nullptr);
    }
  }
};

namespace {

std::vector<uint8_t> NameWire(const std::string& text, const char* what) {
  std::string absolute = text;
  if (absolute.empty() || absolute.back() != '.') absolute.push_back('.');
  std::array<uint8_t, KNOT_DNAME_MAXLEN> wire{};
  if (knot_dname_from_str(wire.data(), absolute.c_str(), wire.size()) == nullptr)
    throw std::invalid_argument(std::string("dns: ") + what + " \"" + text +
                                "\" is not a domain name");
  knot_dname_to_lower(wire.data());
  return std::vector<uint8_t>(wire.begin(), wire.begin() + knot_dname_size(wire.data()));
}

}  // namespace

Responder::Responder(ResponderOptions options)
    : options_(std::move(options)), zone_(std::make_unique<Zone>()) {
  auto apex = NameWire(options_.apex, "apex");
  std::copy(apex.begin(), apex.end(), zone_->apex.begin());
  auto mname = NameWire(options_.nameserver, "nameserver");
  std::string apex_text = options_.apex;
  if (apex_text.empty() || apex_text.back() != '.') apex_text.push_back('.');
  auto rname = NameWire(apex_text == "." ? "hostmaster." : "hostmaster." + apex_text, "rname");
  auto& soa = zone_->soa_rdata;
  soa.insert(soa.end(), mname.begin(), mname.end());
  soa.insert(soa.end(), rname.begin(), rname.end());
  const uint32_t timers[] = {options_.soa_serial, 3600, 600, 604800, options_.negative_ttl};
  for (uint32_t t : timers) {
    uint8_t b[4];
    PutU32(b, t);
    soa.insert(soa.end(), b, b + 4);
  }
  zone_->ns_rdata = mname;
  if (options_.naptr_service.size() > 255)
    throw std::invalid_argument("dns: naptr_service is longer than 255 bytes");
  zone_->naptr_service.push_back(static_cast<uint8_t>(options_.naptr_service.size()));
  zone_->naptr_service.insert(zone_->naptr_service.end(), options_.naptr_service.begin(),
                              options_.naptr_service.end());
  if (options_.oid_prefix.size() + 1 + kMaxOidLength > kMaxHandleBytes)
    throw std::invalid_argument("dns: oid_prefix is too long");
  for (const auto& delegation : options_.delegations) {
    auto name = OidToDnsName(delegation.oid, apex_text);
    if (!name.ok() || delegation.nameservers.empty())
      throw std::invalid_argument("dns: delegation of \"" + delegation.oid +
                                  "\" needs a canonical "
                                  "OID and at least one name server");
    Cut cut;
    cut.owner = NameWire(*name, "delegation");
    cut.ns = knot_rrset_new(cut.owner.data(), KNOT_RRTYPE_NS, KNOT_CLASS_IN, options_.default_ttl,
                            nullptr);
    for (const auto& ns : delegation.nameservers) {
      auto ns_wire = NameWire(ns, "delegation name server");
      knot_rrset_add_rdata(cut.ns, ns_wire.data(), static_cast<uint16_t>(ns_wire.size()), nullptr);
    }
    for (const auto& [ns, address] : delegation.addresses) {
      auto ns_wire = NameWire(ns, "glue name");
      uint8_t bytes[16];
      uint16_t type = 0, length = 0;
      if (inet_pton(AF_INET, address.c_str(), bytes) == 1) {
        type = KNOT_RRTYPE_A;
        length = 4;
      } else if (inet_pton(AF_INET6, address.c_str(), bytes) == 1) {
        type = KNOT_RRTYPE_AAAA;
        length = 16;
      } else {
        throw std::invalid_argument("dns: glue address \"" + address + "\" is not an IP address");
      }
      knot_rrset_t* glue =
          knot_rrset_new(ns_wire.data(), type, KNOT_CLASS_IN, options_.default_ttl, nullptr);
      knot_rrset_add_rdata(glue, bytes, length, nullptr);
      cut.glue.push_back(glue);
    }
    zone_->cuts.push_back(std::move(cut));
  }
}

Responder::~Responder() = default;

const Cut* Responder::CutAbove(const uint8_t* qname) const {
  const Cut* best = nullptr;
  for (const auto& cut : zone_->cuts) {
    if (knot_dname_in_bailiwick(qname, cut.owner.data()) >= 0 &&
        (best == nullptr || cut.owner.size() > best->owner.size()))
      best = &cut;  // the deepest cut above the name
  }
  return best;
}

namespace {

// The answer decided for a query, before anything is written.
struct Decision {
  uint16_t rcode = KNOT_RCODE_NOERROR;
  bool authoritative = false;
  bool soa_in_authority = false;  // NXDOMAIN, NODATA
  knot_rrset_t answer{};          // empty: no answer section
  const Cut* referral = nullptr;  // a delegated arc: its NS in authority, glue in additional
};

// Builds an rdataset in the scratch buffer, entry after entry.
class RdataBuilder {
 public:
  explicit RdataBuilder(uint16_t* buffer) : base_(reinterpret_cast<uint8_t*>(buffer)) {}
  // Room for an rdata of `len` bytes, or null when the buffer cannot take it.
  uint8_t* Begin(size_t len) {
    if (len > KNOT_RDATA_MAXLEN) return nullptr;
    size_t need = knot_rdata_size(static_cast<uint16_t>(len));
    if (used_ + need > kRdataBytes) return nullptr;
    auto* rd = reinterpret_cast<knot_rdata_t*>(base_ + used_);
    rd->len = static_cast<uint16_t>(len);
    if (len & 1) rd->data[len] = 0;
    pending_ = need;
    return rd->data;
  }
  void Commit() {
    used_ += pending_;
    wire_bytes_ += pending_ + 10;  // + the RR's fixed fields (owner pointer, type, class, TTL, len)
    ++count_;
  }
  size_t wire_bytes() const { return wire_bytes_; }
  uint16_t count() const { return count_; }
  void Fill(knot_rrset_t* rrset) const {
    rrset->rrs.count = count_;
    rrset->rrs.size = static_cast<uint32_t>(used_);
    rrset->rrs.rdata = count_ == 0 ? nullptr : reinterpret_cast<knot_rdata_t*>(base_);
  }

 private:
  uint8_t* base_;
  size_t used_ = 0;
  size_t pending_ = 0;
  size_t wire_bytes_ = 0;
  uint16_t count_ = 0;
};

uint32_t TtlOf(const ValueView& v, uint32_t default_ttl) {
  if (v.ttl_type != 0) return default_ttl;  // absolute: an expiry time, not a duration
  if (v.ttl < 0) return 0;
  return static_cast<uint32_t>(v.ttl);  // at most 2^31-1 (RFC 2181 §8)
}

// "!^.*$!<url>!" with '\' and '!' escaped (RFC 3402 §3.2); 0 if it is longer than 255 bytes.
size_t WriteRegexp(std::string_view url, uint8_t* out) {
  size_t n = 0;
  auto put = [&](char c) {
    if (n < 255) out[n] = static_cast<uint8_t>(c);
    ++n;
  };
  for (char c : std::string_view("!^.*$!")) put(c);
  for (char c : url) {
    if (c == '\\' || c == '!') put('\\');
    put(c);
  }
  put('!');
  return n > 255 ? 0 : n;
}

}  // namespace

Response Responder::Respond(std::span<const uint8_t> query, Transport transport, OidSource& source,
                            std::span<uint8_t> out, ResponderScratch& scratch) const {
  Response response;
  if (query.size() < KNOT_WIRE_HEADER_SIZE || query.size() > 65535 ||
      out.size() < KNOT_WIRE_HEADER_SIZE)
    return response;                                         // kDrop: nothing to echo an answer to
  if (knot_wire_get_qr(query.data()) != 0) return response;  // never answer a response
  response.opcode = knot_wire_get_opcode(query.data());
  ResponderScratch::Impl& s = *scratch.impl_;
  s.Reset();

  // A header-only answer: what is left to say when the query cannot be parsed.
  auto header_only = [&](uint16_t rcode) {
    std::memcpy(out.data(), query.data(), KNOT_WIRE_HEADER_SIZE);
    uint8_t* w = out.data();
    w[2] &= 0x79;  // keep opcode and RD; clear QR, AA, TC
    w[3] = 0;      // RA, Z, AD, CD and RCODE cleared
    knot_wire_set_qr(w);
    knot_wire_set_rcode(w, static_cast<short>(rcode));
    std::memset(w + 4, 0, 8);  // no records of any section
    response.disposition = Response::Disposition::kAnswered;
    response.size = KNOT_WIRE_HEADER_SIZE;
    response.rcode = rcode;
    return response;
  };

  std::memcpy(s.query.data(), query.data(), query.size());
  knot_pkt_t* q = knot_pkt_new(s.query.data(), static_cast<uint16_t>(query.size()), &s.mm);
  if (q == nullptr) return header_only(KNOT_RCODE_SERVFAIL);
  if (knot_pkt_parse(q, 0) != KNOT_EOK) return header_only(KNOT_RCODE_FORMERR);
  // RFC 6891 §6.1.1: the OPT owner is the root (libknot leaves this check to its caller).
  if (q->opt_rr != nullptr && q->opt_rr->owner != nullptr && q->opt_rr->owner[0] != 0)
    return header_only(KNOT_RCODE_FORMERR);

  // The size the answer may take.
  size_t limit = std::min<size_t>(out.size(), 65535);
  if (transport == Transport::kUdp) {
    uint16_t payload = kMinUdpPayload;
    if (q->opt_rr != nullptr) {
      payload = std::clamp<uint16_t>(knot_edns_get_payload(q->opt_rr), kMinUdpPayload,
                                     std::max(kMinUdpPayload, options_.max_udp_payload));
    }
    limit = std::min<size_t>(limit, payload);
  }

  // Decide.
  Decision d;
  const uint16_t qdcount = knot_wire_get_qdcount(q->wire);
  const uint16_t qtype = knot_pkt_qtype(q);
  const uint16_t qclass = knot_pkt_qclass(q);
  const knot_dname_t* qname = knot_pkt_qname(q);  // lower-cased by libknot
  uint8_t ext_rcode = 0;
  std::span<const uint8_t> values;
  if (response.opcode != KNOT_OPCODE_QUERY) {
    d.rcode = KNOT_RCODE_NOTIMPL;
  } else if (qdcount != 1 || qname == nullptr) {
    d.rcode = KNOT_RCODE_FORMERR;
  } else if (q->opt_rr != nullptr && knot_edns_get_version(q->opt_rr) != 0) {
    d.rcode = KNOT_RCODE_BADVERS;  // RFC 6891 §6.1.3
  } else if (qtype == 0 || qtype == KNOT_RRTYPE_OPT || qtype == KNOT_RRTYPE_TSIG ||
             qtype == KNOT_RRTYPE_TKEY) {
    d.rcode = KNOT_RCODE_FORMERR;  // meta types are no question
  } else if (qclass != KNOT_CLASS_IN) {
    d.rcode = KNOT_RCODE_REFUSED;
  } else {
    int labels = knot_dname_in_bailiwick(qname, zone_->apex.data());
    if (labels < 0) {
      d.rcode = KNOT_RCODE_REFUSED;  // not our zone
    } else if (qtype == KNOT_RRTYPE_AXFR || qtype == KNOT_RRTYPE_IXFR) {
      d.rcode = KNOT_RCODE_REFUSED;  // no zone transfers: the zone is the registry
    } else if (qtype == 253 || qtype == 254) {
      d.rcode = KNOT_RCODE_NOTIMPL;  // MAILB, MAILA
    } else if (labels == 0) {
      d.authoritative = true;
      if (qtype == KNOT_RRTYPE_SOA || qtype == KNOT_RRTYPE_NS) {
        knot_rrset_init(&d.answer, nullptr, qtype, KNOT_CLASS_IN, options_.default_ttl);
      } else {
        d.soa_in_authority = true;  // NODATA
      }
    } else if (const Cut* cut = CutAbove(qname); cut != nullptr) {
      if (qtype == KNOT_RRTYPE_DS && knot_dname_is_equal(qname, cut->owner.data())) {
        d.authoritative = true;  // DS belongs to the parent side of a cut: none (unsigned)
        d.soa_in_authority = true;
      } else {
        d.referral = cut;  // NOERROR, not authoritative: the arc's servers answer
      }
    } else {
      std::array<char, kMaxOidLength> oid{};
      auto got = OidFromWireLabels(qname, labels, oid);
      if (!got.ok()) {
        d.authoritative = true;
        d.rcode = KNOT_RCODE_NXDOMAIN;
        d.soa_in_authority = true;
      } else {
        s.handle.assign(options_.oid_prefix);
        s.handle.push_back('/');
        s.handle.append(oid.data(), *got);
        switch (source.Find(s.handle, &values)) {
          case LookupStatus::kNeedsStorage:
            response.disposition = Response::Disposition::kNeedsStorage;
            return response;
          case LookupStatus::kNotFound:
            d.authoritative = true;
            d.soa_in_authority = true;
            s.handle.push_back('.');
            switch (options_.empty_non_terminals ? source.FindDescendant(s.handle)
                                                 : LookupStatus::kNotFound) {
              case LookupStatus::kNeedsStorage:
                response.disposition = Response::Disposition::kNeedsStorage;
                return response;
              case LookupStatus::kFound:
                break;  // an empty non-terminal: NOERROR without records (NODATA)
              case LookupStatus::kError:
                d.authoritative = false;
                d.soa_in_authority = false;
                d.rcode = KNOT_RCODE_SERVFAIL;
                break;
              default:
                d.rcode = KNOT_RCODE_NXDOMAIN;
                break;
            }
            break;
          case LookupStatus::kNotHere:
            d.rcode = KNOT_RCODE_REFUSED;
            break;
          case LookupStatus::kError:
            d.rcode = KNOT_RCODE_SERVFAIL;
            break;
          case LookupStatus::kFound:
            d.authoritative = true;
            if (qtype == KNOT_RRTYPE_NAPTR || qtype == KNOT_RRTYPE_TXT) {
              knot_rrset_init(&d.answer, nullptr, qtype, KNOT_CLASS_IN, 0);
            } else {
              d.soa_in_authority = true;  // NODATA (ANY included: RFC 8482 lets us say little)
            }
            break;
        }
      }
    }
  }
  if (d.rcode == KNOT_RCODE_BADVERS) {
    ext_rcode = KNOT_EDNS_RCODE_HI(KNOT_RCODE_BADVERS);
  }

  // Fill the answer's rdata.
  RdataBuilder rdata(s.rdata.get());
  if (d.answer.type == KNOT_RRTYPE_SOA) {
    uint8_t* p = rdata.Begin(zone_->soa_rdata.size());
    std::memcpy(p, zone_->soa_rdata.data(), zone_->soa_rdata.size());
    rdata.Commit();
  } else if (d.answer.type == KNOT_RRTYPE_NS) {
    uint8_t* p = rdata.Begin(zone_->ns_rdata.size());
    std::memcpy(p, zone_->ns_rdata.data(), zone_->ns_rdata.size());
    rdata.Commit();
  } else if (d.answer.type == KNOT_RRTYPE_NAPTR || d.answer.type == KNOT_RRTYPE_TXT) {
    protocol::WireReader r(values);
    uint32_t count = r.U32();
    uint32_t ttl = UINT32_MAX;
    ValueView v;
    // Stops at the first value that does not decode, and once the records overflow the packet
    // (the answer is truncated then anyway).
    for (uint32_t i = 0; i < count && rdata.wire_bytes() <= limit && ReadValue(r, &v); ++i) {
      if ((v.permissions & 0x02) == 0) continue;  // PUBLIC_READ only: no credentials by DNS
      if (d.answer.type == KNOT_RRTYPE_NAPTR) {
        if (!IsUrlType(v.type) || v.data.empty()) continue;
        std::array<uint8_t, 256> regexp{};
        size_t regexp_len = WriteRegexp(v.data, regexp.data() + 1);
        if (regexp_len == 0) continue;  // a URL of more than 248 bytes cannot be a NAPTR regexp
        regexp[0] = static_cast<uint8_t>(regexp_len);
        const auto& service = zone_->naptr_service;
        size_t len = 2 + 2 + 2 + service.size() + 1 + regexp_len + 1;
        uint8_t* p = rdata.Begin(len);
        if (p == nullptr) break;
        PutU16(p, static_cast<uint16_t>(std::clamp(v.index, 0, 65535)));  // order: the index
        PutU16(p + 2, 0);                                                 // preference
        p[4] = 1;
        p[5] = 'U';  // flags: the regexp gives the final URL
        std::memcpy(p + 6, service.data(), service.size());
        std::memcpy(p + 6 + service.size(), regexp.data(), regexp_len + 1);
        p[len - 1] = 0;  // replacement: the root name (the regexp is used)
        rdata.Commit();
      } else {
        if (IsUrlType(v.type) || IStartsWith(v.type, "HS_") || v.type.empty()) continue;
        if (!protocol::IsValidUtf8(v.data) || !protocol::IsValidUtf8(v.type)) continue;
        // RFC 1464 "type=value", split into 255-byte character-strings.
        size_t text = v.type.size() + 1 + v.data.size();
        size_t len = text + (text + 254) / 255;
        uint8_t* p = rdata.Begin(len);
        if (p == nullptr) break;
        size_t at = 0, done = 0;
        auto byte_at = [&](size_t k) -> uint8_t {
          if (k < v.type.size()) return static_cast<uint8_t>(v.type[k]);
          if (k == v.type.size()) return '=';
          return static_cast<uint8_t>(v.data[k - v.type.size() - 1]);
        };
        while (done < text) {
          size_t chunk = std::min<size_t>(255, text - done);
          p[at++] = static_cast<uint8_t>(chunk);
          for (size_t k = 0; k < chunk; ++k) p[at++] = byte_at(done + k);
          done += chunk;
        }
        rdata.Commit();
      }
      ttl = std::min(ttl, TtlOf(v, options_.default_ttl));
    }
    if (rdata.count() == 0) {
      d.answer.type = 0;
      d.soa_in_authority = true;  // NODATA: the record has no such values
    } else {
      d.answer.ttl = std::min<uint32_t>(ttl, 0x7fffffff);
    }
  }

  // Write: header and question, answer, authority, OPT. A section that does not fit leaves the
  // answer without records and with TC set (the client retries over TCP).
  knot_rrset_t opt{};
  bool has_opt = q->opt_rr != nullptr;
  if (has_opt) {
    if (knot_edns_init(&opt, std::max(kMinUdpPayload, options_.max_udp_payload), ext_rcode, 0,
                       &s.mm) != KNOT_EOK)
      return header_only(KNOT_RCODE_SERVFAIL);
    if (knot_edns_do(q->opt_rr)) knot_edns_set_do(&opt);  // RFC 3225 §3: DO is copied
  }
  knot_rrset_t soa{};
  uint32_t soa_ttl = std::min(options_.default_ttl, options_.negative_ttl);  // RFC 2308 §5
  knot_rrset_init(&soa, const_cast<knot_dname_t*>(zone_->apex.data()), KNOT_RRTYPE_SOA,
                  KNOT_CLASS_IN, soa_ttl);
  soa.rrs.count = 1;
  // The SOA rdata sits in its own arena block (the answer's buffer may be in use).
  auto* soa_rd = static_cast<knot_rdata_t*>(
      s.mm.alloc(s.mm.ctx, knot_rdata_size(static_cast<uint16_t>(zone_->soa_rdata.size()))));
  if (soa_rd == nullptr) return header_only(KNOT_RCODE_SERVFAIL);
  knot_rdata_init(soa_rd, static_cast<uint16_t>(zone_->soa_rdata.size()), zone_->soa_rdata.data());
  soa.rrs.size = static_cast<uint32_t>(knot_rdata_size(soa_rd->len));
  soa.rrs.rdata = soa_rd;

  knot_pkt_t* resp = nullptr;
  // KNOT_ESPACE when the records do not fit.
  auto build = [&](bool with_records) -> int {
    resp = knot_pkt_new(out.data(), static_cast<uint16_t>(limit), &s.mm);
    if (resp == nullptr) return KNOT_ENOMEM;
    int ret = knot_pkt_init_response(resp, q);
    if (ret != KNOT_EOK) return ret;
    knot_wire_clear_aa(resp->wire);
    knot_wire_clear_z(resp->wire);
    if (d.authoritative) knot_wire_set_aa(resp->wire);
    knot_wire_set_rcode(resp->wire, static_cast<short>(KNOT_EDNS_RCODE_LO(d.rcode)));
    uint16_t opt_size = has_opt ? static_cast<uint16_t>(knot_edns_wire_size(&opt)) : 0;
    if (has_opt && knot_pkt_reserve(resp, opt_size) != KNOT_EOK) return KNOT_ESPACE;
    if (with_records) {
      knot_pkt_begin(resp, KNOT_ANSWER);
      if (d.answer.type != 0) {
        d.answer.owner = const_cast<knot_dname_t*>(knot_pkt_wire_qname(resp));
        rdata.Fill(&d.answer);
        ret = knot_pkt_put(resp, KNOT_COMPR_HINT_QNAME, &d.answer, KNOT_PF_NOTRUNC);
        if (ret != KNOT_EOK) return ret;
      }
      knot_pkt_begin(resp, KNOT_AUTHORITY);
      if (d.soa_in_authority) {
        ret = knot_pkt_put(resp, KNOT_COMPR_HINT_NONE, &soa, KNOT_PF_NOTRUNC);
        if (ret != KNOT_EOK) return ret;
      }
      if (d.referral != nullptr) {
        ret = knot_pkt_put(resp, KNOT_COMPR_HINT_NONE, d.referral->ns, KNOT_PF_NOTRUNC);
        if (ret != KNOT_EOK) return ret;
      }
    }
    knot_pkt_begin(resp, KNOT_ADDITIONAL);
    if (with_records && d.referral != nullptr) {
      for (const knot_rrset_t* glue : d.referral->glue) {
        ret = knot_pkt_put(resp, KNOT_COMPR_HINT_NONE, glue, KNOT_PF_NOTRUNC);
        if (ret != KNOT_EOK) return ret;
      }
    }
    if (has_opt) {
      if (knot_pkt_reclaim(resp, opt_size) != KNOT_EOK) return KNOT_ERANGE;
      ret = knot_pkt_put(resp, KNOT_COMPR_HINT_NONE, &opt, KNOT_PF_NOTRUNC);
      if (ret != KNOT_EOK) return ret;
    }
    return KNOT_EOK;
  };

  int built = build(true);
  if (built == KNOT_ESPACE) {
    built = build(false);
    if (built == KNOT_EOK) {
      knot_wire_set_tc(resp->wire);
      response.truncated = true;
    }
  }
  if (built != KNOT_EOK) return header_only(KNOT_RCODE_SERVFAIL);
  response.disposition = Response::Disposition::kAnswered;
  response.size = resp->size;
  response.rcode = d.rcode;
  return response;
}

}  // namespace idnode::dns
