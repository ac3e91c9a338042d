#include "idnode/config/config.h"

#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>
#include <vector>

namespace idnode::config {
namespace {

std::string ErrorOf(const std::string& yaml) {
  try {
    (void)Parse(yaml, "test.yaml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

// The key paths of a YAML file written as config/idnode.yaml is: nested mappings, two spaces a
// level, one key per line (comments and list items aside).
std::set<std::string> DocumentedKeys(const std::string& text) {
  std::set<std::string> keys;
  std::vector<std::string> stack;  // the section path by indentation level
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    size_t indent = line.find_first_not_of(' ');
    if (indent == std::string::npos || line[indent] == '#' || line[indent] == '-') continue;
    size_t colon = line.find(':', indent);
    if (colon == std::string::npos) continue;
    std::string key = line.substr(indent, colon - indent);
    size_t level = indent / 2;
    stack.resize(level);
    std::string rest = line.substr(colon + 1);
    size_t value = rest.find_first_not_of(' ');
    bool section = value == std::string::npos || rest[value] == '#';
    std::string path;
    for (const auto& s : stack) path += s + ".";
    path += key;
    if (section) {
      stack.push_back(key);
    } else {
      keys.insert(path);
    }
  }
  return keys;
}

// Generated from the parser's own schema (Describe), so a key added to the configuration cannot
// be left out of config/idnode.yaml, nor documented with a value other than its default.
TEST(Config, TheDocumentedFileIsExactlyTheDefaults) {
  std::ifstream in(IDNODE_CONFIG_FILE);
  ASSERT_TRUE(in) << IDNODE_CONFIG_FILE;
  std::stringstream text;
  text << in.rdbuf();
  Config documented = Parse(text.str(), "idnode.yaml");
  Config defaults = Parse("", "(none)");
  auto described = Describe(defaults);
  EXPECT_EQ(Describe(documented), described);
  std::set<std::string> schema_keys;
  for (const auto& [key, value] : described) schema_keys.insert(key);
  EXPECT_GT(schema_keys.size(), 70u);  // the schema is really walked
  EXPECT_EQ(DocumentedKeys(text.str()), schema_keys);
}

TEST(Config, ServerAdminsMustBeIdentities) {
  auto c = Parse("auth:\n  server_admins: [\"300:0.NA/DEMO.1\"]\n", "t.yaml");
  ASSERT_EQ(c.auth.server_admins.size(), 1u);
  EXPECT_EQ(c.auth.server_admins[0], "300:0.NA/DEMO.1");
  EXPECT_NE(ErrorOf("auth:\n  server_admins: [\"0.NA/DEMO.1\"]\n").find("index:handle"),
            std::string::npos);
  EXPECT_NE(ErrorOf("auth:\n  server_admins: [\"0:0.NA/DEMO.1\"]\n").find("index:handle"),
            std::string::npos);
  EXPECT_NE(ErrorOf("auth:\n  challenge_timeout_ms: 10\n").find("auth.challenge_timeout_ms"),
            std::string::npos);
}

TEST(Config, ReadsValuesAndSizes) {
  Config c = Parse(R"(
node:
  home: [88.100.1, 20.500.12345]
  shards: 16
handle:
  bind: ["::1", 127.0.0.1]
  port: 0
storage:
  block_cache_bytes: 1GiB
cache:
  capacity_bytes: 64KiB
  shards: 8
)",
                   "t.yaml");
  EXPECT_EQ(c.node.home, (std::vector<std::string>{"88.100.1", "20.500.12345"}));
  EXPECT_EQ(c.node.shards, 16u);
  EXPECT_EQ(c.handle.bind.front(), "::1");
  EXPECT_EQ(c.handle.port, 0);
  EXPECT_EQ(c.storage.block_cache_bytes, 1ull << 30);
  EXPECT_EQ(c.cache.capacity_bytes, 64ull << 10);
}

TEST(Config, ReportsEveryProblemWithItsLine) {
  std::string e = ErrorOf(
      "node:\n  shards: -1\n  colour: blue\nhandle:\n  port: 70000\n  udp: maybe\nlog:\n  level: "
      "loud\n");
  EXPECT_NE(e.find("test.yaml:2: node.shards must be a whole number"), std::string::npos) << e;
  EXPECT_NE(e.find("test.yaml:3: unknown key \"node.colour\""), std::string::npos) << e;
  EXPECT_NE(e.find("test.yaml:5: handle.port"), std::string::npos) << e;
  EXPECT_NE(e.find("test.yaml:6: handle.udp must be true or false"), std::string::npos) << e;
  EXPECT_NE(e.find("test.yaml:8: log.level must be one of"), std::string::npos) << e;
  EXPECT_EQ(std::count(e.begin(), e.end(), '\n'), 4);  // five problems, one per line
}

TEST(Config, RefusesSilentClampsAndBadCombinations) {
  EXPECT_NE(ErrorOf("cache:\n  shards: 3\n").find("power of two"), std::string::npos);
  EXPECT_NE(ErrorOf("handle:\n  port: 8000\n").find("must differ"), std::string::npos);
  EXPECT_NE(ErrorOf("handle:\n  bind: []\n").find("at least one"), std::string::npos);
  EXPECT_NE(ErrorOf("storage:\n  block_cache_bytes: 12XB\n").find("size in bytes"),
            std::string::npos);
  EXPECT_NE(ErrorOf("node: [1, 2]\n").find("must be a mapping"), std::string::npos);
  EXPECT_NE(ErrorOf("node:\n  shards: [\n").find("test.yaml"), std::string::npos);  // YAML syntax
  // The dashboard behind admin auth needs HTTPS and someone who may open it.
  EXPECT_NE(ErrorOf("http:\n  status_requires_admin: true\n").find("tls_cert_file"),
            std::string::npos);
  EXPECT_NE(ErrorOf("http:\n  status_requires_admin: true\n").find("auth.server_admins"),
            std::string::npos);
  auto gated = Parse(
      "http:\n  status_requires_admin: true\n  tls_cert_file: c.pem\n  tls_key_file: k.pem\n"
      "auth:\n  server_admins: [\"300:0.NA/DEMO.1\"]\n",
      "t.yaml");
  EXPECT_TRUE(gated.http.status_requires_admin);
}

TEST(Config, RateLimitAndItsExemptNetworks) {
  Config c = Parse(
      "handle:\n  rate_limit:\n    datagrams_per_second: 50\n    slip: 2\n    exempt: "
      "[127.0.0.0/8, \"::1/128\", 127.0.2.7]\n",
      "test.yaml");
  EXPECT_EQ(c.handle.rate_limit.datagrams_per_second, 50u);
  EXPECT_EQ(c.handle.rate_limit.slip, 2u);
  EXPECT_EQ(c.handle.rate_limit.exempt.size(), 3u);
  std::string e = ErrorOf("handle:\n  rate_limit:\n    exempt: [127.0.0.0/33, nonsense, ::1/x]\n");
  EXPECT_NE(e.find("\"127.0.0.0/33\" is not a network"), std::string::npos) << e;
  EXPECT_NE(e.find("\"nonsense\" is not a network"), std::string::npos) << e;
  EXPECT_NE(e.find("\"::1/x\" is not a network"), std::string::npos) << e;
  EXPECT_NE(ErrorOf("dns:\n  rate_limit:\n    exempt: [127.0.0.256]\n")
                .find("dns.rate_limit.exempt: \"127.0.0.256\" is not a network"),
            std::string::npos);
  EXPECT_NE(ErrorOf("handle:\n  rate_limit:\n    burst_size: 3\n")
                .find("unknown key \"handle.rate_limit.burst_size\""),
            std::string::npos);
  std::array<uint8_t, 16> address{};
  int bits = 0;
  ASSERT_TRUE(ParseNetwork("127.0.2.0/24", &address, &bits));
  EXPECT_EQ(bits, 96 + 24);
  EXPECT_EQ(address[10], 0xff);
  EXPECT_EQ(address[12], 127);
  ASSERT_TRUE(ParseNetwork("::1", &address, &bits));
  EXPECT_EQ(bits, 128);
  EXPECT_EQ(address[15], 1);
}

TEST(Config, CommandLineOverridesTheFile) {
  const char* argv[] = {"idnode", "--data-dir",  "/tmp/x", "--bind",   "::1",  "--handle-port",
                        "0",      "--http-port", "0",      "--home",   "88.1", "--home",
                        "88.2",   "--workers",   "3",      "--no-demo"};
  CommandLine cl = ParseCommandLine(static_cast<int>(std::size(argv)), argv);
  EXPECT_EQ(cl.config.node.data_dir, "/tmp/x");
  EXPECT_EQ(cl.config.handle.bind, std::vector<std::string>{"::1"});
  EXPECT_EQ(cl.config.http.bind, std::vector<std::string>{"::1"});
  EXPECT_EQ(cl.config.handle.port, 0);
  EXPECT_EQ(cl.config.node.home, (std::vector<std::string>{"88.1", "88.2"}));
  EXPECT_EQ(cl.config.handle.workers, 3u);
  EXPECT_FALSE(cl.config.node.demo);
  const char* bad[] = {"idnode", "--handle-port", "99999"};
  EXPECT_THROW(ParseCommandLine(3, bad), ConfigError);
  const char* unknown[] = {"idnode", "--frobnicate"};
  EXPECT_THROW(ParseCommandLine(2, unknown), ConfigError);
}

TEST(Config, DnsDelegationsAreCheckedWhole) {
  Config c =
      Parse("dns:\n  delegations: [\"1.2.156.3001 ns1.example.cn.=192.0.2.53 ns2.example.net\"]\n",
            "t.yaml");
  ASSERT_EQ(c.dns.delegations.size(), 1u);
  DnsDelegation d;
  std::string why;
  ASSERT_TRUE(ParseDnsDelegation(c.dns.delegations[0], &d, &why)) << why;
  EXPECT_EQ(d.oid, "1.2.156.3001");
  EXPECT_EQ(d.nameservers, (std::vector<std::string>{"ns1.example.cn.", "ns2.example.net."}));
  ASSERT_EQ(d.addresses.size(), 1u);
  EXPECT_EQ(d.addresses[0].second, "192.0.2.53");
  EXPECT_NE(ErrorOf("dns:\n  delegations: [\"1.2.x ns1.example.cn.\"]\n").find("not an OID"),
            std::string::npos);
  EXPECT_NE(ErrorOf("dns:\n  delegations: [\"1.2.156\"]\n").find("at least one name server"),
            std::string::npos);
  EXPECT_NE(ErrorOf("dns:\n  delegations: [\"1.2 ns1.example.cn.=300.1.1.1\"]\n")
                .find("not an IP address"),
            std::string::npos);
}

TEST(Config, ReplicationPeersAndSources) {
  ReplicationPeer peer;
  std::string why;
  ASSERT_TRUE(ParseReplicationPeer("sn1 88.100 OID", &peer, &why)) << why;
  EXPECT_EQ(peer.name, "sn1");
  EXPECT_EQ(peer.prefixes, (std::vector<std::string>{"88.100", "OID"}));
  ASSERT_TRUE(ParseReplicationPeer("standby *", &peer, &why)) << why;
  EXPECT_TRUE(peer.everything);
  EXPECT_FALSE(ParseReplicationPeer("sn1", &peer, &why));  // no prefix
  EXPECT_FALSE(ParseReplicationPeer("bad/name 88", &peer, &why));

  ReplicationSourceEntry source;
  ASSERT_TRUE(ParseReplicationSource("top 192.0.2.1:2642 88 answer=refer", &source, &why)) << why;
  EXPECT_EQ(source.host, "192.0.2.1");
  EXPECT_EQ(source.port, 2642);
  EXPECT_EQ(source.answer, "refer");
  ASSERT_TRUE(ParseReplicationSource("top [2001:db8::1]:2642 *", &source, &why)) << why;
  EXPECT_EQ(source.host, "2001:db8::1");
  EXPECT_TRUE(source.everything);
  EXPECT_EQ(source.answer, "mirror");
  // Host names are resolved at each connection (compose service names, DNS names).
  ASSERT_TRUE(ParseReplicationSource("sn1 sn1.example.cn:12642 88.100", &source, &why)) << why;
  EXPECT_EQ(source.host, "sn1.example.cn");
  EXPECT_EQ(source.port, 12642);
  for (const char* bad : {"top 192.0.2.1 88", "top 192.0.2.1:0 88", "top 192.0.2.1:65536 88",
                          "top 300.1.1.1:2642 88", "top -x.example:2642 88", "top a_b:2642 88",
                          "top 192.0.2.1:2642 88 answer=maybe", "top 192.0.2.1:2642"}) {
    EXPECT_FALSE(ParseReplicationSource(bad, &source, &why)) << bad;
    EXPECT_FALSE(why.empty()) << bad;
  }
}

TEST(Config, SiteServersAndThisServersPlaceInThem) {
  SiteServerEntry entry;
  std::string why;
  ASSERT_TRUE(ParseSiteServer("192.0.2.1:2641 http=8000", &entry, &why)) << why;
  EXPECT_EQ(entry.address, "192.0.2.1");
  EXPECT_EQ(entry.handle_port, 2641);
  EXPECT_EQ(entry.http_port, 8000);
  ASSERT_TRUE(ParseSiteServer("[2001:db8::2]:2641", &entry, &why)) << why;
  EXPECT_EQ(entry.address, "2001:db8::2");
  EXPECT_EQ(entry.http_port, 0);
  for (const char* bad :
       {"", "192.0.2.1", "192.0.2.1:0", "host.example:2641", "192.0.2.1:2641 http=0",
        "192.0.2.1:2641 https=8443", "192.0.2.1:2641 http=8000 extra"}) {
    EXPECT_FALSE(ParseSiteServer(bad, &entry, &why)) << bad;
    EXPECT_FALSE(why.empty()) << bad;
  }
  const std::string three =
      "site:\n  servers: [\"127.0.0.1:2641 http=8000\", \"127.0.0.2:2641 http=8000\", "
      "\"127.0.0.3:2641 http=8000\"]\n";
  Config c =
      Parse(three + "  this_server: 2\nhandle:\n  port: 2641\nhttp:\n  port: 8000\n", "test.yaml");
  EXPECT_EQ(c.site.servers.size(), 3u);
  EXPECT_EQ(c.site.this_server, 2u);
  EXPECT_NE(ErrorOf(three + "  this_server: 3\n").find("site.this_server"), std::string::npos);
  EXPECT_NE(ErrorOf(three + "handle:\n  port: 2642\n").find("handle.port must be 2641"),
            std::string::npos);
  EXPECT_NE(ErrorOf(three + "handle:\n  port: 2641\nhttp:\n  port: 8001\n")
                .find("http.port must be 8000"),
            std::string::npos);
  EXPECT_NE(ErrorOf("site:\n  servers: [\"127.0.0.1:2641\", \"127.0.0.1:2641\"]\nhandle:\n  "
                    "port: 2641\n")
                .find("listed twice"),
            std::string::npos);
  EXPECT_NE(ErrorOf("site:\n  this_server: 1\n").find("needs site.servers"), std::string::npos);
  // Clients connect to these addresses; and replication of a site by the hash is not built yet.
  EXPECT_NE(ErrorOf("site:\n  servers: [\"0.0.0.0:2641\", \"127.0.0.2:2641\"]\nhandle:\n  "
                    "port: 2641\n")
                .find("not a wildcard or multicast"),
            std::string::npos);
  EXPECT_NE(ErrorOf("site:\n  servers: [\"224.0.0.1:2641\"]\nhandle:\n  port: 2641\n")
                .find("not a wildcard or multicast"),
            std::string::npos);
  EXPECT_NE(ErrorOf(three + "handle:\n  port: 2641\nhttp:\n  port: 8000\nreplication:\n  "
                            "listen: 127.0.0.1:0\n")
                .find("does not serve replication yet"),
            std::string::npos);
  // Pulling is each server's share (the hello names the server): allowed.
  EXPECT_EQ(ErrorOf(three + "handle:\n  port: 2641\nhttp:\n  port: 8000\nreplication:\n  "
                            "sources: [\"top 192.0.2.1:2643 88\"]\n")
                .find("does not serve replication"),
            std::string::npos);
}

}  // namespace
}  // namespace idnode::config
