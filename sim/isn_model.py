"""Plain-Python model of the ISN function (RFC 6528 s3): SipHash-2-4 and ISN = M + F.

Written from the SipHash paper (Aumasson and Bernstein, 2012, s2); checked against the
published vectors in tests/test_tcp_isn_unit.py.  The engine tests use it to predict the
ISS a key gives, e.g. to choose a key that puts the ISS just below the wrap of 2**32.
"""

import struct

__all__ = ["siphash24", "isn_message", "reference_isn", "cookie_message", "reference_cookie",
           "MASK32", "MASK64"]

MASK64 = 2**64 - 1
MASK32 = 2**32 - 1


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & MASK64


def _sipround(v0: int, v1: int, v2: int, v3: int):
    v0 = (v0 + v1) & MASK64
    v1 = _rotl(v1, 13) ^ v0
    v0 = _rotl(v0, 32)
    v2 = (v2 + v3) & MASK64
    v3 = _rotl(v3, 16) ^ v2
    v0 = (v0 + v3) & MASK64
    v3 = _rotl(v3, 21) ^ v0
    v2 = (v2 + v1) & MASK64
    v1 = _rotl(v1, 17) ^ v2
    v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


def siphash24(key: bytes, message: bytes) -> int:
    """SipHash-2-4 of ``message`` under the 16-byte ``key`` (paper s2), as a 64-bit int."""
    k0 = int.from_bytes(key[:8], "little")
    k1 = int.from_bytes(key[8:], "little")
    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D,
         k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573]
    whole = len(message) // 8 * 8
    words = [int.from_bytes(message[i : i + 8], "little") for i in range(0, whole, 8)]
    words.append(int.from_bytes(message[whole:], "little") | ((len(message) & 0xFF) << 56))
    for m in words:
        v[3] ^= m
        for _ in range(2):  # c = 2 compression rounds
            v = list(_sipround(*v))
        v[0] ^= m
    v[2] ^= 0xFF
    for _ in range(4):  # d = 4 finalization rounds
        v = list(_sipround(*v))
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def isn_message(local_ip: int, local_port: int, remote_ip: int, remote_port: int) -> bytes:
    """The documented 12-byte PRF input: local IP, remote IP, local port, remote port."""
    return struct.pack("!IIHH", local_ip, remote_ip, local_port, remote_port)


def reference_isn(key: bytes, now_us: int, connection: dict) -> int:
    """RFC 6528 s3: ISN = M + F(...) mod 2**32, M = now_us >> 2 (before ``now_us`` wraps)."""
    prf = siphash24(key, isn_message(**connection)) & MASK32
    return ((now_us >> 2) + prf) & MASK32


def cookie_message(local_ip: int, local_port: int, remote_ip: int, remote_port: int,
                   salt: int) -> bytes:
    """A SYN cookie's 14-byte PRF input: the ISN's 12 bytes and the 16-bit salt."""
    return isn_message(local_ip, local_port, remote_ip, remote_port) + struct.pack("!H", salt)


def reference_cookie(key: bytes, connection: dict, period: int, mss_index: int) -> int:
    """The SYN cookie of ``connection`` (hdl/tcp/syn_cookie.py's layout)."""
    from toe.hdl.tcp import syn_cookie

    digest = siphash24(key, cookie_message(
        **connection, salt=syn_cookie.salt(period, mss_index))) & MASK32
    return syn_cookie.encode(period, mss_index, digest)
