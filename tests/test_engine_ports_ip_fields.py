"""The IPv4 TTL and DSCP of a connection's segments at the engine's own ports (RFC 9293
MUST-49 "TCP MUST allow the application to set the TTL", MUST-48 the TOS / DSCP, RFC
2474): the build's defaults (``ip_ttl``, ``ip_dscp``) until ``SET_OPTION TTL`` or
``DSCP`` changes them for that connection only; out-of-range values are an ERROR
(BAD_OPTION).  tests/test_tcp_transmitter_unit.py checks that the fields reach the IPv4
header bytes and its checksum."""

from engine_bench import BENCH_CONFIG, Peer, run
from engine_fixtures import established

from toe.hdl.host_if import CommandOp, ErrorCode, EventKind, SocketOption

CONFIG = BENCH_CONFIG.replace(ip_ttl=100, ip_dscp=10)


def test_ttl_and_dscp_per_connection():
    """MUST-48/49: a new connection's segments carry the build's TTL 100 and DSCP 10;
    after SET_OPTION TTL 5 and DSCP 46 (EF) its segments carry those, and another
    connection's keep the defaults."""
    async def body(b):
        c = await established(b)
        other = await established(b, Peer(port=40001), local_port=50001)
        b.write(c.id, 10)
        seg = await b.next_segment(flags="PA")
        assert (seg.ttl, seg.dscp) == (100, 10)
        b.command(CommandOp.SET_OPTION, c.id, port=SocketOption.TTL.value, value=5)
        b.command(CommandOp.SET_OPTION, c.id, port=SocketOption.DSCP.value, value=46)
        await b.settle()
        b.send(c.peer, "PA", 10, ack=seg.seq + 10)
        ack = await b.next_segment(flags="A")
        assert (ack.dport, ack.ttl, ack.dscp) == (c.peer.port, 5, 46)
        b.send(other.peer, "PA", 10)
        ack = await b.next_segment(flags="A")
        assert (ack.dport, ack.ttl, ack.dscp) == (other.peer.port, 100, 10)
    run(body, CONFIG)


def test_bad_ttl_and_dscp_are_errors():
    """A TTL of 0 or above 255, or a DSCP above 63, is an ERROR (BAD_OPTION) and changes
    nothing."""
    async def body(b):
        c = await established(b)
        for option, value in ((SocketOption.TTL, 0), (SocketOption.TTL, 256),
                              (SocketOption.DSCP, 64)):
            tag = b.command(CommandOp.SET_OPTION, c.id, port=option.value, value=value)
            assert (await b.event(EventKind.ERROR, tag=tag)).code == ErrorCode.BAD_OPTION
        b.send(c.peer, "PA", 10)
        ack = await b.next_segment(flags="A")
        assert (ack.ttl, ack.dscp) == (100, 10)
    run(body, CONFIG)
