// The Handle administration path end to end without sockets: the captured create session (vector
// 09) replayed byte for byte, with a secret-key identity standing in for the captured RSA one, and
// authorization by HS_ADMIN, HS_VLIST groups, prefix admins and server admins.
#include "idnode/net/admin_service.h"

#include "idnode/net/listeners.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "../protocol/test_util.h"
#include "idnode/protocol/value_types.h"
#include "idnode/registry/values.h"
#include "registry_test_util.h"
#include "temp_dir.h"

namespace idnode::net {
namespace {

using protocol::Message;
using protocol::OpCode;
using protocol::ResponseCode;
using protocol::testing::LoadMessage;
using registry::testing::MakeValue;

constexpr std::string_view kPrefix = "20.500.12345";
constexpr std::string_view kIdentityHandle = "0.NA/20.500.12345";
constexpr std::string_view kSecret = "s3cret";

std::span<const uint8_t> Bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::string AdminData(std::string_view handle, int32_t index, uint16_t permissions) {
  protocol::AdminRecord admin;
  admin.admin_handle = handle;
  admin.admin_index = index;
  admin.permissions = permissions;
  auto bytes = protocol::EncodeAdminRecord(admin);
  return std::string(bytes.begin(), bytes.end());
}

class AdminServiceTest : public ::testing::Test {
 protected:
  void SetUp() override { Open({}); }

  // Opens (or reopens) the registry and the services over the test's data directory.
  void Open(auth::AuthOptions options) {
    service_.reset();
    admin_.reset();
    challenges_.reset();
    authorizer_.reset();
    resolver_.reset();
    registry_.reset();
    cache::CacheOptions o;
    o.capacity_bytes = 1 << 20;
    o.shard_count = 4;
    cache_ = std::make_shared<cache::AnswerCache>(o);
    registry::RegistryOptions ro;
    ro.storage.path = dir_.sub("data");
    ro.storage.shard_count = 2;
    ro.storage.sync_writes = false;
    ro.cache = cache_;
    registry_ = std::move(*registry::Registry::Open(std::move(ro)));
    // The prefix handle holds the identity's secret key and names it as the prefix's admin.
    if (registry_->FindPrefix(kPrefix)) return FinishOpen(std::move(options));
    ASSERT_EQ(registry_
                  ->HomePrefix(kPrefix, {MakeValue(300, "HS_SECKEY", std::string(kSecret), 0x0c),
                                         MakeValue(100, "HS_ADMIN",
                                                   AdminData(kIdentityHandle, 300, 0x0fff))})
                  .code,
              ResponseCode::kSuccess);
    FinishOpen(std::move(options));
  }
  void FinishOpen(auth::AuthOptions options) {
    resolver_ = std::make_unique<resolver::Resolver>(*registry_, cache_);
    authorizer_ = std::make_unique<auth::Authorizer>(*registry_, std::move(options));
    MakeAdmin(64);
  }
  void MakeAdmin(size_t max_challenges) {
    challenges_ =
        std::make_unique<auth::ChallengeTable>(max_challenges, 1 << 20, std::chrono::seconds(60));
    failures_ = std::make_unique<auth::FailureThrottle>(10);
    admin_ = std::make_unique<AdminService>(*registry_, *authorizer_, *challenges_, *failures_, 1);
    service_ = std::make_unique<HandleService>(*resolver_, std::vector<uint8_t>{}, 1, admin_.get());
  }
  static auth::Origin From(uint8_t last_byte, bool datagram) {
    auth::Origin o;
    o.datagram = datagram;
    o.address[10] = o.address[11] = 0xff;
    o.address[12] = 127;
    o.address[15] = last_byte;
    return o;
  }

  // What a worker then a storage thread would answer.
  std::vector<uint8_t> Run(std::span<const uint8_t> request) {
    std::vector<uint8_t> out(protocol::kMaxMessageLength);
    Handled h = service_->Handle(request, out, scratch_, false);
    if (h.disposition == Disposition::kNeedsStorage) {
      h = service_->HandleFromStorage(request, out, scratch_, origin_);
    }
    EXPECT_EQ(h.disposition, Disposition::kAnswered);
    out.resize(h.response_size);
    return out;
  }

  static Message Request(OpCode opcode, protocol::Body body, uint32_t request_id,
                         uint32_t session_id = 0) {
    Message m;
    m.envelope.request_id = request_id;
    m.envelope.session_id = session_id;
    m.header.opcode = static_cast<uint32_t>(opcode);
    m.header.op_flags = protocol::opflag::kRecursive | protocol::opflag::kCacheCertify;
    m.header.site_info_serial = 0xffff;
    m.header.expiration_time = 1795670262;
    m.body = std::move(body);
    return m;
  }
  static std::vector<uint8_t> Encode(const Message& m) {
    std::vector<uint8_t> out(protocol::kMaxMessageLength);
    auto n = protocol::EncodeMessage(m, out);
    EXPECT_TRUE(n.ok());
    out.resize(n.ok() ? *n : 0);
    return out;
  }

  // Answers the 402 in `challenge` as `identity` would, with `secret`.
  std::vector<uint8_t> AnswerChallenge(const std::vector<uint8_t>& challenge,
                                       std::string_view identity, int32_t index,
                                       std::string_view secret, uint32_t request_id = 4242) {
    auto decoded = protocol::DecodeMessage(challenge);
    EXPECT_TRUE(decoded.ok());
    EXPECT_EQ(decoded->header.response_code, 402u);
    const auto& body = std::get<protocol::ChallengeBody>(decoded->body);
    answer_ = auth::SecretKeyAnswer(auth::mac_code::kHmacSha256, Bytes(secret), body.nonce,
                                    decoded->request_digest->digest);
    return Encode(Request(OpCode::kResponseToChallenge,
                          protocol::ChallengeAnswer{"HS_SECKEY", identity, index, answer_},
                          request_id, decoded->envelope.session_id));
  }

  // Sends `request`, answers its challenge as the prefix admin, and returns the final answer.
  Message RunAsAdmin(const Message& request, std::string_view identity = kIdentityHandle,
                     int32_t index = 300, std::string_view secret = kSecret) {
    last_ = Run(Encode(request));
    last_ = Run(AnswerChallenge(last_, identity, index, secret));
    auto decoded = protocol::DecodeMessage(last_);
    EXPECT_TRUE(decoded.ok());
    return *decoded;
  }

  ResponseCode Resolve(std::string_view handle) {
    auto reply = Run(
        Encode(Request(OpCode::kResolution, protocol::ResolutionRequest{handle, {}, {}, {}}, 99)));
    return static_cast<ResponseCode>(protocol::DecodeMessage(reply)->header.response_code);
  }

  ::idnode::testing::TempDir dir_;
  std::shared_ptr<cache::AnswerCache> cache_;
  std::unique_ptr<registry::Registry> registry_;
  std::unique_ptr<resolver::Resolver> resolver_;
  std::unique_ptr<auth::Authorizer> authorizer_;
  std::unique_ptr<auth::ChallengeTable> challenges_;
  std::unique_ptr<auth::FailureThrottle> failures_;
  auth::Origin origin_ = From(1, /*datagram=*/false);  // where Run's requests come from
  std::unique_ptr<AdminService> admin_;
  std::unique_ptr<HandleService> service_;
  ServiceScratch scratch_;
  std::vector<uint8_t> answer_;
  std::vector<uint8_t> last_;
};

// CAP vector 09: the client's CREATE_HANDLE (sent in session 7), our 402, then the answer in the
// same session; the final answer is byte-identical to the reference server's.
TEST_F(AdminServiceTest, CapturedCreateSessionReplaysByteForByte) {
  auto request = LoadMessage("09-tcp-create-with-session.request.hex");
  auto expected_challenge = LoadMessage("09-tcp-create.response-RC402-challenge.hex");
  auto challenge = Run(request);
  ASSERT_EQ(challenge.size(), expected_challenge.size());
  // Everything but the 16 random nonce bytes (after envelope, header, RD digest, nonce length).
  constexpr size_t kNonceAt = 20 + 24 + 1 + 32 + 4;
  for (size_t i = 0; i < challenge.size(); ++i) {
    if (i >= kNonceAt && i < kNonceAt + 16) continue;
    ASSERT_EQ(challenge[i], expected_challenge[i]) << "byte " << i;
  }
  EXPECT_FALSE(Resolve("20.500.12345/created1") == ResponseCode::kSuccess);

  // The captured answer, re-signed with our identity's secret key instead of its RSA key.
  auto captured_answer =
      protocol::DecodeMessage(LoadMessage("09-tcp-response-to-challenge.request.hex"));
  ASSERT_TRUE(captured_answer.ok());
  auto nonce = std::span<const uint8_t>(challenge).subspan(kNonceAt, 16);
  auto digest = std::span<const uint8_t>(challenge).subspan(20 + 24 + 1, 32);
  answer_ = auth::SecretKeyAnswer(auth::mac_code::kHmacSha256, Bytes(kSecret), nonce, digest);
  Message answer = *captured_answer;
  answer.body = protocol::ChallengeAnswer{"HS_SECKEY", kIdentityHandle, 300, answer_};
  auto final_answer = Run(Encode(answer));
  EXPECT_EQ(final_answer, LoadMessage("09-tcp-create.response-RC1.hex"));
  EXPECT_EQ(Resolve("20.500.12345/created1"), ResponseCode::kSuccess);

  // A challenge is answered once.
  auto replay = protocol::DecodeMessage(Run(Encode(answer)));
  EXPECT_EQ(replay->header.response_code, 405u);
}

protocol::HandleValue Url(int32_t index, std::string_view url) {
  protocol::HandleValue v;
  v.index = index;
  v.type = "URL";
  v.data = Bytes(url);
  return v;
}

TEST_F(AdminServiceTest, AddModifyRemoveAndDeleteWithTheCacheKeptCoherent) {
  auto created =
      RunAsAdmin(Request(OpCode::kCreateHandle,
                         protocol::HandleValuesBody{"20.500.12345/a", {Url(1, "https://a")}}, 1));
  ASSERT_EQ(created.header.response_code, 1u);
  EXPECT_EQ(created.header.opcode, 100u);
  EXPECT_EQ(std::get<protocol::HandleBody>(created.body).handle, "20.500.12345/a");
  EXPECT_EQ(Resolve("20.500.12345/a"), ResponseCode::kSuccess);  // now cached

  auto added = RunAsAdmin(Request(
      OpCode::kAddValue, protocol::HandleValuesBody{"20.500.12345/a", {Url(2, "https://b")}}, 2));
  EXPECT_EQ(added.header.response_code, 1u);
  EXPECT_EQ(added.header.opcode, 102u);
  EXPECT_EQ(registry_->Get("20.500.12345/a").record.values_size(), 2);

  auto again = RunAsAdmin(Request(
      OpCode::kAddValue, protocol::HandleValuesBody{"20.500.12345/a", {Url(2, "https://c")}}, 3));
  EXPECT_EQ(again.header.response_code, 201u);  // VALUE_ALREADY_EXISTS

  auto modified =
      RunAsAdmin(Request(OpCode::kModifyValue,
                         protocol::HandleValuesBody{"20.500.12345/a", {Url(2, "https://d")}}, 4));
  EXPECT_EQ(modified.header.response_code, 1u);
  EXPECT_EQ(registry_->Get("20.500.12345/a").record.values(1).data(), "https://d");

  const uint8_t index_two[] = {0, 0, 0, 2};
  auto removed = RunAsAdmin(Request(
      OpCode::kRemoveValue,
      protocol::RemoveValuesRequest{"20.500.12345/a", protocol::WireIntList(index_two, 1)}, 5));
  EXPECT_EQ(removed.header.response_code, 1u);
  EXPECT_EQ(registry_->Get("20.500.12345/a").record.values_size(), 1);

  auto deleted =
      RunAsAdmin(Request(OpCode::kDeleteHandle, protocol::HandleBody{"20.500.12345/a"}, 6));
  EXPECT_EQ(deleted.header.response_code, 1u);
  EXPECT_EQ(Resolve("20.500.12345/a"), ResponseCode::kHandleNotFound);  // not the cached answer
}

TEST_F(AdminServiceTest, AWrongSecretFailsAndBurnsTheChallenge) {
  auto request = Request(OpCode::kCreateHandle,
                         protocol::HandleValuesBody{"20.500.12345/b", {Url(1, "x")}}, 1);
  auto challenge = Run(Encode(request));
  auto failed =
      protocol::DecodeMessage(Run(AnswerChallenge(challenge, kIdentityHandle, 300, "wrong")));
  EXPECT_EQ(failed->header.response_code, 403u);
  EXPECT_EQ(failed->header.opcode, 100u);
  auto retry =
      protocol::DecodeMessage(Run(AnswerChallenge(challenge, kIdentityHandle, 300, kSecret)));
  EXPECT_EQ(retry->header.response_code, 405u);  // no challenge waits any more
  EXPECT_EQ(registry_->Get("20.500.12345/b").code, ResponseCode::kHandleNotFound);
}

TEST_F(AdminServiceTest, AuthenticatedButNotAnAdminIsRefused) {
  // A user whose key lives under the prefix, named by no HS_ADMIN value.
  ASSERT_EQ(registry_
                ->Apply(registry::testing::Create(
                    "20.500.12345/user", {MakeValue(300, "HS_SECKEY", "user-secret", 0x0c)}))
                .code,
            ResponseCode::kSuccess);
  auto refused = RunAsAdmin(Request(OpCode::kCreateHandle,
                                    protocol::HandleValuesBody{"20.500.12345/c", {Url(1, "x")}}, 1),
                            "20.500.12345/user", 300, "user-secret");
  EXPECT_EQ(refused.header.response_code, 400u);  // CAP session message #7
  EXPECT_EQ(registry_->Get("20.500.12345/c").code, ResponseCode::kHandleNotFound);

  // Listed in an HS_VLIST group that the prefix's HS_ADMIN names: now it may.
  protocol::ValueReference member{"20.500.12345/user", 300};
  auto list = protocol::EncodeValueList(std::span(&member, 1));
  ASSERT_EQ(registry_
                ->Apply(registry::testing::Create(
                    "20.500.12345/admins",
                    {MakeValue(200, "HS_VLIST", std::string(list.begin(), list.end()))}))
                .code,
            ResponseCode::kSuccess);
  registry::Operation add_group = registry::testing::WithValues(
      registry::OpKind::kAddValues, std::string(kIdentityHandle),
      {MakeValue(101, "HS_ADMIN", AdminData("20.500.12345/admins", 200, 0x0fff))});
  ASSERT_EQ(registry_->Apply(add_group).code, ResponseCode::kSuccess);
  auto allowed = RunAsAdmin(Request(OpCode::kCreateHandle,
                                    protocol::HandleValuesBody{"20.500.12345/c", {Url(1, "x")}}, 2),
                            "20.500.12345/user", 300, "user-secret");
  EXPECT_EQ(allowed.header.response_code, 1u);
}

TEST_F(AdminServiceTest, PermissionsAreCheckedPerOperation) {
  // An admin that may add values but not delete handles.
  ASSERT_EQ(registry_
                ->Apply(registry::testing::Create(
                    "20.500.12345/d", {MakeValue(100, "HS_ADMIN",
                                                 AdminData("20.500.12345/user", 300,
                                                           protocol::admin_permission::kAddValue)),
                                       MakeValue(300, "HS_SECKEY", "user-secret", 0x0c)}))
                .code,
            ResponseCode::kSuccess);
  ASSERT_EQ(registry_
                ->Apply(registry::testing::Create(
                    "20.500.12345/user", {MakeValue(300, "HS_SECKEY", "user-secret", 0x0c)}))
                .code,
            ResponseCode::kSuccess);
  auto added = RunAsAdmin(
      Request(OpCode::kAddValue, protocol::HandleValuesBody{"20.500.12345/d", {Url(1, "x")}}, 1),
      "20.500.12345/user", 300, "user-secret");
  EXPECT_EQ(added.header.response_code, 1u);
  auto deleted =
      RunAsAdmin(Request(OpCode::kDeleteHandle, protocol::HandleBody{"20.500.12345/d"}, 2),
                 "20.500.12345/user", 300, "user-secret");
  EXPECT_EQ(deleted.header.response_code, 400u);
}

TEST_F(AdminServiceTest, ServerAdminsMayDoAnything) {
  ASSERT_EQ(registry_
                ->Apply(registry::testing::Create(
                    "20.500.12345/ops", {MakeValue(300, "HS_SECKEY", "ops-secret", 0x0c)}))
                .code,
            ResponseCode::kSuccess);
  auth::AuthOptions options;
  options.server_admins.push_back({"20.500.12345/OPS", 300});  // compared case-insensitively
  options.allow_prefix_admins = false;
  Open(std::move(options));
  auto created = RunAsAdmin(Request(OpCode::kCreateHandle,
                                    protocol::HandleValuesBody{"20.500.12345/e", {Url(1, "x")}}, 1),
                            "20.500.12345/ops", 300, "ops-secret");
  EXPECT_EQ(created.header.response_code, 1u);
}

TEST_F(AdminServiceTest, RequestsForPrefixesNotHomedHereAreNotChallenged) {
  auto reply = protocol::DecodeMessage(Run(Encode(
      Request(OpCode::kCreateHandle, protocol::HandleValuesBody{"99.999/x", {Url(1, "x")}}, 1))));
  EXPECT_EQ(reply->header.response_code, 301u);
  EXPECT_EQ(challenges_->size(), 0u);
}

TEST_F(AdminServiceTest, IdentitiesHeldElsewhereCannotBeVerifiedHere) {
  auto reply = RunAsAdmin(Request(OpCode::kCreateHandle,
                                  protocol::HandleValuesBody{"20.500.12345/f", {Url(1, "x")}}, 1),
                          "0.NA/99.999", 300, "whatever");
  EXPECT_EQ(reply.header.response_code, 406u);
}

TEST_F(AdminServiceTest, MintAppendsAUuidAndAnswersWithTheNewHandle) {
  auto request =
      Request(OpCode::kCreateHandle, protocol::HandleValuesBody{"20.500.12345/", {Url(1, "x")}}, 1);
  request.header.op_flags |= protocol::opflag::kMintSuffix;
  auto created = RunAsAdmin(request);
  ASSERT_EQ(created.header.response_code, 1u);
  std::string handle(std::get<protocol::HandleBody>(created.body).handle);
  EXPECT_EQ(handle.size(), std::string("20.500.12345/").size() + 36);
  EXPECT_EQ(Resolve(handle), ResponseCode::kSuccess);
}

TEST_F(AdminServiceTest, AFullChallengeTableDropsTheOldestChallenge) {
  MakeAdmin(1);
  auto first = Run(Encode(Request(OpCode::kCreateHandle,
                                  protocol::HandleValuesBody{"20.500.12345/g", {Url(1, "x")}}, 1)));
  auto second = Run(Encode(Request(
      OpCode::kCreateHandle, protocol::HandleValuesBody{"20.500.12345/h", {Url(1, "x")}}, 2)));
  EXPECT_EQ(protocol::DecodeMessage(second)->header.response_code, 402u);
  auto late = Run(AnswerChallenge(first, kIdentityHandle, 300, kSecret));
  EXPECT_EQ(protocol::DecodeMessage(late)->header.response_code, 405u);
  auto answered = Run(AnswerChallenge(second, kIdentityHandle, 300, kSecret));
  EXPECT_EQ(protocol::DecodeMessage(answered)->header.response_code, 1u);
  EXPECT_EQ(registry_->Get("20.500.12345/g").code, ResponseCode::kHandleNotFound);
  EXPECT_EQ(registry_->Get("20.500.12345/h").code, ResponseCode::kSuccess);
}

TEST_F(AdminServiceTest, UdpRequestsCannotPushOutTheChallengesOfTcpClients) {
  MakeAdmin(2);
  auto request = Encode(Request(OpCode::kCreateHandle,
                                protocol::HandleValuesBody{"20.500.12345/g", {Url(1, "x")}}, 1));
  origin_ = From(1, /*datagram=*/false);
  auto tcp_first = Run(request);
  origin_ = From(2, /*datagram=*/false);
  EXPECT_EQ(protocol::DecodeMessage(Run(request))->header.response_code, 402u);
  origin_ = From(3, /*datagram=*/true);
  EXPECT_EQ(protocol::DecodeMessage(Run(request))->header.response_code, 3u);  // no room for UDP
  origin_ = From(1, /*datagram=*/false);
  auto answered = Run(AnswerChallenge(tcp_first, kIdentityHandle, 300, kSecret));
  EXPECT_EQ(protocol::DecodeMessage(answered)->header.response_code, 1u);
}

TEST_F(AdminServiceTest, AnAnswerMustComeFromTheAddressTheChallengeWentTo) {
  origin_ = From(1, /*datagram=*/true);
  auto challenge = Run(Encode(Request(
      OpCode::kCreateHandle, protocol::HandleValuesBody{"20.500.12345/i", {Url(1, "x")}}, 1)));
  origin_ = From(9, /*datagram=*/true);
  auto elsewhere = Run(AnswerChallenge(challenge, kIdentityHandle, 300, kSecret));
  EXPECT_EQ(protocol::DecodeMessage(elsewhere)->header.response_code, 405u);
  origin_ = From(1, /*datagram=*/false);  // the same address, over TCP
  auto answered = Run(AnswerChallenge(challenge, kIdentityHandle, 300, kSecret));
  EXPECT_EQ(protocol::DecodeMessage(answered)->header.response_code, 1u);
}

TEST_F(AdminServiceTest, UdpChallengesGetASessionTheClientDidNotChoose) {
  auto request =
      Request(OpCode::kCreateHandle, protocol::HandleValuesBody{"20.500.12345/k", {Url(1, "x")}}, 1,
              /*session_id=*/77);
  origin_ = From(1, /*datagram=*/true);
  auto challenge = protocol::DecodeMessage(Run(Encode(request)));
  ASSERT_EQ(challenge->header.response_code, 402u);
  EXPECT_NE(challenge->envelope.session_id, 77u);  // a spoofer cannot know it
  EXPECT_NE(challenge->envelope.session_id, 0u);
  origin_ = From(1, /*datagram=*/false);  // over TCP the client's session is kept
  EXPECT_EQ(protocol::DecodeMessage(Run(Encode(request)))->envelope.session_id, 77u);
}

// Defect 5: failed proofs were counted per key across all TCP sources, so anyone could lock a
// real admin's key every minute with ten wrong answers from anywhere.
TEST_F(AdminServiceTest, WrongAnswersFromOneAddressLockOnlyThatAddress) {
  origin_ = From(10, /*datagram=*/false);
  for (int i = 0; i < 10; ++i) {
    auto wrong = RunAsAdmin(Request(OpCode::kCreateHandle,
                                    protocol::HandleValuesBody{"20.500.12345/j", {Url(1, "x")}}, 1),
                            kIdentityHandle, 300, "guess");
    EXPECT_EQ(wrong.header.response_code, 403u);
  }
  // The guessing address is refused unchecked, even with the right secret...
  auto locked = RunAsAdmin(Request(OpCode::kCreateHandle,
                                   protocol::HandleValuesBody{"20.500.12345/j", {Url(1, "x")}}, 1));
  EXPECT_EQ(locked.header.response_code, 3u);
  EXPECT_EQ(registry_->Get("20.500.12345/j").code, ResponseCode::kHandleNotFound);
  // ...while the real admin, elsewhere, is not locked out.
  origin_ = From(99, /*datagram=*/false);
  auto right = RunAsAdmin(Request(OpCode::kCreateHandle,
                                  protocol::HandleValuesBody{"20.500.12345/j", {Url(1, "x")}}, 1));
  EXPECT_EQ(right.header.response_code, 1u);
}

TEST_F(AdminServiceTest, ADistributedGuessingAttackIsCappedButSparesProvenAddresses) {
  failures_ = std::make_unique<auth::FailureThrottle>(10, /*key_limit=*/30);
  admin_ = std::make_unique<AdminService>(*registry_, *authorizer_, *challenges_, *failures_, 1);
  service_ = std::make_unique<HandleService>(*resolver_, std::vector<uint8_t>{}, 1, admin_.get());
  // The real admin has proved the key from its address.
  origin_ = From(99, /*datagram=*/false);
  auto first = RunAsAdmin(Request(OpCode::kCreateHandle,
                                  protocol::HandleValuesBody{"20.500.12345/k1", {Url(1, "x")}}, 1));
  ASSERT_EQ(first.header.response_code, 1u);
  // Three addresses guess ten times each: the key-wide limit (30) is reached.
  for (int source = 0; source < 3; ++source) {
    origin_ = From(static_cast<uint8_t>(20 + source), /*datagram=*/false);
    for (int i = 0; i < 10; ++i) {
      auto wrong =
          RunAsAdmin(Request(OpCode::kCreateHandle,
                             protocol::HandleValuesBody{"20.500.12345/k", {Url(1, "x")}}, 1),
                     kIdentityHandle, 300, "guess");
      EXPECT_EQ(wrong.header.response_code, 403u);
    }
  }
  // A fourth, fresh address is refused unchecked: the key is capped for new sources.
  origin_ = From(40, /*datagram=*/false);
  auto fresh = RunAsAdmin(Request(OpCode::kCreateHandle,
                                  protocol::HandleValuesBody{"20.500.12345/k2", {Url(1, "x")}}, 1));
  EXPECT_EQ(fresh.header.response_code, 3u);
  // The address that proved the key before still works.
  origin_ = From(99, /*datagram=*/false);
  auto proven = RunAsAdmin(Request(
      OpCode::kCreateHandle, protocol::HandleValuesBody{"20.500.12345/k3", {Url(1, "x")}}, 1));
  EXPECT_EQ(proven.header.response_code, 1u);
}

// Defect 4: authorisation read the record, decided, then applied with no version check, so a
// permission removed by another storage thread in between did not stop the change.
TEST_F(AdminServiceTest, AChangeIsNotAppliedUnderAPermissionRemovedMeanwhile) {
  auth::AuthOptions options;
  options.allow_prefix_admins = false;  // only the record's own HS_ADMIN values count
  Open(std::move(options));
  ASSERT_EQ(registry_
                ->Apply(registry::testing::Create(
                    "20.500.12345/user", {MakeValue(300, "HS_SECKEY", "user-secret", 0x0c)}))
                .code,
            ResponseCode::kSuccess);
  ASSERT_EQ(registry_
                ->Apply(registry::testing::Create(
                    "20.500.12345/doc",
                    {MakeValue(1, "URL", "https://before"),
                     MakeValue(100, "HS_ADMIN",
                               AdminData("20.500.12345/user", 300,
                                         protocol::admin_permission::kModifyValue |
                                             protocol::admin_permission::kRemoveAdmin))}))
                .code,
            ResponseCode::kSuccess);
  int decisions = 0;
  admin_->SetAfterDecisionForTest([&] {
    if (++decisions != 1) return;
    // Another admin revokes the user between the decision and the write.
    registry::Operation revoke;
    revoke.kind = registry::OpKind::kRemoveValues;
    revoke.handle = "20.500.12345/doc";
    revoke.indexes = {100};
    ASSERT_EQ(registry_->Apply(revoke).code, ResponseCode::kSuccess);
  });
  auto modified = RunAsAdmin(
      Request(OpCode::kModifyValue,
              protocol::HandleValuesBody{"20.500.12345/doc", {Url(1, "https://after")}}, 1),
      "20.500.12345/user", 300, "user-secret");
  EXPECT_EQ(modified.header.response_code, 400u);  // decided again: no longer an admin
  EXPECT_EQ(decisions, 1);
  EXPECT_EQ(registry_->Get("20.500.12345/doc").record.values(0).data(), "https://before");
}

TEST_F(AdminServiceTest, VerifyChallengeAnswersForIdentitiesHeldHere) {
  std::vector<uint8_t> nonce(16, 7), digest(32, 9);
  auto good = auth::SecretKeyAnswer(auth::mac_code::kHmacSha1, Bytes(kSecret), nonce, digest);
  auto bad = auth::SecretKeyAnswer(auth::mac_code::kHmacSha1, Bytes("nope"), nonce, digest);
  for (const auto* signed_response : {&good, &bad}) {
    auto reply = protocol::DecodeMessage(Run(Encode(Request(
        OpCode::kVerifyChallenge,
        protocol::VerifyChallengeRequest{kIdentityHandle, 300, nonce, digest, *signed_response},
        1))));
    ASSERT_EQ(reply->header.response_code, 1u);
    EXPECT_EQ(std::get<protocol::VerifyChallengeResult>(reply->body).valid,
              signed_response == &good);
  }
}

TEST_F(AdminServiceTest, VerifyChallengeIsNoPasswordGuessingOracle) {
  std::vector<uint8_t> nonce(16, 7), digest(32, 9);
  auto verify = [&](std::string_view secret) {
    auto answer = auth::SecretKeyAnswer(auth::mac_code::kHmacSha1, Bytes(secret), nonce, digest);
    return *protocol::DecodeMessage(Run(Encode(Request(
        OpCode::kVerifyChallenge,
        protocol::VerifyChallengeRequest{kIdentityHandle, 300, nonce, digest, answer}, 1))));
  };
  for (int i = 0; i < 10; ++i) {
    auto reply = verify("guess" + std::to_string(i));
    ASSERT_EQ(reply.header.response_code, 1u);
    EXPECT_FALSE(std::get<protocol::VerifyChallengeResult>(reply.body).valid);
  }
  EXPECT_EQ(verify(kSecret).header.response_code, 3u);
}

// OC 300 HOME_NA, 301 UNHOME_NA and 302 LIST_HOMED_NAS: the prefix table of a running node, for
// its server admins only.
TEST_F(AdminServiceTest, ServerAdminsHomeUnhomeAndListPrefixes) {
  ASSERT_EQ(registry_
                ->Apply(registry::testing::Create(
                    "20.500.12345/ops", {MakeValue(300, "HS_SECKEY", "ops-secret", 0x0c)}))
                .code,
            ResponseCode::kSuccess);
  auth::AuthOptions options;
  options.server_admins.push_back({"20.500.12345/ops", 300});
  Open(std::move(options));
  // A prefix admin is no server admin.
  auto refused = RunAsAdmin(Request(OpCode::kHomeNa, protocol::HandleBody{"0.NA/88.100"}, 1));
  EXPECT_EQ(refused.header.response_code, 400u);
  EXPECT_FALSE(registry_->FindPrefix("88.100").has_value());
  // Not a prefix handle: refused before any challenge.
  auto bad = protocol::DecodeMessage(
      Run(Encode(Request(OpCode::kHomeNa, protocol::HandleBody{"88.100/x"}, 2))));
  EXPECT_EQ(bad->header.response_code, 102u);

  auto homed = RunAsAdmin(Request(OpCode::kHomeNa, protocol::HandleBody{"0.NA/88.100"}, 3),
                          "20.500.12345/ops", 300, "ops-secret");
  EXPECT_EQ(homed.header.response_code, 1u);
  EXPECT_EQ(homed.header.opcode, 300u);
  EXPECT_EQ(registry_->FindPrefix("88.100")->role(), proto::PrefixState::HOMED);
  auto slashless = RunAsAdmin(Request(OpCode::kHomeNa, protocol::HandleBody{"88.200"}, 4),
                              "20.500.12345/ops", 300, "ops-secret");
  EXPECT_EQ(slashless.header.response_code, 1u);
  EXPECT_TRUE(registry_->IsWritable("88.200/x"));

  // Sixty more, so that the list takes two messages (50 a message, CN on the first).
  for (int i = 0; i < 60; ++i)
    ASSERT_EQ(registry_->HomePrefix("77." + std::to_string(i)).code, ResponseCode::kSuccess);
  // The request's own CN flag must not leak into the answer's last message (the client would wait
  // for more forever).
  auto list = Request(OpCode::kListHomedNas, protocol::HandleBody{"/"}, 5);
  list.header.op_flags |= protocol::opflag::kContinuous;
  last_ = Run(Encode(list));
  last_ = Run(AnswerChallenge(last_, "20.500.12345/ops", 300, "ops-secret"));
  std::vector<std::string> listed;
  std::span<const uint8_t> rest(last_);
  int messages = 0;
  while (!rest.empty()) {
    ASSERT_GE(rest.size(), 20u);
    size_t length =
        20 + (size_t{rest[16]} << 24 | size_t{rest[17]} << 16 | size_t{rest[18]} << 8 | rest[19]);
    auto message = protocol::DecodeMessage(rest.first(length));
    ASSERT_TRUE(message.ok());
    EXPECT_EQ(message->header.opcode, 302u);
    EXPECT_EQ(message->header.response_code, 1u);
    ++messages;
    const bool more = rest.size() > length;
    EXPECT_EQ(message->header.has(protocol::opflag::kContinuous), more);
    for (auto h : std::get<protocol::HandleListBody>(message->body).handles) listed.emplace_back(h);
    rest = rest.subspan(length);
  }
  EXPECT_EQ(messages, 2);
  EXPECT_EQ(listed.size(), 63u);  // 20.500.12345, 88.100, 88.200 and the sixty
  EXPECT_NE(std::find(listed.begin(), listed.end(), "0.NA/88.100"), listed.end());

  auto unhomed = RunAsAdmin(Request(OpCode::kUnhomeNa, protocol::HandleBody{"0.NA/88.100"}, 6),
                            "20.500.12345/ops", 300, "ops-secret");
  EXPECT_EQ(unhomed.header.response_code, 1u);
  EXPECT_FALSE(registry_->IsWritable("88.100/x"));
}

TEST(Listeners, UdpSocketsGetTheirReceiveBufferAndBindErrorsNameTheAddress) {
  boost::asio::io_context io;
  auto loopback = boost::asio::ip::make_address("127.0.0.1");
  auto socket = OpenUdpSocket(io, loopback, 0, "Handle UDP", 1 << 20, /*exclusive=*/true);
  ASSERT_TRUE(socket.ok()) << socket.error();
  int size = 0;
  socklen_t length = sizeof size;
  ASSERT_EQ(getsockopt(socket->native_handle(), SOL_SOCKET, SO_RCVBUF, &size, &length), 0);
  // Linux doubles the request (bookkeeping) and caps it at net.core.rmem_max; the default is
  // 208 KiB, so anything larger shows the setting took.
  EXPECT_GT(size, 212992);
  // An address this machine does not have (TEST-NET-1).
  auto elsewhere =
      OpenUdpSocket(io, boost::asio::ip::make_address("192.0.2.1"), 0, "DNS UDP", 65536, false);
  ASSERT_FALSE(elsewhere.ok());
  EXPECT_NE(elsewhere.error().find("cannot bind DNS UDP 192.0.2.1:0"), std::string::npos)
      << elsewhere.error();
}

// Defect 14: every socket was bound with SO_REUSEPORT, so a second node on the same ports (another
// data directory, same user) bound without error and silently took part of the traffic.
TEST(Listeners, APortHeldElsewhereIsRefusedWithAClearError) {
  boost::asio::io_context io;
  auto loopback = boost::asio::ip::make_address("127.0.0.1");
  // Another node's sockets (SO_REUSEPORT, as idnode binds them).
  // The UDP port is picked by the kernel; the same TCP port may be some other test's connection
  // at that moment (tests run in parallel): then another port is tried.
  auto udp = OpenUdpSocket(io, loopback, 0, "Handle UDP", 65536, /*exclusive=*/true);
  ASSERT_TRUE(udp.ok()) << udp.error();
  auto tcp = OpenTcpAcceptor(io, loopback, udp->local_endpoint().port(), "Handle TCP",
                             /*exclusive=*/false);
  for (int attempt = 0; attempt < 20 && !tcp.ok(); ++attempt) {
    udp = OpenUdpSocket(io, loopback, 0, "Handle UDP", 65536, /*exclusive=*/true);
    ASSERT_TRUE(udp.ok()) << udp.error();
    tcp = OpenTcpAcceptor(io, loopback, udp->local_endpoint().port(), "Handle TCP", false);
  }
  ASSERT_TRUE(tcp.ok()) << tcp.error();
  const uint16_t port = udp->local_endpoint().port();
  // This node's first sockets on those ports are refused, naming the cause...
  auto second_udp = OpenUdpSocket(io, loopback, port, "Handle UDP", 65536, /*exclusive=*/true);
  ASSERT_FALSE(second_udp.ok());
  EXPECT_NE(second_udp.error().find("in use by another process"), std::string::npos)
      << second_udp.error();
  auto second_tcp = OpenTcpAcceptor(io, loopback, port, "Handle TCP", /*exclusive=*/true);
  ASSERT_FALSE(second_tcp.ok());
  EXPECT_NE(second_tcp.error().find("in use by another process"), std::string::npos);
  // ...while a node's own further sockets (one per worker) join its first.
  auto worker_udp = OpenUdpSocket(io, loopback, port, "Handle UDP", 65536, /*exclusive=*/false);
  EXPECT_TRUE(worker_udp.ok());
  // Once the other node is gone, the port is free again.
  udp->close();
  worker_udp->close();
  (*tcp)->close();
  EXPECT_TRUE(OpenUdpSocket(io, loopback, port, "Handle UDP", 65536, true).ok());
  EXPECT_TRUE(OpenTcpAcceptor(io, loopback, port, "Handle TCP", true).ok());
}

}  // namespace
}  // namespace idnode::net
