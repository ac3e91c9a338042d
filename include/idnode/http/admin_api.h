// http/: the authenticated part of the JSON API (HANDLE.md §2), as the handle.net server has it:
// PUT /api/handles/{handle} (overwrite, index, mintNewSuffix), DELETE /api/handles/{handle}
// (index), GET /api/handles?prefix=&page=&pageSize=, and idnode's POST /api/batch for the systems
// of secondary nodes (up to 2,000 operations, one result each, idempotent under a client
// transaction id).
//
// Authentication, throttled like the Handle protocol's proofs: `Authorization: Basic
// base64(percent-encoded "index:handle" ":" secret)` against the identity's HS_SECKEY held here, or
// the `Handle` scheme (http/auth_sessions.h): a signature over the nonce of a session this node
// opened (in a 401) and the client's cnonce, made with the identity's private key (HS_PUBKEY:
// RSA, DSA or SM2) or MACed with its HS_SECKEY, checked by the Handle protocol's verifier; the
// session then carries the identity to later requests that name it. The decisions and writes are
// net::AdminService's (the same HS_ADMIN rules, compare-and-apply and cache invalidation as the
// admin path of the Handle protocol).
//
// Owned by the application; holds no state of its own (the throttle and the sessions are shared and
// thread-safe); runs on the HTTP storage threads, except AddChallenge (event-loop threads too).
#pragma once

#include <string_view>

#include "idnode/auth/authorizer.h"
#include "idnode/http/auth_sessions.h"
#include "idnode/http/http_server.h"
#include "idnode/net/admin_service.h"
#include "idnode/registry/registry.h"

namespace idnode::http {

class AdminApi {
 public:
  AdminApi(registry::Registry& registry, const auth::Authorizer& authorizer,
           const net::AdminService& admin, auth::FailureThrottle& failures,
           HttpAuthSessions* sessions = nullptr);

  // Adds the WWW-Authenticate headers of a 401 to `response`: Basic, and (with sessions) a new
  // `Handle` session and nonce for `source`. `error` (may be empty) says why the last proof
  // failed.
  void AddChallenge(HttpResponse* response, const HttpAuthSessions::Source& source,
                    std::string_view error = {}) const;

  // PUT or DELETE of `handle` (percent-decoded) with the request's query string.
  HttpResponse Write(std::string_view method, std::string_view handle, std::string_view query,
                     const RequestContext& request) const;
  // POST /api/batch:
  //   {"transaction":"ID","operations":[{"op":"create|add|modify|remove|delete","handle":"...",
  //     "values":[...],"indexes":[...],"overwrite":false}, ...]}
  // answers {"responseCode":1,"transaction":"ID","results":[{"handle":"...","responseCode":1},
  // ...]}: each operation is authorized alone (one refused does not stop the others); a create
  // of a handle that exists with the same values succeeds; the same transaction id again replays
  // the first outcomes without applying anything twice.
  HttpResponse Batch(std::string_view query, const RequestContext& request) const;
  // GET /api/handles?prefix=P&page=N&pageSize=M: the handles under P (not its derived
  // prefixes), for an admin of 0.NA/P with LIST_HANDLES. pageSize defaults to 1,000, at most
  // 10,000.
  HttpResponse List(std::string_view query, const RequestContext& request) const;
  // GET /api/audit?since=ISO-or-ms&prefix=P&identity=I&limit=N (server admins): the audit log,
  // oldest first.
  HttpResponse Audit(std::string_view query, const RequestContext& request) const;
  // Whether the request's credentials prove a server admin (the dashboard behind
  // http.status_requires_admin); otherwise `*refusal` is what to answer. `operation` names the
  // request in the audit log of a refusal.
  bool AuthorizeServerAdmin(const RequestContext& request, std::string_view operation,
                            HttpResponse* refusal) const;

 private:
  // The identity the Authorization header proves; otherwise `*refusal` is what to answer.
  // A refusal goes to the audit log as `operation` on `handle`.
  bool Authenticate(const RequestContext& request, std::string_view handle,
                    std::string_view operation, auth::Identity* identity,
                    HttpResponse* refusal) const;
  bool AuthenticateBasic(const RequestContext& request, std::string_view handle,
                         std::string_view operation, auth::Identity* identity,
                         HttpResponse* refusal) const;
  bool AuthenticateHandle(const RequestContext& request, std::string_view handle,
                          std::string_view operation, auth::Identity* identity,
                          HttpResponse* refusal) const;

  registry::Registry& registry_;
  const auth::Authorizer& authorizer_;
  const net::AdminService& admin_;
  auth::FailureThrottle& failures_;
  HttpAuthSessions* sessions_;
};

}  // namespace idnode::http
