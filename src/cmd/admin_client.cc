#include "admin_client.h"

#include <chrono>
#include <fstream>
#include <iostream>
#include <iterator>
#include <random>

#include "idnode/auth/credentials.h"
#include "idnode/protocol/constants.h"
#include "idnode/protocol/message.h"
#include "idnode/protocol/value_types.h"
#include "resolve_client.h"

namespace idnode::cmd {

namespace {

using namespace idnode::protocol;

constexpr int kTimeoutMs = 5000;

std::span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::vector<uint8_t> Encode(const Message& m) {
  std::vector<uint8_t> out(EncodedMessageSize(m));
  auto n = EncodeMessage(m, out);
  if (!n.ok()) return {};
  out.resize(*n);
  return out;
}

uint32_t ExpiresIn12Hours() {
  return static_cast<uint32_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count() +
                               12 * 3600);
}

// "INDEX:TYPE:DATA" -> a value; its data is kept in `storage` (which must outlive the value).
// HS_ADMIN data is "INDEX:HANDLE" (all permissions); HS_SECKEY values are never public.
bool ParseValue(const std::string& text, std::string& storage, HandleValue* value) {
  size_t first = text.find(':');
  size_t second = first == std::string::npos ? first : text.find(':', first + 1);
  if (second == std::string::npos) return false;
  char* end = nullptr;
  long index = std::strtol(text.c_str(), &end, 10);
  if (end != text.c_str() + first || index <= 0 || index > INT32_MAX) return false;
  value->index = static_cast<int32_t>(index);
  value->type = std::string_view(text).substr(first + 1, second - first - 1);
  if (value->type.empty()) return false;
  storage = text.substr(second + 1);
  if (value->type == kTypeAdmin) {
    auto identity = auth::Identity::Parse(storage);
    if (!identity) return false;
    AdminRecord admin;
    admin.admin_handle = identity->handle;
    admin.admin_index = identity->index;
    auto encoded = EncodeAdminRecord(admin);
    storage.assign(encoded.begin(), encoded.end());
  }
  if (value->type == kTypePublicKey && !storage.empty() && storage[0] == '@') {
    // "INDEX:HS_PUBKEY:@FILE": the public half of the private key in FILE (any form --key reads).
    std::ifstream in(storage.substr(1), std::ios::binary);
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                               std::istreambuf_iterator<char>());
    auto pem = auth::PrivateKeyPem(bytes, {});
    if (!in.good() && !in.eof()) return false;
    if (!pem.ok()) return false;
    auto encoded = auth::PublicKeyValueFor(*pem);
    if (encoded.empty()) return false;
    storage.assign(encoded.begin(), encoded.end());
  }
  if (value->type == kTypeSecretKey)
    value->permissions = permission::kAdminRead | permission::kAdminWrite;
  value->data = Bytes(storage);
  return true;
}

}  // namespace

int Administer(const AdminOptions& o) {
  static const std::pair<const char*, OpCode> kOps[] = {
      {"create", OpCode::kCreateHandle}, {"add", OpCode::kAddValue},
      {"modify", OpCode::kModifyValue},  {"remove", OpCode::kRemoveValue},
      {"delete", OpCode::kDeleteHandle}, {"home", OpCode::kHomeNa},
      {"unhome", OpCode::kUnhomeNa},     {"takeover", OpCode::kTakeoverNa}};
  OpCode opcode = OpCode::kReserved;
  for (const auto& [name, code] : kOps) {
    if (o.operation == name) opcode = code;
  }
  if (opcode == OpCode::kReserved || o.handle.empty() || o.identity_handle.empty() ||
      o.identity_index <= 0 || (o.secret.empty() && o.private_key_pem.empty())) {
    std::cerr << "idctl admin: an operation, a handle, --identity and --secret-file or --key are "
                 "needed\n";
    return 2;
  }
  std::vector<std::string> storage(o.values.size());
  std::vector<HandleValue> values(o.values.size());
  for (size_t i = 0; i < o.values.size(); ++i) {
    if (!ParseValue(o.values[i], storage[i], &values[i])) {
      std::cerr << "idctl admin: a value is INDEX:TYPE:DATA (HS_ADMIN data: INDEX:HANDLE), not \""
                << o.values[i] << "\"\n";
      return 2;
    }
  }
  std::vector<uint8_t> index_bytes;
  for (int32_t index : o.indexes) {
    for (int shift = 24; shift >= 0; shift -= 8)
      index_bytes.push_back(static_cast<uint8_t>(static_cast<uint32_t>(index) >> shift));
  }
  std::mt19937 rng(std::random_device{}());
  Message request;
  request.envelope.request_id = rng() & 0x7fffffff;
  request.header.opcode = static_cast<uint32_t>(opcode);
  request.header.op_flags =
      opflag::kRecursive | opflag::kCacheCertify | (o.overwrite ? opflag::kOverwrite : 0);
  request.header.site_info_serial = 0xffff;
  request.header.expiration_time = ExpiresIn12Hours();
  switch (opcode) {
    case OpCode::kDeleteHandle:
    case OpCode::kHomeNa:
    case OpCode::kUnhomeNa:
    case OpCode::kTakeoverNa:
      request.body = HandleBody{o.handle};
      break;
    case OpCode::kRemoveValue:
      request.body = RemoveValuesRequest{
          o.handle, WireIntList(index_bytes, static_cast<uint32_t>(o.indexes.size()))};
      break;
    default:
      request.body = HandleValuesBody{o.handle, values};
      break;
  }

  // On a site of several servers, the server the site's hash picks (as resolutions are routed).
  std::string host = o.host;
  uint16_t port = o.port;
  if (auto routed = AdminServerFor(o.handle, o.host, o.port)) {
    if (routed->host != host || routed->port != port) {
      std::cerr << "idctl admin: " << o.handle << " is served by " << routed->host << ":"
                << routed->port << " of its site\n";
    }
    host = routed->host;
    port = routed->port;
  }
  HandleTcpConnection connection;
  if (!connection.Connect(host, port, kTimeoutMs) || !connection.Send(Encode(request))) {
    std::cerr << "idctl admin: cannot reach " << host << ":" << port << "\n";
    return 1;
  }
  std::vector<uint8_t> reply = connection.Receive();
  auto decoded = DecodeMessage(reply);
  if (decoded.ok() &&
      decoded->header.response_code == static_cast<uint32_t>(ResponseCode::kAuthenticationNeeded)) {
    const auto* challenge = std::get_if<ChallengeBody>(&decoded->body);
    if (challenge == nullptr || !decoded->request_digest) {
      std::cerr << "idctl admin: a challenge without nonce or digest\n";
      return 1;
    }
    const bool public_key = !o.private_key_pem.empty();
    std::vector<uint8_t> proof =
        public_key ? auth::PublicKeyAnswer(o.private_key_pem, challenge->nonce,
                                           decoded->request_digest->digest, o.identity_handle)
                   : auth::SecretKeyAnswer(auth::mac_code::kHmacSha256, Bytes(o.secret),
                                           challenge->nonce, decoded->request_digest->digest);
    if (proof.empty()) {
      std::cerr << "idctl admin: the key cannot sign (an RSA or DSA private key is needed)\n";
      return 1;
    }
    Message answer;
    answer.envelope.session_id = decoded->envelope.session_id;
    answer.envelope.request_id = rng() & 0x7fffffff;
    answer.header.opcode = static_cast<uint32_t>(OpCode::kResponseToChallenge);
    answer.header.op_flags = opflag::kRecursive | opflag::kCacheCertify;
    answer.header.site_info_serial = 0xffff;
    answer.header.expiration_time = ExpiresIn12Hours();
    answer.body = ChallengeAnswer{public_key ? auth::kAuthTypePublicKey : auth::kAuthTypeSecretKey,
                                  o.identity_handle, o.identity_index, proof};
    if (!connection.Send(Encode(answer))) {
      std::cerr << "idctl admin: the connection closed before the challenge was answered\n";
      return 1;
    }
    reply = connection.Receive();
    decoded = DecodeMessage(reply);
  }
  if (!decoded.ok()) {
    std::cerr << "idctl admin: no answer from " << host << ":" << port << "\n";
    return 1;
  }
  const uint32_t rc = decoded->header.response_code;
  std::cout << OpCodeName(decoded->header.opcode) << ": " << ResponseCodeName(rc);
  if (const auto* created = std::get_if<HandleBody>(&decoded->body)) {
    std::cout << " " << created->handle;
  } else if (const auto* error = std::get_if<ErrorBody>(&decoded->body)) {
    if (!error->message.empty()) std::cout << " (" << error->message << ")";
  }
  std::cout << "\n";
  return rc == static_cast<uint32_t>(ResponseCode::kSuccess) ? 0 : 1;
}

}  // namespace idnode::cmd
