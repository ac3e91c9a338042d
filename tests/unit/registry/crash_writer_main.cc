// Child process of crash_test: writes through the registry with sync on and prints the number
// of every acknowledged create, one per line, flushing each, until it is killed.
//   registry_crash_writer DATA_DIR FIRST_ID
#include <cstdio>
#include <cstdlib>
#include <string>

#include "idnode/registry/registry.h"

using namespace idnode::registry;

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  RegistryOptions options;
  options.storage.path = argv[1];
  options.storage.shard_count = 4;
  options.storage.sync_writes = true;
  options.storage.block_cache_bytes = 8 << 20;
  auto opened = Registry::Open(std::move(options));
  if (!opened.ok()) {
    std::fprintf(stderr, "open: %s\n", opened.error().c_str());
    return 1;
  }
  Registry& registry = **opened;
  if (!registry.FindPrefix("CRASH")) registry.HomePrefix("CRASH");
  std::printf("ready\n");
  std::fflush(stdout);
  for (long id = std::atol(argv[2]);; ++id) {
    Operation op;
    op.kind = OpKind::kCreate;
    op.handle = "CRASH/" + std::to_string(id);
    idnode::proto::Value v;
    v.set_index(1);
    v.set_type("URL");
    v.set_data("https://example.org/" + std::to_string(id));
    op.values.push_back(v);
    OpResult r = registry.Apply(op);
    if (r.code != idnode::protocol::ResponseCode::kSuccess) {
      std::fprintf(stderr, "write %ld failed: %u\n", id, static_cast<unsigned>(r.code));
      return 1;
    }
    std::printf("%ld\n", id);
    std::fflush(stdout);
  }
}
