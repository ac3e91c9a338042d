// idbench's parts: the log-linear histogram, key sources, and its JSON and HTML reports.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>

#include "idnode/loadgen/engine.h"
#include "idnode/loadgen/histogram.h"
#include "idnode/loadgen/keys.h"

namespace idnode::loadgen {
namespace {

TEST(Histogram, SmallValuesAreExactAndLargeOnesWithinOnePercent) {
  for (uint64_t v : {0ull, 1ull, 127ull, 128ull, 255ull}) {
    EXPECT_EQ(Histogram::UpperBoundOf(Histogram::BucketOf(v)), v);
  }
  std::mt19937_64 rng(3);
  for (int i = 0; i < 100000; ++i) {
    uint64_t v = rng() % (uint64_t{1} << 38);
    uint64_t upper = Histogram::UpperBoundOf(Histogram::BucketOf(v));
    ASSERT_GE(upper, v);
    ASSERT_LE(static_cast<double>(upper - v), static_cast<double>(v) / 128.0 + 1) << v;
  }
  // Bucket bounds increase with the bucket index.
  for (size_t b = 1; b < 5000; ++b)
    ASSERT_GT(Histogram::UpperBoundOf(b), Histogram::UpperBoundOf(b - 1));
}

TEST(Histogram, PercentilesMatchSortedData) {
  Histogram h;
  std::vector<uint64_t> values;
  std::mt19937_64 rng(5);
  for (int i = 0; i < 50000; ++i) {
    uint64_t v = 1000 + rng() % 5000000;  // 1 us .. 5 ms in ns
    values.push_back(v);
    h.Record(v);
  }
  std::sort(values.begin(), values.end());
  for (double q : {0.5, 0.9, 0.99, 0.999}) {
    uint64_t exact = values[static_cast<size_t>(q * values.size()) - 1];
    uint64_t got = h.Percentile(q);
    EXPECT_GE(got, exact);
    EXPECT_LE(static_cast<double>(got), exact * 1.01 + 1) << q;
  }
  EXPECT_EQ(h.count(), 50000u);
  EXPECT_EQ(h.max(), values.back());
  EXPECT_EQ(h.min(), values.front());
  EXPECT_EQ(h.Percentile(1.0), values.back());
  Histogram other;
  other.Record(10, 3);
  h.Merge(other);
  EXPECT_EQ(h.count(), 50003u);
  EXPECT_EQ(h.min(), 10u);
  h.Clear();
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.Percentile(0.5), 0u);
}

TEST(Keys, FileKeysInOrderAndAfterAMove) {
  std::string path = ::testing::TempDir() + "/idbench_keys.txt";
  {
    std::ofstream out(path);
    out << "a\n\nbb\nccc\n";  // the empty line is skipped
  }
  std::string error;
  KeyOptions o;
  o.file = path;
  o.order = Order::kSequential;
  auto made = KeySource::Make(o, &error);
  ASSERT_TRUE(made) << error;
  KeySource keys = std::move(*made);  // small keys live inside the string: offsets survive moves
  EXPECT_EQ(keys.size(), 3u);
  EXPECT_EQ(keys.Next(), "a");
  EXPECT_EQ(keys.Next(), "bb");
  EXPECT_EQ(keys.Next(), "ccc");
  EXPECT_EQ(keys.Next(), "a");  // wraps
  std::remove(path.c_str());
}

TEST(Keys, PatternOrdersAndMissingShare) {
  std::string error;
  KeyOptions o;
  o.pattern = "88.100.1/SN{5..9}";
  o.order = Order::kSequential;
  auto keys = KeySource::Make(o, &error);
  ASSERT_TRUE(keys) << error;
  EXPECT_EQ(keys->size(), 5u);
  EXPECT_EQ(keys->Next(), "88.100.1/SN5");
  EXPECT_EQ(keys->Next(), "88.100.1/SN6");
  for (int i = 0; i < 3; ++i) keys->Next();
  EXPECT_EQ(keys->Next(), "88.100.1/SN5");  // wraps

  o.pattern = "P/{0..99999}";
  o.order = Order::kZipf;
  o.zipf_s = 1.1;
  auto zipf = KeySource::Make(o, &error);
  ASSERT_TRUE(zipf);
  std::map<std::string, int> counts;
  for (int i = 0; i < 20000; ++i) ++counts[std::string(zipf->Next())];
  int top = 0;
  for (const auto& [k, n] : counts) top = std::max(top, n);
  EXPECT_GT(top, 20000 / 20);  // skewed: the hottest key takes far more than a uniform share

  o.order = Order::kUniform;
  o.missing = 0.25;
  auto missing = KeySource::Make(o, &error);
  int misses = 0;
  for (int i = 0; i < 10000; ++i) {
    missing->Next();
    misses += missing->last_was_missing();
  }
  EXPECT_GT(misses, 2000);
  EXPECT_LT(misses, 3000);

  KeyOptions bad;
  bad.pattern = "no range";
  EXPECT_FALSE(KeySource::Make(bad, &error));
  bad.pattern = "x/{9..1}";
  EXPECT_FALSE(KeySource::Make(bad, &error));
}

TEST(Reports, JsonAndHtmlCarryTheFigures) {
  RunOptions o;
  RunResult r;
  r.seconds = 2;
  r.sent = 1000;
  r.answered = 990;
  r.timeouts = 10;
  r.codes[1] = 900;
  r.codes[100] = 90;
  for (int i = 1; i <= 990; ++i) r.latency.Record(static_cast<uint64_t>(i) * 1000);
  r.timeline.push_back({1, 500, 0, 5, 400000, 900000});
  r.timeline.push_back({2, 490, 0, 5, 500000, 980000});
  std::string json = ToJson(o, r);
  EXPECT_NE(json.find("\"requests_per_second\":495.000"), std::string::npos) << json;
  EXPECT_NE(json.find("\"codes\":{\"1\":900,\"100\":90}"), std::string::npos);
  EXPECT_NE(json.find("\"timeline\":[{\"t\":1.000,\"answered\":500"), std::string::npos);
  const std::string latency_p50 = "\"latency_us\":{\"p50\":";
  size_t p50_at = json.find(latency_p50);
  ASSERT_NE(p50_at, std::string::npos) << json;
  double p50 = std::atof(json.c_str() + p50_at + latency_p50.size());
  EXPECT_GE(p50, 495.0);
  EXPECT_LE(p50, 495.0 * 1.01);
  std::string html = ToHtml(o, r, "test run");
  EXPECT_EQ(std::count(html.begin(), html.end(), '<') > 20, true);
  EXPECT_NE(html.find("<svg"), std::string::npos);
  EXPECT_EQ(html.find("http://"),
            html.find("http://www.w3.org/2000/svg"));  // no other network reference
  EXPECT_NE(html.find("<polyline"), std::string::npos);
  EXPECT_NE(html.find("code 100"), std::string::npos);
}

TEST(Reports, OpenLoopSendLagIsReported) {
  RunOptions o;
  o.rate = 1000;
  RunResult r;
  r.seconds = 1;
  for (int i = 1; i <= 1000; ++i) r.send_lag.Record(i == 1000 ? 5000000 : 2000);
  std::string json = ToJson(o, r);
  EXPECT_NE(json.find("\"mode\":\"open\""), std::string::npos) << json;
  const std::string lag = "\"send_lag_us\":{\"p50\":";
  size_t at = json.find(lag);
  ASSERT_NE(at, std::string::npos) << json;
  EXPECT_NEAR(std::atof(json.c_str() + at + lag.size()), 2.0, 0.05);
  const std::string lag_max = "\"max\":";
  size_t max_at = json.find(lag_max, at);
  ASSERT_NE(max_at, std::string::npos);
  EXPECT_NEAR(std::atof(json.c_str() + max_at + lag_max.size()), 5000.0, 50.0);
  EXPECT_NE(ToHtml(o, r, "open").find("send lag p99 / max"), std::string::npos);
  EXPECT_EQ(ToHtml(RunOptions{}, r, "closed").find("send lag"), std::string::npos);
}

TEST(Reports, WritesAreReportedApart) {
  RunOptions o;
  o.writes.share = 0.1;
  RunResult r;
  r.seconds = 1;
  r.answered = 100;
  r.writes_sent = 11;
  r.writes_answered = 10;
  r.write_codes[1] = 9;
  r.write_codes[400] = 1;
  for (int i = 1; i <= 10; ++i) r.write_latency.Record(static_cast<uint64_t>(i) * 100000);
  std::string json = ToJson(o, r);
  EXPECT_NE(json.find("\"write_share\":0.100,\"writes_sent\":11,\"writes_answered\":10"),
            std::string::npos)
      << json;
  EXPECT_NE(json.find("\"write_codes\":{\"1\":9,\"400\":1}"), std::string::npos) << json;
  const std::string write_p99 = "\"write_latency_us\":{\"p50\":";
  size_t at = json.find(write_p99);
  ASSERT_NE(at, std::string::npos);
  double p50 = std::atof(json.c_str() + at + write_p99.size());
  EXPECT_GE(p50, 500.0);
  EXPECT_LE(p50, 500.0 * 1.01);
}

TEST(Requests, ResolutionRequestIsAWellFormedHandleMessage) {
  auto m = ResolutionRequest("88.100.1/SN1", 0x1234);
  ASSERT_EQ(m.size(), 20u + 24u + 4u + 12u + 8u + 4u);
  EXPECT_EQ(m[0], 2);
  EXPECT_EQ(m[1], 11);
  EXPECT_EQ(m[11], 0x34);
  EXPECT_EQ(m[19], m.size() - 20);
}

}  // namespace
}  // namespace idnode::loadgen
