"""Protobuf wire encoding by hand, for tests that speak proto/idnode/replication.proto without
generated code (the replication integration tests, the fuzz seeds): varints, fields (ints and
bools as varints, str/bytes length-delimited) and the stream's 4-byte big-endian length frames."""
import struct


def varint(n):
    out = b""
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out += bytes([byte | 0x80])
        else:
            return out + bytes([byte])


def field(number, value):
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    if isinstance(value, str):
        value = value.encode()
    return varint(number << 3 | 2) + varint(len(value)) + value


def frame(message):
    return struct.pack(">I", len(message)) + message
