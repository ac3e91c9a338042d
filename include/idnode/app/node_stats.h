// app/: the operator dashboard's numbers (GET /api/stats, drawn by /ui/status).
//
// Sample() takes the request counters of every protocol and the answer cache's counters every few
// seconds into a bounded ring (kMaxSamples: five minutes at the default interval); Json() turns
// the ring into rates, latency percentiles and hit ratios between consecutive samples, beside
// gauges read at the time of the request (cache memory, shards and disk, prefixes, replication).
// Percentiles come from the latency histogram's buckets (metrics.h), interpolated within a
// bucket: an estimate, exact to the bucket's bounds.
//
// No secrets: only counts, sizes, prefix names and the replication status (peer names, addresses
// and positions; never keys or credentials).
//
// Owned by the application. Sample() runs on the main thread's timer; Json() on HTTP storage
// threads; the ring is guarded by a mutex that neither holds while reading other rooms.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "idnode/cache/answer_cache.h"
#include "idnode/metrics/metrics.h"
#include "idnode/registry/registry.h"

namespace idnode::app {

class NodeStats {
 public:
  static constexpr size_t kMaxSamples = 150;
  static constexpr std::chrono::seconds kSampleInterval{2};

  // `replication` returns the replication status JSON (replication::StatusBoard::Json).
  NodeStats(const metrics::MetricsHub& metrics, const cache::AnswerCache& cache,
            const registry::Registry& registry, std::function<std::string()> replication);

  void Sample();
  std::string Json() const;

  struct Point {
    int64_t unix_ms = 0;
    std::chrono::steady_clock::time_point at;
    metrics::RequestTotals requests;
    uint64_t cache_hits = 0;    // positive and negative
    uint64_t cache_misses = 0;  // contended lookups included: both went to storage
  };
  // The p-quantile (0..1) in milliseconds of the requests between two histograms (later minus
  // earlier), or a negative number when none were answered in between. Public for tests.
  static double QuantileMs(
      const std::array<uint64_t, metrics::kLatencyBoundsUs.size() + 1>& later,
      const std::array<uint64_t, metrics::kLatencyBoundsUs.size() + 1>& earlier, double q);

 private:
  struct PrefixCounts {
    uint64_t generation = ~uint64_t{0};
    size_t homed = 0, delegated = 0, mirrored = 0;
    std::vector<std::string> homed_names, mirrored_names;  // the first kListedPrefixes of each
  };
  PrefixCounts CountPrefixes() const;

  const metrics::MetricsHub& metrics_;
  const cache::AnswerCache& cache_;
  const registry::Registry& registry_;
  std::function<std::string()> replication_;
  const std::chrono::steady_clock::time_point started_;

  mutable std::mutex mutex_;
  std::deque<Point> points_;            // oldest first, at most kMaxSamples
  mutable PrefixCounts prefix_counts_;  // recounted only when the prefix table changed
};

}  // namespace idnode::app
