// The Handle client behind `idctl resolve`: builds a resolution request, sends it over UDP with the
// retry schedule of real clients (500, 1000, 1500 ms) and then TCP, or over TCP only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace idnode::cmd {

struct ResolveOptions {
  std::string handle;
  std::vector<std::string> types;
  std::vector<int32_t> indexes;
  std::string host = "127.0.0.1";
  uint16_t port = 2641;
  bool tcp_only = false;
  bool udp_only = false;
  bool json = false;
};

// Prints the answer; returns the process exit status (0 when the handle resolved).
int Resolve(const ResolveOptions& options);

}  // namespace idnode::cmd
