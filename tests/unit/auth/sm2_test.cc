// SM2 identities as China's identifier SDK makes them (HANDLE.md §3, tests/data/vectors/handle/
// sm2, made by the SDK itself): every challenge answer in the vectors verifies, on both hash paths
// ("SM3": SM3 first, then SM2/SM3 under the identity handle; "SHA-256": SM2 with SHA-256 under the
// default user id), with the HS_PUBKEY value in both encodings (PEM text as the SDK writes it, DER
// as its reader expects); a changed byte, another identity handle or another key does not.
#include <gtest/gtest.h>

#include <fstream>
#include <list>
#include <sstream>

#include "../protocol/test_util.h"
#include "idnode/auth/credentials.h"
#include "idnode/auth/message_auth.h"
#include "idnode/protocol/message.h"

namespace idnode::auth {
namespace {

namespace vt = protocol::testing;

std::vector<uint8_t> Hex(const std::string& path) {
  std::ifstream in(vt::VectorPath("sm2/" + path));
  std::string line;
  std::getline(in, line);
  auto bytes = FromHex(line);
  EXPECT_TRUE(bytes.has_value()) << path;
  return bytes.value_or(std::vector<uint8_t>{});
}

std::span<const uint8_t> Keep(std::vector<uint8_t> bytes) {
  static std::list<std::vector<uint8_t>> storage;
  storage.push_back(std::move(bytes));
  return storage.back();
}

constexpr std::string_view kIdentity = "20.500.12345/sm2admin";

struct Case {
  std::string name;
  std::vector<uint8_t> nonce, digest, signed_response;
};

std::vector<Case> Cases() {
  std::vector<Case> cases;
  for (std::string path : {"sm3-path", "sha256-path"}) {
    cases.push_back({"offline/" + path, Hex("offline/nonce.hex"),
                     Hex("offline/request-digest.sha256.hex"),
                     Hex("offline/" + path + ".signedResponse.hex")});
  }
  // The captures: a 402 (nonce, digest) and the OC 200 that answered it.
  for (auto [dir, challenge, answer] :
       {std::tuple<std::string, std::string, std::string>{"capture-cnri-resolver/sm3-path",
                                                          "02-resp-oc100", "03-req-oc200"},
        {"capture-cnri-resolver/sha256-path", "02-resp-oc100", "03-req-oc200"},
        {"capture-login/sm3-path", "04-resp-oc2001", "05-req-oc200"},
        {"capture-login/sha256-path", "04-resp-oc2001", "05-req-oc200"}}) {
    auto c_bytes = Keep(Hex(dir + "/" + challenge + ".hex"));
    auto a_bytes = Keep(Hex(dir + "/" + answer + ".hex"));
    auto c = protocol::DecodeMessage(c_bytes);
    auto a = protocol::DecodeMessage(a_bytes);
    EXPECT_TRUE(c.ok() && a.ok()) << dir;
    if (!c.ok() || !a.ok() || !c->request_digest) continue;
    const auto* body = std::get_if<protocol::ChallengeBody>(&c->body);
    const auto* answer_body = std::get_if<protocol::ChallengeAnswer>(&a->body);
    EXPECT_TRUE(body != nullptr && answer_body != nullptr) << dir;
    if (body == nullptr || answer_body == nullptr) continue;
    EXPECT_EQ(answer_body->user_id_handle, kIdentity);
    EXPECT_EQ(answer_body->user_id_index, 300);
    cases.push_back({dir,
                     {body->nonce.begin(), body->nonce.end()},
                     {c->request_digest->digest.begin(), c->request_digest->digest.end()},
                     {answer_body->signed_response.begin(), answer_body->signed_response.end()}});
  }
  return cases;
}

TEST(Sm2, EveryAnswerTheSdkMadeVerifiesWithBothKeyEncodings) {
  const auto cases = Cases();
  ASSERT_EQ(cases.size(), 6u);
  for (const char* key_file :
       {"keys/hs_pubkey-data.SM2_PUB_KEY.hex", "keys/hs_pubkey-data.SM2_PUB_KEY-with-DER.hex"}) {
    const auto key = Hex(key_file);
    ASSERT_FALSE(key.empty());
    for (const auto& c : cases) {
      EXPECT_EQ(VerifyChallengeAnswer(kAuthTypePublicKey, key, c.nonce, c.digest, c.signed_response,
                                      false, kIdentity),
                Verdict::kValid)
          << c.name << " with " << key_file;
    }
  }
}

TEST(Sm2, ChangedAnswersDigestsAndIdentitiesDoNotVerify) {
  const auto key = Hex("keys/hs_pubkey-data.SM2_PUB_KEY.hex");
  for (const auto& c : Cases()) {
    auto digest = c.digest;
    digest[0] ^= 1;
    EXPECT_EQ(VerifyChallengeAnswer(kAuthTypePublicKey, key, c.nonce, digest, c.signed_response,
                                    false, kIdentity),
              Verdict::kInvalid)
        << c.name;
    auto answer = c.signed_response;
    answer[answer.size() - 3] ^= 0x40;  // inside s
    EXPECT_NE(
        VerifyChallengeAnswer(kAuthTypePublicKey, key, c.nonce, c.digest, answer, false, kIdentity),
        Verdict::kValid)
        << c.name;
    // The "SM3" path binds the identity handle (the SM2 user id); "SHA-256" uses the default id.
    const bool sm3 = c.name.find("sm3") != std::string::npos;
    EXPECT_EQ(VerifyChallengeAnswer(kAuthTypePublicKey, key, c.nonce, c.digest, c.signed_response,
                                    false, "20.500.12345/someone-else"),
              sm3 ? Verdict::kInvalid : Verdict::kValid)
        << c.name;
  }
}

TEST(Sm2, MalformedKeysAndAnswersAreRefused) {
  const auto c = Cases().front();
  auto key = Hex("keys/hs_pubkey-data.SM2_PUB_KEY.hex");
  // A key that says SM2 but holds garbage.
  std::vector<uint8_t> broken = key;
  broken[40] ^= 0xff;
  EXPECT_NE(VerifyChallengeAnswer(kAuthTypePublicKey, broken, c.nonce, c.digest, c.signed_response,
                                  false, kIdentity),
            Verdict::kValid);
  // An unknown hash name.
  std::vector<uint8_t> renamed = {0, 0, 0, 3, 'M', 'D', '5'};
  renamed.insert(renamed.end(), c.signed_response.begin() + 7, c.signed_response.end());
  EXPECT_EQ(
      VerifyChallengeAnswer(kAuthTypePublicKey, key, c.nonce, c.digest, renamed, false, kIdentity),
      Verdict::kUnsupported);
  // Truncated answers.
  for (size_t n : {size_t{0}, size_t{4}, size_t{10}, c.signed_response.size() - 1}) {
    std::vector<uint8_t> cut(c.signed_response.begin(),
                             c.signed_response.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_EQ(
        VerifyChallengeAnswer(kAuthTypePublicKey, key, c.nonce, c.digest, cut, false, kIdentity),
        Verdict::kMalformed)
        << n;
  }
}

TEST(Sm4Sessions, TheSdksEncryptedMessageDecryptsAndReencryptsByteForByte) {
  const auto key = Hex("session-sm4/sm4-example.session-key.hex");
  const auto wire = Hex("session-sm4/sm4-example.wire.hex");
  const auto plain = Hex("session-sm4/sm4-example.plaintext.header+body+cred.hex");
  auto opened = DecryptMessage(wire, key, kCipherSm4);
  ASSERT_TRUE(opened.ok()) << opened.error();
  EXPECT_EQ(std::vector<uint8_t>(opened->begin() + protocol::kEnvelopeSize, opened->end()), plain);
  EXPECT_EQ((*opened)[2] & protocol::kEnvelopeEncrypted, 0);
  // The IV is the key: encryption is deterministic, and gives the SDK's bytes.
  EXPECT_EQ(EncryptBodySm4(key, plain),
            std::vector<uint8_t>(wire.begin() + protocol::kEnvelopeSize, wire.end()));
  std::vector<uint8_t> wrong(16, 1);
  auto refused = DecryptMessage(wire, wrong, kCipherSm4);
  if (refused.ok()) {
    EXPECT_NE(std::vector<uint8_t>(refused->begin() + protocol::kEnvelopeSize, refused->end()),
              plain);
  }
  EXPECT_FALSE(DecryptBodySm4(key, std::span<const uint8_t>(plain).first(15)).ok());
}

TEST(Sm4Sessions, SessionKeysForSm2KeysTravelInTheSdksLayout) {
  const auto key = Hex("keys/hs_pubkey-data.SM2_PUB_KEY.hex");
  EXPECT_TRUE(IsSm2KeyValue(key));
  EXPECT_TRUE(IsSm2KeyValue(Hex("keys/hs_pubkey-data.SM2_PUB_KEY-with-DER.hex")));
  const auto plain = Hex("session-sm4/session-setup-example.sm2-plaintext.hex");
  auto sealed = EncryptToSm2(key, plain);
  // C1 (04‖x‖y) ‖ C3 (SM3) ‖ C2 (as long as the plaintext); random, so never twice the same.
  ASSERT_EQ(sealed.size(), 65 + 32 + plain.size());
  EXPECT_EQ(sealed[0], 0x04);
  EXPECT_NE(EncryptToSm2(key, plain), sealed);
  EXPECT_EQ(Hex("session-sm4/session-setup-example.sm2-ciphertext.C1C3C2.hex").size(),
            sealed.size());  // the SDK's (hutool's) example has the same layout
  // Not an SM2 key: nothing.
  std::vector<uint8_t> rsa = {0,   0,   0,   11,  'R', 'S', 'A', '_', 'P',
                              'U', 'B', '_', 'K', 'E', 'Y', 0,   0};
  EXPECT_FALSE(IsSm2KeyValue(rsa));
  EXPECT_TRUE(EncryptToSm2(rsa, plain).empty());
}

// idctl keygen --type sm2 and idctl admin --key with an SM2 key: from the SDK's own private key,
// the HS_PUBKEY data is the SDK's byte for byte, and the answers made with it are the SDK's
// "SM3" path (they verify only under the identity handle they were made for).
TEST(Sm2, TheSdksPrivateKeyGivesItsHsPubkeyBytesAndAnswersLikeIt) {
  std::ifstream in(vt::VectorPath("sm2/keys/sm2-private-pkcs8.pem"), std::ios::binary);
  const std::string pem((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_FALSE(pem.empty());
  auto readable = PrivateKeyPem({reinterpret_cast<const uint8_t*>(pem.data()), pem.size()}, {});
  ASSERT_TRUE(readable.ok()) << readable.error();
  const auto value = PublicKeyValueFor(*readable);
  EXPECT_EQ(value, Hex("keys/hs_pubkey-data.SM2_PUB_KEY.hex"));
  const auto nonce = Hex("offline/nonce.hex");
  const auto digest = Hex("offline/request-digest.sha256.hex");
  const auto answer = PublicKeyAnswer(*readable, nonce, digest, kIdentity);
  ASSERT_FALSE(answer.empty());
  // str "SM3", then a DER signature (70-72 bytes).
  ASSERT_GE(answer.size(), 7u + 4 + 70);
  ASSERT_LE(answer.size(), 7u + 4 + 72);
  EXPECT_EQ(std::string(answer.begin() + 4, answer.begin() + 7), "SM3");
  EXPECT_EQ(
      VerifyChallengeAnswer(kAuthTypePublicKey, value, nonce, digest, answer, false, kIdentity),
      Verdict::kValid);
  EXPECT_EQ(VerifyChallengeAnswer(kAuthTypePublicKey, value, nonce, digest, answer, false,
                                  "20.500.12345/other"),
            Verdict::kInvalid);
  // SM2 signatures are randomised: two answers differ, both verify.
  const auto again = PublicKeyAnswer(*readable, nonce, digest, kIdentity);
  EXPECT_NE(again, answer);
  EXPECT_EQ(
      VerifyChallengeAnswer(kAuthTypePublicKey, value, nonce, digest, again, false, kIdentity),
      Verdict::kValid);
}

}  // namespace
}  // namespace idnode::auth
