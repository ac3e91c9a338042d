#include "idnode/http/ui.h"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <span>

#include "idnode/protocol/constants.h"
#include "idnode/protocol/utf8.h"
#include "idnode/protocol/value_types.h"
#include "idnode/registry/json_records.h"
#include "idnode/registry/values.h"

namespace idnode::http::ui {

namespace assets {
// src/http/assets, compiled in by src/http/embed_assets.cmake.
extern const std::string_view ui_css;
extern const std::string_view resolver_js;
extern const std::string_view status_js;
extern const std::string_view version;
}  // namespace assets

namespace {

constexpr std::string_view kHtml = "text/html;charset=utf-8";
// Binary data shown as hex up to this many bytes (a value may be up to the message size).
constexpr size_t kMaxHexBytes = 256;
// Text up to this many bytes (a value may be as large as a message: a page stays within a small
// multiple of the record's size).
constexpr size_t kMaxTextBytes = 4096;
// The JSON API's answer is embedded for "copy as JSON" up to this size; past it, the page links it.
constexpr size_t kMaxEmbeddedJson = 64 * 1024;

std::string Hex(std::span<const uint8_t> bytes, size_t limit) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  const size_t n = std::min(bytes.size(), limit);
  out.reserve(n * 2 + 8);
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kDigits[bytes[i] >> 4]);
    out.push_back(kDigits[bytes[i] & 15]);
  }
  if (bytes.size() > n) out += "…";
  return out;
}

std::span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Text a person can read: valid UTF-8 without control characters other than tab and line breaks.
bool Readable(std::string_view s) {
  if (!protocol::IsValidUtf8(s)) return false;
  for (unsigned char c : s) {
    if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f) return false;
  }
  return true;
}

// Only these become links: a value is data, and javascript: or data: targets would run it.
bool SafeLinkTarget(std::string_view url) {
  if (url.find_first_of(std::string_view("\r\n\t\0 ", 5)) != std::string_view::npos) return false;
  for (std::string_view scheme : {"http://", "https://", "ftp://", "mailto:"}) {
    if (url.size() > scheme.size()) {
      bool same = true;
      for (size_t i = 0; i < scheme.size() && same; ++i) {
        same = std::tolower(static_cast<unsigned char>(url[i])) == scheme[i];
      }
      if (same) return true;
    }
  }
  return false;
}

// The path of an identifier's page (or API answer) on this node: percent-encoded but for the
// characters a handle usually has.
std::string HandlePath(std::string_view handle) {
  std::string target;
  for (size_t i = 0; i < handle.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(handle[i]);
    // A leading '/' stays encoded: "//host/x" would be a link to another site.
    if (std::isalnum(c) || c == '.' || (c == '/' && i > 0) || c == '-' || c == '_' || c == '~') {
      target.push_back(static_cast<char>(c));
    } else {
      char buf[4];
      std::snprintf(buf, sizeof(buf), "%%%02X", c);
      target += buf;
    }
  }
  return target;
}

// A link to another identifier's page on this node.
std::string HandleLink(std::string_view handle) {
  return "<a href=\"/" + HtmlEscape(HandlePath(handle)) + "?noredirect\">" + HtmlEscape(handle) +
         "</a>";
}

std::string AdminPermissionNames(uint16_t permissions) {
  static constexpr std::pair<uint16_t, const char*> kNames[] = {
      {protocol::admin_permission::kAddHandle, "add handle"},
      {protocol::admin_permission::kDeleteHandle, "delete handle"},
      {protocol::admin_permission::kAddNa, "add prefix"},
      {protocol::admin_permission::kDeleteNa, "delete prefix"},
      {protocol::admin_permission::kModifyValue, "modify value"},
      {protocol::admin_permission::kRemoveValue, "remove value"},
      {protocol::admin_permission::kAddValue, "add value"},
      {protocol::admin_permission::kModifyAdmin, "modify admin"},
      {protocol::admin_permission::kRemoveAdmin, "remove admin"},
      {protocol::admin_permission::kAddAdmin, "add admin"},
      {protocol::admin_permission::kReadValue, "read value"},
      {protocol::admin_permission::kListHandles, "list handles"}};
  std::string out;
  for (const auto& [bit, name] : kNames) {
    if ((permissions & bit) == 0) continue;
    if (!out.empty()) out += ", ";
    out += name;
  }
  return out.empty() ? "none" : out;
}

std::string SiteHtml(const protocol::SiteInfo& site) {
  std::string out =
      "<div class=\"site\">Site serial " + std::to_string(site.serial_number) +
      (site.is_primary() ? ", primary" : ", mirror") +
      (site.is_multi_primary() ? ", multi-primary" : "") + ", protocol " +
      std::to_string(site.protocol_major) + "." + std::to_string(site.protocol_minor) + "; " +
      std::to_string(site.servers.size()) + (site.servers.size() == 1 ? " server" : " servers");
  for (const auto& a : site.attributes) {
    out += "; " + HtmlEscape(a.name) + "=" + HtmlEscape(a.value);
  }
  out += "<ul class=\"servers\">";
  static constexpr const char* kProtocols[] = {"UDP", "TCP", "HTTP", "HTTPS"};
  for (const auto& s : site.servers) {
    out += "<li><span class=\"address\">" + HtmlEscape(protocol::SiteAddressText(s.address)) +
           "</span>";
    for (const auto& i : s.interfaces) {
      out += " <span class=\"interface\">" + std::string(kProtocols[i.protocol % 4]) + " " +
             std::to_string(i.port);
      const bool query = (i.type & protocol::interface_type::kQuery) != 0;
      const bool admin = (i.type & protocol::interface_type::kAdmin) != 0;
      out += query && admin ? " (query, admin)" : query ? " (query)" : admin ? " (admin)" : "";
      out += "</span>";
    }
    out += "</li>";
  }
  return out + "</ul></div>";
}

std::string PublicKeyHtml(const proto::Value& value) {
  const auto bytes = Bytes(value.data());
  // Every HS_PUBKEY starts with its key type as a length-prefixed string (HANDLE.md §1.7).
  std::string type = "unknown type";
  if (bytes.size() >= 4) {
    const uint32_t n = uint32_t{bytes[0]} << 24 | uint32_t{bytes[1]} << 16 |
                       uint32_t{bytes[2]} << 8 | uint32_t{bytes[3]};
    if (n > 0 && n <= 64 && n <= bytes.size() - 4) {
      std::string_view t(reinterpret_cast<const char*>(bytes.data() + 4), n);
      if (Readable(t)) type = std::string(t);
    }
  }
  std::string size;
  auto key = protocol::DecodePublicKey(bytes);
  if (key.ok()) {
    std::span<const uint8_t> magnitude;
    if (const auto* rsa = std::get_if<protocol::RsaPublicKey>(&key->key)) magnitude = rsa->modulus;
    if (const auto* dsa = std::get_if<protocol::DsaPublicKey>(&key->key)) magnitude = dsa->p;
    while (!magnitude.empty() && magnitude.front() == 0) magnitude = magnitude.subspan(1);
    if (!magnitude.empty()) {
      size_t bits = magnitude.size() * 8;
      for (uint8_t top = magnitude.front(); (top & 0x80) == 0; top <<= 1) --bits;
      size = ", " + std::to_string(bits) + " bits";
    }
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_size = 0;
  std::string fingerprint;
  if (EVP_Digest(bytes.data(), bytes.size(), digest, &digest_size, EVP_sha256(), nullptr) == 1) {
    fingerprint = Hex({digest, digest_size}, digest_size);
  }
  return "<span class=\"key\">Public key " + HtmlEscape(type) + size +
         "</span><br><span class=\"fingerprint\">SHA-256 " + fingerprint + "</span>";
}

std::string TextHtml(std::string_view text) {
  if (text.size() <= kMaxTextBytes) return "<span class=\"text\">" + HtmlEscape(text) + "</span>";
  // Cut on a character boundary; the whole value is in the JSON API's answer.
  size_t cut = kMaxTextBytes;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return "<span class=\"text\">" + HtmlEscape(text.substr(0, cut)) +
         "…</span> <span class=\"help\">(" + std::to_string(text.size()) +
         " bytes; the whole value is in the JSON API)</span>";
}

std::string BinaryHtml(std::span<const uint8_t> bytes) {
  return "<span class=\"binary\">" + std::to_string(bytes.size()) + " bytes: <code>" +
         Hex(bytes, kMaxHexBytes) + "</code></span>";
}

std::string TtlText(const proto::Value& v) {
  if (v.ttl_absolute()) {
    const std::string iso = registry::FormatIsoTime(static_cast<uint32_t>(v.ttl()));
    return "until <time datetime=\"" + iso + "\">" + iso + "</time>";
  }
  const int64_t s = v.ttl();
  std::string out = std::to_string(s) + " s";
  if (s >= 86400 && s % 86400 == 0) {
    out += " (" + std::to_string(s / 86400) + (s == 86400 ? " day)" : " days)");
  } else if (s >= 3600 && s % 3600 == 0) {
    out += " (" + std::to_string(s / 3600) + (s == 3600 ? " hour)" : " hours)");
  } else if (s >= 60 && s % 60 == 0) {
    out += " (" + std::to_string(s / 60) + " min)";
  }
  return out;
}

const char* Head() {
  return "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
         "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
         "<meta name=\"color-scheme\" content=\"light dark\">";
}

std::string AssetLink(std::string_view name) {
  return "/ui/assets/" + std::string(name) + "?v=" + std::string(assets::version);
}

std::string PageStart(std::string_view title, std::string_view script) {
  std::string out = Head();
  out += "<title>" + HtmlEscape(title) + "</title><link rel=\"stylesheet\" href=\"" +
         AssetLink("ui.css") + "\">";
  if (!script.empty()) out += "<script src=\"" + AssetLink(script) + "\" defer></script>";
  out +=
      "</head><body><a class=\"skip\" href=\"#main\">Skip to content</a>"
      "<header><nav aria-label=\"idnode\"><a class=\"brand\" href=\"/\">idnode</a>"
      "<a href=\"/\">Resolve</a><a href=\"/ui/status\">Status</a></nav></header>"
      "<main id=\"main\" tabindex=\"-1\">";
  return out;
}

constexpr std::string_view kPageEnd = "</main></body></html>\n";

std::string SearchForm(std::string_view handle) {
  return "<h1>Resolve an identifier</h1>"
         "<form id=\"search\" class=\"search\" role=\"search\" action=\"/\" method=\"get\">"
         "<label for=\"q\">Identifier</label>"
         "<div class=\"row\"><input id=\"q\" name=\"id\" type=\"search\" required "
         "maxlength=\"4096\" autocomplete=\"off\" spellcheck=\"false\" "
         "placeholder=\"88.100.1/SN0001\" aria-describedby=\"q-help\" value=\"" +
         HtmlEscape(handle) +
         "\"><button type=\"submit\">Resolve</button></div>"
         "<p id=\"q-help\" class=\"help\">A prefix and a suffix: <code>prefix/suffix</code>. "
         "Prefix handles are <code>0.NA/prefix</code>.</p></form>";
}

std::string Message(std::string_view outcome, std::string_view title, const std::string& body) {
  return "<div id=\"message\" class=\"message " + std::string(outcome) +
         "\" role=\"alert\" data-outcome=\"" + std::string(outcome) + "\"><h2>" +
         HtmlEscape(title) + "</h2>" + body + "</div>";
}

std::string ValuesTable(std::string_view handle,
                        const google::protobuf::RepeatedPtrField<proto::Value>& values,
                        std::string_view table_id) {
  std::string out = "<div class=\"table-wrap\"><table id=\"" + std::string(table_id) +
                    "\"><caption>Values of " + HtmlEscape(handle) +
                    "</caption><thead><tr><th scope=\"col\">Index</th><th scope=\"col\">Type</th>"
                    "<th scope=\"col\">Data</th><th scope=\"col\">Timestamp</th>"
                    "<th scope=\"col\">TTL</th></tr></thead><tbody>";
  for (const auto& v : values) {
    const std::string iso = registry::FormatIsoTime(v.timestamp());
    out += "<tr data-index=\"" + std::to_string(v.index()) + "\"><td class=\"index\">" +
           std::to_string(v.index()) + "</td><td class=\"type\">" + HtmlEscape(v.type()) +
           "</td><td class=\"data\">" + RenderValueData(v) +
           "</td><td class=\"timestamp\"><time datetime=\"" + iso + "\">" + iso +
           "</time></td><td class=\"ttl\">" + TtlText(v) + "</td></tr>";
  }
  return out + "</tbody></table></div>";
}

// Where a referral points: the servers of its HS_SITE values, or the handle of its HS_SERV.
std::string ReferralBody(const Lookup& lookup) {
  std::string out;
  if (lookup.values != nullptr) {
    for (const auto& v : *lookup.values) {
      if (registry::TypeMatches("HS_SITE", v.type()) ||
          registry::TypeMatches("HS_SITE.6", v.type())) {
        auto site = protocol::DecodeSiteInfo(Bytes(v.data()));
        if (site.ok()) out += SiteHtml(*site);
      }
    }
  }
  if (!lookup.referral_handle.empty()) {
    out += "<p>Its service is described by " + HandleLink(lookup.referral_handle) + ".</p>";
  }
  if (out.empty()) out = "<p>The referral names no server.</p>";
  return "<p>This node does not hold <strong>" + HtmlEscape(lookup.handle) +
         "</strong>: its prefix is delegated. Ask the delegate:</p>" + out;
}

}  // namespace

std::string HtmlEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 16);
  for (char c : s) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      case '\0':
        out += "&#xFFFD;";  // a NUL in a page would end some parsers' view of it
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string RenderValueData(const proto::Value& v) {
  const std::string& data = v.data();
  const auto bytes = Bytes(data);
  if (registry::TypeMatches("URL", v.type()) && Readable(data)) {
    if (SafeLinkTarget(data)) {
      return "<a class=\"value-link\" href=\"" + HtmlEscape(data) +
             "\" rel=\"noopener noreferrer\">" + HtmlEscape(data) + "</a>";
    }
    return TextHtml(data);
  }
  if (registry::TypeMatches("EMAIL", v.type()) && Readable(data) &&
      data.find_first_of(" <>\"?&/:") == std::string::npos && data.find('@') != std::string::npos) {
    return "<a class=\"value-link\" href=\"mailto:" + HtmlEscape(data) + "\">" + HtmlEscape(data) +
           "</a>";
  }
  if (v.type() == protocol::kTypeAdmin) {
    auto admin = protocol::DecodeAdminRecord(bytes);
    if (admin.ok()) {
      return "<span class=\"admin\">Administrator " +
             std::string(admin->admin_index == 0 ? "any index of "
                                                 : std::to_string(admin->admin_index) + ":") +
             HandleLink(admin->admin_handle) + "<br><span class=\"permissions\">may " +
             HtmlEscape(AdminPermissionNames(admin->permissions)) + "</span></span>";
    }
  }
  if (v.type() == protocol::kTypeSite || v.type() == protocol::kTypeSite6 ||
      v.type() == protocol::kTypeSitePrefix) {
    auto site = protocol::DecodeSiteInfo(bytes);
    if (site.ok()) return SiteHtml(*site);
  }
  if (v.type() == protocol::kTypeValueList) {
    auto members = protocol::DecodeValueList(bytes);
    if (members.ok()) {
      std::string out = "<ul class=\"vlist\">";
      for (const auto& m : *members) {
        out += "<li>" + std::to_string(m.index) + ":" + HandleLink(m.handle) + "</li>";
      }
      return out + "</ul>";
    }
  }
  if (v.type() == protocol::kTypePublicKey) return PublicKeyHtml(v);
  if ((v.type() == protocol::kTypeService || v.type() == "HS_SERV.PREFIX") && Readable(data) &&
      !data.empty()) {
    return HandleLink(data);
  }
  if (Readable(data)) return TextHtml(data);
  return BinaryHtml(bytes);
}

bool RedirectableUrl(std::string_view url) {
  if (url.empty() || url.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos)
    return false;
  // Schemes are case-insensitive, and browsers skip leading spaces and controls before them.
  size_t start = 0;
  while (start < url.size() && static_cast<unsigned char>(url[start]) <= 0x20) ++start;
  std::string scheme;
  for (size_t i = start; i < url.size() && i < start + 16 && url[i] != ':'; ++i) {
    const unsigned char c = static_cast<unsigned char>(url[i]);
    if (c == '\t') continue;  // "java\tscript:" is javascript: to a URL parser
    scheme.push_back(static_cast<char>(std::tolower(c)));
  }
  return scheme != "javascript" && scheme != "vbscript" && scheme != "data";
}

void AddPageHeaders(HttpResponse* r) {
  // No inline script, no script, style or image from elsewhere, no framing: an escaped value that
  // somehow became markup still could not run.
  r->headers.push_back({"Content-Security-Policy",
                        "default-src 'none'; script-src 'self'; style-src 'self'; "
                        "img-src 'self'; connect-src 'self'; form-action 'self'; "
                        "base-uri 'none'; frame-ancestors 'none'"});
  r->headers.push_back({"X-Content-Type-Options", "nosniff"});
  r->headers.push_back({"Referrer-Policy", "no-referrer"});
  r->headers.push_back({"Cache-Control", "no-store"});
}

HttpResponse ResolverPage(const Lookup& lookup) {
  HttpResponse r;
  r.content_type = kHtml;
  const bool asked = lookup.outcome != Outcome::kNone;
  std::string body = PageStart(asked ? std::string(lookup.handle) + " · idnode" : "idnode resolver",
                               "resolver.js");
  body += SearchForm(lookup.handle);
  body += "<section id=\"result\" aria-live=\"polite\">";
  const std::string code = lookup.response_code == 0
                               ? std::string()
                               : " <span class=\"code\">(response code " +
                                     std::to_string(lookup.response_code) + ")</span>";
  switch (lookup.outcome) {
    case Outcome::kNone:
      break;
    case Outcome::kFound: {
      r.status = 200;
      body += "<h2 id=\"result-title\">" + HtmlEscape(lookup.handle) + "</h2>";
      if (lookup.values != nullptr) body += ValuesTable(lookup.handle, *lookup.values, "values");
      const bool embed = lookup.json.size() <= kMaxEmbeddedJson;
      body += "<div class=\"actions\">";
      if (embed) {
        body +=
            "<button id=\"copy-json\" type=\"button\" hidden>Copy as JSON</button>"
            "<span id=\"copy-status\" role=\"status\"></span>";
      }
      body += "<a href=\"/api/handles/" + HtmlEscape(HandlePath(lookup.handle)) +
              "?pretty\">JSON API</a></div>";
      if (embed) {
        body += "<details><summary>JSON</summary><pre id=\"record-json\">" +
                HtmlEscape(lookup.json) + "</pre></details>";
      }
      break;
    }
    case Outcome::kNotFound:
      r.status = 404;
      body += Message("not-found", "Not found",
                      "<p>No identifier <strong>" + HtmlEscape(lookup.handle) +
                          "</strong> is registered here" + code + ".</p>");
      break;
    case Outcome::kReferred:
      r.status = 200;
      body += Message("referred", "Not homed here", ReferralBody(lookup) + "<p>" + code + "</p>");
      break;
    case Outcome::kNotHomed:
      r.status = 404;
      body += Message(
          "not-homed", "Not homed here",
          "<p>This node does not serve <strong>" + HtmlEscape(lookup.handle) + "</strong>" + code +
              "." +
              (lookup.message.empty() ? std::string() : " " + HtmlEscape(lookup.message) + ".") +
              "</p>");
      break;
    case Outcome::kInvalid:
      r.status = 400;
      body += Message("invalid", "Not a valid identifier",
                      "<p><strong>" + HtmlEscape(lookup.handle) + "</strong> is not an identifier" +
                          code +
                          (lookup.message.empty() ? std::string(".")
                                                  : ": " + HtmlEscape(lookup.message) + ".") +
                          " An identifier is a prefix, a slash and a suffix, such as "
                          "<code>88.100.1/SN0001</code>.</p>");
      break;
    case Outcome::kError:
      r.status = lookup.response_code == static_cast<int>(protocol::ResponseCode::kServerTooBusy)
                     ? 503
                     : 500;
      body += Message(
          "error", "The server could not answer",
          "<p>Try again later" + code + "." +
              (lookup.message.empty() ? std::string() : " " + HtmlEscape(lookup.message) + ".") +
              "</p>");
      break;
  }
  body += "</section>";
  body += kPageEnd;
  r.body = std::move(body);
  if (lookup.status != 0) r.status = lookup.status;
  AddPageHeaders(&r);
  return r;
}

HttpResponse StatusPage() {
  HttpResponse r;
  r.content_type = kHtml;
  std::string body = PageStart("idnode status", "status.js");
  body += R"(<h1>Node status</h1>
<p class="help">Updated every 2 seconds from <a href="/api/stats">/api/stats</a>. <span id="updated">Waiting for the first numbers…</span> <span id="stats-error" role="alert"></span></p>
<noscript><p class="message error">The dashboard draws its numbers with JavaScript; the same numbers are at <a href="/api/stats">/api/stats</a> and <a href="/metrics">/metrics</a>.</p></noscript>
<section aria-labelledby="traffic-title"><h2 id="traffic-title">Traffic</h2>
<div class="cards">
<div class="card"><span class="label">Requests/s</span><span class="value" id="rps-total">–</span></div>
<div class="card"><span class="label">p50 latency</span><span class="value" id="p50-total">–</span></div>
<div class="card"><span class="label">p99 latency</span><span class="value" id="p99-total">–</span></div>
<div class="card"><span class="label">Answer cache hit ratio</span><span class="value" id="cache-hit-ratio">–</span></div>
</div>
<div class="charts">
<figure><figcaption>Requests/s by protocol</figcaption><svg id="chart-rps" class="chart" viewBox="0 0 300 80" role="img" aria-label="Requests per second, last minutes"></svg><div class="legend" id="legend-rps"></div></figure>
<figure><figcaption>Latency p50 and p99 (all protocols)</figcaption><svg id="chart-latency" class="chart" viewBox="0 0 300 80" role="img" aria-label="Latency, last minutes"></svg><div class="legend" id="legend-latency"></div></figure>
<figure><figcaption>Answer cache hit ratio</figcaption><svg id="chart-cache" class="chart" viewBox="0 0 300 80" role="img" aria-label="Cache hit ratio, last minutes"></svg></figure>
</div>
<div class="table-wrap"><table id="protocols"><caption>By protocol (last interval)</caption><thead><tr><th scope="col">Protocol</th><th scope="col" class="num">Requests/s</th><th scope="col" class="num">p50</th><th scope="col" class="num">p99</th><th scope="col" class="num">Answered since start</th></tr></thead><tbody></tbody></table></div>
</section>
<section aria-labelledby="cache-title"><h2 id="cache-title">Cache</h2>
<div class="cards">
<div class="card"><span class="label">Memory</span><span class="value" id="cache-memory">–</span></div>
<div class="card"><span class="label">Entries</span><span class="value" id="cache-entries">–</span></div>
<div class="card"><span class="label">Hits / misses since start</span><span class="value" id="cache-hits">–</span></div>
</div></section>
<section aria-labelledby="storage-title"><h2 id="storage-title">Storage</h2>
<div class="cards">
<div class="card"><span class="label">Disk (live SST)</span><span class="value" id="disk-total">–</span></div>
<div class="card"><span class="label">Keys (estimate)</span><span class="value" id="keys-total">–</span></div>
<div class="card"><span class="label">Read errors</span><span class="value" id="read-errors">–</span></div>
</div>
<div class="table-wrap"><table id="shards"><caption>Shards</caption><thead><tr><th scope="col">Shard</th><th scope="col" class="num">Disk</th><th scope="col" class="num">Memtable</th><th scope="col" class="num">Keys (estimate)</th><th scope="col">Writes</th></tr></thead><tbody></tbody></table></div>
</section>
<section aria-labelledby="prefixes-title"><h2 id="prefixes-title">Prefixes</h2>
<div class="cards">
<div class="card"><span class="label">Homed</span><span class="value" id="prefix-homed">–</span></div>
<div class="card"><span class="label">Delegated</span><span class="value" id="prefix-delegated">–</span></div>
<div class="card"><span class="label">Mirrored</span><span class="value" id="prefix-mirrored">–</span></div>
</div>
<p id="prefix-names" class="help"></p></section>
<section aria-labelledby="replication-title"><h2 id="replication-title">Replication</h2>
<div class="table-wrap"><table id="replication"><caption>Links</caption><thead><tr><th scope="col">Peer</th><th scope="col">Direction</th><th scope="col">Address</th><th scope="col">State</th><th scope="col">Lag (entries)</th><th scope="col">Lag (s)</th><th scope="col">Last error</th></tr></thead><tbody><tr><td colspan="7">–</td></tr></tbody></table></div>
</section>
)";
  body += kPageEnd;
  r.body = std::move(body);
  AddPageHeaders(&r);
  return r;
}

HttpResponse Asset(std::string_view name) {
  HttpResponse r;
  if (name == "ui.css") {
    r.content_type = "text/css;charset=utf-8";
    r.body = std::string(assets::ui_css);
  } else if (name == "resolver.js") {
    r.content_type = "text/javascript;charset=utf-8";
    r.body = std::string(assets::resolver_js);
  } else if (name == "status.js") {
    r.content_type = "text/javascript;charset=utf-8";
    r.body = std::string(assets::status_js);
  } else {
    r.status = 404;
    r.content_type = "text/plain;charset=utf-8";
    r.body = "no such asset\n";
    return r;
  }
  // Pages ask for ?v=<digest of the assets>: a new build's assets have a new address.
  r.headers.push_back({"Cache-Control", "public, max-age=86400"});
  r.headers.push_back({"X-Content-Type-Options", "nosniff"});
  return r;
}

}  // namespace idnode::http::ui
