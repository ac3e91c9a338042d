#include "idnode/dns/responder.h"

#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <string>
#include <vector>

#include "dns_test_util.h"

namespace idnode::dns {
namespace {

using namespace testing;  // NOLINT: the helpers of dns_test_util.h

constexpr const char* kHandle = "OID/1.2.156.3001.1";

class ResponderTest : public ::testing::Test {
 protected:
  ResponderTest() : responder_(Options()) {
    source_.records[kHandle] =
        Encode({Value(1, "URL", "https://example.org/oid/1", 600), Value(2, "DESC", "demo OID"),
                Value(3, "EMAIL", "oid@example.org", 1200),
                Value(4, "URL", "https://mirror.example.org/a!b\\c", 900),
                Value(5, "HS_SECKEY", "secret", 86400, 0x0c),  // not PUBLIC_READ
                Value(6, "HS_ADMIN", "admin bytes"), Value(7, "DESC", "private", 86400, 0x0c)});
    source_.records["OID/1.2.156.3001.2"] = Encode({Value(2, "DESC", "text only")});
  }

  static ResponderOptions Options() {
    ResponderOptions o;
    o.soa_serial = 2024;
    o.default_ttl = 3600;
    o.negative_ttl = 300;
    return o;
  }

  Response Ask(const std::vector<uint8_t>& query, Transport transport = Transport::kUdp) {
    out_.assign(65535, 0xAA);
    Response r = responder_.Respond(query, transport, source_, out_, scratch_);
    answer_.assign(out_.begin(), out_.begin() + static_cast<ptrdiff_t>(r.size));
    return r;
  }
  Response Ask(const QuerySpec& spec, Transport transport = Transport::kUdp) {
    return Ask(MakeQuery(spec), transport);
  }

  void ExpectSoaAuthority(const Parsed& p) {
    auto auth = p.Section(KNOT_AUTHORITY);
    ASSERT_EQ(auth.size(), 1u);
    EXPECT_EQ(auth[0]->type, KNOT_RRTYPE_SOA);
    EXPECT_EQ(auth[0]->ttl, 300u);  // min(SOA TTL, MINIMUM), RFC 2308
    char owner[KNOT_DNAME_TXT_MAXLEN + 1];
    knot_dname_to_str(owner, auth[0]->owner, sizeof(owner));
    EXPECT_STREQ(owner, "oid-res.org.");
    const knot_rdata_t* rd = auth[0]->rrs.rdata;
    EXPECT_EQ(knot_soa_serial(rd), 2024u);
    EXPECT_EQ(knot_soa_minimum(rd), 300u);
  }

  Responder responder_;
  FakeSource source_;
  ResponderScratch scratch_;
  std::vector<uint8_t> out_;
  std::vector<uint8_t> answer_;
};

TEST_F(ResponderTest, NaptrOnePerUrlValue) {
  Response r = Ask(QuerySpec{});
  ASSERT_EQ(r.disposition, Response::Disposition::kAnswered);
  EXPECT_EQ(r.rcode, KNOT_RCODE_NOERROR);
  EXPECT_EQ(source_.last_handle, kHandle);
  Parsed p(answer_);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(knot_wire_get_id(p.wire()), 0x1234);
  EXPECT_TRUE(knot_wire_get_qr(p.wire()));
  EXPECT_TRUE(knot_wire_get_aa(p.wire()));
  EXPECT_TRUE(knot_wire_get_rd(p.wire()));  // echoed
  EXPECT_FALSE(knot_wire_get_ra(p.wire()));
  EXPECT_FALSE(knot_wire_get_tc(p.wire()));
  EXPECT_EQ(knot_wire_get_qdcount(p.wire()), 1);
  EXPECT_EQ(knot_pkt_qtype(p.pkt()), KNOT_RRTYPE_NAPTR);
  auto answers = p.Section(KNOT_ANSWER);
  ASSERT_EQ(answers.size(), 2u);
  std::vector<Naptr> records;
  for (const auto* rr : answers) {
    EXPECT_EQ(rr->type, KNOT_RRTYPE_NAPTR);
    EXPECT_EQ(rr->rclass, KNOT_CLASS_IN);
    EXPECT_EQ(rr->ttl, 600u);  // the smallest TTL of the values in the set
    EXPECT_TRUE(knot_dname_is_equal(rr->owner, knot_pkt_qname(p.pkt())));
    records.push_back(ReadNaptr(rr->rrs.rdata));
  }
  EXPECT_EQ(records[0].order, 1);
  EXPECT_EQ(records[0].preference, 0);
  EXPECT_EQ(records[0].flags, "U");
  EXPECT_EQ(records[0].service, "RINF");
  EXPECT_EQ(records[0].regexp, "!^.*$!https://example.org/oid/1!");
  EXPECT_TRUE(records[0].root_replacement);
  EXPECT_EQ(records[1].order, 4);
  EXPECT_EQ(records[1].regexp, "!^.*$!https://mirror.example.org/a\\!b\\\\c!");
  EXPECT_TRUE(p.Section(KNOT_AUTHORITY).empty());
  EXPECT_EQ(p.pkt()->opt_rr, nullptr);  // no EDNS asked, none given
}

TEST_F(ResponderTest, TxtOnePerPublicTextValue) {
  QuerySpec q;
  q.qtype = KNOT_RRTYPE_TXT;
  ASSERT_EQ(Ask(q).rcode, KNOT_RCODE_NOERROR);
  Parsed p(answer_);
  ASSERT_TRUE(p.ok());
  auto answers = p.Section(KNOT_ANSWER);
  ASSERT_EQ(answers.size(), 2u);  // DESC and EMAIL; not URL, HS_*, or non-public values
  std::vector<std::string> texts;
  for (const auto* rr : answers) {
    EXPECT_EQ(rr->type, KNOT_RRTYPE_TXT);
    EXPECT_EQ(rr->ttl, 1200u);  // DESC has 86400, EMAIL 1200: the set takes the smaller
    auto strings = ReadTxt(rr->rrs.rdata);
    ASSERT_EQ(strings.size(), 1u);
    texts.push_back(strings[0]);
  }
  EXPECT_EQ(texts[0], "DESC=demo OID");
  EXPECT_EQ(texts[1], "EMAIL=oid@example.org");
}

TEST_F(ResponderTest, LongTextIsSplitInto255ByteStrings) {
  std::string long_text(600, 'x');
  source_.records[kHandle] = Encode({Value(1, "DESC", long_text)});
  QuerySpec q;
  q.qtype = KNOT_RRTYPE_TXT;
  q.edns_payload = 1232;
  ASSERT_EQ(Ask(q).rcode, KNOT_RCODE_NOERROR);
  Parsed p(answer_);
  ASSERT_TRUE(p.ok());
  auto answers = p.Section(KNOT_ANSWER);
  ASSERT_EQ(answers.size(), 1u);
  auto strings = ReadTxt(answers[0]->rrs.rdata);
  ASSERT_EQ(strings.size(), 3u);
  EXPECT_EQ(strings[0].size(), 255u);
  EXPECT_EQ(strings[1].size(), 255u);
  EXPECT_EQ(strings[0] + strings[1] + strings[2], "DESC=" + long_text);
}

TEST_F(ResponderTest, AbsoluteAndNegativeTtls) {
  auto absolute = Value(1, "URL", "https://example.org/x", 2000000000);
  absolute.ttl_type = protocol::TtlType::kAbsolute;
  source_.records[kHandle] = Encode({absolute});
  ASSERT_EQ(Ask(QuerySpec{}).rcode, KNOT_RCODE_NOERROR);
  {
    Parsed p(answer_);
    ASSERT_EQ(p.Section(KNOT_ANSWER).size(), 1u);
    EXPECT_EQ(p.Section(KNOT_ANSWER)[0]->ttl, 3600u);  // default_ttl
  }
  source_.records[kHandle] = Encode({Value(1, "URL", "https://example.org/x", -5)});
  ASSERT_EQ(Ask(QuerySpec{}).rcode, KNOT_RCODE_NOERROR);
  Parsed p(answer_);
  ASSERT_EQ(p.Section(KNOT_ANSWER).size(), 1u);
  EXPECT_EQ(p.Section(KNOT_ANSWER)[0]->ttl, 0u);
}

TEST_F(ResponderTest, NxdomainWithSoaForUnknownOids) {
  QuerySpec q;
  q.name = "9.3001.156.2.1.oid-res.org.";
  Response r = Ask(q);
  EXPECT_EQ(r.rcode, KNOT_RCODE_NXDOMAIN);
  EXPECT_EQ(source_.last_handle, "OID/1.2.156.3001.9");
  Parsed p(answer_);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(knot_wire_get_rcode(p.wire()), KNOT_RCODE_NXDOMAIN);
  EXPECT_TRUE(knot_wire_get_aa(p.wire()));
  EXPECT_TRUE(p.Section(KNOT_ANSWER).empty());
  ExpectSoaAuthority(p);
}

TEST_F(ResponderTest, EmptyNonTerminalsAreNodataNotNxdomain) {
  // OID 1.2.156.3001.1 exists: the names above it exist too, without records of their own, as
  // resolvers doing QNAME minimisation walk them (RFC 8020: NXDOMAIN would cut off the subtree).
  for (std::string name : {"1.oid-res.org.", "2.1.oid-res.org.", "3001.156.2.1.oid-res.org."}) {
    QuerySpec q;
    q.name = name;
    EXPECT_EQ(Ask(q).rcode, KNOT_RCODE_NOERROR) << name;
    Parsed p(answer_);
    ASSERT_TRUE(p.ok());
    EXPECT_TRUE(knot_wire_get_aa(p.wire()));
    EXPECT_TRUE(p.Section(KNOT_ANSWER).empty()) << name;
    ExpectSoaAuthority(p);
  }
  QuerySpec sibling;
  sibling.name = "157.2.1.oid-res.org.";
  EXPECT_EQ(Ask(sibling).rcode, KNOT_RCODE_NXDOMAIN);
  EXPECT_EQ(source_.last_handle, "OID/1.2.157");
  // The descendant check may need storage, or fail.
  source_.forced_descendant = LookupStatus::kNeedsStorage;
  EXPECT_EQ(Ask(sibling).disposition, Response::Disposition::kNeedsStorage);
  source_.forced_descendant = LookupStatus::kError;
  EXPECT_EQ(Ask(sibling).rcode, KNOT_RCODE_SERVFAIL);
}

TEST_F(ResponderTest, WithoutEmptyNonTerminalsANameAboveAnOidIsNxdomainUnasked) {
  ResponderOptions o = Options();
  o.empty_non_terminals = false;
  Responder responder(o);
  QuerySpec q;
  q.name = "2.1.oid-res.org.";
  out_.assign(65535, 0);
  EXPECT_EQ(responder.Respond(MakeQuery(q), Transport::kUdp, source_, out_, scratch_).rcode,
            KNOT_RCODE_NXDOMAIN);
  EXPECT_EQ(source_.descendant_calls, 0);
}

TEST_F(ResponderTest, NxdomainWithoutALookupForNamesThatAreNoOid) {
  for (std::string name :
       {"www.oid-res.org.", "01.2.1.oid-res.org.", "1.5.oid-res.org.", "1.40.1.oid-res.org."}) {
    QuerySpec q;
    q.name = name;
    source_.calls = 0;
    EXPECT_EQ(Ask(q).rcode, KNOT_RCODE_NXDOMAIN) << name;
    EXPECT_EQ(source_.calls, 0) << name;
    Parsed p(answer_);
    ASSERT_TRUE(p.ok());
    ExpectSoaAuthority(p);
  }
}

TEST_F(ResponderTest, NodataForOtherTypesAndMissingValues) {
  for (uint16_t qtype : {uint16_t{KNOT_RRTYPE_A}, uint16_t{KNOT_RRTYPE_AAAA},
                         uint16_t{KNOT_RRTYPE_ANY}, uint16_t{KNOT_RRTYPE_SOA}}) {
    QuerySpec q;
    q.qtype = qtype;
    EXPECT_EQ(Ask(q).rcode, KNOT_RCODE_NOERROR) << qtype;
    Parsed p(answer_);
    ASSERT_TRUE(p.ok());
    EXPECT_TRUE(knot_wire_get_aa(p.wire()));
    EXPECT_TRUE(p.Section(KNOT_ANSWER).empty()) << qtype;
    ExpectSoaAuthority(p);
  }
  QuerySpec q;  // NAPTR of a record without URL values
  q.name = "2.3001.156.2.1.oid-res.org.";
  EXPECT_EQ(Ask(q).rcode, KNOT_RCODE_NOERROR);
  Parsed p(answer_);
  EXPECT_TRUE(p.Section(KNOT_ANSWER).empty());
  ExpectSoaAuthority(p);
}

TEST_F(ResponderTest, ApexAnswersSoaAndNs) {
  QuerySpec q;
  q.name = "OID-RES.org.";
  q.qtype = KNOT_RRTYPE_SOA;
  ASSERT_EQ(Ask(q).rcode, KNOT_RCODE_NOERROR);
  {
    Parsed p(answer_);
    ASSERT_TRUE(p.ok());
    auto answers = p.Section(KNOT_ANSWER);
    ASSERT_EQ(answers.size(), 1u);
    EXPECT_EQ(answers[0]->type, KNOT_RRTYPE_SOA);
    EXPECT_EQ(knot_soa_serial(answers[0]->rrs.rdata), 2024u);
    char mname[KNOT_DNAME_TXT_MAXLEN + 1];
    knot_dname_to_str(mname, knot_soa_primary(answers[0]->rrs.rdata), sizeof(mname));
    EXPECT_STREQ(mname, "localhost.");
    EXPECT_TRUE(knot_dname_is_equal(answers[0]->owner, knot_pkt_qname(p.pkt())));
    char question[KNOT_DNAME_TXT_MAXLEN + 1];
    knot_dname_to_str(question, knot_pkt_wire_qname(p.pkt()), sizeof(question));
    EXPECT_STREQ(question, "OID-RES.org.");  // the question keeps its spelling
  }
  q.qtype = KNOT_RRTYPE_NS;
  ASSERT_EQ(Ask(q).rcode, KNOT_RCODE_NOERROR);
  {
    Parsed p(answer_);
    auto answers = p.Section(KNOT_ANSWER);
    ASSERT_EQ(answers.size(), 1u);
    EXPECT_EQ(answers[0]->type, KNOT_RRTYPE_NS);
    char ns[KNOT_DNAME_TXT_MAXLEN + 1];
    knot_dname_to_str(ns, knot_ns_name(answers[0]->rrs.rdata), sizeof(ns));
    EXPECT_STREQ(ns, "localhost.");
  }
  q.qtype = KNOT_RRTYPE_NAPTR;
  ASSERT_EQ(Ask(q).rcode, KNOT_RCODE_NOERROR);
  Parsed p(answer_);
  EXPECT_TRUE(p.Section(KNOT_ANSWER).empty());
  ExpectSoaAuthority(p);
}

TEST_F(ResponderTest, RefusedOutsideTheZoneForOtherClassesAndTransfers) {
  auto refused = [&](const QuerySpec& q) {
    EXPECT_EQ(Ask(q).rcode, KNOT_RCODE_REFUSED) << q.name << " " << q.qtype;
    Parsed p(answer_);
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(knot_wire_get_rcode(p.wire()), KNOT_RCODE_REFUSED);
    EXPECT_FALSE(knot_wire_get_aa(p.wire()));
    EXPECT_EQ(knot_wire_get_ancount(p.wire()), 0);
    EXPECT_EQ(knot_wire_get_nscount(p.wire()), 0);
    EXPECT_EQ(knot_wire_get_qdcount(p.wire()), 1);  // the question is echoed
  };
  QuerySpec q;
  q.name = "example.com.";
  refused(q);
  q.name = "1.3001.156.2.1.oid-res.org.example.";
  refused(q);
  q = QuerySpec{};
  q.qclass = KNOT_CLASS_CH;
  refused(q);
  q = QuerySpec{};
  q.name = "oid-res.org.";
  q.qtype = KNOT_RRTYPE_AXFR;
  refused(q);
  q.qtype = KNOT_RRTYPE_IXFR;
  refused(q);
  source_.forced = LookupStatus::kNotHere;  // the OID prefix is not homed here
  refused(QuerySpec{});
}

TEST_F(ResponderTest, ServfailWhenTheLookupFails) {
  source_.forced = LookupStatus::kError;
  EXPECT_EQ(Ask(QuerySpec{}).rcode, KNOT_RCODE_SERVFAIL);
  Parsed p(answer_);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(knot_wire_get_rcode(p.wire()), KNOT_RCODE_SERVFAIL);
}

TEST_F(ResponderTest, CacheMissAsksForStorageAndWritesNothing) {
  source_.forced = LookupStatus::kNeedsStorage;
  Response r = Ask(QuerySpec{});
  EXPECT_EQ(r.disposition, Response::Disposition::kNeedsStorage);
  EXPECT_EQ(r.size, 0u);
  EXPECT_EQ(out_[0], 0xAA);
}

TEST_F(ResponderTest, NotimpForOtherOpcodes) {
  for (uint8_t opcode : {uint8_t{KNOT_OPCODE_IQUERY}, uint8_t{KNOT_OPCODE_STATUS},
                         uint8_t{KNOT_OPCODE_NOTIFY}, uint8_t{KNOT_OPCODE_UPDATE}, uint8_t{15}}) {
    QuerySpec q;
    q.opcode = opcode;
    Response r = Ask(q);
    ASSERT_EQ(r.disposition, Response::Disposition::kAnswered);
    EXPECT_EQ(r.rcode, KNOT_RCODE_NOTIMPL);
    EXPECT_EQ(r.opcode, opcode);
    Parsed p(answer_);
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(knot_wire_get_rcode(p.wire()), KNOT_RCODE_NOTIMPL);
    EXPECT_EQ(knot_wire_get_opcode(p.wire()), opcode);
    EXPECT_EQ(knot_wire_get_ancount(p.wire()), 0);
  }
  EXPECT_EQ(source_.calls, 0);
}

TEST_F(ResponderTest, EdnsPayloadIsHonouredAndCapped) {
  // Forty URL values: about 1.7 KB of NAPTR records.
  std::vector<protocol::HandleValue> values;
  std::vector<std::string> urls;
  for (int i = 0; i < 40; ++i) urls.push_back("https://example.org/" + std::to_string(i));
  for (int i = 0; i < 40; ++i) values.push_back(Value(i + 1, "URL", urls[i]));
  source_.records[kHandle] = Encode(values);

  // No EDNS: 512 bytes, truncated, no records.
  Response r = Ask(QuerySpec{});
  EXPECT_TRUE(r.truncated);
  EXPECT_LE(r.size, 512u);
  {
    Parsed p(answer_);
    ASSERT_TRUE(p.ok());
    EXPECT_TRUE(knot_wire_get_tc(p.wire()));
    EXPECT_TRUE(knot_wire_get_aa(p.wire()));
    EXPECT_EQ(knot_wire_get_rcode(p.wire()), KNOT_RCODE_NOERROR);
    EXPECT_EQ(knot_wire_get_ancount(p.wire()), 0);
    EXPECT_EQ(knot_wire_get_qdcount(p.wire()), 1);
  }
  // EDNS 4096 asked, max_udp_payload 1232 given: still truncated, OPT says 1232.
  QuerySpec q;
  q.edns_payload = 4096;
  q.edns_do = true;
  r = Ask(q);
  EXPECT_TRUE(r.truncated);
  EXPECT_LE(r.size, 1232u);
  {
    Parsed p(answer_);
    ASSERT_TRUE(p.ok());
    ASSERT_NE(p.pkt()->opt_rr, nullptr);
    EXPECT_EQ(knot_edns_get_payload(p.pkt()->opt_rr), 1232);
    EXPECT_EQ(knot_edns_get_version(p.pkt()->opt_rr), 0);
    EXPECT_TRUE(knot_edns_do(p.pkt()->opt_rr));  // RFC 3225: DO copied
    EXPECT_TRUE(knot_wire_get_tc(p.wire()));
  }
  // Over TCP the whole answer goes out.
  r = Ask(q, Transport::kTcp);
  EXPECT_FALSE(r.truncated);
  {
    Parsed p(answer_);
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(knot_wire_get_ancount(p.wire()), 40);
    EXPECT_FALSE(knot_wire_get_tc(p.wire()));
    ASSERT_NE(p.pkt()->opt_rr, nullptr);
  }
  // With 20 values the answer fits 1232 but not 512.
  values.resize(20);
  source_.records[kHandle] = Encode(values);
  q.edns_payload = 1232;
  r = Ask(q);
  EXPECT_FALSE(r.truncated);
  EXPECT_GT(r.size, 512u);
  EXPECT_LE(r.size, 1232u);
  Parsed p(answer_);
  EXPECT_EQ(knot_wire_get_ancount(p.wire()), 20);
  // A client payload below 512 counts as 512.
  values.resize(4);
  source_.records[kHandle] = Encode(values);
  q.edns_payload = 100;
  r = Ask(q);
  EXPECT_FALSE(r.truncated);
  EXPECT_GT(r.size, 100u);
  EXPECT_LE(r.size, 512u);
}

TEST_F(ResponderTest, BadversForEdnsVersionsAboveZero) {
  QuerySpec q;
  q.edns_payload = 1232;
  q.edns_version = 1;
  Response r = Ask(q);
  EXPECT_EQ(r.rcode, KNOT_RCODE_BADVERS);
  Parsed p(answer_);
  ASSERT_TRUE(p.ok());
  ASSERT_NE(p.pkt()->opt_rr, nullptr);
  EXPECT_EQ(p.rcode(), KNOT_RCODE_BADVERS);
  EXPECT_EQ(knot_edns_get_version(p.pkt()->opt_rr), 0);
  EXPECT_EQ(knot_wire_get_ancount(p.wire()), 0);
  EXPECT_EQ(source_.calls, 0);
}

TEST_F(ResponderTest, ResponsesAndRuntsAreDropped) {
  auto query = MakeQuery(QuerySpec{});
  knot_wire_set_qr(query.data());
  EXPECT_EQ(Ask(query).disposition, Response::Disposition::kDrop);
  for (size_t n : {0, 1, 5, 11}) {
    std::vector<uint8_t> runt(query.begin(), query.begin() + static_cast<ptrdiff_t>(n));
    EXPECT_EQ(Ask(runt).disposition, Response::Disposition::kDrop) << n;
  }
}

// HARDENING.md rows A, D, H: malformed queries get FORMERR with the header echoed (never more
// bytes than the query), and nothing is looked up.
TEST_F(ResponderTest, MalformedQueriesGetFormerr) {
  auto header = [](uint16_t qd, uint16_t an, uint16_t ns, uint16_t ar) {
    std::vector<uint8_t> h = {0xBE, 0xEF, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0};
    knot_wire_set_qdcount(h.data(), qd);
    knot_wire_set_ancount(h.data(), an);
    knot_wire_set_nscount(h.data(), ns);
    knot_wire_set_arcount(h.data(), ar);
    return h;
  };
  auto append = [](std::vector<uint8_t> a, std::initializer_list<uint8_t> b) {
    a.insert(a.end(), b);
    return a;
  };
  const std::initializer_list<uint8_t> kQuestion = {1, '1', 7,   'o', 'i', 'd', '-', 'r', 'e', 's',
                                                    3, 'o', 'r', 'g', 0,   0,   35,  0,   1};
  std::vector<std::pair<std::string, std::vector<uint8_t>>> cases;
  cases.push_back({"header only, qdcount 1", header(1, 0, 0, 0)});
  cases.push_back({"truncated question", append(header(1, 0, 0, 0), {1, '1', 7, 'o', 'i'})});
  cases.push_back({"question without type", append(header(1, 0, 0, 0), {1, '1', 0, 0})});
  {
    auto two = append(header(2, 0, 0, 0), kQuestion);
    two.insert(two.end(), kQuestion);
    cases.push_back({"qdcount 2", two});
  }
  cases.push_back({"qdcount 0", header(0, 0, 0, 0)});
  // A name that points at itself (RFC 9267): offset 12 -> 12.
  cases.push_back({"compression loop", append(header(1, 0, 0, 0), {0xC0, 0x0C, 0, 35, 0, 1})});
  cases.push_back(
      {"forward pointer", append(header(1, 0, 0, 0), {0xC0, 0x20, 0, 35, 0, 1, 0, 0, 0, 0})});
  // A label longer than 63 bytes.
  {
    auto q = header(1, 0, 0, 0);
    q.push_back(64);
    q.insert(q.end(), 64, 'a');
    q.insert(q.end(), {0, 0, 35, 0, 1});
    cases.push_back({"64-byte label", q});
  }
  // A name longer than 255 bytes.
  {
    auto q = header(1, 0, 0, 0);
    for (int i = 0; i < 5; ++i) {
      q.push_back(63);
      q.insert(q.end(), 63, 'a');
    }
    q.insert(q.end(), {0, 0, 35, 0, 1});
    cases.push_back({"300-byte name", q});
  }
  // An additional record claiming 65535 bytes of rdata in a small datagram.
  cases.push_back({"huge rdlength", append(append(header(1, 0, 0, 1), kQuestion),
                                           {0, 0, 16, 0, 1, 0, 0, 0, 60, 0xFF, 0xFF, 'x'})});
  // Two OPT records.
  {
    auto q = append(header(1, 0, 0, 2), kQuestion);
    for (int i = 0; i < 2; ++i) q.insert(q.end(), {0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0});
    cases.push_back({"OPT twice", q});
  }
  // An OPT record whose owner is not the root.
  cases.push_back({"OPT not at root", append(append(header(1, 0, 0, 1), kQuestion),
                                             {1, 'a', 0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0})});
  // Counts promising records that are not there.
  cases.push_back({"ancount 1000", append(header(1, 1000, 0, 0), kQuestion)});
  cases.push_back({"trailing garbage", append(append(header(1, 0, 0, 0), kQuestion), {1, 2, 3})});
  // Meta types are no question.
  cases.push_back(
      {"qtype OPT", append(header(1, 0, 0, 0), {1, '1', 7, 'o', 'i', 'd', '-', 'r', 'e', 's', 3,
                                                'o', 'r', 'g', 0, 0, 41, 0, 1})});
  for (const auto& [name, query] : cases) {
    source_.calls = 0;
    Response r = Ask(query);
    ASSERT_EQ(r.disposition, Response::Disposition::kAnswered) << name;
    EXPECT_EQ(r.rcode, KNOT_RCODE_FORMERR) << name;
    ASSERT_GE(answer_.size(), 12u) << name;
    EXPECT_LE(answer_.size(), std::max<size_t>(query.size(), 12)) << name;
    EXPECT_EQ(knot_wire_get_id(answer_.data()), 0xBEEF) << name;
    EXPECT_TRUE(knot_wire_get_qr(answer_.data())) << name;
    EXPECT_TRUE(knot_wire_get_rd(answer_.data())) << name;
    EXPECT_EQ(knot_wire_get_rcode(answer_.data()), KNOT_RCODE_FORMERR) << name;
    EXPECT_EQ(knot_wire_get_ancount(answer_.data()), 0) << name;
    EXPECT_EQ(source_.calls, 0) << name;
  }
}

// HARDENING.md row H (count-driven CPU and memory): the largest query there can be, 64 KiB over
// TCP packed with 5,950 empty records, parses within the per-thread arena in well under the
// budget, and is answered like any query.
TEST_F(ResponderTest, AQueryFullOfRecordsStaysWithinTheArena) {
  auto query = MakeQuery(QuerySpec{});
  const uint16_t records = static_cast<uint16_t>((65535 - query.size()) / 11);
  knot_wire_set_arcount(query.data(), records);
  for (uint16_t i = 0; i < records; ++i) {
    // Root owner, a private type (empty rdata is valid), class IN, TTL 0, no rdata.
    query.insert(query.end(), {0, 0xFF, 0, 0, 1, 0, 0, 0, 0, 0, 0});
  }
  ASSERT_LE(query.size(), 65535u);
  auto start = std::chrono::steady_clock::now();
  Response r = Ask(query, Transport::kTcp);
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(r.disposition, Response::Disposition::kAnswered);
  EXPECT_EQ(r.rcode, KNOT_RCODE_NOERROR);
  Parsed p(answer_);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(knot_wire_get_ancount(p.wire()), 2);
  EXPECT_LT(took, std::chrono::milliseconds(50));
  EXPECT_EQ(Ask(QuerySpec{}).rcode, KNOT_RCODE_NOERROR);
}

// Any bytes at all: an answer never exceeds the UDP limit, and a parsed one is a response to
// the same id. (A cheap cousin of the fuzz target, run on every build.)
TEST_F(ResponderTest, RandomBytesNeverBreakTheLimits) {
  std::mt19937 rng(7);
  auto base = MakeQuery(QuerySpec{});
  for (int i = 0; i < 20000; ++i) {
    std::vector<uint8_t> query = base;
    if (i % 2 == 0) {
      query.resize(rng() % 600);
      for (auto& b : query) b = static_cast<uint8_t>(rng());
    } else {
      for (int k = 0; k < 3; ++k) query[rng() % query.size()] = static_cast<uint8_t>(rng());
    }
    Response r = Ask(query);
    if (r.disposition != Response::Disposition::kAnswered) continue;
    ASSERT_LE(r.size, 512u);
    ASSERT_GE(r.size, 12u);
    EXPECT_EQ(knot_wire_get_id(answer_.data()), knot_wire_get_id(query.data()));
    EXPECT_TRUE(knot_wire_get_qr(answer_.data()));
  }
}

// A delegated OID arc gets a referral to its servers, on every name at or below it, even where this
// node holds a record; DS at the cut is the parent's (NODATA).
TEST(ResponderDelegation, NamesUnderADelegatedArcAreReferred) {
  ResponderOptions o;
  o.soa_serial = 2024;
  o.delegations.push_back({"1.2.156.3001",
                           {"ns1.3001.156.2.1.oid-res.org.", "ns2.example.net."},
                           {{"ns1.3001.156.2.1.oid-res.org.", "192.0.2.53"},
                            {"ns1.3001.156.2.1.oid-res.org.", "2001:db8::53"}}});
  Responder responder(o);
  FakeSource source;
  source.records["OID/1.2.156.3001.1"] = Encode({Value(1, "URL", "https://here")});
  source.records["OID/1.2.156.3002"] = Encode({Value(1, "URL", "https://here/3002")});
  ResponderScratch scratch;
  std::vector<uint8_t> out(65535);
  auto ask = [&](const std::string& name, uint16_t qtype) {
    QuerySpec q;
    q.name = name;
    q.qtype = qtype;
    Response r = responder.Respond(MakeQuery(q), Transport::kUdp, source, out, scratch);
    EXPECT_EQ(r.disposition, Response::Disposition::kAnswered);
    return std::vector<uint8_t>(out.begin(), out.begin() + static_cast<ptrdiff_t>(r.size));
  };
  for (const std::string name : {"1.3001.156.2.1.oid-res.org.", "3001.156.2.1.oid-res.org.",
                                 "7.5.3001.156.2.1.oid-res.org."}) {
    source.last_handle.clear();
    Parsed p(ask(name, KNOT_RRTYPE_NAPTR));
    ASSERT_TRUE(p.ok()) << name;
    EXPECT_EQ(p.rcode(), KNOT_RCODE_NOERROR) << name;
    EXPECT_FALSE(knot_wire_get_aa(p.wire())) << name;  // a referral is not authoritative
    EXPECT_TRUE(p.Section(KNOT_ANSWER).empty()) << name;
    auto authority = p.Section(KNOT_AUTHORITY);
    ASSERT_EQ(authority.size(), 2u) << name;
    char owner[KNOT_DNAME_TXT_MAXLEN + 1];
    for (const auto* rr : authority) {
      EXPECT_EQ(rr->type, KNOT_RRTYPE_NS);
      knot_dname_to_str(owner, rr->owner, sizeof owner);
      EXPECT_STREQ(owner, "3001.156.2.1.oid-res.org.");
    }
    auto additional = p.Section(KNOT_ADDITIONAL);
    ASSERT_EQ(additional.size(), 2u) << name;  // the glue, A and AAAA
    EXPECT_EQ(additional[0]->type, KNOT_RRTYPE_A);
    EXPECT_EQ(additional[1]->type, KNOT_RRTYPE_AAAA);
    EXPECT_TRUE(source.last_handle.empty()) << name;  // the local record is not consulted
  }
  // DS at the cut: NODATA from the parent.
  Parsed ds(ask("3001.156.2.1.oid-res.org.", KNOT_RRTYPE_DS));
  ASSERT_TRUE(ds.ok());
  EXPECT_TRUE(knot_wire_get_aa(ds.wire()));
  EXPECT_EQ(ds.Section(KNOT_AUTHORITY).size(), 1u);
  EXPECT_EQ(ds.Section(KNOT_AUTHORITY)[0]->type, KNOT_RRTYPE_SOA);
  // A sibling arc is still answered here.
  Parsed sibling(ask("3002.156.2.1.oid-res.org.", KNOT_RRTYPE_NAPTR));
  ASSERT_TRUE(sibling.ok());
  EXPECT_TRUE(knot_wire_get_aa(sibling.wire()));
  EXPECT_EQ(sibling.Section(KNOT_ANSWER).size(), 1u);
}

}  // namespace
}  // namespace idnode::dns
