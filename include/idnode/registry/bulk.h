// Bulk import and export of JSON Lines records (json_records.h), for `idctl import/export` on a
// stopped node's data directory.
//
// Import parses lines on `threads` threads, groups records by shard, sorts each group, and loads
// it: shards that were empty when the import began get SST files ingested directly (no WAL, no
// changelog: a peer that mirrors them resyncs from a snapshot); shards that already held data get
// ordinary batched writes with changelog entries. A later line for the same handle wins.
#pragma once

#include <cstdint>
#include <functional>
#include <istream>
#include <ostream>
#include <string>

#include "idnode/registry/registry.h"

namespace idnode::registry {

struct ImportProgress {
  uint64_t bytes_read = 0;
  uint64_t lines = 0;
  uint64_t records = 0;  // loaded into storage so far
  uint64_t bad_lines = 0;
};

struct ImportOptions {
  size_t chunk_records = 200000;  // records parsed before a chunk is sorted and loaded
  unsigned threads = 2;
  // Called now and then (at most every chunk) on the importing thread.
  std::function<void(const ImportProgress&)> on_progress;
  // Called for every line that cannot be imported, with its 1-based number.
  std::function<void(uint64_t line, const std::string& why)> on_bad_line;
};

Result<ImportProgress, std::string> ImportJsonLines(Registry& registry, std::istream& in,
                                                    const ImportOptions& options);

// Writes every record (or those under `prefix`) as JSON Lines; returns the count.
Result<uint64_t, std::string> ExportJsonLines(Registry& registry, std::string_view prefix,
                                              std::ostream& out);

}  // namespace idnode::registry
