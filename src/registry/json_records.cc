#include "idnode/registry/json_records.h"

#include <algorithm>
#include <array>
#include <boost/json.hpp>
#include <boost/json/src.hpp>  // Boost.JSON header-only: compiled in this one translation unit
#include <ctime>
#include <memory>

#include "idnode/common/hex.h"
#include "idnode/protocol/utf8.h"
#include "idnode/protocol/value_types.h"

namespace idnode::registry {

namespace json = boost::json;

namespace {

constexpr std::string_view kBase64 =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string Base64Encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t n =
        uint32_t(uint8_t(in[i])) << 16 | uint32_t(uint8_t(in[i + 1])) << 8 | uint8_t(in[i + 2]);
    out += kBase64[n >> 18];
    out += kBase64[(n >> 12) & 63];
    out += kBase64[(n >> 6) & 63];
    out += kBase64[n & 63];
  }
  if (i < in.size()) {
    uint32_t n = uint32_t(uint8_t(in[i])) << 16;
    if (i + 1 < in.size()) n |= uint32_t(uint8_t(in[i + 1])) << 8;
    out += kBase64[n >> 18];
    out += kBase64[(n >> 12) & 63];
    out += i + 1 < in.size() ? kBase64[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

bool Base64Decode(std::string_view in, std::string* out) {
  out->clear();
  uint32_t buffer = 0;
  int bits = 0;
  size_t padding = 0;
  for (char c : in) {
    if (c == '=') {
      ++padding;
      continue;
    }
    if (padding > 0) return false;  // data after padding
    size_t v = kBase64.find(c);
    if (c == '-') v = 62;  // the URL-safe alphabet too
    if (c == '_') v = 63;
    if (v == std::string_view::npos) return false;
    buffer = buffer << 6 | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->push_back(static_cast<char>((buffer >> bits) & 0xff));
    }
  }
  return padding <= 2;
}

bool IsPlainText(std::string_view s) {
  if (!protocol::IsValidUtf8(s)) return false;
  for (unsigned char c : s) {
    if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') return false;
  }
  return true;
}

std::string PermissionString(uint32_t p) {
  std::string out(4, '0');
  for (int bit = 0; bit < 4; ++bit) {
    if (p & (1u << bit)) out[3 - bit] = '1';
  }
  return out;
}

bool ParseBits(std::string_view s, size_t width, uint32_t* out) {
  if (s.size() != width) return false;
  *out = 0;
  for (char c : s) {
    if (c != '0' && c != '1') return false;
    *out = *out << 1 | static_cast<uint32_t>(c == '1');
  }
  return true;
}

bool GetInt32(const json::value& v, int32_t* out) {
  if (v.is_int64() && v.as_int64() >= INT32_MIN && v.as_int64() <= INT32_MAX) {
    *out = static_cast<int32_t>(v.as_int64());
    return true;
  }
  if (v.is_uint64() && v.as_uint64() <= INT32_MAX) {
    *out = static_cast<int32_t>(v.as_uint64());
    return true;
  }
  return false;
}

// The bytes of a value's "data" object, into `out` (reused: assigning keeps its capacity).
Result<Unit, std::string> DataFromJson(const json::value& data, std::string_view type,
                                       std::string* out_bytes) {
  if (data.is_string()) {
    // The JSON API's shorthand ("data":"https://..."): string data.
    out_bytes->assign(data.as_string().data(), data.as_string().size());
    return Unit{};
  }
  if (!data.is_object()) return Failure{std::string("data must be an object or a string")};
  const auto& obj = data.as_object();
  const auto* format = obj.if_contains("format");
  const auto* value = obj.if_contains("value");
  if (format == nullptr || !format->is_string() || value == nullptr) {
    return Failure{std::string("data needs a string \"format\" and a \"value\"")};
  }
  std::string_view f = format->as_string();
  std::string& out = *out_bytes;
  out.clear();
  if (f == "string") {
    if (!value->is_string()) return Failure{std::string("string data must be a JSON string")};
    out.assign(value->as_string().data(), value->as_string().size());
    return Unit{};
  }
  if (f == "base64") {
    if (!value->is_string() || !Base64Decode(value->as_string(), &out))
      return Failure{std::string("bad base64 data")};
    return Unit{};
  }
  if (f == "hex") {
    std::optional<std::vector<uint8_t>> bytes;
    if (value->is_string()) bytes = FromHex(std::string_view(value->as_string()));
    if (bytes) out.assign(bytes->begin(), bytes->end());
    if (!bytes) return Failure{std::string("bad hex data")};
    return Unit{};
  }
  if (f == "admin") {
    const auto* v = value->if_object();
    const json::value* handle = v ? v->if_contains("handle") : nullptr;
    const json::value* index = v ? v->if_contains("index") : nullptr;
    const json::value* perms = v ? v->if_contains("permissions") : nullptr;
    protocol::AdminRecord admin;
    uint32_t bits = 0;
    if (!handle || !handle->is_string() || !index || !GetInt32(*index, &admin.admin_index) ||
        !perms || !perms->is_string() || !ParseBits(perms->as_string(), 12, &bits)) {
      return Failure{
          std::string("admin data needs handle, index and a 12-character permissions string")};
    }
    std::string admin_handle(handle->as_string());
    admin.admin_handle = admin_handle;
    admin.permissions = static_cast<uint16_t>(bits);
    auto bytes = protocol::EncodeAdminRecord(admin);
    out.assign(bytes.begin(), bytes.end());
    return Unit{};
  }
  if (f == "vlist") {
    const auto* list = value->if_array();
    if (list == nullptr) return Failure{std::string("vlist data must be an array")};
    std::vector<std::string> handles;
    std::vector<protocol::ValueReference> refs;
    handles.reserve(list->size());
    for (const auto& item : *list) {
      const auto* o = item.if_object();
      const json::value* handle = o ? o->if_contains("handle") : nullptr;
      const json::value* index = o ? o->if_contains("index") : nullptr;
      int32_t i = 0;
      if (!handle || !handle->is_string() || !index || !GetInt32(*index, &i)) {
        return Failure{std::string("vlist entries need handle and index")};
      }
      handles.emplace_back(handle->as_string());
      refs.push_back({handles.back(), i});
    }
    for (size_t i = 0; i < refs.size(); ++i) refs[i].handle = handles[i];
    auto bytes = protocol::EncodeValueList(refs);
    out.assign(bytes.begin(), bytes.end());
    return Unit{};
  }
  (void)type;
  return Failure{"data format \"" + std::string(f) + "\" is not supported here (use base64)"};
}

json::value SiteValue(const protocol::SiteInfo& site);
json::value KeyValue(std::span<const uint8_t> key_bytes);

json::value DataToJson(const proto::Value& v, bool api_formats) {
  const std::string& data = v.data();
  std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(data.data()), data.size());
  if (v.type() == protocol::kTypeAdmin) {
    auto admin = protocol::DecodeAdminRecord(bytes);
    if (admin.ok() &&
        protocol::EncodeAdminRecord(*admin) == std::vector<uint8_t>(bytes.begin(), bytes.end())) {
      return {{"format", "admin"},
              {"value",
               {{"handle", admin->admin_handle},
                {"index", admin->admin_index},
                {"permissions", protocol::AdminPermissionString(admin->permissions)}}}};
    }
  } else if (v.type() == protocol::kTypeValueList) {
    auto list = protocol::DecodeValueList(bytes);
    if (list.ok() &&
        protocol::EncodeValueList(*list) == std::vector<uint8_t>(bytes.begin(), bytes.end())) {
      json::array items;
      for (const auto& ref : *list) items.push_back({{"handle", ref.handle}, {"index", ref.index}});
      return {{"format", "vlist"}, {"value", std::move(items)}};
    }
  } else if (api_formats && (v.type() == protocol::kTypeSite || v.type() == protocol::kTypeSite6 ||
                             v.type() == protocol::kTypeSitePrefix)) {
    auto site = protocol::DecodeSiteInfo(bytes);
    if (site.ok()) return {{"format", "site"}, {"value", SiteValue(*site)}};
  } else if (api_formats && v.type() == protocol::kTypePublicKey) {
    json::value key = KeyValue(bytes);
    if (!key.is_null()) return {{"format", "key"}, {"value", std::move(key)}};
  } else if (v.type() != protocol::kTypeSite && v.type() != protocol::kTypePublicKey &&
             IsPlainText(data)) {
    return {{"format", "string"}, {"value", data}};
  }
  return {{"format", "base64"}, {"value", Base64Encode(data)}};
}

}  // namespace

std::string FormatIsoTime(uint32_t seconds) {
  std::time_t t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof(buffer), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buffer;
}

bool ParseIsoTime(std::string_view text, uint32_t* seconds) {
  std::tm tm{};
  std::string s(text);
  const char* end = strptime(s.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (end == nullptr) return false;
  std::string_view rest(end);
  if (!rest.empty() && rest.front() == '.') {  // fractional seconds: dropped
    size_t digits = rest.find_first_not_of("0123456789", 1);
    rest = digits == std::string_view::npos ? std::string_view{} : rest.substr(digits);
  }
  if (rest != "Z" && rest != "+00:00") return false;
  std::time_t t = timegm(&tm);
  if (t < 0 || t > static_cast<std::time_t>(UINT32_MAX)) return false;
  *seconds = static_cast<uint32_t>(t);
  return true;
}

struct JsonLineParser::Impl {
  Impl() : parser(json::storage_ptr(), Options()) {}
  static json::parse_options Options() {
    json::parse_options options;
    options.max_depth = 16;  // records are shallow; deep nesting is an attack, not data
    return options;
  }
  // The parsed document lives in `arena` until the next line: no malloc per JSON node.
  std::array<unsigned char, 64 * 1024> first_block;
  json::monotonic_resource arena{first_block.data(), first_block.size()};
  json::parser parser;
};

JsonLineParser::JsonLineParser() : impl_(std::make_unique<Impl>()) {}
JsonLineParser::~JsonLineParser() = default;

Result<Unit, std::string> JsonLineParser::Parse(std::string_view line, uint32_t now,
                                                proto::Record* record) {
  Impl& p = *impl_;
  p.parser.reset(json::storage_ptr());  // the last document lets go of the arena first
  p.arena.release();
  p.parser.reset(json::storage_ptr(&p.arena));
  boost::system::error_code ec;
  p.parser.write(line.data(), line.size(), ec);  // the whole document: write() also finishes it
  if (ec) return Failure{"not JSON: " + ec.message()};
  const json::value doc = p.parser.release();
  const auto* obj = doc.if_object();
  if (obj == nullptr) return Failure{std::string("a line must be a JSON object")};
  const auto* handle = obj->if_contains("handle");
  const auto* values = obj->if_contains("values");
  if (handle == nullptr || !handle->is_string() || handle->as_string().empty()) {
    return Failure{std::string("missing \"handle\"")};
  }
  if (values == nullptr || !values->is_array())
    return Failure{std::string("missing \"values\" array")};
  record->Clear();  // keeps the value objects and their strings' capacity for the next line
  record->set_handle(handle->as_string().data(), handle->as_string().size());
  record->set_version(1);
  for (const auto& item : values->as_array()) {
    const auto* v = item.if_object();
    if (v == nullptr) return Failure{std::string("a value must be an object")};
    proto::Value& value = *record->add_values();
    int32_t index = 0;
    const auto* index_field = v->if_contains("index");
    if (index_field == nullptr || !GetInt32(*index_field, &index))
      return Failure{std::string("value without an integer index")};
    value.set_index(index);
    const auto* type = v->if_contains("type");
    if (type == nullptr || !type->is_string())
      return Failure{"value " + std::to_string(index) + " has no type"};
    value.set_type(type->as_string().data(), type->as_string().size());
    const auto* data = v->if_contains("data");
    if (data == nullptr) return Failure{"value " + std::to_string(index) + " has no data"};
    auto bytes = DataFromJson(*data, value.type(), value.mutable_data());
    if (!bytes.ok()) return Failure{"value " + std::to_string(index) + ": " + bytes.error()};
    value.set_ttl(86400);
    if (const auto* ttl = v->if_contains("ttl")) {
      int32_t seconds = 0;
      uint32_t when = 0;
      if (GetInt32(*ttl, &seconds)) {
        value.set_ttl(seconds);
      } else if (ttl->is_string() && ParseIsoTime(ttl->as_string(), &when)) {
        value.set_ttl(static_cast<int32_t>(when));
        value.set_ttl_absolute(true);
      } else {
        return Failure{"value " + std::to_string(index) + ": ttl must be seconds or an ISO date"};
      }
    }
    value.set_timestamp(now);
    if (const auto* ts = v->if_contains("timestamp")) {
      uint32_t when = 0;
      if (!ts->is_string() || !ParseIsoTime(ts->as_string(), &when)) {
        return Failure{"value " + std::to_string(index) +
                       ": timestamp must be an ISO-8601 UTC time"};
      }
      value.set_timestamp(when);
    }
    value.set_permissions(0x0e);
    if (const auto* perms = v->if_contains("permissions")) {
      uint32_t bits = 0;
      if (!perms->is_string() || !ParseBits(perms->as_string(), 4, &bits)) {
        return Failure{"value " + std::to_string(index) +
                       ": permissions must be 4 characters of 0/1"};
      }
      value.set_permissions(bits);
    }
    if (const auto* refs = v->if_contains("references")) {
      if (!refs->is_array()) return Failure{std::string("references must be an array")};
      for (const auto& r : refs->as_array()) {
        const auto* ro = r.if_object();
        const json::value* rh = ro ? ro->if_contains("handle") : nullptr;
        const json::value* ri = ro ? ro->if_contains("index") : nullptr;
        int32_t ref_index = 0;
        if (!rh || !rh->is_string() || !ri || !GetInt32(*ri, &ref_index)) {
          return Failure{std::string("references need handle and index")};
        }
        auto* ref = value.add_references();
        ref->set_handle(rh->as_string().data(), rh->as_string().size());
        ref->set_index(ref_index);
      }
    }
  }
  return Unit{};
}

Result<proto::Record, std::string> RecordFromJson(std::string_view line, uint32_t now) {
  JsonLineParser parser;
  proto::Record record;
  auto parsed = parser.Parse(line, now, &record);
  if (!parsed.ok()) return Failure{parsed.error()};
  return record;
}

namespace {

std::string Base64Url(std::span<const uint8_t> in) {
  while (!in.empty() && in.front() == 0) in = in.subspan(1);  // an unsigned magnitude
  std::string b64 =
      Base64Encode(std::string_view(reinterpret_cast<const char*>(in.data()), in.size()));
  while (!b64.empty() && b64.back() == '=') b64.pop_back();
  for (char& c : b64) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  return b64;
}

json::value KeyValue(std::span<const uint8_t> key_bytes) {
  auto key = protocol::DecodePublicKey(key_bytes);
  if (!key.ok()) return nullptr;
  if (const auto* rsa = std::get_if<protocol::RsaPublicKey>(&key->key)) {
    return {{"kty", "RSA"}, {"n", Base64Url(rsa->modulus)}, {"e", Base64Url(rsa->exponent)}};
  }
  if (const auto* dsa = std::get_if<protocol::DsaPublicKey>(&key->key)) {
    return {{"kty", "DSA"},
            {"q", Base64Url(dsa->q)},
            {"p", Base64Url(dsa->p)},
            {"g", Base64Url(dsa->g)},
            {"y", Base64Url(dsa->y)}};
  }
  return nullptr;
}

std::string AddressText(const std::array<uint8_t, 16>& a) {
  bool v4 = std::all_of(a.begin(), a.begin() + 12, [](uint8_t b) { return b == 0; });
  char text[64];
  if (v4) {
    std::snprintf(text, sizeof(text), "%u.%u.%u.%u", a[12], a[13], a[14], a[15]);
    return text;
  }
  std::string out;
  for (size_t i = 0; i < 16; i += 2) {
    std::snprintf(text, sizeof(text), "%x", a[i] << 8 | a[i + 1]);
    if (i != 0) out.push_back(':');
    out.append(text);
  }
  return out;
}

json::value SiteValue(const protocol::SiteInfo& site) {
  json::object o;
  o["version"] = site.data_format_version;
  o["protocolVersion"] =
      std::to_string(site.protocol_major) + "." + std::to_string(site.protocol_minor);
  o["serialNumber"] = site.serial_number;
  o["primarySite"] = site.is_primary();
  o["multiPrimary"] = site.is_multi_primary();
  if (site.servers.size() > 1) {  // the hash only matters with several servers
    static constexpr const char* kHash[] = {"byPrefix", "bySuffix", "byFull"};
    o["hashOption"] = kHash[site.hash_option % 3];
    o["hashFilter"] = std::string(reinterpret_cast<const char*>(site.hash_filter.data()),
                                  site.hash_filter.size());
  }
  json::array attributes;
  for (const auto& a : site.attributes)
    attributes.push_back({{"name", a.name}, {"value", a.value}});
  o["attributes"] = std::move(attributes);
  json::array servers;
  for (const auto& s : site.servers) {
    json::object server;
    server["serverId"] = s.server_id;
    server["address"] = AddressText(s.address);
    if (!s.public_key.empty()) {
      json::value key = KeyValue(s.public_key);
      if (!key.is_null()) server["publicKey"] = {{"format", "key"}, {"value", std::move(key)}};
    }
    static constexpr const char* kProtocols[] = {"UDP", "TCP", "HTTP", "HTTPS"};
    json::array interfaces;
    for (const auto& i : s.interfaces) {
      interfaces.push_back({{"query", (i.type & protocol::interface_type::kQuery) != 0},
                            {"admin", (i.type & protocol::interface_type::kAdmin) != 0},
                            {"protocol", kProtocols[i.protocol % 4]},
                            {"port", i.port}});
    }
    server["interfaces"] = std::move(interfaces);
    servers.push_back(std::move(server));
  }
  o["servers"] = std::move(servers);
  return o;
}

json::array ValuesArray(const google::protobuf::RepeatedPtrField<proto::Value>& record_values,
                        bool api_formats) {
  json::array values;
  for (const auto& v : record_values) {
    json::object o;
    o["index"] = v.index();
    o["type"] = v.type();
    o["data"] = DataToJson(v, api_formats);
    if (v.ttl_absolute()) {
      o["ttl"] = FormatIsoTime(static_cast<uint32_t>(v.ttl()));
    } else {
      o["ttl"] = v.ttl();
    }
    o["timestamp"] = FormatIsoTime(v.timestamp());
    if (v.permissions() != 0x0e) o["permissions"] = PermissionString(v.permissions());
    if (v.references_size() > 0) {
      json::array refs;
      for (const auto& r : v.references())
        refs.push_back({{"handle", r.handle()}, {"index", r.index()}});
      o["references"] = std::move(refs);
    }
    values.push_back(std::move(o));
  }
  return values;
}

void Pretty(std::string& out, const json::value& v, int indent) {
  auto pad = [&out](int n) { out.append(static_cast<size_t>(n) * 2, ' '); };
  if (v.is_object()) {
    const auto& o = v.as_object();
    if (o.empty()) {
      out += "{}";
      return;
    }
    out += "{\n";
    size_t i = 0;
    for (const auto& [key, value] : o) {
      pad(indent + 1);
      out += json::serialize(json::string(key)) + ": ";
      Pretty(out, value, indent + 1);
      out += ++i < o.size() ? ",\n" : "\n";
    }
    pad(indent);
    out += "}";
  } else if (v.is_array()) {
    const auto& a = v.as_array();
    if (a.empty()) {
      out += "[]";
      return;
    }
    out += "[\n";
    for (size_t i = 0; i < a.size(); ++i) {
      pad(indent + 1);
      Pretty(out, a[i], indent + 1);
      out += i + 1 < a.size() ? ",\n" : "\n";
    }
    pad(indent);
    out += "]";
  } else {
    out += json::serialize(v);
  }
}

}  // namespace

std::string ValuesToJson(const google::protobuf::RepeatedPtrField<proto::Value>& values,
                         bool api_formats) {
  return json::serialize(ValuesArray(values, api_formats));
}

std::string SiteToJson(std::span<const uint8_t> site_data) {
  auto site = protocol::DecodeSiteInfo(site_data);
  if (!site.ok()) return {};
  return json::serialize(SiteValue(*site));
}

std::string PrettyJson(std::string_view compact) {
  boost::system::error_code ec;
  json::value v = json::parse(json::string_view(compact.data(), compact.size()), ec);
  if (ec) return std::string(compact);
  std::string out;
  Pretty(out, v, 0);
  return out;
}

std::string RecordToJson(const proto::Record& record) {
  json::object out;
  out["handle"] = record.handle();
  out["values"] = ValuesArray(record.values(), false);
  return json::serialize(out);
}

}  // namespace idnode::registry
