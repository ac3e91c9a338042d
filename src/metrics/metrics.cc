#include "idnode/metrics/metrics.h"

#include <cstdio>

namespace idnode::metrics {

namespace {

// Handle opcodes and response codes mapped to compact slots; the last slot collects the rest.
constexpr uint32_t kOpcodes[] = {0,   1,   2,   100, 101, 102, 103,  104,  105,  200, 201,
                                 300, 301, 302, 400, 401, 402, 1000, 1001, 1002, 1003};
constexpr uint32_t kCodes[] = {0,   1,   2,   3,   4,   5,   6,   7,   100, 101, 102,
                               200, 201, 202, 300, 301, 302, 303, 400, 401, 402, 403,
                               404, 405, 406, 500, 501, 502, 503, 504, 505};

template <size_t N>
size_t SlotOf(const uint32_t (&table)[N], uint32_t value, size_t slots) {
  for (size_t i = 0; i < N && i + 1 < slots; ++i) {
    if (table[i] == value) return i;
  }
  return slots - 1;
}

}  // namespace

const char* ProtocolName(size_t p) {
  switch (p) {
    case 0:
      return "handle_udp";
    case 1:
      return "handle_tcp";
    case 3:
      return "dns_udp";
    case 4:
      return "dns_tcp";
    default:
      return "http";
  }
}

void RequestCounters::Count(Protocol protocol, uint32_t opcode, uint32_t response_code,
                            uint64_t latency_us) {
  size_t p = static_cast<size_t>(protocol);
  size_t op = protocol == Protocol::kHttp ? 0 : SlotOf(kOpcodes, opcode, kOpcodeSlots);
  size_t rc;
  if (protocol == Protocol::kHttp) {
    // HTTP statuses go in their own small set of slots after the Handle codes.
    static constexpr uint32_t kStatuses[] = {200, 201, 302, 400, 401, 403, 404,
                                             405, 408, 409, 413, 431, 500, 503};
    rc = kCodeSlots - 1;
    for (size_t i = 0; i < sizeof(kStatuses) / sizeof(kStatuses[0]); ++i) {
      if (kStatuses[i] == response_code) rc = i;
    }
  } else {
    rc = SlotOf(kCodes, response_code, kCodeSlots);
  }
  Add(requests_[p][op][rc], 1);
  size_t bucket = kLatencyBoundsUs.size();
  for (size_t i = 0; i < kLatencyBoundsUs.size(); ++i) {
    if (latency_us <= kLatencyBoundsUs[i]) {
      bucket = i;
      break;
    }
  }
  Add(latency_[p][bucket], 1);
  Add(latency_sum_us_[p], latency_us);
}

RequestCounters& MetricsHub::NewCounters() {
  std::lock_guard lock(mutex_);
  counters_.push_back(std::make_unique<RequestCounters>());
  return *counters_.back();
}

void MetricsHub::AddCollector(std::function<void(std::string&)> collector) {
  std::lock_guard lock(mutex_);
  collectors_.push_back(std::move(collector));
}

void AppendSample(std::string& out, const std::string& name, const std::string& labels,
                  double value) {
  char number[64];
  if (value == static_cast<double>(static_cast<uint64_t>(value))) {
    std::snprintf(number, sizeof(number), "%llu", static_cast<unsigned long long>(value));
  } else {
    std::snprintf(number, sizeof(number), "%.6f", value);
  }
  out += name;
  if (!labels.empty()) out += "{" + labels + "}";
  out += " ";
  out += number;
  out += "\n";
}

void AppendHelp(std::string& out, const std::string& name, const std::string& type,
                const std::string& help) {
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

std::string MetricsHub::Render() const {
  std::lock_guard lock(mutex_);
  std::string out;
  static constexpr uint32_t kStatuses[] = {200, 201, 302, 400, 401, 403, 404,
                                           405, 408, 409, 413, 431, 500, 503};
  AppendHelp(out, "idnode_requests_total", "counter",
             "Requests answered, by protocol, opcode and response code.");
  for (size_t p = 0; p < kProtocols; ++p) {
    for (size_t op = 0; op < RequestCounters::kOpcodeSlots; ++op) {
      for (size_t rc = 0; rc < RequestCounters::kCodeSlots; ++rc) {
        uint64_t sum = 0;
        for (const auto& c : counters_)
          sum += c->requests_[p][op][rc].load(std::memory_order_relaxed);
        if (sum == 0) continue;
        std::string labels = std::string("protocol=\"") + ProtocolName(p) + "\"";
        if (p == static_cast<size_t>(Protocol::kHttp)) {
          labels += ",status=\"" +
                    (rc < sizeof(kStatuses) / sizeof(kStatuses[0]) ? std::to_string(kStatuses[rc])
                                                                   : std::string("other")) +
                    "\"";
        } else {
          labels +=
              ",opcode=\"" +
              (op + 1 < RequestCounters::kOpcodeSlots && op < sizeof(kOpcodes) / sizeof(kOpcodes[0])
                   ? std::to_string(kOpcodes[op])
                   : std::string("other")) +
              "\",rc=\"" +
              (rc + 1 < RequestCounters::kCodeSlots && rc < sizeof(kCodes) / sizeof(kCodes[0])
                   ? std::to_string(kCodes[rc])
                   : std::string("other")) +
              "\"";
        }
        AppendSample(out, "idnode_requests_total", labels, static_cast<double>(sum));
      }
    }
  }
  AppendHelp(out, "idnode_request_duration_seconds", "histogram",
             "Time from receiving a request to sending its answer.");
  for (size_t p = 0; p < kProtocols; ++p) {
    uint64_t cumulative = 0, sum_us = 0;
    for (const auto& c : counters_) sum_us += c->latency_sum_us_[p].load(std::memory_order_relaxed);
    for (size_t b = 0; b <= kLatencyBoundsUs.size(); ++b) {
      for (const auto& c : counters_)
        cumulative += c->latency_[p][b].load(std::memory_order_relaxed);
      char le[32];
      if (b < kLatencyBoundsUs.size()) {
        std::snprintf(le, sizeof(le), "%g", static_cast<double>(kLatencyBoundsUs[b]) / 1e6);
      } else {
        std::snprintf(le, sizeof(le), "+Inf");
      }
      AppendSample(out, "idnode_request_duration_seconds_bucket",
                   std::string("protocol=\"") + ProtocolName(p) + "\",le=\"" + le + "\"",
                   static_cast<double>(cumulative));
    }
    AppendSample(out, "idnode_request_duration_seconds_sum",
                 std::string("protocol=\"") + ProtocolName(p) + "\"",
                 static_cast<double>(sum_us) / 1e6);
    AppendSample(out, "idnode_request_duration_seconds_count",
                 std::string("protocol=\"") + ProtocolName(p) + "\"",
                 static_cast<double>(cumulative));
  }
  AppendHelp(out, "idnode_dropped_total", "counter",
             "Datagrams and connections dropped without an answer.");
  for (size_t p = 0; p < kProtocols; ++p) {
    uint64_t sum = 0;
    for (const auto& c : counters_) sum += c->dropped_[p].load(std::memory_order_relaxed);
    AppendSample(out, "idnode_dropped_total", std::string("protocol=\"") + ProtocolName(p) + "\"",
                 static_cast<double>(sum));
  }
  for (const auto& collect : collectors_) collect(out);
  return out;
}

RequestTotals MetricsHub::Totals() const {
  std::lock_guard lock(mutex_);
  RequestTotals totals;
  for (const auto& c : counters_) {
    for (size_t p = 0; p < kProtocols; ++p) {
      // Every answered request lands in exactly one latency bucket: their sum is the count.
      for (size_t b = 0; b <= kLatencyBoundsUs.size(); ++b) {
        const uint64_t n = c->latency_[p][b].load(std::memory_order_relaxed);
        totals.latency[p][b] += n;
        totals.requests[p] += n;
      }
      totals.dropped[p] += c->dropped_[p].load(std::memory_order_relaxed);
    }
  }
  return totals;
}

}  // namespace idnode::metrics
