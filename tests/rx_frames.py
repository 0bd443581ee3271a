"""Received frames for the RX unit tests: scapy-built, then bent into every case the RX
checks tell apart (docs/architecture.md "RX path in detail", hdl/rx/meta.py DropReason).

:func:`random_frame` returns one frame and a label naming the case.  The expected verdict
never comes from here: the tests ask :func:`sim.reference.classify` for it, and scapy for
the header fields (:func:`expected_fields`).
"""

import random
import struct

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Raw, raw

from toe.hdl.checksum import internet_checksum
from toe.sim.reference import parse_tcp_options

__all__ = ["OUR_MAC", "OUR_IP", "PEER_MAC", "PEER_IP", "random_frame", "expected_fields",
           "fix_ip_checksum", "fix_l4_checksum", "corner_frames"]

ETH = 14
OUR_MAC, OUR_IP = "02:00:00:00:00:02", "10.0.0.2"
PEER_MAC, PEER_IP = "02:00:00:00:00:01", "10.0.0.1"
BCAST_MAC = "ff:ff:ff:ff:ff:ff"


def _rand(rng, n):
    return bytes(rng.getrandbits(8) for _ in range(n))


# -- checksum repair after a mutation (RFC 1071: the field is the complement of the sum) ----


def fix_ip_checksum(frame: bytearray) -> bytearray:
    ihl = frame[ETH] & 15
    if ihl >= 5 and len(frame) >= ETH + 4 * ihl:
        frame[ETH + 10 : ETH + 12] = b"\0\0"
        frame[ETH + 10 : ETH + 12] = internet_checksum(
            bytes(frame[ETH : ETH + 4 * ihl])).to_bytes(2, "big")
    return frame


def _shorten(frame: bytearray, n: int) -> bytearray:
    """The frame with its IPv4 payload ``n`` bytes shorter (total length and the L4
    checksum redone; the IPv4 checksum is the caller's)."""
    total = int.from_bytes(frame[ETH + 2 : ETH + 4], "big") - n
    f = bytearray(frame[: ETH + total])
    f[ETH + 2 : ETH + 4] = total.to_bytes(2, "big")
    return fix_l4_checksum(f)


def fix_l4_checksum(frame: bytearray) -> bytearray:
    """Recompute the TCP (pseudo-header, RFC 9293 s3.1) or ICMP (RFC 792) checksum."""
    hlen = 4 * (frame[ETH] & 15)
    total = int.from_bytes(frame[ETH + 2 : ETH + 4], "big")
    at = ETH + hlen
    seg = bytearray(frame[at : ETH + total])
    if frame[ETH + 9] == 6 and len(seg) >= 18:
        seg[16:18] = b"\0\0"
        pseudo = bytes(frame[ETH + 12 : ETH + 20]) + struct.pack("!BBH", 0, 6, len(seg))
        frame[at + 16 : at + 18] = internet_checksum(pseudo + bytes(seg)).to_bytes(2, "big")
    elif frame[ETH + 9] == 1 and len(seg) >= 4:
        seg[2:4] = b"\0\0"
        frame[at + 2 : at + 4] = internet_checksum(bytes(seg)).to_bytes(2, "big")
    return frame


def insert_ip_options(frame: bytes, options: bytes) -> bytearray:
    """Splice IPv4 options (a multiple of 4 bytes) after the fixed header, fixing IHL,
    total length and the header checksum (the TCP pseudo-header does not include them)."""
    assert len(options) % 4 == 0 and len(options) <= 40
    f = bytearray(frame[: ETH + 20] + options + frame[ETH + 20 :])
    f[ETH] = 0x40 | (5 + len(options) // 4)
    total = int.from_bytes(f[ETH + 2 : ETH + 4], "big") + len(options)
    f[ETH + 2 : ETH + 4] = total.to_bytes(2, "big")
    return fix_ip_checksum(f)


# -- TCP option lists ------------------------------------------------------------------------


def tcp_option_bytes(rng: random.Random) -> bytes:
    """Option bytes of every kind (RFC 9293 s3.2, RFC 7323, RFC 2018), sometimes malformed
    (MUST-7) or unknown (MUST-6), padded to a multiple of 4 and at most 40 bytes."""
    parts = []
    budget = rng.choice([4, 8, 12, 20, 40])
    while True:
        r = rng.random()
        if r < 0.15:
            p = b"\x01"
        elif r < 0.3:
            p = b"\x02\x04" + rng.getrandbits(16).to_bytes(2, "big")
        elif r < 0.4:
            p = bytes([3, 3, rng.choice([0, 7, 14, 15, 255])])
        elif r < 0.5:
            p = b"\x04\x02"
        elif r < 0.62:
            p = b"\x08\x0a" + _rand(rng, 8)
        elif r < 0.72:
            n = rng.randint(1, 4)
            p = bytes([5, 2 + 8 * n]) + _rand(rng, 8 * n)
        elif r < 0.8:  # unknown kind, or a known kind with an odd length: skipped
            size = rng.randint(2, 6)
            p = bytes([rng.choice([2, 3, 8, 30, 254]), size]) + _rand(rng, size - 2)
        elif r < 0.86:  # illegal length: below 2 or past the end
            p = bytes([rng.choice([2, 5, 8, 77]), rng.choice([0, 1, 41, 255])])
        elif r < 0.9:
            p = b"\x00" + _rand(rng, rng.randint(0, 3))  # EOL then anything
        elif r < 0.94:
            p = bytes([rng.choice([2, 8, 99])])  # a kind without its length byte at the end
        else:
            p = _rand(rng, rng.randint(1, 6))
        if sum(map(len, parts)) + len(p) > budget:
            break
        parts.append(p)
    body = b"".join(parts)
    pad = (-len(body)) % 4
    return body + rng.choice([b"\0", b"\x01"]) * pad


# -- frames ----------------------------------------------------------------------------------


def _eth(rng, dst=OUR_MAC):
    return Ether(dst=dst, src=f"02:00:00:00:{rng.randint(0, 255):02x}:{rng.randint(0, 255):02x}")


def _peer_ip(rng):
    return f"10.0.0.{rng.choice([1, 3, 77, 200])}" if rng.random() < 0.8 else "192.168.7.9"


def tcp_frame(rng: random.Random, payload: int | None = None, options: bytes | None = None,
              ip_options: bytes = b"", dst=OUR_IP, dst_mac=OUR_MAC) -> bytearray:
    if options is None:
        options = tcp_option_bytes(rng) if rng.random() < 0.5 else b""
    if payload is None:
        payload = rng.choice([0, 0, 1, 2, 3, 17, 100, 511, 1400])
    seg = TCP(sport=rng.getrandbits(16), dport=rng.getrandbits(16), seq=rng.getrandbits(32),
              ack=rng.getrandbits(32), flags=rng.getrandbits(8), window=rng.getrandbits(16),
              urgptr=rng.getrandbits(16), dataofs=5 + len(options) // 4)
    pkt = (_eth(rng, dst_mac) / IP(src=_peer_ip(rng), dst=dst, ttl=rng.randint(1, 255),
                                   id=rng.getrandbits(16), flags=rng.choice([0, 2]),
                                   tos=rng.getrandbits(8))
           / seg / Raw(options + _rand(rng, payload)))
    frame = bytearray(raw(pkt))
    return insert_ip_options(frame, ip_options) if ip_options else frame


def icmp_frame(rng: random.Random, type_=8, code=0, payload=None, dst=OUR_IP,
               dst_mac=OUR_MAC, ip_options: bytes = b"") -> bytearray:
    if payload is None:
        payload = rng.choice([0, 1, 7, 56, 333, 1472])
    pkt = (_eth(rng, dst_mac) / IP(src=_peer_ip(rng), dst=dst, ttl=rng.randint(1, 255))
           / ICMP(type=type_, code=code, id=rng.getrandbits(16), seq=rng.getrandbits(16))
           / Raw(_rand(rng, payload)))
    frame = bytearray(raw(pkt))
    return insert_ip_options(frame, ip_options) if ip_options else frame


ICMP_ERROR_BENDS = ("ihl", "proto", "src", "frag", "short")


def icmp_error_frame(rng: random.Random, type_=None, code=None, mtu=None, quote=None,
                     bend=None, dst=OUR_IP, dst_mac=OUR_MAC,
                     ip_options: bytes = b"") -> bytearray:
    """An ICMP error (RFC 792: destination unreachable, time exceeded, parameter
    problem) from a router, quoting a TCP segment we sent to a peer, with ``quote``
    bytes of the quoted segment's TCP header and data (8, RFC 792's minimum, or more as
    RFC 1812 s4.3.2.3 routers send).  ``bend`` spoils the quote in one way
    (:data:`ICMP_ERROR_BENDS`): IP options in the quoted header, not TCP, not our
    source address, a later fragment, or fewer than 8 bytes of TCP."""
    if type_ is None:
        type_ = rng.choice([3, 3, 11, 12])
    if code is None:
        code = rng.randint(0, 15) if type_ == 3 else rng.randint(0, 2)
    if quote is None:
        quote = rng.choice([8, 8, 20, 32, 60])
    sent = (IP(src=OUR_IP, dst=_peer_ip(rng), flags="DF", ttl=rng.randint(1, 64))
            / TCP(sport=rng.getrandbits(16), dport=rng.getrandbits(16),
                  seq=rng.getrandbits(32), ack=rng.getrandbits(32), flags="PA")
            / Raw(_rand(rng, 40)))
    if bend == "proto":
        sent[IP].proto = 17
    elif bend == "src":
        sent[IP].src = "10.0.0.99"
    elif bend == "frag":
        sent[IP].frag = rng.randint(1, 0x1FFF)
    quoted = bytes(raw(sent))
    if bend == "ihl":
        quoted = bytes(insert_ip_options(bytes(14) + quoted, b"\x01" * 4)[14:])
    keep = 20 + (4 * (quoted[0] & 15) - 20) + (rng.randint(0, 7) if bend == "short" else quote)
    body = quoted[:keep]
    if mtu is None:
        mtu = rng.choice([0, 68, 576, 1280, 1400, 1492]) if (type_, code) == (3, 4) else 0
    header = struct.pack("!BBHHH", type_, code, 0, 0, mtu)
    message = bytearray(header + body)
    message[2:4] = internet_checksum(bytes(message)).to_bytes(2, "big")
    router = rng.choice(["10.0.0.1", "10.0.0.254", "192.0.2.7"])
    pkt = _eth(rng, dst_mac) / IP(src=router, dst=dst, ttl=rng.randint(1, 255)) / Raw(message)
    frame = bytearray(raw(pkt))
    frame[ETH + 9] = 1  # protocol ICMP (scapy left it 0 for a Raw payload)
    frame = fix_ip_checksum(frame)
    return insert_ip_options(frame, ip_options) if ip_options else frame


def arp_frame(rng: random.Random, op=None, dst_mac=BCAST_MAC, **fields) -> bytearray:
    arp = ARP(op=rng.choice([1, 2]) if op is None else op, hwsrc=PEER_MAC, psrc=_peer_ip(rng),
              pdst=OUR_IP if rng.random() < 0.8 else "10.0.0.9", **fields)
    return bytearray(raw(_eth(rng, dst_mac) / arp))


def ip_options(rng: random.Random) -> bytes:
    words = rng.choice([1, 2, 3, 5, 10])
    kind = rng.random()
    if kind < 0.4:
        return b"\x01" * (4 * words)
    if kind < 0.7:  # record route with room for (words*4 - 3) / 4 addresses, then EOL pad
        body = bytes([7, 4 * words - 1, 4]) + bytes(4 * words - 3)
        return body[: 4 * words - 1] + b"\0"
    return _rand(rng, 4 * words)  # the parser skips options without reading them


def _ip_mutation(rng: random.Random) -> tuple[bytearray, str]:
    """A TCP or ICMP frame with one IPv4 header field bent, checksum redone unless the
    checksum itself is the case (RFC 791 s3.1, RFC 1122 s3.2.1)."""
    f = tcp_frame(rng) if rng.random() < 0.5 else icmp_frame(rng)
    r = rng.randrange(13)
    if r == 0:
        f[ETH] = (rng.choice([0, 5, 6, 15]) << 4) | (f[ETH] & 15)
        return fix_ip_checksum(f), "ip version"
    if r == 1:
        f[ETH] = 0x40 | rng.randint(0, 4)
        return f, "ip ihl<5"
    if r == 2:
        f[ETH + 10] ^= 1 << rng.randrange(8)
        return f, "ip bad checksum"
    if r == 3:
        total = int.from_bytes(f[ETH + 2 : ETH + 4], "big")
        new = rng.choice([0, 19, 4 * (f[ETH] & 15) - 1, total + 1, total + 300, 0xFFFF])
        f[ETH + 2 : ETH + 4] = max(new, 0).to_bytes(2, "big")
        return fix_ip_checksum(f), "ip total length"
    if r == 4:
        total = int.from_bytes(f[ETH + 2 : ETH + 4], "big")
        new = rng.randint(4 * (f[ETH] & 15), total)  # shorter: the rest reads as padding
        f[ETH + 2 : ETH + 4] = new.to_bytes(2, "big")
        return fix_ip_checksum(f), "ip total length shorter"
    if r == 5:
        frag = rng.choice([0x2000, 0x0001, 0x1FFF, 0x6000, 0x4001, 0x8000])
        f[ETH + 6 : ETH + 8] = (frag | (int.from_bytes(f[ETH + 6 : ETH + 8], "big")
                                        & 0x4000)).to_bytes(2, "big")
        return fix_ip_checksum(f), "ip fragment"
    if r == 6:
        dst = rng.choice(["10.0.0.3", "10.0.1.2", "224.0.0.1", "10.0.0.0", "0.0.0.0",
                          "255.255.255.255", "10.0.0.255", "10.0.0.2"])
        f[ETH + 16 : ETH + 20] = bytes(map(int, dst.split(".")))
        return fix_l4_checksum(fix_ip_checksum(f)), "ip dst"
    if r == 7:
        src = rng.choice(["255.255.255.255", "10.0.0.255", "224.1.2.3", "239.255.255.255",
                          "0.0.0.0", "127.0.0.1", "127.255.0.9", "10.0.0.0", "126.0.0.1"])
        f[ETH + 12 : ETH + 16] = bytes(map(int, src.split(".")))
        return fix_l4_checksum(fix_ip_checksum(f)), "ip src"
    if r == 8:
        f[ETH + 9] = rng.choice([0, 2, 17, 41, 255])
        return fix_ip_checksum(f), "ip proto"
    if r == 9:  # the frame ends inside the fixed IPv4 header or inside its options
        if rng.random() < 0.5:
            f = insert_ip_options(bytes(f), ip_options(rng))
        ihl = f[ETH] & 15
        return f[: rng.randint(ETH, ETH + 4 * ihl - 1)], "ip truncated"
    if r == 10:  # link-layer broadcast with a unicast or broadcast IP (RFC 1122 s3.3.6)
        f[0:6] = b"\xff" * 6
        if rng.random() < 0.5:
            f[ETH + 16 : ETH + 20] = bytes([10, 0, 0, 255])
            f = fix_l4_checksum(fix_ip_checksum(f))
        return f, "eth broadcast"
    if r == 11:
        return insert_ip_options(bytes(f), ip_options(rng)), "ip options"
    f = insert_ip_options(bytes(f), ip_options(rng))
    f[ETH + 20 + rng.randrange(4 * (f[ETH] & 15) - 20)] ^= 0x10  # option byte: checksum bad
    return f, "ip options bad checksum"


def _l4_mutation(rng: random.Random) -> tuple[bytearray, str]:
    """A TCP or ICMP segment bent in its own header (RFC 792, RFC 9293 s3.1)."""
    r = rng.randrange(11)
    if r == 0:
        f = tcp_frame(rng)
        f[ETH + 20 + rng.randrange(len(f) - ETH - 20)] ^= 1 << rng.randrange(8)
        return f, "tcp bad checksum"
    if r == 1:
        f = tcp_frame(rng, options=b"")
        at = ETH + 20 + 12
        f[at] = (rng.choice([0, 1, 4, 15]) << 4) | (f[at] & 15)
        return fix_l4_checksum(f), "tcp data offset"
    if r == 2:  # fewer than 20 bytes of TCP header inside the IPv4 total length
        f = tcp_frame(rng, payload=0, options=b"")
        n = rng.randint(0, 19)
        f[ETH + 2 : ETH + 4] = (20 + n).to_bytes(2, "big")
        return fix_l4_checksum(fix_ip_checksum(f)), "tcp short"
    if r == 3:
        f = tcp_frame(rng, options=tcp_option_bytes(rng) or b"\x01\x01\x01\x01")
        return f, "tcp options"
    if r == 4:
        f = tcp_frame(rng, dst=rng.choice(["10.0.0.255", "255.255.255.255"]),
                      dst_mac=rng.choice([OUR_MAC, BCAST_MAC]))
        return f, "tcp broadcast"
    if r == 5:
        f = icmp_frame(rng, type_=rng.choice([0, 3, 5, 11, 13, 17, 255]), code=rng.randint(0, 3))
        return f, "icmp not echo"
    if r == 6:
        f = icmp_frame(rng, code=rng.randint(1, 255))
        return f, "icmp echo code"
    if r == 7:
        f = icmp_frame(rng)
        f[ETH + 20 + rng.randrange(len(f) - ETH - 20)] ^= 1 << rng.randrange(8)
        return f, "icmp bad checksum"
    if r == 8:
        f = icmp_frame(rng, payload=0)
        f[ETH + 2 : ETH + 4] = (20 + rng.randint(0, 7)).to_bytes(2, "big")
        return fix_l4_checksum(fix_ip_checksum(f)), "icmp short"
    if r == 9:
        f = icmp_frame(rng, dst=rng.choice(["10.0.0.255", "255.255.255.255"]),
                       dst_mac=rng.choice([OUR_MAC, BCAST_MAC]))
        return f, "icmp broadcast"
    f = bytearray(raw(_eth(rng) / IP(src=_peer_ip(rng), dst=OUR_IP)
                      / UDP(sport=rng.getrandbits(16), dport=53) / Raw(_rand(rng, 30))))
    return f, "udp"


def _link_mutation(rng: random.Random) -> tuple[bytearray, str]:
    """Ethernet and ARP cases (IEEE 802.3 / RFC 894, RFC 826)."""
    r = rng.randrange(9)
    if r == 0:
        return bytearray(_rand(rng, rng.randint(1, 13))), "runt"  # a beat is never empty
    if r == 1:
        f = tcp_frame(rng, payload=0)
        return bytearray(f[: rng.randint(14, 33)]), "eth short"
    if r == 2:
        f = tcp_frame(rng, dst_mac=rng.choice(["02:00:00:00:00:03", "01:00:5e:00:00:01",
                                               "03:00:00:00:00:02", "02:00:00:00:01:02"]))
        return f, "mac dst"
    if r == 3:
        pkt = _eth(rng) / Dot1Q(vlan=rng.randint(1, 4094)) / IP(src=PEER_IP, dst=OUR_IP) / TCP()
        return bytearray(raw(pkt)), "vlan"
    if r == 4:
        f = tcp_frame(rng, payload=10)
        f[12:14] = rng.choice([0x86DD, 0x88CC, 0x0000, 0x0805, 0x0807, 0x0801,
                               rng.getrandbits(16)]).to_bytes(2, "big")
        return f, "ethertype"
    if r == 5:
        return arp_frame(rng, dst_mac=rng.choice([BCAST_MAC, OUR_MAC])), "arp"
    if r == 6:
        bad = rng.choice([{"op": rng.choice([0, 3, 4, 256])}, {"hwtype": 6}, {"ptype": 0x86DD},
                          {"hwlen": 8}, {"plen": 16}])
        f = arp_frame(rng, **bad)
        return bytearray(f[:42]), "arp malformed"
    if r == 7:
        f = arp_frame(rng)
        return bytearray(f[: rng.randint(14, 41)]), "arp short"
    f = tcp_frame(rng, payload=rng.choice([1461, 1500, 2000]))
    return f, "oversize"


def random_frame(rng: random.Random) -> tuple[bytes, str]:
    """One frame, about half of them valid, with Ethernet padding sometimes added."""
    r = rng.random()
    if r < 0.22:
        f, label = tcp_frame(rng), "tcp"
        if rng.random() < 0.3:
            f, label = insert_ip_options(bytes(f), ip_options(rng)), "tcp ip options"
    elif r < 0.32:
        f, label = icmp_frame(rng), "icmp echo"
        if rng.random() < 0.3:
            f, label = insert_ip_options(bytes(f), ip_options(rng)), "icmp ip options"
    elif r < 0.38:
        f, label = arp_frame(rng), "arp"
    elif r < 0.44:
        bend = rng.choice((None, None, None) + ICMP_ERROR_BENDS)
        f, label = icmp_error_frame(rng, bend=bend), f"icmp error {bend or ''}"
        if rng.random() < 0.2:
            f, label = insert_ip_options(bytes(f), ip_options(rng)), label + " ip options"
    elif r < 0.62:
        f, label = _ip_mutation(rng)
    elif r < 0.86:
        f, label = _l4_mutation(rng)
    elif r < 0.96:
        f, label = _link_mutation(rng)
    else:  # a valid frame with one random bit flipped anywhere
        f, label = tcp_frame(rng) if rng.random() < 0.5 else icmp_frame(rng), "bit flip"
        f[rng.randrange(len(f))] ^= 1 << rng.randrange(8)
    if len(f) >= ETH and rng.random() < 0.4:  # padding past the IPv4 total length
        f += bytes(max(0, 60 - len(f))) + _rand(rng, rng.choice([0, 0, 1, 5, 40]))
    return bytes(f), label


def corner_frames() -> list[tuple[bytes, str]]:
    """Hand-made frames at the edges of each check."""
    rng = random.Random(791)
    out = []
    f = tcp_frame(rng, payload=1460, options=b"")
    out.append((bytes(f), "largest TCP segment (1514 bytes)"))
    out.append((bytes(f) + b"\0", "one byte over the largest frame"))
    out.append((bytes(13), "13 bytes"))
    out.append((bytes.fromhex(OUR_MAC.replace(":", "")) + bytes(8), "Ethernet header only"))
    f = tcp_frame(rng, payload=0, options=b"")
    out.append((bytes(f[:33]), "IPv4 frame of 33 bytes"))
    f = tcp_frame(rng, options=b"\x01" * 40, ip_options=b"\x01" * 40, payload=5)
    out.append((bytes(f), "60-byte IPv4 header and 60-byte TCP header"))
    f = tcp_frame(rng, options=b"\x02\x04\x05\xb4" + b"\x08\x0a" + bytes(range(8))
                  + b"\x01\x03\x03\x0e" + b"\x04\x02\x01\x01"
                  + b"\x05\x12" + bytes(range(16)) + b"\x01\x00", ip_options=b"\x01" * 40,
                  payload=0)
    out.append((bytes(f), "every option kind behind 40 bytes of IP options"))
    f = tcp_frame(rng, options=b"\x05\x0a" + bytes(8) + b"\x05\x12" + bytes(range(16)) + b"\0\0")
    out.append((bytes(f), "two SACK options: the last one counts"))
    f = tcp_frame(rng, options=b"\x01\x01\x01\x02")
    out.append((bytes(f), "MSS kind as the last byte, no length (MUST-7)"))
    f = tcp_frame(rng, options=b"\x08\x0b" + bytes(10))
    out.append((bytes(f), "timestamps of length 11 in 12 bytes: skipped"))
    f = tcp_frame(rng, options=b"\x08\x0d" + bytes(10))
    out.append((bytes(f), "option length past the data offset (MUST-7)"))
    f = tcp_frame(rng, payload=0, options=b"")
    f[ETH + 2 : ETH + 4] = (20 + 20).to_bytes(2, "big")
    out.append((bytes(fix_ip_checksum(f)), "TCP header exactly at total length"))
    f = icmp_frame(rng, payload=0)
    out.append((bytes(f), "ICMP echo with no data (8 bytes)"))
    f = icmp_frame(rng, payload=1472)
    out.append((bytes(f), "largest ICMP echo"))
    f = icmp_frame(rng, payload=1473)
    out.append((bytes(f), "ICMP echo one byte too large"))
    f = icmp_frame(rng, payload=3, ip_options=b"\x01" * 40)
    out.append((bytes(f), "ICMP echo with 40 bytes of IP options"))
    out.append((bytes(f[:73]), "IHL 15, the frame ends one byte before the header does"))
    out.append((bytes(f[:74]), "IHL 15, the frame ends with the header"))
    f = icmp_error_frame(rng, type_=3, code=4, mtu=1280, quote=8)
    out.append((bytes(f), "fragmentation needed quoting 8 bytes (36-byte message)"))
    out.append((bytes(fix_ip_checksum(_shorten(f, 1))), "ICMP error of 35 bytes"))
    f = icmp_error_frame(rng, type_=3, code=4, mtu=1280, quote=8, ip_options=b"\x01" * 40)
    out.append((bytes(f), "ICMP error behind 40 bytes of IP options"))
    f = icmp_error_frame(rng, type_=4, code=0, quote=8)
    out.append((bytes(f), "source quench (RFC 9293 MUST-55: ignored)"))
    f = icmp_error_frame(rng, type_=11, code=0, dst="10.0.0.255", dst_mac=BCAST_MAC)
    out.append((bytes(f), "time exceeded to the subnet broadcast"))
    f = arp_frame(rng)
    out.append((bytes(f[:42]), "ARP of exactly 42 bytes"))
    out.append((bytes(f[:41]), "ARP of 41 bytes"))
    f = tcp_frame(rng, payload=30, options=b"")
    f[ETH + 2 : ETH + 4] = (len(f) - ETH).to_bytes(2, "big")
    f += bytes(20)
    out.append((bytes(f), "total length equal to the frame, then padding"))
    return out


# -- what scapy reads in a frame -------------------------------------------------------------


def _mac_int(text: str) -> int:
    return int(text.replace(":", ""), 16)


def _ip_int(text: str) -> int:
    return int.from_bytes(bytes(map(int, text.split("."))), "big")


def expected_fields(frame: bytes, verdict_name: str) -> dict:
    """The rx_meta_layout fields that matter for an accepted frame, read by scapy.

    ``verdict_name`` is "ARP", "ICMP_ECHO" or "TCP"; the TCP options come from
    :func:`sim.reference.parse_tcp_options`."""
    eth = Ether(frame)
    out = {"frame_len": len(frame), "eth_src": _mac_int(eth.src)}
    if verdict_name == "ARP":
        arp = ARP(frame[ETH:])
        out.update(arp_oper=arp.op, arp_sha=_mac_int(arp.hwsrc), arp_spa=_ip_int(arp.psrc),
                   arp_tpa=_ip_int(arp.pdst))
        return out
    ip = IP(frame[ETH:])
    out.update(ip_src=_ip_int(ip.src), ip_dst=_ip_int(ip.dst), ip_ihl=ip.ihl, ip_len=ip.len,
               ip_ttl=ip.ttl, ip_ecn=ip.tos & 3, ip_csum=ip.chksum)
    l4 = frame[ETH + 4 * ip.ihl : ETH + ip.len]
    if verdict_name == "ICMP_ECHO":
        out["icmp_csum"] = ICMP(l4).chksum
        return out
    if verdict_name == "ICMP_ERROR":  # the quoted segment, seen from the peer's side
        quote = IP(l4[8:28])
        sport, dport, seq = struct.unpack("!HHI", l4[28:36])
        out.update(ip_src=_ip_int(quote.dst), tcp_sport=dport, tcp_dport=sport,
                   tcp_seq=seq, tcp_flags=0, tcp_payload_len=0, icmp_type=l4[0],
                   icmp_code=l4[1], icmp_mtu=int.from_bytes(l4[6:8], "big"))
        return out
    seg = TCP(l4)
    out.update(tcp_sport=seg.sport, tcp_dport=seg.dport, tcp_seq=seg.seq, tcp_ack=seg.ack,
               tcp_doff=seg.dataofs, tcp_flags=int(seg.flags), tcp_window=seg.window,
               tcp_urgent=seg.urgptr, tcp_payload_len=len(l4) - 4 * seg.dataofs)
    opts = parse_tcp_options(l4[20 : 4 * seg.dataofs])
    out["tcp_options"] = {
        "mss_valid": int(opts["mss"] is not None), "mss": opts["mss"] or 0,
        "wscale_valid": int(opts["wscale"] is not None), "wscale": opts["wscale"] or 0,
        "sack_permitted": int(opts["sack_permitted"]),
        "ts_valid": int(opts["ts"] is not None),
        "ts_val": opts["ts"][0] if opts["ts"] else 0,
        "ts_ecr": opts["ts"][1] if opts["ts"] else 0,
        "sack": opts["sack"],
    }
    return out
