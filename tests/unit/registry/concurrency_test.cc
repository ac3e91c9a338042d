// Readers and writers on the same keys through the cache (run under TSan by `docker/dev.sh test`):
// once a write is acknowledged, no reader may be served the value it replaced, from the cache or
// anywhere else. Writers publish the version they had acknowledged; a reader notes the published
// version before it reads and must see at least that one.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "idnode/cache/answer_cache.h"
#include "idnode/protocol/message.h"
#include "idnode/registry/registry.h"
#include "registry_test_util.h"
#include "temp_dir.h"

namespace idnode::registry {
namespace {

using namespace testing;  // NOLINT

// The version number a record was written with, read back from its encoded answer.
long VersionIn(const std::vector<uint8_t>& wire) {
  protocol::WireReader reader(wire);
  auto values = protocol::ReadHandleValues(reader);
  if (!reader.ok() || values.empty()) return -1;
  return std::stol(std::string(values[0].data_as_text()));
}

TEST(Concurrency, NoStaleAnswerAfterAnAcknowledgedWrite) {
  ::idnode::testing::TempDir dir;
  cache::CacheOptions cache_options;
  cache_options.capacity_bytes = 1 << 20;
  cache_options.shard_count = 4;
  auto cache = std::make_shared<cache::AnswerCache>(cache_options);
  RegistryOptions options;
  options.storage.path = dir.sub("data");
  options.storage.shard_count = 2;
  options.storage.sync_writes = false;
  options.cache = cache;
  auto opened = Registry::Open(std::move(options));
  ASSERT_TRUE(opened.ok()) << opened.error();
  Registry& registry = **opened;
  ASSERT_EQ(registry.HomePrefix("88.100.1").code, ResponseCode::kSuccess);

  constexpr int kKeys = 4;
  constexpr int kWritesPerKey = 300;
  std::vector<std::atomic<long>> acknowledged(kKeys);
  for (int k = 0; k < kKeys; ++k) {
    ASSERT_EQ(
        registry.Apply(Create("88.100.1/K" + std::to_string(k), {MakeValue(1, "VER", "0")})).code,
        ResponseCode::kSuccess);
    acknowledged[k].store(0);
  }
  std::atomic<bool> done{false};
  std::atomic<long> stale{0}, reads{0};

  std::vector<std::thread> threads;
  for (int k = 0; k < kKeys; ++k) {
    threads.emplace_back([&, k] {
      for (long v = 1; v <= kWritesPerKey; ++v) {
        auto r = registry.Apply(WithValues(OpKind::kModifyValues, "88.100.1/K" + std::to_string(k),
                                           {MakeValue(1, "VER", std::to_string(v))}));
        if (r.code == ResponseCode::kSuccess) acknowledged[k].store(v, std::memory_order_release);
      }
    });
  }
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      std::vector<uint8_t> wire;
      int k = t % kKeys;
      while (!done.load(std::memory_order_acquire)) {
        long before = acknowledged[k].load(std::memory_order_acquire);
        if (registry.GetEncoded("88.100.1/K" + std::to_string(k), &wire) == ReadOutcome::kFound) {
          if (VersionIn(wire) < before) stale.fetch_add(1);
          reads.fetch_add(1);
        }
        k = (k + 1) % kKeys;
      }
    });
  }
  for (int k = 0; k < kKeys; ++k) threads[k].join();
  done.store(true, std::memory_order_release);
  for (size_t i = kKeys; i < threads.size(); ++i) threads[i].join();

  EXPECT_EQ(stale.load(), 0) << "stale answers out of " << reads.load() << " reads";
  EXPECT_GT(reads.load(), 0);
  EXPECT_GT(cache->stats().hits, 0u);  // the cache was really in the path
  for (int k = 0; k < kKeys; ++k) {
    std::vector<uint8_t> wire;
    ASSERT_EQ(registry.GetEncoded("88.100.1/K" + std::to_string(k), &wire), ReadOutcome::kFound);
    EXPECT_EQ(VersionIn(wire), kWritesPerKey);
  }
}

}  // namespace
}  // namespace idnode::registry
