#include "idnode/storage/store.h"

#include <gtest/gtest.h>

#include "temp_dir.h"

namespace idnode::storage {
namespace {

StorageOptions Options(const std::string& path, uint32_t shards = 2) {
  StorageOptions o;
  o.path = path;
  o.shard_count = shards;
  o.sync_writes = false;
  o.block_cache_bytes = 4 << 20;
  return o;
}

TEST(Store, BatchesCommitTogetherAcrossColumns) {
  ::idnode::testing::TempDir dir;
  auto store = Store::Open(Options(dir.sub("d")));
  ASSERT_TRUE(store.ok()) << store.error().message;
  Batch batch;
  batch.Put(Column::kRecords, "A/1", "record");
  batch.Put(Column::kChangelog, EncodeSequenceKey(1), "entry");
  batch.Put(Column::kMeta, "seq", EncodeSequenceKey(1));
  EXPECT_EQ(batch.count(), 3u);
  ASSERT_TRUE((*store)->Write(1, batch).ok());
  std::string value;
  EXPECT_TRUE(*(*store)->Get(1, Column::kRecords, "A/1", &value));
  EXPECT_EQ(value, "record");
  EXPECT_FALSE(*(*store)->Get(0, Column::kRecords, "A/1", &value));  // another shard
  EXPECT_FALSE(*(*store)->Get(1, Column::kMeta, "A/1", &value));     // another column
  EXPECT_TRUE(*(*store)->Get(1, Column::kMeta, "seq", &value));
  EXPECT_EQ(DecodeSequenceKey(value), 1u);
}

TEST(Store, ScanRangesSnapshotsAndRangeDeletes) {
  ::idnode::testing::TempDir dir;
  auto store = std::move(*Store::Open(Options(dir.sub("d"))));
  Batch batch;
  for (uint64_t s = 1; s <= 10; ++s)
    batch.Put(Column::kChangelog, EncodeSequenceKey(s), std::to_string(s));
  ASSERT_TRUE(store->Write(0, batch).ok());
  auto snapshot = store->TakeSnapshot(0);
  Batch trim;
  trim.DeleteRange(Column::kChangelog, EncodeSequenceKey(1), EncodeSequenceKey(6));
  ASSERT_TRUE(store->Write(0, trim).ok());
  std::vector<uint64_t> now, then;
  ASSERT_TRUE(store
                  ->Scan(0, Column::kChangelog, EncodeSequenceKey(0), {},
                         [&](std::string_view k, std::string_view) {
                           now.push_back(DecodeSequenceKey(k));
                           return true;
                         })
                  .ok());
  EXPECT_EQ(now, (std::vector<uint64_t>{6, 7, 8, 9, 10}));
  ASSERT_TRUE(store
                  ->Scan(
                      0, Column::kChangelog, EncodeSequenceKey(3), EncodeSequenceKey(5),
                      [&](std::string_view k, std::string_view) {
                        then.push_back(DecodeSequenceKey(k));
                        return true;
                      },
                      snapshot.get())
                  .ok());
  EXPECT_EQ(then, (std::vector<uint64_t>{3, 4}));  // the snapshot still sees what was trimmed
  EXPECT_LT(EncodeSequenceKey(255), EncodeSequenceKey(256));  // numeric order is byte order
}

TEST(Store, IngestsSortedRecords) {
  ::idnode::testing::TempDir dir;
  auto store = std::move(*Store::Open(Options(dir.sub("d"))));
  std::vector<std::pair<std::string, std::string>> sorted{
      {"A/1", "one"}, {"A/2", "two"}, {"B/1", "three"}};
  ASSERT_TRUE(store->IngestSorted(1, Column::kRecords, sorted).ok());
  std::string value;
  EXPECT_TRUE(*store->Get(1, Column::kRecords, "A/2", &value));
  EXPECT_EQ(value, "two");
  std::vector<std::pair<std::string, std::string>> unsorted{{"Z", "1"}, {"A", "2"}};
  EXPECT_FALSE(
      store->IngestSorted(1, Column::kRecords, unsorted).ok());  // an error value, not a crash
  auto multi = store->MultiGet(1, Column::kRecords, {"A/1", "nope", "B/1"});
  ASSERT_TRUE(multi.ok());
  EXPECT_EQ((*multi)[0], std::optional<std::string>("one"));
  EXPECT_FALSE((*multi)[1].has_value());
  EXPECT_GT(store->Stats(1).estimated_keys, 0u);
}

TEST(Store, RefusesAnotherShardCountAndBadOptions) {
  ::idnode::testing::TempDir dir;
  { ASSERT_TRUE(Store::Open(Options(dir.sub("d"), 4)).ok()); }
  auto reopened = Store::Open(Options(dir.sub("d"), 8));
  ASSERT_FALSE(reopened.ok());
  EXPECT_EQ(reopened.error().code, StorageError::Code::kInvalidArgument);
  EXPECT_NE(reopened.error().message.find("4 shards"), std::string::npos);
  EXPECT_FALSE(Store::Open(Options(dir.sub("e"), 0)).ok());
  StorageOptions missing = Options(dir.sub("f"));
  missing.create_if_missing = false;
  EXPECT_FALSE(Store::Open(missing).ok());
}

}  // namespace
}  // namespace idnode::storage
