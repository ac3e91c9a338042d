// The resolver's routing (homed, delegated, mirrored, unknown), filters, and the equality of
// answers from the cache and from storage.
#include "idnode/resolver/resolver.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <cctype>

#include "idnode/identifier/identifier.h"
#include "idnode/protocol/value_types.h"
#include "idnode/protocol/wire.h"
#include "registry_test_util.h"
#include "temp_dir.h"

namespace idnode::resolver {
namespace {

using registry::testing::Create;
using registry::testing::MakeValue;

class ResolverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cache::CacheOptions cache_options;
    cache_options.capacity_bytes = 1 << 20;
    cache_options.shard_count = 4;
    cache_ = std::make_shared<cache::AnswerCache>(cache_options);
    registry::RegistryOptions options;
    options.storage.path = dir_.sub("data");
    options.storage.shard_count = 2;
    options.storage.sync_writes = false;
    options.cache = cache_;
    registry_ = std::move(*registry::Registry::Open(std::move(options)));
    ASSERT_EQ(registry_->HomePrefix("88.100.1").code, ResponseCode::kSuccess);
    ASSERT_EQ(registry_
                  ->Apply(Create("88.100.1/SN1",
                                 {MakeValue(1, "URL", "https://x"), MakeValue(2, "EMAIL", "a@b"),
                                  MakeValue(3, "HS_SECKEY", "secret", 0x0c)}))
                  .code,
              ResponseCode::kSuccess);
    ASSERT_EQ(registry_
                  ->DelegatePrefix("88.200", {MakeValue(1, "HS_SITE", "site"),
                                              MakeValue(2, "DESC", "not carried")})
                  .code,
              ResponseCode::kSuccess);
    resolver_ = std::make_unique<Resolver>(*registry_, cache_);
  }

  std::vector<int32_t> Indexes(const Answer& a) {
    protocol::WireReader r(a.values);
    std::vector<int32_t> out;
    for (const auto& v : protocol::ReadHandleValues(r)) out.push_back(v.index);
    return out;
  }

  ::idnode::testing::TempDir dir_;
  std::shared_ptr<cache::AnswerCache> cache_;
  std::unique_ptr<registry::Registry> registry_;
  std::unique_ptr<Resolver> resolver_;
  Scratch scratch_;
};

TEST_F(ResolverTest, HomedHandlesFromStorageThenFromTheCache) {
  Query q;
  q.handle = "88.100.1/sn1";
  q.public_only = true;
  bool needs_storage = false;
  (void)resolver_->ResolveFromCache(q, scratch_, &needs_storage);
  EXPECT_TRUE(needs_storage);  // cold
  Answer cold = resolver_->ResolveFromStorage(q, scratch_);
  EXPECT_EQ(cold.code, ResponseCode::kSuccess);
  EXPECT_EQ(cold.source, Source::kStorage);
  EXPECT_EQ(Indexes(cold), (std::vector<int32_t>{1, 2}));  // PO: the secret key is left out
  std::vector<uint8_t> cold_bytes(cold.values.begin(), cold.values.end());
  Answer warm = resolver_->ResolveFromCache(q, scratch_, &needs_storage);
  EXPECT_FALSE(needs_storage);
  EXPECT_EQ(warm.source, Source::kCache);
  EXPECT_EQ(std::vector<uint8_t>(warm.values.begin(), warm.values.end()), cold_bytes);
}

TEST_F(ResolverTest, FiltersAndNegativeAnswers) {
  std::vector<int32_t> indexes{2};
  std::vector<std::string_view> types{"URL"};
  Query q;
  q.handle = "88.100.1/SN1";
  q.indexes = indexes;
  q.types = types;
  q.public_only = true;
  EXPECT_EQ(Indexes(resolver_->Resolve(q, scratch_)), (std::vector<int32_t>{1, 2}));
  std::vector<std::string_view> none{"NOSUCH"};
  Query nothing;
  nothing.handle = "88.100.1/SN1";
  nothing.types = none;
  EXPECT_EQ(resolver_->Resolve(nothing, scratch_).code, ResponseCode::kValuesNotFound);
  Query missing;
  missing.handle = "88.100.1/NOPE";
  EXPECT_EQ(resolver_->Resolve(missing, scratch_).code, ResponseCode::kHandleNotFound);
  bool needs_storage = false;
  Answer negative =
      resolver_->ResolveFromCache(missing, scratch_, &needs_storage);  // negative entry
  EXPECT_FALSE(needs_storage);
  EXPECT_EQ(negative.code, ResponseCode::kHandleNotFound);
}

TEST_F(ResolverTest, DelegatedPrefixesAreReferredAndUnknownOnesAreNotHere) {
  Query q;
  q.handle = "88.200/SN1";
  Answer referral = resolver_->Resolve(q, scratch_);
  EXPECT_EQ(referral.code, ResponseCode::kServiceReferral);
  EXPECT_EQ(Indexes(referral), (std::vector<int32_t>{1}));  // only the HS_SITE value
  q.no_referral = true;
  EXPECT_EQ(resolver_->Resolve(q, scratch_).code, ResponseCode::kServerNotResponsible);
  Query unknown;
  unknown.handle = "99.1/x";
  Answer not_here = resolver_->Resolve(unknown, scratch_);
  EXPECT_EQ(not_here.code, ResponseCode::kServerNotResponsible);
  EXPECT_EQ(not_here.message, "That prefix doesn't live here");
  Query prefix_handle;
  prefix_handle.handle = "0.NA/88.200";
  EXPECT_EQ(resolver_->Resolve(prefix_handle, scratch_).code, ResponseCode::kSuccess);
}

TEST_F(ResolverTest, PrefixChangesAreSeenWithoutRestart) {
  Query q;
  q.handle = "88.300/SN1";
  EXPECT_EQ(resolver_->Resolve(q, scratch_).code, ResponseCode::kServerNotResponsible);
  ASSERT_EQ(registry_->MirrorPrefix("88.300", "peer", {MakeValue(1, "HS_SITE", "owner-site")}).code,
            ResponseCode::kSuccess);
  // Defect 8: an empty mirror (replication has not filled it) refers to its owner instead of
  // answering "not found" for everything.
  Answer referred = resolver_->Resolve(q, scratch_);
  EXPECT_EQ(referred.code, ResponseCode::kServiceReferral);
  EXPECT_EQ(Indexes(referred), (std::vector<int32_t>{1}));
  EXPECT_EQ(referred.referral_handle, "0.NA/88.300");
  // What the copy holds is answered from it.
  proto::Record copy;
  copy.set_handle("88.300/SN2");
  *copy.add_values() = MakeValue(1, "URL", "https://copy");
  ASSERT_TRUE(registry_
                  ->ApplyReplicated(registry_->ShardOf("88.300/SN2"),
                                    {{"88.300/SN2", copy.SerializeAsString()}}, {})
                  .ok());
  Query copied;
  copied.handle = "88.300/SN2";
  EXPECT_EQ(resolver_->Resolve(copied, scratch_).code, ResponseCode::kSuccess);
  // Once complete, a miss is a miss.
  ASSERT_EQ(registry_->SetMirrorSynced("88.300", true).code, ResponseCode::kSuccess);
  EXPECT_EQ(resolver_->Resolve(q, scratch_).code, ResponseCode::kHandleNotFound);
  // A node that does not answer its mirrors refers every handle to the owner.
  Resolver strict(*registry_, cache_, ResolverOptions{false});
  EXPECT_EQ(strict.Resolve(copied, scratch_).code, ResponseCode::kServiceReferral);
  q.no_referral = true;
  EXPECT_EQ(strict.Resolve(q, scratch_).code, ResponseCode::kServerNotResponsible);
}

TEST_F(ResolverTest, AMirrorsPolicyAndAStaleCopyReferWhatItHolds) {
  ASSERT_EQ(registry_->HomePrefix("88.300").code, ResponseCode::kSuccess);
  ASSERT_EQ(registry_->Apply(Create("88.300/SN2", {MakeValue(1, "URL", "https://old")})).code,
            ResponseCode::kSuccess);
  // Taken over elsewhere: this node's records are no longer the owner's, so even a handle it
  // holds is referred until the first snapshot has replaced them.
  ASSERT_EQ(registry_->MirrorPrefix("88.300", "peer", {MakeValue(1, "HS_SITE", "owner-site")}).code,
            ResponseCode::kSuccess);
  Query q;
  q.handle = "88.300/SN2";
  EXPECT_EQ(resolver_->Resolve(q, scratch_).code, ResponseCode::kServiceReferral);
  EXPECT_FALSE(resolver_->AnswersFoundRecord("88.300/SN2", scratch_));
  ASSERT_EQ(registry_->SetMirrorState("88.300", "peer", "L", true).code, ResponseCode::kSuccess);
  EXPECT_EQ(resolver_->Resolve(q, scratch_).code, ResponseCode::kSuccess);
  // refer: every request goes to the owner.
  ASSERT_EQ(registry_->SetMirrorAnswerPolicy("88.300", registry::prefix_flag::kReferToOwner).code,
            ResponseCode::kSuccess);
  EXPECT_EQ(resolver_->Resolve(q, scratch_).code, ResponseCode::kServiceReferral);
  // mirror_when_owner_down: referred while the owner is reachable, answered while it is not.
  ASSERT_EQ(
      registry_->SetMirrorAnswerPolicy("88.300", registry::prefix_flag::kReferWhileOwnerUp).code,
      ResponseCode::kSuccess);
  registry_->SetPeerReachable("peer", true);
  EXPECT_EQ(resolver_->Resolve(q, scratch_).code, ResponseCode::kServiceReferral);
  registry_->SetPeerReachable("peer", false);
  EXPECT_EQ(resolver_->Resolve(q, scratch_).code, ResponseCode::kSuccess);
  EXPECT_TRUE(resolver_->AnswersFoundRecord("88.300/SN2", scratch_));
}

// A top-level node: homes 0.NA and 86; 86.100 is a secondary node's (its prefix handle here has
// its HS_SITE and HS_SITE.PREFIX values); 86.200 is served through a service handle.
class HierarchyTest : public ResolverTest {
 protected:
  void SetUp() override {
    ResolverTest::SetUp();
    ASSERT_EQ(registry_->HomePrefix("0.NA").code, ResponseCode::kSuccess);
    ASSERT_EQ(registry_->HomePrefix("86").code, ResponseCode::kSuccess);
    // Registered the way a secondary node does it: an ordinary create of its prefix handle.
    ASSERT_EQ(
        registry_
            ->Apply(Create("0.NA/86.100", {MakeValue(1, "HS_SITE", "secondary-site"),
                                           MakeValue(2, "HS_SITE.PREFIX", "secondary-prefixes"),
                                           MakeValue(100, "HS_ADMIN", "admin"),
                                           MakeValue(300, "HS_SECKEY", "k", 0x0c)}))
            .code,
        ResponseCode::kSuccess);
    ASSERT_EQ(registry_
                  ->Apply(Create("0.NA/86.200", {MakeValue(1, "HS_SERV", "0.SERV/svc"),
                                                 MakeValue(2, "HS_SERV.PREFIX", "0.SERV/svc")}))
                  .code,
              ResponseCode::kSuccess);
    ASSERT_EQ(registry_
                  ->Apply(Create("0.SERV/svc", {MakeValue(1, "HS_SITE", "svc-site"),
                                                MakeValue(2, "HS_SITE.PREFIX", "svc-prefixes"),
                                                MakeValue(3, "DESC", "a service")}))
                  .code,
              ResponseCode::kServerNotResponsible);  // 0.SERV is not homed here yet
    ASSERT_EQ(registry_->HomePrefix("0.SERV").code, ResponseCode::kSuccess);
    ASSERT_EQ(registry_
                  ->Apply(Create("0.SERV/svc", {MakeValue(1, "HS_SITE", "svc-site"),
                                                MakeValue(2, "HS_SITE.PREFIX", "svc-prefixes"),
                                                MakeValue(3, "DESC", "a service")}))
                  .code,
              ResponseCode::kSuccess);
  }

  std::vector<std::string> Data(const Answer& a) {
    protocol::WireReader r(a.values);
    std::vector<std::string> out;
    for (const auto& v : protocol::ReadHandleValues(r))
      out.emplace_back(reinterpret_cast<const char*>(v.data.data()), v.data.size());
    return out;
  }

  Answer Both(std::string_view handle, bool no_referral = false) {
    Query q;
    q.handle = handle;
    q.public_only = true;
    q.no_referral = no_referral;
    // From storage first (cold), then from the cache: the same answer.
    Answer cold = resolver_->ResolveFromStorage(q, scratch_);
    std::vector<uint8_t> cold_values(cold.values.begin(), cold.values.end());
    std::string cold_referral(cold.referral_handle);
    bool needs_storage = false;
    Answer warm = resolver_->ResolveFromCache(q, scratch_, &needs_storage);
    EXPECT_FALSE(needs_storage) << handle;
    EXPECT_EQ(warm.code, cold.code) << handle;
    EXPECT_EQ(std::vector<uint8_t>(warm.values.begin(), warm.values.end()), cold_values) << handle;
    EXPECT_EQ(warm.referral_handle, cold_referral) << handle;
    return warm;
  }
};

TEST_F(HierarchyTest, IdentifiersAreReferredByTheLongestDelegatedPrefix) {
  for (std::string_view handle : {"86.100/x", "86.100.1/SN0001", "86.100.1.7/x"}) {
    Answer a = Both(handle);
    EXPECT_EQ(a.code, ResponseCode::kServiceReferral) << handle;
    EXPECT_EQ(Data(a), (std::vector<std::string>{"secondary-site"})) << handle;
  }
  EXPECT_EQ(Both("86.100.1.7/x").referral_handle, "0.NA/86.100.1.7");
  // The nearest prefix homed here answers (86 covers 86.5).
  EXPECT_EQ(Both("86.5/x").code, ResponseCode::kHandleNotFound);
  EXPECT_EQ(Both("89/x").code, ResponseCode::kServerNotResponsible);
  EXPECT_EQ(Both("86.100.1/SN0001", /*no_referral=*/true).code,
            ResponseCode::kServerNotResponsible);
  // A sub-prefix delegated further down wins over its parent.
  ASSERT_EQ(
      registry_->DelegatePrefix("86.100.1", {MakeValue(1, "HS_SITE", "enterprise-site")}).code,
      ResponseCode::kSuccess);
  EXPECT_EQ(Data(Both("86.100.1.7/x")), (std::vector<std::string>{"enterprise-site"}));
  EXPECT_EQ(Data(Both("86.100.2/x")), (std::vector<std::string>{"secondary-site"}));
}

TEST_F(HierarchyTest, ServiceHandlesHereAreFollowed) {
  Answer a = Both("86.200.9/x");
  EXPECT_EQ(a.code, ResponseCode::kServiceReferral);
  // The HS_SERV value, then the HS_SITE of the service handle it names.
  EXPECT_EQ(Data(a), (std::vector<std::string>{"0.SERV/svc", "svc-site"}));
}

TEST_F(HierarchyTest, PrefixHandlesNotStoredGetThePrefixReferralOfTheirAncestor) {
  // Stored here: the record.
  Answer stored = Both("0.NA/86.100");
  EXPECT_EQ(stored.code, ResponseCode::kSuccess);
  EXPECT_EQ(Indexes(stored), (std::vector<int32_t>{1, 2, 100}));  // PO: the key is left out
  // Not stored: 303 with the derived-prefix sites of the nearest ancestor that has them.
  for (std::string_view handle : {"0.NA/86.100.1", "0.na/86.100.1.7", "86.100.1"}) {
    Answer a = Both(handle);
    EXPECT_EQ(a.code, ResponseCode::kPrefixReferral) << handle;
    EXPECT_EQ(Data(a), (std::vector<std::string>{"secondary-prefixes"})) << handle;
    EXPECT_TRUE(a.referral_handle.empty());
  }
  // Through a service handle stored here (HS_SERV.PREFIX is carried and followed).
  EXPECT_EQ(Data(Both("0.NA/86.200.5")), (std::vector<std::string>{"0.SERV/svc", "svc-prefixes"}));
  // Under a prefix homed here, or with no ancestor to refer to: not found (this node homes 0.NA).
  EXPECT_EQ(Both("0.NA/86.7").code, ResponseCode::kHandleNotFound);
  EXPECT_EQ(Both("0.NA/77").code, ResponseCode::kHandleNotFound);
  EXPECT_EQ(Both("0.NA/86.100.1", /*no_referral=*/true).code, ResponseCode::kHandleNotFound);
}

TEST_F(HierarchyTest, APrefixHandleWrittenLikeAnyRecordMovesTheTable) {
  EXPECT_EQ(Both("86.300/x").code, ResponseCode::kHandleNotFound);  // under 86, homed
  ASSERT_EQ(registry_->Apply(Create("0.NA/86.300", {MakeValue(1, "HS_SITE", "third")})).code,
            ResponseCode::kSuccess);
  EXPECT_EQ(Data(Both("86.300/x")), (std::vector<std::string>{"third"}));
  registry::Operation modify;
  modify.kind = registry::OpKind::kModifyValues;
  modify.handle = "0.NA/86.300";
  modify.values = {MakeValue(1, "DESC", "no longer a site")};
  ASSERT_EQ(registry_->Apply(modify).code, ResponseCode::kSuccess);
  EXPECT_EQ(Both("86.300/x").code, ResponseCode::kHandleNotFound);  // back to 86
  EXPECT_FALSE(registry_->FindPrefix("86.300").has_value());
  ASSERT_EQ(registry_->Apply(Create("0.NA/86.300", {MakeValue(1, "HS_SITE", "again")}, true)).code,
            ResponseCode::kSuccess);
  EXPECT_EQ(registry_->FindPrefix("86.300")->role(), proto::PrefixState::DELEGATED);
  registry::Operation remove;
  remove.kind = registry::OpKind::kDelete;
  remove.handle = "0.NA/86.300";
  ASSERT_EQ(registry_->Apply(remove).code, ResponseCode::kSuccess);
  EXPECT_EQ(Both("86.300/x").code, ResponseCode::kHandleNotFound);
  EXPECT_FALSE(registry_->FindPrefix("86.300").has_value());
}

TEST_F(HierarchyTest, TheTableSurvivesARestart) {
  const std::string path = dir_.sub("data");
  resolver_.reset();
  registry_.reset();
  registry::RegistryOptions options;
  options.storage.path = path;
  options.storage.shard_count = 2;
  options.storage.sync_writes = false;
  options.cache = cache_;
  cache_->Clear();
  registry_ = std::move(*registry::Registry::Open(std::move(options)));
  resolver_ = std::make_unique<Resolver>(*registry_, cache_);
  EXPECT_EQ(Data(Both("86.100.1/x")), (std::vector<std::string>{"secondary-site"}));
  EXPECT_EQ(Data(Both("0.NA/86.100.1")), (std::vector<std::string>{"secondary-prefixes"}));
}

std::string SiteAt(uint8_t last_address_byte, uint32_t port) {
  protocol::SiteInfo site;
  protocol::SiteServer server;
  server.address[12] = 127;
  server.address[15] = last_address_byte;
  server.interfaces = {
      {protocol::interface_type::kBoth, protocol::interface_protocol::kTcp, port},
      {protocol::interface_type::kQuery, protocol::interface_protocol::kUdp, port}};
  site.servers.push_back(server);
  auto bytes = protocol::EncodeSiteInfo(site);
  return std::string(bytes.begin(), bytes.end());
}

// A secondary node homes 88.100 and holds the prefix handles of its enterprise prefixes with its
// own HS_SITE in them (as it publishes them): those prefixes are served here, not referred to
// itself; one whose site is another node's is referred.
TEST_F(ResolverTest, ADelegationToThisNodeIsServedHere) {
  const std::string own = SiteAt(1, 2641);
  auto own_bytes =
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(own.data()), own.size());
  registry_->SetOwnSite(own_bytes);
  ASSERT_EQ(registry_->HomePrefix("87.100").code, ResponseCode::kSuccess);
  ASSERT_EQ(registry_->Apply(Create("0.NA/87.100.1", {MakeValue(1, "HS_SITE", own)})).code,
            ResponseCode::kSuccess);
  ASSERT_EQ(
      registry_->Apply(Create("0.NA/87.100.2", {MakeValue(1, "HS_SITE", SiteAt(2, 2641))})).code,
      ResponseCode::kSuccess);
  EXPECT_TRUE(registry_->IsWritable("87.100.1/SN1"));
  EXPECT_FALSE(registry_->IsWritable("87.100.2/SN1"));
  ASSERT_EQ(registry_->Apply(Create("87.100.1/SN1", {MakeValue(1, "URL", "https://here")})).code,
            ResponseCode::kSuccess);
  Query q;
  q.handle = "87.100.1/SN1";
  EXPECT_EQ(resolver_->Resolve(q, scratch_).code, ResponseCode::kSuccess);
  q.handle = "87.100.1/NONE";
  EXPECT_EQ(resolver_->Resolve(q, scratch_).code, ResponseCode::kHandleNotFound);
  q.handle = "87.100.2/SN1";
  EXPECT_EQ(resolver_->Resolve(q, scratch_).code, ResponseCode::kServiceReferral);
  // DNRF (and DNS, which never refers) get the answer of a prefix served here, not a 301.
  q.handle = "87.100.1/SN1";
  q.no_referral = true;
  EXPECT_EQ(resolver_->Resolve(q, scratch_).code, ResponseCode::kSuccess);
  q.no_referral = false;
  // Self-delegation counts only under a prefix homed here: whoever may write a prefix handle
  // elsewhere cannot name this node in it and have its identifiers served, or written, here.
  ASSERT_EQ(registry_->HomePrefix("0.NA").code, ResponseCode::kSuccess);
  ASSERT_EQ(registry_->Apply(Create("0.NA/99.1", {MakeValue(1, "HS_SITE", own)})).code,
            ResponseCode::kSuccess);
  EXPECT_FALSE(registry_->IsWritable("99.1/x"));
  q.handle = "99.1/x";
  EXPECT_EQ(resolver_->Resolve(q, scratch_).code, ResponseCode::kServiceReferral);
  // A prefix referral to this node's own derived-prefix sites: answered here (not found), never
  // referred to itself.
  ASSERT_EQ(registry_->Apply(Create("0.NA/99.2", {MakeValue(1, "HS_SITE.PREFIX", own)})).code,
            ResponseCode::kSuccess);
  q.handle = "0.NA/99.2.1";
  EXPECT_EQ(resolver_->Resolve(q, scratch_).code, ResponseCode::kHandleNotFound);
  // Without knowing its own site (before SetOwnSite), a node refers: nothing is assumed.
  registry_->SetOwnSite({});
  q.handle = "87.100.1/SN1";
  EXPECT_EQ(resolver_->Resolve(q, scratch_).code, ResponseCode::kServiceReferral);
}

// A node that homes a prefix writes the prefix handles of the prefixes derived from it, delegated
// or not: it can change and revoke a delegation it made (it does not home 0.NA).
TEST_F(ResolverTest, TheHomeOfAPrefixAdministersItsDerivedPrefixHandles) {
  ASSERT_EQ(
      registry_->Apply(Create("0.NA/88.100.1.5", {MakeValue(1, "HS_SITE", "elsewhere")})).code,
      ResponseCode::kSuccess);
  EXPECT_EQ(registry_->FindPrefix("88.100.1.5")->role(), proto::PrefixState::DELEGATED);
  EXPECT_TRUE(registry_->IsWritable("0.NA/88.100.1.5"));
  registry::Operation modify;
  modify.kind = registry::OpKind::kModifyValues;
  modify.handle = "0.NA/88.100.1.5";
  modify.values = {MakeValue(1, "HS_SITE", "moved")};
  EXPECT_EQ(registry_->Apply(modify).code, ResponseCode::kSuccess);
  registry::Operation remove;
  remove.kind = registry::OpKind::kDelete;
  remove.handle = "0.NA/88.100.1.5";
  EXPECT_EQ(registry_->Apply(remove).code, ResponseCode::kSuccess);
  EXPECT_FALSE(registry_->FindPrefix("88.100.1.5").has_value());
  // Nor does homing a prefix make the handles of its siblings or of other prefixes writable.
  EXPECT_FALSE(registry_->IsWritable("0.NA/88.100.2"));
  EXPECT_FALSE(registry_->IsWritable("0.NA/88.100"));
}

// Defect 1: a storage error or a corrupt record was answered as "not found" (and cached by
// clients and DNS resolvers for the negative TTL).
TEST_F(ResolverTest, ACorruptRecordIsAServerErrorNeverNotFound) {
  const std::string key = "88.100.1/CORRUPT";
  storage::Batch batch;
  batch.Put(storage::Column::kRecords, key, "\xff\xff not a record");
  ASSERT_TRUE(registry_->store().Write(registry_->ShardOf(key), batch).ok());
  Query q;
  q.handle = "88.100.1/corrupt";
  const uint64_t errors = registry_->read_errors();
  Answer a = resolver_->Resolve(q, scratch_);
  EXPECT_EQ(a.code, ResponseCode::kError);
  EXPECT_EQ(registry_->read_errors(), errors + 1);
  // Nothing was cached: the next resolution reads storage again.
  bool needs_storage = false;
  (void)resolver_->ResolveFromCache(q, scratch_, &needs_storage);
  EXPECT_TRUE(needs_storage);
  EXPECT_EQ(resolver_->ResolveFromStorage(q, scratch_).code, ResponseCode::kError);
}

}  // namespace
// HANDLE.md §1.7 computed here on its own (OpenSSL's MD5 directly): the upper-cased handle's MD5,
// its last 4 bytes as a signed big-endian int, Java's abs, modulo the number of servers.
int32_t SiteIndexByHand(std::string handle, int32_t servers) {
  for (char& c : handle) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  unsigned char md[16];
  unsigned int size = 0;
  EVP_Digest(handle.data(), handle.size(), md, &size, EVP_md5(), nullptr);
  int32_t h = static_cast<int32_t>(uint32_t{md[12]} << 24 | uint32_t{md[13]} << 16 |
                                   uint32_t{md[14]} << 8 | md[15]);
  if (h != INT32_MIN && h < 0) h = -h;
  return h % servers;
}

TEST_F(ResolverTest, AServerOfASiteHoldsAndAnswersItsShareOnly) {
  ASSERT_EQ(registry_->HomePrefix("88.100.1", {MakeValue(1, "DESC", "the prefix handle")}).code,
            ResponseCode::kSuccess);
  std::vector<std::string> handles;
  for (int i = 0; i < 30; ++i) {
    handles.push_back("88.100.1/item" + std::to_string(i));
    ASSERT_EQ(registry_->Apply(Create(handles.back(), {MakeValue(1, "URL", "https://i")})).code,
              ResponseCode::kSuccess);
  }
  std::vector<int> per_server(3, 0);
  for (uint32_t me = 0; me < 3; ++me) {
    registry_->SetSiteServer(3, me);
    cache_->Clear();
    for (const auto& handle : handles) {
      const bool mine = SiteIndexByHand(handle, 3) == static_cast<int32_t>(me);
      per_server[me] += mine;
      Query q;
      q.handle = handle;
      Answer a = resolver_->Resolve(q, scratch_);
      if (mine) {
        EXPECT_EQ(a.code, ResponseCode::kSuccess) << handle << " on " << me;
      } else {
        EXPECT_EQ(a.code, ResponseCode::kServerNotResponsible) << handle << " on " << me;
        EXPECT_EQ(a.message, "Request was hashed incorrectly");
      }
      EXPECT_EQ(registry_->OnThisServer(identifier::Normalize(handle)), mine);
    }
    // Prefix handles are every server's; writes of another server's identifiers are refused.
    Query prefix;
    prefix.handle = "0.NA/88.100.1";
    EXPECT_EQ(resolver_->Resolve(prefix, scratch_).code, ResponseCode::kSuccess) << me;
    for (int i = 100; i < 110; ++i) {
      const std::string handle = "88.100.1/new" + std::to_string(i) + "-" + std::to_string(me);
      const bool mine = SiteIndexByHand(handle, 3) == static_cast<int32_t>(me);
      EXPECT_EQ(registry_->Apply(Create(handle, {MakeValue(1, "URL", "https://n")})).code,
                mine ? ResponseCode::kSuccess : ResponseCode::kServerNotResponsible)
          << handle;
    }
  }
  EXPECT_EQ(per_server[0] + per_server[1] + per_server[2], 30);
  for (int n : per_server) EXPECT_GT(n, 0);  // 30 handles spread over the three
  registry_->SetSiteServer(1, 0);
}

}  // namespace idnode::resolver
