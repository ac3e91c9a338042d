// The resolver page's and the dashboard's HTML: every value escaped, links only to safe targets,
// standard value types readable, each outcome's message and status; and their routes in the Api.
#include "idnode/http/ui.h"

#include <gtest/gtest.h>

#include "idnode/http/http_server.h"
#include "idnode/protocol/value_types.h"
#include "registry_test_util.h"
#include "temp_dir.h"

namespace idnode::http {
namespace {

using registry::testing::Create;
using registry::testing::MakeValue;

proto::Value Stored(int32_t index, std::string type, std::string data) {
  proto::Value v;
  v.set_index(index);
  v.set_type(std::move(type));
  v.set_data(std::move(data));
  v.set_ttl(86400);
  v.set_timestamp(1795627007);
  return v;
}

TEST(UiEscape, EscapesEveryMarkupCharacter) {
  EXPECT_EQ(ui::HtmlEscape("<script>a&b\"c'd</script>"),
            "&lt;script&gt;a&amp;b&quot;c&#39;d&lt;/script&gt;");
  EXPECT_EQ(ui::HtmlEscape(std::string_view("a\0b", 3)), "a&#xFFFD;b");
}

TEST(UiValues, UrlsBecomeLinksOnlyWithSafeSchemes) {
  EXPECT_EQ(ui::RenderValueData(Stored(1, "URL", "https://example.org/a?b=1&c=2")),
            "<a class=\"value-link\" href=\"https://example.org/a?b=1&amp;c=2\" rel=\"noopener "
            "noreferrer\">https://example.org/a?b=1&amp;c=2</a>");
  for (std::string bad : {"javascript:alert(1)", "JaVaScRiPt:alert(1)", "data:text/html,<b>x</b>",
                          "vbscript:x", "http://a.example/\r\nx", " https://a.example/"}) {
    const std::string html = ui::RenderValueData(Stored(1, "URL", bad));
    EXPECT_EQ(html.find("<a "), std::string::npos) << bad;
    EXPECT_EQ(html.find("<b>"), std::string::npos) << bad;
  }
  // A quote cannot leave the attribute.
  const std::string quoted = ui::RenderValueData(Stored(1, "URL", "https://a.example/\"onclick=x"));
  EXPECT_NE(quoted.find("href=\"https://a.example/&quot;onclick=x\""), std::string::npos);
}

TEST(UiValues, IdentifierLinksStayOnThisNode) {
  // An HS_SERV naming "//evil.example/x" must not become a link to another host.
  const std::string html = ui::RenderValueData(Stored(1, "HS_SERV", "//evil.example/x"));
  EXPECT_EQ(html.find("href=\"//"), std::string::npos) << html;
  EXPECT_NE(html.find("href=\"/%2F/evil.example/x?noredirect\""), std::string::npos) << html;
}

TEST(UiValues, LongTextIsCutWhereAPageStaysSmall) {
  const std::string html = ui::RenderValueData(Stored(2, "DESC", std::string(100000, '"')));
  EXPECT_LT(html.size(), 4096u * 6 + 200);
  EXPECT_NE(html.find("100000 bytes"), std::string::npos);
}

TEST(UiValues, RedirectsNeverGoToCode) {
  EXPECT_TRUE(ui::RedirectableUrl("https://example.org/x"));
  EXPECT_TRUE(ui::RedirectableUrl("doi:10.1000/182"));
  for (std::string bad : {"javascript:alert(1)", " JavaScript:alert(1)", "java\tscript:x",
                          "data:text/html,x", "VBScript:x", "https://a/\r\nx", ""}) {
    EXPECT_FALSE(ui::RedirectableUrl(bad)) << bad;
  }
}

TEST(UiValues, TextIsEscapedAndBinaryShownAsHex) {
  EXPECT_EQ(ui::RenderValueData(Stored(2, "DESC", "<script>window.x=1</script>")),
            "<span class=\"text\">&lt;script&gt;window.x=1&lt;/script&gt;</span>");
  const std::string binary = ui::RenderValueData(Stored(3, "BLOB", std::string("\x01\x02\xff", 3)));
  EXPECT_NE(binary.find("3 bytes: <code>0102ff</code>"), std::string::npos) << binary;
  const std::string big = ui::RenderValueData(Stored(3, "BLOB", std::string(1000, '\x01')));
  EXPECT_LT(big.size(), 700u);  // bounded
  EXPECT_NE(big.find("1000 bytes"), std::string::npos);
}

TEST(UiValues, StandardTypesAreReadable) {
  protocol::AdminRecord admin;
  admin.admin_handle = "0.NA/88.100.1";
  admin.admin_index = 300;
  admin.permissions =
      protocol::admin_permission::kAddHandle | protocol::admin_permission::kReadValue;
  auto admin_bytes = protocol::EncodeAdminRecord(admin);
  const std::string a = ui::RenderValueData(
      Stored(100, "HS_ADMIN", std::string(admin_bytes.begin(), admin_bytes.end())));
  EXPECT_NE(a.find("300:<a href=\"/0.NA/88.100.1?noredirect\">0.NA/88.100.1</a>"),
            std::string::npos)
      << a;
  EXPECT_NE(a.find("may add handle, read value"), std::string::npos) << a;

  protocol::SiteInfo site;
  site.serial_number = 7;
  protocol::SiteServer server;
  server.address[10] = 0;
  server.address[12] = 192;
  server.address[13] = 0;
  server.address[14] = 2;
  server.address[15] = 9;
  server.interfaces = {
      {protocol::interface_type::kBoth, protocol::interface_protocol::kTcp, 2641},
      {protocol::interface_type::kQuery, protocol::interface_protocol::kHttp, 8000}};
  site.servers.push_back(server);
  auto site_bytes = protocol::EncodeSiteInfo(site);
  const std::string s =
      ui::RenderValueData(Stored(1, "HS_SITE", std::string(site_bytes.begin(), site_bytes.end())));
  EXPECT_NE(s.find("Site serial 7, primary"), std::string::npos) << s;
  EXPECT_NE(s.find("192.0.2.9"), std::string::npos) << s;
  EXPECT_NE(s.find("TCP 2641 (query, admin)"), std::string::npos) << s;
  EXPECT_NE(s.find("HTTP 8000 (query)"), std::string::npos) << s;

  std::vector<protocol::ValueReference> members = {{"88.100.1/<b>", 300}};
  auto list = protocol::EncodeValueList(members);
  const std::string l =
      ui::RenderValueData(Stored(1, "HS_VLIST", std::string(list.begin(), list.end())));
  EXPECT_NE(l.find("300:<a href=\"/88.100.1/%3Cb%3E?noredirect\">88.100.1/&lt;b&gt;</a>"),
            std::string::npos)
      << l;
}

TEST(UiPages, EveryPageCarriesAPolicyThatRunsNoInlineScript) {
  for (const auto& r : {ui::ResolverPage({}), ui::StatusPage()}) {
    bool csp = false;
    for (const auto& [name, value] : r.headers) {
      if (name == "Content-Security-Policy") {
        csp = value.find("script-src 'self'") != std::string::npos &&
              value.find("unsafe-inline") == std::string::npos;
      }
    }
    EXPECT_TRUE(csp);
    EXPECT_EQ(r.body.find("<script>"), std::string::npos);  // scripts only by src
    EXPECT_NE(r.body.find("<html lang=\"en\">"), std::string::npos);
  }
  EXPECT_EQ(ui::Asset("ui.css").status, 200u);
  EXPECT_EQ(ui::Asset("ui.css").content_type, "text/css;charset=utf-8");
  EXPECT_FALSE(ui::Asset("status.js").body.empty());
  EXPECT_EQ(ui::Asset("../etc/passwd").status, 404u);
}

class UiRoutesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cache::CacheOptions o;
    o.capacity_bytes = 1 << 20;
    o.shard_count = 4;
    cache_ = std::make_shared<cache::AnswerCache>(o);
    registry::RegistryOptions options;
    options.storage.path = dir_.sub("data");
    options.storage.shard_count = 2;
    options.storage.sync_writes = false;
    options.cache = cache_;
    registry_ = std::move(*registry::Registry::Open(std::move(options)));
    ASSERT_EQ(registry_->HomePrefix("88.100.1").code, protocol::ResponseCode::kSuccess);
    ASSERT_EQ(registry_
                  ->Apply(Create("88.100.1/X", {MakeValue(1, "URL", "https://example.org/x"),
                                                MakeValue(2, "DESC", "<script>x()</script>")}))
                  .code,
              protocol::ResponseCode::kSuccess);
    resolver_ = std::make_unique<resolver::Resolver>(*registry_, cache_);
    api_ = std::make_unique<Api>(*resolver_, metrics_, [] { return true; });
  }

  ::idnode::testing::TempDir dir_;
  std::shared_ptr<cache::AnswerCache> cache_;
  std::unique_ptr<registry::Registry> registry_;
  std::unique_ptr<resolver::Resolver> resolver_;
  metrics::MetricsHub metrics_;
  std::unique_ptr<Api> api_;
};

TEST_F(UiRoutesTest, TheSearchBoxAndTheProxyPageShowTheOutcome) {
  auto found = api_->Handle("GET", "/?id=88.100.1%2FX", false);
  EXPECT_EQ(found.status, 200u);
  EXPECT_EQ(found.content_type, "text/html;charset=utf-8");
  EXPECT_NE(found.body.find("<table id=\"values\">"), std::string::npos);
  EXPECT_NE(found.body.find("&lt;script&gt;x()&lt;/script&gt;"), std::string::npos);
  EXPECT_EQ(found.body.find("<script>x()"), std::string::npos);
  EXPECT_NE(found.body.find("id=\"record-json\""), std::string::npos);
  EXPECT_NE(found.body.find("&quot;responseCode&quot;: 1"), std::string::npos);
  // The search never redirects; the proxy form does, unless asked not to.
  EXPECT_EQ(api_->Handle("GET", "/88.100.1/X", false).status, 302u);
  EXPECT_EQ(api_->Handle("GET", "/88.100.1/X?noredirect", false).body, found.body);

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
  auto bad_query = api_->Handle("GET", "/?id=88.100.1/X&index=x", false);
  EXPECT_EQ(bad_query.status, 400u);
  EXPECT_NE(bad_query.body.find("index must be an integer"), std::string::npos);
  auto bare = api_->Handle("GET", "/", false);
  EXPECT_EQ(bare.status, 200u);
  EXPECT_NE(bare.body.find("<label for=\"q\">"), std::string::npos);
  EXPECT_EQ(bare.body.find("id=\"message\""), std::string::npos);
}

TEST_F(UiRoutesTest, TheProxyNeverRedirectsToCode) {
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

TEST_F(UiRoutesTest, TheDashboardAndItsNumbers) {
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

TEST_F(UiRoutesTest, BehindAdminAuthTheDashboardWantsCredentialsOverHttps) {
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
