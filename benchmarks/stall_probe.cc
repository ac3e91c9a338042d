// stall_probe: how long the machine takes the CPU away from a thread that never gives it up.
//
//   stall_probe [--seconds S]
//
// One thread spins reading CLOCK_MONOTONIC for S seconds (default 10); every gap between two reads
// is time the thread did not run (an interrupt, another task, or, in a VM, the hypervisor running
// something else on this vCPU's physical core). compare.sh runs it pinned to the load generator's
// core, once with the server's core idle and once with it busy: stalls that appear only in the
// second run come from the host, and any open-loop latency tail shorter than them is out of reach
// of the server. Prints one line: "stalls over_100us N over_500us N over_1ms N over_2ms N
// lost_ms X max_ms Y".
#include <time.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

uint64_t NowNs() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<uint64_t>(t.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(t.tv_nsec);
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 10;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
      seconds = std::atof(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: stall_probe [--seconds S]\n");
      return 2;
    }
  }
  if (!(seconds > 0 && seconds <= 3600)) {
    std::fprintf(stderr, "stall_probe: --seconds must be in (0, 3600]\n");
    return 2;
  }
  constexpr std::array<uint64_t, 4> kThresholdsNs = {100'000, 500'000, 1'000'000, 2'000'000};
  std::array<uint64_t, 4> over{};
  uint64_t lost_ns = 0, max_ns = 0;
  const uint64_t start = NowNs();
  const uint64_t end = start + static_cast<uint64_t>(seconds * 1e9);
  for (uint64_t previous = start;;) {
    const uint64_t now = NowNs();
    const uint64_t gap = now - previous;
    previous = now;
    if (now >= end) break;
    if (gap < kThresholdsNs[0]) continue;
    lost_ns += gap;
    if (gap > max_ns) max_ns = gap;
    for (size_t i = 0; i < kThresholdsNs.size(); ++i) {
      if (gap > kThresholdsNs[i]) ++over[i];
    }
  }
  std::printf(
      "stalls over_100us %llu over_500us %llu over_1ms %llu over_2ms %llu lost_ms %.1f "
      "max_ms %.2f\n",
      static_cast<unsigned long long>(over[0]), static_cast<unsigned long long>(over[1]),
      static_cast<unsigned long long>(over[2]), static_cast<unsigned long long>(over[3]),
      static_cast<double>(lost_ns) / 1e6, static_cast<double>(max_ns) / 1e6);
  return 0;
}
