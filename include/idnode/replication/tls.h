// replication/: mutual TLS for the replication stream (Asio SSL on OpenSSL 3). Both ends present
// a certificate that chains to the configured CA; TLS 1.3 only. A source knows a replica by the
// name in its certificate (the first DNS subjectAltName, else the subject CN) and allows it only
// the prefixes configured for that name; a replica checks that the source's certificate carries
// the source's configured name. Contexts are built once at startup (errors are values for the
// caller to report) and shared, read-only, by the replication thread's connections.
#pragma once

#include <openssl/ssl.h>

#include <boost/asio/ssl.hpp>
#include <memory>
#include <string>

#include "idnode/common/result.h"

namespace idnode::replication {

struct TlsFiles {
  std::string certificate;  // PEM: this node's certificate (chain)
  std::string private_key;  // PEM
  std::string ca;           // PEM: the CA peers' certificates must chain to
};

Result<std::shared_ptr<boost::asio::ssl::context>, std::string> MakeTlsContext(
    const TlsFiles& files, bool server);

// The name of the verified peer certificate of `ssl`; "" when there is none.
std::string PeerName(SSL* ssl);

}  // namespace idnode::replication
