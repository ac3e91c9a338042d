// dns/: answers one DNS query about the ORS zone, bytes in, bytes out. Parsing and rendering are
// libknot's (knot_pkt_parse, knot_pkt_put: the code Knot DNS itself uses and fuzzes); this class
// decides the answer. It knows nothing of sockets or Asio, so the fuzz target links it alone.
//
// What it answers (README.md "DNS for OIDs"):
//  - names under the apex that map to an OID (ors.h): NAPTR (one per URL value) and TXT (one per
//    other public text value) from the OID's record; NODATA (NOERROR + SOA) for other types or a
//    record without such values; NXDOMAIN + SOA when there is no record or the name is no OID;
//  - the apex: SOA and NS; NODATA otherwise;
//  - names at or below an OID arc delegated to other DNS servers (ResponderOptions::delegations):
//    a referral, NOERROR without AA, the arc's NS records in the authority section and their
//    glue in the additional section (RFC 1034 §4.3.2); DS at the cut is NODATA (answers are
//    unsigned);
//  - REFUSED: names outside the apex, classes other than IN, zone transfers, OIDs whose prefix is
//    not answered here; NOTIMP: opcodes other than QUERY; FORMERR: what libknot cannot parse,
//    QDCOUNT other than 1, meta QTYPEs; BADVERS: EDNS versions above 0. Responses (QR set) and
//    anything shorter than a header are dropped.
//  - UDP answers fit the client's EDNS payload size (512 without EDNS, capped at
//    max_udp_payload); an answer that does not fit is sent without records and with TC set.
//
// One Responder is shared by all threads (it is immutable after construction). Each thread passes
// its own ResponderScratch (a fixed arena for libknot and fixed buffers), so answering allocates
// nothing from the heap and no input can make it use more than the scratch holds.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace idnode::dns {

// What a lookup of one handle gives.
enum class LookupStatus : uint8_t {
  kFound,         // `values` holds count(4) + the record's values in Handle wire form
  kNotFound,      // no such handle
  kNotHere,       // the handle's prefix is not answered by this node
  kNeedsStorage,  // a cache miss: ask again from a thread that may block
  kError,
};

// The registry as the responder sees it. Implemented over the resolver by the server, and by
// fakes in tests and the fuzz target. Called on the answering thread; what it returns in
// `values` must stay valid until the next call on that thread.
class OidSource {
 public:
  virtual ~OidSource() = default;
  virtual LookupStatus Find(std::string_view handle, std::span<const uint8_t>* values) = 0;
  // Whether some handle begins with `handle_prefix` ("OID/1.2." when OID 1.2 has none of its
  // own): kFound makes the name an empty non-terminal (NODATA, not NXDOMAIN, which resolvers
  // doing QNAME minimisation would take as "nothing below", RFC 8020). kNeedsStorage as in Find.
  virtual LookupStatus FindDescendant(std::string_view handle_prefix) {
    (void)handle_prefix;
    return LookupStatus::kNotFound;
  }
};

// An OID arc served by other DNS servers (X.672 delegation): queries at or below its name get a
// referral to them instead of an answer or REFUSED.
struct OidDelegation {
  std::string oid;                       // canonical, e.g. "1.2.156.3001"
  std::vector<std::string> nameservers;  // their names ("ns1.oid.example.cn.")
  // Addresses of nameservers, sent as glue (A/AAAA in the additional section): required for a
  // name inside the delegated zone, optional otherwise.
  std::vector<std::pair<std::string, std::string>> addresses;  // (name, IPv4 or IPv6)
};

struct ResponderOptions {
  std::string apex = "oid-res.org.";
  std::string oid_prefix = "OID";
  // The NAPTR service field of URL values (X.672: COID, CINF, RINF, MINF or an application's).
  std::string naptr_service = "RINF";
  // The NS record of the apex and the SOA MNAME.
  std::string nameserver = "localhost.";
  uint16_t max_udp_payload = 1232;
  uint32_t default_ttl = 3600;      // for values whose TTL is absolute
  uint32_t negative_ttl = 300;      // SOA MINIMUM: how long NXDOMAIN/NODATA may be cached
  bool empty_non_terminals = true;  // ask OidSource::FindDescendant before saying NXDOMAIN
  uint32_t soa_serial = 1;
  std::vector<OidDelegation> delegations;
};

enum class Transport : uint8_t { kUdp, kTcp };

struct Response {
  enum class Disposition : uint8_t { kAnswered, kDrop, kNeedsStorage };
  Disposition disposition = Disposition::kDrop;
  size_t size = 0;     // bytes of the answer in `out`
  uint8_t opcode = 0;  // of the query
  uint16_t rcode = 0;  // of the answer (extended: 16 is BADVERS)
  bool truncated = false;
};

// Per-thread working memory of Respond(): an arena for libknot's packets and the answer's rdata.
class ResponderScratch {
 public:
  ResponderScratch();
  ~ResponderScratch();
  ResponderScratch(const ResponderScratch&) = delete;
  ResponderScratch& operator=(const ResponderScratch&) = delete;
  struct Impl;

 private:
  friend class Responder;
  std::unique_ptr<Impl> impl_;
};

class Responder {
 public:
  // Throws std::invalid_argument if the apex or nameserver is not a domain name (config checks
  // them first, so this is a programming error).
  explicit Responder(ResponderOptions options);
  ~Responder();
  Responder(const Responder&) = delete;
  Responder& operator=(const Responder&) = delete;

  // Answers `query` into `out` (at least 512 bytes; 65535 for TCP to allow the largest answer).
  // kNeedsStorage: nothing was written; call again with a source that may read storage.
  Response Respond(std::span<const uint8_t> query, Transport transport, OidSource& source,
                   std::span<uint8_t> out, ResponderScratch& scratch) const;

  const ResponderOptions& options() const { return options_; }

 private:
  struct Zone;
  // The deepest delegated arc at or above `qname` (lower-case wire form), or null.
  const struct Cut* CutAbove(const uint8_t* qname) const;
  ResponderOptions options_;
  std::unique_ptr<Zone> zone_;  // precomputed wire forms: apex, SOA and NS rdata
};

}  // namespace idnode::dns
