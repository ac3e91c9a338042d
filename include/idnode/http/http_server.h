// http/: the handle.net-compatible JSON API for reads (GET /api/handles/{handle} with type, index,
// pretty, callback), the proxy form (GET /{handle}: 302 to the first URL value; ?noredirect: the
// resolver page of its values), the resolver page (GET /, ?id= to look one up) and the operator
// dashboard (GET /ui/status drawing GET /api/stats; http/ui.h), /healthz, /readyz and /metrics.
// Boost.Beast, one coroutine per connection, with caps on header bytes, body bytes, connections and
// time per request; a request the parser refuses gets a 4xx and the connection is closed before any
// handler sees it. Writes (PUT/DELETE /api/handles/{handle}, POST /api/batch) and the admin listing
// (GET /api/handles?prefix=) are authenticated and go to the AdminApi (http/admin_api.h), over
// HTTPS only: when http.tls_cert_file is set the port serves both, told apart by the first bytes
// (port unification, as the reference's 8000); an authenticated request over plain HTTP gets 403
// and one without credentials 401, both with response code 402 and read from the head alone.
//
// Owned by the application; its threads run their own io_context.
#pragma once

#include <array>
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "idnode/common/connection_caps.h"
#include "idnode/common/result.h"
#include "idnode/config/config.h"
#include "idnode/http/response.h"
#include "idnode/http/write_requests.h"
#include "idnode/metrics/metrics.h"
#include "idnode/resolver/resolver.h"

namespace idnode::http {

// What the connection knows about a request beyond its target (writes need all of it).
struct RequestContext {
  bool tls = false;
  std::string_view authorization;  // the Authorization header's value, if any
  std::string_view content_type;
  std::string_view body;             // read only for authenticated requests over TLS
  std::array<uint8_t, 16> source{};  // the client's address; IPv4 as ::ffff:a.b.c.d
};

class AdminApi;

// The routing and rendering of one request, separate from the sockets so tests can call it.
class Api {
 public:
  // `json_cache` (may be null) holds rendered "values" arrays by normalised handle; the registry
  // invalidates it with every write, and it serves only handles whose route is checked first.
  Api(const resolver::Resolver& resolver, metrics::MetricsHub& metrics, std::function<bool()> ready,
      std::shared_ptr<cache::AnswerCache> json_cache = nullptr);
  // Where a request may be answered from: kMemory (an event-loop thread: caches only; when the
  // answer needs storage, `*needs_storage` is set and the response is empty, and the caller runs
  // the request again with kStorage on a storage thread) or kStorage (may read RocksDB).
  enum class Stage : uint8_t { kMemory, kStorage };
  // `target` is the request target ("/api/handles/...?..."), already length-limited by the parser.
  HttpResponse Handle(std::string_view method, std::string_view target, bool has_authorization,
                      Stage stage = Stage::kStorage, bool* needs_storage = nullptr,
                      const RequestContext* context = nullptr) const;
  // Whether a request is one the AdminApi answers from its body (an authenticated write), so
  // that the connection reads the body (up to http.max_body_bytes) instead of refusing it.
  bool TakesBody(std::string_view method, std::string_view target) const;
  // The authenticated JSON API; without one, writes are refused (403). Set once at startup.
  void SetAdmin(const AdminApi* admin) { admin_ = admin; }
  // This node's HS_SITE, for GET /api/site; set once at startup, before requests arrive.
  void SetSiteInfo(std::vector<uint8_t> site) { site_ = std::move(site); }
  // An operator endpoint answered by another room (GET /api/replication): `handler` gets the
  // query string and returns the JSON body; with `reads_storage` it runs on a storage thread.
  // Added at startup, before requests arrive.
  struct Endpoint {
    std::string path;
    bool reads_storage = false;
    std::function<HttpResponse(std::string_view query)> handler;
  };
  void AddEndpoint(Endpoint endpoint) { endpoints_.push_back(std::move(endpoint)); }
  // The dashboard's numbers (GET /api/stats, run on a storage thread). With `require_admin`
  // (http.status_requires_admin), the dashboard and its numbers are for server admins only,
  // authenticated as the JSON API's writes are (over HTTPS). Set once at startup.
  void SetStats(std::function<std::string()> stats, bool require_admin) {
    stats_ = std::move(stats);
    status_requires_admin_ = require_admin;
  }

 private:
  // `page`: the lookup of the resolver page's search box (GET /?id=), never redirected.
  HttpResponse Resolve(std::string_view handle, std::string_view query, bool proxy, Stage stage,
                       bool* needs_storage, bool page = false) const;
  // GET /ui/status and /api/stats.
  HttpResponse Status(std::string_view path, Stage stage, bool* needs_storage,
                      const RequestContext* context) const;
  const resolver::Resolver& resolver_;
  metrics::MetricsHub& metrics_;
  std::function<bool()> ready_;
  std::vector<uint8_t> site_;
  std::shared_ptr<cache::AnswerCache> json_cache_;
  std::vector<Endpoint> endpoints_;
  const AdminApi* admin_ = nullptr;
  std::function<std::string()> stats_;
  bool status_requires_admin_ = false;
};

class HttpServer {
 public:
  HttpServer(const config::HttpConfig& config, const Api& api, metrics::MetricsHub& metrics);
  ~HttpServer();
  // Binds (refusing a port another process holds) `threads` workers' acceptors, one SO_REUSEPORT
  // acceptor per worker and bind address, on net/'s listener layer; Run starts serving (after the
  // Api has what it needs: its site information).
  Result<Unit, std::string> Bind(unsigned threads);
  void Run();
  void Stop();
  uint16_t port() const { return port_; }
  size_t open_connections() const { return connections_.open(); }
  uint64_t refused_connections() const { return connections_.refused(); }
  void CollectMetrics(std::string& out) const;

 private:
  struct State;
  config::HttpConfig config_;
  const Api& api_;
  metrics::MetricsHub& metrics_;
  std::unique_ptr<State> state_;
  metrics::RequestCounters* counters_ = nullptr;
  uint16_t port_ = 0;
  bool started_ = false;
  ConnectionCaps connections_;  // in all and per source
};

}  // namespace idnode::http
