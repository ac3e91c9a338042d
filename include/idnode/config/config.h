// config/: the node's settings. One YAML file (config/idnode.yaml documents every key with its
// default), embedded defaults when there is none, and command-line overrides for the settings
// people change most. Unknown keys and invalid values are errors, all reported at once with
// file:line; nothing is silently clamped (ARCHITECTURE.md). Loaded once on the main thread at
// startup (and on SIGHUP for the runtime settings); exceptions stop at main.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace idnode::config {

struct NodeConfig {
  std::string data_dir = "./idnode-data";
  uint32_t shards = 8;
  std::vector<std::string> home;  // prefixes this node is authoritative for
  bool demo = true;               // home DEMO.1 with a few identifiers when nothing else is homed
  uint16_t site_serial = 1;
  std::string site_description = "idnode";
  // Answer mirrored prefixes from the local copy (handles the copy lacks are referred to the
  // owner until replication marks the copy complete); false: refer every request to the owner.
  bool answer_mirrored = true;
};

// A site of several servers (HANDLE.md §1.7; README "A multi-server site"): clients pick the
// server of an identifier by the hash of the whole handle (MD5, last 4 bytes, abs, modulo the
// number of servers), and each server holds and answers its share only. Every server of the site
// is configured with the same list (and the same auth.server_key_file, which its HS_SITE
// publishes for each of them) and its own this_server.
struct SiteConfig {
  std::vector<std::string> servers;  // "ADDRESS:HANDLE_PORT [http=PORT]" in the site's order
  uint32_t this_server = 0;          // this node's position in `servers`
};
struct SiteServerEntry {
  std::string address;  // an IP address (the HS_SITE record holds addresses, not names)
  uint16_t handle_port = 0;
  uint16_t http_port = 0;  // 0: no HTTP interface listed
};
bool ParseSiteServer(std::string_view text, SiteServerEntry* out, std::string* why);

// Response rate limiting of UDP answers per source prefix (/24 IPv4, /56 IPv6), in datagrams,
// after Knot's RRL. Answers beyond it are dropped, or every `slip`-th one replaced by a short
// RC_SERVER_TOO_BUSY no larger than the request; CNRI clients retry over UDP, then use TCP, which
// is never limited. An answer of more datagrams than `burst` is never sent over UDP.
struct RateLimitConfig {
  uint32_t datagrams_per_second = 0;  // 0: off
  uint32_t burst = 0;                 // 0: 2.5 x datagrams_per_second (Knot: 50/s, instant 125)
  uint32_t slip = 0;                  // 0: drop every limited answer
  std::vector<std::string> exempt;    // networks never limited, "192.0.2.0/24", "2001:db8::/32"
};

// A network "ADDRESS/LENGTH" (or one address): its bytes (IPv4 as ::ffff:a.b.c.d) and prefix
// length counted on those 16 bytes. False when it is not one.
bool ParseNetwork(std::string_view text, std::array<uint8_t, 16>* address, int* prefix_bits);

// One entry of dns.delegations, parsed.
struct DnsDelegation {
  std::string oid;
  std::vector<std::string> nameservers;                        // absolute names
  std::vector<std::pair<std::string, std::string>> addresses;  // (name server, address)
};
// Parses "OID NAME[=ADDRESS] ..."; false with `why` when it is not one. `out` may be null.
bool ParseDnsDelegation(std::string_view text, DnsDelegation* out, std::string* why);

struct HandleConfig {
  std::vector<std::string> bind{"127.0.0.1"};
  uint16_t port = 2641;  // 0: an ephemeral port (tests)
  bool udp = true;
  bool tcp = true;
  uint32_t workers = 0;  // 0: one per core
  uint32_t udp_batch = 64;
  // SO_RCVBUF of each UDP socket: room for bursts (the kernel caps it at net.core.rmem_max).
  uint64_t udp_receive_buffer_bytes = 4ull << 20;
  uint32_t tcp_max_connections = 1024;
  uint32_t tcp_max_connections_per_source = 64;
  std::chrono::milliseconds tcp_idle_timeout{10000};
  std::chrono::milliseconds tcp_io_timeout{2000};
  uint32_t max_message_bytes = 262144;
  uint32_t storage_threads = 2;
  uint32_t storage_queue = 4096;
  RateLimitConfig rate_limit;
};

struct HttpConfig {
  bool enabled = true;
  std::vector<std::string> bind{"127.0.0.1"};
  uint16_t port = 8000;
  uint32_t threads = 1;
  uint32_t max_connections = 1024;
  uint32_t max_connections_per_source = 64;
  uint32_t max_header_bytes = 8192;
  uint32_t max_body_bytes = 1048576;
  std::chrono::milliseconds request_timeout{10000};
  // Threads that read storage for requests the caches cannot answer (never the event loop), and
  // how many such requests may wait; past that, 503.
  uint32_t storage_threads = 2;
  uint32_t storage_queue = 1024;
  // HTTPS on the same port (port unification): the certificate chain and its private key (PEM).
  // Authenticated requests (writes, the admin listing) are accepted over HTTPS only.
  std::string tls_cert_file;
  std::string tls_key_file;
  // The operator dashboard (/ui/status) and its numbers (/api/stats) for server admins only,
  // authenticated over HTTPS as the JSON API's writes are (so it needs tls_cert_file).
  bool status_requires_admin = false;
};

// Who may administer handles over the Handle protocol (HANDLE.md §1.10).
struct AuthConfig {
  // Identities ("index:handle", e.g. "300:0.NA/DEMO.1") with every permission (server_admins).
  std::vector<std::string> server_admins;
  // Admins named in a prefix handle's HS_ADMIN administer every handle under the prefix.
  bool allow_prefix_admins = true;
  // How long an issued challenge waits for its answer.
  std::chrono::milliseconds challenge_timeout{60000};
  uint32_t max_pending_challenges = 4096;
  uint64_t max_pending_challenge_bytes = 16ull << 20;  // the requests they hold
  // Failed proofs (wrong MACs or signatures) a key, or a source address, may make in a minute
  // before further proofs are refused unchecked for the rest of it; 0: no limit.
  uint32_t failed_proofs_per_minute = 10;
  // Failed proofs for one key from all sources in a minute before the key's proofs are refused
  // from every source that has not proved it in the last day (a distributed guessing attack).
  uint32_t failed_proofs_per_key_per_minute = 200;
  // This node's signing key (PEM, or the reference's privkey.bin unencrypted): certified answers
  // and session setups are signed with it, and its public half is the HS_PUBKEY of the node's
  // HS_SITE. Empty: <data_dir>/server_key.pem, a 2048-bit RSA key generated on first start.
  std::string server_key_file;
  // Sessions (OC 400): how many may be open, how many one source address may set up, and the
  // longest lifetime a client may ask for.
  uint32_t max_sessions = 4096;
  uint32_t max_sessions_per_source = 64;
  std::chrono::seconds max_session_lifetime{86400};
};

struct StorageConfig {
  uint64_t block_cache_bytes = 256ull << 20;
  bool sync_writes = true;
  // The changelog replicas follow: entries beyond these limits are trimmed every
  // changelog_trim_interval (a replica's position holds them longer; replication.max_lag_entries).
  uint64_t changelog_max_entries = 10'000'000;  // per shard
  std::chrono::seconds changelog_max_age{7 * 24 * 3600};
  std::chrono::milliseconds changelog_trim_interval{60000};
  // The audit log (every write, every refused admin decision) keeps entries this long.
  std::chrono::seconds audit_max_age{365 * 24 * 3600};
};

// "HOST:PORT" with HOST an IP address (IPv6 in brackets); false when it is not one. Port 0 (an
// ephemeral port, for a listener in tests) only with `allow_port_zero`.
bool ParseHostPort(std::string_view text, std::string* host, uint16_t* port,
                   bool allow_port_zero = false);
// "HOST:PORT" with HOST an IP address or a DNS host name (letters, digits, '-' and '.', at most
// 253 bytes; resolved when used, as a replica resolves its source at each connection).
bool ParseHostNameOrAddressPort(std::string_view text, std::string* host, uint16_t* port);

// One entry of replication.peers: a replica this node serves, "NAME PREFIX [PREFIX ...]" or
// "NAME *" (everything).
struct ReplicationPeer {
  std::string name;
  bool everything = false;
  std::vector<std::string> prefixes;
};
bool ParseReplicationPeer(std::string_view text, ReplicationPeer* out, std::string* why);

// One entry of replication.sources: a node this node pulls from,
// "NAME HOST:PORT PREFIX [PREFIX ...] [answer=mirror|refer|mirror_when_owner_down]" or
// "NAME HOST:PORT * [answer=...]"; HOST an address or a host name.
struct ReplicationSourceEntry {
  std::string name;
  std::string host;
  uint16_t port = 0;
  bool everything = false;
  std::vector<std::string> prefixes;
  std::string answer = "mirror";
};
bool ParseReplicationSource(std::string_view text, ReplicationSourceEntry* out, std::string* why);

// Replication with other nodes over mutual TLS (README.md "Replication").
struct ReplicationConfig {
  std::string name;    // this node's name: its certificate's (first DNS SAN, else CN)
  std::string listen;  // "ADDRESS:PORT" where replicas connect ("...:0": ephemeral); "" serves none
  std::string certificate;  // PEM files
  std::string private_key;
  std::string ca;                      // the CA every peer's certificate chains to
  std::vector<std::string> peers;      // replicas allowed to pull from here (ParseReplicationPeer)
  std::vector<std::string> sources;    // nodes to pull from (ParseReplicationSource)
  uint64_t window_bytes = 8ull << 20;  // unacknowledged bytes in flight per replica
  std::chrono::milliseconds send_timeout{10000};
  std::chrono::milliseconds ack_timeout{30000};  // a replica silent this long is disconnected
  std::chrono::milliseconds heartbeat{1000};
  uint64_t max_lag_entries = 20'000'000;  // a replica further behind is dropped and resyncs
  uint32_t max_connections = 64;
};

struct CacheConfig {
  uint64_t capacity_bytes = 256ull << 20;
  uint32_t shards = 64;
  std::chrono::milliseconds negative_ttl{5000};
};

struct LogConfig {
  std::string level = "info";
};

// The DNS front end for OIDs (ITU-T X.672 ORS; README.md "DNS for OIDs").
struct DnsConfig {
  bool enabled = true;
  std::vector<std::string> bind{"127.0.0.1"};
  uint16_t port = 5353;  // UDP and TCP; 0: an ephemeral port (tests)
  bool tcp = true;
  uint32_t tcp_max_connections = 256;
  uint32_t tcp_max_connections_per_source = 32;
  std::chrono::milliseconds tcp_idle_timeout{10000};
  std::chrono::milliseconds tcp_io_timeout{2000};
  uint32_t workers = 0;  // 0: one per core
  uint32_t udp_batch = 64;
  // SO_RCVBUF of each UDP socket: room for bursts (the kernel caps it at net.core.rmem_max).
  uint64_t udp_receive_buffer_bytes = 4ull << 20;
  std::string apex = "oid-res.org.";      // the ORS zone served
  std::string oid_prefix = "OID";         // OID x.y.z is the handle OID/x.y.z
  std::string naptr_service = "RINF";     // NAPTR service of URL values
  std::string nameserver = "localhost.";  // the apex NS and the SOA MNAME
  uint32_t max_udp_payload = 1232;        // cap on the client's EDNS payload size
  uint32_t default_ttl = 3600;            // for values with an absolute TTL, and SOA/NS
  uint32_t negative_ttl = 300;            // SOA MINIMUM: caching of NXDOMAIN/NODATA
  // A name above an OID that exists gets NODATA (an empty non-terminal), not NXDOMAIN; the check
  // is a seek per storage shard on a storage thread, made for every name that is not found.
  bool empty_non_terminals = true;
  uint32_t storage_threads = 2;
  uint32_t storage_queue = 4096;
  // As handle.rate_limit, one datagram per answer; a slipped answer is the question with TC set,
  // so that the client asks again over TCP.
  RateLimitConfig rate_limit;
  // OID arcs served by other DNS servers, each "OID NAME[=ADDRESS] [NAME[=ADDRESS] ...]": queries
  // at or below the arc get a referral to those servers (NS, with the addresses as glue).
  std::vector<std::string> delegations;
};

struct Config {
  NodeConfig node;
  SiteConfig site;
  HandleConfig handle;
  HttpConfig http;
  AuthConfig auth;
  StorageConfig storage;
  CacheConfig cache;
  LogConfig log;
  DnsConfig dns;
  ReplicationConfig replication;
  std::string source = "(embedded defaults)";
};

// Thrown by Load with every problem found, one per line ("file:line: message").
class ConfigError : public std::runtime_error {
 public:
  explicit ConfigError(const std::string& what) : std::runtime_error(what) {}
};

// Parses YAML text (`name` is used in messages). Throws ConfigError.
Config Parse(const std::string& yaml, const std::string& name);
Config LoadFile(const std::string& path);
// Every key of the configuration with its value as text ("handle.port" -> "2641"), in schema
// order: the same table the parser reads, so every readable key is listed.
std::vector<std::pair<std::string, std::string>> Describe(const Config& config);

struct CommandLine {
  bool help = false;
  bool version = false;
  std::string config_file;
  Config config;
};

// Reads the command line: --config FILE first, then overrides (--data-dir, --bind, --handle-port,
// --http-port, --dns-port, --home (repeatable), --workers, --no-demo). Throws ConfigError.
CommandLine ParseCommandLine(int argc, const char* const* argv);
std::string Usage();

}  // namespace idnode::config
