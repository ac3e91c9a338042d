#include "idnode/config/config.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

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

TEST(Config, TheDocumentedFileIsExactlyTheDefaults) {
  std::ifstream in(IDNODE_CONFIG_FILE);
  ASSERT_TRUE(in) << IDNODE_CONFIG_FILE;
  std::stringstream text;
  text << in.rdbuf();
  Config documented = Parse(text.str(), "idnode.yaml");
  Config defaults = Parse("", "(none)");
  EXPECT_EQ(documented.node.data_dir, defaults.node.data_dir);
  EXPECT_EQ(documented.node.shards, defaults.node.shards);
  EXPECT_EQ(documented.node.home, defaults.node.home);
  EXPECT_EQ(documented.node.demo, defaults.node.demo);
  EXPECT_EQ(documented.node.site_serial, defaults.node.site_serial);
  EXPECT_EQ(documented.node.site_description, defaults.node.site_description);
  EXPECT_EQ(documented.handle.bind, defaults.handle.bind);
  EXPECT_EQ(documented.handle.port, defaults.handle.port);
  EXPECT_EQ(documented.handle.workers, defaults.handle.workers);
  EXPECT_EQ(documented.handle.udp_batch, defaults.handle.udp_batch);
  EXPECT_EQ(documented.handle.udp_receive_buffer_bytes, defaults.handle.udp_receive_buffer_bytes);
  EXPECT_EQ(documented.handle.rate_limit.datagrams_per_second,
            defaults.handle.rate_limit.datagrams_per_second);
  EXPECT_EQ(documented.handle.rate_limit.burst, defaults.handle.rate_limit.burst);
  EXPECT_EQ(documented.handle.rate_limit.slip, defaults.handle.rate_limit.slip);
  EXPECT_EQ(documented.handle.rate_limit.exempt, defaults.handle.rate_limit.exempt);
  EXPECT_EQ(documented.dns.rate_limit.datagrams_per_second,
            defaults.dns.rate_limit.datagrams_per_second);
  EXPECT_EQ(documented.dns.rate_limit.slip, defaults.dns.rate_limit.slip);
  EXPECT_EQ(documented.dns.empty_non_terminals, defaults.dns.empty_non_terminals);
  EXPECT_EQ(documented.dns.tcp_max_connections_per_source,
            defaults.dns.tcp_max_connections_per_source);
  EXPECT_EQ(documented.http.max_connections_per_source, defaults.http.max_connections_per_source);
  EXPECT_EQ(documented.handle.tcp_max_connections, defaults.handle.tcp_max_connections);
  EXPECT_EQ(documented.handle.tcp_max_connections_per_source,
            defaults.handle.tcp_max_connections_per_source);
  EXPECT_EQ(documented.handle.tcp_idle_timeout, defaults.handle.tcp_idle_timeout);
  EXPECT_EQ(documented.handle.tcp_io_timeout, defaults.handle.tcp_io_timeout);
  EXPECT_EQ(documented.handle.max_message_bytes, defaults.handle.max_message_bytes);
  EXPECT_EQ(documented.handle.storage_threads, defaults.handle.storage_threads);
  EXPECT_EQ(documented.handle.storage_queue, defaults.handle.storage_queue);
  EXPECT_EQ(documented.http.port, defaults.http.port);
  EXPECT_EQ(documented.http.max_header_bytes, defaults.http.max_header_bytes);
  EXPECT_EQ(documented.http.max_body_bytes, defaults.http.max_body_bytes);
  EXPECT_EQ(documented.http.request_timeout, defaults.http.request_timeout);
  EXPECT_EQ(documented.auth.server_admins, defaults.auth.server_admins);
  EXPECT_EQ(documented.auth.allow_prefix_admins, defaults.auth.allow_prefix_admins);
  EXPECT_EQ(documented.auth.challenge_timeout, defaults.auth.challenge_timeout);
  EXPECT_EQ(documented.auth.max_pending_challenges, defaults.auth.max_pending_challenges);
  EXPECT_EQ(documented.auth.max_pending_challenge_bytes, defaults.auth.max_pending_challenge_bytes);
  EXPECT_EQ(documented.auth.failed_proofs_per_minute, defaults.auth.failed_proofs_per_minute);
  EXPECT_EQ(documented.storage.block_cache_bytes, defaults.storage.block_cache_bytes);
  EXPECT_EQ(documented.storage.sync_writes, defaults.storage.sync_writes);
  EXPECT_EQ(documented.cache.capacity_bytes, defaults.cache.capacity_bytes);
  EXPECT_EQ(documented.cache.shards, defaults.cache.shards);
  EXPECT_EQ(documented.cache.negative_ttl, defaults.cache.negative_ttl);
  EXPECT_EQ(documented.log.level, defaults.log.level);
  EXPECT_EQ(documented.dns.enabled, defaults.dns.enabled);
  EXPECT_EQ(documented.dns.bind, defaults.dns.bind);
  EXPECT_EQ(documented.dns.port, defaults.dns.port);
  EXPECT_EQ(documented.dns.tcp, defaults.dns.tcp);
  EXPECT_EQ(documented.dns.tcp_max_connections, defaults.dns.tcp_max_connections);
  EXPECT_EQ(documented.dns.tcp_idle_timeout, defaults.dns.tcp_idle_timeout);
  EXPECT_EQ(documented.dns.tcp_io_timeout, defaults.dns.tcp_io_timeout);
  EXPECT_EQ(documented.dns.workers, defaults.dns.workers);
  EXPECT_EQ(documented.dns.udp_batch, defaults.dns.udp_batch);
  EXPECT_EQ(documented.dns.udp_receive_buffer_bytes, defaults.dns.udp_receive_buffer_bytes);
  EXPECT_EQ(documented.dns.apex, defaults.dns.apex);
  EXPECT_EQ(documented.dns.oid_prefix, defaults.dns.oid_prefix);
  EXPECT_EQ(documented.dns.naptr_service, defaults.dns.naptr_service);
  EXPECT_EQ(documented.dns.nameserver, defaults.dns.nameserver);
  EXPECT_EQ(documented.dns.max_udp_payload, defaults.dns.max_udp_payload);
  EXPECT_EQ(documented.dns.default_ttl, defaults.dns.default_ttl);
  EXPECT_EQ(documented.dns.negative_ttl, defaults.dns.negative_ttl);
  EXPECT_EQ(documented.dns.storage_threads, defaults.dns.storage_threads);
  EXPECT_EQ(documented.dns.storage_queue, defaults.dns.storage_queue);
  EXPECT_EQ(defaults.node.data_dir, "./idnode-data");
  EXPECT_EQ(defaults.handle.port, 2641);
  EXPECT_EQ(defaults.http.port, 8000);
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

}  // namespace
}  // namespace idnode::config
