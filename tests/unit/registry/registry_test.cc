// Registry operations with Handle semantics and response codes, filters, idempotent batches,
// the prefix table, changelog retention, snapshots and the digest.
#include "idnode/registry/registry.h"

#include <gtest/gtest.h>

#include <future>

#include <algorithm>
#include <random>

#include "idnode/cache/answer_cache.h"
#include "idnode/identifier/identifier.h"
#include "registry_test_util.h"
#include "temp_dir.h"

namespace idnode::registry {
namespace {

using namespace testing;  // NOLINT

class RegistryTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  void Reopen(std::shared_ptr<cache::AnswerCache> cache = nullptr) {
    registry_.reset();
    RegistryOptions options;
    options.storage.path = dir_.sub("data");
    options.storage.shard_count = 4;
    options.storage.sync_writes = false;  // unit tests: durability has its own crash tests
    options.storage.block_cache_bytes = 8 << 20;
    options.cache = std::move(cache);
    auto opened = Registry::Open(std::move(options));
    ASSERT_TRUE(opened.ok()) << opened.error();
    registry_ = std::move(*opened);
    if (!registry_->FindPrefix("88.100.1")) {
      ASSERT_EQ(registry_->HomePrefix("88.100.1").code, ResponseCode::kSuccess);
    }
  }

  std::vector<int32_t> Indexes(const GetResult& r) {
    std::vector<int32_t> out;
    for (const auto& v : r.record.values()) out.push_back(v.index());
    return out;
  }

  uint64_t TotalSequence() {
    uint64_t total = 0;
    for (uint32_t s = 0; s < registry_->shard_count(); ++s) total += registry_->LastSequence(s);
    return total;
  }

  ::idnode::testing::TempDir dir_;
  std::unique_ptr<Registry> registry_;
};

const std::string kHandle = "88.100.1/SN0001";

std::vector<proto::Value> ThreeValues() {
  return {MakeValue(1, "URL", "https://example.org/item/1"),
          MakeValue(2, "EMAIL", "someone@example.org"),
          MakeValue(100, "HS_ADMIN",
                    std::string("\x0f\xff\0\0\0\x0d"
                                "0.NA/88.100.1\0\0\x01\x2c",
                                23))};
}

TEST_F(RegistryTest, CreateGetAndAlreadyExists) {
  auto created = registry_->Apply(Create(kHandle, ThreeValues()));
  EXPECT_EQ(created.code, ResponseCode::kSuccess);
  EXPECT_GT(created.sequence, 0u);
  auto got = registry_->Get("88.100.1/sn0001");  // case-insensitive in ASCII
  ASSERT_EQ(got.code, ResponseCode::kSuccess);
  EXPECT_EQ(got.record.handle(), kHandle);  // the original spelling is kept
  EXPECT_EQ(Indexes(got), (std::vector<int32_t>{1, 2, 100}));
  EXPECT_EQ(got.record.values(0).data(), "https://example.org/item/1");
  EXPECT_EQ(got.record.version(), 1u);
  EXPECT_EQ(registry_->Apply(Create("88.100.1/SN0001", ThreeValues())).code,
            ResponseCode::kHandleAlreadyExists);
  auto replaced =
      registry_->Apply(Create(kHandle, {MakeValue(7, "DESC", "x")}, /*overwrite=*/true));
  EXPECT_EQ(replaced.code, ResponseCode::kSuccess);
  got = registry_->Get(kHandle);
  EXPECT_EQ(Indexes(got), (std::vector<int32_t>{7}));
  EXPECT_EQ(got.record.version(), 2u);
}

TEST_F(RegistryTest, DeleteAndNotFound) {
  EXPECT_EQ(registry_->Apply(Delete(kHandle)).code, ResponseCode::kHandleNotFound);
  EXPECT_EQ(registry_->Get(kHandle).code, ResponseCode::kHandleNotFound);
  ASSERT_EQ(registry_->Apply(Create(kHandle, ThreeValues())).code, ResponseCode::kSuccess);
  EXPECT_EQ(registry_->Apply(Delete(kHandle)).code, ResponseCode::kSuccess);
  EXPECT_EQ(registry_->Get(kHandle).code, ResponseCode::kHandleNotFound);
  EXPECT_EQ(registry_->Apply(Delete(kHandle)).code, ResponseCode::kHandleNotFound);
}

TEST_F(RegistryTest, AddRemoveModifyValues) {
  EXPECT_EQ(
      registry_->Apply(WithValues(OpKind::kAddValues, kHandle, {MakeValue(3, "DESC", "d")})).code,
      ResponseCode::kHandleNotFound);
  ASSERT_EQ(registry_->Apply(Create(kHandle, ThreeValues())).code, ResponseCode::kSuccess);
  // Add: a taken index is 201 and nothing changes; with overwrite it replaces.
  EXPECT_EQ(registry_
                ->Apply(WithValues(OpKind::kAddValues, kHandle,
                                   {MakeValue(3, "DESC", "d"), MakeValue(1, "URL", "u")}))
                .code,
            ResponseCode::kValueAlreadyExists);
  EXPECT_EQ(Indexes(registry_->Get(kHandle)), (std::vector<int32_t>{1, 2, 100}));
  EXPECT_EQ(
      registry_->Apply(WithValues(OpKind::kAddValues, kHandle, {MakeValue(3, "DESC", "d")})).code,
      ResponseCode::kSuccess);
  EXPECT_EQ(
      registry_->Apply(WithValues(OpKind::kAddValues, kHandle, {MakeValue(1, "URL", "u2")}, true))
          .code,
      ResponseCode::kSuccess);
  EXPECT_EQ(registry_->Get(kHandle, Filter{{1}, {}, false}).record.values(0).data(), "u2");
  // Modify: a missing index is 200.
  EXPECT_EQ(
      registry_->Apply(WithValues(OpKind::kModifyValues, kHandle, {MakeValue(9, "URL", "x")})).code,
      ResponseCode::kValuesNotFound);
  EXPECT_EQ(registry_
                ->Apply(WithValues(OpKind::kModifyValues, kHandle,
                                   {MakeValue(2, "EMAIL", "new@example.org")}))
                .code,
            ResponseCode::kSuccess);
  EXPECT_EQ(registry_->Get(kHandle, Filter{{2}, {}, false}).record.values(0).data(),
            "new@example.org");
  // Remove: a missing index is 200 and removes nothing.
  EXPECT_EQ(registry_->Apply(Remove(kHandle, {3, 42})).code, ResponseCode::kValuesNotFound);
  EXPECT_EQ(Indexes(registry_->Get(kHandle)), (std::vector<int32_t>{1, 2, 3, 100}));
  EXPECT_EQ(registry_->Apply(Remove(kHandle, {3, 2})).code, ResponseCode::kSuccess);
  EXPECT_EQ(Indexes(registry_->Get(kHandle)), (std::vector<int32_t>{1, 100}));
  EXPECT_EQ(registry_->Get(kHandle).record.version(), 5u);  // create, add, add, modify, remove
}

TEST_F(RegistryTest, HasHandlesUnderAPrefixOfTheirNames) {
  ASSERT_EQ(registry_->Apply(Create("88.100.1/OID.1.2.3", ThreeValues())).code,
            ResponseCode::kSuccess);
  EXPECT_EQ(registry_->HasHandlesUnder("88.100.1/OID.1.2."), ResponseCode::kSuccess);
  EXPECT_EQ(registry_->HasHandlesUnder("88.100.1/oid.1."), ResponseCode::kSuccess);  // normalized
  EXPECT_EQ(registry_->HasHandlesUnder("88.100.1/OID.1.2.3"), ResponseCode::kSuccess);  // itself
  EXPECT_EQ(registry_->HasHandlesUnder("88.100.1/OID.1.2.4"), ResponseCode::kHandleNotFound);
  EXPECT_EQ(registry_->HasHandlesUnder("88.100.1/OID.1.20."), ResponseCode::kHandleNotFound);
  EXPECT_EQ(registry_->HasHandlesUnder("88.100.1/P"), ResponseCode::kHandleNotFound);  // after all
  ASSERT_EQ(registry_->Apply(registry::testing::Delete("88.100.1/OID.1.2.3")).code,
            ResponseCode::kSuccess);
  EXPECT_EQ(registry_->HasHandlesUnder("88.100.1/OID."), ResponseCode::kHandleNotFound);
}

TEST_F(RegistryTest, RefusesWhatItMustNotStore) {
  uint64_t before = TotalSequence();
  EXPECT_EQ(registry_->Apply(Create("77.1/SN1", ThreeValues())).code,
            ResponseCode::kServerNotResponsible);
  EXPECT_EQ(registry_->Apply(Create("no-slash", ThreeValues())).code, ResponseCode::kInvalidHandle);
  EXPECT_EQ(registry_->Apply(Create("88.100.1/", ThreeValues())).code,
            ResponseCode::kInvalidHandle);
  EXPECT_EQ(registry_
                ->Apply(Create("88.100.1/a\x01"
                               "b",
                               ThreeValues()))
                .code,
            ResponseCode::kInvalidHandle);
  // Two values at index 100: the whole request is refused (HARDENING.md §3 case 21).
  EXPECT_EQ(
      registry_->Apply(Create(kHandle, {MakeValue(100, "URL", "a"), MakeValue(100, "URL", "b")}))
          .code,
      ResponseCode::kInvalidValue);
  EXPECT_EQ(registry_->Apply(Create(kHandle, {MakeValue(0, "URL", "a")})).code,
            ResponseCode::kInvalidValue);
  EXPECT_EQ(registry_->Apply(Create(kHandle, {MakeValue(1, "", "a")})).code,
            ResponseCode::kInvalidValue);
  EXPECT_EQ(registry_->Apply(Create(kHandle, {MakeValue(1, "HS_SECKEY", "secret", 0x0e)})).code,
            ResponseCode::kInvalidValue);
  EXPECT_EQ(registry_->Apply(Create(kHandle, {MakeValue(1, "HS_SECKEY", "secret", 0x0c)})).code,
            ResponseCode::kSuccess);
  EXPECT_EQ(TotalSequence(), before + 1);
  EXPECT_EQ(registry_->Get("77.1/SN1").code, ResponseCode::kHandleNotFound);
}

TEST_F(RegistryTest, FiltersCombineWithOrAndMatchSubTypes) {
  std::vector<proto::Value> values = ThreeValues();
  values.push_back(MakeValue(4, "10320/loc", "<locations/>"));
  values.push_back(MakeValue(5, "HS_SITE.PREFIX", "site"));
  values.push_back(MakeValue(6, "DESC", "private", 0x0c));
  ASSERT_EQ(registry_->Apply(Create(kHandle, values)).code, ResponseCode::kSuccess);
  // CAP vector 04: type=URL plus index=2 returns index 1 URL and index 2 EMAIL.
  EXPECT_EQ(Indexes(registry_->Get(kHandle, Filter{{2}, {"URL"}, false})),
            (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(Indexes(registry_->Get(kHandle, Filter{{}, {"url"}, false})),
            (std::vector<int32_t>{1}));
  EXPECT_EQ(Indexes(registry_->Get(kHandle, Filter{{}, {"HS_SITE."}, false})),
            (std::vector<int32_t>{5}));
  EXPECT_EQ(Indexes(registry_->Get(kHandle, Filter{{}, {"10320/loc."}, false})),
            (std::vector<int32_t>{}));
  EXPECT_EQ(registry_->Get(kHandle, Filter{{}, {"NOSUCHTYPE"}, false}).code,
            ResponseCode::kValuesNotFound);
  EXPECT_EQ(registry_->Get(kHandle, Filter{{99}, {}, false}).code, ResponseCode::kValuesNotFound);
  EXPECT_EQ(registry_->Get(kHandle, Filter{{}, {"HS_"}, false}).code,
            ResponseCode::kValuesNotFound);
  // PO drops values without PUBLIC_READ silently.
  EXPECT_EQ(Indexes(registry_->Get(kHandle, Filter{{}, {}, true})),
            (std::vector<int32_t>{1, 2, 4, 5, 100}));
  EXPECT_EQ(registry_->Get(kHandle, Filter{{6}, {}, true}).code, ResponseCode::kValuesNotFound);
}

TEST_F(RegistryTest, ChangelogHasOneEntryPerChangeWithoutHoles) {
  ASSERT_EQ(registry_->Apply(Create(kHandle, ThreeValues())).code, ResponseCode::kSuccess);
  ASSERT_EQ(registry_->Apply(Remove(kHandle, {2})).code, ResponseCode::kSuccess);
  ASSERT_EQ(registry_->Apply(Remove(kHandle, {2})).code,
            ResponseCode::kValuesNotFound);  // not logged
  ASSERT_EQ(registry_->Apply(Delete(kHandle)).code, ResponseCode::kSuccess);
  uint32_t shard = registry_->ShardOf(identifier::Normalize(kHandle));
  std::vector<proto::ChangelogEntry> entries;
  auto next = registry_->ReadChangelog(shard, registry_->FirstRetainedSequence(shard), 1000,
                                       [&](const auto& e) {
                                         if (e.handle() == identifier::Normalize(kHandle))
                                           entries.push_back(e);
                                         return true;
                                       });
  ASSERT_TRUE(next.ok()) << next.error();
  EXPECT_EQ(*next, registry_->LastSequence(shard) + 1);
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[0].operation(), proto::ChangelogEntry::PUT);
  EXPECT_EQ(entries[0].record().values_size(), 3);
  EXPECT_EQ(entries[1].record().values_size(), 2);
  EXPECT_EQ(entries[2].operation(), proto::ChangelogEntry::DELETE);
  EXPECT_LT(entries[0].sequence(), entries[1].sequence());
  EXPECT_FALSE(entries[0].lineage_id().empty());
}

TEST_F(RegistryTest, TheAuditLogHoldsWritesWithTheirOutcomeAndRefusalsAndAges) {
  AuditContext who{"300:0.NA/88.100.1", {}, "handle/tcp"};
  who.source[15] = 7;
  Operation created = Create("88.100.1/A1", {MakeValue(1, "URL", "u")});
  created.audit = who;
  ASSERT_EQ(registry_->Apply(created).code, ResponseCode::kSuccess);
  // The same create again fails (101); its outcome is logged too.
  EXPECT_EQ(registry_->Apply(created).code, ResponseCode::kHandleAlreadyExists);
  // A write without an audit context (replication, imports) is not logged.
  ASSERT_EQ(registry_->Apply(Create("88.100.1/A2", {MakeValue(1, "URL", "u")})).code,
            ResponseCode::kSuccess);
  ASSERT_TRUE(
      registry_->AppendAudit("88.100.1/A3", "delete", who, ResponseCode::kInvalidAdmin).ok());
  auto all = registry_->ReadAudit(0, 100, nullptr);
  ASSERT_TRUE(all.ok()) << all.error();
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0].operation(), "create");
  EXPECT_EQ((*all)[0].response_code(), 1u);
  EXPECT_EQ((*all)[1].response_code(), 101u);
  EXPECT_EQ((*all)[2].operation(), "delete");
  EXPECT_EQ((*all)[2].handle(), "88.100.1/A3");
  EXPECT_EQ((*all)[2].identity(), "300:0.NA/88.100.1");
  EXPECT_EQ((*all)[2].source()[15], 7);
  for (size_t i = 1; i < all->size(); ++i) EXPECT_LE((*all)[i - 1].time_ms(), (*all)[i].time_ms());
  // Filters and limits.
  auto refusals = registry_->ReadAudit(
      0, 100, [](const proto::AuditEntry& e) { return e.response_code() != 1; });
  ASSERT_TRUE(refusals.ok());
  EXPECT_EQ(refusals->size(), 2u);
  EXPECT_EQ(registry_->ReadAudit(0, 1, nullptr)->size(), 1u);
  EXPECT_TRUE(registry_->ReadAudit((*all)[2].time_ms() + 1, 100, nullptr)->empty());
  // It survives a restart, and ages out with retention.
  Reopen();
  EXPECT_EQ(registry_->ReadAudit(0, 100, nullptr)->size(), 3u);
  ASSERT_TRUE(
      registry_->ApplyRetention(std::chrono::system_clock::now() + std::chrono::hours(24 * 400))
          .ok());
  EXPECT_TRUE(registry_->ReadAudit(0, 100, nullptr)->empty());
}

TEST_F(RegistryTest, BatchesAreIdempotentUnderATransactionId) {
  std::vector<Operation> ops;
  for (int i = 0; i < 50; ++i)
    ops.push_back(Create("88.100.1/B" + std::to_string(i), {MakeValue(1, "URL", "u")}));
  ops.push_back(
      WithValues(OpKind::kAddValues, "88.100.1/B0", {MakeValue(2, "DESC", "second op on B0")}));
  ops.push_back(Create("88.100.1/B1", {MakeValue(1, "URL", "dup")}));  // exists by then: 101
  auto first = registry_->ApplyBatch("txn-1", ops);
  ASSERT_EQ(first.size(), ops.size());
  for (int i = 0; i < 51; ++i) EXPECT_EQ(first[i].code, ResponseCode::kSuccess) << i;
  EXPECT_EQ(first[51].code, ResponseCode::kHandleAlreadyExists);
  EXPECT_EQ(Indexes(registry_->Get("88.100.1/B0")), (std::vector<int32_t>{1, 2}));
  uint64_t sequence = TotalSequence();
  // The secondary node timed out and retries the same transaction: same answers, nothing applied.
  auto retry = registry_->ApplyBatch("txn-1", ops);
  for (size_t i = 0; i < ops.size(); ++i) EXPECT_EQ(retry[i].code, first[i].code) << i;
  EXPECT_EQ(TotalSequence(), sequence);
  // Another transaction is a new request.
  auto other = registry_->ApplyBatch("txn-2", {ops[0]});
  EXPECT_EQ(other[0].code, ResponseCode::kHandleAlreadyExists);
  // Too many operations: refused whole.
  std::vector<Operation> too_many(kMaxBatchOperations + 1, ops[0]);
  auto refused = registry_->ApplyBatch("txn-3", too_many);
  EXPECT_TRUE(std::all_of(refused.begin(), refused.end(), [](const OpResult& r) {
    return r.code == ResponseCode::kServerTooBusy;
  }));
  // Outcomes survive a restart.
  Reopen();
  auto after_restart = registry_->ApplyBatch("txn-1", ops);
  for (size_t i = 0; i < ops.size(); ++i) EXPECT_EQ(after_restart[i].code, first[i].code) << i;
  EXPECT_EQ(TotalSequence(), sequence);
}

TEST_F(RegistryTest, PrefixTablePersistsAndResolvesAsRecords) {
  EXPECT_TRUE(registry_->IsWritable("88.100.1/x"));
  EXPECT_FALSE(registry_->IsWritable("88.200/x"));
  ASSERT_EQ(
      registry_->DelegatePrefix("88.200", {MakeValue(1, "HS_SITE", "site-of-secondary")}).code,
      ResponseCode::kSuccess);
  ASSERT_EQ(registry_->MirrorPrefix("88.300", "peer-a").code, ResponseCode::kSuccess);
  EXPECT_FALSE(registry_->IsWritable("88.200/x"));
  EXPECT_FALSE(registry_->IsWritable("88.300/x"));
  Reopen();
  auto delegated = registry_->FindPrefix("88.200");
  ASSERT_TRUE(delegated.has_value());
  EXPECT_EQ(delegated->role(), proto::PrefixState::DELEGATED);
  EXPECT_EQ(registry_->FindPrefix("88.300")->peer(), "peer-a");
  EXPECT_EQ(registry_->FindPrefix("88.100.1")->role(), proto::PrefixState::HOMED);
  ASSERT_TRUE(registry_->Prefixes().ok());
  EXPECT_EQ(registry_->Prefixes()->size(), 3u);
  auto prefix_record = registry_->Get("0.NA/88.200");
  ASSERT_EQ(prefix_record.code, ResponseCode::kSuccess);
  EXPECT_EQ(prefix_record.record.values(0).type(), "HS_SITE");
  EXPECT_EQ(registry_->ForgetPrefix("88.300").code, ResponseCode::kSuccess);
  EXPECT_FALSE(registry_->FindPrefix("88.300").has_value());
  // Homing 0.NA makes prefix handles writable (a top-level node administers them).
  EXPECT_FALSE(registry_->IsWritable("0.NA/88.999"));
  ASSERT_EQ(registry_->HomePrefix("0.NA").code, ResponseCode::kSuccess);
  EXPECT_TRUE(registry_->IsWritable("0.na/88.999"));
}

TEST_F(RegistryTest, RetentionByCountAndAgeRespectsPins) {
  for (int i = 0; i < 200; ++i) {
    ASSERT_EQ(
        registry_->Apply(Create("88.100.1/R" + std::to_string(i), {MakeValue(1, "URL", "u")})).code,
        ResponseCode::kSuccess);
  }
  uint32_t shard = registry_->ShardOf(identifier::Normalize("88.100.1/R0"));
  uint64_t last = registry_->LastSequence(shard);
  ASSERT_GT(last, 20u);
  RetentionPolicy policy;
  policy.max_entries_per_shard = 10;
  registry_->SetRetentionPolicy(policy);
  {
    RetentionPin pin = registry_->PinRetention(shard, last - 15);
    ASSERT_TRUE(registry_->ApplyRetention(std::chrono::system_clock::now()).ok());
    EXPECT_EQ(registry_->FirstRetainedSequence(shard), last - 15);  // the pin wins
  }
  ASSERT_TRUE(registry_->ApplyRetention(std::chrono::system_clock::now()).ok());
  EXPECT_EQ(registry_->FirstRetainedSequence(shard), last - 9);
  auto stale = registry_->ReadChangelog(shard, 1, 10, [](const auto&) { return true; });
  EXPECT_FALSE(stale.ok());  // the reader must take a snapshot
  size_t count = 0;
  auto fresh =
      registry_->ReadChangelog(shard, last - 9, 100, [&](const auto&) { return ++count, true; });
  ASSERT_TRUE(fresh.ok()) << fresh.error();
  EXPECT_EQ(count, 10u);
  // By age: a week and a day later everything goes.
  policy.max_entries_per_shard = 1'000'000;
  registry_->SetRetentionPolicy(policy);
  ASSERT_TRUE(
      registry_->ApplyRetention(std::chrono::system_clock::now() + std::chrono::hours(24 * 8))
          .ok());
  EXPECT_EQ(registry_->FirstRetainedSequence(shard), last + 1);
  Reopen();
  EXPECT_EQ(registry_->FirstRetainedSequence(shard), last + 1);
  EXPECT_EQ(registry_->LastSequence(shard), last);
  // New writes continue the sequence.
  ASSERT_EQ(registry_->Apply(Create("88.100.1/R0", {MakeValue(1, "URL", "v")}, true)).code,
            ResponseCode::kSuccess);
  EXPECT_EQ(registry_->LastSequence(shard), last + 1);
}

TEST_F(RegistryTest, SnapshotIsConsistentAtItsSequence) {
  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(
        registry_->Apply(Create("88.100.1/S" + std::to_string(i), {MakeValue(1, "URL", "old")}))
            .code,
        ResponseCode::kSuccess);
  }
  uint32_t shard = registry_->ShardOf(identifier::Normalize("88.100.1/S0"));
  ShardSnapshot snapshot = registry_->TakeSnapshot(shard);
  EXPECT_EQ(snapshot.sequence, registry_->LastSequence(shard));
  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(registry_
                  ->Apply(WithValues(OpKind::kModifyValues, "88.100.1/S" + std::to_string(i),
                                     {MakeValue(1, "URL", "new")}))
                  .code,
              ResponseCode::kSuccess);
  }
  ASSERT_EQ(registry_->Apply(Create("88.100.1/LATE", {MakeValue(1, "URL", "new")})).code,
            ResponseCode::kSuccess);
  size_t seen = 0;
  auto scanned = registry_->ScanSnapshot(snapshot, "88.100.1", [&](const proto::Record& r) {
    EXPECT_EQ(r.values(0).data(), "old") << r.handle();
    EXPECT_NE(r.handle(), "88.100.1/LATE");
    ++seen;
    return true;
  });
  ASSERT_TRUE(scanned.ok());
  EXPECT_GT(seen, 0u);
  // While the snapshot lives, retention keeps the changelog after it.
  RetentionPolicy policy;
  policy.max_entries_per_shard = 1;
  registry_->SetRetentionPolicy(policy);
  ASSERT_TRUE(registry_->ApplyRetention(std::chrono::system_clock::now()).ok());
  EXPECT_LE(registry_->FirstRetainedSequence(shard), snapshot.sequence + 1);
  size_t replayed = 0;
  ASSERT_TRUE(registry_
                  ->ReadChangelog(shard, snapshot.sequence + 1, 1000,
                                  [&](const auto&) { return ++replayed, true; })
                  .ok());
  EXPECT_EQ(replayed, registry_->LastSequence(shard) - snapshot.sequence);
}

TEST_F(RegistryTest, DigestIsOrderIndependentAndSensitiveToContent) {
  ::idnode::testing::TempDir other_dir;
  RegistryOptions options;
  options.storage.path = other_dir.sub("data");
  options.storage.shard_count = 2;  // a different shard count must not matter
  options.storage.sync_writes = false;
  auto other = Registry::Open(std::move(options));
  ASSERT_TRUE(other.ok());
  ASSERT_EQ((*other)->HomePrefix("88.100.1").code, ResponseCode::kSuccess);
  std::vector<Operation> ops;
  for (int i = 0; i < 100; ++i)
    ops.push_back(
        Create("88.100.1/D" + std::to_string(i), {MakeValue(1, "URL", "u" + std::to_string(i))}));
  for (const auto& op : ops) ASSERT_EQ(registry_->Apply(op).code, ResponseCode::kSuccess);
  std::mt19937 rng(7);
  std::shuffle(ops.begin(), ops.end(), rng);
  for (const auto& op : ops) ASSERT_EQ((*other)->Apply(op).code, ResponseCode::kSuccess);
  auto a = registry_->ComputeDigest("88.100.1");
  auto b = (*other)->ComputeDigest("88.100.1");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->records, 100u);
  EXPECT_EQ(*a, *b);
  ASSERT_EQ((*other)
                ->Apply(WithValues(OpKind::kModifyValues, "88.100.1/D5",
                                   {MakeValue(1, "URL", "changed")}))
                .code,
            ResponseCode::kSuccess);
  auto c = (*other)->ComputeDigest("88.100.1");
  EXPECT_NE(a->hex(), c->hex());
  EXPECT_EQ(c->records, 100u);
  // Under another prefix: nothing.
  EXPECT_EQ(registry_->ComputeDigest("88.100.2")->records, 0u);
}

TEST_F(RegistryTest, DataAndSequencesSurviveReopen) {
  ASSERT_EQ(registry_->Apply(Create(kHandle, ThreeValues())).code, ResponseCode::kSuccess);
  uint32_t shard = registry_->ShardOf(identifier::Normalize(kHandle));
  uint64_t last = registry_->LastSequence(shard);
  Reopen();
  EXPECT_EQ(registry_->LastSequence(shard), last);
  EXPECT_EQ(Indexes(registry_->Get(kHandle)), (std::vector<int32_t>{1, 2, 100}));
}

TEST_F(RegistryTest, CacheIsInvalidatedBeforeTheWriteIsAcknowledged) {
  cache::CacheOptions cache_options;
  cache_options.capacity_bytes = 1 << 20;
  cache_options.shard_count = 4;
  auto cache = std::make_shared<cache::AnswerCache>(cache_options);
  Reopen(cache);
  std::vector<uint8_t> wire;
  EXPECT_EQ(registry_->GetEncoded(kHandle, &wire),
            ReadOutcome::kNotFound);  // negative entry cached
  ASSERT_EQ(registry_->Apply(Create(kHandle, ThreeValues())).code, ResponseCode::kSuccess);
  ASSERT_EQ(registry_->GetEncoded(kHandle, &wire),
            ReadOutcome::kFound);  // the negative entry is gone
  EXPECT_EQ(wire, EncodeWireValues(registry_->Get(kHandle).record));
  ASSERT_TRUE(cache->Get(identifier::Normalize(kHandle)).has_value());  // filled
  ASSERT_EQ(registry_->Apply(Remove(kHandle, {2})).code, ResponseCode::kSuccess);
  EXPECT_FALSE(
      cache->Get(identifier::Normalize(kHandle)).has_value());  // invalidated on the write path
  ASSERT_EQ(registry_->GetEncoded(kHandle, &wire), ReadOutcome::kFound);
  EXPECT_EQ(wire, EncodeWireValues(registry_->Get(kHandle).record));
}

TEST_F(RegistryTest, DelegatingKeepsThePrefixHandlesOtherValues) {
  ASSERT_EQ(registry_->HomePrefix("0.NA").code, ResponseCode::kSuccess);
  ASSERT_EQ(registry_
                ->Apply(Create("0.NA/88.200", {MakeValue(1, "HS_SITE", "old-site"),
                                               MakeValue(100, "HS_ADMIN", "admin"),
                                               MakeValue(300, "HS_SECKEY", "secret", 0x0c)}))
                .code,
            ResponseCode::kSuccess);
  ASSERT_EQ(registry_
                ->DelegatePrefix("88.200", {MakeValue(1, "HS_SITE", "new-site"),
                                            MakeValue(2, "HS_SITE", "second-site")})
                .code,
            ResponseCode::kSuccess);
  auto got = registry_->Get("0.NA/88.200");
  ASSERT_EQ(got.code, ResponseCode::kSuccess);
  std::vector<std::string> data;
  for (const auto& v : got.record.values()) data.push_back(v.type() + "=" + v.data());
  // Before, delegating replaced the record with one HS_SITE: the admin and its key were lost.
  EXPECT_EQ(data, (std::vector<std::string>{"HS_SITE=new-site", "HS_SITE=second-site",
                                            "HS_ADMIN=admin", "HS_SECKEY=secret"}));
  EXPECT_EQ(registry_->FindPrefix("88.200")->role(), proto::PrefixState::DELEGATED);
  EXPECT_EQ(registry_->FindPrefix("88.200")->flags(), uint32_t{prefix_flag::kHasSite});
  // Forgetting a delegation drops its location values and keeps the rest.
  ASSERT_EQ(registry_->ForgetPrefix("88.200").code, ResponseCode::kSuccess);
  EXPECT_FALSE(registry_->FindPrefix("88.200").has_value());
  EXPECT_EQ(Indexes(registry_->Get("0.NA/88.200")), (std::vector<int32_t>{100, 300}));
}

TEST_F(RegistryTest, ImportedPrefixHandlesPlaceTheirPrefixes) {
  // The bulk path (PutRecords: shards that already hold data) derives delegations as writes do.
  Operation op = Create("0.NA/88.400", {MakeValue(1, "HS_SITE.PREFIX", "derived-sites")});
  proto::Record record;
  record.set_handle(op.handle);
  for (const auto& v : op.values) *record.add_values() = v;
  const std::string key = "0.NA/88.400";
  ASSERT_TRUE(
      registry_->PutRecords(registry_->ShardOf(key), {{key, record.SerializeAsString()}}).ok());
  auto state = registry_->FindPrefix("88.400");
  ASSERT_TRUE(state.has_value());
  EXPECT_EQ(state->role(), proto::PrefixState::DELEGATED);
  EXPECT_EQ(state->flags(), uint32_t{prefix_flag::kHasPrefixSite});
  const PrefixEntry* entry = registry_->prefix_table().Snapshot()->Find("88.400");
  ASSERT_NE(entry, nullptr);
  EXPECT_EQ(entry->role, PrefixRole::kDelegated);
}

// Defect 4: a change authorised against one version of a record must not apply to another.
TEST_F(RegistryTest, CompareAndApplyRefusesAChangedRecord) {
  ASSERT_EQ(registry_->Apply(Create(kHandle, ThreeValues())).code, ResponseCode::kSuccess);
  std::string authorised;
  ASSERT_EQ(registry_->GetSerialized(kHandle, &authorised), ReadOutcome::kFound);
  // Another storage thread changes the record (say, removes the admin value) in between.
  Operation other = WithValues(OpKind::kModifyValues, kHandle, {MakeValue(2, "EMAIL", "x@y")});
  ASSERT_EQ(registry_->Apply(other).code, ResponseCode::kSuccess);
  const uint64_t sequence = TotalSequence();
  Operation late =
      WithValues(OpKind::kModifyValues, kHandle, {MakeValue(1, "URL", "https://late")});
  late.expected_record = authorised;
  OpResult refused = registry_->Apply(late);
  EXPECT_TRUE(refused.conflict);
  EXPECT_NE(refused.code, ResponseCode::kSuccess);
  EXPECT_EQ(TotalSequence(), sequence);  // nothing written
  // Decided again on the record as it is now, it applies.
  ASSERT_EQ(registry_->GetSerialized(kHandle, &late.expected_record.emplace()),
            ReadOutcome::kFound);
  EXPECT_EQ(registry_->Apply(late).code, ResponseCode::kSuccess);
  // An expected absence: the record must still not exist.
  Operation create = Create("88.100.1/NEW", ThreeValues());
  create.expected_record = std::string();
  ASSERT_EQ(registry_->Apply(Create("88.100.1/NEW", ThreeValues())).code, ResponseCode::kSuccess);
  EXPECT_TRUE(registry_->Apply(create).conflict);
}

// Defect 7: retention scanned the changelog and the transaction keys holding the shard's write
// lock, so every write to the shard waited for the scan (every minute).
TEST_F(RegistryTest, RetentionDoesNotHoldWritersWhileItScans) {
  for (int i = 0; i < 50; ++i) {
    ASSERT_EQ(registry_->Apply(Create("88.100.1/R" + std::to_string(i), ThreeValues())).code,
              ResponseCode::kSuccess);
  }
  RetentionPolicy policy;
  policy.max_entries_per_shard = 1;
  std::vector<bool> wrote_during_scan;
  std::vector<OpResult> writes(registry_->shard_count());
  // The futures live outside the hook: were a write to block on a lock the trim held, the hook
  // would give up after its wait and the trim would go on (a failure, not a hang).
  std::vector<std::future<void>> pending;
  policy.during_scan_for_test = [&](uint32_t shard) {
    // A write to the very shard being trimmed, from another thread, must finish while the scan
    // is still in progress (before, it waited for the shard's lock until the trim was done).
    std::string handle;
    for (int i = 0; handle.empty() || registry_->ShardOf(handle) != shard; ++i)
      handle = "88.100.1/W" + std::to_string(shard) + "-" + std::to_string(i);
    pending.push_back(std::async(std::launch::async, [this, handle, shard, &writes] {
      writes[shard] = registry_->Apply(Create(handle, ThreeValues()));
    }));
    wrote_during_scan.push_back(pending.back().wait_for(std::chrono::seconds(10)) ==
                                std::future_status::ready);
  };
  registry_->SetRetentionPolicy(policy);
  auto trimmed = registry_->ApplyRetention(std::chrono::system_clock::now());
  for (auto& f : pending) f.get();
  ASSERT_TRUE(trimmed.ok()) << trimmed.error();
  EXPECT_GT(*trimmed, 0u);
  EXPECT_EQ(wrote_during_scan, std::vector<bool>(registry_->shard_count(), true));
  // Each write made during its shard's scan is still in the changelog (the trim stops below it).
  for (uint32_t s = 0; s < registry_->shard_count(); ++s) {
    ASSERT_EQ(writes[s].code, ResponseCode::kSuccess);
    size_t seen = 0;
    auto read =
        registry_->ReadChangelog(s, writes[s].sequence, 10, [&seen](const proto::ChangelogEntry&) {
          ++seen;
          return true;
        });
    ASSERT_TRUE(read.ok()) << read.error();
    EXPECT_EQ(seen, 1u);
  }
}

// The changelog entries of `shard` from its first retained one.
std::vector<proto::ChangelogEntry> Entries(const Registry& registry, uint32_t shard) {
  std::vector<proto::ChangelogEntry> out;
  auto read = registry.ReadChangelog(shard, registry.FirstRetainedSequence(shard), 1'000'000,
                                     [&out](const proto::ChangelogEntry& e) {
                                       out.push_back(e);
                                       return true;
                                     });
  EXPECT_TRUE(read.ok()) << read.error();
  return out;
}

TEST_F(RegistryTest, PrefixRoleChangesAreLoggedWithTheirLineage) {
  const uint32_t shard = registry_->ShardOf(identifier::Normalize("0.NA/88.200"));
  const uint64_t before = registry_->LastSequence(shard);
  ASSERT_EQ(registry_->MirrorPrefix("88.200", "top").code, ResponseCode::kSuccess);
  auto entries = Entries(*registry_, shard);
  ASSERT_FALSE(entries.empty());
  const auto& mirrored = entries.back();
  EXPECT_GT(mirrored.sequence(), before);
  EXPECT_EQ(mirrored.operation(), proto::ChangelogEntry::PREFIX);
  EXPECT_EQ(mirrored.prefix_state().prefix(), "88.200");
  EXPECT_EQ(mirrored.prefix_state().role(), proto::PrefixState::MIRRORED);
  EXPECT_EQ(mirrored.prefix_state().peer(), "top");
  EXPECT_EQ(mirrored.lineage_id(), registry_->ShardLineage(shard));
  // The same role again changes nothing and logs nothing.
  const uint64_t after_mirror = registry_->LastSequence(shard);
  ASSERT_EQ(registry_->MirrorPrefix("88.200", "top").code, ResponseCode::kSuccess);
  EXPECT_EQ(registry_->LastSequence(shard), after_mirror);
  // Replication records the owner's lineage; a take-over gives the prefix a history of its own.
  ASSERT_EQ(registry_->SetMirrorState("88.200", "top", "owner-lineage", true).code,
            ResponseCode::kSuccess);
  EXPECT_EQ(registry_->SetMirrorState("88.200", "elsewhere", "x", true).code,
            ResponseCode::kInvalidValue);  // not mirrored from there
  EXPECT_EQ(*registry_->LineageOfPrefix("88.200.7"), "owner-lineage");
  ASSERT_EQ(registry_->TakeOverPrefix("88.200").code, ResponseCode::kSuccess);
  auto taken = registry_->FindPrefix("88.200");
  ASSERT_TRUE(taken);
  EXPECT_EQ(taken->role(), proto::PrefixState::HOMED);
  EXPECT_EQ(taken->lineage_id().size(), 32u);
  EXPECT_NE(taken->lineage_id(), "owner-lineage");
  EXPECT_EQ(Entries(*registry_, shard).back().prefix_state().lineage_id(), taken->lineage_id());
  EXPECT_TRUE(registry_->IsWritable("88.200/x"));
  // Only a mirror is taken over.
  EXPECT_EQ(registry_->TakeOverPrefix("88.200").code, ResponseCode::kInvalidValue);
  EXPECT_EQ(registry_->TakeOverPrefix("88.999").code, ResponseCode::kInvalidValue);
  // Homing again keeps the history; mirroring a homed prefix marks its copy stale.
  ASSERT_EQ(registry_->HomePrefix("88.200").code, ResponseCode::kSuccess);
  EXPECT_EQ(registry_->FindPrefix("88.200")->lineage_id(), taken->lineage_id());
  ASSERT_EQ(registry_->MirrorPrefix("88.200", "new-owner").code, ResponseCode::kSuccess);
  auto stale = registry_->FindPrefix("88.200");
  EXPECT_NE(stale->flags() & prefix_flag::kMirrorStale, 0u);
  EXPECT_EQ(*registry_->LineageOfPrefix("88.200"), "");  // not synced: no history yet
  ASSERT_EQ(registry_->SetMirrorState("88.200", "new-owner", "L2", true).code,
            ResponseCode::kSuccess);
  EXPECT_EQ(registry_->FindPrefix("88.200")->flags() & prefix_flag::kMirrorStale, 0u);
  Reopen();
  EXPECT_EQ(*registry_->LineageOfPrefix("88.200"), "L2");
}

TEST_F(RegistryTest, AnImportMovesTheShardsHistory) {
  const uint32_t shard = 1;
  const std::string before = registry_->ShardLineage(shard);
  EXPECT_EQ(before.size(), 32u);
  EXPECT_NE(registry_->ShardLineage(0), registry_->ShardLineage(1));
  std::string handle;
  for (int i = 0; handle.empty() || registry_->ShardOf(handle) != shard; ++i)
    handle = identifier::Normalize("88.100.1/IMPORTED" + std::to_string(i));
  proto::Record record;
  record.set_handle(handle);
  *record.add_values() = MakeValue(1, "URL", "u");
  ASSERT_TRUE(registry_->IngestSorted(shard, {{handle, record.SerializeAsString()}}).ok());
  const std::string after = registry_->ShardLineage(shard);
  EXPECT_NE(after, before);
  // Not a continuation of the history before it: nobody resumes from there.
  EXPECT_FALSE(registry_->ResumableFrom(shard, before, 0, 0));
  Reopen();
  // Reopened: a fork of `after`, from which replicas go on.
  EXPECT_NE(registry_->ShardLineage(shard), after);
  EXPECT_TRUE(registry_->ResumableFrom(shard, after, registry_->LastSequence(shard), 0));
  EXPECT_FALSE(registry_->ResumableFrom(shard, before, 0, 0));
}

TEST_F(RegistryTest, EveryOpenForksTheHistoryAndReplicasResumeOnlyUpToTheFork) {
  const std::string handle = identifier::Normalize("88.100.1/FORK");
  const uint32_t shard = registry_->ShardOf(handle);
  ASSERT_EQ(registry_->Apply(Create(handle, {MakeValue(1, "URL", "a")})).code,
            ResponseCode::kSuccess);
  const std::string first = registry_->ShardLineage(shard);
  const uint64_t fork = registry_->LastSequence(shard);
  EXPECT_TRUE(registry_->ResumableFrom(shard, first, fork, fork));
  EXPECT_FALSE(registry_->ResumableFrom(shard, first, fork + 1, 0));  // not written yet
  Reopen();
  const std::string second = registry_->ShardLineage(shard);
  EXPECT_NE(second, first);
  ASSERT_EQ(registry_->Apply(Create(handle + "2", {MakeValue(1, "URL", "b")})).code,
            ResponseCode::kSuccess);
  // A replica of the first history at or below the fork goes on; one that got further (changes
  // the shard lost in a crash, or that a restored backup never had) does not.
  EXPECT_TRUE(registry_->ResumableFrom(shard, first, fork, 0));
  EXPECT_FALSE(registry_->ResumableFrom(shard, first, fork, fork + 1));
  EXPECT_FALSE(registry_->ResumableFrom(shard, first, fork + 1, 0));
  EXPECT_TRUE(registry_->ResumableFrom(shard, second, registry_->LastSequence(shard), 0));
  EXPECT_FALSE(registry_->ResumableFrom(shard, "unknown", 0, 0));
  // Forks chain across opens.
  Reopen();
  EXPECT_TRUE(registry_->ResumableFrom(shard, first, fork, 0));
  EXPECT_TRUE(registry_->ResumableFrom(shard, second, registry_->LastSequence(shard), 0));
}

TEST_F(RegistryTest, ReplicasSavedPositionsHoldRetentionAcrossRestarts) {
  for (int i = 0; i < 300; ++i) {
    ASSERT_EQ(
        registry_->Apply(Create("88.100.1/P" + std::to_string(i), {MakeValue(1, "URL", "u")})).code,
        ResponseCode::kSuccess);
  }
  const uint32_t shard = registry_->ShardOf(identifier::Normalize("88.100.1/P0"));
  const uint64_t last = registry_->LastSequence(shard);
  ASSERT_GT(last, 60u);
  ASSERT_TRUE(registry_->SavePeerPositions("replica-1", {{shard, last - 50}}).ok());
  RetentionPolicy policy;
  policy.max_entries_per_shard = 10;
  registry_->SetRetentionPolicy(policy);
  ASSERT_TRUE(registry_->ApplyRetention(std::chrono::system_clock::now()).ok());
  EXPECT_EQ(registry_->FirstRetainedSequence(shard), last - 49);  // what the replica still needs
  Reopen();
  registry_->SetRetentionPolicy(policy);
  EXPECT_EQ(registry_->PeerPositions(shard),
            (std::vector<std::pair<std::string, uint64_t>>{{"replica-1", last - 50}}));
  ASSERT_TRUE(registry_->ApplyRetention(std::chrono::system_clock::now()).ok());
  EXPECT_EQ(registry_->FirstRetainedSequence(shard), last - 49);
  // A replica too far behind no longer holds anything: it will take a snapshot.
  policy.max_peer_lag_entries = 20;
  registry_->SetRetentionPolicy(policy);
  ASSERT_TRUE(registry_->ApplyRetention(std::chrono::system_clock::now()).ok());
  EXPECT_EQ(registry_->FirstRetainedSequence(shard), last - 9);
  // A replica taken out of the configuration: its saved position goes, for good.
  ASSERT_TRUE(registry_->SavePeerPositions("replica-2", {{shard, last}}).ok());
  auto forgotten = registry_->ForgetPeerPositionsExcept({"replica-2"});
  ASSERT_TRUE(forgotten.ok());
  EXPECT_EQ(*forgotten, 1u);
  Reopen();
  EXPECT_EQ(registry_->PeerPositions(shard),
            (std::vector<std::pair<std::string, uint64_t>>{{"replica-2", last}}));
}

TEST_F(RegistryTest, ReplicatedChangesCommitWithTheirCursorAndAreLoggedOrMoveTheHistory) {
  cache::CacheOptions cache_options;
  cache_options.capacity_bytes = 1 << 20;
  cache_options.shard_count = 4;
  Reopen(std::make_shared<cache::AnswerCache>(cache_options));
  ASSERT_EQ(registry_->MirrorPrefix("88.300", "top").code, ResponseCode::kSuccess);
  const std::string key = identifier::Normalize("88.300/A");
  const uint32_t shard = registry_->ShardOf(key);
  std::vector<uint8_t> encoded;
  EXPECT_EQ(registry_->GetEncoded(key, &encoded), ReadOutcome::kNotFound);  // cached negative
  proto::Record record;
  record.set_handle("88.300/a");
  record.set_version(7);
  *record.add_values() = MakeValue(1, "URL", "https://example.org/a");
  const uint64_t before = registry_->LastSequence(shard);
  const std::string lineage = registry_->ShardLineage(shard);
  ASSERT_TRUE(registry_
                  ->ApplyReplicated(shard, {{key, record.SerializeAsString()}},
                                    {{"repl/top/0", "cursor-1"}})
                  .ok());
  EXPECT_EQ(registry_->LastSequence(shard), before + 1);
  EXPECT_EQ(*registry_->ReadMeta(shard, "repl/top/0"), std::optional<std::string>("cursor-1"));
  EXPECT_EQ(registry_->GetEncoded(key, &encoded), ReadOutcome::kFound);  // invalidated
  auto got = registry_->Get(key);
  ASSERT_EQ(got.code, ResponseCode::kSuccess);
  EXPECT_EQ(got.record.version(), 7u);  // the source's version, as it was
  auto entries = Entries(*registry_, shard);
  EXPECT_EQ(entries.back().handle(), key);
  EXPECT_EQ(entries.back().record().version(), 7u);
  EXPECT_EQ(registry_->ShardLineage(shard), lineage);
  // A snapshot's records are not logged: the shard's history moves instead.
  ASSERT_TRUE(registry_->ApplyReplicated(shard, {{key, std::nullopt}}, {}, /*logged=*/false).ok());
  EXPECT_EQ(registry_->LastSequence(shard), before + 1);
  EXPECT_NE(registry_->ShardLineage(shard), lineage);
  EXPECT_EQ(registry_->Get(key).code, ResponseCode::kHandleNotFound);
  // Cursors are read back by prefix.
  std::vector<std::string> keys;
  ASSERT_TRUE(registry_
                  ->ScanMeta(shard, "repl/top/",
                             [&keys](std::string_view k, std::string_view) {
                               keys.emplace_back(k);
                               return true;
                             })
                  .ok());
  EXPECT_EQ(keys, std::vector<std::string>{"repl/top/0"});
  // What a replicated change may never overwrite: a mirror's records and its derived prefixes'
  // handles are the owner's (applied); once taken over, they are this node's.
  const std::string derived_handle = identifier::Normalize("0.NA/88.300.1");
  EXPECT_FALSE(registry_->OwnedHere(key));
  EXPECT_FALSE(registry_->OwnedHere(derived_handle));
  // Taken over since the replica vetted its batch: the old owner's copy never lands.
  ASSERT_EQ(registry_->TakeOverPrefix("88.300").code, ResponseCode::kSuccess);
  EXPECT_TRUE(registry_->OwnedHere(key));
  EXPECT_TRUE(registry_->OwnedHere(derived_handle));
  record.set_version(8);
  ASSERT_TRUE(registry_
                  ->ApplyReplicated(shard, {{key, record.SerializeAsString()}},
                                    {{"repl/top/0", "cursor-2"}})
                  .ok());
  EXPECT_EQ(registry_->Get(key).code, ResponseCode::kHandleNotFound);
  EXPECT_EQ(*registry_->ReadMeta(shard, "repl/top/0"), std::optional<std::string>("cursor-2"));
}

TEST_F(RegistryTest, AMirrorsAnswerPolicyFollowsItsOwnersReachability) {
  ASSERT_EQ(registry_->MirrorPrefix("88.400", "top").code, ResponseCode::kSuccess);
  ASSERT_EQ(registry_->SetMirrorAnswerPolicy("88.400", prefix_flag::kReferWhileOwnerUp).code,
            ResponseCode::kSuccess);
  EXPECT_EQ(registry_->SetMirrorAnswerPolicy("88.100.1", prefix_flag::kReferToOwner).code,
            ResponseCode::kInvalidValue);  // homed, not a mirror
  EXPECT_EQ(registry_->MirrorPeerOf("88.400"), "top");
  auto entry = [&] { return *registry_->prefix_table().Snapshot()->Find("88.400"); };
  EXPECT_FALSE(MirrorAnswersLocally(entry(), true));  // the owner is (taken to be) up: refer
  registry_->SetPeerReachable("top", false);
  EXPECT_TRUE(entry().has(prefix_flag::kOwnerDown));
  EXPECT_TRUE(MirrorAnswersLocally(entry(), true));
  EXPECT_FALSE(MirrorAnswersLocally(entry(), false));  // node.answer_mirrored: false
  registry_->SetPeerReachable("top", true);
  EXPECT_FALSE(MirrorAnswersLocally(entry(), true));
  // The flag is runtime only; the policy is stored.
  registry_->SetPeerReachable("top", false);
  Reopen();
  EXPECT_FALSE(entry().has(prefix_flag::kOwnerDown));
  EXPECT_TRUE(entry().has(prefix_flag::kReferWhileOwnerUp));
}

}  // namespace
// idctl site split's step: shard s of a node with S shards holds only identifiers of server
// s mod N of a site of N servers (N | S), so a server's copy drops whole shards' identifiers (in
// chunks: 7 keys here, to cross chunk boundaries), keeps its own and every prefix handle.
TEST_F(RegistryTest, ASplitKeepsEachServersShareAndThePrefixHandles) {
  ASSERT_EQ(registry_->HomePrefix("88.100.1", {MakeValue(1, "DESC", "prefix")}).code,
            ResponseCode::kSuccess);
  std::vector<std::string> handles;
  for (int i = 0; i < 120; ++i) {
    handles.push_back("88.100.1/SPLIT" + std::to_string(i));
    ASSERT_EQ(registry_->Apply(Create(handles.back(), {MakeValue(1, "URL", "u")})).code,
              ResponseCode::kSuccess);
  }
  uint64_t in_other_shards = 0;
  for (const auto& h : handles) {
    const std::string key = identifier::Normalize(h);
    const uint32_t shard = registry_->ShardOf(key);
    // The shard and the server agree (4 shards, 2 servers).
    EXPECT_EQ(Registry::HashedToServer(key, 2, 1), shard % 2 == 1) << h;
    in_other_shards += shard % 2 == 0;
  }
  ASSERT_GT(in_other_shards, 14u);  // more than two chunks' worth
  uint64_t dropped = 0;
  for (uint32_t shard = 0; shard < 4; shard += 2) {
    auto r = registry_->DropOtherServersRecords(shard, 2, 1, /*chunk=*/7);
    ASSERT_TRUE(r.ok()) << r.error();
    dropped += *r;
  }
  EXPECT_EQ(dropped, in_other_shards);
  for (const auto& h : handles) {
    const bool kept = registry_->ShardOf(identifier::Normalize(h)) % 2 == 1;
    EXPECT_EQ(registry_->Get(h).code, kept ? ResponseCode::kSuccess : ResponseCode::kHandleNotFound)
        << h;
  }
  EXPECT_EQ(registry_->Get("0.NA/88.100.1").code, ResponseCode::kSuccess);
  // Dropping again finds nothing more.
  for (uint32_t shard = 0; shard < 4; shard += 2)
    EXPECT_EQ(*registry_->DropOtherServersRecords(shard, 2, 1, 7), 0u);
}

TEST_F(RegistryTest, ASitesServersDivideHomedAndMirroredIdentifiersOnly) {
  ASSERT_EQ(registry_->HomePrefix("88.100.1", {MakeValue(1, "DESC", "prefix")}).code,
            ResponseCode::kSuccess);
  ASSERT_EQ(registry_->MirrorPrefix("88.300", "top").code, ResponseCode::kSuccess);
  for (int i = 0; i < 64; ++i) {
    for (const std::string prefix : {"88.100.1", "88.300", "88.300.7"}) {
      const std::string key = identifier::Normalize(prefix + "/X" + std::to_string(i));
      int holders = 0;
      for (uint32_t k = 0; k < 3; ++k) {
        const bool held = registry_->HeldByServer(key, 3, k);
        EXPECT_EQ(held, Registry::HashedToServer(key, 3, k)) << key;
        holders += held;
      }
      EXPECT_EQ(holders, 1) << key;
    }
    // Neither homed nor mirrored here: not divided (nothing of it is stored by the hash).
    EXPECT_TRUE(
        registry_->HeldByServer(identifier::Normalize("88.999/X" + std::to_string(i)), 3, 1));
  }
  EXPECT_TRUE(registry_->HeldByServer(identifier::Normalize("0.NA/88.300.7"), 3, 2));
}

}  // namespace idnode::registry
