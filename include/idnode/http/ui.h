// http/: the pages people open in a browser, rendered on the server (no JavaScript needed to look
// an identifier up): the resolver page (GET / with ?id=, and the proxy's /{handle}?noredirect)
// and the operator dashboard's shell (GET /ui/status, which draws GET /api/stats every few
// seconds). Their stylesheet and scripts are compiled into the binary (src/http/assets/, served
// under /ui/assets/), so a node needs no CDN and no internet.
//
// Every value shown is HTML-escaped, links are made only of http(s), ftp and mailto targets, and
// every page goes out with a Content-Security-Policy that runs no inline script and loads nothing
// from elsewhere: a value holding "<script>" is text.
//
// Stateless functions; called on HTTP event-loop and storage threads.
#pragma once

#include <string>
#include <string_view>

#include "idnode/http/response.h"
#include "idnode/registry.pb.h"

namespace idnode::http::ui {

// What a lookup from the resolver page came to.
enum class Outcome : uint8_t {
  kNone,      // the bare search page
  kFound,     // `values` holds the record's values
  kNotFound,  // no such identifier (or no values of the types asked)
  kReferred,  // held elsewhere: `values` holds the location values (HS_SITE, HS_SERV)
  kNotHomed,  // this node does not serve the identifier's prefix (or another server does)
  kInvalid,   // not an identifier
  kError,     // the server could not answer (busy, storage error)
};

struct Lookup {
  Outcome outcome = Outcome::kNone;
  std::string_view handle;  // as asked (percent-decoded)
  const google::protobuf::RepeatedPtrField<proto::Value>* values = nullptr;
  std::string_view referral_handle;  // a service referral's handle, if any
  std::string_view message;          // the server's words, if any
  int response_code = 0;             // the Handle response code (for people who know them)
  std::string_view json;             // the JSON API's answer, for "copy as JSON"
  unsigned status = 0;               // the HTTP status; 0: the outcome's usual one
};

// The resolver page for `lookup` (its HTTP status follows the outcome: 200, 404, 400, 503).
HttpResponse ResolverPage(const Lookup& lookup);
// The dashboard's page (numbers filled in by /ui/assets/status.js from /api/stats).
HttpResponse StatusPage();
// An embedded asset, by the name after /ui/assets/ ("ui.css"); status 404 if there is none.
HttpResponse Asset(std::string_view name);
// The security headers every page carries (CSP, nosniff, no framing, no referrer).
void AddPageHeaders(HttpResponse* response);

// Whether a URL value may be a proxy redirect's Location: not a scheme that runs code in the
// browser (javascript:, vbscript:, data:), no line break or NUL (it would split the response).
bool RedirectableUrl(std::string_view url);
// Escapes text for HTML element content and double-quoted attribute values.
std::string HtmlEscape(std::string_view text);
// The data of one value as HTML, by type and format: URL values as links (safe schemes only),
// HS_ADMIN, HS_SITE, HS_VLIST and HS_PUBKEY decoded, text escaped, binary data as hex.
std::string RenderValueData(const proto::Value& value);

}  // namespace idnode::http::ui
