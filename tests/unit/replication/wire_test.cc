// The replication stream's framing and the checks every received message passes (a peer is
// authenticated, not trusted): malformed frames and messages are refused with a reason.
#include "idnode/replication/wire.h"

#include <gtest/gtest.h>

namespace idnode::replication {
namespace {

std::vector<uint8_t> Body(const google::protobuf::MessageLite& m) {
  std::string s = m.SerializeAsString();
  return std::vector<uint8_t>(s.begin(), s.end());
}

proto::ReplicaMessage Hello(std::vector<std::string> prefixes) {
  proto::ReplicaMessage m;
  auto* h = m.mutable_hello();
  h->set_protocol_version(kProtocolVersion);
  for (auto& p : prefixes) h->add_prefixes(p);
  return m;
}

proto::SourceMessage Welcome(uint32_t shards) {
  proto::SourceMessage m;
  auto* w = m.mutable_welcome();
  w->set_protocol_version(kProtocolVersion);
  w->set_shard_count(shards);
  return m;
}

proto::Record Record(const std::string& handle) {
  proto::Record r;
  r.set_handle(handle);
  auto* v = r.add_values();
  v->set_index(1);
  v->set_type("URL");
  v->set_data("https://example.org/");
  return r;
}

TEST(ReplicationWireTest, FramesCarryTheirLengthAndRefuseTooLongOrEmptyOnes) {
  std::string out;
  ASSERT_TRUE(AppendFrame(Hello({"88.100"}), out));
  const std::array<uint8_t, 4> head{static_cast<uint8_t>(out[0]), static_cast<uint8_t>(out[1]),
                                    static_cast<uint8_t>(out[2]), static_cast<uint8_t>(out[3])};
  auto length = FrameLength(head, kMaxFrameBytes);
  ASSERT_TRUE(length.ok());
  EXPECT_EQ(*length + kFrameHeadBytes, out.size());
  EXPECT_FALSE(FrameLength(std::array<uint8_t, 4>{0, 0, 0, 0}, kMaxFrameBytes).ok());
  EXPECT_FALSE(FrameLength(std::array<uint8_t, 4>{0xff, 0xff, 0xff, 0xff}, kMaxFrameBytes).ok());
  EXPECT_FALSE(FrameLength(std::array<uint8_t, 4>{0, 0x10, 0, 1}, 1u << 20).ok());
  proto::ReplicaMessage empty;
  std::string nothing;
  EXPECT_FALSE(AppendFrame(empty, nothing));  // an empty message is never a frame
  EXPECT_TRUE(nothing.empty());
}

TEST(ReplicationWireTest, HellosAndAcksAreChecked) {
  EXPECT_TRUE(ParseReplicaMessage(Body(Hello({"88.100"})), 4).ok());
  EXPECT_FALSE(ParseReplicaMessage(Body(Hello({"88/100"})), 4).ok());
  EXPECT_FALSE(ParseReplicaMessage(Body(Hello({})), 4).ok());  // neither prefixes nor everything
  auto both = Hello({"88"});
  both.mutable_hello()->set_everything(true);
  EXPECT_FALSE(ParseReplicaMessage(Body(both), 4).ok());
  auto old = Hello({"88"});
  old.mutable_hello()->set_protocol_version(0);
  EXPECT_FALSE(ParseReplicaMessage(Body(old), 4).ok());

  // Which server of a mirror site asks: a position in a site of at most 1024.
  auto share = Hello({"88"});
  share.mutable_hello()->set_site_servers(3);
  share.mutable_hello()->set_site_server(2);
  EXPECT_TRUE(ParseReplicaMessage(Body(share), 4).ok());
  share.mutable_hello()->set_site_server(3);
  EXPECT_FALSE(ParseReplicaMessage(Body(share), 4).ok());
  share.mutable_hello()->set_site_servers(1025);
  share.mutable_hello()->set_site_server(0);
  EXPECT_FALSE(ParseReplicaMessage(Body(share), 4).ok());
  share.mutable_hello()->set_site_servers(0);
  share.mutable_hello()->set_site_server(1);
  EXPECT_FALSE(ParseReplicaMessage(Body(share), 4).ok());

  auto positioned = Hello({"88"});
  auto* p = positioned.mutable_hello()->add_positions();
  p->set_shard(3);
  p->set_sequence(10);
  EXPECT_TRUE(ParseReplicaMessage(Body(positioned), 4).ok());
  EXPECT_FALSE(ParseReplicaMessage(Body(positioned), 3).ok());  // no shard 3 there
  *positioned.mutable_hello()->add_positions() = *p;
  EXPECT_FALSE(ParseReplicaMessage(Body(positioned), 4).ok());  // shard 3 twice
  auto long_lineage = Hello({"88"});
  long_lineage.mutable_hello()->add_positions()->set_lineage_id(std::string(65, 'a'));
  EXPECT_FALSE(ParseReplicaMessage(Body(long_lineage), 4).ok());

  proto::ReplicaMessage ack;
  ack.mutable_ack()->set_bytes(100);
  EXPECT_TRUE(ParseReplicaMessage(Body(ack), 4).ok());
  ack.mutable_ack()->add_positions()->set_shard(9);
  EXPECT_FALSE(ParseReplicaMessage(Body(ack), 4).ok());

  EXPECT_FALSE(ParseReplicaMessage(std::vector<uint8_t>{}, 4).ok());
  EXPECT_FALSE(ParseReplicaMessage(std::vector<uint8_t>{0xff, 0xff, 0xff}, 4).ok());
}

TEST(ReplicationWireTest, OnlyAWelcomeOrARefusalComesFirst) {
  EXPECT_TRUE(ParseSourceMessage(Body(Welcome(8)), 0).ok());
  EXPECT_FALSE(ParseSourceMessage(Body(Welcome(8)), 8).ok());  // a second welcome
  EXPECT_FALSE(ParseSourceMessage(Body(Welcome(0)), 0).ok());
  EXPECT_FALSE(ParseSourceMessage(Body(Welcome(kMaxShards + 1)), 0).ok());
  auto bad_snapshot = Welcome(2);
  bad_snapshot.mutable_welcome()->add_snapshot_shards(2);
  EXPECT_FALSE(ParseSourceMessage(Body(bad_snapshot), 0).ok());
  proto::SourceMessage refusal;
  refusal.mutable_refusal()->set_reason("no");
  EXPECT_TRUE(ParseSourceMessage(Body(refusal), 0).ok());
  proto::SourceMessage heartbeat;
  heartbeat.mutable_heartbeat()->set_time_ms(1);
  EXPECT_FALSE(ParseSourceMessage(Body(heartbeat), 0).ok());
  EXPECT_TRUE(ParseSourceMessage(Body(heartbeat), 4).ok());
}

TEST(ReplicationWireTest, SnapshotChunksAreRecordsInKeyOrder) {
  proto::SourceMessage m;
  auto* chunk = m.mutable_snapshot_chunk();
  chunk->set_shard(1);
  chunk->add_records(Record("88.100/a").SerializeAsString());
  chunk->add_records(Record("88.100/B").SerializeAsString());
  std::vector<std::string> keys;
  auto parsed = ParseSourceMessage(Body(m), 4, &keys);
  ASSERT_TRUE(parsed.ok()) << parsed.error();
  EXPECT_EQ(keys, (std::vector<std::string>{"88.100/A", "88.100/B"}));
  chunk->add_records(Record("88.100/A").SerializeAsString());  // out of order (and repeated)
  EXPECT_FALSE(ParseSourceMessage(Body(m), 4, &keys).ok());
  chunk->clear_records();
  chunk->add_records("\xff\xff");  // not a record
  EXPECT_FALSE(ParseSourceMessage(Body(m), 4, &keys).ok());
  chunk->clear_records();
  chunk->add_records(Record("no-slash").SerializeAsString());  // not a handle
  EXPECT_FALSE(ParseSourceMessage(Body(m), 4, &keys).ok());
  chunk->clear_records();
  chunk->set_shard(4);
  EXPECT_FALSE(ParseSourceMessage(Body(m), 4, &keys).ok());
}

TEST(ReplicationWireTest, ChangesAreInOrderWithinTheirPositionAndWellFormed) {
  proto::SourceMessage m;
  auto* changes = m.mutable_changes();
  changes->set_shard(0);
  changes->set_through(12);
  auto* put = changes->add_entries();
  put->set_sequence(10);
  put->set_operation(proto::ChangelogEntry::PUT);
  put->set_handle("88.100/A");
  *put->mutable_record() = Record("88.100/a");
  auto* del = changes->add_entries();
  del->set_sequence(12);
  del->set_operation(proto::ChangelogEntry::DELETE);
  del->set_handle("88.100/B");
  ASSERT_TRUE(ParseSourceMessage(Body(m), 1).ok());

  auto out_of_order = m;
  out_of_order.mutable_changes()->mutable_entries(1)->set_sequence(9);
  EXPECT_FALSE(ParseSourceMessage(Body(out_of_order), 1).ok());
  auto beyond = m;
  beyond.mutable_changes()->set_through(11);
  EXPECT_FALSE(ParseSourceMessage(Body(beyond), 1).ok());
  auto mismatched = m;  // the record is not the entry's handle
  mismatched.mutable_changes()->mutable_entries(0)->set_handle("88.100/Z");
  EXPECT_FALSE(ParseSourceMessage(Body(mismatched), 1).ok());
  auto unnormalised = m;
  unnormalised.mutable_changes()->mutable_entries(1)->set_handle("88.100/b");
  EXPECT_FALSE(ParseSourceMessage(Body(unnormalised), 1).ok());
  auto unknown = m;
  unknown.mutable_changes()->mutable_entries(1)->set_operation(
      proto::ChangelogEntry::OPERATION_UNSPECIFIED);
  EXPECT_FALSE(ParseSourceMessage(Body(unknown), 1).ok());
  auto prefix = m;
  prefix.mutable_changes()->mutable_entries(1)->set_operation(proto::ChangelogEntry::PREFIX);
  EXPECT_FALSE(ParseSourceMessage(Body(prefix), 1).ok());  // without its state
  prefix.mutable_changes()->mutable_entries(1)->mutable_prefix_state()->set_prefix("88.100");
  EXPECT_TRUE(ParseSourceMessage(Body(prefix), 1).ok());
}

}  // namespace
}  // namespace idnode::replication
