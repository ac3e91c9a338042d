// Bulk import and export of JSON Lines records (json_records.h), for `idctl import/export` on a
// stopped node's data directory.
//
// Import reads the input a chunk at a time and parses each on `threads` threads while the chunk
// before it is loaded (a two-stage pipeline), groups records by shard, sorts each group, and loads
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
  // Input read, parsed and loaded at a time: two chunks are in memory (one parsed while the other
  // is loaded), each with its text and its parsed records, about 2.5 times this in all.
  size_t chunk_bytes = 64 << 20;
  unsigned threads = 2;  // parsing threads
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
