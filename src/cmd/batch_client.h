// idctl batch: sends operations to a running node's POST /api/batch over HTTPS (HANDLE.md §2,
// http/admin_api.h), 2,000 per request, each request under a transaction id derived from the
// file's contents (so that running the same file again, after a timeout, applies nothing twice),
// authenticated with Basic (an HS_SECKEY identity). One-shot: the main thread, blocking I/O with
// deadlines.
#pragma once

#include <string>
#include <string_view>

namespace idnode::cmd {

struct BatchOptions {
  std::string file;         // JSON Lines, one operation per line ("-": standard input)
  std::string server;       // https://HOST:PORT
  std::string identity;     // INDEX:HANDLE
  std::string secret;       // its HS_SECKEY
  std::string transaction;  // empty: derived from the file's contents
  std::string ca_file;      // trust this certificate (chain) instead of the system's
  bool insecure = false;    // no certificate check (tests on loopback only)
  int timeout_seconds = 120;
};

// Percent-encodes a URL component (unreserved characters, ':' and '/' kept).
std::string PercentEncode(std::string_view text);

// Prints one line per failed operation and a summary; 0 when every operation succeeded, 1 when
// some failed, 2 on a usage or transport error.
int RunBatch(const BatchOptions& options);

}  // namespace idnode::cmd
