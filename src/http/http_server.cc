#include "idnode/http/http_server.h"

#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <ctime>
#include <optional>
#include <tuple>

#include "idnode/http/admin_api.h"
#include "idnode/http/ui.h"
#include "idnode/identifier/identifier.h"
#include "idnode/net/listeners.h"
#include "idnode/protocol/utf8.h"
#include "idnode/protocol/wire.h"
#include "idnode/registry/json_records.h"
#include "idnode/registry/values.h"

namespace idnode::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using asio::ip::tcp;
using protocol::ResponseCode;
using ui::HtmlEscape;

namespace {

constexpr size_t kMaxHeaderFields = 100;

std::string JsonString(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

// JSONP callbacks are names, never code.
bool ValidCallback(std::string_view name) {
  if (name.empty() || name.size() > 128) return false;
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '$'))
      return false;
  }
  return true;
}

struct QueryParams {
  std::vector<int32_t> indexes;
  std::vector<std::string> types;
  bool pretty = false;
  bool noredirect = false;
  std::string id;  // the resolver page's search box
  std::string callback;
  bool bad = false;
  std::string why;
};

QueryParams ParseQuery(std::string_view query) {
  QueryParams p;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (pair.empty()) continue;
    size_t eq = pair.find('=');
    std::string key, value;
    if (!DecodePercent(pair.substr(0, eq), &key) ||
        (eq != std::string_view::npos && !DecodePercent(pair.substr(eq + 1), &value))) {
      p.bad = true;
      p.why = "malformed query";
      return p;
    }
    if (key == "type") {
      p.types.push_back(value);
    } else if (key == "index") {
      char* end = nullptr;
      long v = std::strtol(value.c_str(), &end, 10);
      if (value.empty() || *end != '\0' || v < INT32_MIN || v > INT32_MAX) {
        p.bad = true;
        p.why = "index must be an integer";
        return p;
      }
      p.indexes.push_back(static_cast<int32_t>(v));
    } else if (key == "pretty") {
      p.pretty = value != "false";
    } else if (key == "noredirect") {
      p.noredirect = true;
    } else if (key == "id") {
      p.id = value;
    } else if (key == "callback") {
      if (!ValidCallback(value)) {
        p.bad = true;
        p.why = "invalid callback";
        return p;
      }
      p.callback = value;
    }
    // auth, publicOnly and unknown parameters are accepted and ignored, as an end server does.
  }
  return p;
}

std::string HttpDate(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return buf;
}

unsigned StatusFor(ResponseCode rc) {
  switch (rc) {
    case ResponseCode::kSuccess:
    case ResponseCode::kValuesNotFound:
      return 200;
    case ResponseCode::kHandleNotFound:
      return 404;
    case ResponseCode::kServerNotResponsible:
    case ResponseCode::kInvalidHandle:
    case ResponseCode::kInvalidValue:
    case ResponseCode::kProtocolError:
      return 400;
    case ResponseCode::kServiceReferral:
    case ResponseCode::kPrefixReferral:
      return 300;  // the handle.net server's SC_MULTIPLE_CHOICES
    case ResponseCode::kServerTooBusy:
      return 503;
    default:
      return 500;
  }
}

HttpResponse JsonResponse(unsigned status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

// The answer to a request that needs credentials and cannot be authenticated as it came: 401
// with a challenge, or 403 (credentials over plain HTTP, or no authenticated API); nullopt when
// its credentials can be checked.
std::optional<HttpResponse> Unauthenticated(bool has_authorization, const RequestContext* context,
                                            std::string_view handle, const AdminApi* admin) {
  const bool over_tls = context != nullptr && context->tls;
  if (has_authorization && over_tls && admin != nullptr) return std::nullopt;
  HttpResponse r = JsonResponse(has_authorization ? 403 : 401,
                                R"({"responseCode":402,"handle":)" + JsonString(handle) + "}");
  if (!has_authorization && over_tls && admin != nullptr) {
    admin->AddChallenge(&r, context->source);  // Basic, and a Handle session's nonce
  } else if (!has_authorization) {
    r.headers.push_back({"WWW-Authenticate", "Basic realm=\"handle\""});
  }
  return r;
}

}  // namespace

Api::Api(const resolver::Resolver& resolver, metrics::MetricsHub& metrics,
         std::function<bool()> ready, std::shared_ptr<cache::AnswerCache> json_cache)
    : resolver_(resolver),
      metrics_(metrics),
      ready_(std::move(ready)),
      json_cache_(std::move(json_cache)) {}

HttpResponse Api::Handle(std::string_view method, std::string_view target, bool has_authorization,
                         Stage stage, bool* needs_storage, const RequestContext* context) const {
  size_t question = target.find('?');
  std::string_view path = target.substr(0, question);
  std::string_view query =
      question == std::string_view::npos ? std::string_view{} : target.substr(question + 1);

  if (path == "/healthz") {
    HttpResponse r = JsonResponse(200, "ok\n");
    r.content_type = "text/plain;charset=utf-8";
    return r;
  }
  if (path == "/readyz") {
    bool ready = ready_ && ready_();
    HttpResponse r = JsonResponse(ready ? 200 : 503, ready ? "ready\n" : "starting\n");
    r.content_type = "text/plain;charset=utf-8";
    return r;
  }
  if (path == "/metrics") {
    HttpResponse r = JsonResponse(200, metrics_.Render());
    r.content_type = "text/plain; version=0.0.4;charset=utf-8";
    return r;
  }
  if (path == "/api/site" && (method == "GET" || method == "HEAD")) {
    std::string site = registry::SiteToJson(site_);
    if (site.empty())
      return JsonResponse(500, R"({"responseCode":2,"message":"no site information"})");
    return JsonResponse(200, R"({"responseCode":1,"site":)" + site + "}");
  }
  for (const auto& endpoint : endpoints_) {
    if (path != endpoint.path) continue;
    if (method != "GET" && method != "HEAD") {
      HttpResponse r = JsonResponse(405, R"({"responseCode":5,"message":"method not allowed"})");
      r.headers.push_back({"Allow", "GET, HEAD"});
      return r;
    }
    if (endpoint.reads_storage && stage == Stage::kMemory) {
      if (needs_storage != nullptr) *needs_storage = true;
      return {};
    }
    return endpoint.handler(query);
  }
  constexpr std::string_view kApi = "/api/handles/";
  bool api = path.substr(0, kApi.size()) == kApi;
  std::string handle;
  if (!DecodePercent(api ? path.substr(kApi.size()) : path.substr(1), &handle)) {
    if (!api && (method == "GET" || method == "HEAD")) {
      ui::Lookup lookup;
      lookup.outcome = ui::Outcome::kInvalid;
      lookup.handle = path.substr(1);
      lookup.message = "its percent-encoding is malformed";
      return ui::ResolverPage(lookup);
    }
    return JsonResponse(400, R"({"responseCode":4,"message":"malformed path"})");
  }
  const bool listing =
      (path == "/api/handles" || path == "/api/audit") && (method == "GET" || method == "HEAD");
  const bool batch = path == "/api/batch";
  if ((method != "GET" && method != "HEAD") || listing) {
    const bool write =
        (api && (method == "PUT" || method == "DELETE")) || (batch && method == "POST");
    if (write || listing) {
      // Writes need authentication, and authentication needs HTTPS (HANDLE.md §2).
      if (auto refusal = Unauthenticated(has_authorization, context, handle, admin_))
        return *refusal;
      if (stage == Stage::kMemory) {
        if (needs_storage != nullptr) *needs_storage = true;
        return {};
      }
      if (listing && path == "/api/audit") return admin_->Audit(query, *context);
      if (listing) return admin_->List(query, *context);
      if (batch) return admin_->Batch(query, *context);
      return admin_->Write(method, handle, query, *context);
    }
    HttpResponse r = JsonResponse(405, R"({"responseCode":5,"message":"method not allowed"})");
    r.headers.push_back({"Allow", "GET, HEAD"});
    return r;
  }
  if (!api) {
    // The browser's pages: none of this is on the JSON API's path.
    if (path == "/ui/status" || path == "/api/stats")
      return Status(path, stage, needs_storage, context);
    constexpr std::string_view kAssets = "/ui/assets/";
    if (path.substr(0, kAssets.size()) == kAssets) return ui::Asset(path.substr(kAssets.size()));
    if (handle.empty()) {
      // The resolver page; with ?id= (its search box), the lookup's outcome on it.
      QueryParams params = ParseQuery(query);
      if (params.bad) {
        ui::Lookup lookup;
        lookup.outcome = ui::Outcome::kInvalid;
        lookup.message = params.why;
        return ui::ResolverPage(lookup);
      }
      if (params.id.empty()) return ui::ResolverPage({});
      return Resolve(params.id, query, true, stage, needs_storage, /*page=*/true);
    }
  }
  return Resolve(handle, query, !api, stage, needs_storage);
}

bool Api::TakesBody(std::string_view method, std::string_view target) const {
  if (admin_ == nullptr) return false;
  std::string_view path = target.substr(0, target.find('?'));
  constexpr std::string_view kApi = "/api/handles/";
  return (method == "PUT" && path.substr(0, kApi.size()) == kApi) ||
         (method == "POST" && path == "/api/batch");
}

HttpResponse Api::Status(std::string_view path, Stage stage, bool* needs_storage,
                         const RequestContext* context) const {
  const bool reads_storage = status_requires_admin_ || path == "/api/stats";
  if (status_requires_admin_) {
    const bool authorization = context != nullptr && !context->authorization.empty();
    if (auto refusal = Unauthenticated(authorization, context, {}, admin_)) return *refusal;
  }
  if (reads_storage && stage == Stage::kMemory) {
    // Credentials and RocksDB's numbers are read off the event loop.
    if (needs_storage != nullptr) *needs_storage = true;
    return {};
  }
  if (status_requires_admin_) {
    HttpResponse refusal;
    if (!admin_->AuthorizeServerAdmin(*context, "status", &refusal)) return refusal;
  }
  if (path == "/ui/status") return ui::StatusPage();
  if (!stats_) return JsonResponse(404, R"({"responseCode":100,"message":"no statistics"})");
  HttpResponse r = JsonResponse(200, stats_());
  r.headers.push_back({"Cache-Control", "no-store"});
  r.headers.push_back({"X-Content-Type-Options", "nosniff"});
  return r;
}

HttpResponse Api::Resolve(std::string_view handle, std::string_view query_text, bool proxy,
                          Stage stage, bool* needs_storage, bool page) const {
  QueryParams params = ParseQuery(query_text);
  if (proxy && (params.bad || !identifier::IsValidHandle(handle))) {
    // People type into the search box: say what is wrong on the page, before any lookup.
    ui::Lookup lookup;
    lookup.outcome = ui::Outcome::kInvalid;
    lookup.handle = handle;
    lookup.message = params.bad ? std::string_view(params.why) : std::string_view();
    return ui::ResolverPage(lookup);
  }
  if (params.bad) {
    return JsonResponse(400, R"({"responseCode":4,"message":)" + JsonString(params.why) + "}");
  }
  std::vector<std::string_view> types(params.types.begin(), params.types.end());
  resolver::Query q;
  q.handle = handle;
  q.indexes = params.indexes;
  q.types = types;
  q.public_only = true;  // unauthenticated
  const std::string h = JsonString(handle);

  // The common case (the whole record, as JSON) is served from rendered answers: rendering JSON
  // costs more than the lookup. A fill ticket taken before the lookup keeps a write that races
  // with the rendering from leaving the old answer behind.
  thread_local resolver::Scratch scratch;
  const bool whole_record = !proxy && params.indexes.empty() && params.types.empty() &&
                            json_cache_ && resolver_.AnswersFoundRecord(handle, scratch);
  std::string key;
  uint64_t ticket = 0;
  if (whole_record) {
    // The rendered values of a record found here; its route was checked just above, so a prefix
    // table change never leaves a wrong answer here (the registry invalidates records' entries).
    key = scratch.key;
    std::string body;
    auto found = json_cache_->Lookup(key, [&body, &h](std::span<const uint8_t> bytes) {
      body.reserve(40 + h.size() + bytes.size());
      body.append(R"({"responseCode":1,"handle":)").append(h).append(R"(,"values":)");
      body.append(reinterpret_cast<const char*>(bytes.data()), bytes.size()).push_back('}');
    });
    if (found == cache::LookupResult::kHit) {
      if (params.pretty) body = registry::PrettyJson(body);
      HttpResponse r = JsonResponse(200, std::move(body));
      if (!params.callback.empty()) {
        r.content_type = "application/javascript;charset=utf-8";
        r.body = params.callback + "(" + r.body + ");";
      }
      return r;
    }
    ticket = json_cache_->FillTicket(key);  // before this pass's lookup
  }

  resolver::Answer answer;
  if (stage == Stage::kMemory) {
    bool storage = false;
    answer = resolver_.ResolveFromCache(q, scratch, &storage);
    if (storage) {
      // RocksDB can stall: the caller runs this request again on a storage thread.
      if (needs_storage != nullptr) *needs_storage = true;
      return {};
    }
  } else {
    answer = resolver_.Resolve(q, scratch);
  }

  // Values as stored records for rendering.
  google::protobuf::RepeatedPtrField<proto::Value> values;
  const bool referral =
      answer.code == ResponseCode::kServiceReferral || answer.code == ResponseCode::kPrefixReferral;
  if (answer.code == ResponseCode::kSuccess || referral) {
    protocol::WireReader r(answer.values);
    auto wire = protocol::ReadHandleValues(r);
    for (const auto& v : wire) *values.Add() = registry::ToStored(v);
  }

  if (proxy) {
    if (answer.code == ResponseCode::kSuccess && !params.noredirect && !page) {
      for (const auto& v : values) {
        // A value with a line break or NUL can be no Location (it would split the response),
        // nor can one that would run code (javascript:): the page shows those as text.
        if (registry::TypeMatches("URL", v.type()) && ui::RedirectableUrl(v.data())) {
          HttpResponse r;
          r.status = 302;
          r.content_type = "text/html;charset=utf-8";
          r.headers.push_back({"Location", v.data()});
          r.headers.push_back({"Expires", HttpDate(std::time(nullptr) + 86400)});
          r.body = "<html><head><title>Handle Redirect</title></head>\n<body><a href=\"" +
                   HtmlEscape(v.data()) + "\">" + HtmlEscape(v.data()) + "</a></body></html>";
          return r;
        }
      }
    }
    // The resolver page: the values, or why there are none.
    ui::Lookup lookup;
    lookup.handle = handle;
    lookup.values = &values;
    lookup.response_code = static_cast<int>(answer.code);
    lookup.message = answer.message;
    lookup.referral_handle = answer.referral_handle;
    std::string json;
    switch (answer.code) {
      case ResponseCode::kSuccess:
        lookup.outcome = ui::Outcome::kFound;
        lookup.response_code = 0;
        json = registry::PrettyJson(R"({"responseCode":1,"handle":)" + h + R"(,"values":)" +
                                    registry::ValuesToJson(values, /*api_formats=*/true) + "}");
        lookup.json = json;
        break;
      case ResponseCode::kHandleNotFound:
      case ResponseCode::kValuesNotFound:
        lookup.outcome = ui::Outcome::kNotFound;
        break;
      case ResponseCode::kServiceReferral:
      case ResponseCode::kPrefixReferral:
        lookup.outcome = ui::Outcome::kReferred;
        break;
      case ResponseCode::kServerNotResponsible:
        lookup.outcome = ui::Outcome::kNotHomed;
        break;
      case ResponseCode::kInvalidHandle:
        lookup.outcome = ui::Outcome::kInvalid;
        break;
      default:
        lookup.outcome = ui::Outcome::kError;
    }
    // The proxy's statuses as before the page (and as the handle.net server's): a referral is
    // 300, a prefix not served here 400, not found 404.
    lookup.status = StatusFor(answer.code) == 200 && answer.code != ResponseCode::kSuccess
                        ? 404
                        : StatusFor(answer.code);
    return ui::ResolverPage(lookup);
  }

  std::string body;
  switch (answer.code) {
    case ResponseCode::kSuccess: {
      std::string rendered = registry::ValuesToJson(values, /*api_formats=*/true);
      if (whole_record) {
        json_cache_->InsertIfFresh(
            key,
            std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(rendered.data()),
                                     rendered.size()),
            ticket);
      }
      body = R"({"responseCode":1,"handle":)" + h + R"(,"values":)" + rendered + "}";
      break;
    }
    case ResponseCode::kServiceReferral:
    case ResponseCode::kPrefixReferral:
      // As the handle.net server renders a ServiceReferralResponse: the handle to look up, if
      // any, and the values to follow, if any (GsonUtility).
      body = R"({"responseCode":)" + std::to_string(static_cast<int>(answer.code));
      if (!answer.referral_handle.empty())
        body += R"(,"referralHandle":)" + JsonString(answer.referral_handle);
      if (values.size() > 0)
        body += R"(,"values":)" + registry::ValuesToJson(values, /*api_formats=*/true);
      body += "}";
      break;
    case ResponseCode::kValuesNotFound:  // the reference server's field order (transcript)
      body = R"({"responseCode":200,"values":[],"handle":)" + h + "}";
      break;
    case ResponseCode::kHandleNotFound:
      body = R"({"responseCode":100,"handle":)" + h + "}";
      break;
    default:
      body =
          R"({"responseCode":)" + std::to_string(static_cast<int>(answer.code)) +
          (answer.message.empty() ? std::string() : R"(,"message":)" + JsonString(answer.message)) +
          R"(,"handle":)" + h + "}";
  }
  if (params.pretty) body = registry::PrettyJson(body);
  HttpResponse r = JsonResponse(StatusFor(answer.code), std::move(body));
  if (!params.callback.empty()) {
    r.content_type = "application/javascript;charset=utf-8";
    r.body = params.callback + "(" + r.body + ");";
  }
  return r;
}

// ---- the server ---------------------------------------------------------------------------------

struct HttpServer::State {
  std::unique_ptr<net::StoragePool> storage;
  std::unique_ptr<net::WorkerPool> workers;
  struct Acceptor {
    net::Worker* worker;
    std::unique_ptr<tcp::acceptor> acceptor;
  };
  std::vector<Acceptor> acceptors;
  net::AcceptCounters accept_counters;
  std::unique_ptr<asio::ssl::context> tls;  // when http.tls_cert_file is set
};

namespace {

// The response as Beast would write it (status line, Content-Type, the handler's headers,
// Connection: close when closing, Content-Length, body), formatted into one buffer that the
// session reuses: one write, and none of the serializer's buffer-sequence walking per request.
void SerializeResponse(const HttpResponse& response, bool close, std::string& out) {
  const auto status = static_cast<bhttp::status>(response.status);
  std::string_view reason = bhttp::obsolete_reason(status);
  out.clear();
  out.append("HTTP/1.1 ");
  out.append(std::to_string(response.status));
  out.push_back(' ');
  out.append(reason.data(), reason.size());
  out.append("\r\nContent-Type: ");
  out.append(response.content_type);
  out.append("\r\n");
  for (const auto& [name, value] : response.headers) {
    // Never a header that would split the response (the handlers do not make such values).
    if (name.find_first_of("\r\n") != std::string::npos ||
        value.find_first_of("\r\n") != std::string::npos) {
      continue;
    }
    out.append(name);
    out.append(": ");
    out.append(value);
    out.append("\r\n");
  }
  if (close) out.append("Connection: close\r\n");
  out.append("Content-Length: ");
  out.append(std::to_string(response.body.size()));
  out.append("\r\n\r\n");
  out.append(response.body);
}

// Bodies of authenticated writes are read before their credentials are checked (that needs
// storage); all connections together hold at most this much of them, past that 503.
constexpr uint64_t kMaxUncheckedBodyBytes = 64ull << 20;
std::atomic<uint64_t> unchecked_body_bytes{0};

// A share of that budget, held while one request's body is read and answered.
class BodyBudget {
 public:
  bool Take(uint64_t bytes) {
    uint64_t now = unchecked_body_bytes.load();
    do {
      if (now + bytes > kMaxUncheckedBodyBytes) return false;
    } while (!unchecked_body_bytes.compare_exchange_weak(now, now + bytes));
    held_ = bytes;
    return true;
  }
  ~BodyBudget() { unchecked_body_bytes.fetch_sub(held_); }

 private:
  uint64_t held_ = 0;
};

// How much of a refused request's body is read and thrown away before the connection closes.
constexpr size_t kMaxLingerBytes = 64 * 1024;
// The body a GET or HEAD may carry (it means nothing to them; larger ones get 413).
constexpr uint64_t kMaxReadBodyBytes = 4096;

// The request loop of one connection, over TCP or TLS (`tls`); `buffer` may hold bytes already
// read (the TLS detection's).
template <typename Stream>
asio::awaitable<void> Serve(Stream& stream, beast::flat_buffer& buffer, bool tls,
                            const std::array<uint8_t, 16>& source, const config::HttpConfig& config,
                            const Api& api, metrics::RequestCounters& counters,
                            net::StoragePool& storage) {
  auto& lowest = beast::get_lowest_layer(stream);
  std::string out;  // the serialized response, reused
  for (;;) {
    bhttp::request_parser<bhttp::string_body> parser;
    parser.header_limit(config.max_header_bytes);
    parser.body_limit(config.max_body_bytes);
    lowest.expires_after(config.request_timeout);  // covers slow headers (slowloris) and bodies
    // Take the header block first and look at it raw: Beast accepts obs-fold continuation lines
    // (RFC 9112 §5.2 lets a server refuse them, and a smuggling-safe one does).
    bool obs_fold = false;
    beast::error_code head_ec;
    for (;;) {
      std::string_view seen(static_cast<const char*>(buffer.data().data()), buffer.size());
      size_t end = seen.find("\r\n\r\n");
      if (end == std::string_view::npos) end = seen.find("\n\n");
      if (end != std::string_view::npos) {
        std::string_view head = seen.substr(0, end);
        obs_fold = head.find("\r\n ") != std::string_view::npos ||
                   head.find("\r\n\t") != std::string_view::npos;
        break;
      }
      if (buffer.size() >= config.max_header_bytes) break;  // the parser reports header_limit
      auto [read_ec, read_n] = co_await stream.async_read_some(buffer.prepare(4096),
                                                               asio::as_tuple(asio::use_awaitable));
      if (read_ec) {
        head_ec = read_ec;
        break;
      }
      buffer.commit(read_n);
    }
    if (head_ec && buffer.size() == 0) break;  // closed or timed out between requests
    if (obs_fold) {
      bhttp::response<bhttp::string_body> res{bhttp::status::bad_request, 11};
      res.set(bhttp::field::content_type, "application/json;charset=utf-8");
      res.body() = R"({"responseCode":4,"message":"folded header line"})";
      res.keep_alive(false);
      res.prepare_payload();
      co_await bhttp::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
      counters.Count(metrics::Protocol::kHttp, 0, 400, 0);
      break;
    }
    auto [ec, n] = co_await bhttp::async_read_header(stream, buffer, parser,
                                                     asio::as_tuple(asio::use_awaitable));
    // Only authenticated writes over TLS have their bodies read (up to max_body_bytes): any other
    // request with one is answered from its head and the connection closed, rather than reading
    // up to max_body_bytes only to throw them away (a thousand connections would hold a GiB). A
    // GET or HEAD body (meaningless) is read up to kMaxReadBodyBytes.
    bool body_left_unread = false;
    BodyBudget budget;
    bool over_budget = false;
    if (!ec && !parser.is_done()) {
      const bhttp::verb method = parser.get().method();
      const uint64_t limit = std::min<uint64_t>(config.max_body_bytes, kMaxReadBodyBytes);
      const auto& head = parser.get();
      const bool takes_body =
          tls && head.find(bhttp::field::authorization) != head.end() &&
          api.TakesBody({head.method_string().data(), head.method_string().size()},
                        {head.target().data(), head.target().size()});
      if (takes_body &&
          !budget.Take(std::min<uint64_t>(parser.content_length().value_or(config.max_body_bytes),
                                          config.max_body_bytes))) {
        over_budget = true;  // answered 503 from the head, connection closed
        body_left_unread = true;
      } else if (takes_body) {
        std::tie(ec, n) =
            co_await bhttp::async_read(stream, buffer, parser, asio::as_tuple(asio::use_awaitable));
      } else if ((method == bhttp::verb::get || method == bhttp::verb::head) &&
                 parser.content_length().value_or(0) > limit) {
        ec = bhttp::error::body_limit;  // 413 from the head, without waiting for the body
        body_left_unread = true;
      } else if (method == bhttp::verb::get || method == bhttp::verb::head) {
        parser.body_limit(limit);  // a chunked body stops at the limit
        std::tie(ec, n) =
            co_await bhttp::async_read(stream, buffer, parser, asio::as_tuple(asio::use_awaitable));
      } else {
        body_left_unread = true;
      }
    }
    const auto start = std::chrono::steady_clock::now();
    HttpResponse response;
    bool close = body_left_unread;
    if (ec == bhttp::error::end_of_stream || ec == asio::error::eof ||
        ec == beast::error::timeout || ec == asio::error::operation_aborted) {
      break;
    }
    if (over_budget) {
      response = JsonResponse(503, R"({"responseCode":3,"message":"server too busy"})");
      close = true;
    } else if (ec) {
      // The parser refused the request (smuggling shapes, oversized headers or body, bad syntax):
      // answer and close without a handler ever seeing it.
      response.status =
          ec == bhttp::error::body_limit ? 413 : (ec == bhttp::error::header_limit ? 431 : 400);
      response.body = R"({"responseCode":4,"message":)" + std::string("\"") +
                      (response.status == 413   ? "body too large"
                       : response.status == 431 ? "headers too large"
                                                : "bad request") +
                      "\"}";
      close = true;
    } else {
      const auto& req = parser.get();
      size_t fields = 0;
      bool smuggling = false;
      bool folded = false;
      for (const auto& field : req) {
        ++fields;
        // obs-fold continuation lines (RFC 9112 §5.2) and stray line breaks are refused.
        for (char c : field.value()) folded |= c == '\r' || c == '\n';
      }
      auto te = req.find(bhttp::field::transfer_encoding);
      if (te != req.end() && !beast::iequals(te->value(), "chunked")) smuggling = true;
      if (te != req.end() && req.find(bhttp::field::content_length) != req.end()) smuggling = true;
      if (fields > kMaxHeaderFields) {
        response.status = 431;
        response.body = R"({"responseCode":4,"message":"too many header fields"})";
        close = true;
      } else if (folded) {
        response.status = 400;
        response.body = R"({"responseCode":4,"message":"folded header line"})";
        close = true;
      } else if (smuggling) {
        response.status = 400;
        response.body = R"({"responseCode":4,"message":"ambiguous message framing"})";
        close = true;
      } else if (req.find("X-HTTP-Method-Override") != req.end()) {
        response.status = 405;
        response.body = R"({"responseCode":5,"message":"method override is not accepted"})";
      } else {
        const std::string_view method(req.method_string().data(), req.method_string().size());
        const std::string_view target(req.target().data(), req.target().size());
        const bool authorization = req.find(bhttp::field::authorization) != req.end();
        RequestContext context;
        context.tls = tls;
        context.source = source;
        if (authorization) {
          auto a = req[bhttp::field::authorization];
          context.authorization = {a.data(), a.size()};
        }
        auto content_type = req[bhttp::field::content_type];
        context.content_type = {content_type.data(), content_type.size()};
        context.body = req.body();
        bool needs_storage = false;
        response = api.Handle(method, target, authorization, Api::Stage::kMemory, &needs_storage,
                              &context);
        if (needs_storage) {
          // A cache miss reads RocksDB, which can stall: never on this event loop.
          if (!storage.TryAcquire()) {
            response = JsonResponse(503, R"({"responseCode":3,"message":"server too busy"})");
          } else {
            response = co_await net::OnStoragePool<HttpResponse>(
                storage,
                [&] {
                  return api.Handle(method, target, authorization, Api::Stage::kStorage, nullptr,
                                    &context);
                },
                JsonResponse(500, R"({"responseCode":2,"message":"internal error"})"));
          }
        }
        close = close || !req.keep_alive();
        if (req.method() == bhttp::verb::head) response.body.clear();
      }
    }
    // The deadline set before the read covers the write too: one timer update per request.
    SerializeResponse(response, close, out);
    auto [write_ec, written] =
        co_await asio::async_write(stream, asio::buffer(out), asio::as_tuple(asio::use_awaitable));
    counters.Count(metrics::Protocol::kHttp, 0, response.status,
                   static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                             std::chrono::steady_clock::now() - start)
                                             .count()));
    if (write_ec || close) {
      if (!write_ec && body_left_unread) {
        // Lingering close (as nginx's): closing on unread bytes sends a reset, which may reach
        // the client before it reads our answer. Send FIN, then drain what is in flight, bounded
        // in bytes and time.
        beast::error_code ignored;
        lowest.socket().shutdown(tcp::socket::shutdown_send, ignored);
        lowest.expires_after(std::chrono::seconds(1));
        std::array<char, 4096> sink;
        for (size_t drained = 0; drained < kMaxLingerBytes;) {
          auto [read_ec, read_n] = co_await stream.async_read_some(
              asio::buffer(sink), asio::as_tuple(asio::use_awaitable));
          if (read_ec) break;
          drained += read_n;
        }
      }
      break;
    }
  }
}

asio::awaitable<void> Session(tcp::socket socket, const config::HttpConfig& config, const Api& api,
                              metrics::RequestCounters& counters, net::ConnectionSlot slot,
                              net::StoragePool& storage, asio::ssl::context* tls_context) {
  std::array<uint8_t, 16> source{};
  {
    beast::error_code ec;
    auto peer = socket.remote_endpoint(ec);
    if (!ec) {
      auto address = peer.address();
      source = address.is_v4()
                   ? asio::ip::make_address_v6(asio::ip::v4_mapped, address.to_v4()).to_bytes()
                   : address.to_v6().to_bytes();
    }
  }
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer(config.max_header_bytes);
  if (tls_context != nullptr) {
    // Port unification: a TLS ClientHello starts with 0x16; anything else is plain HTTP.
    stream.expires_after(config.request_timeout);
    auto [detect_ec, is_tls] =
        co_await beast::async_detect_ssl(stream, buffer, asio::as_tuple(asio::use_awaitable));
    if (detect_ec) co_return;
    if (is_tls) {
      beast::ssl_stream<beast::tcp_stream> secure(std::move(stream), *tls_context);
      auto [handshake_ec, used] = co_await secure.async_handshake(
          asio::ssl::stream_base::server, buffer.data(), asio::as_tuple(asio::use_awaitable));
      if (handshake_ec) co_return;
      buffer.consume(used);
      co_await Serve(secure, buffer, true, source, config, api, counters, storage);
      beast::get_lowest_layer(secure).expires_after(std::chrono::seconds(1));
      (void)co_await secure.async_shutdown(asio::as_tuple(asio::use_awaitable));
      (void)slot;  // released with the connection
      co_return;
    }
  }
  co_await Serve(stream, buffer, false, source, config, api, counters, storage);
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  (void)slot;  // released with the connection
}

}  // namespace

HttpServer::HttpServer(const config::HttpConfig& config, const Api& api,
                       metrics::MetricsHub& metrics)
    : config_(config),
      api_(api),
      metrics_(metrics),
      state_(std::make_unique<State>()),
      connections_(config.max_connections, config.max_connections_per_source) {}

HttpServer::~HttpServer() {
  Stop();
}

Result<Unit, std::string> HttpServer::Bind(unsigned threads) {
  port_ = config_.port;
  state_->storage =
      std::make_unique<net::StoragePool>(config_.storage_threads, config_.storage_queue);
  state_->workers = std::make_unique<net::WorkerPool>(std::max(1u, threads));
  counters_ = &metrics_.NewCounters();
  if (!config_.tls_cert_file.empty()) {
    try {
      auto tls = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
      tls->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                       asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                       asio::ssl::context::no_tlsv1_1);
      tls->use_certificate_chain_file(config_.tls_cert_file);
      tls->use_private_key_file(config_.tls_key_file, asio::ssl::context::pem);
      state_->tls = std::move(tls);
    } catch (const boost::system::system_error& e) {
      return Failure{"http.tls_cert_file / tls_key_file: " + std::string(e.what())};
    }
  }
  try {
    for (const auto& bind : config_.bind) {
      beast::error_code ec;
      auto address = asio::ip::make_address(bind, ec);
      if (ec) return Failure{"http.bind: \"" + bind + "\" is not an IP address"};
      for (size_t w = 0; w < state_->workers->size(); ++w) {
        net::Worker& worker = (*state_->workers)[w];
        auto acceptor = net::OpenTcpAcceptor(worker.io, address, port_, "HTTP", w == 0);
        if (!acceptor.ok()) return Failure{acceptor.error()};
        if (port_ == 0) port_ = (*acceptor)->local_endpoint().port();
        tcp::acceptor* raw = acceptor->get();
        worker.closers.push_back([raw] {
          beast::error_code ignored;
          raw->close(ignored);
        });
        state_->acceptors.push_back({&worker, std::move(*acceptor)});
      }
    }
  } catch (const boost::system::system_error& e) {
    return Failure{std::string("cannot open the HTTP listener: ") + e.what()};
  }
  return Unit{};
}

void HttpServer::Run() {
  for (auto& a : state_->acceptors) {
    net::Worker* worker = a.worker;
    asio::co_spawn(worker->io,
                   net::AcceptLoop(*a.acceptor, connections_, state_->accept_counters,
                                   [this, worker](tcp::socket socket, net::ConnectionSlot slot) {
                                     asio::co_spawn(worker->io,
                                                    Session(std::move(socket), config_, api_,
                                                            *counters_, std::move(slot),
                                                            *state_->storage, state_->tls.get()),
                                                    asio::detached);
                                   }),
                   asio::detached);
  }
  state_->workers->Run();
  started_ = true;
}

void HttpServer::Stop() {
  if (!started_) return;
  started_ = false;
  state_->workers->Stop(state_->storage.get());
}

void HttpServer::CollectMetrics(std::string& out) const {
  metrics::AppendSample(out, "idnode_open_connections", "protocol=\"http\"",
                        static_cast<double>(connections_.open()));
  metrics::AppendSample(out, "idnode_connections_refused_total", "protocol=\"http\"",
                        static_cast<double>(connections_.refused()));
  net::AppendAcceptMetrics(out, "http", state_->accept_counters, /*help=*/false);
  metrics::AppendHelp(out, "idnode_http_storage_queue", "gauge",
                      "HTTP requests waiting for or in the HTTP storage pool.");
  metrics::AppendSample(out, "idnode_http_storage_queue", "",
                        state_->storage ? state_->storage->in_flight.load() : 0);
}

}  // namespace idnode::http
