#include "idnode/registry/bulk.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <future>
#include <memory>
#include <thread>

#include "idnode/identifier/identifier.h"
#include "idnode/registry/json_records.h"

namespace idnode::registry {

namespace {

// One line parsed: where its key and serialised record sit in its parser's arena.
struct ParsedLine {
  uint32_t arena = 0;  // which parser's arena
  uint32_t key_at = 0, key_size = 0;
  uint32_t record_at = 0, record_size = 0;
  bool ok = false;
};

// A chunk of the input: whole lines, parsed on several threads into per-thread arenas (no
// allocation per line beyond the arenas' growth), then grouped by shard and loaded.
// A byte buffer that grows without zero-filling (a chunk is read into it, 64 MiB at a time).
class ReadBuffer {
 public:
  char* data() { return data_.get(); }
  size_t size() const { return size_; }
  std::string_view view() const { return {data_.get(), size_}; }
  void clear() { size_ = 0; }
  // Makes room for `more` bytes past size(); the caller fills them, then calls grow().
  char* reserve_more(size_t more) {
    if (size_ + more > capacity_) {
      size_t capacity = std::max(size_ + more, capacity_ * 2);
      std::unique_ptr<char[]> bigger(new char[capacity]);
      if (size_ != 0) std::memcpy(bigger.get(), data_.get(), size_);
      data_ = std::move(bigger);
      capacity_ = capacity;
    }
    return data_.get() + size_;
  }
  void grow(size_t n) { size_ += n; }
  void shrink(size_t n) { size_ = n; }
  void assign(std::string_view from) {
    size_ = 0;
    if (!from.empty()) std::memcpy(reserve_more(from.size()), from.data(), from.size());
    size_ = from.size();
  }

 private:
  std::unique_ptr<char[]> data_;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

struct Chunk {
  ReadBuffer text;  // whole lines
  std::vector<std::string_view> lines;
  uint64_t first_line = 1;  // the number of lines[0]
  std::vector<ParsedLine> parsed;
  std::vector<std::string> arenas;
  std::vector<std::pair<uint64_t, std::string>> errors;  // (line number, why), in order
};

// What a parsing thread reuses from chunk to chunk.
struct ParseThread {
  JsonLineParser parser;
  proto::Record record;
  std::string key;
};

void ParseRange(Chunk& chunk, size_t begin, size_t end, uint32_t arena_index, uint32_t now,
                ParseThread& thread, std::vector<std::pair<uint64_t, std::string>>& errors) {
  std::string& arena = chunk.arenas[arena_index];
  arena.clear();
  size_t bytes = 0;
  for (size_t i = begin; i < end; ++i) bytes += chunk.lines[i].size();
  arena.reserve(bytes + bytes / 4 + 4096);
  for (size_t i = begin; i < end; ++i) {
    ParsedLine& p = chunk.parsed[i];
    p.arena = arena_index;
    const std::string_view line = chunk.lines[i];
    // An empty line is not a record but not worth a complaint either.
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    auto parsed = thread.parser.Parse(line, now, &thread.record);
    proto::Record& record = thread.record;
    std::string why;
    if (!parsed.ok()) {
      why = parsed.error();
    } else if (!identifier::IsValidHandle(record.handle())) {
      why = "invalid handle \"" + record.handle() + "\"";
    } else {
      std::sort(record.mutable_values()->begin(), record.mutable_values()->end(),
                [](const proto::Value& a, const proto::Value& b) { return a.index() < b.index(); });
      for (int v = 1; v < record.values_size() && why.empty(); ++v) {
        if (record.values(v).index() == record.values(v - 1).index())
          why = "two values with the same index";
      }
    }
    if (!why.empty()) {
      errors.emplace_back(chunk.first_line + i, std::move(why));
      continue;
    }
    thread.key.assign(record.handle());
    identifier::NormalizeInPlace(thread.key);
    p.key_at = static_cast<uint32_t>(arena.size());
    p.key_size = static_cast<uint32_t>(thread.key.size());
    arena.append(thread.key);
    p.record_at = static_cast<uint32_t>(arena.size());
    record.AppendToString(&arena);
    p.record_size = static_cast<uint32_t>(arena.size() - p.record_at);
    p.ok = true;
  }
}

// Parses every line of `chunk` on `threads` threads (the calling one among them).
void ParseChunk(Chunk& chunk, uint32_t now, std::vector<std::unique_ptr<ParseThread>>& threads) {
  const size_t n = chunk.lines.size();
  const size_t t = threads.size();
  chunk.parsed.assign(n, ParsedLine{});
  chunk.arenas.resize(t);
  std::vector<std::vector<std::pair<uint64_t, std::string>>> errors(t);
  std::vector<std::thread> workers;
  const size_t per = (n + t - 1) / t;
  for (size_t i = 1; i < t; ++i) {
    const size_t begin = std::min(n, i * per), end = std::min(n, (i + 1) * per);
    workers.emplace_back(ParseRange, std::ref(chunk), begin, end, static_cast<uint32_t>(i), now,
                         std::ref(*threads[i]), std::ref(errors[i]));
  }
  ParseRange(chunk, 0, std::min(n, per), 0, now, *threads[0], errors[0]);
  for (auto& w : workers) w.join();
  chunk.errors.clear();
  for (auto& e : errors)
    chunk.errors.insert(chunk.errors.end(), std::make_move_iterator(e.begin()),
                        std::make_move_iterator(e.end()));
}

// The longest line accepted: a record is a few KiB; a line this long is no record.
constexpr size_t kMaxLineBytes = 256u << 20;

// Reads whole lines, about `target` bytes of them, into `chunk`; what follows the last newline is
// kept in `carry` for the next chunk. Sets *eof at the end of the input; an error names a line too
// long to be a record.
Result<Unit, std::string> ReadChunk(std::istream& in, size_t target, std::string& carry,
                                    Chunk& chunk, uint64_t first_line, uint64_t* bytes_read,
                                    bool* eof) {
  chunk.text.assign(carry);
  carry.clear();
  chunk.lines.clear();
  chunk.first_line = first_line;
  size_t last_newline = chunk.text.view().rfind('\n');
  while (!*eof && (chunk.text.size() < target || last_newline == std::string::npos)) {
    const size_t have = chunk.text.size();
    const size_t want = std::max<size_t>(target > have ? target - have : 0, 1 << 20);
    if (last_newline == std::string::npos && have > kMaxLineBytes)
      return Failure{"line " + std::to_string(first_line) + " is longer than 256 MiB"};
    in.read(chunk.text.reserve_more(want), static_cast<std::streamsize>(want));
    const size_t got = static_cast<size_t>(in.gcount());
    chunk.text.grow(got);
    *bytes_read += got;
    if (got < want) *eof = true;
    size_t found = chunk.text.view().substr(have).rfind('\n');
    if (found != std::string_view::npos) last_newline = have + found;
  }
  if (!*eof && last_newline != std::string::npos) {
    carry.assign(chunk.text.view().substr(last_newline + 1));
    chunk.text.shrink(last_newline + 1);
  }
  std::string_view text = chunk.text.view();
  while (!text.empty()) {
    size_t nl = text.find('\n');
    chunk.lines.push_back(text.substr(0, nl));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return Unit{};
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
  std::vector<std::unique_ptr<ParseThread>> threads;
  for (unsigned i = 0; i < std::max(1u, options.threads); ++i)
    threads.push_back(std::make_unique<ParseThread>());

  // A pipeline of two chunks: while one is sorted and loaded into storage (this thread), the next
  // is parsed (the parse threads), so that both cores stay busy.
  ImportProgress progress;
  std::string carry;
  Chunk chunks[2];
  uint64_t next_line = 1;
  bool eof = false;
  // False when the input is done (nothing left to parse).
  auto read = [&](Chunk& chunk) -> Result<bool, std::string> {
    if (eof && carry.empty()) return false;
    auto got =
        ReadChunk(in, options.chunk_bytes, carry, chunk, next_line, &progress.bytes_read, &eof);
    if (!got.ok()) return Failure{got.error()};
    if (in.bad()) return Failure{std::string("read error")};
    next_line += chunk.lines.size();
    return !chunk.lines.empty();
  };
  auto first = read(chunks[0]);
  if (!first.ok()) return Failure{first.error()};
  bool have = *first;
  if (have) ParseChunk(chunks[0], now, threads);
  std::vector<std::vector<storage::KeyValueView>> by_shard(shards);
  int current = 0;
  while (have) {
    Chunk& chunk = chunks[current];
    Chunk& next = chunks[1 - current];
    auto next_read = read(next);
    if (!next_read.ok()) return Failure{next_read.error()};
    const bool have_next = *next_read;
    std::future<void> parsing;
    if (have_next) {
      parsing = std::async(std::launch::async,
                           [&next, now, &threads] { ParseChunk(next, now, threads); });
    }
    progress.lines += chunk.lines.size();
    for (const auto& [line, why] : chunk.errors) {
      ++progress.bad_lines;
      if (options.on_bad_line) options.on_bad_line(line, why);
    }
    for (auto& group : by_shard) group.clear();
    for (const auto& p : chunk.parsed) {
      if (!p.ok) continue;
      const std::string& arena = chunk.arenas[p.arena];
      std::string_view key(arena.data() + p.key_at, p.key_size);
      by_shard[registry.ShardOf(key)].emplace_back(
          key, std::string_view(arena.data() + p.record_at, p.record_size));
    }
    // The shards load in parallel (each its own RocksDB: sorting, SST writing and compression on
    // as many threads as parse), sharing the cores with the parsing of the next chunk.
    std::vector<std::string> failures(shards);
    std::vector<uint64_t> loaded_records(shards, 0);
    auto load_shard = [&](uint32_t s) {
      auto& group = by_shard[s];
      if (group.empty()) return;
      // Sort by key keeping input order among equal keys, then keep the last of each key.
      std::stable_sort(group.begin(), group.end(),
                       [](const auto& a, const auto& b) { return a.first < b.first; });
      size_t out = 0;
      for (size_t i = 0; i < group.size(); ++i) {
        if (i + 1 < group.size() && group[i + 1].first == group[i].first) continue;
        group[out++] = group[i];
      }
      group.resize(out);
      auto loaded = ingest[s] ? registry.IngestSorted(s, group) : registry.PutRecords(s, group);
      if (!loaded.ok()) {
        failures[s] = "shard " + std::to_string(s) + ": " + loaded.error();
        return;
      }
      loaded_records[s] = group.size();
    };
    const uint32_t loaders = std::max(1u, std::min(options.threads, shards));
    std::vector<std::future<void>> loading;
    for (uint32_t l = 1; l < loaders; ++l) {
      loading.push_back(std::async(std::launch::async, [&, l] {
        for (uint32_t s = l; s < shards; s += loaders) load_shard(s);
      }));
    }
    for (uint32_t s = 0; s < shards; s += loaders) load_shard(s);
    for (auto& f : loading) f.get();
    Result<Unit, std::string> loaded = Unit{};
    for (uint32_t s = 0; s < shards; ++s) {
      progress.records += loaded_records[s];
      if (!failures[s].empty() && loaded.ok()) loaded = Failure{failures[s]};
    }
    if (parsing.valid()) parsing.get();  // before returning: the threads use `next`
    if (!loaded.ok()) return Failure{loaded.error()};
    if (options.on_progress) options.on_progress(progress);
    have = have_next;
    current = 1 - current;
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
