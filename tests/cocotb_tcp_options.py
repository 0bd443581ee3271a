"""TCP options and reassembly on the wire: frames from the engine parsed by scapy.

RFC 7323 (window scale, timestamps, PAWS), RFC 2018 (SACK), RFC 9293 SHLD-31 with
s3.10.7.4 (reassembly), RFC 5681 s4.2 (immediate ACKs for out-of-order text).  Run by
tests/test_tcp.py::test_tcp_options with the scripted-peer configuration (2 KiB rings:
our window shift is 0; delayed ACKs off).
"""

import random

import cocotb
from cocotb_tcp import check_ack, start
from scapy.layers.inet import IP, TCP

from toe.hdl.host_if import CommandOp, EventKind
from toe.sim.tcp_peer import ScriptedPeer, flags_of

SEGMENT = 100


def options_of(segment) -> list:
    return [(n, v) for n, v in segment[TCP].options if n not in ("NOP", "EOL")]


def option(segment, name):
    return dict(options_of(segment)).get(name)


async def _accept_with_options(b, peer, *, ts=1000, wscale=7, sack=True):
    """A passive open whose SYN offers MSS, window scale, SACK-permitted and timestamps
    (each left out when None/False); returns (conn, SYN-ACK)."""
    await b.listen(peer.engine_port)
    offered = [("MSS", 1460)]
    if sack:
        offered.append(("SAckOK", b""))
    if ts is not None:
        offered.append(("Timestamp", (ts, 0)))
    if wscale is not None:
        offered.append(("WScale", wscale))
    since = len(b.host.events)
    b.tb.send(peer.segment("S", options=offered))
    synack = await b.recv_tcp()
    assert flags_of(synack) == "SA", synack.summary()
    peer.take(synack)
    b.tb.send(peer.segment("A", options=_ts(ts, synack)))
    event = await b.host.event(EventKind.ACCEPTED, since=since)
    b.host.command(CommandOp.ACCEPT, conn=event.conn)
    b.host.command(CommandOp.CREDIT, conn=event.conn, value=1 << 20)
    return event.conn, synack


async def ack_of(b, value: int):
    """The engine's ACK of ``value``; pure ACKs of less before it are window updates
    (the host read while the text was on its way; RFC 9293 s3.8.6.2.2) or duplicate
    ACKs already checked, and are skipped."""
    value %= 2**32
    while True:
        seg = await b.recv_tcp()
        if seg[TCP].ack == value:
            return seg
        assert flags_of(seg) == "A" and 0 < (value - seg[TCP].ack) % 2**32 < 1 << 31, (
            seg.summary(), seg[TCP].ack, value)


def _ts(val, echo_of):
    """The timestamps option with TSval ``val`` echoing the engine's TSval."""
    if val is None:
        return []
    return [("NOP", None), ("NOP", None), ("Timestamp", (val, option(echo_of, "Timestamp")[0]))]


@cocotb.test()
async def test_synack_options_and_sack_blocks(dut):
    """RFC 7323 s2.2/s3.2, RFC 2018 s2: the SYN-ACK answers MSS, timestamps (TSecr = the
    SYN's TSval), window scale (shift 0 for a 2 KiB ring) and SACK-permitted.  Then
    every ACK carries the timestamps option (s3.2) and, while text is held out of
    order, SACK blocks exactly as held, latest first (RFC 2018 s4); the segment that
    fills the hole is ACKed at once without blocks (RFC 5681 s4.2); a duplicate is
    reported in a D-SACK block (RFC 2883 s4.1.1)."""
    b = await start(dut)
    peer = ScriptedPeer(b.config)
    conn, synack = await _accept_with_options(b, peer)
    assert [n for n, _ in options_of(synack)] == ["MSS", "Timestamp", "WScale", "SAckOK"]
    assert option(synack, "Timestamp")[1] == 1000 and option(synack, "WScale") == 0
    data = random.Random(5).randbytes(5 * SEGMENT)
    base = peer.snd_nxt

    async def send(k, tsval, acked):
        b.tb.send(peer.segment("PA", data[k * SEGMENT : (k + 1) * SEGMENT],
                               seq=base + k * SEGMENT, options=_ts(tsval, synack)))
        return await ack_of(b, base + acked)

    ack = await send(1, 1001, 0)
    assert option(ack, "SAck") == (base + 100, base + 200)
    assert option(ack, "Timestamp")[1] == 1000  # beyond Last.ACK.sent: not recorded
    ack = await send(3, 1002, 0)
    assert option(ack, "SAck") == (base + 300, base + 400, base + 100, base + 200)
    ack = await send(0, 1003, 200)
    assert option(ack, "SAck") == (base + 300, base + 400)
    assert option(ack, "Timestamp")[1] == 1003
    ack = await send(2, 1004, 400)
    assert option(ack, "SAck") is None
    # RFC 2883 s4.1.1: a segment received before is reported in a D-SACK block.
    ack = await send(1, 1004, 400)
    assert option(ack, "SAck") == (base + 100, base + 200)
    peer.snd_nxt = base + 400
    b.tb.send(peer.segment("PA", data[400:], options=_ts(1005, synack)))
    check_ack(await b.recv_tcp(), peer)
    assert await b.host.bytes_received(conn, len(data)) == data
    await b.finish()


@cocotb.test()
async def test_paws_and_timestamps_on_data(dut):
    """RFC 7323 s5.3: a segment with a TSval older than TS.Recent is not accepted, and
    ACKed; s3.2: the engine's data segments carry timestamps too, so their text is at
    most the MSS less the 12 option bytes (RFC 6691) and no frame exceeds the MTU."""
    b = await start(dut)
    peer = ScriptedPeer(b.config)
    conn, synack = await _accept_with_options(b, peer, ts=5000)
    b.tb.send(peer.segment("PA", b"new", options=_ts(5001, synack)))
    check_ack(await b.recv_tcp(), peer)
    old = peer.segment("PA", b"old", options=_ts(4000, synack))
    b.tb.send(old)
    ack = await b.recv_tcp()
    assert ack[TCP].ack == (peer.snd_nxt - 3) % 2**32, "the old duplicate was accepted"
    assert option(ack, "Timestamp")[1] == 5001
    peer.snd_nxt = (peer.snd_nxt - 3) % 2**32
    assert (await b.counters())["tcp_paws_drops"] == 1
    b.host.write(conn, bytes(2000))
    sizes = []
    while sum(sizes) < 2000:
        seg = await b.recv_tcp()
        assert option(seg, "Timestamp") is not None and seg[IP].len <= 1500
        sizes.append(len(bytes(seg[TCP].payload)))
    assert max(sizes) == 1460 - 12, sizes
    assert await b.host.bytes_received(conn, 3) == b"new"
    await b.finish()


@cocotb.test()
async def test_peer_window_scaled_on_the_wire(dut):
    """RFC 7323 s2.3: after the handshake the peer's window field 8 with shift 7 is
    1,024 bytes, and the engine sends exactly that much of the 2,000 queued; without
    the option the same field would allow 8 bytes."""
    b = await start(dut)
    peer = ScriptedPeer(b.config, window=8)
    conn, synack = await _accept_with_options(b, peer, ts=None, sack=False)
    assert option(synack, "WScale") == 0 and option(synack, "Timestamp") is None
    b.host.write(conn, bytes(2000))
    sent = 0
    while sent < 1024:
        seg = await b.recv_tcp()
        sent += len(bytes(seg[TCP].payload))
    assert sent == 1024
    again = await b.recv_tcp()  # after the RTO (200 us here): a retransmission, not more
    assert (again[TCP].seq - synack[TCP].seq - 1) % 2**32 < 1024, again.summary()
    await b.finish()


@cocotb.test()
async def test_peer_window_scale_15_used_as_14(dut):
    """RFC 7323 s2.3: a window scale above 14 is used as 14.  Seen on the wire through
    the RFC 5961 s5.2 bound SND.UNA - MAX.SND.WND, with MAX.SND.WND = 65535 << shift:
    an ACK 0x60000000 bytes (1.5 GiB) behind SND.UNA is older than the bound of shift
    14 (about 1 GiB) and gets a challenge ACK; under shift 15 (about 2 GiB) it would be
    an old duplicate and get nothing."""
    b = await start(dut)
    peer = ScriptedPeer(b.config, window=1)
    conn, synack = await _accept_with_options(b, peer, ts=None, wscale=15, sack=False)
    assert option(synack, "WScale") == 0
    b.tb.send(peer.segment("PA", b"zz", ack=peer.rcv_nxt - 0x6000_0000))
    peer.snd_nxt -= 2
    check_ack(await b.recv_tcp(), peer)
    assert (await b.counters())["tcp_challenge_acks"] == 1
    await b.finish()


ORDERS = [
    ("2-1", [1, 0, 2, 3, 4]),
    ("3-2-1", [2, 1, 0, 3, 4]),
    ("hole at the start", [1, 2, 3, 4, 0]),
    ("hole at the end", [0, 1, 2, 4, 3]),
    ("every other", [4, 2, 0, 3, 1]),
    ("reversed", [4, 3, 2, 1, 0]),
]


@cocotb.test()
async def test_reassembly_orders(dut):
    """RFC 9293 SHLD-31 and s3.10.7.4: five segments in each order that matters, then
    an overlapping retransmission that covers several holes at once, then a FIN beyond
    a hole: after every arrival the ACK is the first missing byte (RFC 5681 s4.2), and
    the host gets every byte once, in order; the FIN counts when its hole fills."""
    b = await start(dut)
    peer = ScriptedPeer(b.config)
    conn, synack = await _accept_with_options(b, peer, ts=None, wscale=None, sack=False)
    rng = random.Random(9)
    expected = b""
    for _name, order in ORDERS:
        base = peer.snd_nxt
        data = rng.randbytes(5 * SEGMENT)
        have = set()
        for k in order:
            b.tb.send(peer.segment("PA", data[k * SEGMENT : (k + 1) * SEGMENT],
                                   seq=base + k * SEGMENT))
            have.add(k)
            first_missing = next((i for i in range(5) if i not in have), 5)
            await ack_of(b, base + first_missing * SEGMENT)
        peer.snd_nxt = (base + 5 * SEGMENT) % 2**32
        expected += data
    # Segments 1 and 3 held, then one retransmission of all five covers both holes.
    base = peer.snd_nxt
    data = rng.randbytes(5 * SEGMENT)
    for k in (1, 3):
        b.tb.send(peer.segment("PA", data[k * SEGMENT : (k + 1) * SEGMENT],
                               seq=base + k * SEGMENT))
        await ack_of(b, base)
    b.tb.send(peer.segment("PA", data, seq=base))
    await ack_of(b, base + 5 * SEGMENT)
    expected += data
    # A FIN after a hole: remembered, and counted when the hole fills.
    base = (base + 5 * SEGMENT) % 2**32
    tail = rng.randbytes(2 * SEGMENT)
    b.tb.send(peer.segment("FA", tail[SEGMENT:], seq=base + SEGMENT))
    await ack_of(b, base)
    b.tb.send(peer.segment("PA", tail[:SEGMENT], seq=base))
    await ack_of(b, base + 2 * SEGMENT + 1)
    expected += tail
    assert await b.host.bytes_received(conn, len(expected)) == expected
    await b.finish()
