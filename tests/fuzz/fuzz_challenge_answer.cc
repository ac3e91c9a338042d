// libFuzzer target: checking an answer to a 402 challenge (auth/credentials.h), the one parser the
// admin path adds after the message codec: the signedResponse field (secret-key MAC codes, PBKDF2
// parameters, hash name + signature) and the identity's key value (HS_PUBKEY encodings, handed to
// OpenSSL). Input: [selector][key length (2 bytes)][key value][answer]. Nothing may crash, leak or
// read out of bounds; a PBKDF2 answer may not buy more than kMaxPbkdf2Iterations.
#include <cstdint>
#include <cstdlib>

#include "idnode/auth/credentials.h"

using namespace idnode::auth;

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
  Verdict v = VerifyChallengeAnswer(type, key, kNonce, kDigest, answer, (selector & 2) != 0);
  if (v != Verdict::kValid && v != Verdict::kInvalid && v != Verdict::kMalformed &&
      v != Verdict::kUnsupported) {
    std::abort();
  }
  // A secret-key answer made by the client side must verify against the same secret.
  if ((selector & 4) != 0 && type == kAuthTypeSecretKey) {
    auto made = SecretKeyAnswer(mac_code::kHmacSha256, key, kNonce, kDigest);
    if (VerifyChallengeAnswer(kAuthTypeSecretKey, key, kNonce, kDigest, made) != Verdict::kValid &&
        !key.empty()) {
      std::abort();
    }
  }
  return 0;
}
