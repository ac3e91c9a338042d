// metrics/: counters and latency histograms, rendered in the Prometheus text format.
//
// Each thread that serves requests owns one RequestCounters (single writer, relaxed atomics, so
// the hot path shares no cache line with other threads); the scrape sums them. MetricsHub is owned
// by the application; NewCounters() is called at startup, Render() by the HTTP thread.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace idnode::metrics {

// kDnsUdp/kDnsTcp count DNS opcodes and RCODEs (0-5 share the Handle code slots; others are
// "other").
enum class Protocol : uint8_t {
  kHandleUdp = 0,
  kHandleTcp = 1,
  kHttp = 2,
  kDnsUdp = 3,
  kDnsTcp = 4,
};
inline constexpr size_t kProtocols = 5;

// Upper bounds of the latency buckets, in microseconds (the last bucket is +Inf).
inline constexpr std::array<uint64_t, 12> kLatencyBoundsUs{
    25, 50, 100, 250, 500, 1000, 2500, 10000, 50000, 250000, 1000000, 10000000};

class RequestCounters {
 public:
  // `opcode` and `response_code` of Handle requests; HTTP passes its status as the response code.
  void Count(Protocol protocol, uint32_t opcode, uint32_t response_code, uint64_t latency_us);
  void Dropped(Protocol protocol) { Add(dropped_[static_cast<size_t>(protocol)], 1); }

 private:
  friend class MetricsHub;
  static constexpr size_t kOpcodeSlots = 24;
  static constexpr size_t kCodeSlots = 40;
  static void Add(std::atomic<uint64_t>& a, uint64_t n) {
    a.store(a.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);  // single writer
  }
  std::array<std::array<std::array<std::atomic<uint64_t>, kCodeSlots>, kOpcodeSlots>, kProtocols>
      requests_{};
  std::array<std::array<std::atomic<uint64_t>, kLatencyBoundsUs.size() + 1>, kProtocols> latency_{};
  std::array<std::atomic<uint64_t>, kProtocols> latency_sum_us_{};
  std::array<std::atomic<uint64_t>, kProtocols> dropped_{};
};

// The sums of every thread's counters at one moment, per protocol (the dashboard's samples).
struct RequestTotals {
  std::array<uint64_t, kProtocols> requests{};
  std::array<std::array<uint64_t, kLatencyBoundsUs.size() + 1>, kProtocols> latency{};
  std::array<uint64_t, kProtocols> dropped{};
};

// The protocol's name in metric labels and in /api/stats ("handle_udp", "http", "dns_tcp" ...).
const char* ProtocolName(size_t protocol);

class MetricsHub {
 public:
  // A counters block for one thread; valid as long as the hub lives.
  RequestCounters& NewCounters();
  // Extra lines to append at each scrape (cache, storage, connections).
  void AddCollector(std::function<void(std::string& out)> collector);
  std::string Render() const;
  RequestTotals Totals() const;

 private:
  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<RequestCounters>> counters_;
  std::vector<std::function<void(std::string&)>> collectors_;
};

// Appends one sample line: name{labels} value.
void AppendSample(std::string& out, const std::string& name, const std::string& labels,
                  double value);
void AppendHelp(std::string& out, const std::string& name, const std::string& type,
                const std::string& help);

}  // namespace idnode::metrics
