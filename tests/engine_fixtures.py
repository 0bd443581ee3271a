"""Fixtures for the TCP engine bench (tests/engine_bench.py): one connection put into a
state through the engine's real ports, like smoltcp's ``socket_established()`` and
``socket_fin_wait_1()``; :meth:`EngineBench.poke` then overrides TCB fields where a test
needs a state that is expensive to reach.
"""

from engine_bench import MOD, Conn, EngineBench, Peer

from toe.hdl.host_if import CommandOp, EventKind
from toe.hdl.tcp.tcb import TcpState

__all__ = ["established", "syn_sent", "syn_received", "fin_wait_1", "fin_wait_2",
           "close_wait", "closing", "last_ack", "time_wait"]


async def established(b: EngineBench, peer: Peer | None = None, *, active=False,
                      credit=1 << 16, backlog=4, local_port=50000, sent=0, tcb=None) -> Conn:
    """ESTABLISHED through the real ports: LISTEN, SYN, ACK of the SYN-ACK, ACCEPT and
    CREDIT (passive), or CONNECT, ARP, SYN-ACK (``active``).  Then pokes: ``sent``
    bytes sent and unacknowledged (SND.NXT = SND.MAX = ISS+1+sent, the retransmission
    timer running from now); ``tcb``: any other fields, e.g. ``{"snd_wnd": 0}``."""
    if active:
        c = await syn_sent(b, peer, local_port=local_port)
        b.send(c.peer, "SA", **c.peer.syn_options())
        c.irs = c.peer.isn
        await b.next_segment(flags="A")
        await b.event(EventKind.ESTABLISHED, conn=c.id)
    else:
        c = await syn_received(b, peer, backlog=backlog)
        since = len(b.events)
        b.send(c.peer, "A")
        ev = await b.event(EventKind.ACCEPTED, since=since)
        assert ev.conn == c.id, ev
        b.command(CommandOp.ACCEPT, c.id)
    if credit:
        b.command(CommandOp.CREDIT, c.id, value=credit)
    await b.settle()
    assert b.state(c.id) == TcpState.ESTABLISHED
    fields = dict(tcb or {})
    if sent:
        c.snd_nxt = (c.iss + 1 + sent) % MOD
        rto = b.tcb(c.id)["rto"]
        fields = {"snd_nxt": c.snd_nxt, "snd_max": c.snd_nxt, "snd_end": c.snd_nxt,
                  "timer_on": 1, "deadline": (b.now + rto) % MOD, **fields}
    if fields:
        await b.poke(c.id, **fields)
    return c


async def syn_sent(b: EngineBench, peer: Peer | None = None, *, local_port=50000) -> Conn:
    """SYN-SENT: CONNECT; the ARP model answers; the SYN is out (not acknowledged)."""
    peer = peer or Peer(port=8080, engine_port=local_port, isn=77_000)
    tag = b.command(CommandOp.CONNECT, addr=peer.ip, port=peer.port, value=peer.engine_port)
    syn = await b.next_segment()
    assert syn.flags in ("S", "SEC"), syn  # SEC: the ECN-setup SYN (RFC 3168 s6.1.1)
    ev = await b.event(EventKind.CONNECTING, tag=tag)
    peer.take(syn)
    await b.settle()
    return Conn(b, ev.conn, peer, syn.seq, None)


async def syn_received(b: EngineBench, peer: Peer | None = None, *, backlog=4) -> Conn:
    """SYN-RECEIVED by a passive open: LISTEN (once per port) and the peer's SYN; the
    SYN-ACK is out, not acknowledged."""
    peer = peer or Peer()
    if peer.engine_port not in b.listening:
        await b.listen(peer.engine_port, backlog)
    b.send(peer, "S", **peer.syn_options())
    synack = await b.next_segment(flags="SA")
    assert synack.ack == (peer.isn + 1) % MOD and synack.mss, synack
    peer.take(synack)
    await b.settle()
    return Conn(b, synack.conn, peer, synack.seq, peer.isn)


async def fin_wait_1(b: EngineBench, unacked=0, **kw) -> Conn:
    """FIN-WAIT-1: ESTABLISHED, ``unacked`` bytes written and sent, then SHUTDOWN: our FIN
    follows them; neither acknowledged (SND.UNA = ISS+1, SND.NXT = ISS+2+unacked)."""
    c = await established(b, **kw)
    if unacked:
        b.write(c.id, unacked)
        seg = await b.next_segment(flags="PA")
        assert seg.len == unacked, seg
    b.command(CommandOp.SHUTDOWN, c.id)
    fin = await b.next_segment(flags="FA")
    assert fin.seq == (c.iss + 1 + unacked) % MOD, fin
    c.snd_nxt = (fin.seq + 1) % MOD  # the peer acknowledges none of it (rcv_nxt ISS+1)
    await b.settle()
    assert b.state(c.id) == TcpState.FIN_WAIT_1
    return c


async def fin_wait_2(b: EngineBench, **kw) -> Conn:
    """FIN-WAIT-2: FIN-WAIT-1, then the peer acknowledges our FIN."""
    c = await fin_wait_1(b, **kw)
    c.peer.rcv_nxt = c.snd_nxt
    b.send(c.peer, "A")
    await b.settle()
    assert b.state(c.id) == TcpState.FIN_WAIT_2
    return c


async def _peer_fin(b: EngineBench, c: Conn, state: TcpState) -> None:
    since = len(b.events)
    b.send(c.peer, "FA")
    ack = await b.next_segment(flags="A")
    assert (ack.seq, ack.ack) == (c.snd_nxt, c.rcv_nxt), ack
    await b.event(EventKind.PEER_FIN, conn=c.id, since=since)
    await b.settle()
    assert b.state(c.id) == state


async def close_wait(b: EngineBench, **kw) -> Conn:
    """CLOSE-WAIT: ESTABLISHED, then the peer's FIN (ACKed, PEER_FIN)."""
    c = await established(b, **kw)
    await _peer_fin(b, c, TcpState.CLOSE_WAIT)
    return c


async def closing(b: EngineBench, **kw) -> Conn:
    """CLOSING: FIN-WAIT-1, then the peer's FIN that does not acknowledge ours."""
    c = await fin_wait_1(b, **kw)
    await _peer_fin(b, c, TcpState.CLOSING)
    return c


async def last_ack(b: EngineBench, **kw) -> Conn:
    """LAST-ACK: CLOSE-WAIT, then CLOSE: our FIN, not acknowledged."""
    c = await close_wait(b, **kw)
    b.command(CommandOp.CLOSE, c.id)
    fin = await b.next_segment(flags="FA")
    assert fin.seq == c.snd_nxt, fin
    c.snd_nxt = (fin.seq + 1) % MOD
    await b.settle()
    assert b.state(c.id) == TcpState.LAST_ACK
    return c


async def time_wait(b: EngineBench, **kw) -> Conn:
    """TIME-WAIT: FIN-WAIT-2, then the peer's FIN (the 2 MSL timer runs from ``now``)."""
    c = await fin_wait_2(b, **kw)
    await _peer_fin(b, c, TcpState.TIME_WAIT)
    return c
