#!/usr/bin/env python3
"""Administration authenticated by HS_PUBKEY (RSA and DSA signatures), end to end, with the key
files operators have: `idctl admin --key FILE` against a real idnode.

  pubkey_admin_test.py IDNODE IDCTL

Keys are made here with Python's `cryptography` and written, independently of idnode's C++, as
PKCS#8 PEM (plain and encrypted), traditional PEM, and the reference's own private key file
(hdl-keygen's privkey.bin: an encryption type, then RSA_PRIVCRT_KEY / DSA_PRIV_KEY components;
unencrypted, and PBKDF2-HMAC-SHA1 + AES-128-CBC with a passphrase). The identities' HS_PUBKEY
values are encoded here too (HANDLE.md §1.7). The node homes 20.500.7; its prefix handle names
300 (RSA) and 301 (DSA) as admins. Then: a create with each file works; a wrong key (403), a wrong
passphrase and a damaged file are refused; a new HS_PUBKEY added over the protocol (as the RSA
identity) authenticates the next change, and once removed no longer does.
Traffic goes to 127.0.0.1 only; every wait is bounded; the node is stopped at the end through
harness.py (a crash or an unclean exit fails the run).
"""
import base64
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import unittest

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.hazmat.primitives import padding

import harness
import server_test as st

IDNODE = IDCTL = IDBENCH = None
NODE = st.NODE
PREFIX = "20.500.7"
PASSPHRASE = b"correct horse"
KEYS = {}  # name -> private key object


def text(b):
    b = b.encode() if isinstance(b, str) else b
    return struct.pack(">I", len(b)) + b


def java_bytes(n):
    """BigInteger.toByteArray of a positive integer: its magnitude, a zero byte in front when the
    top bit is set."""
    raw = n.to_bytes((n.bit_length() + 7) // 8 or 1, "big")
    return b"\x00" + raw if raw[0] & 0x80 else raw


def hs_pubkey(key):
    """The HS_PUBKEY value of a private key's public half (HANDLE.md §1.7)."""
    pub = key.public_key().public_numbers()
    if isinstance(key, rsa.RSAPrivateKey):
        return text("RSA_PUB_KEY") + b"\x00\x00" + text(java_bytes(pub.e)) + text(java_bytes(pub.n))
    params = pub.parameter_numbers
    return (text("DSA_PUB_KEY") + b"\x00\x00" + text(java_bytes(params.q)) + text(java_bytes(params.p)) +
            text(java_bytes(params.g)) + text(java_bytes(pub.y)))


def reference_key_encoding(key):
    """Util.getBytesFromPrivateKey: the type, then the components (no flags)."""
    private = key.private_numbers()
    if isinstance(key, rsa.RSAPrivateKey):
        public = private.public_numbers
        parts = [public.n, public.e, private.d, private.p, private.q, private.dmp1, private.dmq1, private.iqmp]
        return text("RSA_PRIVCRT_KEY") + b"".join(text(java_bytes(x)) for x in parts)
    params = private.public_numbers.parameter_numbers
    return text("DSA_PRIV_KEY") + b"".join(text(java_bytes(x)) for x in (private.x, params.p, params.q, params.g))


def reference_key_file(key, passphrase=None):
    """hdl-keygen's privkey.bin: type 1 (not encrypted) or 4 (PBKDF2-HMAC-SHA1, AES-128-CBC)."""
    inner = reference_key_encoding(key)
    if passphrase is None:
        return struct.pack(">i", 1) + inner
    salt, iv, iterations = os.urandom(16), os.urandom(16), 10000
    aes_key = PBKDF2HMAC(algorithm=hashes.SHA1(), length=16, salt=salt, iterations=iterations).derive(passphrase)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(inner) + padder.finalize()
    encryptor = Cipher(algorithms.AES(aes_key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    return (struct.pack(">i", 4) + text(salt) + struct.pack(">ii", iterations, 128) + text(iv) + text(ciphertext))


def write(name, data):
    path = os.path.join(NODE["work"], name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def pem(key, encryption=serialization.NoEncryption(), fmt=serialization.PrivateFormat.PKCS8):
    return key.private_bytes(serialization.Encoding.PEM, fmt, encryption)


def setUpModule():
    harness.set_up_or_tear_down(start_module_node, tearDownModule)


def start_module_node():
    work = tempfile.mkdtemp(prefix="idnode-pubkey-")
    NODE["work"] = work
    KEYS["rsa"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    KEYS["dsa"] = dsa.generate_private_key(key_size=2048)
    KEYS["other"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    KEYS["new"] = dsa.generate_private_key(key_size=2048)

    def admin(index, identity_index):
        return {"index": index, "type": "HS_ADMIN", "data": {"format": "admin", "value": {
            "handle": "0.NA/" + PREFIX, "index": identity_index, "permissions": "111111111111"}}}

    def pubkey(index, key):
        return {"index": index, "type": "HS_PUBKEY",
                "data": {"format": "base64", "value": base64.b64encode(hs_pubkey(key)).decode()}}

    record = {"handle": "0.NA/" + PREFIX, "values": [
        admin(100, 300), admin(101, 301), admin(102, 302), pubkey(300, KEYS["rsa"]), pubkey(301, KEYS["dsa"])]}
    records = os.path.join(work, "identities.jsonl")
    with open(records, "w") as f:
        f.write(json.dumps(record) + "\n")
    NODE["proc"], ports = st.start_node_homing(IDNODE, IDCTL, work, PREFIX, records, ["--workers", "2"])
    NODE["handle"] = ports["handle"]


def tearDownModule():
    st.tearDownModule()


def idctl_admin(*args, key=None, passphrase=None, identity=300):
    cmd = [IDCTL, "admin", *args, "--identity", "%d:0.NA/%s" % (identity, PREFIX),
           "--server", "tcp://127.0.0.1:%d" % NODE["handle"]]
    if key:
        cmd += ["--key", key]
    if passphrase is not None:
        cmd += ["--passphrase-file", write("passphrase", passphrase + b"\n")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    return result.returncode, result.stdout + result.stderr


def resolves(handle):
    result = subprocess.run([IDCTL, "resolve", handle, "--server", "tcp://127.0.0.1:%d" % NODE["handle"]],
                            capture_output=True, text=True, timeout=30)
    return result.returncode == 0


class KeyFiles(unittest.TestCase):
    def create_with(self, suffix, key_file, **kw):
        handle = "%s/%s" % (PREFIX, suffix)
        rc, out = idctl_admin("create", handle, "--value", "1:URL:https://example.org/" + suffix,
                              key=key_file, **kw)
        self.assertEqual(rc, 0, out)
        self.assertIn("SUCCESS", out.upper())
        self.assertTrue(resolves(handle), handle)

    def test_rsa_pkcs8_pem(self):
        self.create_with("rsa-pkcs8", write("rsa.pem", pem(KEYS["rsa"])))

    def test_rsa_encrypted_pkcs8_pem(self):
        encrypted = pem(KEYS["rsa"], serialization.BestAvailableEncryption(PASSPHRASE))
        self.create_with("rsa-pkcs8-enc", write("rsa-enc.pem", encrypted), passphrase=PASSPHRASE)

    def test_rsa_reference_key_file(self):
        self.create_with("rsa-bin", write("rsa.bin", reference_key_file(KEYS["rsa"])))

    def test_rsa_reference_key_file_encrypted(self):
        path = write("rsa-aes.bin", reference_key_file(KEYS["rsa"], PASSPHRASE))
        self.create_with("rsa-bin-aes", path, passphrase=PASSPHRASE)

    def test_dsa_traditional_pem(self):
        traditional = pem(KEYS["dsa"], fmt=serialization.PrivateFormat.TraditionalOpenSSL)
        self.create_with("dsa-pem", write("dsa.pem", traditional), identity=301)

    def test_dsa_reference_key_file(self):
        self.create_with("dsa-bin", write("dsa.bin", reference_key_file(KEYS["dsa"])), identity=301)

    def test_dsa_reference_key_file_encrypted(self):
        path = write("dsa-aes.bin", reference_key_file(KEYS["dsa"], PASSPHRASE))
        self.create_with("dsa-bin-aes", path, identity=301, passphrase=PASSPHRASE)


class Keygen(unittest.TestCase):
    """idctl keygen's files, read back here independently: privkey.bin byte for byte as this
    test's own writer of the reference format makes it (and decrypted here when encrypted),
    privkey.pem with `cryptography`; then the new key administers as a registered identity."""

    def keygen(self, name, *extra):
        out = os.path.join(NODE["work"], name)
        result = subprocess.run([IDCTL, "keygen", "--out", out, *extra], capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        for private in ("privkey.bin", "privkey.pem"):
            self.assertEqual(os.stat(os.path.join(out, private)).st_mode & 0o077, 0, private + " is not owner-only")
        return out

    def test_files_in_the_reference_formats(self):
        plain = self.keygen("kg-plain")
        with open(os.path.join(plain, "privkey.pem"), "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
        with open(os.path.join(plain, "privkey.bin"), "rb") as f:
            self.assertEqual(f.read(), reference_key_file(key))
        with open(os.path.join(plain, "pubkey.bin"), "rb") as f:
            # CNRI's Util.getBytesFromPublicKey sizes an RSA key's buffer one int larger than it
            # fills: its encodings end in 4 zero bytes (an empty field), and idnode writes them so.
            self.assertEqual(f.read(), hs_pubkey(key) + b"\0\0\0\0")
        again = subprocess.run([IDCTL, "keygen", "--out", plain], capture_output=True, text=True, timeout=60)
        self.assertNotEqual(again.returncode, 0)  # never over an existing key
        passphrase_file = write("kg-pass", PASSPHRASE + b"\n")
        sealed = self.keygen("kg-sealed", "--type", "dsa", "--passphrase-file", passphrase_file)
        with open(os.path.join(sealed, "privkey.pem"), "rb") as f:
            dsa_key = serialization.load_pem_private_key(f.read(), password=PASSPHRASE)
        with open(os.path.join(sealed, "privkey.bin"), "rb") as f:
            data = f.read()
        self.assertEqual(struct.unpack(">i", data[:4])[0], 4)
        at = 4
        (n,) = struct.unpack(">I", data[at:at + 4]); salt = data[at + 4:at + 4 + n]; at += 4 + n
        iterations, bits = struct.unpack(">ii", data[at:at + 8]); at += 8
        (n,) = struct.unpack(">I", data[at:at + 4]); iv = data[at + 4:at + 4 + n]; at += 4 + n
        (n,) = struct.unpack(">I", data[at:at + 4]); ciphertext = data[at + 4:at + 4 + n]
        aes_key = PBKDF2HMAC(algorithm=hashes.SHA1(), length=bits // 8, salt=salt, iterations=iterations).derive(PASSPHRASE)
        decryptor = Cipher(algorithms.AES(aes_key), modes.CBC(iv)).decryptor()
        unpadder = padding.PKCS7(128).unpadder()
        inner = unpadder.update(decryptor.update(ciphertext) + decryptor.finalize()) + unpadder.finalize()
        self.assertEqual(inner, reference_key_encoding(dsa_key))

    def test_sm2_keys_as_chinas_sdk_writes_them_then_administer(self):
        """--type sm2: PKCS#8 PEM (no privkey.bin: neither the reference nor the SDK has a binary
        SM2 form) and the SDK's HS_PUBKEY layout, checked here byte by byte with the public point
        computed from the private scalar in Python (sm2_sdk.py); then the key administers, its
        answers made on the SDK's "SM3" path."""
        import sm2_sdk
        out = os.path.join(NODE["work"], "kg-sm2")
        result = subprocess.run([IDCTL, "keygen", "--type", "sm2", "--out", out], capture_output=True, text=True,
                                timeout=60)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertFalse(os.path.exists(os.path.join(out, "privkey.bin")))
        private = os.path.join(out, "privkey.pem")
        self.assertEqual(os.stat(private).st_mode & 0o077, 0)
        with open(private, "rb") as f:
            text_pem = f.read().decode()
        self.assertIn("-----BEGIN PRIVATE KEY-----", text_pem)
        der = base64.b64decode("".join(l for l in text_pem.splitlines() if not l.startswith("-----")))
        # PKCS#8: id-ecPublicKey with the named curve sm2p256v1, then ECPrivateKey (version 1, d).
        self.assertIn(bytes.fromhex("06072a8648ce3d020106082a811ccf5501822d"), der)
        at = der.index(bytes.fromhex("0201010420")) + 5
        d = int.from_bytes(der[at:at + 32], "big")
        x, y = sm2_sdk._mul(d, sm2_sdk.G)
        with open(os.path.join(out, "pubkey.bin"), "rb") as f:
            value = f.read()
        spki = (bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d03420004") +
                x.to_bytes(32, "big") + y.to_bytes(32, "big"))
        b64 = base64.b64encode(spki).decode()
        pem_text = ("-----BEGIN PUBLIC KEY-----\r\n" +
                    "".join(b64[i:i + 76] + "\r\n" for i in range(0, len(b64), 76)) +
                    "-----END PUBLIC KEY-----\r\n").encode()
        self.assertEqual(value, struct.pack(">I", 11) + b"SM2_PUB_KEY" + b"\0\0" + struct.pack(">I", len(pem_text)) +
                         pem_text)
        again = subprocess.run([IDCTL, "keygen", "--type", "sm2", "--out", out], capture_output=True, timeout=60)
        self.assertNotEqual(again.returncode, 0)  # never over an existing key
        # Registered as 304 of the prefix handle (by the RSA admin), it administers.
        rc, log = idctl_admin("add", "0.NA/" + PREFIX, "--value", "104:HS_ADMIN:304:0.NA/" + PREFIX,
                              "--value", "304:HS_PUBKEY:@" + private,
                              key=write("rsa-for-sm2.pem", pem(KEYS["rsa"])))
        self.assertEqual(rc, 0, log)
        handle = PREFIX + "/made-by-sm2"
        rc, log = idctl_admin("create", handle, "--value", "1:URL:https://example.org/sm2", key=private, identity=304)
        self.assertEqual(rc, 0, log)
        self.assertTrue(resolves(handle))

    def test_a_new_key_administers_once_registered(self):
        made = self.keygen("kg-admin")
        rc, out = idctl_admin("add", "0.NA/" + PREFIX, "--value", "103:HS_ADMIN:303:0.NA/" + PREFIX,
                              "--value", "303:HS_PUBKEY:@" + os.path.join(made, "privkey.pem"),
                              key=write("rsa-for-keygen.pem", pem(KEYS["rsa"])))
        self.assertEqual(rc, 0, out)
        handle = PREFIX + "/made-by-keygen"
        rc, out = idctl_admin("create", handle, "--value", "1:URL:https://example.org/keygen",
                              key=os.path.join(made, "privkey.bin"), identity=303)
        self.assertEqual(rc, 0, out)
        self.assertTrue(resolves(handle))
        # idbench writes as that identity too (--key, the reference's file).
        out = subprocess.run(
            [IDBENCH, "run", "--protocol", "tcp", "--server", "127.0.0.1:%d" % NODE["handle"],
             "--pattern", PREFIX + "/SN{0..9}", "--seconds", "1", "--concurrency", "4", "--writes", "1.0",
             "--write-prefix", PREFIX, "--identity", "303:0.NA/" + PREFIX, "--key", os.path.join(made, "privkey.bin")],
            capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        codes = dict(re.findall(r"^write code (\d+): (\d+)$", out.stdout, re.M))
        self.assertGreater(int(codes.get("1", 0)), 5, out.stdout)
        self.assertEqual(set(codes), {"1"}, out.stdout)


class Refusals(unittest.TestCase):
    def test_another_key_is_not_the_identity(self):
        rc, out = idctl_admin("create", PREFIX + "/x-other", "--value", "1:URL:https://x",
                              key=write("other.pem", pem(KEYS["other"])))
        self.assertEqual(rc, 1, out)
        self.assertIn("AUTHENTICATION_FAILED", out.upper().replace(" ", "_"))
        self.assertFalse(resolves(PREFIX + "/x-other"))

    def test_a_dsa_key_for_the_rsa_identity_is_refused(self):
        rc, out = idctl_admin("create", PREFIX + "/x-mixed", "--value", "1:URL:https://x",
                              key=write("dsa2.pem", pem(KEYS["dsa"])), identity=300)
        self.assertEqual(rc, 1, out)
        self.assertFalse(resolves(PREFIX + "/x-mixed"))

    def test_a_wrong_passphrase_is_said_and_nothing_sent(self):
        path = write("rsa-aes2.bin", reference_key_file(KEYS["rsa"], PASSPHRASE))
        rc, out = idctl_admin("create", PREFIX + "/x-pass", "--value", "1:URL:https://x", key=path,
                              passphrase=b"wrong")
        self.assertEqual(rc, 2, out)
        self.assertIn("passphrase", out)
        rc, out = idctl_admin("create", PREFIX + "/x-pass", "--value", "1:URL:https://x", key=path)
        self.assertEqual(rc, 2, out)
        self.assertIn("passphrase", out)

    def test_a_damaged_key_file_is_said(self):
        good = reference_key_file(KEYS["rsa"])
        rc, out = idctl_admin("create", PREFIX + "/x-cut", "--value", "1:URL:https://x",
                              key=write("cut.bin", good[:len(good) // 2]))
        self.assertEqual(rc, 2, out)
        self.assertIn("truncated", out)


class PublicKeyAdministration(unittest.TestCase):
    def test_a_key_added_over_the_protocol_authenticates_until_it_is_removed(self):
        new_pem = write("new.pem", pem(KEYS["new"]))
        # Not yet an identity: index 302 holds no key.
        rc, out = idctl_admin("create", PREFIX + "/by-new", "--value", "1:URL:https://new",
                              key=new_pem, identity=302)
        self.assertEqual(rc, 1, out)
        # The RSA identity adds the new DSA key's HS_PUBKEY at 302.
        rc, out = idctl_admin("add", "0.NA/" + PREFIX, "--value", "302:HS_PUBKEY:@" + new_pem,
                              key=write("rsa-admin.pem", pem(KEYS["rsa"])))
        self.assertEqual(rc, 0, out)
        rc, out = idctl_admin("create", PREFIX + "/by-new", "--value", "1:URL:https://new",
                              key=new_pem, identity=302)
        self.assertEqual(rc, 0, out)
        self.assertTrue(resolves(PREFIX + "/by-new"))
        # Removed, it proves nothing more.
        rc, out = idctl_admin("remove", "0.NA/" + PREFIX, "--index", "302",
                              key=write("rsa-admin2.pem", pem(KEYS["rsa"])))
        self.assertEqual(rc, 0, out)
        rc, out = idctl_admin("create", PREFIX + "/by-new-2", "--value", "1:URL:https://new",
                              key=new_pem, identity=302)
        self.assertEqual(rc, 1, out)
        self.assertFalse(resolves(PREFIX + "/by-new-2"))


if __name__ == "__main__":
    IDNODE, IDCTL, IDBENCH = sys.argv[1], sys.argv[2], sys.argv[3]
    del sys.argv[1:4]
    unittest.main(verbosity=2)
