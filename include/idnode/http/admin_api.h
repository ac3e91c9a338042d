// http/: the authenticated part of the JSON API (HANDLE.md §2), as the handle.net server has it:
// PUT /api/handles/{handle} (overwrite, index, mintNewSuffix), DELETE /api/handles/{handle}
// (index), GET /api/handles?prefix=&page=&pageSize=, and idnode's POST /api/batch for the systems
// of secondary nodes (up to 2,000 operations, one result each, idempotent under a client
// transaction id).
//
// Authentication: `Authorization: Basic base64(percent-encoded "index:handle" ":" secret)` against
// the identity's HS_SECKEY held here (the Handle scheme with private keys is not offered yet: 401
// says so), throttled like the Handle protocol's proofs. The decisions and writes are
// net::AdminService's (the same HS_ADMIN rules, compare-and-apply and cache invalidation as the
// admin path of the Handle protocol).
//
// Owned by the application; stateless (the throttle is shared); runs on the HTTP storage threads.
#pragma once

#include <string_view>

#include "idnode/auth/authorizer.h"
#include "idnode/http/http_server.h"
#include "idnode/net/admin_service.h"
#include "idnode/registry/registry.h"

namespace idnode::http {

class AdminApi {
 public:
  AdminApi(registry::Registry& registry, const auth::Authorizer& authorizer,
           const net::AdminService& admin, auth::FailureThrottle& failures);

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

 private:
  // The identity the Authorization header proves; otherwise `*refusal` is what to answer.
  // A refusal goes to the audit log as `operation` on `handle`.
  bool Authenticate(const RequestContext& request, std::string_view handle,
                    std::string_view operation, auth::Identity* identity,
                    HttpResponse* refusal) const;

  registry::Registry& registry_;
  const auth::Authorizer& authorizer_;
  const net::AdminService& admin_;
  auth::FailureThrottle& failures_;
};

}  // namespace idnode::http
