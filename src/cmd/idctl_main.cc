// idctl: the operator's command-line tool. Today: `idctl decode`, which decodes Handle messages
// captured as hex (one datagram or TCP message per line; the datagrams of a multi-datagram UDP
// message on consecutive lines) and prints them field by field.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "idnode/common/hex.h"
#include "idnode/protocol/describe.h"
#include "idnode/protocol/message.h"
#include "idnode/protocol/transport.h"

namespace {

constexpr const char* kUsage = R"(usage: idctl <command> [arguments]

commands:
  decode FILE    decode Handle messages written as hex, one datagram or TCP message per line
                 ("-" reads standard input); prints each message field by field
  --version      print the version
  --help         print this help
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
  std::cerr << "idctl: unknown command '" << command << "'\n" << kUsage;
  return 2;
}
