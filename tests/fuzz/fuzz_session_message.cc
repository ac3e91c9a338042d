// libFuzzer target: what sessions add to the Handle path (auth/message_auth.h): the OC 400 setup
// body, encrypted session messages (AES-CBC under a known session key, then the message codec on
// the plaintext) and HS_MAC credentials. Input: [selector][bytes]. Nothing may crash, leak or read
// out of bounds.
// Selector 0: ParseSessionSetup, then (for a DH setup) the key agreement with the client's group.
// Selector 1: DecryptMessage with the session key, DecodeMessage and VerifyMac on the plaintext.
// Selector 2: DecodeMessage and VerifyMac of a plain message.
// Selector 3 (HARDENING.md row C): a valid MAC'd message is mutated at the positions the input
// names (pairs of position, XOR mask), possibly cut short; a mutated message may not verify under
// the session key, and the valid one never under another key or counter. A false accept aborts.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "idnode/auth/message_auth.h"
#include "idnode/protocol/message.h"

using namespace idnode;

namespace {

const std::vector<uint8_t> kKey(32, 0x42);

// A resolution request with its credential section empty, as a client would MAC it.
std::vector<uint8_t> PlainRequest() {
  static const uint8_t kHandle[] = {'8', '8', '.', '1', '/', 'x'};
  protocol::Message m;
  m.envelope.session_id = 7;
  m.envelope.request_id = 99;
  m.header.opcode = static_cast<uint32_t>(protocol::OpCode::kDeleteHandle);
  m.body = protocol::HandleBody{{reinterpret_cast<const char*>(kHandle), sizeof kHandle}};
  std::vector<uint8_t> out(512);
  auto n = protocol::EncodeMessage(m, out);
  if (!n.ok()) std::abort();
  out.resize(*n);
  return out;
}

void MutatedMacsNeverVerify(std::span<const uint8_t> mutations) {
  std::vector<uint8_t> valid = PlainRequest();
  const size_t plain_size = valid.size();
  valid.resize(1024);
  const size_t size = auth::MacEncoded(valid, plain_size, kKey, 5);
  if (size == 0) std::abort();
  valid.resize(size);
  auto decoded = protocol::DecodeMessage(valid);
  if (!decoded.ok() || auth::VerifyMac(*decoded, valid, kKey) != auth::Verdict::kValid)
    std::abort();  // the two sides disagree
  const std::vector<uint8_t> other(32, 0x43);
  if (auth::VerifyMac(*decoded, valid, other) == auth::Verdict::kValid) std::abort();
  std::vector<uint8_t> mutated = valid;
  size_t i = 0;
  if (!mutations.empty() && (mutations[0] & 0x80) != 0) {
    mutated.resize(mutations[0] & 0x7f);
    i = 1;
  }
  for (; i + 1 < mutations.size() && !mutated.empty(); i += 2)
    mutated[mutations[i] % mutated.size()] ^= mutations[i + 1];
  if (mutated == valid) return;
  auto m = protocol::DecodeMessage(mutated);
  if (!m.ok()) return;
  // Bytes outside what the MAC covers (envelope flags, the credential's own framing and reserved
  // fields) may change without effect; what it covers may not.
  const size_t covered = protocol::kHeaderSize + m->header.body_length;
  const uint32_t counter = static_cast<uint32_t>(m->credential.signer_index);
  const bool covered_same =
      m->credential.present && m->credential.signer_index == decoded->credential.signer_index &&
      auth::CredentialPreamble(m->envelope, counter) ==
          auth::CredentialPreamble(decoded->envelope, counter) &&
      covered == protocol::kHeaderSize + decoded->header.body_length &&
      mutated.size() >= protocol::kEnvelopeSize + covered &&
      std::equal(mutated.begin() + protocol::kEnvelopeSize,
                 mutated.begin() + static_cast<std::ptrdiff_t>(protocol::kEnvelopeSize + covered),
                 valid.begin() + protocol::kEnvelopeSize) &&
      std::equal(m->credential.signature.begin(), m->credential.signature.end(),
                 decoded->credential.signature.begin(), decoded->credential.signature.end());
  if (!covered_same && auth::VerifyMac(*m, mutated, kKey) == auth::Verdict::kValid) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t selector = data[0] & 3;
  std::span<const uint8_t> rest(data + 1, size - 1);
  switch (selector) {
    case 0: {
      auto setup = auth::ParseSessionSetup(rest);
      if (setup.ok() && setup->mode == auth::key_exchange::kDiffieHellman) {
        std::vector<uint8_t> ours;
        (void)auth::DiffieHellman(setup->client_key, &ours);
      }
      break;
    }
    case 1: {
      auto plain = auth::DecryptMessage(rest, kKey);
      if (plain.ok()) {
        auto m = protocol::DecodeMessage(*plain);
        if (m.ok()) (void)auth::VerifyMac(*m, *plain, kKey);
      }
      break;
    }
    case 2: {
      auto m = protocol::DecodeMessage(rest);
      if (m.ok()) (void)auth::VerifyMac(*m, rest, kKey);
      break;
    }
    default:
      MutatedMacsNeverVerify(rest);
      break;
  }
  return 0;
}
