// libFuzzer target: the parsers of the JSON API's authenticated requests (http/write_requests.h):
// Basic credentials, `Authorization: Handle` headers (and the signed responses they stand for),
// the query strings of writes, listings and the audit log, PUT bodies and batch bodies.
// Input: [selector][bytes]. Nothing may crash, leak or read out of bounds; a parsed batch never
// holds more than kMaxBatchOperations operations, and every handle in it is valid.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "idnode/http/write_requests.h"
#include "idnode/identifier/identifier.h"

using namespace idnode;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 7) {
    case 0: {
      auto credentials = http::ParseBasicAuthorization(rest);
      if (credentials.ok() &&
          (credentials->identity.handle.empty() || credentials->identity.index <= 0)) {
        std::abort();  // Identity::Parse promises a handle and a positive index
      }
      break;
    }
    case 1:
      (void)http::ParseWriteQuery(rest);
      break;
    case 2: {
      auto q = http::ParseListQuery(rest);
      if (q.ok() && (q->page_size == 0 || q->page_size > http::kMaxPageSize)) std::abort();
      break;
    }
    case 3:
      (void)http::ParseValuesBody(rest, "88.100/FUZZ");
      break;
    case 6: {
      auto header = http::ParseHandleAuthorization(rest);
      if (header.ok()) {
        // Nothing decoded is larger than the header, and the id is text without NUL.
        for (size_t decoded : {header->id.size(), header->session_id.size(), header->cnonce.size(),
                               header->signature.size(), header->salt.size()}) {
          if (decoded > rest.size()) std::abort();
        }
        if (header->id.find('\0') != std::string::npos) std::abort();
        auto signed_response = http::SignedResponseFor(*header);
        // Its parts and nothing else: a code byte and the MAC (HS_SECKEY, PBKDF2 adding salt,
        // iterations and length), or two length-prefixed strings (HS_PUBKEY).
        if (signed_response.ok() && signed_response->size() < header->signature.size() + 1)
          std::abort();
        if (signed_response.ok() &&
            signed_response->size() > header->signature.size() + header->salt.size() + 24)
          std::abort();
      }
      break;
    }
    case 5: {
      auto filter = http::ParseAuditQuery(rest);
      if (filter.ok() && (filter->limit == 0 || filter->limit > http::kMaxAuditEntries))
        std::abort();
      break;
    }
    default: {
      auto batch = http::ParseBatch(rest);
      if (batch.ok()) {
        if (batch->operations.empty() || batch->operations.size() > http::kMaxBatchOperations)
          std::abort();
        for (const auto& op : batch->operations) {
          if (!identifier::IsValidHandle(op.handle)) std::abort();
        }
      }
      break;
    }
  }
  return 0;
}
