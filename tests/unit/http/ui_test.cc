// The resolver page's and the dashboard's HTML: every value escaped, links only to safe targets,
// standard value types readable, each outcome's message and status; and their routes in the Api.
#include "idnode/http/ui.h"

#include <gtest/gtest.h>

#include "idnode/http/http_server.h"
#include "idnode/protocol/value_types.h"
#include "registry_test_util.h"

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

}  // namespace
}  // namespace idnode::http
