// Challenge answers: secret-key MACs checked against answers computed independently (Python's
// hashlib/hmac), public-key signatures made with keys generated here, and malformed input.
#include "idnode/auth/credentials.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <memory>

#include "idnode/common/hex.h"

namespace idnode::auth {
namespace {

std::vector<uint8_t> Range(uint8_t first, size_t n) {
  std::vector<uint8_t> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(first + i);
  return out;
}

std::span<const uint8_t> Bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::vector<uint8_t> Hex(std::string_view hex) {
  return *FromHex(hex);
}

const std::vector<uint8_t> kNonce = Range(0xa0, 16);
const std::vector<uint8_t> kDigest = Range(1, 32);

// Expected MACs from Python: hmac/hashlib over nonce ‖ digest with the secret "pass-word".
TEST(SecretKey, AnswersMatchAnIndependentImplementation) {
  auto hmac256 = SecretKeyAnswer(mac_code::kHmacSha256, Bytes("pass-word"), kNonce, kDigest);
  ASSERT_EQ(hmac256.size(), 33u);
  EXPECT_EQ(hmac256[0], 0x13);
  EXPECT_EQ(std::vector<uint8_t>(hmac256.begin() + 1, hmac256.end()),
            Hex("7785f25c5945867df09891b87936dd9203b5fd4e5e03f57109a55b3c644fa453"));
  auto sha1 = SecretKeyAnswer(mac_code::kSha1, Bytes("pass-word"), kNonce, kDigest);
  EXPECT_EQ(std::vector<uint8_t>(sha1.begin() + 1, sha1.end()),
            Hex("123746322a25b123b9f2f77f3b5a54135b9c96a4"));
}

TEST(SecretKey, Pbkdf2AnswerCarriesItsParametersAndMatchesPython) {
  auto salt = Range(0, 16);
  auto answer =
      SecretKeyAnswer(mac_code::kPbkdf2HmacSha1, Bytes("pass-word"), kNonce, kDigest, salt, 10000);
  // code, salt(str), iterations, key bits, mac(str)
  ASSERT_EQ(answer.size(), 1u + 4 + 16 + 4 + 4 + 4 + 20);
  EXPECT_EQ(answer[0], 0x22);
  EXPECT_EQ(std::vector<uint8_t>(answer.end() - 20, answer.end()),
            Hex("36942eee572fe11d50be502dba33742c59b762c0"));
  EXPECT_EQ(VerifyChallengeAnswer(kAuthTypeSecretKey, Bytes("pass-word"), kNonce, kDigest, answer),
            Verdict::kValid);
}

// Java turns each secret byte into a char and SunJCE's PBKDF2 encodes chars as UTF-8: the
// Latin-1 byte 0xE9 is stretched as C3 A9 (Python: pbkdf2_hmac over "café".encode("utf-8")).
TEST(SecretKey, Pbkdf2StretchesHighBytesAsJavaDoes) {
  const std::string latin1 = "caf\xe9";
  auto answer = SecretKeyAnswer(mac_code::kPbkdf2HmacSha1, Bytes(latin1), kNonce, kDigest,
                                Range(0, 16), 10000);
  EXPECT_EQ(std::vector<uint8_t>(answer.end() - 20, answer.end()),
            Hex("14d86d806db91ecf86bd96539e0b6a10a1c1ffa1"));
}

TEST(SecretKey, EveryCodeVerifiesAndAWrongSecretDoesNot) {
  for (uint8_t code : {mac_code::kMd5, mac_code::kSha1, mac_code::kSha256, mac_code::kHmacSha1,
                       mac_code::kHmacSha256, mac_code::kPbkdf2HmacSha1}) {
    auto answer = SecretKeyAnswer(code, Bytes("s3cret"), kNonce, kDigest, Range(9, 8), 1000);
    ASSERT_FALSE(answer.empty()) << int{code};
    EXPECT_EQ(VerifyChallengeAnswer(kAuthTypeSecretKey, Bytes("s3cret"), kNonce, kDigest, answer),
              Verdict::kValid)
        << int{code};
    EXPECT_EQ(VerifyChallengeAnswer(kAuthTypeSecretKey, Bytes("s3creT"), kNonce, kDigest, answer),
              Verdict::kInvalid)
        << int{code};
    auto other_digest = kDigest;
    other_digest[0] ^= 1;
    EXPECT_EQ(
        VerifyChallengeAnswer(kAuthTypeSecretKey, Bytes("s3cret"), kNonce, other_digest, answer),
        Verdict::kInvalid)
        << int{code};
  }
}

TEST(SecretKey, LegacyAnswersHaveNoCodeByte) {
  auto answer = SecretKeyAnswer(mac_code::kMd5, Bytes("k"), kNonce, kDigest);
  std::vector<uint8_t> bare(answer.begin() + 1, answer.end());
  EXPECT_EQ(VerifyChallengeAnswer(kAuthTypeSecretKey, Bytes("k"), kNonce, kDigest, bare, true),
            Verdict::kValid);
  EXPECT_NE(VerifyChallengeAnswer(kAuthTypeSecretKey, Bytes("k"), kNonce, kDigest, bare, false),
            Verdict::kValid);
}

TEST(SecretKey, MalformedAndCostlyAnswersAreRefused) {
  EXPECT_EQ(VerifyChallengeAnswer(kAuthTypeSecretKey, Bytes("k"), kNonce, kDigest, {}),
            Verdict::kMalformed);
  std::vector<uint8_t> unknown_code{0x7f, 1, 2, 3};
  EXPECT_EQ(VerifyChallengeAnswer(kAuthTypeSecretKey, Bytes("k"), kNonce, kDigest, unknown_code),
            Verdict::kUnsupported);
  auto pbkdf2 =
      SecretKeyAnswer(mac_code::kPbkdf2HmacSha1, Bytes("k"), kNonce, kDigest, Range(0, 4), 10);
  // Iterations field (after code + salt length + 4 salt bytes) raised past the bound.
  auto costly = pbkdf2;
  costly[1 + 4 + 4] = 0x7f;
  EXPECT_EQ(VerifyChallengeAnswer(kAuthTypeSecretKey, Bytes("k"), kNonce, kDigest, costly),
            Verdict::kUnsupported);
  auto truncated = std::vector<uint8_t>(pbkdf2.begin(), pbkdf2.end() - 3);
  EXPECT_EQ(VerifyChallengeAnswer(kAuthTypeSecretKey, Bytes("k"), kNonce, kDigest, truncated),
            Verdict::kMalformed);
  auto huge_salt = pbkdf2;
  huge_salt[1] = 0xff;  // salt length 0xff000004: more than is there
  EXPECT_EQ(VerifyChallengeAnswer(kAuthTypeSecretKey, Bytes("k"), kNonce, kDigest, huge_salt),
            Verdict::kMalformed);
  EXPECT_EQ(VerifyChallengeAnswer("HS_NOPE", Bytes("k"), kNonce, kDigest, pbkdf2),
            Verdict::kUnsupported);
}

std::string NewRsaPem(unsigned bits) {
  EVP_PKEY* key = EVP_RSA_gen(bits);
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long size = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<size_t>(size));
  BIO_free(bio);
  EVP_PKEY_free(key);
  return pem;
}

TEST(PublicKey, RsaSignaturesVerifyAgainstTheHandleEncodingOfTheKey) {
  const std::string pem = NewRsaPem(2048);
  auto key_value = PublicKeyValueFor(pem);
  ASSERT_FALSE(key_value.empty());
  // "RSA_PUB_KEY" as the key type, as CNRI writes it.
  EXPECT_EQ(std::string(key_value.begin() + 4, key_value.begin() + 15), "RSA_PUB_KEY");
  auto answer = PublicKeyAnswer(pem, kNonce, kDigest);
  ASSERT_GT(answer.size(), 256u);
  EXPECT_EQ(std::string(answer.begin() + 4, answer.begin() + 11), "SHA-256");
  EXPECT_EQ(VerifyChallengeAnswer(kAuthTypePublicKey, key_value, kNonce, kDigest, answer),
            Verdict::kValid);

  auto tampered = answer;
  tampered.back() ^= 0x01;
  EXPECT_EQ(VerifyChallengeAnswer(kAuthTypePublicKey, key_value, kNonce, kDigest, tampered),
            Verdict::kInvalid);
  auto other_key = PublicKeyValueFor(NewRsaPem(2048));
  EXPECT_EQ(VerifyChallengeAnswer(kAuthTypePublicKey, other_key, kNonce, kDigest, answer),
            Verdict::kInvalid);
  // A secret-key identity cannot be answered with a signature, nor the reverse.
  EXPECT_NE(VerifyChallengeAnswer(kAuthTypeSecretKey, key_value, kNonce, kDigest, answer),
            Verdict::kValid);
}

TEST(PublicKey, MalformedKeysAndAnswersAreRefused) {
  const std::string pem = NewRsaPem(2048);
  auto key_value = PublicKeyValueFor(pem);
  auto answer = PublicKeyAnswer(pem, kNonce, kDigest);
  EXPECT_EQ(VerifyChallengeAnswer(kAuthTypePublicKey, Bytes("not a key"), kNonce, kDigest, answer),
            Verdict::kMalformed);
  std::vector<uint8_t> cut(answer.begin(), answer.begin() + 20);
  EXPECT_EQ(VerifyChallengeAnswer(kAuthTypePublicKey, key_value, kNonce, kDigest, cut),
            Verdict::kMalformed);
  // An MD5 signature is not accepted whatever it is.
  auto md5 = answer;
  md5[4] = 'M';
  md5[5] = 'D';
  md5[6] = '5';
  md5[7] = md5[8] = md5[9] = md5[10] = '-';
  EXPECT_EQ(VerifyChallengeAnswer(kAuthTypePublicKey, key_value, kNonce, kDigest, md5),
            Verdict::kUnsupported);
  EXPECT_TRUE(PublicKeyAnswer("-----BEGIN nothing-----", kNonce, kDigest).empty());
}

TEST(Identity, ParsesIndexColonHandle) {
  auto id = Identity::Parse("300:0.NA/20.500.12345");
  ASSERT_TRUE(id.has_value());
  EXPECT_EQ(id->index, 300);
  EXPECT_EQ(id->handle, "0.NA/20.500.12345");
  EXPECT_EQ(id->ToString(), "300:0.NA/20.500.12345");
  for (const char* bad : {"", ":", "300:", ":0.NA/X", "0:0.NA/X", "-1:0.NA/X", "x:0.NA/X", "0.NA/X",
                          "99999999999:0.NA/X"}) {
    EXPECT_FALSE(Identity::Parse(bad).has_value()) << bad;
  }
}

}  // namespace
}  // namespace idnode::auth
