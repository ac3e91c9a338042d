// auth/: credentials on whole messages (HANDLE.md §1.10): the node's signing key, HS_SIGNED
// signatures on certified answers, HS_MAC on session messages, session keys (Diffie-Hellman or
// RSA-delivered) and the AES-CBC bodies of encrypted session messages, as CNRI's
// AbstractMessage.signMessage/verifyMessage, SessionInfo.encryptBuffer and GenericProvider do.
//
// ServerKey is loaded once at startup and then only read: any thread may sign with it. The rest
// are stateless functions.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "idnode/auth/credentials.h"
#include "idnode/common/result.h"
#include "idnode/protocol/message.h"

namespace idnode::auth {

// This node's signing key (RSA by default; DSA accepted from a file).
class ServerKey {
 public:
  // Loads the PEM private key at `path`; if there is no file and `create` is set, generates a
  // 2048-bit RSA key and writes it there (owner-only, written to a temporary file and renamed).
  // Startup only: the error says what is wrong.
  static Result<std::shared_ptr<const ServerKey>, std::string> LoadOrCreate(const std::string& path,
                                                                            bool create);
  // A key from PEM text (tests).
  static std::shared_ptr<const ServerKey> FromPem(std::string_view pem);

  // The HS_PUBKEY encoding of the public half (HS_SITE's server entries, 0.NA/<prefix> sites).
  const std::vector<uint8_t>& public_key_value() const { return public_value_; }
  bool is_rsa() const { return rsa_; }
  // A signature over the concatenation of `parts`: SHA-256 (or SHA-1) with RSA PKCS#1 v1.5, or
  // DSA's DER signature. Empty on failure.
  std::vector<uint8_t> Sign(std::initializer_list<std::span<const uint8_t>> parts,
                            bool sha256) const;
  // RSA PKCS#1 v1.5 decryption of a session key a client encrypted to this key (KEY_EXCHANGE
  // CIPHER_SERVER); empty on failure.
  std::vector<uint8_t> Decrypt(std::span<const uint8_t> ciphertext) const;

  ServerKey(const ServerKey&) = delete;
  ServerKey& operator=(const ServerKey&) = delete;
  ~ServerKey();

 private:
  ServerKey() = default;
  void* key_ = nullptr;  // EVP_PKEY*
  bool rsa_ = false;
  std::vector<uint8_t> public_value_;
};

// ---- credentials on encoded messages --------------------------------------------------------
//
// `buffer[0, size)` holds one encoded message (envelope, header, body and a credential section
// that is absent or empty), e.g. as protocol::EncodeMessage wrote it.

// Signs it with `key` (HS_SIGNED, SHA-256 from 2.7 on, as CNRI's server does), setting CT in the
// header first. Returns the new size, or 0 (message unchanged) if it does not fit or the key
// failed.
size_t SignEncoded(std::span<uint8_t> buffer, size_t size, const ServerKey& key);

// MACs it with a session key (HS_MAC, HMAC-SHA256, `counter` in the credential), setting CT.
// Protocol 2.7 and later only (CNRI's earlier MAC layouts are not offered): returns 0 otherwise.
size_t MacEncoded(std::span<uint8_t> buffer, size_t size, std::span<const uint8_t> session_key,
                  uint32_t counter);

// Checks the HS_MAC credential of the decoded `message` (whose bytes are `bytes`) against
// `session_key`. kMalformed when it has no HS_MAC credential or names another algorithm.
Verdict VerifyMac(const protocol::Message& message, std::span<const uint8_t> bytes,
                  std::span<const uint8_t> session_key);

// Checks the HS_SIGNED credential of `message` against an HS_PUBKEY value (certified answers;
// the tests and idctl use it).
Verdict VerifySigned(const protocol::Message& message, std::span<const uint8_t> bytes,
                     std::span<const uint8_t> public_key_value);

// What a credential covers before header and body, for `envelope` and `counter`
// (AbstractMessage.signMessage): nothing below 2.6; CNRI 2.6's misplaced layout; from 2.7 the
// versions (and the suggested ones from 2.8), session id, request id and counter.
std::vector<uint8_t> CredentialPreamble(const protocol::Envelope& envelope, uint32_t counter);

// ---- session keys and encrypted bodies ------------------------------------------------------

// CNRI's key exchange modes (Common.KEY_EXCHANGE_*).
namespace key_exchange {
inline constexpr uint16_t kCipherClient = 1;  // a key RSA-encrypted to the client's key
inline constexpr uint16_t kCipherServer = 2;  // the client sends a key encrypted to ours (OC 402)
inline constexpr uint16_t kCipherHandle = 3;  // a key RSA-encrypted to a key held in a handle
inline constexpr uint16_t kDiffieHellman = 4;
}  // namespace key_exchange

// An OC 400 SESSION_SETUP body (Encoder.decodeSessionSetupRequest); views into the message.
struct SessionSetupRequest {
  uint16_t mode = 0;
  int32_t timeout_seconds = 0;
  std::string_view identity_handle;  // empty (index -1): an anonymous session
  int32_t identity_index = -1;
  std::span<const uint8_t> client_key;  // kCipherClient, kDiffieHellman: an HS_PUBKEY encoding
  std::string_view key_handle;          // kCipherHandle
  int32_t key_index = 0;
};
// Parses it: mode(2) timeout(4) identity(str) index(4), then the exchange key by mode. CNRI
// counts 4 bytes for the mode and writes 2, so up to 4 bytes may follow; any other leftover, a
// short field or an identity longer than a handle may be is an error (RC 504). An unknown mode
// parses (the caller answers RC 501, as the reference).
Result<SessionSetupRequest, std::string> ParseSessionSetup(std::span<const uint8_t> body);

// CNRI's cipher codes (HdlSecurityProvider.ENCRYPT_ALG_*), and the Teleinfo SDK's SM4. idnode
// offers AES (IV on the wire, as CNRI from 2.4) and SM4 (the SDK's: IV = the key, none on the
// wire).
inline constexpr uint32_t kCipherAes = 3;
inline constexpr uint32_t kCipherSm4 = 4;

// SM2 public-key encryption to an SM2_PUB_KEY HS_PUBKEY value, in the SDK's C1‖C3‖C2 layout
// (C1 = 04‖x1‖y1, C3 = SM3(x2‖M‖y2), C2 = M xor KDF): how a session key reaches an SDK client.
// Empty when the value is not an SM2 key.
std::vector<uint8_t> EncryptToSm2(std::span<const uint8_t> sm2_key_value,
                                  std::span<const uint8_t> plaintext);
// Whether an HS_PUBKEY value is an SM2 key.
bool IsSm2KeyValue(std::span<const uint8_t> key_value);

// Diffie-Hellman with the client's group: `client_public_value` is its DH_PUB_KEY HS_PUBKEY
// encoding. On success, `server_public_value` gets this side's DH_PUB_KEY encoding and the
// session key is returned: the shared secret's first 32 bytes after leading zeros
// (GenericProvider.getKeyFromDH for AES).
Result<std::vector<uint8_t>, std::string> DiffieHellman(
    std::span<const uint8_t> client_public_value, std::vector<uint8_t>* server_public_value);

// RSA PKCS#1 v1.5 encryption to an HS_PUBKEY RSA value (KEY_EXCHANGE_CIPHER_CLIENT/HDL: the
// session key travels as cipher code(4) ‖ key). Empty when the value is not a usable RSA key.
std::vector<uint8_t> EncryptToPublicKey(std::span<const uint8_t> public_key_value,
                                        std::span<const uint8_t> plaintext);

// AES-128-CBC with PKCS#5 padding under the first 16 bytes of `session_key`: IV(16) ‖ ciphertext
// (SessionInfo.encryptBuffer from 2.4 on).
std::vector<uint8_t> EncryptBody(std::span<const uint8_t> session_key,
                                 std::span<const uint8_t> plaintext);
// The inverse; an error for a wrong key, a bad padding or a length that is not whole blocks.
Result<std::vector<uint8_t>, std::string> DecryptBody(std::span<const uint8_t> session_key,
                                                      std::span<const uint8_t> iv_and_ciphertext);
// SM4-CBC with PKCS#5 padding, the IV being the 16-byte key itself (the SDK's layout).
std::vector<uint8_t> EncryptBodySm4(std::span<const uint8_t> session_key,
                                    std::span<const uint8_t> plaintext);
Result<std::vector<uint8_t>, std::string> DecryptBodySm4(std::span<const uint8_t> session_key,
                                                         std::span<const uint8_t> ciphertext);

// Encrypts the message in `buffer[0, size)` in place: everything after the envelope becomes
// IV ‖ ciphertext, EC is set and MessageLength patched. Returns the new size, 0 if it does not
// fit.
size_t EncryptEncoded(std::span<uint8_t> buffer, size_t size, std::span<const uint8_t> session_key,
                      uint32_t cipher = kCipherAes);
// The plain message of an encrypted one: the same envelope with EC cleared and MessageLength
// patched, then the decrypted header, body and credential.
Result<std::vector<uint8_t>, std::string> DecryptMessage(std::span<const uint8_t> message,
                                                         std::span<const uint8_t> session_key,
                                                         uint32_t cipher = kCipherAes);

}  // namespace idnode::auth
