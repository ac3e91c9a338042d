// libFuzzer target: checking an answer to a 402 challenge (auth/credentials.h), the one parser the
// admin path adds after the message codec: the signedResponse field (secret-key MAC codes, PBKDF2
// parameters, hash name + signature) and the identity's key value (HS_PUBKEY encodings, handed to
// OpenSSL). Input: [selector][key length (2 bytes)][key value][answer]. Nothing may crash, leak or
// read out of bounds; a PBKDF2 answer may not buy more than kMaxPbkdf2Iterations.
// Selector bit 8 (HARDENING.md row C, after Knot's fuzz_tsig): a valid answer made with a known
// secret is mutated at the positions the input names (pairs of position, XOR mask), possibly cut
// short; only the unmutated bytes may verify, and the valid answer never verifies under another
// key, nonce or digest. A false accept aborts.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "idnode/auth/credentials.h"

using namespace idnode::auth;

namespace {

void MutatedAnswersNeverVerify(uint8_t selector, std::span<const uint8_t> other_key,
                               std::span<const uint8_t> mutations) {
  static const uint8_t kSecret[] = {'f', 'u', 'z', 'z', '-', 's', 'e', 'c', 'r', 'e', 't'};
  static const uint8_t kNonce[16] = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6};
  static const uint8_t kDigest[32] = {0x5e, 0xc0, 0xde};
  static const uint8_t kSalt[8] = {1, 1, 2, 3, 5, 8, 13, 21};
  static const uint8_t kCodes[] = {mac_code::kHmacSha256, mac_code::kHmacSha1,
                                   mac_code::kPbkdf2HmacSha1, mac_code::kSha256, mac_code::kSha1};
  const uint8_t code = kCodes[(selector >> 4) % sizeof kCodes];
  const std::vector<uint8_t> valid = SecretKeyAnswer(code, kSecret, kNonce, kDigest, kSalt, 10);
  if (VerifyChallengeAnswer(kAuthTypeSecretKey, kSecret, kNonce, kDigest, valid) != Verdict::kValid)
    std::abort();  // the client side and the server side disagree
  std::vector<uint8_t> mutated = valid;
  size_t i = 0;
  if (!mutations.empty() && (mutations[0] & 0x80) != 0) {
    mutated.resize(mutations[0] & 0x7f);  // cut short (or padded with zeros)
    i = 1;
  }
  for (; i + 1 < mutations.size() && !mutated.empty(); i += 2) {
    mutated[mutations[i] % mutated.size()] ^= mutations[i + 1];
  }
  if (mutated != valid && VerifyChallengeAnswer(kAuthTypeSecretKey, kSecret, kNonce, kDigest,
                                                mutated) == Verdict::kValid) {
    std::abort();  // a false accept
  }
  // HMAC pads its key with zeros to the block size, so "k" and "k\0\0" are one key.
  while (!other_key.empty() && other_key.back() == 0)
    other_key = other_key.first(other_key.size() - 1);
  const bool same_key = other_key.size() == sizeof kSecret &&
                        std::equal(other_key.begin(), other_key.end(), std::begin(kSecret));
  if (!same_key && VerifyChallengeAnswer(kAuthTypeSecretKey, other_key, kNonce, kDigest, valid) ==
                       Verdict::kValid) {
    std::abort();
  }
  uint8_t other_nonce[16];
  std::copy(std::begin(kNonce), std::end(kNonce), other_nonce);
  other_nonce[mutations.empty() ? 0 : mutations[0] % 16] ^= 0x40;
  if (VerifyChallengeAnswer(kAuthTypeSecretKey, kSecret, other_nonce, kDigest, valid) ==
      Verdict::kValid) {
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  const uint8_t selector = data[0];
  size_t key_size = (size_t{data[1]} << 8 | data[2]);
  std::span<const uint8_t> rest(data + 3, size - 3);
  if (key_size > rest.size()) key_size = rest.size();
  auto key = rest.subspan(0, key_size);
  auto answer = rest.subspan(key_size);
  static const uint8_t kNonce[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  static const uint8_t kDigest[32] = {0xde, 0xad, 0xbe, 0xef};
  const std::string_view type = (selector & 1) != 0 ? kAuthTypePublicKey : kAuthTypeSecretKey;
  const bool legacy = (selector & 2) != 0;
  Verdict v = VerifyChallengeAnswer(type, key, kNonce, kDigest, answer, legacy);
  // An accept must be earned. Whatever the type, an accepted answer with its last byte changed
  // (part of the MAC or the signature) is refused. A secret-key answer is accepted only if it is,
  // byte for byte, the answer a client holding `key` makes with the MAC it names (PBKDF2 answers
  // carry their own salt and iterations, checked by the flip alone).
  if (v == Verdict::kValid) {
    if (answer.empty()) std::abort();
    std::vector<uint8_t> flipped(answer.begin(), answer.end());
    flipped.back() ^= 0x01;
    if (VerifyChallengeAnswer(type, key, kNonce, kDigest, flipped, legacy) == Verdict::kValid)
      std::abort();
    if (type == kAuthTypeSecretKey && !legacy && answer[0] != mac_code::kPbkdf2HmacSha1) {
      auto remade = SecretKeyAnswer(answer[0], key, kNonce, kDigest);
      if (!std::equal(remade.begin(), remade.end(), answer.begin(), answer.end())) std::abort();
    }
  }
  // A secret-key answer made by the client side must verify against the same secret.
  if ((selector & 4) != 0 && type == kAuthTypeSecretKey) {
    auto made = SecretKeyAnswer(mac_code::kHmacSha256, key, kNonce, kDigest);
    if (VerifyChallengeAnswer(kAuthTypeSecretKey, key, kNonce, kDigest, made) != Verdict::kValid &&
        !key.empty()) {
      std::abort();
    }
  }
  if ((selector & 8) != 0) MutatedAnswersNeverVerify(selector, key, answer);
  return 0;
}
