// Codec cost per message: decoding a resolution request, encoding a 4-value response into a
// caller's buffer, and the surrounding work a UDP answer needs (digest, datagram split). A memcpy
// of the same response bytes is the floor to compare against.
#include <benchmark/benchmark.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "idnode/common/hex.h"
#include "idnode/protocol/digest.h"
#include "idnode/protocol/message.h"
#include "idnode/protocol/transport.h"

namespace {

using namespace idnode::protocol;

std::vector<uint8_t> LoadVector(const char* name) {
  std::ifstream in(std::string(IDNODE_TEST_DATA_DIR) + "/vectors/handle/" + name);
  std::stringstream ss;
  ss << in.rdbuf();
  auto bytes = idnode::FromHex(ss.str());
  if (!bytes) std::abort();
  return *bytes;
}

void BM_DecodeResolutionRequest(benchmark::State& state) {
  auto request = LoadVector("01-udp-resolve-test1.request.hex");
  for (auto _ : state) {
    auto m = DecodeMessage(request);
    benchmark::DoNotOptimize(m);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * request.size()));
}
BENCHMARK(BM_DecodeResolutionRequest);

void BM_DecodeChinaSdkRequest(benchmark::State& state) {
  auto request = LoadVector("11-cnsdk-tcp-resolve-test1.request.hex");
  for (auto _ : state) {
    auto m = DecodeMessage(request);
    benchmark::DoNotOptimize(m);
  }
}
BENCHMARK(BM_DecodeChinaSdkRequest);

void BM_EncodeFourValueResponse(benchmark::State& state) {
  auto captured_bytes = LoadVector("01-udp-resolve-test1.response.hex");
  auto request = LoadVector("01-udp-resolve-test1.request.hex");
  auto captured = DecodeMessage(captured_bytes);
  auto req = DecodeMessage(request);
  if (!captured.ok() || !req.ok()) std::abort();
  Message response;
  response.envelope = ResponseEnvelopeFor(req->envelope);
  response.header =
      ResponseHeaderFor(req->header, ResponseCode::kSuccess, 1, response.envelope.version());
  response.body = std::get<HandleValuesBody>(captured->body);
  std::array<uint8_t, 1024> buffer;
  for (auto _ : state) {
    auto n = EncodeMessage(response, buffer);
    benchmark::DoNotOptimize(n);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * captured_bytes.size()));
}
BENCHMARK(BM_EncodeFourValueResponse);

// The floor: copying the finished response bytes into the same buffer.
void BM_CopyFourValueResponse(benchmark::State& state) {
  auto captured_bytes = LoadVector("01-udp-resolve-test1.response.hex");
  std::array<uint8_t, 1024> buffer;
  for (auto _ : state) {
    std::memcpy(buffer.data(), captured_bytes.data(), captured_bytes.size());
    benchmark::DoNotOptimize(buffer.data());
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_CopyFourValueResponse);

void BM_RequestDigestSha256(benchmark::State& state) {
  auto request = LoadVector("05-udp-resolve-RD-digest.request.hex");
  for (auto _ : state) benchmark::DoNotOptimize(RequestDigest(request, kOurVersion));
}
BENCHMARK(BM_RequestDigestSha256);

void BM_ReassembleTwoDatagrams(benchmark::State& state) {
  std::vector<std::vector<uint8_t>> datagrams;
  std::ifstream in(std::string(IDNODE_TEST_DATA_DIR) +
                   "/vectors/handle/06-udp-resolve-certified.response-2-datagrams.hex");
  std::string line;
  while (std::getline(in, line)) datagrams.push_back(*idnode::FromHex(line));
  UdpReassembler reassembler;
  for (auto _ : state) {
    auto now = UdpReassembler::Clock::now();
    (void)reassembler.Offer({}, datagrams[0], now);
    auto done = reassembler.Offer({}, datagrams[1], now);
    benchmark::DoNotOptimize(done);
  }
}
BENCHMARK(BM_ReassembleTwoDatagrams);

}  // namespace

BENCHMARK_MAIN();
