#include "idnode/auth/credentials.h"

#include "openssl_detail.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/obj_mac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include <array>
#include <charconv>
#include <memory>

#include "idnode/protocol/value_types.h"
#include "idnode/protocol/wire.h"

namespace idnode::auth {

// Shared with the other OpenSSL users of this room (openssl_detail.h).
namespace detail {

std::vector<uint8_t> Concat(std::span<const uint8_t> a, std::span<const uint8_t> b) {
  std::vector<uint8_t> out(a.begin(), a.end());
  out.insert(out.end(), b.begin(), b.end());
  return out;
}

// HASH(key ‖ data ‖ key), the pre-HMAC secret-key scheme.
std::vector<uint8_t> SandwichHash(const EVP_MD* md, std::span<const uint8_t> key,
                                  std::span<const uint8_t> data) {
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  std::vector<uint8_t> out(EVP_MAX_MD_SIZE);
  unsigned int size = 0;
  if (!ctx || EVP_DigestInit_ex(ctx.get(), md, nullptr) != 1 ||
      EVP_DigestUpdate(ctx.get(), key.data(), key.size()) != 1 ||
      EVP_DigestUpdate(ctx.get(), data.data(), data.size()) != 1 ||
      EVP_DigestUpdate(ctx.get(), key.data(), key.size()) != 1 ||
      EVP_DigestFinal_ex(ctx.get(), out.data(), &size) != 1) {
    return {};
  }
  out.resize(size);
  return out;
}

std::vector<uint8_t> Hmac(const EVP_MD* md, std::span<const uint8_t> key,
                          std::span<const uint8_t> data) {
  std::vector<uint8_t> out(EVP_MAX_MD_SIZE);
  unsigned int size = 0;
  static const uint8_t kEmpty = 0;
  if (HMAC(md, key.empty() ? &kEmpty : key.data(), static_cast<int>(key.size()), data.data(),
           data.size(), out.data(), &size) == nullptr) {
    return {};
  }
  out.resize(size);
  return out;
}

// Java's PBEKeySpec takes the secret as chars (each byte 0..255 becomes one char) and SunJCE's
// PBKDF2 encodes them as UTF-8, so bytes above 0x7F become two bytes (CNRI Util.doPBKDF2).
std::vector<uint8_t> JavaPbkdf2Password(std::span<const uint8_t> secret) {
  std::vector<uint8_t> out;
  out.reserve(secret.size() * 2);
  for (uint8_t b : secret) {
    if (b < 0x80) {
      out.push_back(b);
    } else {
      out.push_back(static_cast<uint8_t>(0xC0 | (b >> 6)));
      out.push_back(static_cast<uint8_t>(0x80 | (b & 0x3F)));
    }
  }
  return out;
}

std::vector<uint8_t> Pbkdf2Mac(std::span<const uint8_t> secret, std::span<const uint8_t> salt,
                               uint32_t iterations, uint32_t key_bits,
                               std::span<const uint8_t> data) {
  std::vector<uint8_t> password = JavaPbkdf2Password(secret);
  std::vector<uint8_t> derived(key_bits / 8);
  if (PKCS5_PBKDF2_HMAC_SHA1(reinterpret_cast<const char*>(password.data()),
                             static_cast<int>(password.size()), salt.data(),
                             static_cast<int>(salt.size()), static_cast<int>(iterations),
                             static_cast<int>(derived.size()), derived.data()) != 1) {
    return {};
  }
  return Hmac(EVP_sha1(), derived, data);
}

bool ConstantTimeEqual(std::span<const uint8_t> a, std::span<const uint8_t> b) {
  return a.size() == b.size() && !a.empty() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

// Compares names ignoring case and punctuation, as CNRI's equalsIgnoreCaseAndPunctuation does
// ("SHA-256" == "sha256").
bool SameAlgorithmName(std::string_view a, std::string_view b) {
  auto next = [](std::string_view s, size_t& i) -> int {
    while (i < s.size()) {
      char c = s[i++];
      if (c >= 'a' && c <= 'z') return c - 'a' + 'A';
      if ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return c;
    }
    return -1;
  };
  size_t i = 0;
  size_t j = 0;
  while (true) {
    int x = next(a, i);
    int y = next(b, j);
    if (x != y) return false;
    if (x < 0) return true;
  }
}

const EVP_MD* SignatureDigest(std::string_view name) {
  if (SameAlgorithmName(name, "SHA-256")) return EVP_sha256();
  if (SameAlgorithmName(name, "SHA-1") || SameAlgorithmName(name, "SHA")) return EVP_sha1();
  return nullptr;  // MD5 signatures are refused
}

Bn ToBn(std::span<const uint8_t> magnitude) {
  return Bn(BN_bin2bn(magnitude.data(), static_cast<int>(magnitude.size()), nullptr));
}

Pkey KeyFromParams(const char* type, std::initializer_list<std::pair<const char*, BIGNUM*>> bns,
                   int selection) {
  std::unique_ptr<OSSL_PARAM_BLD, ParamBldFree> bld(OSSL_PARAM_BLD_new());
  if (!bld) return nullptr;
  for (const auto& [name, bn] : bns) {
    if (bn == nullptr || OSSL_PARAM_BLD_push_BN(bld.get(), name, bn) != 1) return nullptr;
  }
  std::unique_ptr<OSSL_PARAM, ParamFree> params(OSSL_PARAM_BLD_to_param(bld.get()));
  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(
      EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  EVP_PKEY* key = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &key, selection, params.get()) != 1) {
    return nullptr;
  }
  return Pkey(key);
}

// The EVP key for an HS_PUBKEY value (RSA or DSA); nullptr if it does not decode or is DH.
Pkey PublicKeyFromValue(std::span<const uint8_t> key_data, bool* unsupported) {
  auto decoded = protocol::DecodePublicKey(key_data);
  if (!decoded.ok()) return nullptr;
  if (const auto* rsa = std::get_if<protocol::RsaPublicKey>(&decoded->key)) {
    Bn n = ToBn(rsa->modulus);
    Bn e = ToBn(rsa->exponent);
    return KeyFromParams("RSA",
                         {{OSSL_PKEY_PARAM_RSA_N, n.get()}, {OSSL_PKEY_PARAM_RSA_E, e.get()}},
                         EVP_PKEY_PUBLIC_KEY);
  }
  if (const auto* dsa = std::get_if<protocol::DsaPublicKey>(&decoded->key)) {
    Bn p = ToBn(dsa->p);
    Bn q = ToBn(dsa->q);
    Bn g = ToBn(dsa->g);
    Bn y = ToBn(dsa->y);
    return KeyFromParams("DSA",
                         {{OSSL_PKEY_PARAM_FFC_P, p.get()},
                          {OSSL_PKEY_PARAM_FFC_Q, q.get()},
                          {OSSL_PKEY_PARAM_FFC_G, g.get()},
                          {OSSL_PKEY_PARAM_PUB_KEY, y.get()}},
                         EVP_PKEY_PUBLIC_KEY);
  }
  *unsupported = true;  // a DH key cannot sign
  return nullptr;
}

// The MAC of `data` for the codes without parameters; nullopt for PBKDF2 and unknown codes.
std::optional<std::vector<uint8_t>> PlainMac(uint8_t code, std::span<const uint8_t> secret,
                                             std::span<const uint8_t> data) {
  switch (code) {
    case mac_code::kMd5:
      return SandwichHash(EVP_md5(), secret, data);
    case mac_code::kSha1:
      return SandwichHash(EVP_sha1(), secret, data);
    case mac_code::kSha256:
      return SandwichHash(EVP_sha256(), secret, data);
    case mac_code::kHmacSha1:
      return Hmac(EVP_sha1(), secret, data);
    case mac_code::kHmacSha256:
      return Hmac(EVP_sha256(), secret, data);
    default:
      return std::nullopt;
  }
}

Verdict VerifySecretKeyAnswer(std::span<const uint8_t> secret, std::span<const uint8_t> data,
                              std::span<const uint8_t> answer, bool legacy) {
  if (legacy) {
    auto expected = SandwichHash(EVP_md5(), secret, data);
    return ConstantTimeEqual(expected, answer) ? Verdict::kValid : Verdict::kInvalid;
  }
  if (answer.empty()) return Verdict::kMalformed;
  const uint8_t code = answer[0];
  auto mac = answer.subspan(1);
  std::vector<uint8_t> expected;
  if (auto plain = PlainMac(code, secret, data)) {
    expected = std::move(*plain);
  } else if (code == mac_code::kPbkdf2HmacSha1) {
    protocol::WireReader r(mac);
    auto salt = r.LengthPrefixed();
    uint32_t iterations = r.U32();
    uint32_t key_bits = r.U32();
    auto given = r.LengthPrefixed();
    r.ExpectEnd();
    if (!r.ok() || salt.size() > kMaxPbkdf2SaltBytes || iterations == 0 || key_bits == 0 ||
        key_bits % 8 != 0) {
      return Verdict::kMalformed;
    }
    if (iterations > kMaxPbkdf2Iterations || key_bits > kMaxPbkdf2KeyBits) {
      return Verdict::kUnsupported;
    }
    expected = Pbkdf2Mac(secret, salt, iterations, key_bits, data);
    mac = given;
  } else {
    return Verdict::kUnsupported;
  }
  return ConstantTimeEqual(expected, mac) ? Verdict::kValid : Verdict::kInvalid;
}

Verdict VerifyPublicKeyAnswer(std::span<const uint8_t> key_data, std::span<const uint8_t> data,
                              std::span<const uint8_t> answer) {
  protocol::WireReader r(answer);
  auto alg = r.LengthPrefixed();
  auto signature = r.LengthPrefixed();
  r.ExpectEnd();
  if (!r.ok() || signature.empty()) return Verdict::kMalformed;
  const EVP_MD* md =
      SignatureDigest(std::string_view(reinterpret_cast<const char*>(alg.data()), alg.size()));
  if (md == nullptr) return Verdict::kUnsupported;
  bool unsupported = false;
  Pkey key = PublicKeyFromValue(key_data, &unsupported);
  if (!key) return unsupported ? Verdict::kUnsupported : Verdict::kMalformed;
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, md, nullptr, key.get()) != 1) {
    return Verdict::kMalformed;
  }
  int ok =
      EVP_DigestVerify(ctx.get(), signature.data(), signature.size(), data.data(), data.size());
  return ok == 1 ? Verdict::kValid : Verdict::kInvalid;
}

Pkey ReadPrivateKey(std::string_view pem) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return nullptr;
  return Pkey(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
}

// Whether `key` is on the SM2 curve (OpenSSL 3.0 reads such a PKCS#8 key as type SM2).
bool IsSm2Key(const EVP_PKEY* key) {
  if (EVP_PKEY_is_a(key, "SM2")) return true;
  char group[64] = "";
  size_t group_length = 0;
  return EVP_PKEY_is_a(key, "EC") &&
         EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                        &group_length) == 1 &&
         std::string_view(group, group_length) == "SM2";
}

// The SDK's HS_PUBKEY data of an SM2 key: str "SM2_PUB_KEY", 2 bytes of flags (0), then str of
// the SubjectPublicKeyInfo as PEM text the way its writer makes it (76-column lines, CRLF).
std::vector<uint8_t> Sm2PublicKeyValue(EVP_PKEY* key) {
  unsigned char* der = nullptr;
  const int der_size = i2d_PUBKEY(key, &der);
  if (der_size <= 0) return {};
  std::string b64(4 * ((static_cast<size_t>(der_size) + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(b64.data()), der, der_size);
  OPENSSL_free(der);
  b64.resize(static_cast<size_t>(n));
  std::string pem = "-----BEGIN PUBLIC KEY-----\r\n";
  for (size_t i = 0; i < b64.size(); i += 76) pem += b64.substr(i, 76) + "\r\n";
  pem += "-----END PUBLIC KEY-----\r\n";
  std::vector<uint8_t> out;
  auto put_u32 = [&](uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
  };
  put_u32(static_cast<uint32_t>(kKeyTypeSm2.size()));
  out.insert(out.end(), kKeyTypeSm2.begin(), kKeyTypeSm2.end());
  out.push_back(0);
  out.push_back(0);
  put_u32(static_cast<uint32_t>(pem.size()));
  out.insert(out.end(), pem.begin(), pem.end());
  return out;
}

// BigInteger.toByteArray of a positive number: the magnitude, with a zero byte in front when its
// top bit is set.
std::vector<uint8_t> JavaMagnitude(const EVP_PKEY* key, const char* name) {
  BIGNUM* raw = nullptr;
  if (EVP_PKEY_get_bn_param(key, name, &raw) != 1) return {};
  Bn bn(raw);
  std::vector<uint8_t> out(static_cast<size_t>(BN_num_bytes(bn.get())));
  BN_bn2bin(bn.get(), out.data());
  if (out.empty() || (out[0] & 0x80) != 0) out.insert(out.begin(), 0);
  return out;
}

}  // namespace detail

using namespace detail;  // NOLINT: this file defines them

std::string Identity::ToString() const {
  return std::to_string(index) + ":" + handle;
}

std::optional<Identity> Identity::Parse(std::string_view text) {
  size_t colon = text.find(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 >= text.size()) {
    return std::nullopt;
  }
  int32_t index = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + colon, index);
  if (ec != std::errc() || end != text.data() + colon || index <= 0) return std::nullopt;
  return Identity{std::string(text.substr(colon + 1)), index};
}

std::string_view VerdictName(Verdict verdict) {
  switch (verdict) {
    case Verdict::kValid:
      return "valid";
    case Verdict::kInvalid:
      return "identity not verified";
    case Verdict::kMalformed:
      return "malformed challenge answer or key";
    case Verdict::kUnsupported:
      return "unsupported algorithm or key type";
  }
  return "?";
}

namespace detail {

// The SM2 public key of an "SM2_PUB_KEY" HS_PUBKEY value (PEM text, as the SDK writes it, or DER,
// as its reader expects); nullptr when the value is not one. `*is_sm2` tells whether it claimed to
// be.
Pkey Sm2KeyFromValue(std::span<const uint8_t> key_data, bool* is_sm2) {
  protocol::WireReader r(key_data);
  const std::string_view type = r.Text();
  *is_sm2 = r.ok() && type == kKeyTypeSm2;
  if (!*is_sm2) return nullptr;
  (void)r.U16();  // flags
  auto inner = r.LengthPrefixed();
  if (!r.ok() || inner.empty() || inner.size() > 4096) return nullptr;
  Pkey key;
  const std::string_view text(reinterpret_cast<const char*>(inner.data()), inner.size());
  if (text.find("-----BEGIN") != std::string_view::npos) {
    std::unique_ptr<BIO, BioFree> bio(
        BIO_new_mem_buf(inner.data(), static_cast<int>(inner.size())));
    if (bio) key.reset(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  } else {
    const unsigned char* p = inner.data();
    key.reset(d2i_PUBKEY(nullptr, &p, static_cast<long>(inner.size())));
  }
  if (!key) return nullptr;
  // Only a key on the SM2 curve.
  char group[64] = "";
  size_t group_length = 0;
  if (EVP_PKEY_get_utf8_string_param(key.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                     &group_length) != 1 ||
      std::string_view(group, group_length) != "SM2") {
    return nullptr;
  }
  return key;
}

}  // namespace detail

namespace {

std::vector<uint8_t> Digest(const EVP_MD* md,
                            std::initializer_list<std::span<const uint8_t>> parts) {
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  std::vector<uint8_t> out(EVP_MAX_MD_SIZE);
  unsigned int size = 0;
  if (!ctx || EVP_DigestInit_ex(ctx.get(), md, nullptr) != 1) return {};
  for (auto part : parts) {
    if (EVP_DigestUpdate(ctx.get(), part.data(), part.size()) != 1) return {};
  }
  if (EVP_DigestFinal_ex(ctx.get(), out.data(), &size) != 1) return {};
  out.resize(size);
  return out;
}

std::vector<uint8_t> Padded(const BIGNUM* n, size_t size) {
  std::vector<uint8_t> out(size);
  if (BN_bn2binpad(n, out.data(), static_cast<int>(size)) < 0) return {};
  return out;
}

// SM2 signature verification (GB/T 32918.2) with the hash `md` for Z_A and e: OpenSSL 3.0's SM2
// signer takes SM3 only, and the SDK's "SHA-256" answers use SHA-256 in both places.
Verdict VerifySm2(const EVP_PKEY* key, const EVP_MD* md, std::string_view user_id,
                  std::span<const uint8_t> message, std::span<const uint8_t> der_signature) {
  using Group = std::unique_ptr<EC_GROUP, decltype(&EC_GROUP_free)>;
  using Point = std::unique_ptr<EC_POINT, decltype(&EC_POINT_free)>;
  using Ctx = std::unique_ptr<BN_CTX, decltype(&BN_CTX_free)>;
  using Sig = std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)>;
  if (user_id.size() > 8191) return Verdict::kMalformed;  // ENTL is 16 bits of bits
  Group group(EC_GROUP_new_by_curve_name(NID_sm2), &EC_GROUP_free);
  Ctx ctx(BN_CTX_new(), &BN_CTX_free);
  if (!group || !ctx) return Verdict::kMalformed;
  std::vector<uint8_t> point_bytes(133);
  size_t point_size = 0;
  if (EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, point_bytes.data(),
                                      point_bytes.size(), &point_size) != 1)
    return Verdict::kMalformed;
  Point public_point(EC_POINT_new(group.get()), &EC_POINT_free);
  if (!public_point || EC_POINT_oct2point(group.get(), public_point.get(), point_bytes.data(),
                                          point_size, ctx.get()) != 1)
    return Verdict::kMalformed;
  const unsigned char* der = der_signature.data();
  Sig sig(d2i_ECDSA_SIG(nullptr, &der, static_cast<long>(der_signature.size())), &ECDSA_SIG_free);
  if (!sig || der != der_signature.data() + der_signature.size()) return Verdict::kMalformed;
  const BIGNUM* r = ECDSA_SIG_get0_r(sig.get());
  const BIGNUM* s = ECDSA_SIG_get0_s(sig.get());
  const BIGNUM* n = EC_GROUP_get0_order(group.get());
  if (BN_is_negative(r) || BN_is_negative(s) || BN_is_zero(r) || BN_is_zero(s) ||
      BN_cmp(r, n) >= 0 || BN_cmp(s, n) >= 0)
    return Verdict::kInvalid;
  // Z_A = H(ENTL ‖ ID ‖ a ‖ b ‖ xG ‖ yG ‖ xA ‖ yA)
  Bn p(BN_new()), a(BN_new()), b(BN_new()), xg(BN_new()), yg(BN_new()), xa(BN_new()), ya(BN_new());
  if (!p || !a || !b || !xg || !yg || !xa || !ya ||
      EC_GROUP_get_curve(group.get(), p.get(), a.get(), b.get(), ctx.get()) != 1 ||
      EC_POINT_get_affine_coordinates(group.get(), EC_GROUP_get0_generator(group.get()), xg.get(),
                                      yg.get(), ctx.get()) != 1 ||
      EC_POINT_get_affine_coordinates(group.get(), public_point.get(), xa.get(), ya.get(),
                                      ctx.get()) != 1)
    return Verdict::kMalformed;
  const size_t bits = user_id.size() * 8;
  const uint8_t entl[2] = {static_cast<uint8_t>(bits >> 8), static_cast<uint8_t>(bits)};
  const std::span<const uint8_t> id(reinterpret_cast<const uint8_t*>(user_id.data()),
                                    user_id.size());
  std::vector<uint8_t> z =
      Digest(md, {entl, id, Padded(a.get(), 32), Padded(b.get(), 32), Padded(xg.get(), 32),
                  Padded(yg.get(), 32), Padded(xa.get(), 32), Padded(ya.get(), 32)});
  std::vector<uint8_t> e_bytes = Digest(md, {z, message});
  if (z.empty() || e_bytes.empty()) return Verdict::kMalformed;
  Bn e(BN_bin2bn(e_bytes.data(), static_cast<int>(e_bytes.size()), nullptr));
  Bn t(BN_new()), x1(BN_new()), big_r(BN_new());
  Point sum(EC_POINT_new(group.get()), &EC_POINT_free);
  if (!e || !t || !x1 || !big_r || !sum || BN_mod_add(t.get(), r, s, n, ctx.get()) != 1)
    return Verdict::kMalformed;
  if (BN_is_zero(t.get())) return Verdict::kInvalid;
  // (x1, y1) = [s]G + [t]P_A; valid when (e + x1) mod n == r.
  if (EC_POINT_mul(group.get(), sum.get(), s, public_point.get(), t.get(), ctx.get()) != 1 ||
      EC_POINT_get_affine_coordinates(group.get(), sum.get(), x1.get(), nullptr, ctx.get()) != 1 ||
      BN_mod_add(big_r.get(), e.get(), x1.get(), n, ctx.get()) != 1)
    return Verdict::kInvalid;
  return BN_cmp(big_r.get(), r) == 0 ? Verdict::kValid : Verdict::kInvalid;
}

Verdict VerifySm2Answer(const EVP_PKEY* key, std::span<const uint8_t> data,
                        std::span<const uint8_t> answer, std::string_view identity_handle) {
  protocol::WireReader r(answer);
  auto alg = r.LengthPrefixed();
  auto signature = r.LengthPrefixed();
  r.ExpectEnd();
  if (!r.ok() || signature.empty() || signature.size() > 256) return Verdict::kMalformed;
  const std::string_view name(reinterpret_cast<const char*>(alg.data()), alg.size());
  if (SameAlgorithmName(name, "SM3")) {
    // The SDK hashes first, then signs the hash with SM2/SM3 under the identity handle.
    std::vector<uint8_t> m = Digest(EVP_sm3(), {data});
    return VerifySm2(key, EVP_sm3(), identity_handle, m, signature);
  }
  if (SameAlgorithmName(name, "SHA-256"))
    return VerifySm2(key, EVP_sha256(), kSm2DefaultUserId, data, signature);
  return Verdict::kUnsupported;
}

}  // namespace

Verdict VerifyChallengeAnswer(std::string_view auth_type, std::span<const uint8_t> key_data,
                              std::span<const uint8_t> nonce,
                              std::span<const uint8_t> request_digest,
                              std::span<const uint8_t> signed_response, bool legacy,
                              std::string_view identity_handle) {
  std::vector<uint8_t> data = Concat(nonce, request_digest);
  if (auth_type == kAuthTypeSecretKey) {
    return VerifySecretKeyAnswer(key_data, data, signed_response, legacy);
  }
  if (auth_type == kAuthTypePublicKey) {
    bool is_sm2 = false;
    Pkey sm2 = Sm2KeyFromValue(key_data, &is_sm2);
    if (is_sm2) {
      if (!sm2) return Verdict::kMalformed;
      return VerifySm2Answer(sm2.get(), data, signed_response, identity_handle);
    }
    return VerifyPublicKeyAnswer(key_data, data, signed_response);
  }
  return Verdict::kUnsupported;
}

std::vector<uint8_t> SecretKeyAnswer(uint8_t code, std::span<const uint8_t> secret,
                                     std::span<const uint8_t> nonce,
                                     std::span<const uint8_t> request_digest,
                                     std::span<const uint8_t> salt, uint32_t iterations) {
  std::vector<uint8_t> data = Concat(nonce, request_digest);
  std::vector<uint8_t> mac;
  if (auto plain = PlainMac(code, secret, data)) {
    mac = std::move(*plain);
  } else if (code == mac_code::kPbkdf2HmacSha1) {
    constexpr uint32_t kKeyBits = 160;
    auto inner = Pbkdf2Mac(secret, salt, iterations, kKeyBits, data);
    std::vector<uint8_t> out(1 + 4 + salt.size() + 8 + 4 + inner.size());
    protocol::WireWriter w(out);
    w.U8(code);
    w.LengthPrefixed(salt);
    w.U32(iterations);
    w.U32(kKeyBits);
    w.LengthPrefixed(inner);
    return out;
  } else {
    return {};
  }
  std::vector<uint8_t> out;
  out.reserve(1 + mac.size());
  out.push_back(code);
  out.insert(out.end(), mac.begin(), mac.end());
  return out;
}

std::vector<uint8_t> PublicKeyAnswer(std::string_view private_key_pem,
                                     std::span<const uint8_t> nonce,
                                     std::span<const uint8_t> request_digest,
                                     std::string_view identity_handle) {
  Pkey key = ReadPrivateKey(private_key_pem);
  if (!key) return {};
  std::vector<uint8_t> data = Concat(nonce, request_digest);
  const bool sm2 = IsSm2Key(key.get());
  if (sm2 && identity_handle.empty()) return {};  // the SM2 user id is the identity handle
  if (sm2) data = Digest(EVP_sm3(), {data});      // the SDK hashes first, then signs with SM2/SM3
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  if (!ctx) return {};
  // Set into ctx for SM2 (its user id), but not handed over (EVP_MD_CTX_FLAG_KEEP_PKEY_CTX):
  // freed here, after ctx.
  EVP_PKEY_CTX* pctx = nullptr;
  if (sm2) {
    pctx = EVP_PKEY_CTX_new(key.get(), nullptr);
    if (pctx == nullptr || EVP_PKEY_CTX_set1_id(pctx, identity_handle.data(),
                                                static_cast<int>(identity_handle.size())) != 1) {
      EVP_PKEY_CTX_free(pctx);
      return {};
    }
    EVP_MD_CTX_set_pkey_ctx(ctx.get(), pctx);
  }
  size_t size = 0;
  if (EVP_DigestSignInit(ctx.get(), nullptr, sm2 ? EVP_sm3() : EVP_sha256(), nullptr, key.get()) !=
          1 ||
      EVP_DigestSign(ctx.get(), nullptr, &size, data.data(), data.size()) != 1) {
    ctx.reset();
    EVP_PKEY_CTX_free(pctx);
    return {};
  }
  std::vector<uint8_t> signature(size);
  const bool signed_ok =
      EVP_DigestSign(ctx.get(), signature.data(), &size, data.data(), data.size()) == 1;
  ctx.reset();  // EVP_MD_CTX_set_pkey_ctx does not hand pctx over: freed after its user
  EVP_PKEY_CTX_free(pctx);
  if (!signed_ok) return {};
  signature.resize(size);
  const std::string_view kAlg = sm2 ? "SM3" : "SHA-256";
  std::vector<uint8_t> out(4 + kAlg.size() + 4 + signature.size());
  protocol::WireWriter w(out);
  w.Text(kAlg);
  w.LengthPrefixed(signature);
  return out;
}

std::vector<uint8_t> PublicKeyValueFor(std::string_view private_key_pem) {
  Pkey key = ReadPrivateKey(private_key_pem);
  if (!key) return {};
  protocol::PublicKey pub;
  std::vector<uint8_t> a, b, c, d;
  if (EVP_PKEY_is_a(key.get(), "RSA")) {
    a = JavaMagnitude(key.get(), OSSL_PKEY_PARAM_RSA_E);
    b = JavaMagnitude(key.get(), OSSL_PKEY_PARAM_RSA_N);
    pub.key = protocol::RsaPublicKey{a, b, true, {}};
  } else if (EVP_PKEY_is_a(key.get(), "DSA")) {
    a = JavaMagnitude(key.get(), OSSL_PKEY_PARAM_FFC_Q);
    b = JavaMagnitude(key.get(), OSSL_PKEY_PARAM_FFC_P);
    c = JavaMagnitude(key.get(), OSSL_PKEY_PARAM_FFC_G);
    d = JavaMagnitude(key.get(), OSSL_PKEY_PARAM_PUB_KEY);
    pub.key = protocol::DsaPublicKey{a, b, c, d};
  } else if (IsSm2Key(key.get())) {
    return Sm2PublicKeyValue(key.get());
  } else {
    return {};
  }
  return protocol::EncodePublicKey(pub);
}

namespace {

// The passphrase as the reference's PBKDF2 sees it: each byte a Java char (0-255), which the JDK's
// PBKDF2 key encodes as UTF-8 (the same bytes for an ASCII passphrase).
std::string JavaPbkdf2Password(std::string_view passphrase) {
  std::string out;
  for (unsigned char c : passphrase) {
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back(static_cast<char>(0xc0 | (c >> 6)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3f)));
    }
  }
  return out;
}

// PBKDF2-HMAC-SHA1, then a CBC decryption with PKCS#5 padding.
Result<std::vector<uint8_t>, std::string> PbeDecrypt(const EVP_CIPHER* cipher, size_t key_size,
                                                     std::string_view passphrase,
                                                     std::span<const uint8_t> salt,
                                                     uint32_t iterations,
                                                     std::span<const uint8_t> iv,
                                                     std::span<const uint8_t> ciphertext) {
  if (iterations == 0 || iterations > 10'000'000)
    return Failure{std::string("the key file's PBKDF2 iteration count is out of range")};
  if (iv.size() != static_cast<size_t>(EVP_CIPHER_get_iv_length(cipher)))
    return Failure{std::string("the key file's IV has the wrong size")};
  std::string password = JavaPbkdf2Password(passphrase);
  std::vector<uint8_t> key(key_size);
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()), salt.data(),
                        static_cast<int>(salt.size()), static_cast<int>(iterations), EVP_sha1(),
                        static_cast<int>(key.size()), key.data()) != 1) {
    OPENSSL_cleanse(password.data(), password.size());
    return Failure{std::string("PBKDF2 failed")};
  }
  OPENSSL_cleanse(password.data(), password.size());
  std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> ctx(EVP_CIPHER_CTX_new(),
                                                                      &EVP_CIPHER_CTX_free);
  std::vector<uint8_t> plain(ciphertext.size() + 32);
  int n = 0, tail_size = 0;
  if (!ctx || EVP_DecryptInit_ex(ctx.get(), cipher, nullptr, key.data(), iv.data()) != 1 ||
      EVP_DecryptUpdate(ctx.get(), plain.data(), &n, ciphertext.data(),
                        static_cast<int>(ciphertext.size())) != 1 ||
      EVP_DecryptFinal_ex(ctx.get(), plain.data() + n, &tail_size) != 1) {
    OPENSSL_cleanse(key.data(), key.size());
    OPENSSL_cleanse(plain.data(), plain.size());
    return Failure{std::string("cannot decrypt the key file (wrong passphrase?)")};
  }
  OPENSSL_cleanse(key.data(), key.size());
  plain.resize(static_cast<size_t>(n + tail_size));
  return plain;
}

// The reference's key encoding (Util.getPrivateKeyFromBytes): the type as a byte string, then the
// components as byte strings (BigInteger.toByteArray), without the flags a public key has.
Result<Pkey, std::string> KeyFromReferenceEncoding(std::span<const uint8_t> inner) {
  protocol::WireReader r(inner);
  auto type_bytes = r.LengthPrefixed();
  std::string_view type(reinterpret_cast<const char*>(type_bytes.data()), type_bytes.size());
  auto next = [&r]() { return ToBn(r.LengthPrefixed()); };
  Pkey key;
  if (type == "RSA_PRIVCRT_KEY") {
    Bn n = next(), e = next(), d = next(), p = next(), q = next(), dp = next(), dq = next(),
       qinv = next();
    if (!r.ok()) return Failure{std::string("a truncated RSA key")};
    key = KeyFromParams("RSA",
                        {{OSSL_PKEY_PARAM_RSA_N, n.get()},
                         {OSSL_PKEY_PARAM_RSA_E, e.get()},
                         {OSSL_PKEY_PARAM_RSA_D, d.get()},
                         {OSSL_PKEY_PARAM_RSA_FACTOR1, p.get()},
                         {OSSL_PKEY_PARAM_RSA_FACTOR2, q.get()},
                         {OSSL_PKEY_PARAM_RSA_EXPONENT1, dp.get()},
                         {OSSL_PKEY_PARAM_RSA_EXPONENT2, dq.get()},
                         {OSSL_PKEY_PARAM_RSA_COEFFICIENT1, qinv.get()}},
                        EVP_PKEY_KEYPAIR);
  } else if (type == "DSA_PRIV_KEY") {
    Bn x = next(), p = next(), q = next(), g = next();
    if (!r.ok()) return Failure{std::string("a truncated DSA key")};
    // The public value is not stored: y = g^x mod p.
    Bn y(BN_new());
    std::unique_ptr<BN_CTX, decltype(&BN_CTX_free)> bn_ctx(BN_CTX_new(), &BN_CTX_free);
    if (!y || !bn_ctx || !x || !p || !g ||
        BN_mod_exp(y.get(), g.get(), x.get(), p.get(), bn_ctx.get()) != 1)
      return Failure{std::string("a DSA key whose public value cannot be computed")};
    key = KeyFromParams("DSA",
                        {{OSSL_PKEY_PARAM_FFC_P, p.get()},
                         {OSSL_PKEY_PARAM_FFC_Q, q.get()},
                         {OSSL_PKEY_PARAM_FFC_G, g.get()},
                         {OSSL_PKEY_PARAM_PUB_KEY, y.get()},
                         {OSSL_PKEY_PARAM_PRIV_KEY, x.get()}},
                        EVP_PKEY_KEYPAIR);
  } else if (type == "RSA_PRIV_KEY") {
    return Failure{std::string(
        "an RSA key without its public exponent (RSA_PRIV_KEY) cannot sign here; convert it "
        "to PKCS#8 PEM with the reference's KeyConverter")};
  } else {
    return Failure{"unknown private key type \"" + std::string(type) + "\""};
  }
  if (!key) return Failure{std::string("OpenSSL refused the key's components")};
  return key;
}

}  // namespace

Result<std::string, std::string> PrivateKeyPem(std::span<const uint8_t> file,
                                               std::string_view passphrase) {
  Pkey key;
  const std::string_view text(reinterpret_cast<const char*>(file.data()), file.size());
  if (text.find("-----BEGIN") != std::string_view::npos) {
    // PEM: PKCS#8 (encrypted or not) or a traditional RSA/DSA key.
    std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(file.data(), static_cast<int>(file.size())));
    std::string pass(passphrase);
    key.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, pass.data()));
    OPENSSL_cleanse(pass.data(), pass.size());
    if (!key) return Failure{std::string("not a private key in PEM, or a wrong passphrase")};
  } else {
    // The reference's own file (hdl-keygen's privkey.bin): an encryption type, then the key.
    protocol::WireReader r(file);
    const uint32_t encryption = r.U32();
    if (!r.ok()) return Failure{std::string("an empty key file")};
    std::vector<uint8_t> plain;
    switch (encryption) {
      case 1: {  // none
        auto rest = r.Bytes(r.remaining());
        plain.assign(rest.begin(), rest.end());
        break;
      }
      case 3:    // PBKDF2, DESede/CBC
      case 4: {  // PBKDF2, AES/CBC (what hdl-keygen writes)
        auto salt = r.LengthPrefixed();
        const uint32_t iterations = r.U32();
        const uint32_t key_bits = r.U32();
        auto iv = r.LengthPrefixed();
        auto ciphertext = r.LengthPrefixed();
        if (!r.ok()) return Failure{std::string("a truncated encrypted key file")};
        if (passphrase.empty())
          return Failure{std::string("the key file is encrypted: give its passphrase")};
        const bool aes = encryption == 4;
        // The reference truncates a longer AES key to 128 bits.
        const size_t key_size = aes ? std::min<size_t>(16, key_bits / 8) : key_bits / 8;
        if ((aes && key_size != 16) || (!aes && key_size != 24))
          return Failure{std::string("the key file's key length is not one the reference uses")};
        auto decrypted = PbeDecrypt(aes ? EVP_aes_128_cbc() : EVP_des_ede3_cbc(), key_size,
                                    passphrase, salt, iterations, iv, ciphertext);
        if (!decrypted.ok()) return Failure{decrypted.error()};
        plain = std::move(*decrypted);
        break;
      }
      case 0:
      case 2:
        return Failure{std::string(
            "the key file is encrypted with single DES, which OpenSSL 3 no longer offers; "
            "re-encrypt it with the reference's hdl-keyutil (PBKDF2-AES) or convert it to PEM")};
      default:
        return Failure{"unknown key file encryption " + std::to_string(encryption)};
    }
    auto made = KeyFromReferenceEncoding(plain);
    OPENSSL_cleanse(plain.data(), plain.size());
    if (!made.ok()) return Failure{made.error()};
    key = std::move(*made);
  }
  std::unique_ptr<BIO, BioFree> out(BIO_new(BIO_s_mem()));
  if (!out ||
      PEM_write_bio_PrivateKey(out.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return Failure{std::string("cannot write the key as PEM")};
  }
  char* data = nullptr;
  long size = BIO_get_mem_data(out.get(), &data);
  std::string pem(data, static_cast<size_t>(size));
  OPENSSL_cleanse(data, static_cast<size_t>(size));  // the key leaves this buffer for `pem` only
  return pem;
}

Result<std::vector<uint8_t>, std::string> ReferenceKeyFile(std::string_view private_key_pem,
                                                           std::string_view passphrase) {
  Pkey key = ReadPrivateKey(private_key_pem);
  if (!key) return Failure{std::string("not a private key in PEM")};
  std::vector<std::vector<uint8_t>> parts;
  std::string_view type;
  if (EVP_PKEY_is_a(key.get(), "RSA")) {
    type = "RSA_PRIVCRT_KEY";
    for (const char* name :
         {OSSL_PKEY_PARAM_RSA_N, OSSL_PKEY_PARAM_RSA_E, OSSL_PKEY_PARAM_RSA_D,
          OSSL_PKEY_PARAM_RSA_FACTOR1, OSSL_PKEY_PARAM_RSA_FACTOR2, OSSL_PKEY_PARAM_RSA_EXPONENT1,
          OSSL_PKEY_PARAM_RSA_EXPONENT2, OSSL_PKEY_PARAM_RSA_COEFFICIENT1}) {
      parts.push_back(JavaMagnitude(key.get(), name));
    }
  } else if (EVP_PKEY_is_a(key.get(), "DSA")) {
    type = "DSA_PRIV_KEY";
    for (const char* name : {OSSL_PKEY_PARAM_PRIV_KEY, OSSL_PKEY_PARAM_FFC_P, OSSL_PKEY_PARAM_FFC_Q,
                             OSSL_PKEY_PARAM_FFC_G}) {
      parts.push_back(JavaMagnitude(key.get(), name));
    }
  } else {
    return Failure{std::string("only RSA and DSA keys have a reference key file format")};
  }
  size_t size = 4 + type.size();
  for (const auto& p : parts) {
    if (p.empty()) return Failure{std::string("the key lacks a component")};
    size += 4 + p.size();
  }
  std::vector<uint8_t> inner(size);
  protocol::WireWriter w(inner);
  w.Text(type);
  for (const auto& p : parts) w.LengthPrefixed(p);
  for (auto& p : parts) OPENSSL_cleanse(p.data(), p.size());
  std::vector<uint8_t> out;
  auto append_u32 = [&out](uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
  };
  auto append_bytes = [&](std::span<const uint8_t> b) {
    append_u32(static_cast<uint32_t>(b.size()));
    out.insert(out.end(), b.begin(), b.end());
  };
  if (passphrase.empty()) {
    append_u32(1);  // not encrypted
    out.insert(out.end(), inner.begin(), inner.end());
    OPENSSL_cleanse(inner.data(), inner.size());
    return out;
  }
  constexpr uint32_t kIterations = 10000;
  std::array<uint8_t, 16> salt{}, iv{}, aes_key{};
  if (RAND_bytes(salt.data(), static_cast<int>(salt.size())) != 1 ||
      RAND_bytes(iv.data(), static_cast<int>(iv.size())) != 1)
    return Failure{std::string("no randomness")};
  std::string password = JavaPbkdf2Password(passphrase);
  const bool derived =
      PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()), salt.data(),
                        static_cast<int>(salt.size()), static_cast<int>(kIterations), EVP_sha1(),
                        static_cast<int>(aes_key.size()), aes_key.data()) == 1;
  OPENSSL_cleanse(password.data(), password.size());
  if (!derived) return Failure{std::string("PBKDF2 failed")};
  std::vector<uint8_t> ciphertext(inner.size() + 16);
  int n = 0, tail = 0;
  std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> ctx(EVP_CIPHER_CTX_new(),
                                                                      &EVP_CIPHER_CTX_free);
  const bool sealed =
      ctx &&
      EVP_EncryptInit_ex(ctx.get(), EVP_aes_128_cbc(), nullptr, aes_key.data(), iv.data()) == 1 &&
      EVP_EncryptUpdate(ctx.get(), ciphertext.data(), &n, inner.data(),
                        static_cast<int>(inner.size())) == 1 &&
      EVP_EncryptFinal_ex(ctx.get(), ciphertext.data() + n, &tail) == 1;
  OPENSSL_cleanse(aes_key.data(), aes_key.size());
  OPENSSL_cleanse(inner.data(), inner.size());
  if (!sealed) return Failure{std::string("encryption failed")};
  ciphertext.resize(static_cast<size_t>(n + tail));
  append_u32(4);  // PBKDF2 with AES/CBC
  append_bytes(salt);
  append_u32(kIterations);
  append_u32(128);
  append_bytes(iv);
  append_bytes(ciphertext);
  return out;
}

}  // namespace idnode::auth
