#include <gtest/gtest.h>

#include <string>

#include "idnode/config/config.h"
#include "idnode/dns/dns_server.h"

namespace idnode::dns {
namespace {

using config::ConfigError;
using config::Parse;

TEST(DnsConfig, DefaultsServeOidResOrgOnLoopback5353) {
  config::Config c = Parse("", "(none)");
  EXPECT_TRUE(c.dns.enabled);
  EXPECT_EQ(c.dns.bind, std::vector<std::string>{"127.0.0.1"});
  EXPECT_EQ(c.dns.port, 5353);
  EXPECT_EQ(c.dns.apex, "oid-res.org.");
  EXPECT_EQ(c.dns.oid_prefix, "OID");
  ResponderOptions o = OptionsFrom(c.dns);
  EXPECT_EQ(o.max_udp_payload, 1232);
  EXPECT_EQ(o.naptr_service, "RINF");
  Responder responder(o);  // the defaults make a valid zone
  EXPECT_EQ(responder.options().apex, "oid-res.org.");
}

TEST(DnsConfig, ReadsEveryKey) {
  config::Config c = Parse(R"(
dns:
  enabled: false
  bind: ["::1"]
  port: 0
  tcp: false
  tcp_max_connections: 9
  tcp_idle_timeout_ms: 500
  tcp_io_timeout_ms: 100
  workers: 3
  udp_batch: 16
  apex: oid.example.cn
  oid_prefix: 88.100.9
  naptr_service: COID
  nameserver: ns1.example.cn.
  max_udp_payload: 4096
  default_ttl: 60
  negative_ttl: 30
  storage_threads: 4
  storage_queue: 100
)",
                           "t.yaml");
  EXPECT_FALSE(c.dns.enabled);
  EXPECT_EQ(c.dns.bind, std::vector<std::string>{"::1"});
  EXPECT_EQ(c.dns.port, 0);
  EXPECT_EQ(c.dns.workers, 3u);
  EXPECT_FALSE(c.dns.tcp);
  EXPECT_EQ(c.dns.tcp_max_connections, 9u);
  EXPECT_EQ(c.dns.tcp_idle_timeout, std::chrono::milliseconds(500));
  EXPECT_EQ(c.dns.tcp_io_timeout, std::chrono::milliseconds(100));
  EXPECT_EQ(c.dns.udp_batch, 16u);
  EXPECT_EQ(c.dns.apex, "oid.example.cn");
  EXPECT_EQ(c.dns.oid_prefix, "88.100.9");
  EXPECT_EQ(c.dns.naptr_service, "COID");
  EXPECT_EQ(c.dns.nameserver, "ns1.example.cn.");
  EXPECT_EQ(c.dns.max_udp_payload, 4096u);
  EXPECT_EQ(c.dns.default_ttl, 60u);
  EXPECT_EQ(c.dns.negative_ttl, 30u);
  EXPECT_EQ(c.dns.storage_threads, 4u);
  EXPECT_EQ(c.dns.storage_queue, 100u);
}

TEST(DnsConfig, BadValuesAreErrorsWithTheirLine) {
  try {
    Parse("dns:\n  port: 70000\n  max_udp_payload: 511\n  colour: blue\n", "t.yaml");
    FAIL() << "accepted";
  } catch (const ConfigError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("t.yaml:2: dns.port"), std::string::npos) << what;
    EXPECT_NE(what.find("t.yaml:3: dns.max_udp_payload must be a whole number from 512 to 4096"),
              std::string::npos)
        << what;
    EXPECT_NE(what.find("t.yaml:4: unknown key \"dns.colour\""), std::string::npos) << what;
  }
  for (std::string bad : {"dns:\n  apex: \"bad..name\"\n", "dns:\n  apex: \"sp ace.org\"\n",
                          "dns:\n  nameserver: \"ns..x\"\n", "dns:\n  oid_prefix: \"a/b\"\n",
                          "dns:\n  naptr_service: \"R INF\"\n", "dns:\n  port: 2641\n",
                          "dns:\n  port: 8000\n", "dns:\n  tcp_io_timeout_ms: 10\n"}) {
    EXPECT_THROW(Parse(bad, "t.yaml"), ConfigError) << bad;
  }
  // The same port for DNS and the Handle protocol is fine once one of them is off.
  EXPECT_NO_THROW(Parse("dns:\n  port: 2641\n  enabled: false\n", "t.yaml"));
}

TEST(DnsConfig, DnsPortFlagAndBindApply) {
  const char* argv[] = {"idnode", "--dns-port", "0", "--bind", "127.0.0.2"};
  auto cl = config::ParseCommandLine(5, argv);
  EXPECT_EQ(cl.config.dns.port, 0);
  EXPECT_EQ(cl.config.dns.bind, std::vector<std::string>{"127.0.0.2"});
  const char* bad[] = {"idnode", "--dns-port", "x"};
  EXPECT_THROW(config::ParseCommandLine(3, bad), ConfigError);
}

}  // namespace
}  // namespace idnode::dns
