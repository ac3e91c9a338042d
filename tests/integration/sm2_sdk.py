"""China's identifier SDK's side of an SM2 login (HANDLE.md §3, tests/data/vectors/handle/sm2), for
the integration tests: the SM2 signatures are made here in plain Python (GB/T 32918.2 over the SM2
curve, hashlib's SM3 and SHA-256), independently of idnode's C++ and of OpenSSL's SM2 (which signs
with SM3 only), and messages are laid out as the SDK's own captures show them."""
import hashlib
import os
import struct

from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
G = (0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7,
     0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0)
DEFAULT_ID = b"1234567812345678"

VECTORS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "vectors", "handle", "sm2")


def _add(p1, p2):
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    if p1[0] == p2[0] and (p1[1] + p2[1]) % P == 0:
        return None
    if p1 == p2:
        slope = (3 * p1[0] * p1[0] + A) * pow(2 * p1[1], -1, P) % P
    else:
        slope = (p2[1] - p1[1]) * pow(p2[0] - p1[0], -1, P) % P
    x = (slope * slope - p1[0] - p2[0]) % P
    return x, (slope * (p1[0] - x) - p1[1]) % P


def _mul(k, point):
    result = None
    while k:
        if k & 1:
            result = _add(result, point)
        point = _add(point, point)
        k >>= 1
    return result


def _hash(name, *parts):
    h = hashlib.new(name)
    for part in parts:
        h.update(part)
    return h.digest()


def test_key():
    """(d, public point) of the SDK's published test key (keys/sm2-key-raw.txt)."""
    values = {}
    with open(os.path.join(VECTORS, "keys", "sm2-key-raw.txt")) as f:
        for line in f:
            name, _, value = line.strip().partition("=")
            values[name] = int(value, 16) if name in ("d", "x", "y") else value
    d = values["d"]
    public = _mul(d, G)
    assert public == (values["x"], values["y"])
    return d, public


def hs_pubkey_data():
    """The HS_PUBKEY value data the SDK writes for the test key (SM2_PUB_KEY + PEM text)."""
    with open(os.path.join(VECTORS, "keys", "hs_pubkey-data.SM2_PUB_KEY.hex")) as f:
        return bytes.fromhex(f.read().split()[0])


def sign(d, public, user_id, message, hash_name):
    """An SM2 signature (DER) of `message` with hash `hash_name` for Z_A and e."""
    entl = struct.pack(">H", len(user_id) * 8)
    z = _hash(hash_name, entl, user_id, *(v.to_bytes(32, "big") for v in (A, B, G[0], G[1], public[0], public[1])))
    e = int.from_bytes(_hash(hash_name, z, message), "big")
    while True:
        k = int.from_bytes(os.urandom(32), "big") % N
        if k == 0:
            continue
        x1 = _mul(k, G)[0]
        r = (e + x1) % N
        if r == 0 or r + k == N:
            continue
        s = pow(1 + d, -1, N) * (k - r * d) % N
        if s:
            return encode_dss_signature(r, s)


def signed_response(d, public, identity_handle, nonce, digest, path):
    """The OC 200 signedResponse as the SDK makes it: "SM3" (SM3(nonce ‖ digest), then SM2/SM3
    under the identity handle) or "SHA-256" (SM2 with SHA-256 under the default id)."""
    data = nonce + digest
    if path == "SM3":
        signature = sign(d, public, identity_handle.encode(), _hash("sm3", data), "sm3")
    else:
        signature = sign(d, public, DEFAULT_ID, data, "sha256")
    name = path.encode()
    return struct.pack(">I", len(name)) + name + struct.pack(">I", len(signature)) + signature


def sm2_decrypt(d, ciphertext):
    """SM2 decryption of C1‖C3‖C2 (GB/T 32918.4, SM3 KDF), as the SDK's hutool does it."""
    assert ciphertext[0] == 4
    c1 = (int.from_bytes(ciphertext[1:33], "big"), int.from_bytes(ciphertext[33:65], "big"))
    c3, c2 = ciphertext[65:97], ciphertext[97:]
    x2, y2 = _mul(d, c1)
    z = x2.to_bytes(32, "big") + y2.to_bytes(32, "big")
    stream, counter = b"", 1
    while len(stream) < len(c2):
        stream += _hash("sm3", z, struct.pack(">I", counter))
        counter += 1
    message = bytes(a ^ b for a, b in zip(c2, stream))
    if _hash("sm3", x2.to_bytes(32, "big"), message, y2.to_bytes(32, "big")) != c3:
        raise ValueError("C3 does not match: not made for this key")
    return message


def sm4_cbc(key, data, encrypt):
    """SM4-CBC with PKCS#7 padding and IV = key (the SDK's session bodies)."""
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    cipher = Cipher(algorithms.SM4(key), modes.CBC(key))
    if encrypt:
        padder = padding.PKCS7(128).padder()
        padded = padder.update(data) + padder.finalize()
        e = cipher.encryptor()
        return e.update(padded) + e.finalize()
    d = cipher.decryptor()
    padded = d.update(data) + d.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(padded) + unpadder.finalize()
