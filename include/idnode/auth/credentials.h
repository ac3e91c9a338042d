// auth/: proving who a client is (HANDLE.md §1.10). A client answers a 402 challenge with a
// signature (HS_PUBKEY: RSA or DSA) or a MAC (HS_SECKEY) over nonce ‖ request digest; this file
// checks such answers against the identity's key value, and computes them for idnode's own clients
// (idctl, idbench, tests).
//
// Stateless functions, safe on any thread. Keys are OpenSSL 3 EVP keys built from the Handle
// encodings; nothing here touches sockets or storage.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "idnode/common/result.h"

namespace idnode::auth {

inline constexpr std::string_view kAuthTypePublicKey = "HS_PUBKEY";
inline constexpr std::string_view kAuthTypeSecretKey = "HS_SECKEY";

// An identity: the value at `index` of `handle` holds its key ("300:0.NA/20.500.12345").
struct Identity {
  std::string handle;
  int32_t index = 0;

  std::string ToString() const;
  // "index:handle"; nullopt unless the index is a positive integer and the handle non-empty.
  static std::optional<Identity> Parse(std::string_view text);
  friend bool operator==(const Identity&, const Identity&) = default;
};

// HS_SECKEY MAC codes (Common.HASH_CODE_*): the first byte of a secret-key answer from 2.1 on.
namespace mac_code {
inline constexpr uint8_t kMd5 = 0x01;             // MD5(key ‖ data ‖ key)
inline constexpr uint8_t kSha1 = 0x02;            // SHA1(key ‖ data ‖ key), clients 2.1–2.6
inline constexpr uint8_t kSha256 = 0x03;          // SHA256(key ‖ data ‖ key)
inline constexpr uint8_t kHmacSha1 = 0x12;        // HMAC-SHA1(key, data)
inline constexpr uint8_t kHmacSha256 = 0x13;      // HMAC-SHA256(key, data)
inline constexpr uint8_t kPbkdf2HmacSha1 = 0x22;  // CNRI's default from 2.7 (see below)
}  // namespace mac_code

// PBKDF2 answers carry their own parameters; these bounds keep a hostile answer from buying
// unbounded CPU (CNRI's clients use 10,000 iterations and 160 bits).
inline constexpr uint32_t kMaxPbkdf2Iterations = 200'000;
inline constexpr uint32_t kMaxPbkdf2KeyBits = 512;
inline constexpr size_t kMaxPbkdf2SaltBytes = 256;

enum class Verdict : uint8_t {
  kValid,
  kInvalid,      // well formed, but not made with this key: RC_AUTHENTICATION_FAILED
  kMalformed,    // the answer or the key value cannot be read: RC_AUTHENTICATION_FAILED
  kUnsupported,  // an algorithm or key type this node does not verify: RC_AUTHEN_ERROR
};
std::string_view VerdictName(Verdict verdict);

// Checks `signed_response` (the OC 200 field) for `auth_type` against `key_data` (the data of the
// identity's HS_PUBKEY or HS_SECKEY value). `legacy` is true when the challenge was issued in a
// protocol version below 2.1: secret-key answers are then a bare MD5 MAC without a code byte.
// SM2 identities (China's identifier SDK, HANDLE.md §3): key data "SM2_PUB_KEY" with the public
// key as PEM text or DER inside; answers named "SM3" (SM2/SM3 over SM3(nonce ‖ digest), the
// identity handle as SM2 user id: `identity_handle`) or "SHA-256" (SM2 with SHA-256 for Z_A and e
// over nonce ‖ digest, user id "1234567812345678"), signatures in DER.
[[nodiscard]] Verdict VerifyChallengeAnswer(
    std::string_view auth_type, std::span<const uint8_t> key_data, std::span<const uint8_t> nonce,
    std::span<const uint8_t> request_digest, std::span<const uint8_t> signed_response,
    bool legacy = false, std::string_view identity_handle = {});

inline constexpr std::string_view kKeyTypeSm2 = "SM2_PUB_KEY";
// The default SM2 user id (GB/T 32918.2), as BouncyCastle's SHA256withSM2 uses it.
inline constexpr std::string_view kSm2DefaultUserId = "1234567812345678";

// ---- the client side ----

// A secret-key answer: code byte + MAC over nonce ‖ digest. For kPbkdf2HmacSha1 the key is first
// stretched with `salt` and `iterations` (160-bit key) and the answer carries those parameters as
// CNRI encodes them (salt(str) iterations(4) keyLength(4) mac(str)).
std::vector<uint8_t> SecretKeyAnswer(uint8_t code, std::span<const uint8_t> secret,
                                     std::span<const uint8_t> nonce,
                                     std::span<const uint8_t> request_digest,
                                     std::span<const uint8_t> salt = {},
                                     uint32_t iterations = 10000);

// A public-key answer: hashAlgName(str "SHA-256") + signature(str) over nonce ‖ digest, made with
// a PEM private key (RSA: PKCS#1 v1.5; DSA: DER signature). An SM2 key answers as China's
// identifier SDK does on its "SM3" path: SM2/SM3 (DER) over SM3(nonce ‖ digest), with
// `identity_handle` as the SM2 user id (required for an SM2 key). Empty on a key OpenSSL cannot
// use.
std::vector<uint8_t> PublicKeyAnswer(std::string_view private_key_pem,
                                     std::span<const uint8_t> nonce,
                                     std::span<const uint8_t> request_digest,
                                     std::string_view identity_handle = {});

// A private key from a file, as PEM (PKCS#8) text for PublicKeyAnswer: PEM as OpenSSL writes it
// (PKCS#8, encrypted or not, or a traditional RSA/DSA key), or the reference's own key file as its
// hdl-keygen writes it (privkey.bin: unencrypted, or PBKDF2 with AES-CBC or DESede-CBC; RSA with
// CRT components or DSA). `passphrase` decrypts an encrypted one. The error says what is wrong.
Result<std::string, std::string> PrivateKeyPem(std::span<const uint8_t> file,
                                               std::string_view passphrase);

// A private key (PEM) in the reference's own key file format (hdl-keygen's privkey.bin), which
// its tools read: unencrypted when `passphrase` is empty, else PBKDF2-HMAC-SHA1 (10,000
// iterations, Java's password encoding) with AES-128-CBC, as hdl-keygen writes it. RSA (with its
// CRT components) or DSA.
Result<std::vector<uint8_t>, std::string> ReferenceKeyFile(std::string_view private_key_pem,
                                                           std::string_view passphrase);

// The HS_PUBKEY value data for the public half of a PEM private key (RSA or DSA; SM2 as China's
// identifier SDK writes it: "SM2_PUB_KEY", flags 0, then the X.509 PEM text with CRLF line ends
// and 76-column lines); empty if the key is of another type.
std::vector<uint8_t> PublicKeyValueFor(std::string_view private_key_pem);

}  // namespace idnode::auth
