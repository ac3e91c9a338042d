#include "idnode/replication/tls.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

namespace idnode::replication {

namespace ssl = boost::asio::ssl;

Result<std::shared_ptr<ssl::context>, std::string> MakeTlsContext(const TlsFiles& files,
                                                                  bool server) {
  auto context =
      std::make_shared<ssl::context>(server ? ssl::context::tls_server : ssl::context::tls_client);
  boost::system::error_code ec;
  SSL_CTX_set_min_proto_version(context->native_handle(), TLS1_3_VERSION);
  context->set_options(ssl::context::default_workarounds | ssl::context::no_compression, ec);
  auto step = [&](const char* what, const std::string& file) -> Result<Unit, std::string> {
    if (ec) return Failure{std::string(what) + " " + file + ": " + ec.message()};
    return Unit{};
  };
  context->use_certificate_chain_file(files.certificate, ec);
  if (auto r = step("cannot use the certificate", files.certificate); !r.ok())
    return Failure{r.error()};
  context->use_private_key_file(files.private_key, ssl::context::pem, ec);
  if (auto r = step("cannot use the private key", files.private_key); !r.ok())
    return Failure{r.error()};
  if (SSL_CTX_check_private_key(context->native_handle()) != 1)
    return Failure{"the private key " + files.private_key + " does not match the certificate " +
                   files.certificate};
  context->load_verify_file(files.ca, ec);
  if (auto r = step("cannot load the CA", files.ca); !r.ok()) return Failure{r.error()};
  context->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert, ec);
  if (auto r = step("cannot require peer certificates", ""); !r.ok()) return Failure{r.error()};
  return context;
}

std::string PeerName(SSL* ssl) {
  if (SSL_get_verify_result(ssl) != X509_V_OK) return {};
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (cert == nullptr) return {};
  std::string name;
  auto* names =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (names != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(names) && name.empty(); ++i) {
      const GENERAL_NAME* n = sk_GENERAL_NAME_value(names, i);
      if (n->type != GEN_DNS) continue;
      const unsigned char* data = ASN1_STRING_get0_data(n->d.dNSName);
      int length = ASN1_STRING_length(n->d.dNSName);
      if (data != nullptr && length > 0) name.assign(reinterpret_cast<const char*>(data), length);
    }
    GENERAL_NAMES_free(names);
  }
  if (!name.empty()) return name;
  X509_NAME* subject = X509_get_subject_name(cert);
  int at = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (at < 0) return {};
  ASN1_STRING* cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, at));
  const unsigned char* data = ASN1_STRING_get0_data(cn);
  int length = ASN1_STRING_length(cn);
  if (data == nullptr || length <= 0) return {};
  return std::string(reinterpret_cast<const char*>(data), length);
}

}  // namespace idnode::replication
