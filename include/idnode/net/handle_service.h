// The Handle protocol service: turns one request message into its response bytes, for the UDP and
// TCP front ends alike. Resolutions are answered from the cache on the calling (worker) thread;
// when the answer needs storage, Handle() says so and the caller runs HandleFromStorage() on a
// storage thread. GET_SITE_INFO answers this node's HS_SITE. Administrative operations (create,
// delete, values), challenge answers and sessions (OC 400-402) go to the AdminService, always on
// a storage thread. So do requests that ask for a certified answer (CT: signed with the node's
// key, or MAC'd with the session key in a session), name a session (its HS_MAC is checked here,
// before anything else) or are encrypted with a session key (decrypted here; the answer is
// encrypted when the request asks for it with ENC).
//
// Shared by all threads; each thread passes its own Scratch.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "idnode/auth/authorizer.h"
#include "idnode/auth/message_auth.h"
#include "idnode/auth/sessions.h"
#include "idnode/protocol/message.h"
#include "idnode/resolver/resolver.h"

namespace idnode::net {

struct ServiceScratch {
  resolver::Scratch resolver;
  std::vector<uint8_t> body;  // handle + values of an answer
  ServiceScratch() { body.reserve(64 * 1024); }
};

enum class Disposition : uint8_t {
  kAnswered,      // `out` holds the response (response_size bytes)
  kNeedsStorage,  // call HandleFromStorage on a storage thread
  kDrop,          // say nothing (not a request, or too short to answer)
};

class Continuation;

struct Handled {
  Disposition disposition = Disposition::kDrop;
  size_t response_size = 0;
  uint32_t opcode = 0;
  uint32_t response_code = 0;
  // Set when `out` holds the first part of a streamed answer (CN): the TCP session writes it,
  // then asks this for the next part, on a storage thread, until a part comes without one.
  std::shared_ptr<Continuation> more;
  // Set when this answer completed a login (OC 2001, China's identifier SDK): the TCP connection
  // remembers the identity for its later administrative requests.
  std::shared_ptr<const auth::Identity> login;
};

// The rest of a streamed answer, made part by part. Owned by the connection; each Next runs on
// a storage thread, one at a time.
class Continuation {
 public:
  virtual ~Continuation() = default;
  // The next part into `out` (whole messages); its `more` is set again while parts remain.
  virtual Handled Next(std::span<uint8_t> out) = 0;
};

class AdminService;

// What the Handle service found out about a request's session before answering it.
struct SessionContext {
  const auth::SessionView* session = nullptr;  // the live session the request names, if any
  bool mac_verified = false;                   // it carried a valid, fresh HS_MAC of that session
  const auth::Identity* connection_login = nullptr;  // logged in on this TCP connection (OC 2001)
};

class HandleService {
 public:
  // `admin` answers administrative requests and challenge answers (on a storage thread); without
  // one they get RC_OPERATION_NOT_SUPPORTED.
  HandleService(const resolver::Resolver& resolver, std::vector<uint8_t> site_info,
                uint16_t site_serial, const AdminService* admin = nullptr);

  // `request` is one whole message (a TCP frame, a datagram, or a reassembled message); `out`
  // must hold at least kMaxMessageLength bytes. `limit_to_request_size` keeps error answers no
  // larger than the request (UDP: no amplification by malformed traffic).
  Handled Handle(std::span<const uint8_t> request, std::span<uint8_t> out, ServiceScratch& scratch,
                 bool limit_to_request_size) const;
  // `origin`: where the request came from (admin requests and challenge answers need it).
  // `connection_login`: the identity logged in on the request's TCP connection, if any.
  Handled HandleFromStorage(std::span<const uint8_t> request, std::span<uint8_t> out,
                            ServiceScratch& scratch, const auth::Origin& origin = {},
                            const auth::Identity* connection_login = nullptr) const;
  // RC_SERVER_TOO_BUSY for a request the storage pool has no room for.
  Handled Busy(std::span<const uint8_t> request, std::span<uint8_t> out) const;
  // The short RC_SERVER_TOO_BUSY that replaces the rate-limited `response` (our own encoding),
  // no larger than `size_limit` (the request's size), or nothing.
  Handled RateLimited(std::span<const uint8_t> response, std::span<uint8_t> out,
                      size_t size_limit) const;

  const std::vector<uint8_t>& site_info() const { return site_info_; }
  const resolver::Resolver& resolver() const { return resolver_; }
  // Set once at startup, after the listeners are bound (their ports go into HS_SITE) and before
  // the workers run.
  void SetSiteInfo(std::vector<uint8_t> site_info) { site_info_ = std::move(site_info); }
  // The key certified answers are signed with and the sessions; without a key CT requests get
  // unsigned answers without CT. Set once at startup, before the workers run.
  void SetCredentials(std::shared_ptr<const auth::ServerKey> key, auth::SessionTable* sessions) {
    server_key_ = std::move(key);
    sessions_ = sessions;
  }

 private:
  Handled Process(std::span<const uint8_t> request, std::span<uint8_t> out, ServiceScratch& scratch,
                  bool limit_to_request_size, bool from_storage, const auth::Origin& origin,
                  const auth::Identity* connection_login = nullptr) const;
  // The answer to a decoded request; `session` as checked by Process.
  Handled Answer(const protocol::Message& req, std::span<const uint8_t> request,
                 std::span<uint8_t> out, ServiceScratch& scratch, size_t size_limit,
                 bool from_storage, const auth::Origin& origin,
                 const SessionContext& session) const;
  // Checks the session a request names (its HS_MAC, counter) and answers it, sealed.
  Handled Checked(const protocol::Message& req, std::span<const uint8_t> request,
                  std::span<uint8_t> out, ServiceScratch& scratch, size_t size_limit,
                  const auth::Origin& origin, const auth::Identity* connection_login) const;
  // Signs (CT) and encrypts (ENC in a session) the answer in `out`, as the request asks.
  Handled Seal(const protocol::Message& req, Handled handled, std::span<uint8_t> out,
               const auth::SessionView* session) const;

  const resolver::Resolver& resolver_;
  std::vector<uint8_t> site_info_;
  uint16_t site_serial_;
  const AdminService* admin_;
  std::shared_ptr<const auth::ServerKey> server_key_;
  auth::SessionTable* sessions_ = nullptr;
};

}  // namespace idnode::net
