// The load loop of idbench: keeps requests in flight against one server (closed loop: N in
// flight; open loop: a fixed rate, latency measured from each request's intended send time so a
// stalled server cannot hide its stall: no coordinated omission), over Handle UDP (batched with
// sendmmsg/recvmmsg), Handle TCP (persistent, pipelined connections), or HTTP (the JSON API over
// keep-alive connections). One thread runs it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "idnode/loadgen/histogram.h"
#include "idnode/loadgen/keys.h"

namespace idnode::loadgen {

// kDns: DNS queries over UDP for OIDs (ORS names under `dns_apex`), e.g. against idnode's DNS
// front end or Knot; response "codes" are then DNS RCODEs (0 NOERROR, 3 NXDOMAIN, ...).
enum class Protocol : uint8_t { kUdp, kTcp, kHttp, kDns };

// A share of writes beside the reads (Handle over UDP or TCP), for the registration path: each
// write is a CREATE_HANDLE (with OVRW) of a fresh handle under `prefix`, or every other one a
// MODIFY_VALUE of a handle this run created, authenticated by answering the server's 402 challenge
// with the identity's HS_SECKEY (HMAC-SHA256) or HS_PUBKEY private key. A write's latency runs from
// its intended send time to the final answer, both round trips included.
struct WriteMix {
  double share = 0;  // 0..1 of all requests
  std::string prefix;
  std::string identity_handle;  // e.g. 0.NA/BENCH.1
  int32_t identity_index = 300;
  std::string secret;
  // Instead of `secret`: an HS_PUBKEY identity's private key (PEM), the challenge answered with a
  // SHA-256 signature.
  std::string private_key_pem;
};

// One server of a site idbench drives.
struct Target {
  std::string host;
  uint16_t port = 0;
};

struct RunOptions {
  Protocol protocol = Protocol::kUdp;
  std::string host = "127.0.0.1";
  uint16_t port = 2641;
  // A site of several servers (Handle UDP, TCP or HTTP): when not empty, each request goes to
  // targets[route(handle)] (route returns an index below targets.size(), e.g. the site's hash)
  // instead of host:port, with `connections` connections to each; results are also tallied per
  // target.
  std::vector<Target> targets;
  std::function<uint32_t(std::string_view handle)> route;
  double seconds = 10;  // how long to run (with max_requests: at most)
  // > 0: send this many requests, then stop once every one is answered or timed out (warming a
  // cache with every key once: --order sequential --requests <keys>).
  uint64_t max_requests = 0;
  uint32_t concurrency = 64;  // requests in flight (closed loop), or the cap on them (open loop)
  uint32_t connections = 8;   // TCP / HTTP
  double rate = 0;            // > 0: open loop at this many requests per second
  double timeout_seconds = 2;
  WriteMix writes;
  // DNS: keys that are canonical OIDs become ORS names under this apex; other keys are sent as
  // DNS names as they are.
  std::string dns_apex = "oid-res.org.";
  uint16_t dns_qtype = 35;  // NAPTR
};

struct Second {
  double at = 0;  // seconds since the start
  uint64_t answered = 0;
  uint64_t errors = 0;
  uint64_t timeouts = 0;
  uint64_t p50_ns = 0;
  uint64_t p99_ns = 0;
};

// One target's share of a run.
struct TargetTally {
  std::string server;  // host:port
  uint64_t sent = 0;
  uint64_t answered = 0;
  uint64_t timeouts = 0;
  // Failed without an answer of their own: waiting on a connection that timed out or closed.
  uint64_t failed = 0;
  std::map<uint32_t, uint64_t> codes;  // kept for a site of several targets only
};

struct RunResult {
  double seconds = 0;
  uint64_t sent = 0;
  uint64_t answered = 0;
  uint64_t timeouts = 0;
  uint64_t errors = 0;  // transport failures, undecodable answers
  uint64_t bytes_out = 0;
  uint64_t bytes_in = 0;
  std::map<uint32_t, uint64_t> codes;  // Handle response codes, or HTTP statuses
  Histogram latency;
  // The writes among them (final answers; a 402 is not an answer).
  uint64_t writes_sent = 0;
  uint64_t writes_answered = 0;
  std::map<uint32_t, uint64_t> write_codes;
  Histogram write_latency;
  // Open loop: how late idbench itself sent each request, from its intended send time. A long
  // tail here is the generator's (or its core's) stall, not the server's.
  Histogram send_lag;
  std::vector<Second> timeline;
  std::vector<TargetTally> targets;  // one per target (one, host:port, without a site)
  // idbench's own CPU time (user + system) during the run: requests per CPU second is its
  // capacity, whatever the server on the other side could take.
  double client_cpu_seconds = 0;
  std::string error;  // set when the run could not start
};

// Runs the load; `progress` is called once a second with the last second's figures.
RunResult Run(const RunOptions& options, KeySource& keys,
              const std::function<void(const Second&)>& progress);

// A Handle resolution request for `handle` with `request_id`, written into `out`: its size, or 0
// if it does not fit. ResolutionRequest returns it as a vector.
size_t WriteResolutionRequest(std::string_view handle, uint32_t request_id, std::span<uint8_t> out);
std::vector<uint8_t> ResolutionRequest(std::string_view handle, uint32_t request_id);

// Reports: one JSON document, and a self-contained HTML page (inline SVG, no network).
std::string ToJson(const RunOptions& options, const RunResult& result);
std::string ToHtml(const RunOptions& options, const RunResult& result, const std::string& title);

}  // namespace idnode::loadgen
