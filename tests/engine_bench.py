"""A bench for :class:`hdl.tcp.engine.TcpEngine` alone, in the Amaranth simulator.

The engine's neighbours in ``hdl/core.py`` (the RX parser and dispatcher, TcpReset, the
transmitter, the RX copier and delivery engine, the TX writer, the ARP cache) are replaced
by small models at the engine's ports.  Each model is a class that drives its inputs
before a clock edge and looks at what it sampled *at* the edge (``ctx.tick().sample``), so
a transfer is exactly what the gateware saw.  All models are stepped by one background
testbench (one process per model costs ~40 us of Python per cycle each):

- :class:`Source` for ``seg_in`` (parsed segment records), ``cmd`` and ``written``;
- :class:`SegmentSink` decodes ``segment`` records into :class:`Seg`;
- :class:`CopySink` takes ``copy`` requests after ``copy_latency`` cycles;
- :class:`DeliveryModel` takes ``delivery`` requests (at most ``depth`` held, like the
  core's queue) and answers each on ``delivered`` with ``end = pos + length``, in order,
  a few cycles later; ``hold`` stops the answers;
- :class:`ArpModel` answers ``arp_lookup`` on ``arp_result`` (``ok`` and a MAC);
- :class:`Monitors`: ``evt`` (:class:`Ev`), ``reset_meta`` (segments for TcpReset),
  ``trace`` (:class:`Tr`), ``counters`` and the TX writer's ``limit_*`` view, from which
  :meth:`EngineBench.write` computes ``written`` messages the way TxWriter does.

Time: ``now`` (microseconds) stands still unless a test moves it (:meth:`advance`) or sets
``us_per_cycle``, so timers expire exactly when a test says.  Fixtures
(``tests/engine_fixtures.py``: ``established``, ``fin_wait_1``, ...) put one connection
into a state through the real ports, like smoltcp's ``socket_established()``;
:meth:`EngineBench.poke` then overrides TCB fields in ``engine.tcb_memory`` while the
engine's FSM is between events.
"""

from collections import Counter, deque
from dataclasses import dataclass, field

from amaranth.sim import Simulator

from toe.hdl.config import ToeConfig, ip, mac
from toe.hdl.host_if import CommandOp, EventKind, command_layout
from toe.hdl.proto import tcp
from toe.hdl.rx.meta import Verdict, rx_meta_layout
from toe.hdl.tcp.engine import ENGINE_COUNTERS, TRACE_SOURCES, TcpEngine
from toe.hdl.tcp.tcb import TcpState, delivered_layout, tcb_layout, written_layout

__all__ = ["BENCH_CONFIG", "EngineBench", "Peer", "Conn", "Seg", "Ev", "Tr", "run", "MOD",
           "PAYLOAD_AT"]

MOD = 2**32
PTR_BITS = 10  # frame buffer word pointers of the records (no frame buffer here)
PAYLOAD_AT = 14 + 20 + 20  # frame offset of the payload with IHL 5, data offset 5
PEER_IP = ip("10.0.0.1")
PEER_MAC = mac("02:00:00:00:00:01")
ROUTER_MAC = mac("02:00:00:00:00:fe")  # the next hop an ICMP error comes from
#: Small and fast: 8 TCBs (the least the lookup allows), 256-byte rings, MSS 536; timers
#: in microseconds of a clock that only moves when the test moves it; every segment
#: ACKed at once (delayed ACKs are tested with their own configuration).
BENCH_CONFIG = ToeConfig(
    data_bytes=8, connections=8, listeners=2, tx_ring_bytes=256, rx_ring_bytes=256,
    mtu=576, rx_buffer_bytes=2048, msl_us=1000, rto_initial_us=1000, rto_min_us=1000,
    rto_max_us=8000, r1_retries=2, r2_retries=4, r2_syn_retries=3, challenge_acks_per_s=5,
    fin_wait_2_us=3000, ack_delay_us=0,
    # Tests of the peer's window send more than IW10 of 536-byte segments at once; the
    # congestion window's own tests (test_engine_ports_congestion.py) set 10.
    initial_window=64,
    # SYNs without ECE and CWR, as the tests of the handshake expect; ECN's own tests
    # (test_engine_ports_ecn.py) turn it on.
    ecn=False)

@dataclass(frozen=True)
class Seg:
    """A ``segment`` record: what the transmitter would send."""

    conn: int
    flags: str
    seq: int
    ack: int
    window: int
    len: int
    pos: int  # TX ring position (sequence number) of the payload
    mss: bool  # a SYN's options: MSS (and those below that are on)
    sport: int
    dport: int
    now: int  # the time base when it left
    ts: tuple | None = None  # (TSval, TSecr) when the timestamps option is on
    wscale: int | None = None  # a SYN's window scale option
    sack_permitted: bool = False  # a SYN's SACK-permitted option
    sack: tuple = ()  # SACK blocks ((left, right), ...) that fit the option
    ecn: int = 0  # the IPv4 ECN field (RFC 3168 s5)
    ttl: int = 64  # the IPv4 TTL and DSCP (RFC 9293 MUST-49, MUST-48)
    dscp: int = 0


@dataclass(frozen=True)
class Ev:
    kind: EventKind
    code: object
    conn: int
    tag: int
    port: int
    remote_port: int
    addr: int
    value: int


@dataclass(frozen=True)
class Tr:
    """One ``trace`` entry: an event the engine processed."""

    source: str
    before: TcpState
    after: TcpState
    flags: str
    data: bool
    op: CommandOp
    icmp: bool = False  # an ICMP error, not a segment


@dataclass
class Peer:
    """The remote end: ``snd_nxt`` is its next sequence number (the engine's RCV.NXT when
    in step), ``rcv_nxt`` the next byte it expects from the engine (our SND.NXT)."""

    port: int = 40000
    engine_port: int = 80
    isn: int = 1000
    ip: int = PEER_IP
    mac: int = PEER_MAC
    window: int = 65535
    mss: int | None = 1460
    wscale: int | None = None  # its SYN's window scale option
    sack_permitted: bool = False  # its SYN's SACK-permitted option
    ts: bool = False  # it sends timestamps: (ts_val, ts_recent) in every segment
    ts_val: int = 5000
    ts_recent: int = 0  # the engine's latest TSval
    snd_nxt: int = field(init=False)
    rcv_nxt: int = 0

    def __post_init__(self):
        self.snd_nxt = self.isn

    def syn_options(self) -> dict:
        """Its SYN's options, for :meth:`EngineBench.send`."""
        return {"mss": self.mss, "wscale": self.wscale, "sack_permitted": self.sack_permitted}

    def take(self, seg: Seg) -> None:
        """Note a segment from the engine: ``rcv_nxt`` moves past it if in order."""
        if seg.ts:
            self.ts_recent = seg.ts[0]
        length = seg.len + ("S" in seg.flags) + ("F" in seg.flags)
        if "S" in seg.flags:
            self.rcv_nxt = (seg.seq + length) % MOD
        elif length and seg.seq == self.rcv_nxt:
            self.rcv_nxt = (self.rcv_nxt + length) % MOD


@dataclass
class Conn:
    """A connection a fixture opened: its id, the peer, ISS, IRS and the engine's SND.NXT
    as far as the test knows it (``rcv_nxt`` is the peer's next sequence number)."""

    bench: "EngineBench"
    id: int
    peer: Peer
    iss: int
    irs: int | None
    snd_nxt: int = 0

    def __post_init__(self):
        self.snd_nxt = self.snd_nxt or (self.iss + 1) % MOD

    @property
    def rcv_nxt(self) -> int:
        return self.peer.snd_nxt


class Source:
    """A stream into the engine: queued payloads, one at a time, ``valid`` held until
    ``ready`` is sampled at an edge.  An entry may be a function that makes the payload
    when it reaches the port (the TX writer model computes ``end`` then)."""

    def __init__(self, port):
        self.port = port
        self.queue = deque()
        self._head = None

    def signals(self):
        return [self.port.ready]

    def drive(self, ctx):
        if self._head is None and self.queue:
            item = self.queue.popleft()
            self._head = item() if callable(item) else item
            ctx.set(self.port.p, self._head)
            ctx.set(self.port.valid, 1)

    def observe(self, ctx, ready):
        if self._head is not None and ready:
            self._head = None
            ctx.set(self.port.valid, 0)

    @property
    def busy(self):
        return self._head is not None or bool(self.queue)


class SegmentSink:
    def __init__(self, bench):
        self.bench, self.port, self.got = bench, bench.engine.segment, []

    def signals(self):
        return [self.port.valid, self.port.p]

    def start(self, ctx):
        ctx.set(self.port.ready, 1)

    def observe(self, ctx, valid, p):
        if valid:
            syn = bool(p.syn_options)
            fit = tcp.sack_blocks_that_fit(bool(p.ts_on))
            sack = () if syn else tuple(
                (p.sack[i].left, p.sack[i].right) for i in range(min(p.sack_count, fit)))
            self.got.append(Seg(
                p.conn, tcp.flag_letters(p.flags), p.seq, p.ack, p.window, p.payload_len,
                p.payload_pos, syn, p.sport, p.dport, self.bench.now,
                ts=(p.ts_val, p.ts_ecr) if p.ts_on else None,
                wscale=p.wscale if syn and p.wscale_on else None,
                sack_permitted=syn and bool(p.sack_permitted), sack=sack, ecn=p.ecn,
                ttl=p.ttl, dscp=p.dscp))


class CopySink:
    """Takes each copy request ``latency`` cycles after it appears (the copier's time)."""

    def __init__(self, bench, latency=2):
        self.port, self.latency, self.got, self._wait = bench.engine.copy, latency, [], 0

    def signals(self):
        return [self.port.valid, self.port.ready, self.port.p]

    def drive(self, ctx):
        pass

    def observe(self, ctx, valid, ready, p):
        if valid and ready:
            self.got.append((p.conn, p.buf_start, p.offset, p.length, p.ring_pos))
            self._wait = 0
            ctx.set(self.port.ready, 0)
        elif valid:
            self._wait += 1
            if self._wait >= self.latency:
                ctx.set(self.port.ready, 1)


class DeliveryModel:
    """The RX delivery engine and its queues: requests in order, one at a time, each done
    ``latency`` + beats cycles after the one before; ``delivered`` answers in order."""

    def __init__(self, bench, latency=3, depth=8):
        e = bench.engine
        self.bench, self.req, self.done = bench, e.delivery, e.delivered
        self.latency, self.depth, self.hold = latency, depth, False
        self.got = []  # (conn, pos, length) in the order requested
        self.pending = deque()  # (due cycle, conn, end)
        self._head = None
        self._layout = delivered_layout(bench.config)

    def signals(self):
        return [self.req.valid, self.req.ready, self.req.p, self.done.ready]

    def drive(self, ctx):
        if self._head is None and self.pending and not self.hold:
            due, conn, end = self.pending[0]
            if due <= self.bench.cycle:
                self.pending.popleft()
                self._head = (conn, end)
                ctx.set(self.done.p, self._layout.const({"conn": conn, "end": end}))
                ctx.set(self.done.valid, 1)
        ctx.set(self.req.ready, len(self.pending) < self.depth)

    def observe(self, ctx, valid, ready, p, done_ready):
        if valid and ready:
            self.got.append((p.conn, p.pos, p.length))
            start = max(self.bench.cycle, self.pending[-1][0] if self.pending else 0)
            beats = -(-p.length // self.bench.config.data_bytes)
            self.pending.append((start + self.latency + beats, p.conn,
                                 (p.pos + p.length) % MOD))
        if self._head is not None and done_ready:
            self._head = None
            ctx.set(self.done.valid, 0)


class ArpModel:
    """The ARP cache's lookup port: answers ``ok`` with ``mac`` after ``latency`` cycles."""

    def __init__(self, bench, latency=3, ok=True, mac_addr=PEER_MAC):
        e = bench.engine
        self.bench, self.lookup, self.result = bench, e.arp_lookup, e.arp_result
        self.latency, self.ok, self.mac, self.got, self._due = latency, ok, mac_addr, [], None

    def signals(self):
        return [self.lookup.valid, self.lookup.p, self.result.ready]

    def start(self, ctx):
        ctx.set(self.lookup.ready, 1)

    def drive(self, ctx):
        if self._due is not None and self._due == self.bench.cycle:
            ctx.set(self.result.p, {"ok": int(self.ok), "mac": self.mac})
            ctx.set(self.result.valid, 1)

    def observe(self, ctx, valid, p, ready):
        if valid:
            self.got.append(p.ip)
            self._due = self.bench.cycle + self.latency
        elif self._due is not None and self._due <= self.bench.cycle and ready:
            self._due = None
            ctx.set(self.result.valid, 0)


class Monitors:
    """``evt``, ``reset_meta``, ``trace``, ``counters`` and the ``limit_*`` writes."""

    def __init__(self, bench):
        e = bench.engine
        self.bench, self.e = bench, e
        self.events, self.resets, self.trace = [], [], []
        self.counters = Counter()
        self.limits = {}  # conn -> (limit, gen, open, shut), as the TX writer holds them
        self.positions = {}  # conn -> (pos, gen, broken): the writer's end of stored data

    def signals(self):
        e = self.e
        return [e.evt.valid, e.evt.p, e.reset_meta.valid, e.reset_meta.p, e.trace,
                e.counters, e.limit_we, e.limit_addr, e.limit_data]

    def start(self, ctx):
        ctx.set(self.e.evt.ready, 1)
        ctx.set(self.e.reset_meta.ready, 1)

    def observe(self, ctx, ev, evp, rst, rstp, trace, counters, we, addr, lim):
        if ev:
            self.events.append(Ev(evp.kind, evp.code, evp.conn, evp.tag, evp.port,
                                  evp.remote_port, evp.addr, evp.value))
        if rst:
            self.resets.append((tcp.flag_letters(rstp.tcp_flags), rstp.tcp_seq, rstp.tcp_ack,
                                rstp.tcp_payload_len, rstp.tcp_sport, rstp.tcp_dport))
        if trace.valid:
            self.trace.append(Tr(TRACE_SOURCES[trace.source], trace.before, trace.after,
                                 tcp.flag_letters(trace.flags), bool(trace.data), trace.op,
                                 bool(trace.icmp)))
        if counters:
            for k, name in enumerate(ENGINE_COUNTERS):
                if counters >> k & 1:
                    self.counters[name] += 1
        if we:
            new = (lim.limit, lim.gen, lim.open, lim.shut)
            old = self.limits.get(addr, (0, 0, 0, 0))
            if new[2] and (not old[2] or old[1] != new[1]):
                self.positions[addr] = ((new[0] - self.bench.config.tx_ring_bytes) % MOD,
                                        new[1], False)
            self.limits[addr] = new


class EngineBench:
    """The engine, its neighbour models and the helpers tests use (all ``async`` helpers
    run in the test's testbench and advance the simulation)."""

    def __init__(self, config: ToeConfig = BENCH_CONFIG, *, copy_latency=2,
                 delivery_latency=3, arp_latency=3, us_per_cycle=0, now=1000):
        self.config = config
        self.engine = TcpEngine(config, PTR_BITS)
        self.meta_layout = rx_meta_layout(PTR_BITS)
        self.tcb_layout = tcb_layout(config)
        self.cmd_layout = command_layout(config)
        self.written_layout = written_layout(config)
        self.cycle, self.now, self.us_per_cycle = 0, now, us_per_cycle
        self.ctx = None
        e = self.engine
        self.seg_in, self.cmd, self.written = Source(e.seg_in), Source(e.cmd), Source(e.written)
        self.sink = SegmentSink(self)
        self.copier = CopySink(self, copy_latency)
        self.delivery = DeliveryModel(self, delivery_latency)
        self.arp = ArpModel(self, arp_latency)
        self.mon = Monitors(self)
        self._models = [self.seg_in, self.cmd, self.written, self.sink, self.copier,
                        self.delivery, self.arp, self.mon]
        self._tags = iter(range(1, 1 << 16))
        self._buf = 0
        self.listening = set()
        self.seen = 0  # segments consumed by next_segment()

    # -- results -----------------------------------------------------------------------
    @property
    def segments(self) -> list[Seg]:
        return self.sink.got

    @property
    def events(self) -> list[Ev]:
        return self.mon.events

    @property
    def copies(self):
        """(conn, buf_start, offset, length, ring_pos) per copy request."""
        return self.copier.got

    @property
    def deliveries(self):
        """(conn, pos, length) per delivery request."""
        return self.delivery.got

    @property
    def resets(self):
        """(flags, seq, ack, payload_len, sport, dport) of segments sent to TcpReset."""
        return self.mon.resets

    @property
    def trace(self) -> list[Tr]:
        return self.mon.trace

    @property
    def counters(self) -> Counter:
        return self.mon.counters

    # -- running -------------------------------------------------------------------------
    def run(self, scenario, vcd=None):
        """Simulate ``await scenario(self)`` after reset and the CLEAR phase."""
        sim = Simulator(self.engine)
        sim.add_clock(1e-8)

        async def main(ctx):
            self.ctx = ctx
            # CLEAR zeroes one TCB per cycle; the lookup table empties itself meanwhile.
            await self.cycles(self.config.connections + 4)
            await scenario(self)

        sim.add_testbench(main)
        sim.add_testbench(self._ports, background=True)
        if vcd:
            with sim.write_vcd(vcd):
                sim.run()
        else:
            sim.run()

    async def _ports(self, ctx):
        e, cfg = self.engine, self.config
        ctx.set(e.ip_addr, cfg.ip_addr)
        ctx.set(e.mac_addr, cfg.mac_addr)
        ctx.set(e.netmask, cfg.netmask)
        for model in self._models:
            if hasattr(model, "start"):
                model.start(ctx)
        spans, signals = [], []
        for model in self._models:
            own = model.signals()
            spans.append((model, len(signals), len(signals) + len(own)))
            signals += own
        drivers = [m for m in self._models if hasattr(m, "drive")]
        while True:
            ctx.set(e.now, self.now % MOD)
            for model in drivers:
                model.drive(ctx)
            _, _, *values = await ctx.tick().sample(*signals)
            for model, lo, hi in spans:
                model.observe(ctx, *values[lo:hi])
            self.cycle += 1
            self.now += self.us_per_cycle

    async def cycles(self, n: int):
        if n > 0:
            await self.ctx.tick().repeat(n)

    async def until(self, predicate, timeout=2000, what="condition"):
        for _ in range(timeout):
            if predicate():
                return
            await self.ctx.tick()
        raise AssertionError(f"timeout ({timeout} cycles) waiting for {what}")

    async def settle(self, cycles=None):
        """Let every queued input reach the engine, then a full timer scan pass."""
        await self.until(lambda: not (self.seg_in.busy or self.cmd.busy or self.written.busy),
                         what="the inputs to drain")
        await self.cycles(cycles or 12 * self.config.connections)

    async def advance(self, us: int):
        """Move the time base ``us`` microseconds at once."""
        self.now += us
        await self.ctx.tick()

    async def advance_long(self, us: int):
        """Move the time base on by ``us`` microseconds, any amount, in jumps of 2**30 so
        that the timestamp clock counts every wrap of the 32-bit microsecond count."""
        while us:
            step = min(us, 1 << 30)
            await self.advance(step)
            us -= step

    # -- inputs ----------------------------------------------------------------------------
    def command(self, op, conn=0, *, port=0, addr=0, value=0, tag=None) -> int:
        tag = next(self._tags) if tag is None else tag
        self.cmd.queue.append(self.cmd_layout.const(
            {"op": op, "conn": conn, "tag": tag, "port": port, "addr": addr, "value": value}))
        return tag

    def record(self, peer: Peer, flags: str, length=0, *, seq=None, ack=None, window=None,
               mss=None, ip_src=None, ts=None, wscale=None, sack_permitted=False, sack=(),
               ip_ecn=0):
        """An ``rx_meta_layout`` record of a segment from ``peer`` (as the parser makes it):
        options ``mss``, ``ts`` ((TSval, TSecr)), ``wscale``, ``sack_permitted``,
        ``sack`` (up to 4 (left, right) blocks)."""
        if seq is None:
            seq = peer.snd_nxt
            peer.snd_nxt = (seq + length + ("S" in flags) + ("F" in flags)) % MOD
        if ack is None:
            ack = peer.rcv_nxt if "A" in flags else 0
        if ts is None and peer.ts:
            ts = (peer.ts_val, peer.ts_recent if "A" in flags else 0)
        self._buf = (self._buf + 8) % (1 << PTR_BITS)
        option_bytes = (4 * (mss is not None) + 12 * (ts is not None)
                        + 4 * (wscale is not None) + 4 * sack_permitted
                        + (4 + 8 * len(sack) if sack else 0))
        doff = 5 + option_bytes // 4
        return self.meta_layout.const({
            "verdict": Verdict.TCP, "buf_start": self._buf, "buf_end": self._buf + 8,
            "frame_len": 34 + 4 * doff + length, "eth_src": peer.mac,
            "ip_src": peer.ip if ip_src is None else ip_src, "ip_dst": self.config.ip_addr,
            "ip_ihl": 5, "ip_len": 20 + 4 * doff + length, "ip_ttl": 64, "ip_ecn": ip_ecn,
            "tcp_sport": peer.port, "tcp_dport": peer.engine_port, "tcp_seq": seq % MOD,
            "tcp_ack": ack % MOD, "tcp_doff": doff, "tcp_flags": tcp.flag_bits(flags),
            "tcp_window": peer.window if window is None else window,
            "tcp_payload_len": length,
            "tcp_options": {
                "mss_valid": mss is not None, "mss": mss or 0,
                "wscale_valid": wscale is not None, "wscale": min(wscale or 0, 14),
                "sack_permitted": sack_permitted,
                "ts_valid": ts is not None, "ts_val": (ts or (0, 0))[0] % MOD,
                "ts_ecr": (ts or (0, 0))[1] % MOD,
                "sack_count": len(sack),
                "sack": [{"left": a % MOD, "right": b % MOD} for a, b in sack]
                + [{"left": 0, "right": 0}] * (4 - len(sack)),
            },
        })

    def send(self, peer: Peer, flags: str, length=0, **kw) -> int:
        """Queue a segment record on ``seg_in``; returns its ``buf_start``."""
        record = self.record(peer, flags, length, **kw)
        self.seg_in.queue.append(record)
        return record.buf_start

    def icmp_error(self, peer: Peer, type_: int, code: int, seq: int, *, mtu=0,
                   local_port=None) -> int:
        """Queue the record the parser makes of an ICMP error (``Verdict.ICMP_ERROR``,
        hdl/rx/meta.py) that quotes our segment to ``peer`` with sequence number
        ``seq``: the quoted socket pair seen from the peer's side."""
        self._buf = (self._buf + 8) % (1 << PTR_BITS)
        record = self.meta_layout.const({
            "verdict": Verdict.ICMP_ERROR, "buf_start": self._buf, "buf_end": self._buf + 8,
            "frame_len": 70, "eth_src": ROUTER_MAC, "ip_src": peer.ip,
            "ip_dst": self.config.ip_addr, "ip_ihl": 5, "ip_len": 56, "ip_ttl": 60,
            "tcp_sport": peer.port,
            "tcp_dport": peer.engine_port if local_port is None else local_port,
            "tcp_seq": seq % MOD, "tcp_doff": 5, "icmp_type": type_, "icmp_code": code,
            "icmp_mtu": mtu,
        })
        self.seg_in.queue.append(record)
        return record.buf_start

    def write(self, conn: int, n: int, fin=False):
        """The host wrote ``n`` bytes (``fin``: then ended its stream) on ``conn``: a
        ``written`` message computed from the limits the engine gave the TX writer."""
        mon, ring = self.mon, self.config.tx_ring_bytes

        def message():
            limit, gen, is_open, shut = mon.limits.get(conn, (0, 0, 0, 0))
            pos, pgen, broken = mon.positions.get(conn, (0, 0, False))
            start = pos if pgen == gen else (limit - ring) % MOD
            broken = broken and pgen == gen  # a byte of this stream was discarded
            allowed = 0 if broken else min(n, (limit - start) % MOD)
            accept = is_open and not shut
            end = (start + (allowed if accept else 0)) % MOD
            if accept:
                mon.positions[conn] = (end, gen, broken or allowed < n)
            return self.written_layout.const({
                "conn": conn, "end": end, "overflow": accept and allowed < n,
                "shut": is_open and shut, "unknown": not is_open,
                "fin": fin and n == 0 and accept})

        self.written.queue.append(message)

    # -- outputs ---------------------------------------------------------------------------
    async def next_segment(self, timeout=1000, flags=None) -> Seg:
        """The next segment not yet taken by this helper."""
        await self.until(lambda: len(self.segments) > self.seen, timeout, "a segment")
        seg = self.segments[self.seen]
        self.seen += 1
        if flags is not None:
            assert seg.flags == flags, seg
        return seg

    async def burst(self, cycles=200) -> list[Seg]:
        """The segments the engine sends (not yet taken) until it stops for ``cycles``."""
        out = []
        while True:
            await self.cycles(cycles)
            new = self.segments[self.seen:]
            self.seen = len(self.segments)
            if not new:
                return out
            out += new

    async def quiet(self, cycles=150):
        """No segment for ``cycles`` cycles (and none untaken before)."""
        await self.cycles(cycles)
        extra = self.segments[self.seen:]
        assert not extra, f"unexpected segments: {extra}"

    def find_event(self, kind=None, conn=None, tag=None, since=0):
        for ev in self.events[since:]:
            if ((kind is None or ev.kind == kind) and (conn is None or ev.conn == conn)
                    and (tag is None or ev.tag == tag)):
                return ev
        return None

    async def event(self, kind=None, conn=None, tag=None, since=0, timeout=1000) -> Ev:
        await self.until(lambda: self.find_event(kind, conn, tag, since) is not None,
                         timeout, f"event {kind} conn={conn} tag={tag}")
        return self.find_event(kind, conn, tag, since)

    def kinds(self, conn=None, since=0):
        return [ev.kind for ev in self.events[since:] if conn is None or ev.conn == conn]

    # -- the TCB ---------------------------------------------------------------------------
    def tcb(self, conn: int) -> dict:
        """The TCB as stored (an event in progress may hold a newer copy)."""
        view = self.ctx.get(self.engine.tcb_memory.data[conn])
        return {name: getattr(view, name) for name, _ in self.tcb_layout}

    def state(self, conn: int) -> TcpState:
        return self.tcb(conn)["state"]

    async def poke(self, conn: int, **fields):
        """Override TCB fields while no event holds a copy of any TCB.

        The engine reads a TCB in READ (the port's data register loads at the edge into
        LOAD), keeps it in a register and writes it back in WRITE.  So a write just
        after an edge at which the write port was enabled (WRITE, then IDLE: nothing
        loaded) is seen by the next event and overwritten by none.  The timer scan keeps
        the FSM busy, so such an edge comes every few cycles.
        """
        port = self.engine.tcb_memory.write_ports[0]
        for _ in range(500):
            _, _, enabled = await self.ctx.tick().sample(port.en)
            if enabled:
                break
        else:
            raise AssertionError("the engine never wrote a TCB")
        values = self.tcb(conn)
        values.update(fields)
        self.ctx.set(self.engine.tcb_memory.data[conn], self.tcb_layout.const(values))
        if {"snd_una", "snd_end", "iss", "fin_queued"} & fields.keys():
            # The TX writer's view moves with the next limit write; keep the model's now.
            limit, gen, is_open, _ = self.mon.limits.get(conn, (0, 0, 1, 0))
            base = values["snd_una"]
            if not tcp.seq_before_eq(values["iss"] + 1, base):
                base = values["iss"] + 1
            self.mon.limits[conn] = ((base + self.config.tx_ring_bytes) % MOD, gen,
                                     is_open, values["fin_queued"])
            self.mon.positions[conn] = (values["snd_end"], gen, False)

    # -- host helpers ----------------------------------------------------------------------
    async def listen(self, port=80, backlog=4):
        tag = self.command(CommandOp.LISTEN, port=port, value=backlog)
        ev = await self.event(tag=tag)
        assert ev.kind == EventKind.LISTENING, ev
        self.listening.add(port)
        return ev


def run(scenario, config: ToeConfig = BENCH_CONFIG, vcd=None, **options) -> EngineBench:
    """A fresh bench running ``scenario``; returns it for checks after the run."""
    bench = EngineBench(config, **options)
    bench.run(scenario, vcd=vcd)
    return bench
