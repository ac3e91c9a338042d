#include "idnode/registry/bulk.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "idnode/identifier/identifier.h"
#include "idnode/registry/json_records.h"

namespace idnode::registry {

namespace {

struct ParsedLine {
  uint64_t number = 0;
  std::string key;         // normalised handle
  std::string serialized;  // proto::Record
  std::string error;
};

// Parses lines[begin, end) into out (same indexes).
void ParseRange(const std::vector<std::string>& lines, size_t begin, size_t end,
                uint64_t first_number, uint32_t now, std::vector<ParsedLine>& out) {
  for (size_t i = begin; i < end; ++i) {
    ParsedLine& p = out[i];
    p.number = first_number + i;
    auto record = RecordFromJson(lines[i], now);
    if (!record.ok()) {
      p.error = record.error();
      continue;
    }
    if (!identifier::IsValidHandle(record->handle())) {
      p.error = "invalid handle \"" + record->handle() + "\"";
      continue;
    }
    std::sort(record->mutable_values()->begin(), record->mutable_values()->end(),
              [](const proto::Value& a, const proto::Value& b) { return a.index() < b.index(); });
    bool duplicate = false;
    for (int v = 1; v < record->values_size(); ++v)
      duplicate |= record->values(v).index() == record->values(v - 1).index();
    if (duplicate) {
      p.error = "two values with the same index";
      continue;
    }
    p.key = identifier::Normalize(record->handle());
    p.serialized = record->SerializeAsString();
  }
}

}  // namespace

Result<ImportProgress, std::string> ImportJsonLines(Registry& registry, std::istream& in,
                                                    const ImportOptions& options) {
  const uint32_t shards = registry.shard_count();
  std::vector<bool> ingest(shards);
  for (uint32_t s = 0; s < shards; ++s) {
    bool empty = true;
    auto scanned = registry.store().Scan(s, storage::Column::kRecords, {}, {},
                                         [&](std::string_view, std::string_view) {
                                           empty = false;
                                           return false;
                                         });
    if (!scanned.ok()) return Failure{scanned.error().message};
    ingest[s] = empty;
  }
  const uint32_t now =
      static_cast<uint32_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count());
  const unsigned threads = std::max(1u, options.threads);

  ImportProgress progress;
  std::vector<std::string> lines;
  std::vector<ParsedLine> parsed;
  std::vector<std::vector<std::pair<std::string, std::string>>> by_shard(shards);
  bool eof = false;
  while (!eof) {
    lines.clear();
    std::string line;
    while (lines.size() < options.chunk_records && std::getline(in, line)) {
      progress.bytes_read += line.size() + 1;
      lines.push_back(std::move(line));
    }
    eof = lines.size() < options.chunk_records;
    if (in.bad()) return Failure{std::string("read error")};
    const uint64_t first_number = progress.lines + 1;
    progress.lines += lines.size();

    parsed.assign(lines.size(), ParsedLine{});
    std::vector<std::thread> workers;
    size_t per = (lines.size() + threads - 1) / threads;
    for (unsigned t = 1; t < threads; ++t) {
      size_t begin = std::min(lines.size(), t * per), end = std::min(lines.size(), (t + 1) * per);
      workers.emplace_back(ParseRange, std::cref(lines), begin, end, first_number, now,
                           std::ref(parsed));
    }
    ParseRange(lines, 0, std::min(lines.size(), per), first_number, now, parsed);
    for (auto& w : workers) w.join();

    for (auto& p : parsed) {
      if (!p.error.empty()) {
        // An empty line is not a record but not worth a complaint either.
        if (lines[p.number - first_number].find_first_not_of(" \t\r") == std::string::npos)
          continue;
        ++progress.bad_lines;
        if (options.on_bad_line) options.on_bad_line(p.number, p.error);
        continue;
      }
      by_shard[registry.ShardOf(p.key)].emplace_back(std::move(p.key), std::move(p.serialized));
    }
    for (uint32_t s = 0; s < shards; ++s) {
      auto& group = by_shard[s];
      if (group.empty()) continue;
      // Sort by key keeping input order among equal keys, then keep the last of each key.
      std::stable_sort(group.begin(), group.end(),
                       [](const auto& a, const auto& b) { return a.first < b.first; });
      size_t out = 0;
      for (size_t i = 0; i < group.size(); ++i) {
        if (i + 1 < group.size() && group[i + 1].first == group[i].first) continue;
        if (out != i) group[out] = std::move(group[i]);
        ++out;
      }
      group.resize(out);
      auto loaded = ingest[s] ? registry.IngestSorted(s, group) : registry.PutRecords(s, group);
      if (!loaded.ok()) return Failure{"shard " + std::to_string(s) + ": " + loaded.error()};
      progress.records += group.size();
      group.clear();
    }
    if (options.on_progress) options.on_progress(progress);
  }
  return progress;
}

Result<uint64_t, std::string> ExportJsonLines(Registry& registry, std::string_view prefix,
                                              std::ostream& out) {
  uint64_t count = 0;
  for (uint32_t s = 0; s < registry.shard_count(); ++s) {
    ShardSnapshot snapshot = registry.TakeSnapshot(s);
    auto scanned = registry.ScanSnapshot(snapshot, prefix, [&](const proto::Record& record) {
      out << RecordToJson(record) << '\n';
      ++count;
      return static_cast<bool>(out);
    });
    if (!scanned.ok()) return Failure{scanned.error()};
    if (!out) return Failure{std::string("write error")};
  }
  return count;
}

}  // namespace idnode::registry
