// Credentials on whole messages: the reference server's own signatures in the captures verify with
// the key its HS_SITE published (so the bytes a signature covers are CNRI's), and what idnode
// signs, MACs and encrypts verifies and round-trips; every tampering is caught.
#include "idnode/auth/message_auth.h"

#include <gtest/gtest.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <fstream>
#include <list>
#include <sstream>

#include "../protocol/test_util.h"
#include "idnode/protocol/value_types.h"

namespace idnode::auth {
namespace {

namespace vt = protocol::testing;
using protocol::DecodeMessage;
using protocol::Message;

// Decoded messages are views: the bytes live as long as the test program.
std::span<const uint8_t> Keep(std::vector<uint8_t> bytes) {
  static std::list<std::vector<uint8_t>> storage;
  storage.push_back(std::move(bytes));
  return storage.back();
}

Message MustDecode(std::span<const uint8_t> bytes) {
  auto decoded = DecodeMessage(bytes);
  EXPECT_TRUE(decoded.ok());
  return decoded.ok() ? *decoded : Message{};
}

// The reference server's HS_PUBKEY, from its GET_SITE_INFO answer (vector 07).
std::vector<uint8_t> ReferenceServerKey() {
  auto bytes = Keep(vt::LoadMessage("07-udp-get-site-info.response.hex"));
  Message m = MustDecode(bytes);
  const auto* body = std::get_if<protocol::SiteInfoBody>(&m.body);
  if (body == nullptr) return {};
  auto site = protocol::DecodeSiteInfo(body->site_data);
  EXPECT_TRUE(site.ok());
  if (!site.ok() || site->servers.empty()) return {};
  auto key = site->servers[0].public_key;
  return {key.begin(), key.end()};
}

// Messages of the session capture, by number ("2 UDP S>C 512 <hex>"); UDP datagrams of one
// message are joined.
std::vector<uint8_t> SessionCaptureMessage(int first_line, int datagrams) {
  std::ifstream in(vt::VectorPath("session-admin.hex.txt"));
  std::string line;
  std::vector<std::vector<uint8_t>> parts;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    int number = 0;
    std::string transport, direction, hex;
    size_t length = 0;
    fields >> number >> transport >> direction >> length >> hex;
    if (number >= first_line && number < first_line + datagrams) {
      auto bytes = FromHex(hex);
      EXPECT_TRUE(bytes.has_value());
      if (bytes) parts.push_back(*bytes);
    }
  }
  EXPECT_EQ(parts.size(), static_cast<size_t>(datagrams));
  if (parts.size() == 1) return parts[0];
  std::vector<uint8_t> whole(parts.empty() ? std::vector<uint8_t>{} : parts[0]);
  for (size_t i = 1; i < parts.size(); ++i)
    whole.insert(whole.end(), parts[i].begin() + protocol::kEnvelopeSize, parts[i].end());
  return whole;
}

TEST(ReferenceSignatures, CertifiedResolutionVerifiesWithThePublishedServerKey) {
  auto key = ReferenceServerKey();
  ASSERT_FALSE(key.empty());
  auto bytes = Keep(vt::LoadMessage("06-udp-resolve-certified.response-2-datagrams.hex"));
  Message m = MustDecode(bytes);
  ASSERT_TRUE(m.credential.present);
  EXPECT_EQ(m.credential.type, "HS_SIGNED");
  EXPECT_EQ(m.credential.digest_algorithm, "SHA-256");
  EXPECT_EQ(VerifySigned(m, bytes, key), Verdict::kValid);

  // One flipped byte of the body, or of the request id the preamble covers, breaks it.
  std::vector<uint8_t> tampered(bytes.begin(), bytes.end());
  tampered[60] ^= 1;
  auto t = Keep(tampered);
  EXPECT_EQ(VerifySigned(MustDecode(t), t, key), Verdict::kInvalid);
  std::vector<uint8_t> other_request(bytes.begin(), bytes.end());
  other_request[11] ^= 1;
  auto o = Keep(other_request);
  EXPECT_EQ(VerifySigned(MustDecode(o), o, key), Verdict::kInvalid);
}

TEST(ReferenceSignatures, SessionSetupAnswersVerifyWithThePublishedServerKey) {
  auto key = ReferenceServerKey();
  ASSERT_FALSE(key.empty());
  for (int first : {2, 9}) {
    auto bytes = Keep(SessionCaptureMessage(first, 2));
    Message m = MustDecode(bytes);
    EXPECT_EQ(m.header.opcode, 400u);
    EXPECT_NE(m.envelope.session_id, 0u);  // signed with the new session id in the preamble
    EXPECT_EQ(VerifySigned(m, bytes, key), Verdict::kValid) << "capture message " << first;
  }
}

TEST(ReferenceSignatures, SessionMessagesCarryAnHmacCredentialWithTheirCounter) {
  auto bytes = Keep(SessionCaptureMessage(11, 1));
  Message m = MustDecode(bytes);
  ASSERT_TRUE(m.credential.present);
  EXPECT_EQ(m.credential.type, "HS_MAC");
  EXPECT_EQ(m.credential.digest_algorithm, "HMAC-SHA256");
  EXPECT_EQ(m.credential.signer_index, 1);
  EXPECT_EQ(m.credential.signature.size(), 32u);
  // Without the session's DH secret it cannot verify.
  std::vector<uint8_t> wrong(32, 7);
  EXPECT_EQ(VerifyMac(m, bytes, wrong), Verdict::kInvalid);
}

// An encoded answer to sign: a resolution response (vector 01's) in a buffer with room.
std::vector<uint8_t> AnswerToSign(size_t* size) {
  auto bytes = vt::LoadMessage("01-udp-resolve-test1.response.hex");
  *size = bytes.size();
  bytes.resize(4096);
  return bytes;
}

std::shared_ptr<const ServerKey> TestKey(const char* type) {
  EVP_PKEY* raw = nullptr;
  if (std::string_view(type) == "RSA") {
    raw = EVP_RSA_gen(2048);
  } else {
    EVP_PKEY_CTX* pctx = EVP_PKEY_CTX_new_from_name(nullptr, "DSA", nullptr);
    EVP_PKEY* params = nullptr;
    EVP_PKEY_paramgen_init(pctx);
    EVP_PKEY_CTX_set_dsa_paramgen_bits(pctx, 2048);
    EVP_PKEY_paramgen(pctx, &params);
    EVP_PKEY_CTX_free(pctx);
    EVP_PKEY_CTX* kctx = EVP_PKEY_CTX_new_from_pkey(nullptr, params, nullptr);
    EVP_PKEY_keygen_init(kctx);
    EVP_PKEY_generate(kctx, &raw);
    EVP_PKEY_CTX_free(kctx);
    EVP_PKEY_free(params);
  }
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, raw, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<size_t>(n));
  BIO_free(bio);
  EVP_PKEY_free(raw);
  return ServerKey::FromPem(pem);
}

TEST(ServerSignatures, SignedAnswersVerifyAndSayCertified) {
  for (const char* type : {"RSA", "DSA"}) {
    auto key = TestKey(type);
    ASSERT_NE(key, nullptr) << type;
    size_t size = 0;
    auto buffer = AnswerToSign(&size);
    const size_t signed_size = SignEncoded(buffer, size, *key);
    ASSERT_GT(signed_size, size) << type;
    auto bytes = Keep({buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(signed_size)});
    Message m = MustDecode(bytes);
    EXPECT_TRUE(m.header.has(protocol::opflag::kCertify));
    EXPECT_EQ(m.credential.digest_algorithm, "SHA-256");
    EXPECT_EQ(VerifySigned(m, bytes, key->public_key_value()), Verdict::kValid) << type;
    // Another key does not verify it.
    EXPECT_EQ(VerifySigned(m, bytes, TestKey("RSA")->public_key_value()), Verdict::kInvalid);
  }
}

TEST(ServerSignatures, AnAnswerThatCannotBeSignedIsLeftUncertified) {
  auto key = TestKey("RSA");
  size_t size = 0;
  auto buffer = AnswerToSign(&size);
  std::vector<uint8_t> before(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(size));
  // No room for a credential.
  EXPECT_EQ(SignEncoded(std::span<uint8_t>(buffer).first(size + 10), size, *key), 0u);
  EXPECT_TRUE(std::equal(before.begin(), before.end(), buffer.begin()));
  // A message that already has a credential is not signed twice.
  const size_t signed_size = SignEncoded(buffer, size, *key);
  ASSERT_GT(signed_size, 0u);
  EXPECT_EQ(SignEncoded(buffer, signed_size, *key), 0u);
}

TEST(SessionMacs, MacRoundTripAndTampering) {
  std::vector<uint8_t> session_key(32, 0x5a);
  size_t size = 0;
  auto buffer = AnswerToSign(&size);
  const size_t macd = MacEncoded(buffer, size, session_key, 7);
  ASSERT_GT(macd, size);
  auto bytes = Keep({buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(macd)});
  Message m = MustDecode(bytes);
  EXPECT_EQ(m.credential.type, "HS_MAC");
  EXPECT_EQ(m.credential.signer_index, 7);
  EXPECT_EQ(VerifyMac(m, bytes, session_key), Verdict::kValid);
  std::vector<uint8_t> other_key(32, 0x5b);
  EXPECT_EQ(VerifyMac(m, bytes, other_key), Verdict::kInvalid);
  // The counter is covered: a message replayed under another counter fails.
  std::vector<uint8_t> recounted(bytes.begin(), bytes.end());
  // From the end: MAC(str), "HMAC-SHA256"(str), signedInfo length, "HS_MAC"(str), index.
  const size_t index_at = macd - m.credential.signature.size() - 4 - 11 - 4 - 4 - 6 - 4 - 4;
  ASSERT_EQ(recounted[index_at + 3], 7);
  recounted[index_at + 3] = 8;
  auto r = Keep(recounted);
  Message rm = MustDecode(r);
  EXPECT_EQ(rm.credential.signer_index, 8);
  EXPECT_EQ(VerifyMac(rm, r, session_key), Verdict::kInvalid);
}

TEST(SessionMacs, PreambleFollowsTheVersion) {
  protocol::Envelope e;
  e.session_id = 0x01020304;
  e.request_id = 0x05060708;
  e.major_version = 2;
  e.minor_version = 11;
  auto p = CredentialPreamble(e, 9);
  EXPECT_EQ(p, (std::vector<uint8_t>{2, 11, 2, 11, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 9}));
  e.minor_version = 7;
  EXPECT_EQ(CredentialPreamble(e, 9),
            (std::vector<uint8_t>{2, 7, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 9}));
  e.minor_version = 6;  // CNRI 2.6 overwrote its own fields
  EXPECT_EQ(CredentialPreamble(e, 9),
            (std::vector<uint8_t>{2, 6, 1, 2, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0}));
  e.minor_version = 5;
  EXPECT_TRUE(CredentialPreamble(e, 9).empty());
}

TEST(SessionKeys, DiffieHellmanAgreesWithTheClientsSide) {
  // The client's group and public value from the capture's first session setup.
  auto setup = Keep(SessionCaptureMessage(1, 1));
  Message m = MustDecode(setup);
  ASSERT_EQ(m.header.opcode, 400u);
  // Body: mode(2) timeout(4) identity(str) index(4) public key(str).
  protocol::WireReader r(std::get<protocol::OpaqueBody>(m.body).bytes);
  EXPECT_EQ(r.U16(), 4);
  (void)r.U32();
  (void)r.Text();
  (void)r.I32();
  auto client_value = r.LengthPrefixed();
  ASSERT_TRUE(r.ok());
  std::vector<uint8_t> server_value;
  auto key = DiffieHellman(client_value, &server_value);
  ASSERT_TRUE(key.ok()) << key.error();
  EXPECT_EQ(key->size(), 32u);
  auto decoded = protocol::DecodePublicKey(server_value);
  ASSERT_TRUE(decoded.ok());
  const auto& ours = std::get<protocol::DhPublicKey>(decoded->key);
  auto their_key = protocol::DecodePublicKey(client_value);
  ASSERT_TRUE(their_key.ok());
  const auto& theirs = std::get<protocol::DhPublicKey>(their_key->key);
  EXPECT_TRUE(std::equal(ours.p.begin(), ours.p.end(), theirs.p.begin(), theirs.p.end()));
  // A key that is not DH is refused.
  EXPECT_FALSE(DiffieHellman(ReferenceServerKey(), &server_value).ok());
  // So is a group above 4096 bits: anyone may ask for a setup, and its cost must stay bounded.
  std::vector<uint8_t> huge_p(4200 / 8, 0xff), two = {2}, three = {3};
  protocol::PublicKey huge;
  huge.key = protocol::DhPublicKey{three, huge_p, two};
  auto refused = DiffieHellman(protocol::EncodePublicKey(huge), &server_value);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().find("4096"), std::string::npos);
}

TEST(SessionKeys, EncryptedMessagesRoundTripAndWrongKeysFail) {
  std::vector<uint8_t> key(32, 3);
  size_t size = 0;
  auto buffer = AnswerToSign(&size);
  buffer[7] = 9;  // an encrypted message belongs to a session
  std::vector<uint8_t> plain(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(size));
  const size_t sealed = EncryptEncoded(buffer, size, key);
  ASSERT_GT(sealed, size);
  EXPECT_EQ((sealed - protocol::kEnvelopeSize) % 16, 0u);
  std::span<const uint8_t> message(buffer.data(), sealed);
  auto decoded = MustDecode(message);
  EXPECT_TRUE(decoded.envelope.encrypted);
  auto opened = DecryptMessage(message, key);
  ASSERT_TRUE(opened.ok());
  EXPECT_EQ(*opened, plain);
  std::vector<uint8_t> wrong(32, 4);
  auto refused = DecryptMessage(message, wrong);
  if (refused.ok()) {
    EXPECT_NE(*refused, plain);  // a padding that happens to check still differs
  }
  EXPECT_FALSE(DecryptMessage(message.first(protocol::kEnvelopeSize + 17), key).ok());
  EXPECT_FALSE(DecryptMessage(message.first(protocol::kEnvelopeSize), key).ok());
}

TEST(SessionKeys, RsaDeliveredKeysDecryptWithThePrivateHalf) {
  auto key = TestKey("RSA");
  std::vector<uint8_t> secret = {0, 0, 0, 3, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  auto sealed = EncryptToPublicKey(key->public_key_value(), secret);
  ASSERT_FALSE(sealed.empty());
  EXPECT_EQ(key->Decrypt(sealed), secret);
  EXPECT_TRUE(TestKey("RSA")->Decrypt(sealed).empty() || TestKey("RSA")->Decrypt(sealed) != secret);
}

}  // namespace
}  // namespace idnode::auth
