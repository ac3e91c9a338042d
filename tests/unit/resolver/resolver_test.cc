// The resolver's routing (homed, delegated, mirrored, unknown), filters, and the equality of
// answers from the cache and from storage.
#include "idnode/resolver/resolver.h"

#include <gtest/gtest.h>

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
  ASSERT_EQ(registry_->MirrorPrefix("88.300", "peer").code, ResponseCode::kSuccess);
  EXPECT_EQ(resolver_->Resolve(q, scratch_).code,
            ResponseCode::kHandleNotFound);  // answered from the mirror
  Resolver strict(*registry_, cache_, ResolverOptions{false});
  EXPECT_EQ(strict.Resolve(q, scratch_).code, ResponseCode::kServerNotResponsible);
}

}  // namespace
}  // namespace idnode::resolver
