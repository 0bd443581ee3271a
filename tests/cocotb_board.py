"""Whole-board scenarios at the RGMII pins (sim/rgmii_bench.py, sim/board_sim.py).

The board top (``BoardTop(board, config, simulation=True)``) is driven by cocotbext-eth's
RGMII models on every port: a peer on the network port (port 0), and the host driver
(:class:`host.api.Engine`) over the host link (EtherType 0x88B5 frames: port 1 of the
Colorlight i9, port 0 shared with the network on the ECPIX-5).  ``TOE_BOARD`` names the
board.  Every frame the board sends must carry a valid preamble and FCS and no TX_ER
(checked by the bench at the pins, asserted at the end of each test).
"""

import json
import os
import struct
import sys
from pathlib import Path

import cocotb
from cocotb.simtime import get_sim_time
from cocotb.triggers import Timer, with_timeout
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import ARP

from toe.hdl.csr_map import REGISTERS
from toe.host.api import Engine
from toe.host.packet_transport import ETHERTYPE
from toe.host.socket_transport import Message
from toe.sim.peer import Peer, checksums_ok, ip_str, mac_str, tcp_payload
from toe.sim.rgmii_bench import RGMII_NS, BoardBench, HostLinkTransport
from toe.sim.tcp_peer import ReactivePeer, flags_of
from toe.sim.testbench import load_config

BOARD = os.environ.get("TOE_BOARD", "colorlight-i9")
#: Line rate of TCP payload at MSS 1460 on 1000BASE-T, in bytes per 8 ns cycle:
#: 1460 / (1460 + 20 TCP + 20 IP + 14 Ethernet + 4 FCS + 8 preamble + 12 gap).
LINE_RATE_MSS_1460 = 1460 / 1538


async def start(dut):
    config = load_config()
    bench = BoardBench(dut, BOARD, config)
    await bench.reset()
    await bench.core_cycles(200)  # the engine empties its tables after reset
    return bench, config


def save(bench, name):
    """Every frame at each port so far: ``<artifacts>/<test>/port<N>.pcap``."""
    directory = Path(os.environ.get("TOE_ARTIFACTS", ".")) / name
    directory.mkdir(parents=True, exist_ok=True)
    bench.write_pcaps(directory)


def finish(bench):
    save(bench, sys._getframe(1).f_code.co_name)
    errors = bench.errors()
    assert not errors, "; ".join(errors[:5])


async def reply_to(bench, match, timeout_ns=200_000):
    """The first frame from the board on the network port that ``match`` accepts
    (announcements and other frames before it are passed over)."""
    deadline = get_sim_time("ns") + timeout_ns
    while True:
        frame = await bench.net.recv(max(1.0, deadline - get_sim_time("ns")))
        if match(frame.ether):
            return frame


@cocotb.test()
async def test_arp_request_answered(dut):
    """RFC 826 "Packet Reception": an ARP request for the board's protocol address,
    sent at the network port's RGMII pins, is answered with a reply (op 2) that gives
    the board's hardware address to the requester, unicast to it."""
    bench, config = await start(dut)
    peer = Peer(config)
    bench.net.send(peer.arp_request())
    frame = await reply_to(bench, lambda e: ARP in e and e[ARP].op == 2)
    arp = frame.ether[ARP]
    assert frame.ether.dst == peer.mac and frame.ether.src == mac_str(config.mac_addr)
    assert arp.hwsrc == mac_str(config.mac_addr) and arp.psrc == ip_str(config.ip_addr)
    assert arp.hwdst == peer.mac and arp.pdst == peer.ip
    assert len(frame.data) == 60  # padded to the minimum frame (IEEE 802.3 s4.2.3.3)
    finish(bench)


@cocotb.test()
async def test_icmp_echo_answered(dut):
    """RFC 792 "Echo or Echo Reply Message" (RFC 1122 s3.2.2.6): an echo request to
    the board is answered with an echo reply carrying the same identifier, sequence
    number and data, with valid IPv4 and ICMP checksums, back to the sender."""
    bench, config = await start(dut)
    peer = Peer(config)
    data = bytes(range(256)) * 4  # a 1,066-byte frame: many beats through the MAC
    bench.net.send(peer.ping(data, ident=0x4242, seq=7))
    frame = await reply_to(bench, lambda e: ICMP in e and e[ICMP].type == 0)
    reply = frame.ether
    assert reply[IP].dst == peer.ip and reply[IP].src == ip_str(config.ip_addr)
    assert reply[ICMP].id == 0x4242 and reply[ICMP].seq == 7
    assert bytes(reply[ICMP].payload) == data
    assert checksums_ok(reply)
    finish(bench)


@cocotb.test()
async def test_host_link_hello_and_registers(dut):
    """docs/boards.md "The host link": HELLO is answered with the board's
    configuration as JSON plus ``"board"``; a CSRR is answered by a CSRV of the
    register (``id``), after the messages before it; frames of another EtherType or
    for another address are ignored and counted (STATS ``frames_ignored``)."""
    bench, config = await start(dut)
    host = HostLinkTransport(bench, config)
    hello = await host.hello()
    assert hello["board"] == BOARD
    assert host.hello_config(hello) == config
    ident = await host.read_register(REGISTERS["id"][0])
    assert ident != 0
    # A host-link frame for another board: ignored.
    other = bytes.fromhex("020000000077") + host.host_mac + struct.pack("!H", ETHERTYPE)
    bench.host_port.send(other + struct.pack("<BH", Message.HELLO, 0))
    await Timer(20_000, "ns")
    stats = await host.stats()
    assert stats["frames_ignored"] >= 1, stats
    assert stats["frames_in"] >= 3 and stats["frames_bad"] == 0, stats
    finish(bench)


@cocotb.test()
async def test_tcp_connection_over_host_link(dut):
    """A whole connection opened by the host driver over the host link (RFC 9293
    s3.5 three-way handshake, s3.10.7 data both ways, s3.6 close from both ends and
    TIME-WAIT until the id is released), against a peer on the network port; then a
    passive open (the driver listens, the peer connects) echoing a request.  The data
    arrive byte-exact at both ends."""
    bench, config = await start(dut)
    host = HostLinkTransport(bench, config)
    engine = Engine(host, host.hello_config(await host.hello()))
    await engine.write_keys()
    peer = ReactivePeer(bench.net, config)

    # Active open from the host: ARP for the peer, SYN, SYN-ACK, ACK.
    theirs = peer.accept_from(port=5001, engine_port=40001)
    conn = await engine.connect(peer.ip, 5001, local_port=40001)
    request = bytes((i * 7 + 3) & 0xFF for i in range(5000))
    conn.write(request)
    await conn.drain()
    await theirs.wait(lambda: len(theirs.received) >= len(request), 20_000_000)
    save(bench, "test_tcp_connection_over_host_link")
    bad = [s for s in theirs.segments if not checksums_ok(s)]
    assert not bad, f"{len(bad)} segments with a bad checksum, first {bad[0]!r}"
    assert bytes(theirs.received) == request
    answer = bytes((i * 13 + 1) & 0xFF for i in range(7000))
    theirs.send(answer)
    assert await conn.readexactly(len(answer)) == answer
    # Close: the host's FIN first, then the peer's; TIME-WAIT, then the id is free.
    await conn.shutdown()
    await theirs.wait(lambda: theirs.fin_received.is_set(), 5_000_000)
    theirs.close()
    assert await conn.read() == b""
    await conn.close()
    await conn.wait_closed()
    assert all("R" not in flags_of(s) for s in theirs.segments)

    # Passive open: the peer connects to the driver's listener.
    listener = await engine.listen(80)
    theirs = peer.connect(port=40000, engine_port=80)
    conn = await listener.accept()
    theirs.send(b"GET / HTTP/1.0\r\n\r\n")
    line = await conn.readuntil(b"\r\n\r\n")
    conn.write(b"HTTP/1.0 200 OK\r\n\r\n" + line)
    await conn.close()
    await theirs.wait(lambda: theirs.fin_received.is_set(), 5_000_000)
    assert bytes(theirs.received) == b"HTTP/1.0 200 OK\r\n\r\nGET / HTTP/1.0\r\n\r\n"
    theirs.close()
    await conn.wait_closed()
    finish(bench)


@cocotb.test()
async def test_goodput(dut):
    """Goodput at 1 Gbit/s each way, in cycles of the 125 MHz RGMII clock, against the
    line rate at MSS 1460 (1460 / 1538 bytes a cycle): the driver writes N bytes that
    the peer receives (board TX), and the peer sends N bytes that the driver reads
    (board RX), application to application, byte-exact.  Writes ``goodput.json``."""
    bench, config = await start(dut)
    n = int(os.environ.get("TOE_GOODPUT_BYTES", "32768"))
    host = HostLinkTransport(bench, config)
    engine = Engine(host, host.hello_config(await host.hello()))
    await engine.write_keys()
    peer = ReactivePeer(bench.net, config)
    theirs = peer.accept_from(port=5001, engine_port=40002)
    conn = await engine.connect(peer.ip, 5001, local_port=40002)
    conn.set_nodelay()
    data = bytes((i * 31 + i // 256) & 0xFF for i in range(n))

    net_sent_before = len(bench.ports[0].sent)
    started = get_sim_time("ns")
    conn.write(data)
    await theirs.wait(lambda: len(theirs.received) >= n, 200_000_000)
    tx_ns = get_sim_time("ns") - started
    save(bench, "test_goodput")
    tx_exact = bytes(theirs.received) == data
    segments = [f for f in bench.ports[0].sent[net_sent_before:]
                if f.ether.haslayer("TCP") and tcp_payload(f.ether)]
    largest = max(len(tcp_payload(f.ether)) for f in segments)

    started = get_sim_time("ns")
    theirs.send(data)
    try:
        got = await with_timeout(conn.readexactly(n), 3_000_000, "ns")
    except TimeoutError:
        got = b""
        dut._log.warning("network to host: %d of %d bytes reached the driver in 3 ms",
                         host.rx_bytes_in, n)
    rx_exact = got == data
    rx_ns = get_sim_time("ns") - started

    def figures(ns):
        cycles = ns / RGMII_NS
        return {"bytes": n, "cycles": round(cycles), "bytes_per_cycle": round(n / cycles, 4),
                "mbit_per_s": round(n * 8 / ns * 1000, 1),
                "fraction_of_line_rate": round(n / cycles / LINE_RATE_MSS_1460, 4)}

    result = {
        "board": BOARD,
        "rgmii_mhz": 125, "core_mhz": bench.info.core_mhz,
        "line_rate_bytes_per_cycle_mss_1460": round(LINE_RATE_MSS_1460, 4),
        "largest_segment": largest,
        "goodput": {"host_to_network": {**figures(tx_ns), "byte_exact": tx_exact},
                    "network_to_host": ({**figures(rx_ns), "byte_exact": rx_exact} if got
                                        else {"delivered": False, "rx_bytes": host.rx_bytes_in})},
        "measured": "from the driver's write (the peer's first send) to the last byte "
                    "at the peer (read by the driver), in 8 ns RGMII cycles",
    }
    out = Path(os.environ.get("TOE_ARTIFACTS", ".")) / "goodput.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    dut._log.info("goodput: %s", json.dumps(result["goodput"]))
    assert got, "network to host: the driver did not read the peer's bytes within 3 ms"
    assert tx_exact, f"the peer received other bytes: {bytes(theirs.received[:16]).hex()}..."
    assert rx_exact, "the driver read other bytes"
    finish(bench)

