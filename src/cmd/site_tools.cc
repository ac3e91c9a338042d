#include "site_tools.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <system_error>

#include "idnode/identifier/identifier.h"
#include "idnode/registry/registry.h"

namespace idnode::cmd {

namespace fs = std::filesystem;

namespace {

constexpr const char* kSiteFile = "SITE";

std::unique_ptr<registry::Registry> Open(const std::string& dir, uint32_t shards) {
  registry::RegistryOptions options;
  options.storage.path = dir;
  options.storage.shard_count = shards;
  options.storage.create_if_missing = false;
  options.storage.sync_writes = false;  // one flush at the end (closing flushes)
  if (!fs::exists(fs::path(dir) / "LAYOUT")) {
    std::cerr << "idctl site: " << dir << " is not a data directory (no LAYOUT)\n";
    return nullptr;
  }
  auto opened = registry::Registry::Open(std::move(options));
  if (!opened.ok()) {
    std::cerr << "idctl site: cannot open " << dir << ": " << opened.error() << "\n";
    return nullptr;
  }
  return std::move(*opened);
}

}  // namespace

int SiteSplit(const std::string& data_dir, uint32_t shards, uint32_t servers,
              const std::string& out_dir) {
  if (servers < 2 || servers > 1024) {
    std::cerr << "idctl site split: --servers is 2 to 1024\n";
    return 2;
  }
  if (shards % servers != 0) {
    std::cerr << "idctl site split: " << data_dir << " has " << shards
              << " shards, not a multiple of " << servers
              << " servers: a split copies whole shards (shard s goes to server s mod N); "
                 "import the data into a data directory with a multiple of "
              << servers << " shards (idctl export, then idctl import --shards)\n";
    return 2;
  }
  std::error_code ec;
  if (fs::exists(out_dir) && !fs::is_empty(out_dir, ec)) {
    std::cerr << "idctl site split: " << out_dir << " is not empty; nothing is overwritten\n";
    return 2;
  }
  // The source stays open (and locked) while its shards are copied: each copy is RocksDB's
  // checkpoint of the open shard, consistent whatever runs.
  auto source = Open(data_dir, shards);
  if (!source) return 1;
  for (uint32_t k = 0; k < servers; ++k) {
    const fs::path server = fs::path(out_dir) / ("server" + std::to_string(k));
    fs::create_directories(server, ec);
    if (ec) {
      std::cerr << "idctl site split: cannot create " << server << ": " << ec.message() << "\n";
      return 1;
    }
    // The layout, and the node's key when it has one (the servers of a site share one key).
    for (const auto& entry : fs::directory_iterator(data_dir, ec)) {
      if (!entry.is_regular_file()) continue;
      const std::string name = entry.path().filename().string();
      if (name == "LOCK" || name.starts_with("LOG") || name == kSiteFile) continue;
      fs::copy_file(entry.path(), server / name, fs::copy_options::none, ec);
      if (ec) {
        std::cerr << "idctl site split: cannot copy " << entry.path() << ": " << ec.message()
                  << "\n";
        return 1;
      }
      struct stat st {};
      if (::stat(entry.path().c_str(), &st) == 0)
        (void)::chmod((server / name).c_str(), st.st_mode & 07777);
    }
    for (uint32_t s = 0; s < shards; ++s) {
      char name[32];
      std::snprintf(name, sizeof(name), "shard-%03u", s);
      auto copied = source->store().Checkpoint(s, (server / name).string());
      if (!copied.ok()) {
        std::cerr << "idctl site split: cannot copy shard " << s << " to " << server << ": "
                  << copied.error().message << "\n";
        return 1;
      }
    }
    // Which server of which site this data is: idnode refuses to start it as another.
    std::ofstream site_file(server / kSiteFile);
    site_file << "servers " << servers << " index " << k << "\n";
    site_file.close();
    if (!site_file) {
      std::cerr << "idctl site split: cannot write " << (server / kSiteFile) << "\n";
      return 1;
    }
  }
  source.reset();
  for (uint32_t k = 0; k < servers; ++k) {
    const fs::path server = fs::path(out_dir) / ("server" + std::to_string(k));
    auto registry = Open(server.string(), shards);
    if (!registry) return 1;
    uint64_t dropped = 0;
    for (uint32_t s = 0; s < shards; ++s) {
      if (s % servers == k) continue;  // its own shard: every identifier in it is this server's
      auto deleted = registry->DropOtherServersRecords(s, servers, k);
      if (!deleted.ok()) {
        std::cerr << "idctl site split: server " << k << ", shard " << s << ": " << deleted.error()
                  << "\n";
        return 1;
      }
      dropped += *deleted;
    }
    auto digest = registry->ComputeDigest(
        {}, [](std::string_view key) { return !identifier::IsPrefixHandle(key); });
    if (!digest.ok()) {
      std::cerr << "idctl site split: server " << k << ": " << digest.error() << "\n";
      return 1;
    }
    std::cout << server.string() << ": " << digest->records << " identifiers (" << dropped
              << " of other servers removed; their space is reclaimed as RocksDB compacts)\n";
  }
  std::cout << "each server's site.servers lists the " << servers
            << " servers in this order; server k has site.this_server: k\n";
  return 0;
}

int SiteCheck(const std::vector<std::string>& server_dirs, uint32_t shards,
              const std::string& unsplit_dir) {
  if (server_dirs.size() < 2) {
    std::cerr << "idctl site check: name the data directories of two or more servers\n";
    return 2;
  }
  const auto count = static_cast<uint32_t>(server_dirs.size());
  registry::Digest sum;
  bool ok = true;
  for (uint32_t k = 0; k < count; ++k) {
    auto registry = Open(server_dirs[k], shards);
    if (!registry) return 1;
    uint64_t misplaced = 0;
    auto digest = registry->ComputeDigest({}, [&](std::string_view key) {
      if (identifier::IsPrefixHandle(key)) return false;
      if (!registry->HeldByServer(key, count, k)) ++misplaced;
      return true;
    });
    if (!digest.ok()) {
      std::cerr << "idctl site check: " << server_dirs[k] << ": " << digest.error() << "\n";
      return 1;
    }
    std::cout << "server " << k << " (" << server_dirs[k] << "): " << digest->records
              << " identifiers, " << misplaced << " another server's, digest " << digest->hex()
              << "\n";
    ok = ok && misplaced == 0;
    sum += *digest;
  }
  std::cout << "site: " << sum.records << " identifiers, digest " << sum.hex() << "\n";
  if (!unsplit_dir.empty()) {
    auto unsplit = Open(unsplit_dir, shards);
    if (!unsplit) return 1;
    auto whole = unsplit->ComputeDigest(
        {}, [](std::string_view key) { return !identifier::IsPrefixHandle(key); });
    if (!whole.ok()) {
      std::cerr << "idctl site check: " << unsplit_dir << ": " << whole.error() << "\n";
      return 1;
    }
    const bool same = *whole == sum;
    std::cout << "unsplit (" << unsplit_dir << "): " << whole->records << " identifiers, digest "
              << whole->hex() << (same ? ": the same\n" : ": DIFFERENT\n");
    ok = ok && same;
  }
  return ok ? 0 : 1;
}

}  // namespace idnode::cmd
