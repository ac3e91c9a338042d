// http/: one response as the handlers build it and the connection writes it (http_server.cc).
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace idnode::http {

struct HttpResponse {
  unsigned status = 200;
  std::string_view content_type = "application/json;charset=utf-8";  // always a literal
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

}  // namespace idnode::http
