// net/: the Handle protocol's administration path (HANDLE.md §1.3, §1.10): CREATE_HANDLE,
// DELETE_HANDLE, ADD_VALUE, REMOVE_VALUE, MODIFY_VALUE (of prefix handles 0.NA/P too: that is how
// a secondary node registers an enterprise prefix at a top-level node), HOME_NA, UNHOME_NA,
// LIST_HOMED_NAS (server admins only; the list streamed 50 prefixes a message with CN, over TCP
// only) and idnode's TAKEOVER_NA (server admins only), and the challenge–response that
// authenticates them (402 → OC 200 RESPONSE_TO_CHALLENGE → the original operation's answer), plus
// OC 201 VERIFY_CHALLENGE for identities this node holds.
//
// Every administrative request is challenged; the request is kept (bounded, with a deadline) in
// the ChallengeTable until its answer comes, on any connection or as a datagram, then checked
// against the identity's HS_SECKEY/HS_PUBKEY, authorized by HS_ADMIN, and applied through the
// registry, which invalidates the caches before the answer is sent.
//
// Owned by the application, shared by the storage threads of the Handle server (admin requests
// write to RocksDB, so they never run on a worker thread).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <utility>

#include "idnode/auth/authorizer.h"
#include "idnode/auth/message_auth.h"
#include "idnode/auth/sessions.h"
#include "idnode/net/handle_service.h"
#include "idnode/protocol/message.h"
#include "idnode/registry/registry.h"

namespace idnode::net {

// A version-4 UUID, as CNRI's MINT (mintNewSuffix) appends to the prefix.
std::string NewUuid();
// `prefix_slash` ("P/") followed by a new UUID that this server of its site holds (drawn until
// one hashes here, at most 64 N draws); nullopt when none did.
std::optional<std::string> MintedHandle(const registry::Registry& registry,
                                        std::string_view prefix_slash);

class AdminService {
 public:
  AdminService(registry::Registry& registry, const auth::Authorizer& authorizer,
               auth::ChallengeTable& challenges, auth::FailureThrottle& failures,
               uint16_t site_serial);

  // The opcodes this service answers.
  static bool Handles(uint32_t opcode);

  // How often a change is decided again when its record changed between the decision and the
  // write (compare-and-apply); past that the client is told to retry (RC_SERVER_TOO_BUSY).
  static constexpr int kMaxDecisions = 8;
  // Runs between an authorisation decision and its write (tests interleave a change there).
  void SetAfterDecisionForTest(std::function<void()> hook) {
    after_decision_for_test_ = std::move(hook);
  }
  // Called (on a storage thread) after HOME_NA, UNHOME_NA or TAKEOVER_NA changed the prefix
  // table: replication follows the new roles. Set once at startup.
  void SetOnPrefixRolesChanged(std::function<void()> hook) {
    on_prefix_roles_changed_ = std::move(hook);
  }
  // Sessions (OC 400-402) and the key that KEY_EXCHANGE_CIPHER_SERVER sessions use; without
  // them session setups are answered RC_OPERATION_NOT_SUPPORTED. Set once at startup.
  void SetSessions(auth::SessionTable* sessions, std::shared_ptr<const auth::ServerKey> key) {
    sessions_ = sessions;
    server_key_ = std::move(key);
  }

  // `request` is the decoded `request_bytes`, from `origin` (challenges are bound to its address,
  // failed proofs counted against it); `out` holds at least kMaxMessageLength bytes.
  // The outcome of a write made for an identity.
  struct WriteOutcome {
    protocol::ResponseCode code = protocol::ResponseCode::kError;
    std::string message;  // why, when not kSuccess
  };
  // Authorizes `op` for `identity` (the HS_ADMIN permissions its kind needs on the record as it
  // is now) and applies it, compare-and-apply; caches are invalidated before it returns. For the
  // JSON API's writes, on a storage thread. `op.handle` must be writable here.
  WriteOutcome ApplyAs(const auth::Identity& identity, registry::Operation op) const;
  // The same for many operations, each decided alone and all applied in one registry batch under
  // `transaction_id` (a retry of the same id replays the stored outcomes; nothing applies twice).
  std::vector<WriteOutcome> ApplyBatchAs(const auth::Identity& identity,
                                         std::string_view transaction_id,
                                         std::vector<registry::Operation> ops) const;

  // `session`: the request's session as the caller checked it. An admin request MAC'd in a
  // session whose identity has answered a challenge runs as that identity without a new one.
  Handled Handle(const protocol::Message& request, std::span<const uint8_t> request_bytes,
                 std::span<uint8_t> out, const auth::Origin& origin,
                 const SessionContext& session = {}) const;

 private:
  // Checks what the reference checks before asking who the client is, then challenges (402) or,
  // with `identity` (an authenticated session's), executes.
  Handled Challenge(const protocol::Message& request, std::span<const uint8_t> request_bytes,
                    std::span<uint8_t> out, const auth::Origin& origin,
                    const auth::Identity* identity) const;
  // OC 400 SESSION_SETUP, 401 SESSION_TERMINATE, 402 SESSION_EXCHANGEKEY.
  Handled SessionSetup(const protocol::Message& request, std::span<const uint8_t> request_bytes,
                       std::span<uint8_t> out, const auth::Origin& origin) const;
  Handled SessionEnd(const protocol::Message& request, std::span<const uint8_t> request_bytes,
                     std::span<uint8_t> out, const SessionContext& session) const;
  Handled SessionKeyExchange(const protocol::Message& request,
                             std::span<const uint8_t> request_bytes, std::span<uint8_t> out,
                             const auth::Origin& origin, const SessionContext& session) const;
  Handled Answer(const protocol::Message& answer, std::span<uint8_t> out,
                 const auth::Origin& origin) const;
  // HOME_NA, UNHOME_NA, LIST_HOMED_NAS (server admins only).
  Handled ExecutePrefixOperation(const protocol::Message& original,
                                 std::span<const uint8_t> original_bytes,
                                 const auth::Identity& identity,
                                 const protocol::Envelope& answer_envelope, std::span<uint8_t> out,
                                 const registry::AuditContext& who) const;
  // For a write to `handle` under a prefix mirrored here: the owner's prefix handle and its
  // public location values (HS_SITE, HS_SITE.6, HS_SERV), for a 302 referral to it.
  std::optional<std::pair<std::string, proto::Record>> MirrorReferral(
      std::string_view handle) const;
  // Reads the record `op` is about and decides whether `identity` may make it; sets
  // op.expected_record (compare-and-apply). False with `refused` set when it may not.
  bool Decide(const auth::Identity& identity, registry::Operation& op, WriteOutcome* refused) const;
  // OC 105 LIST_HANDLES for `identity` (an admin of the prefix with LIST_HANDLES): the first part
  // of the stream, its Handled::more making the rest.
  Handled ExecuteList(const protocol::Message& original, std::span<const uint8_t> original_bytes,
                      const auth::Identity& identity, const protocol::Envelope& answer_envelope,
                      std::span<uint8_t> out, const registry::AuditContext& who) const;
  // A resolution of values without PUBLIC_READ, for `identity`: answered if it holds READ_VALUE
  // over the handle (HS_SECKEY values are never returned).
  Handled ExecuteRead(const protocol::Message& original, std::span<const uint8_t> original_bytes,
                      const auth::Identity& identity, const protocol::Envelope& answer_envelope,
                      std::span<uint8_t> out, const registry::AuditContext& who) const;
  Handled Verify(const protocol::Message& request, std::span<const uint8_t> request_bytes,
                 std::span<uint8_t> out, const auth::Origin& origin) const;
  // Authorizes and applies `original` for `identity`; the answer goes to `answer_envelope`.
  // `who` names the client in the audit log.
  Handled Execute(const protocol::Message& original, std::span<const uint8_t> original_bytes,
                  const auth::Identity& identity, const protocol::Envelope& answer_envelope,
                  std::span<uint8_t> out, const registry::AuditContext& who) const;

  registry::Registry& registry_;
  const auth::Authorizer& authorizer_;
  auth::ChallengeTable& challenges_;
  auth::FailureThrottle& failures_;
  uint16_t site_serial_;
  std::function<void()> after_decision_for_test_;
  std::function<void()> on_prefix_roles_changed_;
  auth::SessionTable* sessions_ = nullptr;
  std::shared_ptr<const auth::ServerKey> server_key_;
};

}  // namespace idnode::net
