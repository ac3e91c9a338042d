// Internal to the auth room: OpenSSL 3 handles and the Handle key encodings, defined in
// credentials.cc and shared by server_key.cc and message_auth.cc. Stateless, any thread.
#pragma once

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

namespace idnode::auth::detail {

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
struct BnFree {
  void operator()(BIGNUM* p) const { BN_free(p); }
};
struct ParamBldFree {
  void operator()(OSSL_PARAM_BLD* p) const { OSSL_PARAM_BLD_free(p); }
};
struct ParamFree {
  void operator()(OSSL_PARAM* p) const { OSSL_PARAM_free(p); }
};
struct BioFree {
  void operator()(BIO* p) const { BIO_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using Bn = std::unique_ptr<BIGNUM, BnFree>;

std::vector<uint8_t> Hmac(const EVP_MD* md, std::span<const uint8_t> key,
                          std::span<const uint8_t> data);
bool ConstantTimeEqual(std::span<const uint8_t> a, std::span<const uint8_t> b);
// Names compared ignoring case and punctuation ("SHA-256" == "sha256"), as CNRI does.
bool SameAlgorithmName(std::string_view a, std::string_view b);
// SHA-256 or SHA-1 by CNRI's name; nullptr for anything else (MD5 is refused).
const EVP_MD* SignatureDigest(std::string_view name);
Bn ToBn(std::span<const uint8_t> magnitude);
Pkey KeyFromParams(const char* type, std::initializer_list<std::pair<const char*, BIGNUM*>> bns,
                   int selection);
// The EVP key of an HS_PUBKEY value that can sign (RSA, DSA); nullptr otherwise (`*unsupported`
// set for a DH key).
Pkey PublicKeyFromValue(std::span<const uint8_t> key_data, bool* unsupported);
Pkey ReadPrivateKey(std::string_view pem);
// The SM2 public key of an "SM2_PUB_KEY" HS_PUBKEY value (PEM text or DER inside); nullptr when
// it is not one (`*is_sm2` says whether the value claimed to be).
Pkey Sm2KeyFromValue(std::span<const uint8_t> key_data, bool* is_sm2);
// BigInteger.toByteArray of one of `key`'s numbers.
std::vector<uint8_t> JavaMagnitude(const EVP_PKEY* key, const char* name);

}  // namespace idnode::auth::detail
