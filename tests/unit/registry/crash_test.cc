// Durability (HARDENING.md rows I and J):
//  1. A child process writes through the registry and reports each acknowledged write; it is
//     killed with SIGKILL at a random moment, the registry is reopened, and every acknowledged
//     write is there, with a changelog without holes. IDNODE_CRASH_ROUNDS sets the rounds
//     (20 by default; the nightly mode runs 200).
//  2. A kill does not test fsync (the page cache survives it), so a FileSystemWrapper keeps track
//     of what was synced and, at the simulated crash, truncates every file to its synced length,
//     as a power cut would. With sync on, nothing acknowledged may be lost.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <rocksdb/file_system.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "idnode/identifier/identifier.h"
#include "idnode/registry/registry.h"
#include "registry_test_util.h"
#include "temp_dir.h"

namespace idnode::registry {
namespace {

using namespace testing;  // NOLINT

int Rounds() {
  const char* env = std::getenv("IDNODE_CRASH_ROUNDS");
  return env ? std::max(1, std::atoi(env)) : 20;
}

std::unique_ptr<Registry> OpenRegistry(const std::string& path,
                                       std::shared_ptr<rocksdb::FileSystem> fs = nullptr,
                                       bool sync = true) {
  RegistryOptions options;
  options.storage.path = path;
  options.storage.shard_count = 4;
  options.storage.sync_writes = sync;
  options.storage.block_cache_bytes = 8 << 20;
  options.storage.file_system = std::move(fs);
  options.storage.avoid_flush_on_close = options.storage.file_system != nullptr;
  auto opened = Registry::Open(std::move(options));
  EXPECT_TRUE(opened.ok()) << (opened.ok() ? "" : opened.error());
  return opened.ok() ? std::move(*opened) : nullptr;
}

// Every shard's changelog, from its first retained entry to its last, is readable in one piece.
void ExpectChangelogWithoutHoles(Registry& registry) {
  for (uint32_t shard = 0; shard < registry.shard_count(); ++shard) {
    uint64_t first = registry.FirstRetainedSequence(shard);
    uint64_t expected = first;
    auto next = registry.ReadChangelog(shard, first, SIZE_MAX, [&](const proto::ChangelogEntry& e) {
      EXPECT_EQ(e.sequence(), expected);
      ++expected;
      return true;
    });
    ASSERT_TRUE(next.ok()) << next.error();
    EXPECT_EQ(*next, registry.LastSequence(shard) + 1) << "shard " << shard;
  }
}

TEST(CrashTest, KillNineLosesNoAcknowledgedWrite) {
  ::idnode::testing::TempDir dir;
  const std::string data = dir.sub("data");
  std::mt19937 rng(12345);
  std::set<long> acknowledged;
  long next_id = 0;
  const int rounds = Rounds();
  for (int round = 0; round < rounds; ++round) {
    int out[2];
    ASSERT_EQ(pipe(out), 0);
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      dup2(out[1], STDOUT_FILENO);
      close(out[0]);
      close(out[1]);
      std::string first = std::to_string(next_id);
      execl(IDNODE_CRASH_WRITER, IDNODE_CRASH_WRITER, data.c_str(), first.c_str(), nullptr);
      _exit(127);
    }
    close(out[1]);
    FILE* in = fdopen(out[0], "r");
    char line[64];
    ASSERT_NE(fgets(line, sizeof(line), in), nullptr) << "writer did not start";
    ASSERT_STREQ(line, "ready\n");
    // Let it write for a random time, then kill it mid-flight.
    std::this_thread::sleep_for(
        std::chrono::milliseconds(std::uniform_int_distribution<int>(20, 150)(rng)));
    kill(child, SIGKILL);
    int status = 0;
    waitpid(child, &status, 0);
    EXPECT_TRUE(WIFSIGNALED(status)) << "the writer stopped on its own in round " << round;
    // Whatever it printed before dying was acknowledged (a partial last line was not).
    while (fgets(line, sizeof(line), in) != nullptr) {
      std::string s(line);
      if (s.empty() || s.back() != '\n') break;
      long id = std::atol(line);
      acknowledged.insert(id);
      next_id = std::max(next_id, id + 1);
    }
    fclose(in);
    next_id += 1000;  // a write in flight when killed may or may not have landed: skip its id

    auto registry = OpenRegistry(data);
    ASSERT_NE(registry, nullptr) << "round " << round;
    size_t missing = 0;
    for (long id : acknowledged) {
      if (registry->Get("CRASH/" + std::to_string(id)).code != ResponseCode::kSuccess) ++missing;
    }
    ASSERT_EQ(missing, 0u) << "round " << round << ": acknowledged writes lost";
    ExpectChangelogWithoutHoles(*registry);
  }
  EXPECT_GT(acknowledged.size(), static_cast<size_t>(rounds));  // the test did write
  std::printf("%d rounds, %zu acknowledged writes, 0 lost\n", rounds, acknowledged.size());
}

// ---- power loss: drop what was not synced -------------------------------------------------------

// Remembers, for every file written through it, how many bytes were synced; DropUnsyncedData()
// truncates each to that length (RocksDB's own sync_fault_injection does the same).
class DropUnsyncedFileSystem : public rocksdb::FileSystemWrapper {
 public:
  explicit DropUnsyncedFileSystem(std::shared_ptr<rocksdb::FileSystem> base)
      : FileSystemWrapper(std::move(base)) {}
  const char* Name() const override { return "DropUnsyncedFileSystem"; }

  rocksdb::IOStatus NewWritableFile(const std::string& fname, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override {
    auto s = target()->NewWritableFile(fname, options, result, dbg);
    if (s.ok()) Track(fname, result, 0);
    return s;
  }
  rocksdb::IOStatus ReopenWritableFile(const std::string& fname,
                                       const rocksdb::FileOptions& options,
                                       std::unique_ptr<rocksdb::FSWritableFile>* result,
                                       rocksdb::IODebugContext* dbg) override {
    std::error_code ec;
    uint64_t size = std::filesystem::exists(fname, ec) ? std::filesystem::file_size(fname, ec) : 0;
    auto s = target()->ReopenWritableFile(fname, options, result, dbg);
    if (s.ok()) Track(fname, result, size);
    return s;
  }
  rocksdb::IOStatus RenameFile(const std::string& src, const std::string& dst,
                               const rocksdb::IOOptions& options,
                               rocksdb::IODebugContext* dbg) override {
    auto s = target()->RenameFile(src, dst, options, dbg);
    std::lock_guard lock(mutex_);
    if (s.ok() && files_.count(src)) {
      files_[dst] = files_[src];
      files_.erase(src);
    }
    return s;
  }

  void DropUnsyncedData() {
    std::lock_guard lock(mutex_);
    for (const auto& [name, state] : files_) {
      std::error_code ec;
      if (std::filesystem::exists(name, ec) &&
          std::filesystem::file_size(name, ec) > state->synced) {
        std::filesystem::resize_file(name, state->synced, ec);
        ++dropped_files_;
      }
    }
    files_.clear();
  }
  int dropped_files() const { return dropped_files_; }

 private:
  struct FileState {
    std::mutex mutex;
    uint64_t size = 0;
    uint64_t synced = 0;
  };

  class TrackingFile : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    TrackingFile(std::unique_ptr<rocksdb::FSWritableFile>&& file, std::shared_ptr<FileState> state)
        : FSWritableFileOwnerWrapper(std::move(file)), state_(std::move(state)) {}
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                             rocksdb::IODebugContext* dbg) override {
      auto s = target()->Append(data, options, dbg);
      std::lock_guard lock(state_->mutex);
      if (s.ok()) state_->size += data.size();
      return s;
    }
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                             const rocksdb::DataVerificationInfo& info,
                             rocksdb::IODebugContext* dbg) override {
      auto s = target()->Append(data, options, info, dbg);
      std::lock_guard lock(state_->mutex);
      if (s.ok()) state_->size += data.size();
      return s;
    }
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& options,
                           rocksdb::IODebugContext* dbg) override {
      auto s = target()->Sync(options, dbg);
      MarkSynced(s);
      return s;
    }
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions& options,
                            rocksdb::IODebugContext* dbg) override {
      auto s = target()->Fsync(options, dbg);
      MarkSynced(s);
      return s;
    }
    rocksdb::IOStatus Close(const rocksdb::IOOptions& options,
                            rocksdb::IODebugContext* dbg) override {
      return target()->Close(options, dbg);  // closing does not make data durable
    }

   private:
    void MarkSynced(const rocksdb::IOStatus& s) {
      std::lock_guard lock(state_->mutex);
      if (s.ok()) state_->synced = state_->size;
    }
    std::shared_ptr<FileState> state_;
  };

  void Track(const std::string& fname, std::unique_ptr<rocksdb::FSWritableFile>* file,
             uint64_t existing) {
    auto state = std::make_shared<FileState>();
    state->size = state->synced = existing;
    {
      std::lock_guard lock(mutex_);
      files_[fname] = state;
    }
    *file = std::make_unique<TrackingFile>(std::move(*file), state);
  }

  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<FileState>> files_;
  int dropped_files_ = 0;
};

// Runs `rounds` power cuts; returns how many acknowledged writes were lost.
size_t PowerCutRounds(bool sync, int rounds, size_t* acknowledged_total) {
  ::idnode::testing::TempDir dir;
  const std::string data = dir.sub("data");
  std::mt19937 rng(sync ? 99 : 98);
  std::vector<long> acknowledged;
  long next_id = 0;
  size_t lost = 0;
  for (int round = 0; round < rounds; ++round) {
    auto fs = std::make_shared<DropUnsyncedFileSystem>(rocksdb::FileSystem::Default());
    {
      auto registry = OpenRegistry(data, fs, sync);
      if (registry == nullptr) return SIZE_MAX;
      if (!registry->FindPrefix("CRASH")) registry->HomePrefix("CRASH");
      int writes = std::uniform_int_distribution<int>(5, 60)(rng);
      for (int i = 0; i < writes; ++i, ++next_id) {
        auto r =
            registry->Apply(Create("CRASH/" + std::to_string(next_id), {MakeValue(1, "URL", "u")}));
        if (r.code == ResponseCode::kSuccess) acknowledged.push_back(next_id);
      }
      // The process "dies": no flush of memtables on close, then unsynced bytes vanish.
    }
    fs->DropUnsyncedData();
    auto registry = OpenRegistry(data, nullptr, sync);
    if (registry == nullptr) return SIZE_MAX;
    std::vector<long> survivors;
    for (long id : acknowledged) {
      if (registry->Get("CRASH/" + std::to_string(id)).code == ResponseCode::kSuccess)
        survivors.push_back(id);
    }
    lost += acknowledged.size() - survivors.size();
    // Survivors are a prefix of what was acknowledged: no holes.
    for (size_t i = 0; i < survivors.size(); ++i) {
      if (survivors[i] != acknowledged[i]) return SIZE_MAX - 1;
    }
    acknowledged = survivors;
    ExpectChangelogWithoutHoles(*registry);
  }
  *acknowledged_total = acknowledged.size();
  return lost;
}

TEST(CrashTest, PowerCutWithSyncLosesNothing) {
  size_t acknowledged = 0;
  size_t lost = PowerCutRounds(/*sync=*/true, Rounds(), &acknowledged);
  EXPECT_EQ(lost, 0u);
  EXPECT_GT(acknowledged, 0u);
  std::printf("%d power cuts with sync: %zu acknowledged writes, 0 lost\n", Rounds(), acknowledged);
}

// The control: without sync the same cuts do lose acknowledged writes, which shows the wrapper
// really drops unsynced data (otherwise the test above would prove nothing).
TEST(CrashTest, PowerCutWithoutSyncLosesWritesSoTheHarnessIsReal) {
  size_t acknowledged = 0;
  size_t lost = PowerCutRounds(/*sync=*/false, 3, &acknowledged);
  ASSERT_LT(lost, SIZE_MAX - 1);
  EXPECT_GT(lost, 0u);
}

// ---- disk full ----------------------------------------------------------------------------------

// Fails every append with ENOSPC while `full` is set (HARDENING.md row I (iii), row J).
class FullDiskFileSystem : public rocksdb::FileSystemWrapper {
 public:
  explicit FullDiskFileSystem(std::shared_ptr<rocksdb::FileSystem> base)
      : FileSystemWrapper(std::move(base)) {}
  const char* Name() const override { return "FullDiskFileSystem"; }
  std::atomic<bool> full{false};

  rocksdb::IOStatus NewWritableFile(const std::string& fname, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override {
    auto s = target()->NewWritableFile(fname, options, result, dbg);
    if (s.ok()) *result = std::make_unique<File>(std::move(*result), this);
    return s;
  }

 private:
  class File : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    File(std::unique_ptr<rocksdb::FSWritableFile>&& file, FullDiskFileSystem* fs)
        : FSWritableFileOwnerWrapper(std::move(file)), fs_(fs) {}
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                             rocksdb::IODebugContext* dbg) override {
      if (fs_->full.load()) return rocksdb::IOStatus::NoSpace("injected: disk full");
      return target()->Append(data, options, dbg);
    }
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                             const rocksdb::DataVerificationInfo& info,
                             rocksdb::IODebugContext* dbg) override {
      if (fs_->full.load()) return rocksdb::IOStatus::NoSpace("injected: disk full");
      return target()->Append(data, options, info, dbg);
    }

   private:
    FullDiskFileSystem* fs_;
  };
};

TEST(CrashTest, DiskFullRefusesWritesKeepsReadsAndLosesNothing) {
  ::idnode::testing::TempDir dir;
  const std::string data = dir.sub("data");
  auto fs = std::make_shared<FullDiskFileSystem>(rocksdb::FileSystem::Default());
  std::vector<std::string> acknowledged;
  {
    RegistryOptions options;
    options.storage.path = data;
    options.storage.shard_count = 4;
    options.storage.sync_writes = true;
    options.storage.file_system = fs;
    auto opened = Registry::Open(std::move(options));
    ASSERT_TRUE(opened.ok()) << opened.error();
    Registry& registry = **opened;
    ASSERT_EQ(registry.HomePrefix("FULL").code, ResponseCode::kSuccess);
    for (int i = 0; i < 20; ++i) {
      std::string handle = "FULL/" + std::to_string(i);
      ASSERT_EQ(registry.Apply(Create(handle, {MakeValue(1, "URL", "u")})).code,
                ResponseCode::kSuccess);
      acknowledged.push_back(handle);
    }
    fs->full = true;
    EXPECT_EQ(registry.Apply(Create("FULL/refused", {MakeValue(1, "URL", "u")})).code,
              ResponseCode::kError);
    EXPECT_TRUE(registry.write_failed());
    fs->full = false;  // space comes back: this process still refuses until restarted
    EXPECT_EQ(registry.Apply(Create("FULL/after", {MakeValue(1, "URL", "u")})).code,
              ResponseCode::kError);
    for (const auto& handle : acknowledged)
      EXPECT_EQ(registry.Get(handle).code, ResponseCode::kSuccess);  // reads served
  }
  auto registry = OpenRegistry(data);
  ASSERT_NE(registry, nullptr);
  for (const auto& handle : acknowledged)
    EXPECT_EQ(registry->Get(handle).code, ResponseCode::kSuccess) << handle;
  EXPECT_EQ(registry->Get("FULL/refused").code, ResponseCode::kHandleNotFound);
  EXPECT_EQ(registry->Get("FULL/after").code, ResponseCode::kHandleNotFound);
  ExpectChangelogWithoutHoles(*registry);
  EXPECT_EQ(registry->Apply(Create("FULL/restarted", {MakeValue(1, "URL", "u")})).code,
            ResponseCode::kSuccess);
}

}  // namespace
}  // namespace idnode::registry
