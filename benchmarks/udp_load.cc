// udp_load: a closed-loop Handle-over-UDP load generator for benchmarks/server_bench.sh (idbench,
// with its open loop, other protocols and reports, is a later issue). Keeps `--inflight` requests
// outstanding on one socket, sends and receives in batches (sendmmsg/recvmmsg), and prints
// answered requests per second and latency percentiles as one JSON line.
//   udp_load --server 127.0.0.1:2641 --keys FILE --seconds 10 --inflight 64
#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

std::vector<uint8_t> Request(const std::string& handle, uint32_t request_id) {
  std::vector<uint8_t> m;
  auto u32 = [&m](uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) m.push_back(static_cast<uint8_t>(v >> s));
  };
  uint32_t body = 4 + static_cast<uint32_t>(handle.size()) + 4 + 4;
  m = {2, 11, 2, 11};
  u32(0);
  u32(request_id);
  u32(0);
  u32(24 + body + 4);
  u32(1);           // OC_RESOLUTION
  u32(0);           // request
  u32(0x19000000);  // REC CA PO
  m.push_back(0xff);
  m.push_back(0xff);
  m.push_back(0);
  m.push_back(0);
  u32(static_cast<uint32_t>(time(nullptr) + 43200));
  u32(body);
  u32(static_cast<uint32_t>(handle.size()));
  m.insert(m.end(), handle.begin(), handle.end());
  u32(0);
  u32(0);
  u32(0);  // credential
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  std::string server = "127.0.0.1:2641", keys_file;
  double seconds = 10;
  uint32_t inflight = 64;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--server")
      server = argv[i + 1];
    else if (a == "--keys")
      keys_file = argv[i + 1];
    else if (a == "--seconds")
      seconds = std::atof(argv[i + 1]);
    else if (a == "--inflight")
      inflight = static_cast<uint32_t>(std::atoi(argv[i + 1]));
  }
  std::vector<std::string> keys;
  std::ifstream in(keys_file);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) keys.push_back(line);
  }
  if (keys.empty() || inflight == 0 || inflight > 4096) {
    std::fprintf(stderr, "usage: udp_load --server H:P --keys FILE [--seconds S] [--inflight N]\n");
    return 2;
  }
  sockaddr_in to{};
  to.sin_family = AF_INET;
  size_t colon = server.rfind(':');
  inet_pton(AF_INET, server.substr(0, colon).c_str(), &to.sin_addr);
  to.sin_port = htons(static_cast<uint16_t>(std::atoi(server.c_str() + colon + 1)));
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  int buf = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
  connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof(to));

  std::mt19937_64 rng(1);
  std::vector<Clock::time_point> sent_at(inflight);
  std::vector<uint32_t> generation(inflight, 0);
  std::vector<uint64_t> latencies_ns;
  latencies_ns.reserve(1 << 22);
  uint64_t answered = 0, timeouts = 0, sent = 0;
  auto send_slot = [&](uint32_t slot) {
    ++generation[slot];
    uint32_t id = (generation[slot] << 12) | slot;
    auto req = Request(keys[rng() % keys.size()], id & 0x7fffffff);
    sent_at[slot] = Clock::now();
    ::send(fd, req.data(), req.size(), 0);
    ++sent;
  };
  const auto start = Clock::now();
  const auto end =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  for (uint32_t s = 0; s < inflight; ++s) send_slot(s);
  std::vector<mmsghdr> headers(64);
  std::vector<iovec> iov(64);
  std::vector<std::array<uint8_t, 512>> buffers(64);
  auto last_check = Clock::now();
  while (Clock::now() < end) {
    pollfd p{fd, POLLIN, 0};
    ::poll(&p, 1, 10);
    for (size_t i = 0; i < headers.size(); ++i) {
      iov[i] = {buffers[i].data(), buffers[i].size()};
      headers[i] = {};
      headers[i].msg_hdr.msg_iov = &iov[i];
      headers[i].msg_hdr.msg_iovlen = 1;
    }
    int n = ::recvmmsg(fd, headers.data(), static_cast<unsigned>(headers.size()), MSG_DONTWAIT,
                       nullptr);
    auto now = Clock::now();
    for (int i = 0; i < n; ++i) {
      if (headers[i].msg_len < 20) continue;
      const uint8_t* b = buffers[i].data();
      uint32_t id = uint32_t{b[8]} << 24 | uint32_t{b[9]} << 16 | uint32_t{b[10]} << 8 | b[11];
      uint32_t seq = uint32_t{b[12]} << 24 | uint32_t{b[13]} << 16 | uint32_t{b[14]} << 8 | b[15];
      uint32_t slot = id & 0xfff;
      if (slot >= inflight || seq != 0 || ((generation[slot] << 12 | slot) & 0x7fffffff) != id)
        continue;
      latencies_ns.push_back(static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(now - sent_at[slot]).count()));
      ++answered;
      send_slot(slot);
    }
    if (now - last_check > std::chrono::milliseconds(100)) {
      for (uint32_t s = 0; s < inflight; ++s) {
        if (now - sent_at[s] > std::chrono::seconds(1)) {
          ++timeouts;
          send_slot(s);
        }
      }
      last_check = now;
    }
  }
  double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  std::sort(latencies_ns.begin(), latencies_ns.end());
  auto pct = [&](double q) -> double {
    if (latencies_ns.empty()) return 0;
    return static_cast<double>(latencies_ns[std::min(
               latencies_ns.size() - 1, static_cast<size_t>(q * latencies_ns.size()))]) /
           1000.0;
  };
  std::printf(
      "{\"sent\":%llu,\"answered\":%llu,\"timeouts\":%llu,\"seconds\":%.3f,\"qps\":%.0f,\"p50_us\":"
      "%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f}\n",
      static_cast<unsigned long long>(sent), static_cast<unsigned long long>(answered),
      static_cast<unsigned long long>(timeouts), elapsed, answered / elapsed, pct(0.5), pct(0.99),
      pct(0.999));
  close(fd);
  return 0;
}
