// The client behind `idctl admin`: one administrative request (create, add, modify, remove,
// delete) over TCP, authenticated by answering the server's 402 challenge on the same connection
// with the identity's HS_SECKEY (HMAC-SHA256) or, with a private key, its HS_PUBKEY (a SHA-256
// RSA or DSA signature), as a secondary node's operator would.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace idnode::cmd {

struct AdminOptions {
  std::string operation;  // create, add, modify, remove, delete
  std::string handle;
  std::vector<std::string> values;  // "INDEX:TYPE:DATA"; HS_ADMIN data is "INDEX:HANDLE"
  std::vector<int32_t> indexes;     // remove
  bool overwrite = false;           // create: replace an existing record; add: taken indexes
  std::string identity_handle;
  int32_t identity_index = 0;
  std::string secret;           // HS_SECKEY; or
  std::string private_key_pem;  // the identity's private key (HS_PUBKEY), as PEM
  std::string host = "127.0.0.1";
  uint16_t port = 2641;
};

// Prints the outcome; returns the process exit status (0 on RC_SUCCESS, 1 on a refusal or no
// answer, 2 on bad arguments).
int Administer(const AdminOptions& options);

}  // namespace idnode::cmd
