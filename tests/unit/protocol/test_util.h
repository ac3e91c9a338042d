// Helpers for the protocol tests: loading the captured vectors (tests/data/vectors, copied from
// ../shared/vectors) and reassembling multi-datagram messages.
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "idnode/common/hex.h"
#include "idnode/protocol/transport.h"

namespace idnode::protocol::testing {

inline std::string VectorPath(const std::string& name) {
  return std::string(IDNODE_TEST_DATA_DIR) + "/vectors/handle/" + name;
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// One entry per line of a .hex vector file (a datagram or a TCP message).
inline std::vector<std::vector<uint8_t>> LoadHexLines(const std::string& name) {
  std::vector<std::vector<uint8_t>> out;
  std::istringstream in(ReadFile(VectorPath(name)));
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto bytes = FromHex(line);
    EXPECT_TRUE(bytes.has_value()) << name;
    if (bytes) out.push_back(std::move(*bytes));
  }
  return out;
}

// The whole message of a vector file: its single line, or its datagrams reassembled.
inline std::vector<uint8_t> LoadMessage(const std::string& name) {
  auto lines = LoadHexLines(name);
  if (lines.size() == 1) return lines[0];
  UdpReassembler reassembler;
  for (const auto& datagram : lines) {
    auto outcome = reassembler.Offer({}, datagram, UdpReassembler::Clock::now());
    if (auto* done = std::get_if<UdpReassembler::Complete>(&outcome)) return done->message;
  }
  ADD_FAILURE() << name << ": datagrams did not reassemble";
  return {};
}

inline std::span<const uint8_t> AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace idnode::protocol::testing
