// The ceiling of `idctl import`'s JSON work: a bare parse of the same JSON Lines file with
// simdjson (the fastest JSON parser Debian has), every record parsed into its DOM and every value
// visited (the strings' bytes summed, so nothing is skipped), on one thread and on `--threads N`
// (the file split at line boundaries). Nothing is converted or stored: what is left between this
// and the import rate is the import's own work (records, sorting, SST files, compression).
//
//   json_ceiling FILE [--threads N]     prints MB/s and records/s
#include <simdjson.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

struct Tally {
  uint64_t records = 0;
  uint64_t bytes = 0;  // of all string values seen
  bool failed = false;
};

void Visit(simdjson::dom::element e, Tally& t) {
  switch (e.type()) {
    case simdjson::dom::element_type::OBJECT:
      for (auto field : simdjson::dom::object(e)) Visit(field.value, t);
      break;
    case simdjson::dom::element_type::ARRAY:
      for (auto item : simdjson::dom::array(e)) Visit(item, t);
      break;
    case simdjson::dom::element_type::STRING:
      t.bytes += std::string_view(e).size();
      break;
    default:
      break;
  }
}

// Parses the lines of parts[i] (each padded, copied before the clock starts).
void ParseRange(const simdjson::padded_string& part, Tally* tally) {
  simdjson::dom::parser parser;
  simdjson::dom::document_stream stream;
  if (parser.parse_many(part, 1 << 20).get(stream)) {
    tally->failed = true;
    return;
  }
  for (auto doc : stream) {
    simdjson::dom::element e;
    if (doc.get(e)) {
      tally->failed = true;
      return;
    }
    Visit(e, *tally);
    ++tally->records;
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: json_ceiling FILE [--threads N]\n");
    return 2;
  }
  unsigned threads = 1;
  for (int i = 2; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--threads") == 0) threads = std::max(1, std::atoi(argv[i + 1]));
  }
  simdjson::padded_string text;
  if (simdjson::padded_string::load(argv[1]).get(text)) {
    std::fprintf(stderr, "json_ceiling: cannot read %s\n", argv[1]);
    return 1;
  }
  // Split at line boundaries, one part per thread.
  std::vector<size_t> cuts{0};
  for (unsigned t = 1; t < threads; ++t) {
    size_t at = text.size() * t / threads;
    while (at < text.size() && text.data()[at] != '\n') ++at;
    cuts.push_back(std::min(text.size(), at + 1));
  }
  cuts.push_back(text.size());
  std::vector<simdjson::padded_string> parts;
  for (unsigned t = 0; t < threads; ++t)
    parts.emplace_back(text.data() + cuts[t], cuts[t + 1] - cuts[t]);
  std::vector<Tally> tallies(threads);
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> workers;
  for (unsigned t = 0; t < threads; ++t)
    workers.emplace_back(ParseRange, std::cref(parts[t]), &tallies[t]);
  for (auto& w : workers) w.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  uint64_t records = 0;
  for (const auto& t : tallies) {
    if (t.failed) {
      std::fprintf(stderr, "json_ceiling: a line did not parse\n");
      return 1;
    }
    records += t.records;
  }
  std::printf("simdjson (%s) %u thread(s): %.1f MB/s, %.0f records/s (%llu records, %.3f s)\n",
              simdjson::get_active_implementation()->name().c_str(), threads,
              text.size() / seconds / 1e6, records / seconds,
              static_cast<unsigned long long>(records), seconds);
  return 0;
}
