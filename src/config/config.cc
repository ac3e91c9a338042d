#include "idnode/config/config.h"

#include <arpa/inet.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <thread>

namespace idnode::config {

namespace {

class Errors {
 public:
  explicit Errors(std::string file) : file_(std::move(file)) {}
  void Add(const YAML::Mark& mark, const std::string& message) {
    std::string where = file_;
    if (!mark.is_null()) where.append(":").append(std::to_string(mark.line + 1));
    list_.push_back(where + ": " + message);
  }
  void Throw() const {
    if (list_.empty()) return;
    std::string all;
    for (const auto& e : list_) all += e + "\n";
    all.pop_back();
    throw ConfigError(all);
  }

 private:
  std::string file_;
  std::vector<std::string> list_;
};

// One key of the schema: how to read it, how to print its current value, and (for a section) the
// keys inside it. Reading and describing a configuration walk the same table, so a key cannot be
// read without also being described (and compared with config/idnode.yaml by the tests).
struct Field {
  std::function<void(const YAML::Node& value, const std::string& key)> parse;
  std::function<std::string()> print;                   // leaves only
  std::vector<std::pair<std::string, Field>> children;  // sections only
};
using Fields = std::vector<std::pair<std::string, Field>>;

bool ParseUnsigned(const std::string& text, uint64_t* out) {
  if (text.empty() || text[0] == '-' || text[0] == '+') return false;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size();
}

// Sizes may carry a binary suffix: 512MiB, 64KiB, 1GiB.
bool ParseBytes(const std::string& text, uint64_t* out) {
  static const std::pair<const char*, uint64_t> kSuffixes[] = {
      {"KiB", 1ull << 10}, {"MiB", 1ull << 20}, {"GiB", 1ull << 30}, {"TiB", 1ull << 40}};
  for (const auto& [suffix, factor] : kSuffixes) {
    std::string s(suffix);
    if (text.size() > s.size() && text.compare(text.size() - s.size(), s.size(), s) == 0) {
      uint64_t n = 0;
      if (!ParseUnsigned(text.substr(0, text.size() - s.size()), &n) || n > UINT64_MAX / factor)
        return false;
      *out = n * factor;
      return true;
    }
  }
  return ParseUnsigned(text, out);
}

class Reader {
 public:
  explicit Reader(Errors& errors) : errors_(errors) {}

  // Visits a mapping: known keys go to their field, unknown keys are errors.
  void Map(const YAML::Node& node, const std::string& path, const Fields& fields) {
    if (!node.IsMap()) {
      errors_.Add(node.Mark(), (path.empty() ? "the document" : path) + " must be a mapping");
      return;
    }
    for (const auto& item : node) {
      std::string key = item.first.Scalar();
      std::string full = path.empty() ? key : path + "." + key;
      auto it = std::find_if(fields.begin(), fields.end(),
                             [&key](const auto& field) { return field.first == key; });
      if (it == fields.end()) {
        errors_.Add(item.first.Mark(), "unknown key \"" + full + "\"");
        continue;
      }
      it->second.parse(item.second, full);
    }
  }

  template <typename T>
  Field Unsigned(T* out, uint64_t min, uint64_t max) {
    return Leaf([out] { return std::to_string(*out); },
                [this, out, min, max](const YAML::Node& n, const std::string& key) {
                  uint64_t v = 0;
                  if (!n.IsScalar() || !ParseUnsigned(n.Scalar(), &v) || v < min || v > max) {
                    errors_.Add(n.Mark(), key + " must be a whole number from " +
                                              std::to_string(min) + " to " + std::to_string(max));
                    return;
                  }
                  *out = static_cast<T>(v);
                });
  }
  Field Bytes(uint64_t* out, uint64_t min) {
    return Leaf([out] { return std::to_string(*out); },
                [this, out, min](const YAML::Node& n, const std::string& key) {
                  uint64_t v = 0;
                  if (!n.IsScalar() || !ParseBytes(n.Scalar(), &v) || v < min) {
                    errors_.Add(n.Mark(), key + " must be a size in bytes of at least " +
                                              std::to_string(min) +
                                              " (a number, optionally with KiB, MiB, GiB or TiB)");
                    return;
                  }
                  *out = v;
                });
  }
  Field Millis(std::chrono::milliseconds* out, uint64_t min, uint64_t max) {
    return Leaf([out] { return std::to_string(out->count()); },
                [this, out, min, max](const YAML::Node& n, const std::string& key) {
                  uint64_t v = 0;
                  if (!n.IsScalar() || !ParseUnsigned(n.Scalar(), &v) || v < min || v > max) {
                    errors_.Add(n.Mark(), key + " must be milliseconds from " +
                                              std::to_string(min) + " to " + std::to_string(max));
                    return;
                  }
                  *out = std::chrono::milliseconds(v);
                });
  }
  Field Seconds(std::chrono::seconds* out, uint64_t min, uint64_t max) {
    return Leaf([out] { return std::to_string(out->count()); },
                [this, out, min, max](const YAML::Node& n, const std::string& key) {
                  uint64_t v = 0;
                  if (!n.IsScalar() || !ParseUnsigned(n.Scalar(), &v) || v < min || v > max) {
                    errors_.Add(n.Mark(), key + " must be seconds from " + std::to_string(min) +
                                              " to " + std::to_string(max));
                    return;
                  }
                  *out = std::chrono::seconds(v);
                });
  }
  Field Bool(bool* out) {
    return Leaf([out] { return std::string(*out ? "true" : "false"); },
                [this, out](const YAML::Node& n, const std::string& key) {
                  if (n.IsScalar() && (n.Scalar() == "true" || n.Scalar() == "false")) {
                    *out = n.Scalar() == "true";
                  } else {
                    errors_.Add(n.Mark(), key + " must be true or false");
                  }
                });
  }
  Field String(std::string* out, bool allow_empty = false) {
    return Leaf([out] { return *out; },
                [this, out, allow_empty](const YAML::Node& n, const std::string& key) {
                  if (!n.IsScalar() || (!allow_empty && n.Scalar().empty())) {
                    errors_.Add(n.Mark(), key + " must be a non-empty string");
                    return;
                  }
                  *out = n.Scalar();
                });
  }
  Field OneOf(std::string* out, std::vector<std::string> allowed) {
    return Leaf([out] { return *out; },
                [this, out, allowed](const YAML::Node& n, const std::string& key) {
                  for (const auto& a : allowed) {
                    if (n.IsScalar() && n.Scalar() == a) {
                      *out = a;
                      return;
                    }
                  }
                  std::string list;
                  for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
                  errors_.Add(n.Mark(), key + " must be one of " + list);
                });
  }
  Field Strings(std::vector<std::string>* out, bool allow_empty_list) {
    return Leaf(
        [out] {
          std::string list = "[";
          for (const auto& item : *out) list += (list.size() > 1 ? ", " : "") + item;
          return list + "]";
        },
        [this, out, allow_empty_list](const YAML::Node& n, const std::string& key) {
          if (!n.IsSequence() || (!allow_empty_list && n.size() == 0)) {
            errors_.Add(n.Mark(), key + " must be a list of strings" +
                                      (allow_empty_list ? "" : " (at least one)"));
            return;
          }
          out->clear();
          for (const auto& item : n) {
            if (!item.IsScalar() || item.Scalar().empty()) {
              errors_.Add(item.Mark(), key + " entries must be non-empty strings");
              continue;
            }
            out->push_back(item.Scalar());
          }
        });
  }

 private:
  static Field Leaf(std::function<std::string()> print,
                    std::function<void(const YAML::Node&, const std::string&)> parse) {
    Field f;
    f.parse = std::move(parse);
    f.print = std::move(print);
    return f;
  }
  Errors& errors_;
};

// A domain name in presentation form: labels of 1-63 letters, digits, '-' or '_', at most 253
// characters, an optional final dot (dns.apex, dns.nameserver).
bool IsDomainName(const std::string& name) {
  std::string_view n(name);
  if (!n.empty() && n.back() == '.') n.remove_suffix(1);
  if (n.empty() || n.size() > 253) return false;
  size_t label = 0;
  for (char ch : n) {
    if (ch == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_';
    if (!ok || ++label > 63) return false;
  }
  return label > 0;
}

}  // namespace

bool ParseDnsDelegation(std::string_view text, DnsDelegation* out, std::string* why) {
  DnsDelegation parsed;
  std::istringstream in{std::string(text)};
  std::string word;
  bool first = true;
  while (in >> word) {
    if (first) {
      parsed.oid = word;
      bool ok = !word.empty() && word.size() <= 100 && word.front() != '.' && word.back() != '.';
      for (char ch : word) ok = ok && ((ch >= '0' && ch <= '9') || ch == '.');
      if (!ok) {
        *why = "\"" + word + "\" is not an OID (1.2.156.3001)";
        return false;
      }
      first = false;
      continue;
    }
    size_t eq = word.find('=');
    std::string name = word.substr(0, eq);
    if (!IsDomainName(name)) {
      *why = "\"" + name + "\" is not a name server name";
      return false;
    }
    if (!name.empty() && name.back() != '.') name.push_back('.');
    parsed.nameservers.push_back(name);
    if (eq != std::string::npos) {
      std::string address = word.substr(eq + 1);
      std::array<uint8_t, 16> bytes{};
      int bits = 0;
      if (address.find('/') != std::string::npos || !ParseNetwork(address, &bytes, &bits)) {
        *why = "\"" + address + "\" is not an IP address";
        return false;
      }
      parsed.addresses.emplace_back(name, address);
    }
  }
  if (first || parsed.nameservers.empty()) {
    *why = "needs an OID and at least one name server: \"1.2.156.3001 ns1.example.cn.=192.0.2.53\"";
    return false;
  }
  if (out != nullptr) *out = std::move(parsed);
  return true;
}

bool ParseHostPort(std::string_view text, std::string* host, uint16_t* port, bool allow_port_zero) {
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 >= text.size()) return false;
  std::string_view h = text.substr(0, colon);
  if (h.front() == '[') {
    if (h.back() != ']') return false;
    h = h.substr(1, h.size() - 2);
  }
  std::array<uint8_t, 16> bytes{};
  int bits = 0;
  if (h.find('/') != std::string_view::npos || !ParseNetwork(h, &bytes, &bits)) return false;
  uint64_t p = 0;
  if (!ParseUnsigned(std::string(text.substr(colon + 1)), &p) || (p == 0 && !allow_port_zero) ||
      p > 65535)
    return false;
  *host = std::string(h);
  *port = static_cast<uint16_t>(p);
  return true;
}

bool ParseHostNameOrAddressPort(std::string_view text, std::string* host, uint16_t* port) {
  if (ParseHostPort(text, host, port)) return true;
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 >= text.size()) return false;
  const std::string_view name = text.substr(0, colon);
  if (name.size() > 253 || name.front() == '.' || name.front() == '-') return false;
  bool letter = false;
  for (char ch : name) {
    const bool alpha = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
    letter = letter || alpha;
    if (!alpha && !(ch >= '0' && ch <= '9') && ch != '-' && ch != '.') return false;
  }
  // All digits and dots is a malformed address, not a name.
  if (!letter) return false;
  uint64_t p = 0;
  if (!ParseUnsigned(std::string(text.substr(colon + 1)), &p) || p == 0 || p > 65535) return false;
  *host = std::string(name);
  *port = static_cast<uint16_t>(p);
  return true;
}

namespace {

// A node's name in replication: its certificate's, 1-64 letters, digits, '.', '-' or '_'.
bool IsNodeName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char ch : name) {
    bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '-' || ch == '_';
    if (!ok) return false;
  }
  return true;
}

bool IsPrefixText(std::string_view p) {
  if (p.empty() || p.size() > 128 || p.front() == '.' || p.back() == '.') return false;
  for (char ch : p) {
    if (ch == '/' || static_cast<unsigned char>(ch) <= ' ' || ch == 0x7f) return false;
  }
  return true;
}

std::vector<std::string> Words(std::string_view text) {
  std::istringstream in{std::string(text)};
  std::vector<std::string> words;
  std::string word;
  while (in >> word) words.push_back(word);
  return words;
}

// PREFIX ... or "*", into `everything` / `prefixes`.
bool ParsePrefixList(const std::vector<std::string>& words, size_t from, bool* everything,
                     std::vector<std::string>* prefixes, std::string* why) {
  *everything = false;
  prefixes->clear();
  for (size_t i = from; i < words.size(); ++i) {
    if (words[i] == "*") {
      *everything = true;
      continue;
    }
    if (!IsPrefixText(words[i])) {
      *why = "\"" + words[i] + "\" is not a prefix";
      return false;
    }
    prefixes->push_back(words[i]);
  }
  if (*everything && !prefixes->empty()) {
    *why = "\"*\" (everything) and prefixes together";
    return false;
  }
  if (!*everything && prefixes->empty()) {
    *why = "needs prefixes, or \"*\" for everything";
    return false;
  }
  return true;
}

}  // namespace

bool ParseReplicationPeer(std::string_view text, ReplicationPeer* out, std::string* why) {
  auto words = Words(text);
  ReplicationPeer peer;
  if (words.empty() || !IsNodeName(words[0])) {
    *why = "needs a node name (its certificate's) first: \"secondary-1 88.100\"";
    return false;
  }
  peer.name = words[0];
  if (!ParsePrefixList(words, 1, &peer.everything, &peer.prefixes, why)) return false;
  if (out != nullptr) *out = std::move(peer);
  return true;
}

bool ParseReplicationSource(std::string_view text, ReplicationSourceEntry* out, std::string* why) {
  auto words = Words(text);
  ReplicationSourceEntry source;
  if (words.size() < 3 || !IsNodeName(words[0])) {
    *why = "needs NAME HOST:PORT PREFIX...: \"top 192.0.2.1:2643 88.100 answer=mirror\"";
    return false;
  }
  source.name = words[0];
  if (!ParseHostNameOrAddressPort(words[1], &source.host, &source.port)) {
    *why = "\"" + words[1] + "\" is not HOST:PORT";
    return false;
  }
  if (words.back().starts_with("answer=")) {
    source.answer = words.back().substr(7);
    if (source.answer != "mirror" && source.answer != "refer" &&
        source.answer != "mirror_when_owner_down") {
      *why = "answer= must be mirror, refer or mirror_when_owner_down";
      return false;
    }
    words.pop_back();
  }
  if (!ParsePrefixList(words, 2, &source.everything, &source.prefixes, why)) return false;
  if (out != nullptr) *out = std::move(source);
  return true;
}

bool ParseSiteServer(std::string_view text, SiteServerEntry* out, std::string* why) {
  auto words = Words(text);
  SiteServerEntry entry;
  if (words.empty() || words.size() > 2 ||
      !ParseHostPort(words[0], &entry.address, &entry.handle_port) || entry.handle_port == 0) {
    *why = "needs ADDRESS:HANDLE_PORT [http=PORT]: \"192.0.2.1:2641 http=8000\"";
    return false;
  }
  if (words.size() == 2) {
    uint64_t port = 0;
    if (!words[1].starts_with("http=") || !ParseUnsigned(words[1].substr(5), &port) || port == 0 ||
        port > 65535) {
      *why = "\"" + words[1] + "\" is not http=PORT";
      return false;
    }
    entry.http_port = static_cast<uint16_t>(port);
  }
  if (out != nullptr) *out = std::move(entry);
  return true;
}

namespace {

void ValidateSite(const Config& c, Errors& errors) {
  YAML::Mark none = YAML::Mark::null_mark();
  const SiteConfig& site = c.site;
  if (site.servers.empty()) {
    if (site.this_server != 0) errors.Add(none, "site.this_server needs site.servers");
    return;
  }
  std::vector<std::pair<std::string, uint16_t>> seen;
  SiteServerEntry mine;
  for (size_t i = 0; i < site.servers.size(); ++i) {
    std::string why;
    SiteServerEntry entry;
    if (!ParseSiteServer(site.servers[i], &entry, &why)) {
      errors.Add(none, "site.servers: \"" + site.servers[i] + "\": " + why);
      continue;
    }
    {
      // Clients connect to these addresses: a wildcard or a multicast one would send them to
      // themselves or nowhere.
      std::array<uint8_t, 16> bytes{};
      int bits = 0;
      const bool v6 = entry.address.find(':') != std::string::npos;
      const bool parsed = ParseNetwork(entry.address + (v6 ? "/128" : "/32"), &bytes, &bits);
      const bool v4_mapped = bytes[10] == 0xff && bytes[11] == 0xff;
      const bool unspecified = std::all_of(bytes.begin() + (v4_mapped ? 12 : 0), bytes.end(),
                                           [](uint8_t b) { return b == 0; });
      const bool multicast = v4_mapped ? (bytes[12] & 0xf0) == 0xe0 : bytes[0] == 0xff;
      if (!parsed || unspecified || multicast) {
        errors.Add(none, "site.servers: " + site.servers[i] +
                             ": the address clients connect to (not a wildcard or multicast one)");
      }
    }
    if (std::find(seen.begin(), seen.end(), std::pair{entry.address, entry.handle_port}) !=
        seen.end()) {
      errors.Add(none, "site.servers: " + site.servers[i] + " is listed twice");
    }
    seen.emplace_back(entry.address, entry.handle_port);
    if (i == site.this_server) mine = entry;
  }
  if (site.servers.size() > 1024) errors.Add(none, "site.servers: at most 1024 servers");
  if (site.servers.size() > 1 && (!c.replication.listen.empty() || !c.replication.peers.empty())) {
    // A replica of one server would see only that server's writes, and a snapshot of a split
    // server lacks the others' identifiers. (Pulling is fine: each server of a mirror site asks
    // its source for its own share.)
    errors.Add(none,
               "a site of several servers (site.servers) does not serve replication yet: a "
               "replica of one server would hold that server's share only; its servers can "
               "replicate from a one-server source (replication.sources), each its share");
  }
  if (site.this_server >= site.servers.size()) {
    errors.Add(none, "site.this_server must be a position in site.servers (0 to " +
                         std::to_string(site.servers.size() - 1) + ")");
    return;
  }
  // Clients reach each server where the site record says: this one must listen there.
  if (mine.handle_port != 0 && c.handle.port != mine.handle_port) {
    errors.Add(none, "handle.port must be " + std::to_string(mine.handle_port) +
                         ", the port site.servers gives this server");
  }
  if (mine.http_port != 0 && c.http.enabled && c.http.port != mine.http_port) {
    errors.Add(none, "http.port must be " + std::to_string(mine.http_port) +
                         ", the port site.servers gives this server");
  }
}

void ValidateReplication(const Config& c, Errors& errors) {
  YAML::Mark none = YAML::Mark::null_mark();
  const ReplicationConfig& r = c.replication;
  std::vector<std::string> names;
  for (const auto& text : r.peers) {
    std::string why;
    ReplicationPeer peer;
    if (!ParseReplicationPeer(text, &peer, &why)) {
      errors.Add(none, "replication.peers: \"" + text + "\": " + why);
    } else if (std::find(names.begin(), names.end(), "peer " + peer.name) != names.end()) {
      errors.Add(none, "replication.peers: " + peer.name + " is listed twice");
    } else {
      names.push_back("peer " + peer.name);
    }
  }
  for (const auto& text : r.sources) {
    std::string why;
    ReplicationSourceEntry source;
    if (!ParseReplicationSource(text, &source, &why)) {
      errors.Add(none, "replication.sources: \"" + text + "\": " + why);
    } else if (std::find(names.begin(), names.end(), "source " + source.name) != names.end()) {
      errors.Add(none, "replication.sources: " + source.name + " is listed twice");
    } else {
      names.push_back("source " + source.name);
    }
  }
  std::string host;
  uint16_t port = 0;
  if (!r.listen.empty() && !ParseHostPort(r.listen, &host, &port, /*allow_port_zero=*/true)) {
    errors.Add(none, "replication.listen: \"" + r.listen + "\" is not ADDRESS:PORT");
  }
  if (!r.peers.empty() && r.listen.empty())
    errors.Add(none, "replication.peers needs replication.listen (where replicas connect)");
  const bool used = !r.listen.empty() || !r.sources.empty();
  if (used) {
    if (!IsNodeName(r.name))
      errors.Add(none, "replication.name must be this node's name (its certificate's)");
    if (r.certificate.empty() || r.private_key.empty() || r.ca.empty())
      errors.Add(none,
                 "replication needs replication.certificate, private_key and ca (mutual TLS)");
  }
}

void ValidateDns(const Config& c, Errors& errors) {
  YAML::Mark none = YAML::Mark::null_mark();
  const DnsConfig& d = c.dns;
  if (!IsDomainName(d.apex)) errors.Add(none, "dns.apex must be a domain name (oid-res.org.)");
  if (!IsDomainName(d.nameserver)) errors.Add(none, "dns.nameserver must be a domain name");
  bool prefix_ok = !d.oid_prefix.empty() && d.oid_prefix.size() <= 128;
  for (char ch : d.oid_prefix) prefix_ok = prefix_ok && ch > ' ' && ch != '/' && ch != 0x7f;
  if (!prefix_ok)
    errors.Add(none, "dns.oid_prefix must be a Handle prefix of 1-128 characters without '/'");
  bool service_ok = !d.naptr_service.empty() && d.naptr_service.size() <= 32;
  for (char ch : d.naptr_service) {
    service_ok = service_ok && ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                                (ch >= '0' && ch <= '9') || ch == '+' || ch == ':' || ch == '-');
  }
  if (!service_ok)
    errors.Add(none, "dns.naptr_service must be 1-32 letters, digits, '+', ':' or '-' (RINF)");
  for (const auto& text : d.delegations) {
    std::string why;
    if (!ParseDnsDelegation(text, nullptr, &why))
      errors.Add(none, "dns.delegations: \"" + text + "\": " + why);
  }
  if (d.enabled && (c.handle.udp || c.handle.tcp) && d.port != 0 && d.port == c.handle.port)
    errors.Add(none, "dns.port and handle.port must differ");
  if (d.enabled && d.tcp && c.http.enabled && d.port != 0 && d.port == c.http.port)
    errors.Add(none, "dns.port and http.port must differ");
}

}  // namespace

bool ParseNetwork(std::string_view text, std::array<uint8_t, 16>* address, int* prefix_bits) {
  std::string host(text.substr(0, text.find('/')));
  *address = {};
  bool v4 = false;
  if (in_addr a4{}; inet_pton(AF_INET, host.c_str(), &a4) == 1) {
    (*address)[10] = (*address)[11] = 0xff;
    std::memcpy(address->data() + 12, &a4, 4);
    v4 = true;
  } else if (in6_addr a6{}; inet_pton(AF_INET6, host.c_str(), &a6) == 1) {
    std::memcpy(address->data(), &a6, 16);
  } else {
    return false;
  }
  const int max_bits = v4 ? 32 : 128;
  int bits = max_bits;
  if (size_t slash = text.find('/'); slash != std::string_view::npos) {
    std::string_view length = text.substr(slash + 1);
    auto [end, ec] = std::from_chars(length.data(), length.data() + length.size(), bits);
    if (ec != std::errc() || end != length.data() + length.size() || length.empty() || bits < 0 ||
        bits > max_bits) {
      return false;
    }
  }
  *prefix_bits = v4 ? 96 + bits : bits;
  return true;
}

namespace {

void Validate(const Config& c, Errors& errors) {
  YAML::Mark none = YAML::Mark::null_mark();
  ValidateDns(c, errors);
  ValidateReplication(c, errors);
  ValidateSite(c, errors);
  for (const auto& [section, limit] :
       {std::pair{"handle", &c.handle.rate_limit}, std::pair{"dns", &c.dns.rate_limit}}) {
    for (const auto& network : limit->exempt) {
      std::array<uint8_t, 16> address{};
      int bits = 0;
      if (!ParseNetwork(network, &address, &bits)) {
        errors.Add(none, std::string(section) + ".rate_limit.exempt: \"" + network +
                             "\" is not a network (192.0.2.0/24, 2001:db8::/32)");
      }
    }
  }
  if (c.cache.shards == 0 || (c.cache.shards & (c.cache.shards - 1)) != 0) {
    errors.Add(none, "cache.shards must be a power of two");
  }
  if (c.cache.capacity_bytes < uint64_t{c.cache.shards} * 4096) {
    errors.Add(none, "cache.capacity_bytes must be at least 4096 bytes per cache shard");
  }
  if (c.http.tls_cert_file.empty() != c.http.tls_key_file.empty()) {
    errors.Add(none, "http.tls_cert_file and http.tls_key_file go together");
  }
  if (c.http.status_requires_admin && c.auth.server_admins.empty()) {
    errors.Add(none,
               "http.status_requires_admin needs auth.server_admins (nobody could open the "
               "dashboard)");
  }
  if (c.http.status_requires_admin && c.http.tls_cert_file.empty()) {
    errors.Add(none,
               "http.status_requires_admin needs http.tls_cert_file (credentials go over HTTPS "
               "only)");
  }
  if (c.http.enabled && c.handle.port != 0 && c.http.port == c.handle.port) {
    errors.Add(none, "http.port and handle.port must differ");
  }
  for (const auto& admin : c.auth.server_admins) {
    // "index:handle" with a positive index (the auth room parses it the same way).
    size_t colon = admin.find(':');
    uint64_t index = 0;
    if (colon == std::string::npos || colon + 1 >= admin.size() ||
        !ParseUnsigned(admin.substr(0, colon), &index) || index == 0 || index > 0x7fffffff) {
      errors.Add(none, "auth.server_admins: \"" + admin +
                           "\" is not an identity of the form index:handle (300:0.NA/PREFIX)");
    }
  }
  if (!c.handle.udp && !c.handle.tcp && !c.http.enabled) {
    errors.Add(none, "nothing to serve: handle.udp, handle.tcp and http.enabled are all false");
  }
}

// A section: its keys are read with Reader::Map (unknown ones are errors).
Field Section(Reader& r, Fields children) {
  Field f;
  f.children = std::move(children);
  auto shared = std::make_shared<Fields>(f.children);
  f.parse = [&r, shared](const YAML::Node& n, const std::string& path) { r.Map(n, path, *shared); };
  return f;
}

// Every key of the configuration, bound to `c`.
Fields Schema(Config& c, Reader& r) {
  // handle.rate_limit and dns.rate_limit.
  auto rate_limit = [&r](RateLimitConfig* rl) -> Field {
    return Section(r,
                   {{"datagrams_per_second", r.Unsigned(&rl->datagrams_per_second, 0, 100000000)},
                    {"burst", r.Unsigned(&rl->burst, 0, 100000000)},
                    {"slip", r.Unsigned(&rl->slip, 0, 100)},
                    {"exempt", r.Strings(&rl->exempt, true)}});
  };
  return {
      {"node", Section(r, {{"data_dir", r.String(&c.node.data_dir)},
                           {"shards", r.Unsigned(&c.node.shards, 1, 4096)},
                           {"home", r.Strings(&c.node.home, true)},
                           {"demo", r.Bool(&c.node.demo)},
                           {"site_serial", r.Unsigned(&c.node.site_serial, 0, 65534)},
                           {"site_description", r.String(&c.node.site_description, true)},
                           {"answer_mirrored", r.Bool(&c.node.answer_mirrored)}})},
      {"site", Section(r, {{"servers", r.Strings(&c.site.servers, true)},
                           {"this_server", r.Unsigned(&c.site.this_server, 0, 1023)}})},
      {"handle",
       Section(r, {{"bind", r.Strings(&c.handle.bind, false)},
                   {"port", r.Unsigned(&c.handle.port, 0, 65535)},
                   {"udp", r.Bool(&c.handle.udp)},
                   {"tcp", r.Bool(&c.handle.tcp)},
                   {"workers", r.Unsigned(&c.handle.workers, 0, 256)},
                   {"udp_batch", r.Unsigned(&c.handle.udp_batch, 1, 1024)},
                   {"udp_receive_buffer_bytes", r.Bytes(&c.handle.udp_receive_buffer_bytes, 65536)},
                   {"tcp_max_connections", r.Unsigned(&c.handle.tcp_max_connections, 1, 1000000)},
                   {"tcp_max_connections_per_source",
                    r.Unsigned(&c.handle.tcp_max_connections_per_source, 1, 1000000)},
                   {"tcp_idle_timeout_ms", r.Millis(&c.handle.tcp_idle_timeout, 100, 3600000)},
                   {"tcp_io_timeout_ms", r.Millis(&c.handle.tcp_io_timeout, 50, 600000)},
                   {"max_message_bytes", r.Unsigned(&c.handle.max_message_bytes, 1024, 262144)},
                   {"storage_threads", r.Unsigned(&c.handle.storage_threads, 1, 256)},
                   {"storage_queue", r.Unsigned(&c.handle.storage_queue, 1, 1000000)},
                   {"rate_limit", rate_limit(&c.handle.rate_limit)}})},
      {"http",
       Section(r, {{"enabled", r.Bool(&c.http.enabled)},
                   {"bind", r.Strings(&c.http.bind, false)},
                   {"port", r.Unsigned(&c.http.port, 0, 65535)},
                   {"threads", r.Unsigned(&c.http.threads, 1, 64)},
                   {"max_connections", r.Unsigned(&c.http.max_connections, 1, 1000000)},
                   {"max_connections_per_source",
                    r.Unsigned(&c.http.max_connections_per_source, 1, 1000000)},
                   {"max_header_bytes", r.Unsigned(&c.http.max_header_bytes, 1024, 1048576)},
                   {"max_body_bytes", r.Unsigned(&c.http.max_body_bytes, 0, 67108864)},
                   {"request_timeout_ms", r.Millis(&c.http.request_timeout, 100, 3600000)},
                   {"storage_threads", r.Unsigned(&c.http.storage_threads, 1, 256)},
                   {"storage_queue", r.Unsigned(&c.http.storage_queue, 1, 1000000)},
                   {"tls_cert_file", r.String(&c.http.tls_cert_file, true)},
                   {"tls_key_file", r.String(&c.http.tls_key_file, true)},
                   {"status_requires_admin", r.Bool(&c.http.status_requires_admin)}})},
      {"auth",
       Section(
           r,
           {{"server_admins", r.Strings(&c.auth.server_admins, true)},
            {"allow_prefix_admins", r.Bool(&c.auth.allow_prefix_admins)},
            {"challenge_timeout_ms", r.Millis(&c.auth.challenge_timeout, 1000, 3600000)},
            {"max_pending_challenges", r.Unsigned(&c.auth.max_pending_challenges, 1, 10000000)},
            {"max_pending_challenge_bytes", r.Bytes(&c.auth.max_pending_challenge_bytes, 1 << 20)},
            {"failed_proofs_per_minute", r.Unsigned(&c.auth.failed_proofs_per_minute, 0, 1000000)},
            {"failed_proofs_per_key_per_minute",
             r.Unsigned(&c.auth.failed_proofs_per_key_per_minute, 1, 100000000)},
            {"server_key_file", r.String(&c.auth.server_key_file, true)},
            {"max_sessions", r.Unsigned(&c.auth.max_sessions, 1, 100000)},
            {"max_sessions_per_source", r.Unsigned(&c.auth.max_sessions_per_source, 1, 100000)},
            {"max_session_seconds", r.Seconds(&c.auth.max_session_lifetime, 60, 7 * 86400)}})},
      {"storage", Section(r, {{"block_cache_bytes", r.Bytes(&c.storage.block_cache_bytes, 1 << 20)},
                              {"sync_writes", r.Bool(&c.storage.sync_writes)},
                              {"changelog_max_entries",
                               r.Unsigned(&c.storage.changelog_max_entries, 1, UINT64_MAX / 2)},
                              {"changelog_max_age_seconds",
                               r.Seconds(&c.storage.changelog_max_age, 1, 10ull * 365 * 24 * 3600)},
                              {"audit_max_age_seconds",
                               r.Seconds(&c.storage.audit_max_age, 3600, 100ull * 365 * 24 * 3600)},
                              {"changelog_trim_interval_ms",
                               r.Millis(&c.storage.changelog_trim_interval, 100, 86400000)}})},
      {"cache", Section(r, {{"capacity_bytes", r.Bytes(&c.cache.capacity_bytes, 1 << 16)},
                            {"shards", r.Unsigned(&c.cache.shards, 1, 65536)},
                            {"negative_ttl_ms", r.Millis(&c.cache.negative_ttl, 1, 3600000)}})},
      {"dns",
       Section(r, {{"enabled", r.Bool(&c.dns.enabled)},
                   {"bind", r.Strings(&c.dns.bind, false)},
                   {"port", r.Unsigned(&c.dns.port, 0, 65535)},
                   {"tcp", r.Bool(&c.dns.tcp)},
                   {"tcp_max_connections", r.Unsigned(&c.dns.tcp_max_connections, 1, 1000000)},
                   {"tcp_max_connections_per_source",
                    r.Unsigned(&c.dns.tcp_max_connections_per_source, 1, 1000000)},
                   {"tcp_idle_timeout_ms", r.Millis(&c.dns.tcp_idle_timeout, 100, 3600000)},
                   {"tcp_io_timeout_ms", r.Millis(&c.dns.tcp_io_timeout, 50, 600000)},
                   {"workers", r.Unsigned(&c.dns.workers, 0, 256)},
                   {"udp_batch", r.Unsigned(&c.dns.udp_batch, 1, 1024)},
                   {"udp_receive_buffer_bytes", r.Bytes(&c.dns.udp_receive_buffer_bytes, 65536)},
                   {"apex", r.String(&c.dns.apex)},
                   {"oid_prefix", r.String(&c.dns.oid_prefix)},
                   {"naptr_service", r.String(&c.dns.naptr_service)},
                   {"nameserver", r.String(&c.dns.nameserver)},
                   {"max_udp_payload", r.Unsigned(&c.dns.max_udp_payload, 512, 4096)},
                   {"default_ttl", r.Unsigned(&c.dns.default_ttl, 0, 2147483647)},
                   {"negative_ttl", r.Unsigned(&c.dns.negative_ttl, 0, 2147483647)},
                   {"empty_non_terminals", r.Bool(&c.dns.empty_non_terminals)},
                   {"storage_threads", r.Unsigned(&c.dns.storage_threads, 1, 256)},
                   {"storage_queue", r.Unsigned(&c.dns.storage_queue, 1, 1000000)},
                   {"rate_limit", rate_limit(&c.dns.rate_limit)},
                   {"delegations", r.Strings(&c.dns.delegations, true)}})},
      {"replication",
       Section(r,
               {{"name", r.String(&c.replication.name, true)},
                {"listen", r.String(&c.replication.listen, true)},
                {"certificate", r.String(&c.replication.certificate, true)},
                {"private_key", r.String(&c.replication.private_key, true)},
                {"ca", r.String(&c.replication.ca, true)},
                {"peers", r.Strings(&c.replication.peers, true)},
                {"sources", r.Strings(&c.replication.sources, true)},
                {"window_bytes", r.Bytes(&c.replication.window_bytes, 1 << 20)},
                {"send_timeout_ms", r.Millis(&c.replication.send_timeout, 100, 600000)},
                {"ack_timeout_ms", r.Millis(&c.replication.ack_timeout, 100, 3600000)},
                {"heartbeat_ms", r.Millis(&c.replication.heartbeat, 10, 60000)},
                {"max_lag_entries", r.Unsigned(&c.replication.max_lag_entries, 1, UINT64_MAX / 2)},
                {"max_connections", r.Unsigned(&c.replication.max_connections, 1, 100000)}})},
      {"log", Section(r, {{"level", r.OneOf(&c.log.level, {"trace", "debug", "info", "warn",
                                                           "error", "off"})}})}};
}

void Read(const YAML::Node& root, Config& c, Errors& errors) {
  Reader r(errors);
  r.Map(root, "", Schema(c, r));
}

void Describe(const Fields& fields, const std::string& path,
              std::vector<std::pair<std::string, std::string>>& out) {
  for (const auto& [name, field] : fields) {
    std::string full = path.empty() ? name : path + "." + name;
    if (field.print) {
      out.emplace_back(full, field.print());
    } else {
      Describe(field.children, full, out);
    }
  }
}

}  // namespace

Config Parse(const std::string& yaml, const std::string& name) {
  Config c;
  c.source = name;
  Errors errors(name);
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    errors.Add(e.mark, e.msg);
    errors.Throw();
  }
  if (!root.IsNull()) Read(root, c, errors);
  Validate(c, errors);
  errors.Throw();
  return c;
}

std::vector<std::pair<std::string, std::string>> Describe(const Config& config) {
  Config copy = config;  // the schema binds to a mutable config; printing only reads it
  Errors errors("(describe)");
  Reader r(errors);
  std::vector<std::pair<std::string, std::string>> out;
  Describe(Schema(copy, r), "", out);
  return out;
}

Config LoadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError(path + ": cannot read the file");
  std::stringstream text;
  text << in.rdbuf();
  return Parse(text.str(), path);
}

std::string Usage() {
  return R"(usage: idnode [options]

  --config FILE        read settings from FILE (YAML; see config/idnode.yaml for every key)
  --data-dir DIR       where the registry lives (node.data_dir, default ./idnode-data)
  --bind ADDR          address for the Handle, HTTP and DNS listeners (repeatable; default 127.0.0.1)
  --handle-port N      Handle protocol port, UDP and TCP (default 2641; 0 picks a free port)
  --http-port N        HTTP JSON API port (default 8000; 0 picks a free port)
  --dns-port N         DNS (ORS) port, UDP and TCP (default 5353; 0 picks a free port)
  --home PREFIX        a prefix this node is authoritative for (repeatable)
  --workers N          network worker threads (default: one per core)
  --no-demo            do not create the DEMO.1 prefix and identifiers
  --help, --version
)";
}

CommandLine ParseCommandLine(int argc, const char* const* argv) {
  CommandLine cl;
  std::vector<std::string> args(argv + 1, argv + argc);
  // The file first, so that every flag overrides it whatever the order.
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--config") {
      if (i + 1 >= args.size()) throw ConfigError("--config needs a file");
      cl.config_file = args[i + 1];
    }
  }
  cl.config = cl.config_file.empty() ? Parse("", "(embedded defaults)") : LoadFile(cl.config_file);
  Config& c = cl.config;
  std::vector<std::string> binds, homes;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> const std::string& {
      if (i + 1 >= args.size()) throw ConfigError(a + " needs a value");
      return args[++i];
    };
    auto port = [&]() -> uint16_t {
      uint64_t v = 0;
      const std::string& text = value();
      if (!ParseUnsigned(text, &v) || v > 65535)
        throw ConfigError(a + ": \"" + text + "\" is not a port number");
      return static_cast<uint16_t>(v);
    };
    if (a == "--help" || a == "-h") {
      cl.help = true;
    } else if (a == "--version") {
      cl.version = true;
    } else if (a == "--config") {
      ++i;
    } else if (a == "--data-dir") {
      c.node.data_dir = value();
    } else if (a == "--bind") {
      binds.push_back(value());
    } else if (a == "--handle-port") {
      c.handle.port = port();
    } else if (a == "--http-port") {
      c.http.port = port();
    } else if (a == "--dns-port") {
      c.dns.port = port();
    } else if (a == "--home") {
      homes.push_back(value());
    } else if (a == "--workers") {
      uint64_t v = 0;
      if (!ParseUnsigned(value(), &v) || v > 256) throw ConfigError("--workers must be 0..256");
      c.handle.workers = static_cast<uint32_t>(v);
    } else if (a == "--no-demo") {
      c.node.demo = false;
    } else {
      throw ConfigError("unknown option " + a + "\n" + Usage());
    }
  }
  if (!binds.empty()) c.handle.bind = c.http.bind = c.dns.bind = binds;
  if (!homes.empty()) c.node.home = homes;
  if (c.handle.workers == 0) c.handle.workers = std::max(1u, std::thread::hardware_concurrency());
  Errors errors("command line");
  Validate(c, errors);
  errors.Throw();
  return cl;
}

}  // namespace idnode::config
