// JSON Lines records (HANDLE.md §2 shapes) and the bulk import/export paths.
#include <gtest/gtest.h>

#include <sstream>

#include "idnode/protocol/value_types.h"
#include "idnode/registry/bulk.h"
#include "idnode/registry/json_records.h"
#include "registry_test_util.h"
#include "temp_dir.h"

namespace idnode::registry {
namespace {

using namespace testing;  // NOLINT

constexpr std::string_view kReferenceLine =
    R"({"handle":"20.500.12345/test1","values":[{"index":1,"type":"URL","data":{"format":"string","value":"https://example.org/item/1"},"ttl":86400,"timestamp":"2026-11-25T17:16:47Z"},{"index":2,"type":"EMAIL","data":{"format":"string","value":"someone@example.org"},"ttl":86400,"timestamp":"2026-11-25T17:16:47Z"},{"index":3,"type":"DESC","data":{"format":"string","value":"industrial identifier test record"},"ttl":86400,"timestamp":"2026-11-25T17:16:47Z"},{"index":100,"type":"HS_ADMIN","data":{"format":"admin","value":{"handle":"0.NA/20.500.12345","index":300,"permissions":"111111111111"}},"ttl":86400,"timestamp":"2026-11-25T17:16:47Z"}]})";

TEST(JsonRecords, ReadsTheReferenceRecordAndWritesItBackExactly) {
  auto record = RecordFromJson(kReferenceLine, 1);
  ASSERT_TRUE(record.ok()) << record.error();
  EXPECT_EQ(record->handle(), "20.500.12345/test1");
  ASSERT_EQ(record->values_size(), 4);
  EXPECT_EQ(record->values(0).data(), "https://example.org/item/1");
  EXPECT_EQ(record->values(0).timestamp(), 1795627007u);  // the captured wire timestamp
  EXPECT_EQ(record->values(0).ttl(), 86400);
  EXPECT_EQ(record->values(0).permissions(), 0x0eu);
  // HS_ADMIN: the same bytes as on the wire in vector 01 (0fff 00000011 "0.NA/20.500.12345"
  // 0000012c).
  const std::string& admin = record->values(3).data();
  auto decoded =
      protocol::DecodeAdminRecord({reinterpret_cast<const uint8_t*>(admin.data()), admin.size()});
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->permissions, 0x0fff);
  EXPECT_EQ(decoded->admin_handle, "0.NA/20.500.12345");
  EXPECT_EQ(decoded->admin_index, 300);
  EXPECT_EQ(RecordToJson(*record), kReferenceLine);
}

TEST(JsonRecords, EveryDataFormatRoundTrips) {
  proto::Record record;
  record.set_handle("88.100.1/F");
  *record.add_values() = MakeValue(1, "URL", "https://x");
  *record.add_values() = MakeValue(2, "BIN", std::string("\x00\xff\x01", 3));
  *record.add_values() = MakeValue(3, "HS_SITE", "site bytes are always base64");
  std::vector<protocol::ValueReference> members{{"0.NA/88.100.1", 300}, {"88.100.1/ADMIN", 301}};
  auto vlist = protocol::EncodeValueList(members);
  *record.add_values() = MakeValue(4, "HS_VLIST", std::string(vlist.begin(), vlist.end()));
  proto::Value secret = MakeValue(5, "HS_SECKEY", "s3cret", 0x0c);
  secret.set_ttl_absolute(true);
  secret.set_ttl(1900000000);
  auto* ref = secret.add_references();
  ref->set_handle("88.100.1/REF");
  ref->set_index(7);
  *record.add_values() = secret;
  std::string json = RecordToJson(record);
  EXPECT_NE(json.find(R"("format":"base64")"), std::string::npos);
  EXPECT_NE(json.find(R"("format":"vlist")"), std::string::npos);
  EXPECT_NE(json.find(R"("permissions":"1100")"), std::string::npos);
  EXPECT_NE(json.find(R"("ttl":"2030-03-17T17:46:40Z")"), std::string::npos);
  auto back = RecordFromJson(json, 0);
  ASSERT_TRUE(back.ok()) << back.error();
  record.set_version(1);
  EXPECT_EQ(back->SerializeAsString(), record.SerializeAsString());
  // hex is read too
  auto hex = RecordFromJson(
      R"({"handle":"a/b","values":[{"index":1,"type":"X","data":{"format":"hex","value":"00ff"}}]})",
      5);
  ASSERT_TRUE(hex.ok());
  EXPECT_EQ(hex->values(0).data(), std::string("\x00\xff", 2));
  EXPECT_EQ(hex->values(0).timestamp(), 5u);  // defaults to now
}

TEST(JsonRecords, BadLinesSayWhatIsWrong) {
  for (
      auto [line, expected] : std::vector<std::pair<std::string, std::string>>{
          {"not json", "not JSON"},
          {"[1,2]", "JSON object"},
          {R"({"values":[]})", "handle"},
          {R"({"handle":"a/b"})", "values"},
          {R"({"handle":"a/b","values":[{"type":"URL","data":{"format":"string","value":"x"}}]})",
           "index"},
          {R"({"handle":"a/b","values":[{"index":1.5,"type":"URL","data":{"format":"string","value":"x"}}]})",
           "index"},
          {R"({"handle":"a/b","values":[{"index":1,"data":{"format":"string","value":"x"}}]})",
           "type"},
          {R"({"handle":"a/b","values":[{"index":1,"type":"URL","data":{"format":"base64","value":"!!"}}]})",
           "base64"},
          {R"({"handle":"a/b","values":[{"index":1,"type":"X","data":{"format":"hex","value":"0g"}}]})",
           "bad hex"},
          {R"({"handle":"a/b","values":[{"index":1,"type":"X","data":{"format":"hex","value":"abc"}}]})",
           "bad hex"},
          {R"({"handle":"a/b","values":[{"index":1,"type":"URL","data":{"format":"site","value":{}}}]})",
           "not supported"},
          {R"({"handle":"a/b","values":[{"index":1,"type":"URL","data":{"format":"string","value":"x"},"timestamp":"yesterday"}]})",
           "timestamp"},
          {std::string(100, '[') + std::string(100, ']'), "not JSON"},  // depth bomb
      }) {
    auto r = RecordFromJson(line, 0);
    ASSERT_FALSE(r.ok()) << line;
    EXPECT_NE(r.error().find(expected), std::string::npos) << line << " -> " << r.error();
  }
}

TEST(Bulk, ImportReportsBadLinesLastWinsAndExportRoundTrips) {
  ::idnode::testing::TempDir dir;
  auto open = [&](const std::string& name) {
    RegistryOptions options;
    options.storage.path = dir.sub(name);
    options.storage.shard_count = 4;
    options.storage.sync_writes = false;
    auto r = Registry::Open(std::move(options));
    EXPECT_TRUE(r.ok());
    return std::move(*r);
  };
  std::ostringstream input;
  for (int i = 0; i < 1000; ++i) {
    input << R"({"handle":"88.100.1/N)" << i
          << R"(","values":[{"index":1,"type":"URL","data":{"format":"string","value":"v)" << i
          << R"("}}]})"
          << "\n";
  }
  input << "garbage line\n";  // line 1001
  input
      << R"({"handle":"88.100.1/N5","values":[{"index":1,"type":"URL","data":{"format":"string","value":"last"}}]})"
      << "\n";  // 1002: wins
  input << R"({"handle":"bad handle","values":[]})"
        << "\n";  // 1003
  input
      << R"({"handle":"88.100.1/DUP","values":[{"index":1,"type":"A","data":{"format":"string","value":"x"}},{"index":1,"type":"B","data":{"format":"string","value":"y"}}]})"
      << "\n";  // 1004
  auto a = open("a");
  std::vector<uint64_t> bad;
  ImportOptions options;
  options.chunk_bytes = 30000;  // several chunks: later chunks ingest into non-empty shards
  options.on_bad_line = [&](uint64_t line, const std::string&) { bad.push_back(line); };
  std::istringstream in(input.str());
  auto result = ImportJsonLines(*a, in, options);
  ASSERT_TRUE(result.ok()) << result.error();
  EXPECT_EQ(bad, (std::vector<uint64_t>{1001, 1003, 1004}));
  EXPECT_EQ(result->bad_lines, 3u);
  EXPECT_EQ(a->Get("88.100.1/N5").record.values(0).data(), "last");
  EXPECT_EQ(a->Get("88.100.1/N999").record.values(0).data(), "v999");

  // Export, import into a node that already holds data (the batched-write path), compare digests.
  std::ostringstream exported;
  auto count = ExportJsonLines(*a, "88.100.1", exported);
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, 1000u);
  auto b = open("b");
  ASSERT_EQ(b->HomePrefix("88.100.1").code, protocol::ResponseCode::kSuccess);
  ASSERT_EQ(b->Apply(Create("88.100.1/N0", {MakeValue(1, "URL", "to be replaced")})).code,
            protocol::ResponseCode::kSuccess);
  uint64_t sequence_before = 0;
  for (uint32_t s = 0; s < b->shard_count(); ++s) sequence_before += b->LastSequence(s);
  std::istringstream again(exported.str());
  ASSERT_TRUE(ImportJsonLines(*b, again, {}).ok());
  uint64_t sequence_after = 0;
  for (uint32_t s = 0; s < b->shard_count(); ++s) sequence_after += b->LastSequence(s);
  EXPECT_GT(sequence_after, sequence_before);  // batched writes went through the changelog
  EXPECT_EQ(a->ComputeDigest("88.100.1")->hex(), b->ComputeDigest("88.100.1")->hex());
}

}  // namespace
}  // namespace idnode::registry
