#include "batch_client.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/json.hpp>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <vector>

namespace idnode::cmd {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace json = boost::json;

namespace {

constexpr size_t kPerRequest = 2000;

std::string Base64(std::string_view in) {
  std::string out(4 * ((in.size() + 2) / 3), '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(in.data()),
                                static_cast<int>(in.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

// The Basic user name: the identity with its ':' percent-encoded (the first ':' ends it).
std::string IdentityUserName(std::string_view identity) {
  std::string out;
  for (char c : PercentEncode(identity)) {
    if (c == ':') {
      out += "%3A";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string HexSha256(std::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char b : digest) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  return out;
}

}  // namespace

std::string PercentEncode(std::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == ':' || c == '/') {
      out.push_back(static_cast<char>(c));
    } else {
      char hex[4];
      std::snprintf(hex, sizeof hex, "%%%02X", c);
      out += hex;
    }
  }
  return out;
}

int RunBatch(const BatchOptions& options) {
  constexpr std::string_view kScheme = "https://";
  if (options.server.rfind(kScheme, 0) != 0) {
    std::cerr << "idctl batch: --server is https://HOST:PORT (writes need HTTPS)\n";
    return 2;
  }
  const std::string hostport = options.server.substr(kScheme.size());
  const size_t colon = hostport.rfind(':');
  if (colon == std::string::npos) {
    std::cerr << "idctl batch: --server is https://HOST:PORT\n";
    return 2;
  }
  const std::string host = hostport.substr(0, colon);
  const std::string port = hostport.substr(colon + 1);
  std::string contents;
  if (options.file == "-") {
    contents.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  } else {
    std::ifstream in(options.file, std::ios::binary);
    if (!in) {
      std::cerr << "idctl batch: cannot read " << options.file << "\n";
      return 2;
    }
    contents.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  // One operation per line; blank lines skipped.
  std::vector<json::value> operations;
  std::istringstream lines(contents);
  std::string line;
  size_t number = 0;
  while (std::getline(lines, line)) {
    ++number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    json::error_code ec;
    json::value v = json::parse(line, ec);
    if (ec || !v.is_object()) {
      std::cerr << "idctl batch: line " << number << " is not a JSON object\n";
      return 2;
    }
    operations.push_back(std::move(v));
  }
  if (operations.empty()) {
    std::cerr << "idctl batch: no operations in " << options.file << "\n";
    return 2;
  }
  const std::string transaction = options.transaction.empty()
                                      ? "idctl-" + HexSha256(contents).substr(0, 32)
                                      : options.transaction;
  const std::string authorization =
      "Basic " + Base64(IdentityUserName(options.identity) + ":" + options.secret);

  asio::io_context io;
  asio::ssl::context tls(asio::ssl::context::tls_client);
  tls.set_options(asio::ssl::context::no_sslv2 | asio::ssl::context::no_sslv3 |
                  asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
  try {
    if (options.insecure) {
      tls.set_verify_mode(asio::ssl::verify_none);
    } else {
      tls.set_verify_mode(asio::ssl::verify_peer);
      if (options.ca_file.empty()) {
        tls.set_default_verify_paths();
      } else {
        tls.load_verify_file(options.ca_file);
      }
    }
  } catch (const boost::system::system_error& e) {
    std::cerr << "idctl batch: " << e.what() << "\n";
    return 2;
  }
  size_t failed = 0;
  size_t succeeded = 0;
  for (size_t first = 0, part = 0; first < operations.size(); first += kPerRequest, ++part) {
    const size_t end = std::min(operations.size(), first + kPerRequest);
    json::object body;
    body["transaction"] = transaction + "-" + std::to_string(part);
    json::array ops;
    for (size_t i = first; i < end; ++i) ops.push_back(operations[i]);
    body["operations"] = std::move(ops);
    beast::ssl_stream<beast::tcp_stream> stream(io, tls);
    beast::error_code ec;
    if (!options.insecure) {
      stream.set_verify_callback(asio::ssl::host_name_verification(host));
    }
    (void)SSL_set_tlsext_host_name(stream.native_handle(), host.c_str());
    asio::ip::tcp::resolver resolver(io);
    auto endpoints = resolver.resolve(host, port, ec);
    auto& lowest = beast::get_lowest_layer(stream);
    lowest.expires_after(std::chrono::seconds(options.timeout_seconds));
    if (!ec) {
      // Asynchronously, so that the stream's expiry bounds the connect too (a blocking connect
      // would wait for the kernel's own SYN timeout, minutes).
      lowest.async_connect(endpoints, [&ec](beast::error_code e, const auto&) { ec = e; });
      io.restart();
      io.run();
    }
    if (!ec) {
      // Blocking calls ignore the stream's expiry: the socket's own timeouts bound them.
      timeval tv{options.timeout_seconds, 0};
      const int fd = lowest.socket().native_handle();
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
      stream.handshake(asio::ssl::stream_base::client, ec);
    }
    bhttp::request<bhttp::string_body> request{bhttp::verb::post, "/api/batch", 11};
    request.set(bhttp::field::host, host);
    request.set(bhttp::field::content_type, "application/json");
    request.set(bhttp::field::authorization, authorization);
    request.body() = json::serialize(body);
    request.prepare_payload();
    if (!ec) bhttp::write(stream, request, ec);
    beast::flat_buffer buffer;
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(64ull << 20);
    if (!ec) bhttp::read(stream, buffer, parser, ec);
    if (ec) {
      std::cerr << "idctl batch: " << options.server << ": " << ec.message()
                << " (the operations of this request may or may not have applied; run the same "
                   "file again: its transaction id makes that safe)\n";
      return 2;
    }
    const auto& response = parser.get();
    json::error_code parse_ec;
    json::value answer = json::parse(response.body(), parse_ec);
    const json::array* results = nullptr;
    if (!parse_ec && answer.is_object()) {
      if (const auto* r = answer.as_object().if_contains("results"); r && r->is_array())
        results = &r->as_array();
    }
    if (response.result() != bhttp::status::ok || results == nullptr ||
        results->size() != end - first) {
      std::cerr << "idctl batch: HTTP " << response.result_int() << ": " << response.body() << "\n";
      return 2;
    }
    for (size_t i = 0; i < results->size(); ++i) {
      const auto* r = (*results)[i].if_object();
      const json::value* code = r ? r->if_contains("responseCode") : nullptr;
      if (code == nullptr || !code->is_int64()) {
        std::cerr << "idctl batch: an unexpected answer: " << response.body() << "\n";
        return 2;
      }
      if (code->as_int64() == 1) {
        ++succeeded;
        continue;
      }
      ++failed;
      std::cout << "line-order " << (first + i + 1) << " " << json::serialize(*r) << "\n";
    }
  }
  std::cout << succeeded << " succeeded, " << failed << " failed (transaction " << transaction
            << ")\n";
  return failed == 0 ? 0 : 1;
}

}  // namespace idnode::cmd
