#include "idnode/auth/message_auth.h"

#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include "idnode/protocol/value_types.h"
#include "idnode/protocol/version.h"
#include "idnode/protocol/wire.h"
#include "openssl_detail.h"

namespace idnode::auth {

using namespace detail;  // NOLINT: the room's own OpenSSL helpers

namespace {

constexpr std::string_view kSigned = "HS_SIGNED";
constexpr std::string_view kMac = "HS_MAC";
constexpr std::string_view kHmacSha256 = "HMAC-SHA256";
constexpr size_t kHeaderBodyLengthAt = protocol::kEnvelopeSize + 20;
constexpr size_t kAesKeyBytes = 16;
constexpr size_t kAesBlock = 16;
constexpr size_t kDhSessionKeyBytes = 32;
constexpr size_t kMaxDhGroupBits = 4096;
constexpr int kDhPrivateBits = 256;

uint32_t ReadU32(std::span<const uint8_t> b, size_t at) {
  return uint32_t{b[at]} << 24 | uint32_t{b[at + 1]} << 16 | uint32_t{b[at + 2]} << 8 | b[at + 3];
}
void WriteU32(std::span<uint8_t> b, size_t at, uint32_t v) {
  b[at] = static_cast<uint8_t>(v >> 24);
  b[at + 1] = static_cast<uint8_t>(v >> 16);
  b[at + 2] = static_cast<uint8_t>(v >> 8);
  b[at + 3] = static_cast<uint8_t>(v);
}

// Where the header and body of the encoded message in `buffer[0, size)` end, if its credential
// section is absent or empty; 0 otherwise.
size_t HeaderBodyEnd(std::span<const uint8_t> buffer, size_t size) {
  if (size < protocol::kEnvelopeSize + protocol::kHeaderSize || size > buffer.size()) return 0;
  const size_t end =
      protocol::kEnvelopeSize + protocol::kHeaderSize + ReadU32(buffer, kHeaderBodyLengthAt);
  if (size == end) return end;
  if (size == end + 4 && ReadU32(buffer, end) == 0) return end;
  return 0;
}

// Writes a credential section (length included) at `at`; returns where it ends, or 0 if it does
// not fit.
size_t WriteCredentialAt(std::span<uint8_t> buffer, size_t at, std::string_view type,
                         int32_t signer_index, std::string_view algorithm,
                         std::span<const uint8_t> signature) {
  const size_t section =
      4 + 1 + 1 + 2 + 4 + 4 + 4 + type.size() + 4 + 4 + algorithm.size() + 4 + signature.size();
  if (at + section > buffer.size()) return 0;
  protocol::WireWriter w(buffer.subspan(at, section));
  w.U32(static_cast<uint32_t>(section - 4));
  w.U8(0);
  w.U8(0);
  w.U16(0);
  w.Text({});
  w.I32(signer_index);
  w.Text(type);
  w.U32(static_cast<uint32_t>(4 + algorithm.size() + 4 + signature.size()));
  w.Text(algorithm);
  w.LengthPrefixed(signature);
  return w.ok() ? at + section : 0;
}

std::span<const uint8_t> HeaderAndBody(const protocol::Message& message,
                                       std::span<const uint8_t> bytes) {
  const size_t length = protocol::kHeaderSize + message.header.body_length;
  if (bytes.size() < protocol::kEnvelopeSize + length) return {};
  return bytes.subspan(protocol::kEnvelopeSize, length);
}

}  // namespace

// ---- ServerKey ----------------------------------------------------------------------------

ServerKey::~ServerKey() {
  EVP_PKEY_free(static_cast<EVP_PKEY*>(key_));
}

std::shared_ptr<const ServerKey> ServerKey::FromPem(std::string_view pem) {
  Pkey key = ReadPrivateKey(pem);
  if (!key) return nullptr;
  const bool rsa = EVP_PKEY_is_a(key.get(), "RSA") != 0;
  if (!rsa && EVP_PKEY_is_a(key.get(), "DSA") == 0) return nullptr;
  std::vector<uint8_t> value = PublicKeyValueFor(pem);
  if (value.empty()) return nullptr;
  std::shared_ptr<ServerKey> out(new ServerKey());
  out->key_ = key.release();
  out->rsa_ = rsa;
  out->public_value_ = std::move(value);
  return out;
}

Result<std::shared_ptr<const ServerKey>, std::string> ServerKey::LoadOrCreate(
    const std::string& path, bool create) {
  std::ifstream in(path, std::ios::binary);
  const int open_errno = in ? 0 : errno;
  if (in) {
    std::vector<uint8_t> file((std::istreambuf_iterator<char>(in)),
                              std::istreambuf_iterator<char>());
    auto pem = PrivateKeyPem(file, "");
    if (!pem.ok()) return Failure{"server key " + path + ": " + pem.error()};
    auto key = FromPem(*pem);
    if (!key) return Failure{"server key " + path + ": not an RSA or DSA private key"};
    return key;
  }
  // Generated only where there is no file at all: a key that cannot be read (permissions, too
  // many files) is an error, never a reason to replace it.
  if (!create || open_errno != ENOENT)
    return Failure{"server key " + path + ": cannot read it: " + std::strerror(open_errno)};
  Pkey generated(EVP_RSA_gen(2048));
  if (!generated) return Failure{std::string("cannot generate an RSA key")};
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), generated.get(), nullptr, nullptr, 0, nullptr,
                                       nullptr) != 1) {
    return Failure{std::string("cannot encode the generated key")};
  }
  char* data = nullptr;
  const long length = BIO_get_mem_data(bio.get(), &data);
  std::string pem(data, static_cast<size_t>(length));
  // Owner-only from its first byte, complete before it appears under its name.
  const std::string temporary = path + ".tmp";
  int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return Failure{"cannot create " + temporary + ": " + std::strerror(errno)};
  bool written =
      ::write(fd, pem.data(), pem.size()) == static_cast<ssize_t>(pem.size()) && ::fsync(fd) == 0;
  ::close(fd);
  // link(), not rename(): a key that appeared meanwhile is never replaced.
  if (!written || ::link(temporary.c_str(), path.c_str()) != 0) {
    const int error = errno;
    ::unlink(temporary.c_str());
    return Failure{"cannot write " + path + ": " + std::strerror(error)};
  }
  ::unlink(temporary.c_str());
  const auto slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash + 1);
  int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    (void)::fsync(dir_fd);
    ::close(dir_fd);
  }
  auto key = FromPem(pem);
  if (!key) return Failure{std::string("the generated key does not load")};
  return key;
}

std::vector<uint8_t> ServerKey::Sign(std::initializer_list<std::span<const uint8_t>> parts,
                                     bool sha256) const {
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, sha256 ? EVP_sha256() : EVP_sha1(), nullptr,
                                 static_cast<EVP_PKEY*>(key_)) != 1) {
    return {};
  }
  for (auto part : parts) {
    if (EVP_DigestSignUpdate(ctx.get(), part.data(), part.size()) != 1) return {};
  }
  size_t size = 0;
  if (EVP_DigestSignFinal(ctx.get(), nullptr, &size) != 1) return {};
  std::vector<uint8_t> signature(size);
  if (EVP_DigestSignFinal(ctx.get(), signature.data(), &size) != 1) return {};
  signature.resize(size);
  return signature;
}

std::vector<uint8_t> ServerKey::Decrypt(std::span<const uint8_t> ciphertext) const {
  if (!rsa_) return {};
  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(
      EVP_PKEY_CTX_new(static_cast<EVP_PKEY*>(key_), nullptr));
  size_t size = 0;
  if (!ctx || EVP_PKEY_decrypt_init(ctx.get()) != 1 ||
      EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING) != 1 ||
      EVP_PKEY_decrypt(ctx.get(), nullptr, &size, ciphertext.data(), ciphertext.size()) != 1) {
    return {};
  }
  std::vector<uint8_t> out(size);
  if (EVP_PKEY_decrypt(ctx.get(), out.data(), &size, ciphertext.data(), ciphertext.size()) != 1)
    return {};
  out.resize(size);
  return out;
}

// ---- credentials ----------------------------------------------------------------------------

std::vector<uint8_t> CredentialPreamble(const protocol::Envelope& envelope, uint32_t counter) {
  const protocol::ProtocolVersion v = envelope.version();
  if (!protocol::AtLeast(v, 2, 6)) return {};
  const bool has_suggested = protocol::AtLeast(v, 2, 8);
  std::vector<uint8_t> out(size_t{has_suggested ? 4u : 2u} + 12);
  out[0] = v.major;
  out[1] = v.minor;
  if (!protocol::AtLeast(v, 2, 7)) {
    // CNRI 2.6 wrote each field at the offset the previous write returned (4), not after it.
    WriteU32(out, 2, envelope.session_id);
    WriteU32(out, 4, envelope.request_id);
    WriteU32(out, 4, counter);
    return out;
  }
  size_t at = 2;
  if (has_suggested) {
    const protocol::ProtocolVersion s = envelope.suggested_version();
    out[at++] = s.major;
    out[at++] = s.minor;
  }
  WriteU32(out, at, envelope.session_id);
  WriteU32(out, at + 4, envelope.request_id);
  WriteU32(out, at + 8, counter);
  return out;
}

size_t SignEncoded(std::span<uint8_t> buffer, size_t size, const ServerKey& key) {
  const size_t end = HeaderBodyEnd(buffer, size);
  if (end == 0) return 0;
  auto envelope = protocol::DecodeEnvelope(buffer.first(size));
  if (!envelope.ok()) return 0;
  const protocol::ProtocolVersion v = envelope->version();
  // CNRI's supportsSha256Signature: from 2.7 for RSA, from 2.11 for DSA.
  const bool sha256 = protocol::AtLeast(v, 2, 11) || (key.is_rsa() && protocol::AtLeast(v, 2, 7));
  const uint8_t flags_before = buffer[protocol::kEnvelopeSize + 8];
  buffer[protocol::kEnvelopeSize + 8] |= 0x40;  // CT: part of what is signed
  std::vector<uint8_t> preamble = CredentialPreamble(*envelope, 0);
  std::vector<uint8_t> signature = key.Sign(
      {preamble, buffer.subspan(protocol::kEnvelopeSize, end - protocol::kEnvelopeSize)}, sha256);
  const size_t new_end =
      signature.empty()
          ? 0
          : WriteCredentialAt(buffer, end, kSigned, 0, sha256 ? "SHA-256" : "SHA1", signature);
  if (new_end == 0) {
    buffer[protocol::kEnvelopeSize + 8] = flags_before;
    return 0;
  }
  WriteU32(buffer, 16, static_cast<uint32_t>(new_end - protocol::kEnvelopeSize));
  return new_end;
}

size_t MacEncoded(std::span<uint8_t> buffer, size_t size, std::span<const uint8_t> session_key,
                  uint32_t counter) {
  const size_t end = HeaderBodyEnd(buffer, size);
  if (end == 0 || session_key.empty()) return 0;
  auto envelope = protocol::DecodeEnvelope(buffer.first(size));
  if (!envelope.ok() || !protocol::AtLeast(envelope->version(), 2, 7)) return 0;
  const uint8_t flags_before = buffer[protocol::kEnvelopeSize + 8];
  buffer[protocol::kEnvelopeSize + 8] |= 0x40;
  std::vector<uint8_t> data = CredentialPreamble(*envelope, counter);
  data.insert(data.end(), buffer.begin() + protocol::kEnvelopeSize,
              buffer.begin() + static_cast<std::ptrdiff_t>(end));
  std::vector<uint8_t> mac = Hmac(EVP_sha256(), session_key, data);
  const size_t new_end =
      mac.empty()
          ? 0
          : WriteCredentialAt(buffer, end, kMac, static_cast<int32_t>(counter), kHmacSha256, mac);
  if (new_end == 0) {
    buffer[protocol::kEnvelopeSize + 8] = flags_before;
    return 0;
  }
  WriteU32(buffer, 16, static_cast<uint32_t>(new_end - protocol::kEnvelopeSize));
  return new_end;
}

Verdict VerifyMac(const protocol::Message& message, std::span<const uint8_t> bytes,
                  std::span<const uint8_t> session_key) {
  const auto& c = message.credential;
  if (!c.present || c.type != kMac) return Verdict::kMalformed;
  // A session without its key yet (CIPHER_SERVER before OC 402) verifies nothing: an HMAC under
  // an empty key is anyone's.
  if (session_key.size() < kAesKeyBytes) return Verdict::kInvalid;
  if (!protocol::AtLeast(message.envelope.version(), 2, 7)) return Verdict::kUnsupported;
  if (!SameAlgorithmName(c.digest_algorithm, kHmacSha256)) return Verdict::kUnsupported;
  auto covered = HeaderAndBody(message, bytes);
  if (covered.empty()) return Verdict::kMalformed;
  std::vector<uint8_t> data =
      CredentialPreamble(message.envelope, static_cast<uint32_t>(c.signer_index));
  data.insert(data.end(), covered.begin(), covered.end());
  std::vector<uint8_t> expected = Hmac(EVP_sha256(), session_key, data);
  return ConstantTimeEqual(expected, c.signature) ? Verdict::kValid : Verdict::kInvalid;
}

Verdict VerifySigned(const protocol::Message& message, std::span<const uint8_t> bytes,
                     std::span<const uint8_t> public_key_value) {
  const auto& c = message.credential;
  if (!c.present || c.type != kSigned) return Verdict::kMalformed;
  const EVP_MD* md = SignatureDigest(c.digest_algorithm);
  if (md == nullptr) return Verdict::kUnsupported;
  bool unsupported = false;
  Pkey key = PublicKeyFromValue(public_key_value, &unsupported);
  if (!key) return unsupported ? Verdict::kUnsupported : Verdict::kMalformed;
  auto covered = HeaderAndBody(message, bytes);
  if (covered.empty()) return Verdict::kMalformed;
  std::vector<uint8_t> preamble =
      CredentialPreamble(message.envelope, static_cast<uint32_t>(c.signer_index));
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, md, nullptr, key.get()) != 1 ||
      EVP_DigestVerifyUpdate(ctx.get(), preamble.data(), preamble.size()) != 1 ||
      EVP_DigestVerifyUpdate(ctx.get(), covered.data(), covered.size()) != 1) {
    return Verdict::kMalformed;
  }
  return EVP_DigestVerifyFinal(ctx.get(), c.signature.data(), c.signature.size()) == 1
             ? Verdict::kValid
             : Verdict::kInvalid;
}

// ---- session keys -----------------------------------------------------------------------

Result<SessionSetupRequest, std::string> ParseSessionSetup(std::span<const uint8_t> body) {
  protocol::WireReader r(body);
  SessionSetupRequest s;
  s.mode = r.U16();
  s.timeout_seconds = r.I32();
  s.identity_handle = r.Text();
  s.identity_index = r.I32();
  if (s.mode == key_exchange::kCipherClient || s.mode == key_exchange::kDiffieHellman) {
    s.client_key = r.LengthPrefixed();
  } else if (s.mode == key_exchange::kCipherHandle) {
    s.key_handle = r.Text();
    s.key_index = r.I32();
  }
  if (!r.ok() || r.remaining() > 4 || s.identity_handle.size() > protocol::kMaxHandleLength ||
      s.key_handle.size() > protocol::kMaxHandleLength) {
    return Failure{std::string("malformed session setup request")};
  }
  return s;
}

Result<std::vector<uint8_t>, std::string> DiffieHellman(
    std::span<const uint8_t> client_public_value, std::vector<uint8_t>* server_public_value) {
  auto decoded = protocol::DecodePublicKey(client_public_value);
  if (!decoded.ok()) return Failure{std::string("the client's DH key does not decode")};
  const auto* dh = std::get_if<protocol::DhPublicKey>(&decoded->key);
  if (dh == nullptr) return Failure{std::string("the client's key is not a DH key")};
  Bn p = ToBn(dh->p), g = ToBn(dh->g), y = ToBn(dh->y);
  // The client picks the group and anyone may ask: bound the work one setup can cost.
  if (!p || BN_num_bits(p.get()) > static_cast<int>(kMaxDhGroupBits))
    return Failure{std::string("DH groups above 4096 bits are not accepted")};
  Pkey group =
      KeyFromParams("DH", {{OSSL_PKEY_PARAM_FFC_P, p.get()}, {OSSL_PKEY_PARAM_FFC_G, g.get()}},
                    EVP_PKEY_KEY_PARAMETERS);
  Pkey peer = KeyFromParams("DH",
                            {{OSSL_PKEY_PARAM_FFC_P, p.get()},
                             {OSSL_PKEY_PARAM_FFC_G, g.get()},
                             {OSSL_PKEY_PARAM_PUB_KEY, y.get()}},
                            EVP_PKEY_PUBLIC_KEY);
  if (!group || !peer) return Failure{std::string("the client's DH group is not usable")};
  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> gen(
      EVP_PKEY_CTX_new_from_pkey(nullptr, group.get(), nullptr));
  EVP_PKEY* ours_raw = nullptr;
  if (!gen || EVP_PKEY_keygen_init(gen.get()) != 1)
    return Failure{std::string("cannot make a DH key in the client's group")};
  // A 256-bit private exponent (128-bit strength, the most a 4096-bit group gives) instead of
  // one as long as p: a setup costs two short exponentiations, not two full ones.
  int private_bits = kDhPrivateBits;
  OSSL_PARAM length[] = {OSSL_PARAM_construct_int(OSSL_PKEY_PARAM_DH_PRIV_LEN, &private_bits),
                         OSSL_PARAM_construct_end()};
  if (EVP_PKEY_CTX_set_params(gen.get(), length) != 1 ||
      EVP_PKEY_generate(gen.get(), &ours_raw) != 1)
    return Failure{std::string("cannot make a DH key in the client's group")};
  Pkey ours(ours_raw);
  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> derive(
      EVP_PKEY_CTX_new_from_pkey(nullptr, ours.get(), nullptr));
  size_t size = 0;
  if (!derive || EVP_PKEY_derive_init(derive.get()) != 1 ||
      EVP_PKEY_derive_set_peer_ex(derive.get(), peer.get(), 1) != 1 ||
      EVP_PKEY_derive(derive.get(), nullptr, &size) != 1) {
    return Failure{std::string("the client's DH public value is not acceptable")};
  }
  std::vector<uint8_t> secret(size);
  if (EVP_PKEY_derive(derive.get(), secret.data(), &size) != 1)
    return Failure{std::string("DH derivation failed")};
  secret.resize(size);
  // GenericProvider.stripLeadingZerosAndTruncate(secret, 32).
  size_t i = 0;
  while (i + kDhSessionKeyBytes < secret.size() && secret[i] == 0) ++i;
  if (secret.size() - i < kDhSessionKeyBytes) return Failure{std::string("DH secret too short")};
  std::vector<uint8_t> key(secret.begin() + static_cast<std::ptrdiff_t>(i),
                           secret.begin() + static_cast<std::ptrdiff_t>(i + kDhSessionKeyBytes));
  OPENSSL_cleanse(secret.data(), secret.size());

  std::vector<uint8_t> ys = JavaMagnitude(ours.get(), OSSL_PKEY_PARAM_PUB_KEY);
  std::vector<uint8_t> ps = JavaMagnitude(ours.get(), OSSL_PKEY_PARAM_FFC_P);
  std::vector<uint8_t> gs = JavaMagnitude(ours.get(), OSSL_PKEY_PARAM_FFC_G);
  if (ys.empty() || ps.empty() || gs.empty()) return Failure{std::string("DH encoding failed")};
  protocol::PublicKey pub;
  pub.key = protocol::DhPublicKey{ys, ps, gs};
  *server_public_value = protocol::EncodePublicKey(pub);
  return key;
}

std::vector<uint8_t> EncryptToPublicKey(std::span<const uint8_t> public_key_value,
                                        std::span<const uint8_t> plaintext) {
  bool unsupported = false;
  Pkey key = PublicKeyFromValue(public_key_value, &unsupported);
  if (!key || EVP_PKEY_is_a(key.get(), "RSA") == 0) return {};
  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(EVP_PKEY_CTX_new(key.get(), nullptr));
  size_t size = 0;
  if (!ctx || EVP_PKEY_encrypt_init(ctx.get()) != 1 ||
      EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING) != 1 ||
      EVP_PKEY_encrypt(ctx.get(), nullptr, &size, plaintext.data(), plaintext.size()) != 1) {
    return {};
  }
  std::vector<uint8_t> out(size);
  if (EVP_PKEY_encrypt(ctx.get(), out.data(), &size, plaintext.data(), plaintext.size()) != 1)
    return {};
  out.resize(size);
  return out;
}

std::vector<uint8_t> EncryptBody(std::span<const uint8_t> session_key,
                                 std::span<const uint8_t> plaintext) {
  if (session_key.size() < kAesKeyBytes) return {};
  std::vector<uint8_t> out(kAesBlock + plaintext.size() + kAesBlock);
  if (RAND_bytes(out.data(), static_cast<int>(kAesBlock)) != 1) return {};
  std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> ctx(EVP_CIPHER_CTX_new(),
                                                                      &EVP_CIPHER_CTX_free);
  int n = 0, tail = 0;
  if (!ctx ||
      EVP_EncryptInit_ex(ctx.get(), EVP_aes_128_cbc(), nullptr, session_key.data(), out.data()) !=
          1 ||
      EVP_EncryptUpdate(ctx.get(), out.data() + kAesBlock, &n, plaintext.data(),
                        static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), out.data() + kAesBlock + n, &tail) != 1) {
    return {};
  }
  out.resize(kAesBlock + static_cast<size_t>(n) + static_cast<size_t>(tail));
  return out;
}

Result<std::vector<uint8_t>, std::string> DecryptBody(std::span<const uint8_t> session_key,
                                                      std::span<const uint8_t> iv_and_ciphertext) {
  if (session_key.size() < kAesKeyBytes) return Failure{std::string("no session key")};
  if (iv_and_ciphertext.size() < 2 * kAesBlock || iv_and_ciphertext.size() % kAesBlock != 0)
    return Failure{std::string("not whole AES blocks")};
  std::vector<uint8_t> out(iv_and_ciphertext.size());
  std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> ctx(EVP_CIPHER_CTX_new(),
                                                                      &EVP_CIPHER_CTX_free);
  int n = 0, tail = 0;
  if (!ctx ||
      EVP_DecryptInit_ex(ctx.get(), EVP_aes_128_cbc(), nullptr, session_key.data(),
                         iv_and_ciphertext.data()) != 1 ||
      EVP_DecryptUpdate(ctx.get(), out.data(), &n, iv_and_ciphertext.data() + kAesBlock,
                        static_cast<int>(iv_and_ciphertext.size() - kAesBlock)) != 1 ||
      EVP_DecryptFinal_ex(ctx.get(), out.data() + n, &tail) != 1) {
    return Failure{std::string("does not decrypt with the session key")};
  }
  out.resize(static_cast<size_t>(n) + static_cast<size_t>(tail));
  return out;
}

std::vector<uint8_t> EncryptBodySm4(std::span<const uint8_t> session_key,
                                    std::span<const uint8_t> plaintext) {
  if (session_key.size() < kAesBlock) return {};
  std::vector<uint8_t> out(plaintext.size() + kAesBlock);
  std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> ctx(EVP_CIPHER_CTX_new(),
                                                                      &EVP_CIPHER_CTX_free);
  int n = 0, tail = 0;
  if (!ctx ||
      EVP_EncryptInit_ex(ctx.get(), EVP_sm4_cbc(), nullptr, session_key.data(),
                         session_key.data()) != 1 ||
      EVP_EncryptUpdate(ctx.get(), out.data(), &n, plaintext.data(),
                        static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), out.data() + n, &tail) != 1) {
    return {};
  }
  out.resize(static_cast<size_t>(n) + static_cast<size_t>(tail));
  return out;
}

Result<std::vector<uint8_t>, std::string> DecryptBodySm4(std::span<const uint8_t> session_key,
                                                         std::span<const uint8_t> ciphertext) {
  if (session_key.size() < kAesBlock) return Failure{std::string("no session key")};
  if (ciphertext.empty() || ciphertext.size() % kAesBlock != 0)
    return Failure{std::string("not whole SM4 blocks")};
  std::vector<uint8_t> out(ciphertext.size());
  std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> ctx(EVP_CIPHER_CTX_new(),
                                                                      &EVP_CIPHER_CTX_free);
  int n = 0, tail = 0;
  if (!ctx ||
      EVP_DecryptInit_ex(ctx.get(), EVP_sm4_cbc(), nullptr, session_key.data(),
                         session_key.data()) != 1 ||
      EVP_DecryptUpdate(ctx.get(), out.data(), &n, ciphertext.data(),
                        static_cast<int>(ciphertext.size())) != 1 ||
      EVP_DecryptFinal_ex(ctx.get(), out.data() + n, &tail) != 1) {
    return Failure{std::string("does not decrypt with the session key")};
  }
  out.resize(static_cast<size_t>(n) + static_cast<size_t>(tail));
  return out;
}

bool IsSm2KeyValue(std::span<const uint8_t> key_value) {
  bool is_sm2 = false;
  return Sm2KeyFromValue(key_value, &is_sm2) != nullptr;
}

std::vector<uint8_t> EncryptToSm2(std::span<const uint8_t> sm2_key_value,
                                  std::span<const uint8_t> plaintext) {
  bool is_sm2 = false;
  Pkey key = Sm2KeyFromValue(sm2_key_value, &is_sm2);
  if (!key) return {};
  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(EVP_PKEY_CTX_new(key.get(), nullptr));
  size_t size = 0;
  if (!ctx || EVP_PKEY_encrypt_init(ctx.get()) != 1 ||
      EVP_PKEY_encrypt(ctx.get(), nullptr, &size, plaintext.data(), plaintext.size()) != 1) {
    return {};
  }
  std::vector<uint8_t> der(size);
  if (EVP_PKEY_encrypt(ctx.get(), der.data(), &size, plaintext.data(), plaintext.size()) != 1)
    return {};
  der.resize(size);
  // OpenSSL writes SM2Ciphertext ::= SEQUENCE { x INTEGER, y INTEGER, hash OCTET STRING,
  // ciphertext OCTET STRING }; the SDK (hutool) reads C1‖C3‖C2.
  size_t at = 0;
  auto read_tlv = [&](uint8_t tag, std::span<const uint8_t>* value) {
    if (at + 2 > der.size() || der[at] != tag) return false;
    size_t length = der[at + 1];
    size_t header = 2;
    if (length & 0x80) {
      const size_t bytes = length & 0x7f;
      if (bytes == 0 || bytes > 2 || at + 2 + bytes > der.size()) return false;
      length = 0;
      for (size_t i = 0; i < bytes; ++i) length = length << 8 | der[at + 2 + i];
      header += bytes;
    }
    if (at + header + length > der.size()) return false;
    *value = std::span<const uint8_t>(der).subspan(at + header, length);
    at += header;
    if (tag != 0x30) at += length;
    return true;
  };
  std::span<const uint8_t> sequence, x, y, hash, body;
  if (!read_tlv(0x30, &sequence) || !read_tlv(0x02, &x) || !read_tlv(0x02, &y) ||
      !read_tlv(0x04, &hash) || !read_tlv(0x04, &body) || hash.size() != 32 || x.size() > 33 ||
      y.size() > 33) {
    return {};
  }
  auto coordinate = [](std::span<const uint8_t> v) {
    while (!v.empty() && v.front() == 0 && v.size() > 32) v = v.subspan(1);
    std::vector<uint8_t> out(32 - std::min<size_t>(32, v.size()), 0);
    out.insert(out.end(), v.begin(), v.end());
    return out;
  };
  std::vector<uint8_t> out{0x04};
  for (const auto& part : {coordinate(x), coordinate(y)})
    out.insert(out.end(), part.begin(), part.end());
  out.insert(out.end(), hash.begin(), hash.end());
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

size_t EncryptEncoded(std::span<uint8_t> buffer, size_t size, std::span<const uint8_t> session_key,
                      uint32_t cipher) {
  if (size < protocol::kEnvelopeSize || size > buffer.size()) return 0;
  const auto plain = buffer.subspan(protocol::kEnvelopeSize, size - protocol::kEnvelopeSize);
  std::vector<uint8_t> sealed =
      cipher == kCipherSm4 ? EncryptBodySm4(session_key, plain) : EncryptBody(session_key, plain);
  if (sealed.empty() || protocol::kEnvelopeSize + sealed.size() > buffer.size()) return 0;
  std::memcpy(buffer.data() + protocol::kEnvelopeSize, sealed.data(), sealed.size());
  buffer[2] |= protocol::kEnvelopeEncrypted;
  WriteU32(buffer, 16, static_cast<uint32_t>(sealed.size()));
  return protocol::kEnvelopeSize + sealed.size();
}

Result<std::vector<uint8_t>, std::string> DecryptMessage(std::span<const uint8_t> message,
                                                         std::span<const uint8_t> session_key,
                                                         uint32_t cipher) {
  if (message.size() < protocol::kEnvelopeSize) return Failure{std::string("no envelope")};
  auto plain = cipher == kCipherSm4
                   ? DecryptBodySm4(session_key, message.subspan(protocol::kEnvelopeSize))
                   : DecryptBody(session_key, message.subspan(protocol::kEnvelopeSize));
  if (!plain.ok()) return Failure{plain.error()};
  std::vector<uint8_t> out(protocol::kEnvelopeSize + plain->size());
  std::memcpy(out.data(), message.data(), protocol::kEnvelopeSize);
  std::memcpy(out.data() + protocol::kEnvelopeSize, plain->data(), plain->size());
  out[2] = static_cast<uint8_t>(out[2] & ~protocol::kEnvelopeEncrypted);
  WriteU32(out, 16, static_cast<uint32_t>(plain->size()));
  return out;
}

}  // namespace idnode::auth
