// The dashboard's numbers: percentiles from histogram buckets, rates between samples, and the
// shape of /api/stats.
#include "idnode/app/node_stats.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <thread>

#include "temp_dir.h"

namespace idnode::app {
namespace {

using Buckets = std::array<uint64_t, metrics::kLatencyBoundsUs.size() + 1>;

TEST(NodeStatsQuantile, InterpolatesWithinTheBucket) {
  Buckets earlier{}, later{};
  EXPECT_LT(NodeStats::QuantileMs(later, earlier, 0.5), 0);  // nothing answered: none
  later[0] = 100;                                            // 100 answers in (0, 25 us]
  EXPECT_NEAR(NodeStats::QuantileMs(later, earlier, 0.5), 0.0125, 1e-9);
  later[2] = 100;  // and 100 in (50, 100 us]
  EXPECT_NEAR(NodeStats::QuantileMs(later, earlier, 0.5), 0.025, 1e-9);
  EXPECT_NEAR(NodeStats::QuantileMs(later, earlier, 0.99), 0.099, 1e-9);
  // Only what happened between the samples counts.
  earlier = later;
  later[5] += 10;  // (500, 1000 us]
  EXPECT_NEAR(NodeStats::QuantileMs(later, earlier, 0.5), 0.75, 1e-9);
  // Past the last bound: the bound itself (10 s), not a made-up number.
  Buckets slow{};
  slow.back() = 1;
  EXPECT_DOUBLE_EQ(NodeStats::QuantileMs(slow, Buckets{}, 0.99), 10000.0);
}

TEST(NodeStatsJson, RatesBetweenSamplesAndEveryGauge) {
  ::idnode::testing::TempDir dir;
  cache::CacheOptions o;
  o.capacity_bytes = 1 << 20;
  o.shard_count = 4;
  auto cache = std::make_shared<cache::AnswerCache>(o);
  registry::RegistryOptions options;
  options.storage.path = dir.sub("data");
  options.storage.shard_count = 2;
  options.storage.sync_writes = false;
  options.cache = cache;
  auto registry = std::move(*registry::Registry::Open(std::move(options)));
  ASSERT_EQ(registry->HomePrefix("88.100.1").code, protocol::ResponseCode::kSuccess);
  metrics::MetricsHub hub;
  auto& counters = hub.NewCounters();
  NodeStats stats(hub, *cache, *registry, [] { return std::string(R"({"links":[]})"); });

  stats.Sample();
  for (int i = 0; i < 400; ++i) counters.Count(metrics::Protocol::kHandleUdp, 1, 1, 30);
  for (int i = 0; i < 4; ++i) counters.Count(metrics::Protocol::kHttp, 0, 200, 2000);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // a measurable interval
  stats.Sample();

  auto doc = boost::json::parse(stats.Json()).as_object();
  auto& series = doc["series"].as_array();
  ASSERT_EQ(series.size(), 1u);
  auto& point = series[0].as_object();
  const double udp = point["rps"].as_object()["handle_udp"].to_number<double>();
  const double all = point["rps"].as_object()["all"].to_number<double>();
  EXPECT_GT(udp, 400.0);  // 400 in at most the interval (>= 50 ms) ...
  EXPECT_LT(udp, 400.0 / 0.049);
  EXPECT_NEAR(all / udp, 404.0 / 400.0, 1e-3);
  EXPECT_TRUE(point["p50_ms"].as_object()["dns_udp"].is_null());  // no DNS traffic: no number
  EXPECT_NEAR(point["p50_ms"].as_object()["handle_udp"].to_number<double>(), 0.0375, 1e-3);
  EXPECT_EQ(doc["requests_total"].as_object()["handle_udp"].to_number<uint64_t>(), 400u);
  EXPECT_EQ(doc["prefixes"].as_object()["homed"].to_number<uint64_t>(), 1u);
  EXPECT_EQ(doc["prefixes"].as_object()["homed_names"].as_array()[0].as_string(), "88.100.1");
  EXPECT_EQ(doc["storage"].as_object()["shards"].as_array().size(), 2u);
  EXPECT_TRUE(doc["cache"].as_object().contains("capacity_bytes"));
  EXPECT_TRUE(doc["replication"].as_object()["links"].as_array().empty());

  // The ring is bounded.
  for (size_t i = 0; i < NodeStats::kMaxSamples + 20; ++i) stats.Sample();
  auto bounded = boost::json::parse(stats.Json()).as_object();
  EXPECT_LE(bounded["series"].as_array().size(), NodeStats::kMaxSamples - 1);
}

}  // namespace
}  // namespace idnode::app
