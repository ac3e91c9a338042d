// The JSON API's `Handle` authentication scheme: its Authorization header parser (malformed input
// included), the signed responses it stands for (checked by the Handle protocol's verifier with
// answers made the client's way), and the bounds of its session table.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <chrono>
#include <string>
#include <vector>

#include "idnode/auth/credentials.h"
#include "idnode/http/auth_sessions.h"
#include "idnode/http/write_requests.h"

namespace idnode::http {
namespace {

using namespace std::chrono_literals;

std::string B64(std::span<const uint8_t> bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes.data(),
                                static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::span<const uint8_t> Bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

TEST(HandleAuthorization, ParsesTheReferenceClientsHeader) {
  auto h = ParseHandleAuthorization(
      R"(Handle sessionId="node01abc", id="300%3A0.NA%2F20.500.12345", type="HS_PUBKEY", )"
      R"(cnonce="AAECAw==", alg="SHA256", signature="BAUG")");
  ASSERT_TRUE(h.ok()) << h.error();
  EXPECT_EQ(h->session_id, "node01abc");
  EXPECT_EQ(h->id, "300:0.NA/20.500.12345");
  EXPECT_EQ(h->type, "HS_PUBKEY");
  EXPECT_EQ(h->alg, "SHA256");
  EXPECT_EQ(h->cnonce, (std::vector<uint8_t>{0, 1, 2, 3}));
  EXPECT_EQ(h->signature, (std::vector<uint8_t>{4, 5, 6}));
  EXPECT_TRUE(h->Authenticating());
  EXPECT_TRUE(h->Complete());
}

TEST(HandleAuthorization, TokensEscapesCaseAndUrlSafeBase64) {
  // Unquoted tokens, any case of names and scheme, a backslash escape, extra commas, unpadded
  // URL-safe base64, '+' kept in the id, unknown parameters ignored.
  auto h = ParseHandleAuthorization(
      "  handle   SESSIONID=abc ,, ID=\"300:88.100/a+b\\\"c\" ,clientCert=false, "
      "cnonce=-_8, signature=AA");
  ASSERT_TRUE(h.ok()) << h.error();
  EXPECT_EQ(h->session_id, "abc");
  EXPECT_EQ(h->id, "300:88.100/a+b\"c");
  EXPECT_EQ(h->cnonce, (std::vector<uint8_t>{0xfb, 0xff}));
  EXPECT_EQ(h->signature, (std::vector<uint8_t>{0}));
  EXPECT_FALSE(h->Complete());  // no type, no alg
  auto session_only = ParseHandleAuthorization("Handle sessionId=\"abc\"");
  ASSERT_TRUE(session_only.ok());
  EXPECT_FALSE(session_only->Authenticating());
}

TEST(HandleAuthorization, MalformedHeadersAreRefused) {
  for (std::string_view bad : {
           "Handle",                         // no parameters
           "Handle ",                        // none either
           "Handlex sessionId=a",            // another scheme
           "Basic abc",                      // another scheme
           "Handle sessionId",               // no '='
           "Handle sessionId=",              // no value
           "Handle =a",                      // no name
           "Handle sessionId=\"abc",         // unterminated quote
           "Handle sessionId=\"abc\\",       // escape at the end
           "Handle a=b c=d",                 // no comma
           "Handle a=b;c=d",                 // not a separator
           "Handle cnonce=\"not base64!\"",  // cnonce must be base64
           "Handle signature=\"A\"",         // 1 char of base64 is nothing
           "Handle id=\"%zz\"",              // malformed escape
           "Handle id=\"300%3A%00\"",        // %00
           "Handle id=\"300:a\x01b\"",       // a control character
       }) {
    EXPECT_FALSE(ParseHandleAuthorization(bad).ok()) << bad;
  }
  EXPECT_FALSE(ParseHandleAuthorization("Handle a=" + std::string(20000, 'x')).ok());
  const std::string with_nul("Handle id=\"300:a\0b\"", 19);  // a NUL inside the quotes
  EXPECT_FALSE(ParseHandleAuthorization(with_nul).ok());
  EXPECT_FALSE(IsHandleAuthorization("Basic YTpi"));
  EXPECT_TRUE(IsHandleAuthorization("Handle sessionId=a"));
}

// The client MACs nonce ‖ cnonce with its HS_SECKEY as the Handle protocol's OC 200 does: the
// header's proof, rebuilt as a signedResponse, passes the protocol's verifier.
TEST(HandleAuthorization, SecretKeyProofsVerifyForEveryAlgorithmName) {
  const std::vector<uint8_t> nonce(16, 0x11), cnonce(16, 0x22);
  const std::string secret = "s3cret";
  struct Alg {
    std::string_view name;
    uint8_t code;
  };
  for (auto [name, code] :
       {Alg{"SHA1", auth::mac_code::kSha1}, Alg{"sha-1", auth::mac_code::kSha1},
        Alg{"SHA256", auth::mac_code::kSha256}, Alg{"MD5", auth::mac_code::kMd5},
        Alg{"HMAC-SHA256", auth::mac_code::kHmacSha256},
        Alg{"HmacSHA1", auth::mac_code::kHmacSha1}}) {
    auto answer = auth::SecretKeyAnswer(code, Bytes(secret), nonce, cnonce);
    HandleAuthorization h;
    h.type = "HS_SECKEY";
    h.alg = std::string(name);
    h.signature.assign(answer.begin() + 1, answer.end());
    auto signed_response = SignedResponseFor(h);
    ASSERT_TRUE(signed_response.ok()) << name;
    EXPECT_EQ(*signed_response, answer) << name;
    EXPECT_EQ(
        auth::VerifyChallengeAnswer("HS_SECKEY", Bytes(secret), nonce, cnonce, *signed_response),
        auth::Verdict::kValid)
        << name;
    EXPECT_EQ(
        auth::VerifyChallengeAnswer("HS_SECKEY", Bytes("other"), nonce, cnonce, *signed_response),
        auth::Verdict::kInvalid)
        << name;
  }
  // PBKDF2: salt, iterations and length travel as parameters.
  const std::vector<uint8_t> salt(16, 0x33);
  auto answer = auth::SecretKeyAnswer(auth::mac_code::kPbkdf2HmacSha1, Bytes(secret), nonce, cnonce,
                                      salt, 1000);
  auto h = ParseHandleAuthorization(
      "Handle sessionId=x, id=\"300:88.100/a\", type=HS_SECKEY, "
      "alg=PBKDF2-HMAC-SHA1, cnonce=\"" +
      B64(cnonce) + "\", salt=\"" + B64(salt) + "\", iterations=1000, length=160, signature=\"" +
      B64({answer.end() - 20, answer.end()}) + "\"");
  ASSERT_TRUE(h.ok()) << h.error();
  auto signed_response = SignedResponseFor(*h);
  ASSERT_TRUE(signed_response.ok()) << signed_response.error();
  EXPECT_EQ(*signed_response, answer);
  h->iterations.clear();
  EXPECT_FALSE(SignedResponseFor(*h).ok());
  h->type = "HS_OTHER";
  EXPECT_FALSE(SignedResponseFor(*h).ok());
  HandleAuthorization unknown_alg;
  unknown_alg.type = "HS_PUBKEY";
  unknown_alg.alg = "WHIRLPOOL";
  EXPECT_FALSE(SignedResponseFor(unknown_alg).ok());
}

TEST(HandleAuthorization, PublicKeyProofsVerify) {
  EVP_PKEY* key = EVP_RSA_gen(2048);
  ASSERT_NE(key, nullptr);
  BIO* bio = BIO_new(BIO_s_mem());
  ASSERT_EQ(PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr), 1);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  const std::string pem(data, static_cast<size_t>(n));
  BIO_free(bio);
  const std::vector<uint8_t> nonce(16, 0x44), cnonce(32, 0x55);
  // What a client signs: nonce ‖ cnonce, SHA256withRSA (the same bytes the protocol answer holds).
  auto answer = auth::PublicKeyAnswer(pem, nonce, cnonce);
  ASSERT_FALSE(answer.empty());
  HandleAuthorization h;
  h.type = "HS_PUBKEY";
  h.alg = "SHA256";
  h.signature.assign(answer.begin() + 4 + 7 + 4, answer.end());  // str "SHA-256", str sig
  auto signed_response = SignedResponseFor(h);
  ASSERT_TRUE(signed_response.ok());
  EXPECT_EQ(*signed_response, answer);
  const auto value = auth::PublicKeyValueFor(pem);
  EXPECT_EQ(auth::VerifyChallengeAnswer("HS_PUBKEY", value, nonce, cnonce, *signed_response),
            auth::Verdict::kValid);
  std::vector<uint8_t> other_nonce = nonce;
  other_nonce[0] ^= 1;
  EXPECT_EQ(auth::VerifyChallengeAnswer("HS_PUBKEY", value, other_nonce, cnonce, *signed_response),
            auth::Verdict::kInvalid);
  EVP_PKEY_free(key);
}

HttpAuthSessions::Source SourceOf(uint8_t last) {
  HttpAuthSessions::Source s{};
  s[10] = s[11] = 0xff;
  s[12] = 127;
  s[15] = last;
  return s;
}

HttpAuthSessions::Proof ProofOf(std::string handle, int32_t index = 300) {
  return {{std::move(handle), index}, "HS_SECKEY", {}};
}

TEST(HttpAuthSessions, SessionsCarryNoncesAndIdentities) {
  HttpAuthSessions sessions;
  const auto t0 = HttpAuthSessions::Clock::now();
  auto a = sessions.Open(SourceOf(1), t0);
  auto b = sessions.Open(SourceOf(1), t0);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->session_id.size(), 32u);
  EXPECT_NE(a->session_id, b->session_id);
  EXPECT_NE(a->nonce, b->nonce);
  auto found = sessions.Find(a->session_id, t0 + 1s);
  ASSERT_TRUE(found);
  EXPECT_EQ(found->nonce, a->nonce);
  EXPECT_FALSE(found->proof);
  EXPECT_FALSE(sessions.Find("unknown", t0));
  EXPECT_TRUE(sessions.Authenticate(a->session_id, ProofOf("0.NA/88.100"), t0 + 2s));
  found = sessions.Find(a->session_id, t0 + 3s);
  ASSERT_TRUE(found && found->proof);
  EXPECT_EQ(found->proof->identity, (auth::Identity{"0.NA/88.100", 300}));
  // One session, one identity: proving it again is fine, another identity is not.
  EXPECT_TRUE(sessions.Authenticate(a->session_id, ProofOf("0.NA/88.100"), t0 + 4s));
  EXPECT_FALSE(sessions.Authenticate(a->session_id, ProofOf("0.NA/88.100", 301), t0 + 5s));
  EXPECT_EQ(sessions.Find(a->session_id, t0 + 6s)->proof->identity.index, 300);
  sessions.Close(a->session_id);
  EXPECT_FALSE(sessions.Find(a->session_id, t0 + 7s));
}

TEST(HttpAuthSessions, NoncesExpireAndAuthenticatedSessionsEndIdleOrOld) {
  HttpAuthSessions::Limits limits;
  limits.challenge_life = 10s;
  limits.idle = 100s;
  limits.lifetime = 1000s;
  HttpAuthSessions sessions(limits);
  const auto t0 = HttpAuthSessions::Clock::now();
  auto pending = sessions.Open(SourceOf(1), t0);
  ASSERT_TRUE(pending);
  EXPECT_FALSE(sessions.Find(pending->session_id, t0 + 10s));  // the nonce is stale
  EXPECT_FALSE(sessions.Authenticate(pending->session_id, ProofOf("0.NA/x"), t0 + 11s));
  auto idle = sessions.Open(SourceOf(1), t0);
  ASSERT_TRUE(sessions.Authenticate(idle->session_id, ProofOf("0.NA/x"), t0 + 1s));
  EXPECT_TRUE(sessions.Find(idle->session_id, t0 + 100s));   // used: idle time starts again
  EXPECT_FALSE(sessions.Find(idle->session_id, t0 + 200s));  // 100 s unused
  auto old = sessions.Open(SourceOf(1), t0);
  ASSERT_TRUE(sessions.Authenticate(old->session_id, ProofOf("0.NA/x"), t0 + 1s));
  for (auto t = t0 + 90s; t < t0 + 1000s; t += 90s) EXPECT_TRUE(sessions.Find(old->session_id, t));
  EXPECT_FALSE(sessions.Find(old->session_id, t0 + 1000s));  // lifetime over, even in use
}

// A session kept busy does not keep the idle ones behind it in the table: they end on their
// own deadlines and free their source's share.
TEST(HttpAuthSessions, IdleSessionsEndWhileAnEarlierOneStaysInUse) {
  HttpAuthSessions::Limits limits;
  limits.per_source = 3;
  limits.idle = 100s;
  limits.lifetime = 100000s;
  HttpAuthSessions sessions(limits);
  const auto t0 = HttpAuthSessions::Clock::now();
  auto busy = sessions.Open(SourceOf(9), t0);
  ASSERT_TRUE(sessions.Authenticate(busy->session_id, ProofOf("0.NA/daemon"), t0));
  for (int step = 0; step < 80; ++step) {
    const auto t = t0 + std::chrono::seconds(50 * step + 1);
    ASSERT_TRUE(sessions.Find(busy->session_id, t)) << step;  // the daemon stays busy
    if (step % 4 != 0) continue;
    // Every 200 s a cron job opens a session, proves itself once, then leaves it idle.
    auto fresh = sessions.Open(SourceOf(9), t);
    ASSERT_TRUE(fresh) << "step " << step << " found its source's share taken";
    ASSERT_TRUE(sessions.Authenticate(fresh->session_id, ProofOf("0.NA/cron"), t));
  }
  EXPECT_LE(sessions.CountFrom(SourceOf(9)), 3u);
}

TEST(HttpAuthSessions, BoundedPerSourceAndInAllWithoutPushingOutAuthenticatedOnes) {
  HttpAuthSessions::Limits limits;
  limits.capacity = 4;
  limits.per_source = 2;
  HttpAuthSessions sessions(limits);
  const auto t0 = HttpAuthSessions::Clock::now();
  auto a1 = sessions.Open(SourceOf(1), t0);
  auto a2 = sessions.Open(SourceOf(1), t0);
  ASSERT_TRUE(a1 && a2);
  // At its cap, a source's own oldest pending session gives way.
  auto a3 = sessions.Open(SourceOf(1), t0);
  ASSERT_TRUE(a3);
  EXPECT_FALSE(sessions.Find(a1->session_id, t0));
  EXPECT_EQ(sessions.CountFrom(SourceOf(1)), 2u);
  auto b1 = sessions.Open(SourceOf(2), t0);
  auto b2 = sessions.Open(SourceOf(2), t0);
  ASSERT_TRUE(b1 && b2);
  EXPECT_EQ(sessions.size(), 4u);
  for (const auto& s : {a2, a3, b1})
    ASSERT_TRUE(sessions.Authenticate(s->session_id, ProofOf("0.NA/x"), t0));
  // A source whose share is all authenticated gets nothing more.
  EXPECT_FALSE(sessions.Open(SourceOf(1), t0));
  // Full: the one pending session (b2) gives way; then nothing can.
  auto c1 = sessions.Open(SourceOf(3), t0);
  ASSERT_TRUE(c1);
  EXPECT_FALSE(sessions.Find(b2->session_id, t0));
  ASSERT_TRUE(sessions.Authenticate(c1->session_id, ProofOf("0.NA/x"), t0));
  EXPECT_FALSE(sessions.Open(SourceOf(4), t0));
  EXPECT_EQ(sessions.size(), 4u);
  for (const auto& s : {a2, a3, b1, c1}) EXPECT_TRUE(sessions.Find(s->session_id, t0));
  // Once they have ended, room again.
  EXPECT_TRUE(sessions.Open(SourceOf(4), t0 + 4000s));
  EXPECT_EQ(sessions.size(), 1u);
}

TEST(HttpAuthSessions, AnIpv6SlashSixtyFourIsOneSourceAndAnIdentityHasItsCap) {
  HttpAuthSessions::Limits limits;
  limits.per_source = 2;
  limits.per_identity = 2;
  HttpAuthSessions sessions(limits);
  const auto t0 = HttpAuthSessions::Clock::now();
  HttpAuthSessions::Source v6{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1};
  for (uint8_t host = 1; host <= 5; ++host) {
    v6[15] = host;
    ASSERT_TRUE(sessions.Open(v6, t0));
  }
  EXPECT_EQ(sessions.CountFrom(v6), 2u);  // the /64's own oldest gave way
  // Three sessions of one identity: the oldest ends.
  std::vector<std::string> ids;
  for (uint8_t s = 10; s < 13; ++s) {
    auto c = sessions.Open(SourceOf(s), t0);
    ASSERT_TRUE(c);
    ASSERT_TRUE(sessions.Authenticate(c->session_id, ProofOf("0.NA/one"), t0));
    ids.push_back(c->session_id);
  }
  EXPECT_FALSE(sessions.Find(ids[0], t0));
  EXPECT_TRUE(sessions.Find(ids[1], t0));
  EXPECT_TRUE(sessions.Find(ids[2], t0));
}

}  // namespace
}  // namespace idnode::http
