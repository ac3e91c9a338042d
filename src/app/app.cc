#include "idnode/app/app.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio.hpp>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <mutex>
#include <thread>

#include "idnode/app/node_stats.h"
#include "idnode/auth/authorizer.h"
#include "idnode/auth/message_auth.h"
#include "idnode/auth/sessions.h"
#include "idnode/cache/answer_cache.h"
#include "idnode/dns/dns_server.h"
#include "idnode/http/admin_api.h"
#include "idnode/http/http_server.h"
#include "idnode/identifier/identifier.h"
#include "idnode/metrics/metrics.h"
#include "idnode/net/admin_service.h"
#include "idnode/net/handle_server.h"
#include "idnode/protocol/value_types.h"
#include "idnode/registry/registry.h"
#include "idnode/registry/values.h"
#include "idnode/replication/replica.h"
#include "idnode/replication/source.h"
#include "idnode/replication/status.h"
#include "idnode/replication/subscription.h"
#include "idnode/replication/tls.h"
#include "idnode/resolver/resolver.h"

namespace idnode::app {

namespace asio = boost::asio;

namespace {

proto::Value StringValue(int32_t index, const std::string& type, const std::string& data) {
  proto::Value v;
  v.set_index(index);
  v.set_type(type);
  v.set_data(data);
  v.set_ttl(86400);
  v.set_permissions(protocol::permission::kCnriDefault);
  return v;
}

proto::Value AdminValue(const std::string& prefix) {
  protocol::AdminRecord admin{protocol::admin_permission::kDefinedMask, "", 300};
  std::string admin_handle = "0.NA/" + prefix;
  admin.admin_handle = admin_handle;
  auto bytes = protocol::EncodeAdminRecord(admin);
  proto::Value v = StringValue(100, "HS_ADMIN", std::string(bytes.begin(), bytes.end()));
  return v;
}

// This node's HS_SITE: one primary server listening on the Handle and HTTP ports, or the servers
// of site.servers in their order (the hash of the whole handle picks among them), each with the
// node's public key (the servers of a site share auth.server_key_file).
std::vector<uint8_t> BuildSiteInfo(const config::Config& config, uint16_t handle_port,
                                   uint16_t http_port, std::span<const uint8_t> server_key) {
  protocol::SiteInfo site;
  site.serial_number = config.node.site_serial;
  site.attributes.push_back({"desc", config.node.site_description});
  namespace it = protocol::interface_type;
  namespace ip = protocol::interface_protocol;
  auto server_at = [&](uint32_t id, std::string_view address_text, uint16_t handle, uint16_t http) {
    protocol::SiteServer server;
    server.server_id = id;
    boost::system::error_code ec;
    auto address = asio::ip::make_address(address_text, ec);
    if (!ec && address.is_v4()) {
      auto b = address.to_v4().to_bytes();
      std::copy(b.begin(), b.end(), server.address.begin() + 12);
    } else if (!ec) {
      auto b = address.to_v6().to_bytes();
      std::copy(b.begin(), b.end(), server.address.begin());
    }
    server.public_key = server_key;  // clients check certified answers with it
    if (config.handle.tcp) server.interfaces.push_back({it::kBoth, ip::kTcp, handle});
    if (config.handle.udp) server.interfaces.push_back({it::kQuery, ip::kUdp, handle});
    if (config.http.enabled && http != 0) server.interfaces.push_back({it::kBoth, ip::kHttp, http});
    return server;
  };
  if (config.site.servers.empty()) {
    site.servers.push_back(
        server_at(1, config.handle.bind.front(), handle_port, config.http.enabled ? http_port : 0));
  } else {
    for (size_t i = 0; i < config.site.servers.size(); ++i) {
      config::SiteServerEntry entry;
      std::string why;
      (void)config::ParseSiteServer(config.site.servers[i], &entry, &why);  // validated at load
      site.servers.push_back(server_at(static_cast<uint32_t>(i + 1), entry.address,
                                       entry.handle_port, entry.http_port));
    }
  }
  return protocol::EncodeSiteInfo(site);
}

// The OID the demo data holds (ORS.md's example).
constexpr const char* kDemoOid = "1.2.156.3001.1";

Result<Unit, std::string> PreparePrefixes(registry::Registry& registry,
                                          const config::Config& config,
                                          const std::vector<uint8_t>& site) {
  auto site_value = StringValue(1, "HS_SITE", std::string(site.begin(), site.end()));
  std::vector<std::string> homes = config.node.home;
  bool demo = config.node.demo && homes.empty() && registry.prefix_table().Snapshot()->size() == 0;
  if (demo) homes.push_back(kDemoPrefix);
  // The demo OID lives under dns.oid_prefix, which must be homed for DNS to answer it.
  if (demo && config.dns.enabled) homes.push_back(config.dns.oid_prefix);
  for (const auto& prefix : homes) {
    auto state = registry.FindPrefix(prefix);
    if (state && state->role() == proto::PrefixState::HOMED) continue;
    auto r = registry.HomePrefix(prefix, {site_value, AdminValue(prefix)});
    if (r.code != protocol::ResponseCode::kSuccess) return Failure{"cannot home prefix " + prefix};
    spdlog::info("homed prefix {}", prefix);
  }
  // On a site of several servers, index 1 of each homed prefix's handle (this node's HS_SITE,
  // written when the prefix was homed) is kept the site's current record at every start: a node
  // split into a site publishes where its identifiers are now. A one-server node leaves it as the
  // operator keeps it (a public address behind NAT, say). Other indexes are the operator's.
  std::vector<std::string> homed;
  if (!config.site.servers.empty()) {
    registry.prefix_table().Snapshot()->ForEach(
        [&homed](std::string_view name, const registry::PrefixEntry& entry) {
          if (entry.role == registry::PrefixRole::kHomed) homed.emplace_back(name);
        });
  }
  std::vector<registry::Operation> refresh;
  for (const auto& prefix : homed) {
    const std::string handle = identifier::PrefixHandleFor(prefix);
    auto current = registry.Get(handle);
    if (current.code != protocol::ResponseCode::kSuccess &&
        current.code != protocol::ResponseCode::kHandleNotFound) {
      continue;  // unreadable now: left as it is
    }
    const proto::Value* at_one = nullptr;
    for (const auto& v : current.record.values()) {
      if (v.index() == 1) at_one = &v;
    }
    if (at_one != nullptr && !registry::TypeMatches("HS_SITE", at_one->type())) {
      spdlog::warn("{}: index 1 is {}, not this node's HS_SITE: left as it is", handle,
                   at_one->type());
      continue;
    }
    if (at_one != nullptr && at_one->data() == site_value.data()) continue;
    registry::Operation op;
    op.handle = handle;
    op.kind = current.code == protocol::ResponseCode::kSuccess ? registry::OpKind::kAddValues
                                                               : registry::OpKind::kCreate;
    op.overwrite = true;
    op.values = {site_value};
    refresh.push_back(std::move(op));
  }
  for (size_t first = 0; first < refresh.size(); first += registry::kMaxBatchOperations) {
    const size_t end = std::min(refresh.size(), first + registry::kMaxBatchOperations);
    std::vector<registry::Operation> chunk(std::make_move_iterator(refresh.begin() + first),
                                           std::make_move_iterator(refresh.begin() + end));
    std::vector<std::string> names;
    for (const auto& op : chunk) names.push_back(op.handle);
    auto results = registry.ApplyBatch({}, std::move(chunk));
    for (size_t i = 0; i < results.size() && i < names.size(); ++i) {
      if (results[i].code != protocol::ResponseCode::kSuccess) {
        spdlog::warn("{}: cannot publish the site's HS_SITE at index 1 (code {})", names[i],
                     static_cast<int>(results[i].code));
      }
    }
  }
  if (!refresh.empty())
    spdlog::info("published the site's HS_SITE in {} prefix handles", refresh.size());
  if (demo) {
    std::string p = kDemoPrefix;
    std::vector<registry::Operation> ops;
    auto create = [&](const std::string& suffix, std::vector<proto::Value> values) {
      registry::Operation op;
      op.handle = p + "/" + suffix;
      op.values = std::move(values);
      values.push_back(AdminValue(p));
      op.values.push_back(AdminValue(p));
      ops.push_back(std::move(op));
    };
    create("hello", {StringValue(1, "URL", "https://example.org/hello"),
                     StringValue(2, "DESC", "idnode demo identifier: resolve me")});
    create("SN0001", {StringValue(1, "URL", "https://example.org/products/SN0001"),
                      StringValue(2, "EMAIL", "support@example.org"),
                      StringValue(3, "DESC", "industrial part SN0001, lot 42")});
    create("SN0002", {StringValue(1, "URL", "https://example.org/products/SN0002"),
                      StringValue(3, "DESC", "industrial part SN0002, lot 43")});
    if (config.dns.enabled) {
      // Answered over DNS at once: dig @127.0.0.1 -p 5353 1.3001.156.2.1.oid-res.org NAPTR
      registry::Operation op;
      op.handle = config.dns.oid_prefix + "/" + kDemoOid;
      op.values = {StringValue(1, "URL", "https://example.org/oid/1.2.156.3001.1"),
                   StringValue(2, "DESC", "idnode demo OID"), AdminValue(config.dns.oid_prefix)};
      ops.push_back(std::move(op));
    }
    for (const auto& r : registry.ApplyBatch({}, ops)) {
      if (r.code != protocol::ResponseCode::kSuccess &&
          r.code != protocol::ResponseCode::kHandleAlreadyExists) {
        return Failure{std::string("cannot create the demo identifiers")};
      }
    }
    spdlog::info("created demo identifiers {0}/hello, {0}/SN0001, {0}/SN0002", p);
  }
  return Unit{};
}

// The replication source (when replication.listen is set) and replica links (when
// replication.sources are), built from the config; TLS contexts are loaded here so that a bad
// certificate stops the start with a clear message.
Result<Unit, std::string> BuildReplication(const config::Config& config,
                                           registry::Registry& registry,
                                           replication::StatusBoard& status,
                                           std::unique_ptr<replication::ReplicationSource>* source,
                                           std::unique_ptr<replication::ReplicaClient>* replica) {
  const config::ReplicationConfig& rc = config.replication;
  if (rc.listen.empty() && rc.sources.empty()) return Unit{};
  const replication::TlsFiles files{rc.certificate, rc.private_key, rc.ca};
  if (!rc.listen.empty()) {
    auto tls = replication::MakeTlsContext(files, /*server=*/true);
    if (!tls.ok()) return Failure{"replication: " + tls.error()};
    replication::SourceOptions o;
    o.node_name = rc.name;
    config::ParseHostPort(rc.listen, &o.bind_address, &o.port, /*allow_port_zero=*/true);
    for (const auto& text : rc.peers) {
      config::ReplicationPeer peer;
      std::string why;
      config::ParseReplicationPeer(text, &peer, &why);  // the config room checked it
      replication::PeerGrant grant{peer.name, replication::Subscription::Everything()};
      if (!peer.everything) {
        auto allowed = replication::Subscription::Of(peer.prefixes);
        if (!allowed.ok()) return Failure{"replication.peers: " + allowed.error()};
        grant.allowed = std::move(*allowed);
      }
      o.peers.push_back(std::move(grant));
    }
    o.window_bytes = rc.window_bytes;
    o.send_timeout = rc.send_timeout;
    o.ack_timeout = rc.ack_timeout;
    o.heartbeat = rc.heartbeat;
    o.max_lag_entries = rc.max_lag_entries;
    o.max_connections = rc.max_connections;
    *source = std::make_unique<replication::ReplicationSource>(registry, std::move(o),
                                                               std::move(*tls), status);
    auto bound = (*source)->Bind();
    if (!bound.ok()) return Failure{bound.error()};
  }
  if (!rc.sources.empty()) {
    auto tls = replication::MakeTlsContext(files, /*server=*/false);
    if (!tls.ok()) return Failure{"replication: " + tls.error()};
    replication::ReplicaOptions o;
    o.node_name = rc.name;
    o.window_bytes = rc.window_bytes;
    o.send_timeout = rc.send_timeout;
    // A source sends a heartbeat at least every heartbeat_ms when idle.
    o.idle_timeout = std::max(rc.ack_timeout, rc.heartbeat * 10);
    o.site_servers = static_cast<uint32_t>(config.site.servers.size());
    o.site_server = config.site.this_server;
    for (const auto& text : rc.sources) {
      config::ReplicationSourceEntry entry;
      std::string why;
      config::ParseReplicationSource(text, &entry, &why);  // the config room checked it
      replication::SourceLink link;
      link.name = entry.name;
      link.host = entry.host;
      link.port = entry.port;
      link.everything = entry.everything;
      link.prefixes = entry.prefixes;
      link.answer_policy = entry.answer == "refer" ? registry::prefix_flag::kReferToOwner
                           : entry.answer == "mirror_when_owner_down"
                               ? registry::prefix_flag::kReferWhileOwnerUp
                               : 0;
      o.sources.push_back(std::move(link));
    }
    *replica = std::make_unique<replication::ReplicaClient>(registry, std::move(o), std::move(*tls),
                                                            status);
    auto prepared = (*replica)->Prepare();
    if (!prepared.ok()) return Failure{"replication: " + prepared.error()};
    for (const auto& warning : *prepared) spdlog::warn("replication: {}", warning);
  }
  return Unit{};
}

// GET /api/digest?prefix=P: the order-independent digest of the records (of a prefix), to compare
// two nodes (a replica and its source).
// /api/digest scans everything a prefix holds: one at a time (others get 503 and retry), and an
// unchanged registry (same sequences and histories in every shard) gets the last answer again.
class DigestService {
 public:
  explicit DigestService(const registry::Registry& registry) : registry_(registry) {}
  http::HttpResponse operator()(std::string_view query);

 private:
  const registry::Registry& registry_;
  std::mutex mutex_;
  std::string last_key_;
  std::string last_body_;
};

http::HttpResponse DigestResponse(const registry::Registry& registry, std::string_view query);

http::HttpResponse DigestService::operator()(std::string_view query) {
  std::unique_lock lock(mutex_, std::try_to_lock);
  if (!lock.owns_lock()) {
    http::HttpResponse r;
    r.status = 503;
    r.body = R"({"message":"another digest is being computed; retry"})";
    return r;
  }
  std::string key(query);
  for (uint32_t s = 0; s < registry_.shard_count(); ++s)
    key += "|" + std::to_string(registry_.LastSequence(s)) + ":" + registry_.ShardLineage(s);
  if (key == last_key_) {
    http::HttpResponse r;
    r.body = last_body_;
    return r;
  }
  http::HttpResponse r = DigestResponse(registry_, query);
  if (r.status == 200) {
    last_key_ = std::move(key);
    last_body_ = r.body;
  }
  return r;
}

http::HttpResponse DigestResponse(const registry::Registry& registry, std::string_view query) {
  std::string prefix;
  for (size_t at = 0; at < query.size();) {
    size_t amp = query.find('&', at);
    std::string_view pair = query.substr(at, amp == std::string_view::npos ? amp : amp - at);
    if (pair.starts_with("prefix=") && !http::DecodePercent(pair.substr(7), &prefix)) {
      http::HttpResponse r;
      r.status = 400;
      r.body = R"({"message":"malformed prefix"})";
      return r;
    }
    if (amp == std::string_view::npos) break;
    at = amp + 1;
  }
  http::HttpResponse r;
  auto digest = registry.ComputeDigest(prefix);
  if (!digest.ok()) {
    r.status = 500;
    r.body = R"({"message":"the digest could not be computed"})";
    return r;
  }
  r.body = "{\"prefix\":\"" + (prefix.empty() ? std::string() : identifier::Normalize(prefix)) +
           "\",\"records\":" + std::to_string(digest->records) + ",\"digest\":\"" + digest->hex() +
           "\"}";
  return r;
}

void SetLogLevel(const std::string& level) {
  spdlog::set_level(spdlog::level::from_str(level));
}

}  // namespace

// A data directory made by `idctl site split` says which server of which site it is (its SITE
// file): started as another, a server would answer "not found" for identifiers it holds and take
// creates of identifiers another server holds.
Result<Unit, std::string> CheckSiteFile(const config::Config& config) {
  const std::string path = config.node.data_dir + "/SITE";
  std::ifstream in(path);
  if (!in) return Unit{};
  std::string servers_word, index_word;
  uint64_t servers = 0, index = 0;
  in >> servers_word >> servers >> index_word >> index;
  if (!in || servers_word != "servers" || index_word != "index")
    return Failure{path + " is not \"servers N index K\""};
  const uint64_t configured = config.site.servers.size();
  if (servers != configured || index != config.site.this_server) {
    return Failure{config.node.data_dir + " holds server " + std::to_string(index) +
                   " of a site of " + std::to_string(servers) + " servers (" + path +
                   "), but site.servers lists " + std::to_string(configured) +
                   " and site.this_server is " + std::to_string(config.site.this_server)};
  }
  return Unit{};
}

// A server of a site of several records its place in its data directory the first time it runs
// there (idctl site split writes the same file): what it holds and what its replication cursors
// stand for is that share, so a later change of site.servers or this_server is refused at start
// (CheckSiteFile) instead of resuming with a share the data does not hold.
Result<Unit, std::string> RecordSiteFile(const config::Config& config) {
  if (config.site.servers.size() <= 1) return Unit{};
  const std::string path = config.node.data_dir + "/SITE";
  if (std::ifstream(path)) return Unit{};  // checked by CheckSiteFile
  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::trunc);
    out << "servers " << config.site.servers.size() << " index " << config.site.this_server << "\n";
    out.flush();
    if (!out) return Failure{"cannot write " + temporary};
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) return Failure{"cannot write " + path};
  return Unit{};
}

Result<Unit, std::string> Run(const config::Config& config, const std::string& config_file) {
  SetLogLevel(config.log.level);
  spdlog::info("idnode starting ({})", config.source);
  if (auto site = CheckSiteFile(config); !site.ok()) return Failure{site.error()};

  cache::CacheOptions cache_options;
  cache_options.capacity_bytes = config.cache.capacity_bytes;
  cache_options.shard_count = config.cache.shards;
  cache_options.negative_ttl = config.cache.negative_ttl;
  if (auto problem = cache::CacheOptions::Validate(cache_options))
    return Failure{"cache: " + *problem};
  auto cache = std::make_shared<cache::AnswerCache>(cache_options);

  registry::RegistryOptions registry_options;
  registry_options.storage.path = config.node.data_dir;
  registry_options.storage.shard_count = config.node.shards;
  registry_options.storage.block_cache_bytes = config.storage.block_cache_bytes;
  registry_options.storage.sync_writes = config.storage.sync_writes;
  registry_options.retention.max_entries_per_shard = config.storage.changelog_max_entries;
  registry_options.retention.max_age = config.storage.changelog_max_age;
  registry_options.retention.audit_max_age = config.storage.audit_max_age;
  registry_options.retention.max_peer_lag_entries = config.replication.max_lag_entries;
  registry_options.cache = cache;
  // Rendered JSON answers get their own, smaller cache (an eighth of the answer cache's budget).
  cache::CacheOptions json_options = cache_options;
  json_options.capacity_bytes = std::max<uint64_t>(cache_options.capacity_bytes / 8,
                                                   uint64_t{cache_options.shard_count} * 4096);
  auto json_cache = std::make_shared<cache::AnswerCache>(json_options);
  registry_options.json_cache = json_cache;
  auto opened = registry::Registry::Open(std::move(registry_options));
  if (!opened.ok())
    return Failure{"cannot open the registry in " + config.node.data_dir + ": " + opened.error()};
  std::unique_ptr<registry::Registry> registry = std::move(*opened);
  if (auto site = RecordSiteFile(config); !site.ok()) return Failure{site.error()};

  metrics::MetricsHub metrics;
  resolver::ResolverOptions resolver_options;
  resolver_options.answer_mirrored = config.node.answer_mirrored;
  resolver::Resolver resolver(*registry, cache, resolver_options);
  auth::AuthOptions auth_options;
  for (const auto& text : config.auth.server_admins) {
    auto identity = auth::Identity::Parse(text);  // the config room checked the form
    if (identity) auth_options.server_admins.push_back(std::move(*identity));
  }
  auth_options.allow_prefix_admins = config.auth.allow_prefix_admins;
  auth::Authorizer authorizer(*registry, std::move(auth_options));
  auth::ChallengeTable challenges(config.auth.max_pending_challenges,
                                  config.auth.max_pending_challenge_bytes,
                                  config.auth.challenge_timeout);
  auth::FailureThrottle failed_proofs(config.auth.failed_proofs_per_minute,
                                      config.auth.failed_proofs_per_key_per_minute);
  const std::string key_path = config.auth.server_key_file.empty()
                                   ? config.node.data_dir + "/server_key.pem"
                                   : config.auth.server_key_file;
  auto server_key = auth::ServerKey::LoadOrCreate(key_path, config.auth.server_key_file.empty());
  if (!server_key.ok()) return Failure{server_key.error()};
  auth::SessionTable sessions(config.auth.max_sessions, config.auth.max_sessions_per_source,
                              config.auth.max_session_lifetime);
  net::AdminService admin(*registry, authorizer, challenges, failed_proofs,
                          config.node.site_serial);
  admin.SetSessions(&sessions, *server_key);
  net::HandleService service(resolver, {}, config.node.site_serial, &admin);
  service.SetCredentials(*server_key, &sessions);
  // The JSON API's writes (over HTTPS): the same decisions as the admin path above.
  // Its `Handle` scheme's sessions, bounded in number as the Handle protocol's are
  // (auth.max_sessions, max_sessions_per_source); a bearer session lives at most an hour.
  http::HttpAuthSessions::Limits http_session_limits;
  http_session_limits.capacity = config.auth.max_sessions;
  http_session_limits.per_source = config.auth.max_sessions_per_source;
  http_session_limits.lifetime =
      std::min<std::chrono::seconds>(config.auth.max_session_lifetime, std::chrono::hours(1));
  http::HttpAuthSessions http_sessions(http_session_limits);
  http::AdminApi admin_api(*registry, authorizer, admin, failed_proofs, &http_sessions);
  net::HandleServer handle_server(config.handle, service, metrics);
  std::atomic<bool> ready{false};
  http::Api api(
      resolver, metrics, [&ready] { return ready.load(); }, json_cache);
  api.SetAdmin(&admin_api);
  http::HttpServer http_server(config.http, api, metrics);
  dns::ResponderOptions dns_options = dns::OptionsFrom(config.dns);
  // The SOA serial moves with each start: nothing follows it (no zone transfers), caches may.
  dns_options.soa_serial = static_cast<uint32_t>(std::time(nullptr));
  dns::DnsServer dns_server(config.dns, resolver, std::move(dns_options), metrics);

  if (config.handle.udp || config.handle.tcp) {
    auto bound = handle_server.Bind();
    if (!bound.ok()) return Failure{bound.error()};
  }
  if (config.http.enabled) {
    auto bound = http_server.Bind(config.http.threads);
    if (!bound.ok()) return Failure{bound.error()};
  }
  if (config.dns.enabled) {
    auto bound = dns_server.Bind();
    if (!bound.ok()) return Failure{bound.error()};
  }
  replication::StatusBoard replication_status;
  std::unique_ptr<replication::ReplicationSource> replication_source;
  std::unique_ptr<replication::ReplicaClient> replica;
  auto replication_built =
      BuildReplication(config, *registry, replication_status, &replication_source, &replica);
  if (!replication_built.ok()) return Failure{replication_built.error()};
  {
    // Saved positions of replicas no longer in replication.peers hold the changelog for nobody.
    std::vector<std::string> peer_names;
    for (const auto& text : config.replication.peers) {
      config::ReplicationPeer peer;
      std::string why;
      if (config::ParseReplicationPeer(text, &peer, &why)) peer_names.push_back(peer.name);
    }
    auto forgotten = registry->ForgetPeerPositionsExcept(peer_names);
    if (!forgotten.ok()) return Failure{"replication: " + forgotten.error()};
    if (*forgotten > 0)
      spdlog::warn("replication: forgot {} saved positions of replicas no longer configured",
                   *forgotten);
  }
  if (replication_source) {
    // Writers only flag the change; sessions read the changelog on the replication thread.
    registry->SetChangeListener(
        [source = replication_source.get()](uint32_t) { source->NotifyChange(); });
  }
  admin.SetOnPrefixRolesChanged([&replica] {
    if (replica) replica->Resubscribe();
  });
  api.AddEndpoint({"/api/replication", false, [&](std::string_view) {
                     http::HttpResponse r;
                     r.body = replication_status.Json(config.replication.name);
                     return r;
                   }});
  app::NodeStats node_stats(metrics, *cache, *registry,
                            [&] { return replication_status.Json(config.replication.name); });
  api.SetStats([&node_stats] { return node_stats.Json(); }, config.http.status_requires_admin);
  auto digests = std::make_shared<DigestService>(*registry);
  api.AddEndpoint(
      {"/api/digest", true, [digests](std::string_view query) { return (*digests)(query); }});

  auto site = BuildSiteInfo(config, handle_server.port(), http_server.port(),
                            (*server_key)->public_key_value());
  service.SetSiteInfo(site);
  api.SetSiteInfo(site);
  registry->SetOwnSite(site);  // before requests: delegations to this node are served here
  if (!config.site.servers.empty()) {
    registry->SetSiteServer(static_cast<uint32_t>(config.site.servers.size()),
                            config.site.this_server);
  }
  auto prepared = PreparePrefixes(*registry, config, site);
  if (!prepared.ok()) return Failure{prepared.error()};

  metrics.AddCollector([&](std::string& out) {
    auto s = cache->stats();
    metrics::AppendHelp(out, "idnode_cache_events_total", "counter",
                        "Answer cache lookups and changes.");
    metrics::AppendSample(out, "idnode_cache_events_total", "event=\"hit\"",
                          static_cast<double>(s.hits));
    metrics::AppendSample(out, "idnode_cache_events_total", "event=\"negative_hit\"",
                          static_cast<double>(s.negative_hits));
    metrics::AppendSample(out, "idnode_cache_events_total", "event=\"miss\"",
                          static_cast<double>(s.misses));
    metrics::AppendSample(out, "idnode_cache_events_total", "event=\"contended\"",
                          static_cast<double>(s.contended));
    metrics::AppendSample(out, "idnode_cache_events_total", "event=\"eviction\"",
                          static_cast<double>(s.evictions));
    metrics::AppendSample(out, "idnode_cache_events_total", "event=\"invalidation\"",
                          static_cast<double>(s.invalidations));
    metrics::AppendHelp(out, "idnode_cache_bytes", "gauge",
                        "Bytes the answer cache holds, overhead included.");
    metrics::AppendSample(out, "idnode_cache_bytes", "", static_cast<double>(s.bytes_used));
    metrics::AppendHelp(out, "idnode_cache_entries", "gauge", "Answers the answer cache holds.");
    metrics::AppendSample(out, "idnode_cache_entries", "", static_cast<double>(s.entries));
    metrics::AppendSample(out, "idnode_cache_capacity_bytes", "",
                          static_cast<double>(cache->capacity_bytes()));
    metrics::AppendHelp(out, "idnode_storage_bytes", "gauge", "Live SST bytes per shard.");
    for (uint32_t shard = 0; shard < registry->shard_count(); ++shard) {
      auto st = registry->store().Stats(shard);
      std::string label = "shard=\"" + std::to_string(shard) + "\"";
      metrics::AppendSample(out, "idnode_storage_bytes", label,
                            static_cast<double>(st.live_sst_bytes));
      metrics::AppendSample(out, "idnode_storage_estimated_keys", label,
                            static_cast<double>(st.estimated_keys));
      metrics::AppendSample(out, "idnode_storage_write_stalled", label,
                            st.write_stopped || st.write_delayed ? 1 : 0);
      metrics::AppendSample(out, "idnode_changelog_last_sequence", label,
                            static_cast<double>(registry->LastSequence(shard)));
      metrics::AppendSample(out, "idnode_changelog_first_sequence", label,
                            static_cast<double>(registry->FirstRetainedSequence(shard)));
    }
    metrics::AppendHelp(out, "idnode_storage_read_errors_total", "counter",
                        "Reads that failed (storage errors, corrupt records): answered RC 2 / "
                        "SERVFAIL / 500, never cached.");
    metrics::AppendSample(out, "idnode_storage_read_errors_total", "",
                          static_cast<double>(registry->read_errors()));
    metrics::AppendHelp(out, "idnode_prefixes", "gauge", "Entries of the prefix table.");
    metrics::AppendSample(out, "idnode_prefixes", "",
                          static_cast<double>(registry->prefix_table().Snapshot()->size()));
    replication_status.AppendMetrics(out);
    handle_server.CollectMetrics(out);
    if (config.dns.enabled) dns_server.CollectMetrics(out);
    if (config.http.enabled) http_server.CollectMetrics(out);
  });

  // Serving starts only now: the site information and this node's own site are set.
  if (config.handle.udp || config.handle.tcp) handle_server.Run();
  if (config.http.enabled) http_server.Run();
  if (config.dns.enabled) dns_server.Run();
  if (replication_source) replication_source->Start();
  if (replica) replica->Start();
  ready = true;

  // The homed and mirrored prefixes (a top-level node may delegate a million: those are counted).
  std::string prefixes;
  size_t delegated = 0;
  registry->prefix_table().Snapshot()->ForEach(
      [&](std::string_view name, const registry::PrefixEntry& entry) {
        if (entry.role == registry::PrefixRole::kDelegated) {
          ++delegated;
        } else if (prefixes.size() < 2048) {
          if (!prefixes.empty()) prefixes.push_back(',');
          prefixes.append(name);
        }
      });
  // One line for people and for tests that start the node on port 0.
  std::string replication_listen =
      replication_source
          ? config.replication.listen.substr(0, config.replication.listen.rfind(':') + 1) +
                std::to_string(replication_source->port())
          : std::string("off");
  std::printf(
      "idnode ready: handle=%s:%u http=%s:%u dns=%s:%u replication=%s data=%s delegated=%zu "
      "prefixes=%s\n",
      config.handle.bind.front().c_str(), handle_server.port(), config.http.bind.front().c_str(),
      http_server.port(), config.dns.bind.front().c_str(), dns_server.port(),
      replication_listen.c_str(), config.node.data_dir.c_str(), delegated, prefixes.c_str());
  std::fflush(stdout);

  asio::io_context main_io;
  asio::signal_set stop_signals(main_io, SIGTERM, SIGINT);
  asio::signal_set reload_signal(main_io, SIGHUP);
  asio::steady_timer retention(main_io);
  asio::steady_timer stats_timer(main_io);
  stop_signals.async_wait([&](const boost::system::error_code& ec, int signal) {
    if (ec) return;
    spdlog::info("signal {}: draining and stopping", signal);
    ready = false;
    reload_signal.cancel();
    retention.cancel();
    stats_timer.cancel();
  });
  std::function<void()> wait_reload = [&] {
    reload_signal.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec) return;
      // Runtime settings only: listeners, storage and cache keep what they started with.
      if (!config_file.empty()) {
        try {
          config::Config fresh = config::LoadFile(config_file);
          SetLogLevel(fresh.log.level);
          spdlog::info("SIGHUP: reloaded {} (log level {})", config_file, fresh.log.level);
        } catch (const config::ConfigError& e) {
          spdlog::error("SIGHUP: {} not reloaded:\n{}", config_file, e.what());
        }
      }
      wait_reload();
    });
  };
  wait_reload();
  std::function<void()> schedule_retention = [&] {
    retention.expires_after(config.storage.changelog_trim_interval);
    retention.async_wait([&](const boost::system::error_code& ec) {
      if (ec) return;
      auto trimmed = registry->ApplyRetention(std::chrono::system_clock::now());
      if (!trimmed.ok()) spdlog::warn("changelog retention: {}", trimmed.error());
      schedule_retention();
    });
  };
  schedule_retention();
  // The dashboard's samples: taken whether or not anyone watches, so a page opened now has the
  // last minutes to draw (a few microseconds each).
  std::function<void()> schedule_stats = [&] {
    node_stats.Sample();
    stats_timer.expires_after(app::NodeStats::kSampleInterval);
    stats_timer.async_wait([&](const boost::system::error_code& ec) {
      if (!ec) schedule_stats();
    });
  };
  schedule_stats();
  main_io.run();

  http_server.Stop();
  dns_server.Stop();
  handle_server.Stop();
  // No writer is left: replication stops, and the registry forgets the source it notified.
  if (replica) replica->Stop();
  if (replication_source) replication_source->Stop();
  registry->SetChangeListener(nullptr);
  spdlog::info("idnode stopped");
  return Unit{};
}

}  // namespace idnode::app
