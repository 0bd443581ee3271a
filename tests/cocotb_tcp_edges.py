"""Connection edge cases on Verilator, each a deviation once found against real TCP test
scripts and misbehaving hosts, now a rule checked on the wire.

Same bench as tests/cocotb_tcp.py (a scripted scapy peer on the MAC, the host port on the
host interface); run through tests/test_tcp.py with its scaled-down timers.
"""

import cocotb
from cocotb_tcp import _ip, check_ack, start
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from toe.hdl.host_if import CommandOp, ErrorCode, EventKind
from toe.sim.peer import tcp_payload
from toe.sim.tcp_peer import ScriptedPeer, flags_of


@cocotb.test()
async def test_syn_sent_synack_with_data(dut):
    """RFC 9293 s3.10.7.3 SYN-SENT, fourth: "If there are other controls or text in the
    segment, then continue processing at the sixth step": text on a SYN-ACK starts at
    SEG.SEQ + 1, so three bytes are acknowledged as three (ACK = IRS + 4) and reach the
    host, and the window counts them."""
    b = await start(dut)
    peer = ScriptedPeer(b.config, port=8080, isn=5000)
    conn, syn = await b.connect(peer)
    peer.take(syn)
    b.host.command(CommandOp.CREDIT, conn=conn, value=1000)
    b.tb.send(peer.segment("SA", b"abc", options=[("MSS", 1460)]))
    ack = await b.recv_tcp()
    check_ack(ack, peer)
    assert ack[TCP].ack == 5000 + 1 + 3
    await b.host.event(EventKind.ESTABLISHED, conn=conn)
    assert await b.host.bytes_received(conn, 3) == b"abc"
    await b.finish()


@cocotb.test()
async def test_syn_sent_synack_with_fin(dut):
    """RFC 9293 s3.10.7.3 then s3.10.7.4 eighth: a SYN-ACK that carries FIN completes the
    open and moves the connection on to CLOSE-WAIT (ACK = IRS + 2, PEER_FIN after 0
    bytes)."""
    b = await start(dut)
    peer = ScriptedPeer(b.config, port=8080, isn=7000)
    conn, syn = await b.connect(peer)
    peer.take(syn)
    b.tb.send(peer.segment("SAF"))
    ack = await b.recv_tcp()
    check_ack(ack, peer)
    assert ack[TCP].ack == 7000 + 2
    fin = await b.host.event(EventKind.PEER_FIN, conn=conn)
    assert fin.value == 0
    await b.finish()


@cocotb.test()
async def test_simultaneous_open_synack_in_syn_received(dut):
    """RFC 9293 s3.5 figure 8, lines 4-5: in SYN-RECEIVED after a simultaneous open, the
    peer's SYN-ACK that acknowledges our SYN moves the connection to ESTABLISHED (as in
    Linux and FreeBSD); no further ACK is needed and data flows at once."""
    b = await start(dut)
    peer = ScriptedPeer(b.config, port=8080, isn=9000)
    conn, syn = await b.connect(peer)
    b.tb.send(peer.syn())  # crossing SYNs
    synack = await b.recv_tcp()
    assert flags_of(synack) == "SA" and synack[TCP].seq == syn[TCP].seq
    peer.take(syn)
    peer.snd_nxt = peer.isn  # the peer's SYN-ACK repeats its SYN
    b.tb.send(peer.segment("SA"))
    await b.host.event(EventKind.ESTABLISHED, conn=conn)
    b.host.command(CommandOp.CREDIT, conn=conn, value=1000)
    b.tb.send(peer.segment("PA", b"hello"))
    check_ack(await b.recv_tcp(), peer)
    assert await b.host.bytes_received(conn, 5) == b"hello"
    await b.finish()


@cocotb.test()
async def test_listen_fin_or_no_flags_dropped(dut):
    """RFC 9293 s3.10.7.2 LISTEN, fourth: "Any other control or text-bearing segment (not
    containing SYN) must have an ACK and thus would be discarded by the ACK processing":
    a FIN, or a segment with no control bits and no ACK, to a listening port is dropped
    without a reset (and counted); the listener still accepts."""
    b = await start(dut)
    await b.listen(80)
    before = (await b.counters())["tcp_listen_drops"]
    peer = ScriptedPeer(b.config)
    b.tb.send(peer.segment("F", seq=1234))
    b.tb.send(peer.segment("", b"data", seq=1234))
    b.tb.send(peer.segment("P", b"data", seq=1234))
    await b.expect_no_tcp(200)
    assert (await b.counters())["tcp_listen_drops"] - before == 3
    conn, _ = await b.accept(peer)
    assert conn is not None
    await b.finish()


@cocotb.test()
async def test_close_with_unread_data_sends_rst(dut):
    """RFC 9293 SHLD-3 (RFC 2525 s2.17): a CLOSE while received data is still unread
    resets the connection, <SEQ=SND.NXT><CTL=RST,ACK>, so the peer learns the data was
    lost; the host is told (CLOSED with UNREAD_DATA) and the id is released."""
    b = await start(dut)
    await b.listen(80)
    peer = ScriptedPeer(b.config)
    conn, synack = await b.accept(peer, credit=0)  # the host takes nothing
    b.tb.send(peer.segment("PA", b"unread bytes"))
    check_ack(await b.recv_tcp(), peer)
    b.host.command(CommandOp.CLOSE, conn=conn)
    rst = await b.recv_tcp()
    assert flags_of(rst) == "RA" and rst[TCP].seq == synack[TCP].seq + 1, rst.summary()
    closed = await b.host.event(EventKind.CLOSED, conn=conn)
    assert closed.code == ErrorCode.UNREAD_DATA
    await b.host.event(EventKind.RELEASED, conn=conn)
    await b.expect_no_tcp(300)  # no FIN follows
    await b.finish()


@cocotb.test()
async def test_close_after_all_read_sends_fin(dut):
    """RFC 9293 s3.10.4 CLOSE: with every received byte taken by the host, CLOSE sends
    FIN as usual (the SHLD-3 reset is only for unread data)."""
    b = await start(dut)
    await b.listen(80)
    peer = ScriptedPeer(b.config)
    conn, _ = await b.accept(peer)
    b.tb.send(peer.segment("PA", b"read me"))
    check_ack(await b.recv_tcp(), peer)
    assert await b.host.bytes_received(conn, 7) == b"read me"  # CLOSE at once
    b.host.command(CommandOp.CLOSE, conn=conn)
    fin = await b.recv_tcp()
    assert flags_of(fin) == "FA", fin.summary()
    await b.finish()


@cocotb.test()
async def test_tx_overflow_resets_connection(dut):
    """A stream is never sent with a hole (RFC 9293 s3.10.2, the data is sent "in the
    order" written): a host write beyond the send credit resets the connection (RST to
    the peer, RESET(TX_OVERFLOW) to the host), and no later byte of the write is sent,
    even after the peer acknowledges and the credit frees (docs/host-driver.md)."""
    b = await start(dut)
    await b.listen(80)
    peer = ScriptedPeer(b.config)
    peer.window = 200  # the engine can send little: the ring stays full
    conn, _ = await b.accept(peer)
    ring = b.config.tx_ring_bytes
    data = bytes(i % 251 for i in range(ring + 500))
    b.host.write(conn, data)
    reset = await b.host.event(EventKind.RESET, conn=conn, timeout_ns=5_000_000)
    assert reset.code == ErrorCode.TX_OVERFLOW
    sent = bytearray()
    rst_seen = False
    for _ in range(20):
        try:
            seg = await b.recv_tcp(timeout_us=500)
        except Exception:
            break
        payload = bytes(seg[TCP].payload)
        sent += payload
        if "R" in flags_of(seg):
            rst_seen = True
            break
        peer.take(seg)
        b.tb.send(peer.segment("A"))  # acknowledge: credit would free
    assert rst_seen, "no RST after the overflow"
    assert data.startswith(bytes(sent)), "the bytes sent are not a prefix of the stream"
    b.host.command(CommandOp.ABORT, conn=conn)
    await b.host.event(EventKind.RELEASED, conn=conn)
    await b.finish()


@cocotb.test()
async def test_port_zero_and_local_addresses_refused(dut):
    """RFC 9293 s3.1 (port 0 is reserved, never a connection's port) and RFC 1122
    s3.2.1.3 / MUST-46: LISTEN on port 0, CONNECT to or from port 0, CONNECT to a
    127/8 address or to the engine's own address fail at once with an ERROR event,
    and nothing is sent."""
    b = await start(dut)
    own = b.config.ip_addr
    cases = [
        (CommandOp.LISTEN, {"port": 0, "value": 4}, ErrorCode.BAD_PORT),
        (CommandOp.CONNECT, {"addr": _ip("10.0.0.1"), "port": 0, "value": 50000},
         ErrorCode.BAD_PORT),
        (CommandOp.CONNECT, {"addr": _ip("10.0.0.1"), "port": 80, "value": 0},
         ErrorCode.BAD_PORT),
        (CommandOp.CONNECT, {"addr": _ip("127.0.0.1"), "port": 80, "value": 50000},
         ErrorCode.BAD_ADDRESS),
        (CommandOp.CONNECT, {"addr": _ip("127.255.0.9"), "port": 80, "value": 50000},
         ErrorCode.BAD_ADDRESS),
        (CommandOp.CONNECT, {"addr": own, "port": 80, "value": 50000}, ErrorCode.BAD_ADDRESS),
    ]
    sent_before = len(b.tb.sent)
    for op, fields, code in cases:
        tag = next(b.tags)
        b.host.command(op, tag=tag, **fields)
        event = await b.host.event(tag=tag, timeout_ns=200_000)
        assert event.kind == EventKind.ERROR and event.code == code, (op, fields, event)
    await b.expect_no_tcp(200)
    assert len(b.tb.sent) == sent_before, "a refused command sent a frame (ARP or SYN)"
    await b.finish()


def _icmp_error(peer: ScriptedPeer, about, kind: int, code: int, mtu: int = 0):
    """The ICMP error a router between the engine and ``peer`` sends about the engine's
    segment ``about`` (RFC 792: the IPv4 header and the first 8 bytes of TCP)."""
    quote = bytes(about[IP])[:28]
    return (Ether(src=peer.mac, dst=about[Ether].src)
            / IP(src="10.0.0.254", dst=about[IP].src)
            / ICMP(type=kind, code=code, nexthopmtu=mtu) / Raw(quote))


@cocotb.test()
async def test_icmp_port_unreachable_ends_connect(dut):
    """RFC 9293 SHLD-26 on the wire: a port unreachable from a router, quoting the SYN,
    ends the active open (RESET, code UNREACHABLE, value type 3 << 8 | code 3) and the
    SYN is not sent again; the frame counts in ``rx_icmp_errors``."""
    b = await start(dut)
    peer = ScriptedPeer(b.config, port=8080, isn=5000)
    conn, syn = await b.connect(peer)
    b.tb.send(_icmp_error(peer, syn, 3, 3))
    ev = await b.host.event(EventKind.RESET, conn=conn)
    assert (ev.code, ev.value) == (ErrorCode.UNREACHABLE, 3 << 8 | 3)
    await b.expect_no_tcp(3 * b.config.rto_initial_us)
    counters = await b.counters()
    assert (counters["rx_icmp_errors"], counters["tcp_icmp_aborts"]) == (1, 1)
    await b.finish()


@cocotb.test()
async def test_icmp_fragmentation_needed_shrinks_segments(dut):
    """RFC 1191 on the wire: the first 1460-byte segment meets a link of MTU 1000; the
    router's fragmentation needed makes the engine send the same bytes again at once in
    datagrams of 1000 bytes (SND.MSS 960), DF still set, and every byte arrives."""
    b = await start(dut)
    await b.listen(80)
    peer = ScriptedPeer(b.config, port=40000, engine_port=80, isn=8000)
    conn, synack = await b.accept(peer)
    data = bytes(range(256)) * 8
    b.host.write(conn, data)
    big = await b.recv_tcp()
    assert len(tcp_payload(big)) == 1460 and big[IP].flags.DF
    b.tb.send(_icmp_error(peer, big, 3, 4, mtu=1000))
    again = await b.recv_tcp()
    assert (again[TCP].seq, len(tcp_payload(again))) == (big[TCP].seq, 960)
    assert again[IP].len == 1000 and again[IP].flags.DF
    got = tcp_payload(again)
    while len(got) < len(data):
        peer.take(again)
        b.tb.send(peer.segment("A"))
        again = await b.recv_tcp()
        if again[TCP].seq == (big[TCP].seq + len(got)) % 2**32:
            assert again[IP].len <= 1000
            got += tcp_payload(again)
    assert got == data
    assert (await b.counters())["tcp_icmp_pmtu"] == 1
    await b.finish()


@cocotb.test()
async def test_icmp_errors_never_end_an_established_connection(dut):
    """RFC 9293 MUST-56, SHLD-25 and RFC 5927 s4.1 on the wire, every type and code: on
    an established connection with data in flight, destination unreachable of every
    code but 4 (protocol and port unreachable included: RFC 5461 s4.1), time exceeded,
    parameter problem and source quench quoting the data are never acted on beyond one
    ICMP_ERROR event (source quench not even that, MUST-55); the same errors quoting a
    sequence number outside the data in flight are dropped and counted; the connection
    then moves data both ways."""
    b = await start(dut)
    await b.listen(80)
    peer = ScriptedPeer(b.config, port=40001, engine_port=80, isn=3000)
    conn, _ = await b.accept(peer)
    since = len(b.host.events)
    b.host.write(conn, b"x" * 100)
    data = await b.recv_tcp()
    errors = [(3, code) for code in range(16) if code != 4] + [(11, 0), (11, 1), (12, 0)]
    for kind, code in errors + [(4, 0)]:
        b.tb.send(_icmp_error(peer, data, kind, code))
        stale = data.copy()
        stale[TCP].seq = (data[TCP].seq - 1) % 2**32
        b.tb.send(_icmp_error(peer, stale, kind, code))
    await b.expect_no_tcp(100)  # nothing answers an ICMP error
    counters = await b.counters()
    assert counters["tcp_icmp_soft"] == len(errors)
    assert counters["tcp_icmp_bad_seq"] == len(errors)
    assert (counters["drop_icmp_ignored"], counters["tcp_icmp_aborts"]) == (2, 0)
    reports = [e for e in b.host.events[since:] if e.kind == EventKind.ICMP_ERROR]
    assert [(e.conn, e.value) for e in reports] == [(conn, 3 << 8 | 0)]
    peer.take(data)
    b.tb.send(peer.segment("PA", b"reply"))
    ack = await b.recv_tcp()
    while ack[TCP].ack != peer.snd_nxt:  # a retransmission of the data sent before
        ack = await b.recv_tcp()
    check_ack(ack, peer)
    assert await b.host.bytes_received(conn, 5) == b"reply"
    b.host.write(conn, b"more")
    more = await b.recv_tcp()
    assert tcp_payload(more) == b"more"
    await b.finish()
