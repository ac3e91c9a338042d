// The JSON API's routing and rendering, without sockets (the transcript comparison runs against a
// real process in tests/integration).
#include "idnode/http/http_server.h"

#include <gtest/gtest.h>

#include "registry_test_util.h"
#include "temp_dir.h"

namespace idnode::http {
namespace {

using registry::testing::Create;
using registry::testing::MakeValue;

TEST(DecodePercent, DecodesAndRefusesWhatCannotBeAHandle) {
  std::string out;
  EXPECT_TRUE(DecodePercent("20.500.12345%2Ftest1", &out));
  EXPECT_EQ(out, "20.500.12345/test1");
  EXPECT_TRUE(DecodePercent("a%252F", &out));
  EXPECT_EQ(out, "a%2F");  // decoded once only
  EXPECT_TRUE(DecodePercent("%E6%A0%87", &out));
  EXPECT_EQ(out, "\xe6\xa0\x87");
  EXPECT_FALSE(DecodePercent("a%00b", &out));   // NUL
  EXPECT_FALSE(DecodePercent("%C0%AF", &out));  // overlong '/'
  EXPECT_FALSE(DecodePercent("%zz", &out));
  EXPECT_FALSE(DecodePercent("%4", &out));
  EXPECT_FALSE(DecodePercent("%", &out));
}

class ApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cache::CacheOptions o;
    o.capacity_bytes = 1 << 20;
    o.shard_count = 4;
    cache_ = std::make_shared<cache::AnswerCache>(o);
    json_cache_ = std::make_shared<cache::AnswerCache>(o);
    registry::RegistryOptions options;
    options.storage.path = dir_.sub("data");
    options.storage.shard_count = 2;
    options.storage.sync_writes = false;
    options.cache = cache_;
    options.json_cache = json_cache_;
    registry_ = std::move(*registry::Registry::Open(std::move(options)));
    ASSERT_EQ(registry_->HomePrefix("88.100.1").code, protocol::ResponseCode::kSuccess);
    auto url = MakeValue(1, "URL", "https://example.org/x");
    url.set_timestamp(1795627007);
    ASSERT_EQ(registry_->Apply(Create("88.100.1/X", {url})).code, protocol::ResponseCode::kSuccess);
    resolver_ = std::make_unique<resolver::Resolver>(*registry_, cache_);
    api_ = std::make_unique<Api>(
        *resolver_, metrics_, [] { return true; }, json_cache_);
  }

  ::idnode::testing::TempDir dir_;
  std::shared_ptr<cache::AnswerCache> cache_, json_cache_;
  std::unique_ptr<registry::Registry> registry_;
  std::unique_ptr<resolver::Resolver> resolver_;
  metrics::MetricsHub metrics_;
  std::unique_ptr<Api> api_;
};

constexpr std::string_view kX =
    R"({"responseCode":1,"handle":"88.100.1/x","values":[{"index":1,"type":"URL","data":{"format":"string","value":"https://example.org/x"},"ttl":86400,"timestamp":"2026-11-25T17:16:47Z"}]})";

TEST_F(ApiTest, ResolvesAndServesTheSecondAnswerFromRenderedJson) {
  for (int i = 0; i < 2; ++i) {
    HttpResponse r = api_->Handle("GET", "/api/handles/88.100.1/x", false);
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.content_type, "application/json;charset=utf-8");
    EXPECT_EQ(r.body, kX);  // the handle as the client spelled it
  }
  EXPECT_GE(json_cache_->stats().hits, 1u);
}

TEST_F(ApiTest, AWriteIsSeenAtOnceThroughTheRenderedCache) {
  EXPECT_EQ(api_->Handle("GET", "/api/handles/88.100.1/X", false).status, 200u);
  ASSERT_EQ(
      registry_
          ->Apply(registry::testing::WithValues(registry::OpKind::kModifyValues, "88.100.1/X",
                                                {MakeValue(1, "URL", "https://example.org/new")}))
          .code,
      protocol::ResponseCode::kSuccess);
  EXPECT_NE(
      api_->Handle("GET", "/api/handles/88.100.1/X", false).body.find("https://example.org/new"),
      std::string::npos);
  // A prefix no longer homed is no longer answered from rendered JSON either.
  ASSERT_EQ(registry_->ForgetPrefix("88.100.1").code, protocol::ResponseCode::kSuccess);
  EXPECT_EQ(api_->Handle("GET", "/api/handles/88.100.1/X", false).status, 400u);
}

// A handle without a slash is its prefix handle ("88.100.1" is "0.NA/88.100.1"): its rendered
// JSON must be kept under the key writes invalidate, or a change would not be seen.
TEST_F(ApiTest, ASlashlessHandleIsCachedUnderItsPrefixHandle) {
  ASSERT_EQ(registry_->Apply(Create("0.NA/88.100.1", {MakeValue(1, "DESC", "the prefix")})).code,
            protocol::ResponseCode::kSuccess);
  auto first = api_->Handle("GET", "/api/handles/88.100.1", false);
  EXPECT_EQ(first.status, 200u);
  EXPECT_EQ(api_->Handle("GET", "/api/handles/88.100.1", false).body, first.body);  // cached
  ASSERT_EQ(registry_
                ->Apply(registry::testing::WithValues(registry::OpKind::kAddValues, "0.NA/88.100.1",
                                                      {MakeValue(7, "DESC", "added later")}))
                .code,
            protocol::ResponseCode::kSuccess);
  EXPECT_NE(api_->Handle("GET", "/api/handles/88.100.1", false).body.find("added later"),
            std::string::npos);
}

// Referrals answer 300 with the handle.net server's body (GsonUtility): the handle to look up and
// the values to follow.
TEST_F(ApiTest, ReferralsAnswer300WithTheReferralBody) {
  ASSERT_EQ(registry_->HomePrefix("0.NA").code, protocol::ResponseCode::kSuccess);
  ASSERT_EQ(registry_
                ->Apply(Create("0.NA/88.200", {MakeValue(1, "HS_SITE", "site"),
                                               MakeValue(2, "HS_SITE.PREFIX", "prefixes")}))
                .code,
            protocol::ResponseCode::kSuccess);
  auto service = api_->Handle("GET", "/api/handles/88.200.3/x", false);
  EXPECT_EQ(service.status, 300u);
  EXPECT_NE(service.body.find(R"("responseCode":302,"referralHandle":"0.NA/88.200.3","values":[)"),
            std::string::npos)
      << service.body;
  auto prefix = api_->Handle("GET", "/api/handles/0.NA/88.200.3", false);
  EXPECT_EQ(prefix.status, 300u);
  EXPECT_NE(prefix.body.find(R"({"responseCode":303,"values":[)"), std::string::npos)
      << prefix.body;
  EXPECT_EQ(prefix.body.find("referralHandle"), std::string::npos);
}

// Defect 2: a miss read RocksDB on the event loop. From memory the answer says it needs storage.
TEST_F(ApiTest, FromMemoryAMissAsksForStorage) {
  bool needs_storage = false;
  auto r =
      api_->Handle("GET", "/api/handles/88.100.1/cold", false, Api::Stage::kMemory, &needs_storage);
  EXPECT_TRUE(needs_storage);
  EXPECT_TRUE(r.body.empty());
  needs_storage = false;
  EXPECT_EQ(
      api_->Handle("GET", "/api/handles/88.100.1/cold", false, Api::Stage::kStorage, &needs_storage)
          .status,
      404u);
  EXPECT_FALSE(needs_storage);
  // Now the negative answer is cached: memory suffices.
  EXPECT_EQ(
      api_->Handle("GET", "/api/handles/88.100.1/cold", false, Api::Stage::kMemory, &needs_storage)
          .status,
      404u);
  EXPECT_FALSE(needs_storage);
}

TEST_F(ApiTest, StatusCodesAndFormats) {
  EXPECT_EQ(api_->Handle("GET", "/api/handles/88.100.1/none", false).body,
            R"({"responseCode":100,"handle":"88.100.1/none"})");
  EXPECT_EQ(api_->Handle("GET", "/api/handles/88.100.1/none", false).status, 404u);
  EXPECT_EQ(api_->Handle("GET", "/api/handles/88.100.1/X?type=NOPE", false).body,
            R"({"responseCode":200,"values":[],"handle":"88.100.1/X"})");
  auto not_here = api_->Handle("GET", "/api/handles/99.9/x", false);
  EXPECT_EQ(not_here.status, 400u);
  EXPECT_EQ(not_here.body,
            R"({"responseCode":301,"message":"That prefix doesn't live here","handle":"99.9/x"})");
  auto jsonp = api_->Handle("GET", "/api/handles/88.100.1/X?callback=cb", false);
  EXPECT_EQ(jsonp.content_type, "application/javascript;charset=utf-8");
  EXPECT_EQ(jsonp.body.substr(0, 3), "cb(");
  EXPECT_EQ(api_->Handle("GET", "/api/handles/88.100.1/X?callback=alert(1)", false).status, 400u);
  EXPECT_EQ(api_->Handle("GET", "/api/handles/88.100.1/X?index=1.5", false).status, 400u);
  EXPECT_NE(api_->Handle("GET", "/api/handles/88.100.1/X?pretty", false)
                .body.find("\n  \"responseCode\": 1"),
            std::string::npos);
  auto redirect = api_->Handle("GET", "/88.100.1/X", false);
  EXPECT_EQ(redirect.status, 302u);
  ASSERT_FALSE(redirect.headers.empty());
  EXPECT_EQ(redirect.headers[0],
            (std::pair<std::string, std::string>{"Location", "https://example.org/x"}));
  EXPECT_EQ(api_->Handle("GET", "/88.100.1/X?noredirect", false).status, 200u);
  EXPECT_EQ(api_->Handle("PUT", "/api/handles/88.100.1/X", false).status, 401u);
  EXPECT_EQ(api_->Handle("PUT", "/api/handles/88.100.1/X", true).status, 403u);
  EXPECT_EQ(api_->Handle("PATCH", "/api/handles/88.100.1/X", false).status, 405u);
  EXPECT_EQ(api_->Handle("GET", "/api/handles/88.100.1/%00", false).status, 400u);
  EXPECT_EQ(api_->Handle("GET", "/healthz", false).status, 200u);
  EXPECT_EQ(api_->Handle("GET", "/readyz", false).status, 200u);
  EXPECT_NE(api_->Handle("GET", "/metrics", false).body.find("idnode_requests_total"),
            std::string::npos);
}

TEST_F(ApiTest, AUrlWithALineBreakIsNeverALocation) {
  ASSERT_EQ(registry_
                ->Apply(registry::testing::Create(
                    "88.100.1/SPLIT", {MakeValue(1, "URL", "https://a.example/\r\nSet-Cookie: x=1"),
                                       MakeValue(2, "URL", "https://b.example/")}))
                .code,
            protocol::ResponseCode::kSuccess);
  auto redirect = api_->Handle("GET", "/88.100.1/SPLIT", false);
  EXPECT_EQ(redirect.status, 302u);
  ASSERT_FALSE(redirect.headers.empty());
  EXPECT_EQ(redirect.headers[0].second, "https://b.example/");
}

// ---- the browser's pages (http/ui.h) -----------------------------------------------------------

TEST_F(ApiTest, TheSearchBoxAndTheProxyPageShowTheOutcome) {
  ASSERT_EQ(registry_
                ->Apply(Create("88.100.1/S", {MakeValue(1, "URL", "https://example.org/s"),
                                              MakeValue(2, "DESC", "<script>x()</script>")}))
                .code,
            protocol::ResponseCode::kSuccess);
  auto found = api_->Handle("GET", "/?id=88.100.1%2FS", false);
  EXPECT_EQ(found.status, 200u);
  EXPECT_EQ(found.content_type, "text/html;charset=utf-8");
  EXPECT_NE(found.body.find("<table id=\"values\">"), std::string::npos);
  EXPECT_NE(found.body.find("&lt;script&gt;x()&lt;/script&gt;"), std::string::npos);
  EXPECT_EQ(found.body.find("<script>x()"), std::string::npos);
  EXPECT_NE(found.body.find("id=\"record-json\""), std::string::npos);
  EXPECT_NE(found.body.find("&quot;responseCode&quot;: 1"), std::string::npos);
  // The search never redirects; the proxy form does, unless asked not to.
  EXPECT_EQ(api_->Handle("GET", "/88.100.1/S", false).status, 302u);
  EXPECT_EQ(api_->Handle("GET", "/88.100.1/S?noredirect", false).body, found.body);

  auto missing = api_->Handle("GET", "/?id=88.100.1/NONE", false);
  EXPECT_EQ(missing.status, 404u);
  EXPECT_NE(missing.body.find("data-outcome=\"not-found\""), std::string::npos);
  auto elsewhere = api_->Handle("GET", "/99.9/x?noredirect", false);
  EXPECT_EQ(elsewhere.status, 400u);  // the proxy's status for RC 301, as before the page
  EXPECT_NE(elsewhere.body.find("data-outcome=\"not-homed\""), std::string::npos);
  for (std::string target : {"/?id=no-slash", "/?id=%3Cscript%3E", "/88.100.1/%zz"}) {
    auto invalid = api_->Handle("GET", target, false);
    EXPECT_EQ(invalid.status, 400u) << target;
    EXPECT_NE(invalid.body.find("data-outcome=\"invalid\""), std::string::npos) << target;
    EXPECT_EQ(invalid.body.find("<script>"), std::string::npos) << target;
  }
  // A mistake in the query is said, not dropped.
  auto bad_query = api_->Handle("GET", "/?id=88.100.1/S&index=x", false);
  EXPECT_EQ(bad_query.status, 400u);
  EXPECT_NE(bad_query.body.find("index must be an integer"), std::string::npos);
  auto bare = api_->Handle("GET", "/", false);
  EXPECT_EQ(bare.status, 200u);
  EXPECT_NE(bare.body.find("<label for=\"q\">"), std::string::npos);
  EXPECT_EQ(bare.body.find("id=\"message\""), std::string::npos);
}

TEST_F(ApiTest, TheProxyNeverRedirectsToCode) {
  ASSERT_EQ(registry_
                ->Apply(Create("88.100.1/J", {MakeValue(1, "URL", "javascript:alert(1)"),
                                              MakeValue(2, "URL", "https://safe.example/")}))
                .code,
            protocol::ResponseCode::kSuccess);
  auto redirect = api_->Handle("GET", "/88.100.1/J", false);
  EXPECT_EQ(redirect.status, 302u);
  ASSERT_FALSE(redirect.headers.empty());
  EXPECT_EQ(redirect.headers[0].second, "https://safe.example/");
  ASSERT_EQ(
      registry_->Apply(Create("88.100.1/K", {MakeValue(1, "URL", "javascript:alert(1)")})).code,
      protocol::ResponseCode::kSuccess);
  auto page = api_->Handle("GET", "/88.100.1/K", false);
  EXPECT_EQ(page.status, 200u);  // the values page: the URL shown as text, never a link
  EXPECT_EQ(page.body.find("href=\"javascript"), std::string::npos);
}

TEST_F(ApiTest, TheDashboardAndItsNumbers) {
  EXPECT_EQ(api_->Handle("GET", "/ui/status", false).status, 200u);
  EXPECT_EQ(api_->Handle("POST", "/ui/status", false).status, 405u);
  EXPECT_EQ(api_->Handle("GET", "/ui/assets/status.js", false).status, 200u);
  EXPECT_EQ(api_->Handle("GET", "/api/stats", false).status, 404u);  // nothing set yet
  api_->SetStats([] { return std::string(R"({"series":[]})"); }, false);
  // Read off the event loop: the memory stage hands it to storage.
  bool needs_storage = false;
  api_->Handle("GET", "/api/stats", false, Api::Stage::kMemory, &needs_storage);
  EXPECT_TRUE(needs_storage);
  auto stats = api_->Handle("GET", "/api/stats", false);
  EXPECT_EQ(stats.status, 200u);
  EXPECT_EQ(stats.body, R"({"series":[]})");
}

TEST_F(ApiTest, BehindAdminAuthTheDashboardWantsCredentialsOverHttps) {
  api_->SetStats([] { return std::string("{}"); }, true);
  for (std::string path : {"/ui/status", "/api/stats"}) {
    EXPECT_EQ(api_->Handle("GET", path, false).status, 401u) << path;
    RequestContext plain;
    plain.authorization = "Basic eDp5";
    EXPECT_EQ(api_->Handle("GET", path, true, Api::Stage::kStorage, nullptr, &plain).status, 403u)
        << path;
  }
  // Other spellings are not the dashboard (they are identifiers under a prefix "ui").
  for (std::string path : {"/ui/status/", "/ui//status", "/%75i/status", "/UI/status"}) {
    auto r = api_->Handle("GET", path, false);
    EXPECT_EQ(r.body.find("id=\"rps-total\""), std::string::npos) << path;
  }
  EXPECT_EQ(api_->Handle("HEAD", "/api/stats?x=1", false).status, 401u);
  // The resolver page stays public.
  EXPECT_EQ(api_->Handle("GET", "/", false).status, 200u);
}

}  // namespace
}  // namespace idnode::http
