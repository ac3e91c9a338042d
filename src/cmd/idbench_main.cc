// idbench: the load benchmark ops staff run against an identifier node (README.md, "idbench").
//   idbench run --protocol udp|tcp|http|dns [--server HOST:PORT] (--keys FILE | --pattern P{A..B})
//               [--order uniform|sequential|zipf:S] [--missing F] [--seconds S]
//               [--concurrency N] [--connections C] [--rate R] [--json FILE] [--html FILE]
//   idbench gen --count N --prefix P --out FILE.jsonl [--keys FILE]
//   idbench responder [--port N] [--seconds S]     a trivial Handle UDP responder (idbench's
//   ceiling)
#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <random>
#include <string>

#include "idnode/auth/credentials.h"
#include "idnode/loadgen/engine.h"
#include "idnode/loadgen/keys.h"
#include "resolve_client.h"

namespace {

using namespace idnode::loadgen;

constexpr const char* kUsage = R"(usage:
  idbench run --protocol udp|tcp|http [--server HOST:PORT] (--keys FILE | --pattern 'P/SN{0..999999}')
              [--order uniform|sequential|zipf:S] [--missing FRACTION] [--seconds S]
              [--concurrency N] [--connections C] [--rate R] [--timeout S] [--json FILE] [--html FILE]
              [--requests N] [--site HOST:PORT]
              [--writes SHARE --write-prefix P --identity INDEX:HANDLE
               (--secret-file FILE | --key FILE [--passphrase-file FILE])]
      closed loop (N requests in flight) by default; --rate R runs an open loop at R requests/s
      with latency measured from each request's intended send time. --requests N stops after N
      requests are answered (--seconds is then a limit): with --order sequential and N the number
      of keys, every key is asked once (how benchmarks warm a cache). Progress goes to stderr once
      a second; the summary to stdout. Default server: 127.0.0.1:2641 (udp/tcp), :8000 (http).
      --site HOST:PORT (instead of --server) drives the site of several servers that the Handle
      server at HOST:PORT belongs to, as the field's clients do: the prefix handle of the first
      key's prefix (0.NA/P) is resolved there (TCP), its HS_SITE lists the site's servers, and
      each request goes to the server the site's hash picks (a node serves every prefix it homes
      from its one site), over the protocol's port in the site record; the summary gives each
      server's rate beside the aggregate.
      --writes SHARE (0..1, udp/tcp) mixes in writes: CREATE_HANDLE of fresh handles under P and
      MODIFY_VALUE of those, each answering the server's challenge with the identity's HS_SECKEY
      (HMAC-SHA256; the secret is the first line of FILE), or signed with an HS_PUBKEY identity's
      private key (--key: PEM or the reference's privkey.bin).
      --protocol dns [--apex oid-res.org.] [--qtype NAPTR|TXT|SOA] sends DNS queries (default port
      5353): keys that are OIDs (1.2.156.3001.1) are asked as ORS names under the apex, others as
      DNS names; the codes reported are DNS RCODEs.
  idbench gen --count N --prefix P --out FILE.jsonl [--keys FILE] [--seed S]
      a dataset for `idctl import`: N identifiers P/SN0000000... with 3-6 values (URL, EMAIL,
      DESC, HS_ADMIN) of 40-200 bytes, and optionally the matching key file
  idbench responder [--port N] [--seconds S]
      a trivial Handle UDP responder (fixed answer): run idbench against it to see idbench's ceiling
)";

std::string RandomText(std::mt19937_64& rng, size_t n) {
  static constexpr char kChars[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::string s(n, ' ');
  for (auto& c : s) c = kChars[rng() % 36];
  return s;
}

int Gen(int argc, char** argv) {
  uint64_t count = 0, seed = 1;
  std::string prefix, out, keys;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--count")
      count = std::strtoull(argv[i + 1], nullptr, 10);
    else if (a == "--prefix")
      prefix = argv[i + 1];
    else if (a == "--out")
      out = argv[i + 1];
    else if (a == "--keys")
      keys = argv[i + 1];
    else if (a == "--seed")
      seed = std::strtoull(argv[i + 1], nullptr, 10);
    else {
      std::cerr << "idbench gen: unknown option " << a << "\n" << kUsage;
      return 2;
    }
  }
  if (count == 0 || prefix.empty() || out.empty()) {
    std::cerr << kUsage;
    return 2;
  }
  std::ofstream data(out), key_file;
  if (!keys.empty()) key_file.open(keys);
  if (!data || (!keys.empty() && !key_file)) {
    std::cerr << "idbench gen: cannot write the output\n";
    return 1;
  }
  std::mt19937_64 rng(seed);
  for (uint64_t i = 0; i < count; ++i) {
    char suffix[32];
    std::snprintf(suffix, sizeof(suffix), "SN%07llu", static_cast<unsigned long long>(i));
    std::string handle = prefix + "/" + suffix;
    size_t values = 3 + rng() % 4;  // 3-6 values
    std::string line = R"({"handle":")" + handle + R"(","values":[)";
    auto value = [&](int index, const char* type, const std::string& text) {
      line += std::string(index > 1 ? "," : "") + R"({"index":)" + std::to_string(index) +
              R"(,"type":")" + type + R"(","data":{"format":"string","value":")" + text +
              R"("},"ttl":86400})";
    };
    value(1, "URL",
          "https://" + RandomText(rng, 8) + ".example.cn/item/" + RandomText(rng, 24 + rng() % 60));
    value(2, "DESC", "part " + std::string(suffix) + " " + RandomText(rng, 30 + rng() % 150));
    if (values >= 4) value(3, "EMAIL", RandomText(rng, 8 + rng() % 20) + "@example.cn");
    if (values >= 5) value(4, "DESC", RandomText(rng, 40 + rng() % 160));
    if (values >= 6)
      value(5, "URL", "https://mirror.example.cn/" + RandomText(rng, 20 + rng() % 100));
    line += R"(,{"index":100,"type":"HS_ADMIN","data":{"format":"admin","value":{"handle":"0.NA/)" +
            prefix + R"(","index":300,"permissions":"111111111111"}},"ttl":86400}]})";
    data << line << '\n';
    if (key_file) key_file << handle << '\n';
  }
  std::cerr << "wrote " << count << " identifiers to " << out
            << (keys.empty() ? "" : " and their keys to " + keys) << "\n";
  return data && (keys.empty() || key_file) ? 0 : 1;
}

// Answers every Handle request with the same small success message, echoing its request id.
int Responder(int argc, char** argv) {
  uint16_t port = 0;
  double seconds = 3600;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--port")
      port = static_cast<uint16_t>(std::atoi(argv[i + 1]));
    else if (a == "--seconds")
      seconds = std::atof(argv[i + 1]);
  }
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    std::perror("bind");
    return 1;
  }
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  std::printf("responder ready: 127.0.0.1:%u\n", ntohs(addr.sin_port));
  std::fflush(stdout);
  timeval tv{0, 200000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  // A 4-value-sized answer: envelope + header + an empty-bodied success.
  std::array<uint8_t, 300> answer{};
  std::memcpy(answer.data(), "\x02\x0b\x02\x0b", 4);
  answer[19] = static_cast<uint8_t>(answer.size() - 20);
  answer[27] = 1;
  constexpr int kBatch = 64;
  std::array<std::array<uint8_t, 512>, kBatch> in;
  std::array<sockaddr_in, kBatch> from;
  std::array<iovec, kBatch> iov, out_iov;
  std::array<mmsghdr, kBatch> rx, tx;
  std::array<std::array<uint8_t, 300>, kBatch> replies;
  auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    for (int i = 0; i < kBatch; ++i) {
      iov[i] = {in[i].data(), in[i].size()};
      rx[i] = {};
      rx[i].msg_hdr.msg_name = &from[i];
      rx[i].msg_hdr.msg_namelen = sizeof(sockaddr_in);
      rx[i].msg_hdr.msg_iov = &iov[i];
      rx[i].msg_hdr.msg_iovlen = 1;
    }
    int n = recvmmsg(fd, rx.data(), kBatch, MSG_WAITFORONE, nullptr);
    if (n <= 0) continue;
    for (int i = 0; i < n; ++i) {
      replies[i] = answer;
      std::memcpy(replies[i].data() + 8, in[i].data() + 8, 4);  // request id
      out_iov[i] = {replies[i].data(), replies[i].size()};
      tx[i] = {};
      tx[i].msg_hdr.msg_name = &from[i];
      tx[i].msg_hdr.msg_namelen = rx[i].msg_hdr.msg_namelen;
      tx[i].msg_hdr.msg_iov = &out_iov[i];
      tx[i].msg_hdr.msg_iovlen = 1;
    }
    sendmmsg(fd, tx.data(), static_cast<unsigned>(n), 0);
  }
  close(fd);
  return 0;
}

int RunCommand(int argc, char** argv) {
  RunOptions run;
  KeyOptions key_options;
  std::string key_file_bytes;  // --key
  std::string passphrase;      // --passphrase-file
  std::string json_file, html_file, server;
  bool protocol_given = false;
  std::string site_server;  // --site
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << "idbench: " << a << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--protocol") {
      std::string p = next();
      protocol_given = true;
      if (p == "udp")
        run.protocol = Protocol::kUdp;
      else if (p == "tcp")
        run.protocol = Protocol::kTcp;
      else if (p == "http")
        run.protocol = Protocol::kHttp;
      else if (p == "dns")
        run.protocol = Protocol::kDns;
      else {
        std::cerr << "idbench: unknown protocol " << p << "\n";
        return 2;
      }
    } else if (a == "--server")
      server = next();
    else if (a == "--site")
      site_server = next();
    else if (a == "--keys")
      key_options.file = next();
    else if (a == "--pattern")
      key_options.pattern = next();
    else if (a == "--order") {
      std::string o = next();
      if (o == "uniform")
        key_options.order = Order::kUniform;
      else if (o == "sequential")
        key_options.order = Order::kSequential;
      else if (o.rfind("zipf", 0) == 0) {
        key_options.order = Order::kZipf;
        if (o.size() > 5) key_options.zipf_s = std::atof(o.c_str() + 5);
      } else {
        std::cerr << "idbench: --order is uniform, sequential or zipf:S\n";
        return 2;
      }
    } else if (a == "--missing")
      key_options.missing = std::atof(next().c_str());
    else if (a == "--seconds")
      run.seconds = std::atof(next().c_str());
    else if (a == "--requests")
      run.max_requests = std::strtoull(next().c_str(), nullptr, 10);
    else if (a == "--concurrency")
      run.concurrency = static_cast<uint32_t>(std::atoi(next().c_str()));
    else if (a == "--connections")
      run.connections = static_cast<uint32_t>(std::atoi(next().c_str()));
    else if (a == "--rate")
      run.rate = std::atof(next().c_str());
    else if (a == "--timeout")
      run.timeout_seconds = std::atof(next().c_str());
    else if (a == "--json")
      json_file = next();
    else if (a == "--html")
      html_file = next();
    else if (a == "--apex")
      run.dns_apex = next();
    else if (a == "--qtype") {
      std::string t = next();
      if (t == "NAPTR")
        run.dns_qtype = 35;
      else if (t == "TXT")
        run.dns_qtype = 16;
      else if (t == "SOA")
        run.dns_qtype = 6;
      else {
        std::cerr << "idbench: --qtype is NAPTR, TXT or SOA\n";
        return 2;
      }
    } else if (a == "--writes")
      run.writes.share = std::atof(next().c_str());
    else if (a == "--write-prefix")
      run.writes.prefix = next();
    else if (a == "--identity") {
      std::string text = next();
      size_t colon = text.find(':');
      int index = colon == std::string::npos ? 0 : std::atoi(text.substr(0, colon).c_str());
      if (index <= 0 || colon + 1 >= text.size()) {
        std::cerr << "idbench: --identity is index:handle, e.g. 300:0.NA/BENCH.1\n";
        return 2;
      }
      run.writes.identity_index = index;
      run.writes.identity_handle = text.substr(colon + 1);
    } else if (a == "--secret-file") {
      // From a file, so that the secret does not show in the process list.
      std::ifstream in(next(), std::ios::binary);
      std::getline(in, run.writes.secret);
      if (!in && run.writes.secret.empty()) {
        std::cerr << "idbench: cannot read the secret file\n";
        return 2;
      }
    } else if (a == "--key" || a == "--passphrase-file") {
      // An HS_PUBKEY identity's private key (PEM or the reference's privkey.bin).
      std::ifstream in(next(), std::ios::binary);
      std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (!in && bytes.empty()) {
        std::cerr << "idbench: cannot read " << a.substr(2) << "\n";
        return 2;
      }
      if (a == "--key") {
        key_file_bytes = std::move(bytes);
      } else {
        passphrase = bytes.substr(0, bytes.find('\n'));
      }
    } else {
      std::cerr << "idbench: unknown option " << a << "\n" << kUsage;
      return 2;
    }
  }
  if (!key_file_bytes.empty()) {
    auto pem = idnode::auth::PrivateKeyPem(
        {reinterpret_cast<const uint8_t*>(key_file_bytes.data()), key_file_bytes.size()},
        passphrase);
    if (!pem.ok()) {
      std::cerr << "idbench: --key: " << pem.error() << "\n";
      return 2;
    }
    run.writes.private_key_pem = std::move(*pem);
  }
  if (!protocol_given || (key_options.file.empty() == key_options.pattern.empty())) {
    std::cerr << kUsage;
    return 2;
  }
  run.port = run.protocol == Protocol::kHttp ? 8000 : run.protocol == Protocol::kDns ? 5353 : 2641;
  if (!server.empty()) {
    size_t colon = server.rfind(':');
    run.host = server.substr(0, colon);
    if (run.host.size() > 2 && run.host.front() == '[')
      run.host = run.host.substr(1, run.host.size() - 2);
    if (colon != std::string::npos)
      run.port = static_cast<uint16_t>(std::atoi(server.c_str() + colon + 1));
  }
  std::string error;
  auto keys = KeySource::Make(key_options, &error);
  if (!keys) {
    std::cerr << "idbench: " << error << "\n";
    return 2;
  }
  if (!site_server.empty()) {
    if (run.protocol == Protocol::kDns || !server.empty()) {
      std::cerr << "idbench: --site drives the Handle protocol or HTTP, instead of --server\n";
      return 2;
    }
    const size_t colon = site_server.rfind(':');
    std::string site_host = site_server.substr(0, colon);
    if (site_host.size() > 2 && site_host.front() == '[')
      site_host = site_host.substr(1, site_host.size() - 2);
    const int site_port =
        colon == std::string::npos ? 0 : std::atoi(site_server.c_str() + colon + 1);
    if (site_host.empty() || site_port <= 0 || site_port > 65535) {
      std::cerr << "idbench: --site needs HOST:PORT (a Handle server of the site)\n";
      return 2;
    }
    const std::string first = keys->First();
    const size_t slash = first.find('/');
    if (slash == std::string::npos) {
      std::cerr << "idbench: --site: the first key has no prefix\n";
      return 2;
    }
    auto site = idnode::cmd::SiteOfPrefix(first.substr(0, slash), site_host,
                                          static_cast<uint16_t>(site_port));
    if (!site.ok()) {
      std::cerr << "idbench: --site: " << site.error() << "\n";
      return 1;
    }
    for (const auto& s : site->servers) {
      const uint16_t port = run.protocol == Protocol::kUdp   ? s.udp
                            : run.protocol == Protocol::kTcp ? s.tcp
                                                             : s.http;
      if (port == 0) {
        std::cerr << "idbench: --site: server " << s.host
                  << " has no interface for this protocol in the site record\n";
        return 1;
      }
      run.targets.push_back({s.host, port});
    }
    run.route = [route = *site](std::string_view handle) { return route.ServerFor(handle); };
    std::fprintf(stderr, "site of %zu servers (the site of %s's identifiers, asked at %s):",
                 run.targets.size(), first.substr(0, slash).c_str(), site_server.c_str());
    for (const auto& t : run.targets) std::fprintf(stderr, " %s:%u", t.host.c_str(), t.port);
    std::fprintf(stderr, "\n");
  }
  auto result = Run(run, *keys, [](const Second& s) {
    std::fprintf(
        stderr, "%6.0fs %9llu req/s  p50 %8.1f us  p99 %8.1f us  errors %llu  timeouts %llu\n",
        s.at, static_cast<unsigned long long>(s.answered), s.p50_ns / 1e3, s.p99_ns / 1e3,
        static_cast<unsigned long long>(s.errors), static_cast<unsigned long long>(s.timeouts));
  });
  if (!result.error.empty()) {
    std::cerr << "idbench: " << result.error << "\n";
    return 1;
  }
  std::printf(
      "requests/s %.0f  (answered %llu of %llu sent in %.1f s; timeouts %llu, errors %llu)\n",
      result.seconds > 0 ? result.answered / result.seconds : 0,
      static_cast<unsigned long long>(result.answered),
      static_cast<unsigned long long>(result.sent), result.seconds,
      static_cast<unsigned long long>(result.timeouts),
      static_cast<unsigned long long>(result.errors));
  std::printf("latency us  p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n",
              result.latency.Percentile(0.5) / 1e3, result.latency.Percentile(0.9) / 1e3,
              result.latency.Percentile(0.99) / 1e3, result.latency.Percentile(0.999) / 1e3,
              result.latency.max() / 1e3);
  if (run.rate > 0) {
    // Behind schedule: idbench (or its core) stalled; that time is in the latencies above too.
    std::printf("send lag us  p50 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n",
                result.send_lag.Percentile(0.5) / 1e3, result.send_lag.Percentile(0.99) / 1e3,
                result.send_lag.Percentile(0.999) / 1e3, result.send_lag.max() / 1e3);
  }
  std::printf("bytes out %llu  in %llu\n", static_cast<unsigned long long>(result.bytes_out),
              static_cast<unsigned long long>(result.bytes_in));
  // How busy idbench itself was: below one core, it was not what limited the rate.
  std::printf("idbench CPU %.2f s (%.0f%% of one core), %.0f answers per idbench CPU second\n",
              result.client_cpu_seconds,
              result.seconds > 0 ? 100 * result.client_cpu_seconds / result.seconds : 0,
              result.client_cpu_seconds > 0 ? result.answered / result.client_cpu_seconds : 0);
  for (const auto& [code, n] : result.codes)
    std::printf("code %u: %llu\n", code, static_cast<unsigned long long>(n));
  if (result.targets.size() > 1) {
    for (size_t t = 0; t < result.targets.size(); ++t) {
      const auto& tally = result.targets[t];
      uint64_t success = tally.codes.count(1) ? tally.codes.at(1) : 0;
      if (run.protocol == Protocol::kHttp)
        success = tally.codes.count(200) ? tally.codes.at(200) : 0;
      std::printf(
          "server %zu %s: requests/s %.0f  (answered %llu of %llu sent, %llu successful; "
          "timeouts %llu, failed with their connection %llu)\n",
          t, tally.server.c_str(), result.seconds > 0 ? tally.answered / result.seconds : 0,
          static_cast<unsigned long long>(tally.answered),
          static_cast<unsigned long long>(tally.sent), static_cast<unsigned long long>(success),
          static_cast<unsigned long long>(tally.timeouts),
          static_cast<unsigned long long>(tally.failed));
    }
  }
  if (result.writes_sent > 0) {
    std::printf("writes %llu answered of %llu sent; latency us  p50 %.1f  p99 %.1f  max %.1f\n",
                static_cast<unsigned long long>(result.writes_answered),
                static_cast<unsigned long long>(result.writes_sent),
                result.write_latency.Percentile(0.5) / 1e3,
                result.write_latency.Percentile(0.99) / 1e3, result.write_latency.max() / 1e3);
    for (const auto& [code, n] : result.write_codes)
      std::printf("write code %u: %llu\n", code, static_cast<unsigned long long>(n));
  }
  if (!json_file.empty()) std::ofstream(json_file) << ToJson(run, result) << "\n";
  if (!html_file.empty())
    std::ofstream(html_file) << ToHtml(run, result,
                                       "idbench: " + run.host + ":" + std::to_string(run.port));
  return result.answered > 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << kUsage;
    return 2;
  }
  std::string command = argv[1];
  if (command == "run") return RunCommand(argc, argv);
  if (command == "gen") return Gen(argc, argv);
  if (command == "responder") return Responder(argc, argv);
  if (command == "--help" || command == "-h") {
    std::cout << kUsage;
    return 0;
  }
  std::cerr << "idbench: unknown command " << command << "\n" << kUsage;
  return 2;
}
