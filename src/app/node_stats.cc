#include "idnode/app/node_stats.h"

#include <algorithm>
#include <boost/json.hpp>

namespace idnode::app {

namespace json = boost::json;

namespace {

// Prefix names listed by name (a top-level node may delegate a million: those are only counted).
constexpr size_t kListedPrefixes = 50;

int64_t UnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A number for JSON: rounded to 3 decimals, or null when there is none (negative).
json::value Number(double v) {
  if (v < 0) return nullptr;
  const int64_t thousandths = static_cast<int64_t>(v * 1000.0 + 0.5);
  if (thousandths % 1000 == 0) return thousandths / 1000;  // "3", not "3E0"
  return static_cast<double>(thousandths) / 1000.0;
}

}  // namespace

NodeStats::NodeStats(const metrics::MetricsHub& metrics, const cache::AnswerCache& cache,
                     const registry::Registry& registry, std::function<std::string()> replication)
    : metrics_(metrics),
      cache_(cache),
      registry_(registry),
      replication_(std::move(replication)),
      started_(std::chrono::steady_clock::now()) {}

void NodeStats::Sample() {
  Point p;
  p.unix_ms = UnixMs();
  p.at = std::chrono::steady_clock::now();
  p.requests = metrics_.Totals();
  const auto c = cache_.stats();
  p.cache_hits = c.hits + c.negative_hits;
  p.cache_misses = c.misses + c.contended;
  std::lock_guard lock(mutex_);
  points_.push_back(std::move(p));
  while (points_.size() > kMaxSamples) points_.pop_front();
}

double NodeStats::QuantileMs(
    const std::array<uint64_t, metrics::kLatencyBoundsUs.size() + 1>& later,
    const std::array<uint64_t, metrics::kLatencyBoundsUs.size() + 1>& earlier, double q) {
  uint64_t total = 0;
  for (size_t b = 0; b < later.size(); ++b) total += later[b] - earlier[b];
  if (total == 0) return -1;
  const double rank = q * static_cast<double>(total);
  double seen = 0;
  for (size_t b = 0; b < later.size(); ++b) {
    const double n = static_cast<double>(later[b] - earlier[b]);
    if (n > 0 && seen + n >= rank) {
      // Linear within the bucket; the last (+Inf) bucket reports its lower bound.
      if (b == metrics::kLatencyBoundsUs.size()) return metrics::kLatencyBoundsUs.back() / 1000.0;
      const double low = b == 0 ? 0.0 : static_cast<double>(metrics::kLatencyBoundsUs[b - 1]);
      const double high = static_cast<double>(metrics::kLatencyBoundsUs[b]);
      return (low + (high - low) * ((rank - seen) / n)) / 1000.0;
    }
    seen += n;
  }
  return metrics::kLatencyBoundsUs.back() / 1000.0;
}

NodeStats::PrefixCounts NodeStats::CountPrefixes() const {
  auto table = registry_.prefix_table().Snapshot();
  {
    std::lock_guard lock(mutex_);
    if (prefix_counts_.generation == table->generation()) return prefix_counts_;
  }
  PrefixCounts counts;
  counts.generation = table->generation();
  table->ForEach([&](std::string_view name, const registry::PrefixEntry& entry) {
    switch (entry.role) {
      case registry::PrefixRole::kHomed:
        ++counts.homed;
        if (counts.homed_names.size() < kListedPrefixes) counts.homed_names.emplace_back(name);
        break;
      case registry::PrefixRole::kDelegated:
        ++counts.delegated;
        break;
      case registry::PrefixRole::kMirrored:
        ++counts.mirrored;
        if (counts.mirrored_names.size() < kListedPrefixes)
          counts.mirrored_names.emplace_back(name);
        break;
      default:
        break;
    }
  });
  std::sort(counts.homed_names.begin(), counts.homed_names.end());
  std::sort(counts.mirrored_names.begin(), counts.mirrored_names.end());
  std::lock_guard lock(mutex_);
  prefix_counts_ = counts;
  return counts;
}

std::string NodeStats::Json() const {
  std::vector<Point> points;
  {
    std::lock_guard lock(mutex_);
    points.assign(points_.begin(), points_.end());
  }
  json::object out;
  out["time_ms"] = UnixMs();
  out["uptime_seconds"] =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started_)
          .count();
  out["sample_interval_seconds"] = kSampleInterval.count();

  // One point per pair of consecutive samples: what happened between them.
  json::array series;
  for (size_t i = 1; i < points.size(); ++i) {
    const Point& a = points[i - 1];
    const Point& b = points[i];
    const double seconds = std::chrono::duration<double>(b.at - a.at).count();
    if (seconds <= 0) continue;
    json::object point;
    point["t"] = b.unix_ms;
    json::object rps, p50, p99;
    // "all": every protocol's requests in one histogram.
    std::array<uint64_t, metrics::kLatencyBoundsUs.size() + 1> all_b{}, all_a{};
    uint64_t all = 0;
    for (size_t p = 0; p < metrics::kProtocols; ++p) {
      all += b.requests.requests[p] - a.requests.requests[p];
      for (size_t k = 0; k < all_b.size(); ++k) {
        all_b[k] += b.requests.latency[p][k];
        all_a[k] += a.requests.latency[p][k];
      }
    }
    rps["all"] = Number(static_cast<double>(all) / seconds);
    p50["all"] = Number(QuantileMs(all_b, all_a, 0.50));
    p99["all"] = Number(QuantileMs(all_b, all_a, 0.99));
    for (size_t p = 0; p < metrics::kProtocols; ++p) {
      const char* name = metrics::ProtocolName(p);
      rps[name] =
          Number(static_cast<double>(b.requests.requests[p] - a.requests.requests[p]) / seconds);
      p50[name] = Number(QuantileMs(b.requests.latency[p], a.requests.latency[p], 0.50));
      p99[name] = Number(QuantileMs(b.requests.latency[p], a.requests.latency[p], 0.99));
    }
    point["rps"] = std::move(rps);
    point["p50_ms"] = std::move(p50);
    point["p99_ms"] = std::move(p99);
    const uint64_t hits = b.cache_hits - a.cache_hits;
    const uint64_t lookups = hits + (b.cache_misses - a.cache_misses);
    point["cache_hit_ratio"] =
        lookups == 0 ? json::value(nullptr)
                     : Number(static_cast<double>(hits) / static_cast<double>(lookups));
    series.push_back(std::move(point));
  }
  out["series"] = std::move(series);

  json::object totals;
  if (!points.empty()) {
    for (size_t p = 0; p < metrics::kProtocols; ++p)
      totals[metrics::ProtocolName(p)] = points.back().requests.requests[p];
  }
  out["requests_total"] = std::move(totals);

  const auto c = cache_.stats();
  const uint64_t hits = c.hits + c.negative_hits;
  const uint64_t lookups = hits + c.misses + c.contended;
  out["cache"] = json::object{{"bytes", c.bytes_used},
                              {"capacity_bytes", cache_.capacity_bytes()},
                              {"entries", c.entries},
                              {"hits", hits},
                              {"misses", c.misses + c.contended},
                              {"hit_ratio", lookups == 0 ? json::value(nullptr)
                                                         : Number(static_cast<double>(hits) /
                                                                  static_cast<double>(lookups))},
                              {"evictions", c.evictions},
                              {"invalidations", c.invalidations}};

  json::array shards;
  uint64_t disk = 0, keys = 0;
  for (uint32_t shard = 0; shard < registry_.shard_count(); ++shard) {
    const auto st = registry_.store().Stats(shard);
    disk += st.live_sst_bytes;
    keys += st.estimated_keys;
    shards.push_back(json::object{{"shard", shard},
                                  {"live_sst_bytes", st.live_sst_bytes},
                                  {"memtable_bytes", st.memtable_bytes},
                                  {"estimated_keys", st.estimated_keys},
                                  {"write_stalled", st.write_stopped || st.write_delayed}});
  }
  out["storage"] = json::object{{"shards", std::move(shards)},
                                {"live_sst_bytes", disk},
                                {"estimated_keys", keys},
                                {"read_errors", registry_.read_errors()}};

  const PrefixCounts prefixes = CountPrefixes();
  json::array homed(prefixes.homed_names.begin(), prefixes.homed_names.end());
  json::array mirrored(prefixes.mirrored_names.begin(), prefixes.mirrored_names.end());
  out["prefixes"] = json::object{{"homed", prefixes.homed},
                                 {"delegated", prefixes.delegated},
                                 {"mirrored", prefixes.mirrored},
                                 {"homed_names", std::move(homed)},
                                 {"mirrored_names", std::move(mirrored)}};

  std::string body = json::serialize(out);
  // The replication status is already JSON (its own room renders it): spliced in, not re-parsed.
  const std::string replication = replication_ ? replication_() : std::string("null");
  body.pop_back();
  body += R"(,"replication":)" + (replication.empty() ? std::string("null") : replication) + "}";
  return body;
}

}  // namespace idnode::app
