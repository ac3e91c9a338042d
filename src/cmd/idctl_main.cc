// idctl: the operator's command-line tool.
//   decode   Handle messages captured as hex (one datagram or TCP message per line; the datagrams
//            of a multi-datagram UDP message on consecutive lines), printed field by field
//   import / export / digest / compact   JSON Lines records into / out of a stopped node's data
//            directory, its digest, its storage compacted
#include <arpa/inet.h>
#include <fcntl.h>
#include <malloc.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cctype>
#include <chrono>
#include <cstring>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "admin_client.h"
#include "batch_client.h"
#include "idnode/auth/credentials.h"
#include "idnode/common/hex.h"
#include "idnode/http/write_requests.h"
#include "idnode/protocol/describe.h"
#include "idnode/protocol/message.h"
#include "idnode/protocol/transport.h"
#include "idnode/protocol/value_types.h"
#include "idnode/registry/bulk.h"
#include "idnode/registry/registry.h"
#include "replication_status.h"
#include "resolve_client.h"
#include "site_tools.h"

#include <filesystem>
#include <optional>
#include <vector>

namespace {

constexpr const char* kUsage = R"(usage: idctl <command> [arguments]

commands:
  resolve ID [--type T] [--index I] [--server udp://H:P|tcp://H:P] [--json] [--walk] [--no-route]
                 resolve an identifier with the Handle protocol (default server udp://127.0.0.1:2641;
                 over UDP it retries after 500, 1000 and 1500 ms, then uses TCP, as real clients do;
                 --type and --index repeat and combine with OR); exit status 0 when it resolved.
                 When the server answers that another server of its site holds the identifier
                 (RC 301), it is asked at the server the site's hash picks (from the prefix
                 handle 0.NA/P's HS_SITE), as real clients route; --no-route stops at the 301.
                 --walk starts at the server and follows the answers as a Handle client does:
                 the prefix handle 0.NA/P first (prefix referrals, RC 303, lead to the service of
                 a derived prefix), then the identifier at the site its HS_SITE values name
                 (service referrals, RC 302, are followed); each hop is printed
  admin create|add|modify|remove|delete|home|unhome|takeover HANDLE --identity INDEX:HANDLE
        (--secret-file FILE | --key FILE [--passphrase-file FILE])
        [--value INDEX:TYPE:DATA ...] [--index I ...] [--overwrite] [--server tcp://H:P]
                 administer a running node over the Handle protocol (TCP), answering its challenge
                 with the identity's HS_SECKEY (the first line of FILE) or, for an HS_PUBKEY
                 identity, a signature with its private key: PEM (PKCS#8, encrypted or not, or a
                 traditional RSA/DSA key) or the reference's own key file (hdl-keygen's
                 privkey.bin, encrypted or not); HS_ADMIN data is INDEX:HANDLE; HS_PUBKEY data
                 @FILE is the public half of the (unencrypted) private key in FILE; exit status 0
                 on RC_SUCCESS
  batch FILE --server https://HOST:PORT --identity INDEX:HANDLE --secret-file FILE
        [--transaction ID] [--ca-file PEM | --insecure]
                 send the operations of FILE (JSON Lines, one {"op":"create|add|modify|remove|
                 delete","handle":...,"values":[...],"indexes":[...]} per line) to a running
                 node's POST /api/batch, 2,000 per request, under a transaction id derived from
                 the file (running the same file again applies nothing twice); prints the
                 operations that failed; exit status 0 when all succeeded
  keygen [--type rsa|dsa|sm2] [--bits N] --out DIR [--passphrase-file FILE]
                 make a key pair for an HS_PUBKEY identity: DIR/privkey.bin in the reference's
                 own format (what its tools read; PBKDF2-AES encrypted with a passphrase),
                 DIR/privkey.pem (PKCS#8; encrypted with one) and DIR/pubkey.bin (the HS_PUBKEY
                 value data to register); SM2 (China's identifier SDK): privkey.pem and pubkey.bin
                 (SM2_PUB_KEY) only; private files are owner-only, never overwritten
  site split --data-dir DIR [--shards S] --servers N --out DIR
                 split a stopped node's data into the data of the N servers of a site by the site
                 hash (HANDLE.md 1.7): DIR/server0 ... server(N-1), whole shards copied (S a
                 multiple of N), each server keeping its share and every prefix handle
  site check [--shards S] SERVER0_DIR SERVER1_DIR ... [--against UNSPLIT_DIR]
                 check that each server holds only identifiers that hash to it and that their
                 digests add up to the unsplit data's; exit status 0 when they do
  decode FILE    decode Handle messages written as hex, one datagram or TCP message per line
                 ("-" reads standard input); prints each message field by field
  import --data-dir DIR [--shards N] FILE
                 load JSON Lines records ({"handle":...,"values":[...]} per line, "-" for
                 standard input) into a stopped node's data directory, with a progress bar;
                 bad lines are reported by number and skipped (exit status 1 if there were any)
  compact --data-dir DIR [--shards N]
                 rewrite a stopped node's storage into its final form: an import writes fast
                 (LZ4) SST files, and compaction recompresses them with zstd (smaller on disk)
  audit --data-dir DIR [--since T] [--prefix P] [--identity INDEX:HANDLE] [--limit N]
                 print a stopped node's audit log as JSON Lines, oldest first: every write and
                 every refused administrative decision (time, identity, source address, via,
                 operation, handle, response code); T is ISO-8601 UTC or milliseconds; a running
                 node serves the same to server admins as GET /api/audit over HTTPS
  export --data-dir DIR [--shards N] [--prefix P]
                 write every record (or those under prefix P) as JSON Lines to standard output
  prefix home|delegate|mirror|takeover|forget --data-dir DIR [--shards N] PREFIX
        [HOST:PORT | PEER [OWNER_HOST:PORT]]
                 change the prefix table of a stopped node: home PREFIX here; delegate it to the
                 secondary node at HOST:PORT (the HS_SITE values of its 0.NA/PREFIX record become
                 one pointing there, which referrals carry; its other values are kept); mirror it
                 from PEER, a source in replication.sources (read-only here; OWNER_HOST:PORT, or a
                 PEER of that form, becomes that HS_SITE, the owner an incomplete mirror refers
                 to; a prefix homed here before is referred to the owner until its first
                 snapshot); take a mirror over (homed and writable here, with a new history);
                 forget it (a delegation loses its HS_SITE/HS_SERV values). A prefix handle
                 written with HS_SITE, HS_SERV or HS_SITE.PREFIX values (admin or import)
                 delegates its prefix the same way
  changelog --data-dir DIR [--shards N]
                 print a stopped node's retained changelog, one JSON line per entry
  replication status [--http HOST:PORT] [--json]
                 what a running node's replication is doing (its HTTP port, default
                 127.0.0.1:8000): each link's state, per-shard positions, lag, bytes, snapshots
  prefix list --data-dir DIR [--shards N]
  digest --data-dir DIR [--shards N] [--prefix P]
                 print the order-independent digest of the records (equal on nodes holding the
                 same data) and their count
  --version      print the version
  --help         print this help

--shards is the data directory's shard count (default 8; fixed when the directory is created).
)";

int Decode(std::istream& in) {
  using idnode::protocol::UdpReassembler;
  UdpReassembler reassembler;
  std::string line;
  int line_number = 0;
  int failures = 0;
  int messages = 0;
  while (std::getline(in, line)) {
    ++line_number;
    // Transcript files put "number transport direction length" before the hex: keep the last field.
    auto last_space = line.find_last_of(' ');
    std::string_view hex = line;
    if (last_space != std::string::npos) hex = std::string_view(line).substr(last_space + 1);
    if (hex.empty()) continue;
    auto bytes = idnode::FromHex(hex);
    if (!bytes) {
      std::cerr << "line " << line_number << ": not hex\n";
      ++failures;
      continue;
    }
    auto outcome = reassembler.Offer({}, *bytes, UdpReassembler::Clock::now());
    if (std::holds_alternative<UdpReassembler::NeedMore>(outcome)) continue;
    if (const auto* error = std::get_if<idnode::protocol::ProtocolError>(&outcome)) {
      // Not a datagram: a TCP message can exceed 512 bytes; decode it whole.
      if (bytes->size() <= idnode::protocol::kMaxUdpDatagramSize) {
        std::cerr << "line " << line_number << ": " << idnode::protocol::ErrorCodeName(error->code)
                  << " at byte " << error->offset << "\n";
        ++failures;
        continue;
      }
      outcome = UdpReassembler::Complete{*bytes};
    }
    const auto& message = std::get<UdpReassembler::Complete>(outcome).message;
    auto decoded = idnode::protocol::DecodeMessage(message);
    if (!decoded.ok()) {
      std::cerr << "line " << line_number << ": "
                << idnode::protocol::ErrorCodeName(decoded.error().code) << " at byte "
                << decoded.error().offset << "\n";
      ++failures;
      continue;
    }
    ++messages;
    std::cout << "#" << messages << " (line " << line_number << ", " << message.size()
              << " bytes)\n"
              << idnode::protocol::Describe(*decoded);
  }
  if (reassembler.entries() > 0) {
    std::cerr << reassembler.entries() << " incomplete multi-datagram message(s) at end of input\n";
    ++failures;
  }
  return failures == 0 ? 0 : 1;
}

struct DataArgs {
  std::string data_dir;
  uint32_t shards = 8;
  std::string prefix;
  std::vector<std::string> positional;
  // audit's filters, as the query string of GET /api/audit.
  std::string audit_query;
};

std::optional<DataArgs> ParseDataArgs(int argc, char** argv) {
  DataArgs args;
  for (int i = 2; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&](const char* name) -> const char* {
      if (i + 1 >= argc) {
        std::cerr << "idctl: " << name << " needs a value\n";
        return nullptr;
      }
      return argv[++i];
    };
    if (a == "--data-dir") {
      const char* v = value("--data-dir");
      if (!v) return std::nullopt;
      args.data_dir = v;
    } else if (a == "--prefix") {
      const char* v = value("--prefix");
      if (!v) return std::nullopt;
      args.prefix = v;
    } else if (a == "--since" || a == "--identity" || a == "--limit") {
      const char* v = value(argv[i]);
      if (!v) return std::nullopt;
      if (!args.audit_query.empty()) args.audit_query += '&';
      args.audit_query += std::string(a.substr(2)) + "=" + idnode::cmd::PercentEncode(v);
    } else if (a == "--shards") {
      const char* v = value("--shards");
      if (!v) return std::nullopt;
      args.shards = static_cast<uint32_t>(std::strtoul(v, nullptr, 10));
      if (args.shards == 0) {
        std::cerr << "idctl: --shards must be a positive number\n";
        return std::nullopt;
      }
    } else if (a.size() > 1 && a[0] == '-' && a != "-") {
      std::cerr << "idctl: unknown option " << a << "\n";
      return std::nullopt;
    } else {
      args.positional.emplace_back(a);
    }
  }
  if (args.data_dir.empty()) {
    std::cerr << "idctl: --data-dir DIR is required\n";
    return std::nullopt;
  }
  return args;
}

std::unique_ptr<idnode::registry::Registry> OpenData(const DataArgs& args, bool create) {
  idnode::registry::RegistryOptions options;
  options.storage.path = args.data_dir;
  options.storage.shard_count = args.shards;
  options.storage.create_if_missing = create;
  options.storage.sync_writes = false;  // bulk work: one sync at the end (closing flushes)
  if (!create && !std::filesystem::exists(args.data_dir)) {
    std::cerr << "idctl: " << args.data_dir << " does not exist\n";
    return nullptr;
  }
  auto opened = idnode::registry::Registry::Open(std::move(options));
  if (!opened.ok()) {
    std::cerr << "idctl: cannot open " << args.data_dir << ": " << opened.error() << "\n";
    return nullptr;
  }
  return std::move(*opened);
}

std::string Duration(double seconds) {
  char buffer[32];
  if (seconds < 60) {
    std::snprintf(buffer, sizeof(buffer), "%.0fs", seconds);
  } else if (seconds < 3600) {
    std::snprintf(buffer, sizeof(buffer), "%dm%02ds", static_cast<int>(seconds) / 60,
                  static_cast<int>(seconds) % 60);
  } else {
    std::snprintf(buffer, sizeof(buffer), "%dh%02dm", static_cast<int>(seconds) / 3600,
                  static_cast<int>(seconds) % 3600 / 60);
  }
  return buffer;
}

int Import(const DataArgs& args) {
  if (args.positional.size() != 1) {
    std::cerr << "usage: idctl import --data-dir DIR [--shards N] FILE\n";
    return 2;
  }
  const std::string& path = args.positional[0];
  std::ifstream file;
  std::istream* in = &std::cin;
  uint64_t total_bytes = 0;
  if (path != "-") {
    file.open(path);
    if (!file) {
      std::cerr << "idctl: cannot open " << path << "\n";
      return 1;
    }
    std::error_code ec;
    total_bytes = std::filesystem::file_size(path, ec);
    in = &file;
  }
  auto registry = OpenData(args, /*create=*/true);
  if (!registry) return 1;
  // The import reuses large buffers chunk after chunk: keep freed memory in the process instead of
  // returning it to the kernel (and faulting it in again) between chunks.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  const auto start = std::chrono::steady_clock::now();
  const bool tty = isatty(STDERR_FILENO);
  idnode::registry::ImportOptions options;
  options.on_bad_line = [](uint64_t line, const std::string& why) {
    std::cerr << "\rline " << line << ": " << why << "\033[K\n";
  };
  options.on_progress = [&](const idnode::registry::ImportProgress& p) {
    double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    double rate = elapsed > 0 ? p.records / elapsed : 0;
    double fraction =
        total_bytes ? std::min(1.0, static_cast<double>(p.bytes_read) / total_bytes) : 0;
    std::string bar(30, ' ');
    for (size_t i = 0; i < static_cast<size_t>(fraction * 30); ++i) bar[i] = '#';
    double eta = fraction > 0 ? elapsed * (1 - fraction) / fraction : 0;
    char line[200];
    std::snprintf(line, sizeof(line), "[%s] %5.1f%%  %llu records  %.0f records/s  ETA %s",
                  bar.c_str(), fraction * 100, static_cast<unsigned long long>(p.records), rate,
                  total_bytes ? Duration(eta).c_str() : "?");
    std::cerr << (tty ? "\r" : "") << line << (tty ? "\033[K" : "\n") << std::flush;
  };
  auto result = idnode::registry::ImportJsonLines(*registry, *in, options);
  if (tty) std::cerr << "\n";
  if (!result.ok()) {
    std::cerr << "idctl: import failed: " << result.error() << "\n";
    return 1;
  }
  auto flushed = registry->store().Flush();
  if (!flushed.ok()) {
    std::cerr << "idctl: flush failed: " << flushed.error().message << "\n";
    return 1;
  }
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cerr << "imported " << result->records << " records from " << result->lines << " lines in "
            << Duration(elapsed) << " ("
            << static_cast<uint64_t>(elapsed > 0 ? result->records / elapsed : 0) << " records/s), "
            << result->bad_lines << " bad lines\n";
  return result->bad_lines == 0 ? 0 : 1;
}

int Export(const DataArgs& args) {
  auto registry = OpenData(args, /*create=*/false);
  if (!registry) return 1;
  std::ios::sync_with_stdio(false);
  auto count = idnode::registry::ExportJsonLines(*registry, args.prefix, std::cout);
  std::cout.flush();
  if (!count.ok()) {
    std::cerr << "idctl: export failed: " << count.error() << "\n";
    return 1;
  }
  std::cerr << "exported " << *count << " records\n";
  return 0;
}

// An HS_SITE value for one server at "HOST:PORT" (the Handle port; TCP for admin and query, UDP for
// query), or nullopt with `why`.
std::optional<idnode::proto::Value> SiteValueFor(const std::string& target, std::string* why) {
  size_t colon = target.rfind(':');
  in6_addr v6{};
  in_addr v4{};
  std::string host = colon == std::string::npos ? target : target.substr(0, colon);
  if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  unsigned long port =
      colon == std::string::npos ? 2641 : std::strtoul(target.c_str() + colon + 1, nullptr, 10);
  idnode::protocol::SiteInfo site;
  idnode::protocol::SiteServer server;
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    std::memcpy(server.address.data() + 12, &v4, 4);
  } else if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    std::memcpy(server.address.data(), &v6, 16);
  } else {
    *why = host + " is not an IP address";
    return std::nullopt;
  }
  if (port == 0 || port > 65535) {
    *why = "bad port in " + target;
    return std::nullopt;
  }
  server.interfaces = {{idnode::protocol::interface_type::kBoth,
                        idnode::protocol::interface_protocol::kTcp, static_cast<uint32_t>(port)},
                       {idnode::protocol::interface_type::kQuery,
                        idnode::protocol::interface_protocol::kUdp, static_cast<uint32_t>(port)}};
  site.servers.push_back(server);
  auto bytes = idnode::protocol::EncodeSiteInfo(site);
  idnode::proto::Value v;
  v.set_index(1);
  v.set_type("HS_SITE");
  v.set_data(std::string(bytes.begin(), bytes.end()));
  v.set_ttl(86400);
  v.set_permissions(idnode::protocol::permission::kCnriDefault);
  return v;
}

int Prefix(const DataArgs& args) {
  if (args.positional.empty()) {
    std::cerr << "usage: idctl prefix home|delegate|mirror|forget|list --data-dir DIR PREFIX "
                 "[HOST:PORT|PEER]\n";
    return 2;
  }
  const std::string& action = args.positional[0];
  auto registry = OpenData(args, /*create=*/true);
  if (!registry) return 1;
  if (action == "list") {
    auto prefixes = registry->Prefixes();
    if (!prefixes.ok()) {
      std::cerr << "idctl: cannot list the prefixes: " << prefixes.error() << "\n";
      return 1;
    }
    for (const auto& p : *prefixes) {
      std::cout << p.prefix() << " " << idnode::proto::PrefixState::Role_Name(p.role())
                << (p.peer().empty() ? "" : " " + p.peer()) << "\n";
    }
    return 0;
  }
  if (args.positional.size() < 2) {
    std::cerr << "idctl: prefix " << action << " needs a PREFIX\n";
    return 2;
  }
  const std::string& prefix = args.positional[1];
  idnode::registry::OpResult result;
  if (action == "home") {
    result = registry->HomePrefix(prefix);
  } else if (action == "forget") {
    result = registry->ForgetPrefix(prefix);
  } else if (action == "takeover") {
    result = registry->TakeOverPrefix(prefix);
  } else if (action == "mirror" && (args.positional.size() == 3 || args.positional.size() == 4)) {
    // PEER is the source's name (replication.sources); the owner's Handle address (OWNER, or a
    // PEER written HOST:PORT) becomes the prefix handle's HS_SITE here, so that the mirror refers
    // to its owner until replication has filled it.
    const std::string& owner = args.positional.back();
    std::string why;
    auto site = SiteValueFor(owner, &why);
    if (args.positional.size() == 4 && !site) {
      std::cerr << "idctl: " << why << "\n";
      return 2;
    }
    result = registry->MirrorPrefix(
        prefix, args.positional[2],
        site ? std::vector<idnode::proto::Value>{*site} : std::vector<idnode::proto::Value>{});
  } else if (action == "delegate" && args.positional.size() == 3) {
    std::string why;
    auto site = SiteValueFor(args.positional[2], &why);
    if (!site) {
      std::cerr << "idctl: " << why << "\n";
      return 2;
    }
    // The prefix handle's other values (HS_ADMIN, keys, HS_SITE.PREFIX, ...) are kept.
    result = registry->DelegatePrefix(prefix, {*site});
  } else {
    std::cerr << "idctl: unknown prefix action " << action << " (or missing HOST:PORT / PEER)\n";
    return 2;
  }
  if (result.code != idnode::protocol::ResponseCode::kSuccess) {
    std::cerr << "idctl: " << idnode::protocol::ResponseCodeName(static_cast<uint32_t>(result.code))
              << "\n";
    return 1;
  }
  std::cout << action << " " << prefix << ": done\n";
  return 0;
}

// Every retained changelog entry as a JSON line (for checks that no change was applied twice).
int PrintChangelog(const DataArgs& args) {
  auto registry = OpenData(args, /*create=*/false);
  if (!registry) return 1;
  for (uint32_t shard = 0; shard < registry->shard_count(); ++shard) {
    uint64_t from = registry->FirstRetainedSequence(shard);
    for (;;) {
      size_t seen = 0;
      auto next =
          registry->ReadChangelog(shard, from, 10000, [&](const idnode::proto::ChangelogEntry& e) {
            ++seen;
            const char* op = e.operation() == idnode::proto::ChangelogEntry::PUT      ? "put"
                             : e.operation() == idnode::proto::ChangelogEntry::DELETE ? "delete"
                                                                                      : "prefix";
            std::cout << "{\"shard\":" << shard << ",\"sequence\":" << e.sequence() << ",\"op\":\""
                      << op
                      << "\",\"handle\":" << boost::json::serialize(boost::json::string(e.handle()))
                      << ",\"version\":" << e.record().version() << "}\n";
            return true;
          });
      if (!next.ok()) {
        std::cerr << "idctl: changelog of shard " << shard << ": " << next.error() << "\n";
        return 1;
      }
      if (seen == 0) break;
      from = *next;
    }
  }
  return 0;
}

int PrintAudit(const DataArgs& args) {
  std::string query = args.audit_query;
  if (!args.prefix.empty())
    query += (query.empty() ? "prefix=" : "&prefix=") + idnode::cmd::PercentEncode(args.prefix);
  auto filter = idnode::http::ParseAuditQuery(query);
  if (!filter.ok()) {
    std::cerr << "idctl: " << filter.error() << "\n";
    return 2;
  }
  auto registry = OpenData(args, /*create=*/false);
  if (!registry) return 1;
  auto entries =
      registry->ReadAudit(filter->since_ms, filter->limit,
                          [&](const idnode::proto::AuditEntry& e) { return filter->Keeps(e); });
  if (!entries.ok()) {
    std::cerr << "idctl: the audit log: " << entries.error() << "\n";
    return 1;
  }
  for (const auto& e : *entries) std::cout << idnode::http::AuditEntryToJson(e) << "\n";
  return 0;
}

// Writes `bytes` to `path`, readable by its owner only (a private key).
bool WritePrivate(const std::filesystem::path& path, std::span<const uint8_t> bytes) {
  // Owner-only from its creation, never over an existing file or through a link.
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  FILE* f = fd < 0 ? nullptr : ::fdopen(fd, "wb");
  if (f == nullptr) {
    std::cerr << "idctl keygen: cannot create " << path << " (" << std::strerror(errno) << ")\n";
    if (fd >= 0) ::close(fd);
    return false;
  }
  const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  return std::fclose(f) == 0 && ok;
}

int Keygen(int argc, char** argv) {
  std::string type = "rsa";
  std::string out_dir;
  std::string passphrase;
  int bits = 2048;
  for (int i = 2; i < argc; ++i) {
    std::string_view a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (a == "--type" && v) {
      type = argv[++i];
    } else if (a == "--bits" && v) {
      bits = std::atoi(argv[++i]);
    } else if (a == "--out" && v) {
      out_dir = argv[++i];
    } else if (a == "--passphrase-file" && v) {
      std::ifstream in(argv[++i], std::ios::binary);
      if (!in || !std::getline(in, passphrase) || passphrase.empty()) {
        std::cerr << "idctl keygen: cannot read a passphrase from " << argv[i] << "\n";
        return 2;
      }
    } else {
      std::cerr << "usage: idctl keygen [--type rsa|dsa|sm2] [--bits N] --out DIR "
                   "[--passphrase-file FILE]\n";
      return 2;
    }
  }
  if (out_dir.empty() || bits < 2048 || bits > 8192) {
    std::cerr << "usage: idctl keygen [--type rsa|dsa|sm2] [--bits N (2048-8192)] --out DIR "
                 "[--passphrase-file FILE]\n";
    return 2;
  }
  if (type != "rsa" && type != "dsa" && type != "sm2") {
    std::cerr << "idctl keygen: --type is rsa, dsa or sm2\n";
    return 2;
  }
  const bool sm2 = type == "sm2";
  EVP_PKEY* key = nullptr;
  if (sm2) {
    key = EVP_PKEY_Q_keygen(nullptr, nullptr, "SM2");  // on the curve sm2p256v1; --bits unused
  } else if (type == "rsa") {
    key = EVP_RSA_gen(static_cast<unsigned>(bits));
  } else {
    EVP_PKEY_CTX* pctx = EVP_PKEY_CTX_new_from_name(nullptr, "DSA", nullptr);
    EVP_PKEY* params = nullptr;
    if (pctx && EVP_PKEY_paramgen_init(pctx) == 1 &&
        EVP_PKEY_CTX_set_dsa_paramgen_bits(pctx, bits) == 1 &&
        EVP_PKEY_paramgen(pctx, &params) == 1) {
      EVP_PKEY_CTX* kctx = EVP_PKEY_CTX_new_from_pkey(nullptr, params, nullptr);
      if (kctx && EVP_PKEY_keygen_init(kctx) == 1) (void)EVP_PKEY_generate(kctx, &key);
      EVP_PKEY_CTX_free(kctx);
    }
    EVP_PKEY_free(params);
    EVP_PKEY_CTX_free(pctx);
  }
  if (key == nullptr) {
    std::cerr << "idctl keygen: key generation failed\n";
    return 1;
  }
  BIO* bio = BIO_new(BIO_s_mem());
  const bool pem_ok =
      bio != nullptr &&
      PEM_write_bio_PrivateKey(bio, key, passphrase.empty() ? nullptr : EVP_aes_256_cbc(), nullptr,
                               0, nullptr, passphrase.empty() ? nullptr : passphrase.data()) == 1;
  std::string pem;
  if (pem_ok) {
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio, &data);
    pem.assign(data, static_cast<size_t>(n));
  }
  BIO_free(bio);
  // The unencrypted PEM, for the two encodings made from it (kept in memory only).
  BIO* plain_bio = BIO_new(BIO_s_mem());
  std::string plain_pem;
  if (plain_bio != nullptr &&
      PEM_write_bio_PrivateKey(plain_bio, key, nullptr, nullptr, 0, nullptr, nullptr) == 1) {
    char* data = nullptr;
    const long n = BIO_get_mem_data(plain_bio, &data);
    plain_pem.assign(data, static_cast<size_t>(n));
  }
  BIO_free(plain_bio);
  EVP_PKEY_free(key);
  // The reference's privkey.bin has no SM2 form (nor has China's identifier SDK a binary one: it
  // reads PKCS#8 PEM), so an SM2 key is written as PEM only.
  auto reference = sm2 ? idnode::Result<std::vector<uint8_t>, std::string>(std::vector<uint8_t>{})
                       : idnode::auth::ReferenceKeyFile(plain_pem, passphrase);
  const std::vector<uint8_t> public_value = idnode::auth::PublicKeyValueFor(plain_pem);
  OPENSSL_cleanse(plain_pem.data(), plain_pem.size());
  if (!pem_ok || !reference.ok() || public_value.empty()) {
    std::cerr << "idctl keygen: cannot encode the key\n";
    return 1;
  }
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  const std::filesystem::path dir(out_dir);
  const bool written =
      (sm2 || WritePrivate(dir / "privkey.bin", *reference)) &&
      WritePrivate(dir / "privkey.pem", {reinterpret_cast<const uint8_t*>(pem.data()), pem.size()});
  OPENSSL_cleanse(pem.data(), pem.size());
  if (!written) return 1;
  std::ofstream pub(dir / "pubkey.bin", std::ios::binary | std::ios::trunc);
  pub.write(reinterpret_cast<const char*>(public_value.data()),
            static_cast<std::streamsize>(public_value.size()));
  if (!pub) {
    std::cerr << "idctl keygen: cannot write " << (dir / "pubkey.bin") << "\n";
    return 1;
  }
  if (sm2) {
    std::cout << "wrote " << (dir / "privkey.pem").string() << " (PKCS#8 PEM"
              << (passphrase.empty() ? ", as China's identifier SDK reads it"
                                     : ", encrypted: the SDK reads only unencrypted ones")
              << ") and " << (dir / "pubkey.bin").string()
              << " (the HS_PUBKEY value data, SM2_PUB_KEY as the SDK writes it)\n";
    return 0;
  }
  std::cout << "wrote " << (dir / "privkey.bin").string() << " (the reference's format"
            << (passphrase.empty() ? "" : ", encrypted") << "), " << (dir / "privkey.pem").string()
            << " (PKCS#8 PEM" << (passphrase.empty() ? "" : ", encrypted") << ") and "
            << (dir / "pubkey.bin").string() << " (the HS_PUBKEY value data)\n";
  return 0;
}

int Compact(const DataArgs& args) {
  auto registry = OpenData(args, /*create=*/false);
  if (!registry) return 1;
  const auto start = std::chrono::steady_clock::now();
  const uint64_t before = registry->store().DiskBytes();
  auto compacted = registry->store().CompactAll();
  if (!compacted.ok()) {
    std::cerr << "idctl: compaction failed: " << compacted.error().message << "\n";
    return 1;
  }
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cerr << "compacted in " << Duration(elapsed) << ": " << before / (1 << 20) << " MiB -> "
            << registry->store().DiskBytes() / (1 << 20) << " MiB\n";
  return 0;
}

int PrintDigest(const DataArgs& args) {
  auto registry = OpenData(args, /*create=*/false);
  if (!registry) return 1;
  auto digest = registry->ComputeDigest(args.prefix);
  if (!digest.ok()) {
    std::cerr << "idctl: digest failed: " << digest.error() << "\n";
    return 1;
  }
  std::cout << digest->hex() << " " << digest->records << " records\n";
  return 0;
}

// "[udp://|tcp://]HOST:PORT" (HOST may be a bracketed IPv6 address); tcp:// sets *tcp_only.
bool ParseServer(std::string_view text, std::string* host, uint16_t* port, bool* tcp_only) {
  if (text.substr(0, 6) == "tcp://") {
    *tcp_only = true;
    text.remove_prefix(6);
  } else if (text.substr(0, 6) == "udp://") {
    text.remove_prefix(6);
  }
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  std::string digits(text.substr(colon + 1));
  char* end = nullptr;
  unsigned long value = std::strtoul(digits.c_str(), &end, 10);
  if (digits.empty() || *end != '\0' || value == 0 || value > 65535) return false;
  *host = std::string(text.substr(0, colon));
  if (host->size() > 2 && host->front() == '[') *host = host->substr(1, host->size() - 2);
  *port = static_cast<uint16_t>(value);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string_view(argv[1]) == "--help" || std::string_view(argv[1]) == "-h") {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  std::string_view command = argv[1];
  if (command == "--version") {
    std::cout << "idctl " << IDNODE_VERSION << "\n";
    return 0;
  }
  if (command == "keygen") return Keygen(argc, argv);
  if (command == "batch") {
    idnode::cmd::BatchOptions options;
    for (int i = 2; i < argc; ++i) {
      std::string_view a = argv[i];
      const bool has_value = i + 1 < argc;
      if (a == "--server" && has_value) {
        options.server = argv[++i];
      } else if (a == "--identity" && has_value) {
        options.identity = argv[++i];
      } else if (a == "--secret-file" && has_value) {
        std::ifstream in(argv[++i], std::ios::binary);
        if (!in || !std::getline(in, options.secret) || options.secret.empty()) {
          std::cerr << "idctl batch: cannot read a secret from " << argv[i] << "\n";
          return 2;
        }
      } else if (a == "--transaction" && has_value) {
        options.transaction = argv[++i];
      } else if (a == "--ca-file" && has_value) {
        options.ca_file = argv[++i];
      } else if (a == "--insecure") {
        options.insecure = true;
      } else if (a.size() > 1 && a[0] == '-' && a != "-") {
        options.file.clear();
        break;
      } else {
        options.file = a;
      }
    }
    if (options.file.empty() || options.server.empty() || options.secret.empty() ||
        !idnode::auth::Identity::Parse(options.identity)) {
      std::cerr << "usage: idctl batch FILE --server https://HOST:PORT --identity INDEX:HANDLE "
                   "--secret-file FILE [--transaction ID] [--ca-file PEM | --insecure]\n";
      return 2;
    }
    return idnode::cmd::RunBatch(options);
  }
  if (command == "decode") {
    if (argc != 3) {
      std::cerr << "usage: idctl decode FILE\n";
      return 2;
    }
    std::string_view path = argv[2];
    if (path == "-") return Decode(std::cin);
    std::ifstream file{std::string(path)};
    if (!file) {
      std::cerr << "idctl: cannot open " << path << "\n";
      return 1;
    }
    return Decode(file);
  }
  if (command == "admin") {
    idnode::cmd::AdminOptions options;
    std::string key_file, passphrase;
    for (int i = 2; i < argc; ++i) {
      std::string_view a = argv[i];
      auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
      const char* v = nullptr;
      if (a == "--value" && (v = next())) {
        options.values.emplace_back(v);
      } else if (a == "--index" && (v = next())) {
        options.indexes.push_back(static_cast<int32_t>(std::strtol(v, nullptr, 10)));
      } else if (a == "--overwrite") {
        options.overwrite = true;
      } else if (a == "--identity" && (v = next())) {
        auto identity = idnode::auth::Identity::Parse(v);
        if (!identity) {
          std::cerr << "idctl admin: --identity is INDEX:HANDLE, e.g. 300:0.NA/88.100.1\n";
          return 2;
        }
        options.identity_handle = identity->handle;
        options.identity_index = identity->index;
      } else if (a == "--secret-file" && (v = next())) {
        // From a file, so that the secret does not show in the process list.
        std::ifstream in(v, std::ios::binary);
        if (!in || !std::getline(in, options.secret) || options.secret.empty()) {
          std::cerr << "idctl admin: cannot read a secret from " << v << "\n";
          return 2;
        }
      } else if (a == "--key" && (v = next())) {
        key_file = v;
      } else if (a == "--passphrase-file" && (v = next())) {
        std::ifstream in(v, std::ios::binary);
        if (!in || !std::getline(in, passphrase)) {
          std::cerr << "idctl admin: cannot read a passphrase from " << v << "\n";
          return 2;
        }
        if (!passphrase.empty() && passphrase.back() == '\r') passphrase.pop_back();
      } else if (a == "--server" && (v = next())) {
        bool tcp_only = false;
        if (std::string_view(v).substr(0, 6) == "udp://" ||
            !ParseServer(v, &options.host, &options.port, &tcp_only)) {
          std::cerr << "idctl admin: --server needs tcp://HOST:PORT\n";
          return 2;
        }
      } else if (options.operation.empty() && !a.empty() && a[0] != '-') {
        options.operation = std::string(a);
      } else if (options.handle.empty() && !a.empty() && a[0] != '-') {
        options.handle = std::string(a);
      } else {
        std::cerr << "idctl admin: unexpected argument " << a << "\n";
        return 2;
      }
    }
    if (!key_file.empty()) {
      if (!options.secret.empty()) {
        std::cerr << "idctl admin: --key and --secret-file are two ways to prove one identity: "
                     "give one\n";
        return 2;
      }
      std::ifstream in(key_file, std::ios::binary);
      std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                 std::istreambuf_iterator<char>());
      if (!in.good() && !in.eof()) {
        std::cerr << "idctl admin: cannot read " << key_file << "\n";
        return 2;
      }
      auto pem = idnode::auth::PrivateKeyPem(bytes, passphrase);
      if (!pem.ok()) {
        std::cerr << "idctl admin: " << key_file << ": " << pem.error() << "\n";
        return 2;
      }
      options.private_key_pem = std::move(*pem);
    }
    return idnode::cmd::Administer(options);
  }
  if (command == "resolve") {
    idnode::cmd::ResolveOptions options;
    for (int i = 2; i < argc; ++i) {
      std::string_view a = argv[i];
      auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
      if (a == "--type") {
        const char* v = next();
        if (!v) return 2;
        options.types.emplace_back(v);
      } else if (a == "--index") {
        const char* v = next();
        if (!v) return 2;
        options.indexes.push_back(static_cast<int32_t>(std::strtol(v, nullptr, 10)));
      } else if (a == "--server") {
        const char* v = next();
        if (!v || !ParseServer(v, &options.host, &options.port, &options.tcp_only)) {
          std::cerr << "idctl: --server needs udp://HOST:PORT or tcp://HOST:PORT\n";
          return 2;
        }
      } else if (a == "--json") {
        options.json = true;
      } else if (a == "--walk") {
        options.walk = true;
      } else if (a == "--no-route") {
        options.route_by_site = false;
      } else if (options.handle.empty() && !a.empty() && a[0] != '-') {
        options.handle = std::string(a);
      } else {
        std::cerr << "idctl: unexpected argument " << a << "\n";
        return 2;
      }
    }
    if (options.handle.empty()) {
      std::cerr << "usage: idctl resolve ID [--type T] [--index I] [--server udp://H:P|tcp://H:P] "
                   "[--json] [--walk] [--no-route]\n";
      return 2;
    }
    return idnode::cmd::Resolve(options);
  }
  if (command == "replication") {
    idnode::cmd::ReplicationStatusOptions options;
    bool status = false;
    for (int i = 2; i < argc; ++i) {
      std::string_view a = argv[i];
      if (a == "status" && !status) {
        status = true;
      } else if (a == "--json") {
        options.json = true;
      } else if (a == "--http" && i + 1 < argc) {
        bool tcp_only = false;
        if (!ParseServer(argv[++i], &options.host, &options.port, &tcp_only)) {
          std::cerr << "idctl: --http needs HOST:PORT (the node's HTTP port)\n";
          return 2;
        }
      } else {
        std::cerr << "usage: idctl replication status [--http HOST:PORT] [--json]\n";
        return 2;
      }
    }
    if (!status) {
      std::cerr << "usage: idctl replication status [--http HOST:PORT] [--json]\n";
      return 2;
    }
    return idnode::cmd::PrintReplicationStatus(options);
  }
  if (command == "site") {
    // site split --data-dir D [--shards S] --servers N --out DIR
    // site check [--shards S] DIR0 DIR1 ... [--against UNSPLIT]
    const std::string_view what = argc > 2 ? std::string_view(argv[2]) : std::string_view();
    std::string data_dir, out_dir, against;
    uint64_t shards = 8, servers = 0;
    std::vector<std::string> dirs;
    bool bad = what != "split" && what != "check";
    for (int i = 3; i < argc && !bad; ++i) {
      std::string_view a = argv[i];
      const bool has_value = i + 1 < argc;
      auto number = [&](uint64_t* out) {
        char* end = nullptr;
        *out = std::strtoull(argv[++i], &end, 10);
        bad = bad || end == argv[i] || *end != '\0';
      };
      if (a == "--data-dir" && has_value) {
        data_dir = argv[++i];
      } else if (a == "--out" && has_value) {
        out_dir = argv[++i];
      } else if (a == "--against" && has_value) {
        against = argv[++i];
      } else if (a == "--shards" && has_value) {
        number(&shards);
      } else if (a == "--servers" && has_value) {
        number(&servers);
      } else if (!a.starts_with("--")) {
        dirs.emplace_back(a);
      } else {
        bad = true;
      }
    }
    bad = bad || shards == 0 || shards > 4096;
    if (!bad && what == "split" && !data_dir.empty() && !out_dir.empty() && servers > 0 &&
        dirs.empty()) {
      return idnode::cmd::SiteSplit(data_dir, static_cast<uint32_t>(shards),
                                    static_cast<uint32_t>(servers), out_dir);
    }
    if (!bad && what == "check" && data_dir.empty() && out_dir.empty() && servers == 0)
      return idnode::cmd::SiteCheck(dirs, static_cast<uint32_t>(shards), against);
    std::cerr << "usage: idctl site split --data-dir DIR [--shards S] --servers N --out DIR\n"
                 "       idctl site check [--shards S] SERVER0_DIR SERVER1_DIR ... "
                 "[--against UNSPLIT_DIR]\n";
    return 2;
  }
  if (command == "import" || command == "export" || command == "digest" || command == "prefix" ||
      command == "compact" || command == "changelog" || command == "audit") {
    auto args = ParseDataArgs(argc, argv);
    if (!args) return 2;
    if (command == "audit") return PrintAudit(*args);
    if (command == "changelog") return PrintChangelog(*args);
    if (command == "prefix") return Prefix(*args);
    if (command == "compact") return Compact(*args);
    if (command == "import") return Import(*args);
    if (command == "export") return Export(*args);
    return PrintDigest(*args);
  }
  std::cerr << "idctl: unknown command '" << command << "'\n" << kUsage;
  return 2;
}
