// idctl site split / site check (README "A multi-server site"): turning one stopped node's data
// into the data of the N servers of a site, by the site hash (HANDLE.md §1.7, the whole handle),
// and checking that each server holds exactly its share. Run on stopped nodes only; one thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace idnode::cmd {

// Copies data directory `data_dir` (created with `shards` shards, a multiple of `servers`) into
// `out_dir`/server0 ... server(N-1): each server gets every shard as a RocksDB checkpoint of the
// (stopped node's) data, opened and locked meanwhile (SST files hard-linked where the file system
// allows, so the copy costs little space and time), then the records other servers hold are
// deleted from it (Registry::HeldByServer: identifiers of homed and mirrored prefixes by the hash;
// prefix handles and delegated prefixes' identifiers stay on every server). Shard s holds only
// such identifiers of server s mod N, so a server's own shards are kept whole. Each server's
// directory gets a SITE file ("servers N index k") that idnode checks against site.servers and
// site.this_server. Prints each server's records; exit status 0 on success.
int SiteSplit(const std::string& data_dir, uint32_t shards, uint32_t servers,
              const std::string& out_dir);

// Checks the data directories of a site's servers, in the site's order: every identifier each
// holds hashes to it (prefix handles aside), and, with `unsplit_dir`, their digests add up to
// the digest of that data (prefix handles aside, as every server holds them). Exit status 0 when
// both hold.
int SiteCheck(const std::vector<std::string>& server_dirs, uint32_t shards,
              const std::string& unsplit_dir);

}  // namespace idnode::cmd
