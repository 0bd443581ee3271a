"""Initial sequence numbers: RFC 9293 s3.4.1 (MUST-8, SHLD-1, MUST-9) and RFC 6528 s3.

ISN = M + F(localip, localport, remoteip, remoteport, secretkey), where M is a 32-bit
timer that counts every 4 microseconds and F is a keyed pseudorandom function.  Here F is
the low 32 bits of SipHash-2-4 (Aumasson and Bernstein, "SipHash: a fast short-input
PRF", 2012) under a 128-bit secret key, of the 12-byte message::

    local_ip (4 bytes) | remote_ip (4 bytes) | local_port (2 bytes) | remote_port (2 bytes)

each field big-endian (network byte order), i.e. ``struct.pack("!IIHH", local_ip,
remote_ip, local_port, remote_port)``.

The same block hashes SYN cookies (:mod:`hdl.tcp.syn_cookie`): a request with
``cookie`` set hashes the 14-byte message of the four fields and the 16-bit ``salt``
(``struct.pack("!IIHHH", ...)``), and answers the low 32 bits of SipHash alone, without
the clock.  The message lengths differ, so an ISN and a cookie of the same connection
are independent values of the keyed function.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["IsnGenerator", "isn_request_layout", "isn_response_layout", "ISN_LATENCY",
           "MESSAGE_BYTES", "COOKIE_MESSAGE_BYTES"]

MESSAGE_BYTES = 12
COOKIE_MESSAGE_BYTES = 14
ISN_LATENCY = 10  # clock edges from a ``request`` transfer to the earliest ``response`` transfer

# SipHash initialisation constants ("somepseudorandomlygeneratedbytes").
_SIPHASH_IV = (0x736F6D6570736575, 0x646F72616E646F6D, 0x6C7967656E657261, 0x7465646279746573)
_C_ROUNDS = 2
_D_ROUNDS = 4
_BLOCKS = 2  # 12 message bytes + the length byte fill two 8-byte blocks

isn_request_layout = data.StructLayout({
    "local_ip": 32,
    "local_port": 16,
    "remote_ip": 32,
    "remote_port": 16,
    "cookie": 1,  # a SYN cookie's hash: the 14-byte message with ``salt``, no clock
    "salt": 16,
})

isn_response_layout = data.StructLayout({"isn": 32})


def _sipround(v0, v1, v2, v3):
    """One SipRound on four 64-bit values; returns the four new values."""
    v0 = (v0 + v1)[:64]
    v1 = v1.rotate_left(13) ^ v0
    v0 = v0.rotate_left(32)
    v2 = (v2 + v3)[:64]
    v3 = v3.rotate_left(16) ^ v2
    v0 = (v0 + v3)[:64]
    v3 = v3.rotate_left(21) ^ v0
    v2 = (v2 + v1)[:64]
    v1 = v1.rotate_left(17) ^ v2
    v2 = v2.rotate_left(32)
    return v0, v1, v2, v3


def _byteswap(value):
    """``value`` with its bytes in reverse order (big-endian field -> SipHash byte order)."""
    return Cat(*[value[i : i + 8] for i in reversed(range(0, len(value), 8))])


class IsnGenerator(wiring.Component):
    """Computes the initial sequence number of a new connection (RFC 6528 s3).

    RFC 9293 s3.4.1: the ISN generator "is bound to a (possibly fictitious) 32-bit clock
    whose low-order bit is incremented roughly every 4 microseconds" (MUST-8), and a TCP
    SHOULD generate its ISNs as ISN = M + F(localip, localport, remoteip, remoteport,
    secretkey) (SHLD-1), where "F() MUST NOT be computable from the outside" (MUST-9).

    M, the 4 us timer, is derived from the engine's 32-bit microsecond time base:
    ``M = epoch * 2**30 + (now_us >> 2)``, where the 2-bit ``epoch`` counts the wraps of
    ``now_us`` (seen as its top bit falling).  Until ``now_us`` first wraps (71.6 minutes
    after reset) M is exactly ``now_us >> 2``; after that it keeps counting, so M is a
    true 32-bit clock that wraps every 2**32 * 4 us (4.55 hours, RFC 9293 s3.4.1) and
    never jumps back by 2**30 as ``now_us >> 2`` alone would.  ``now_us`` must be driven
    every cycle by the time base (it may not jump back other than by wrapping).  M is
    taken in the cycle the request transfers.

    F is SipHash-2-4 of the 12-byte message in the module docstring, low 32 bits.  The
    128-bit key is written through ``key``/``key_we`` and cannot be read back: there is
    no path from the key register to any output other than through SipHash (RFC 6528
    s3: "F() MUST NOT be computable from the outside"; the key "should be of a
    reasonable length.  Key lengths of 128 bits should be adequate").  The key is zero
    after reset; the host must write a random one (RFC 6528 s3, RFC 4086) before
    connections are opened (``keyed`` tells whether it has).  A request that transfers
    in the same cycle as a key write is hashed with the old key; a key write never
    disturbs a hash in progress (the key is only read when a request is taken).

    The key port holds the 16 key bytes of the SipHash paper (k0 = key bytes 0..7,
    k1 = 8..15, little-endian) with byte i at ``key[8*i : 8*i+8]``, so the key bytes
    ``b`` are written as ``int.from_bytes(b, "little")``.

    Latency: 10 cycles (:data:`ISN_LATENCY`).  A request that transfers on clock edge t
    loads the SipHash state on that edge; edges t + 1 .. t + 8 run one SipRound each (2
    compression rounds for each of the two message blocks, then 4 finalization rounds);
    edge t + 9 registers M + F, and the response transfers on edge t + 10 at the
    earliest.  (The addition has its own cycle so that no path holds more than one
    SipRound: two 64-bit carry chains.)  A new request is taken on the edge the
    response transfers, so back-to-back requests get one ISN every 10 cycles.

    Ports
    -----
    request : In(stream)
        ``local_ip``, ``local_port``, ``remote_ip``, ``remote_port``: the connection;
        ``cookie`` and ``salt``: a SYN cookie's hash instead.
    response : Out(stream)
        ``isn``: its initial sequence number (or the cookie's hash), one per request,
        in order.
    now_us : In
        The engine's time base: microseconds since reset (wraps).
    key : In, key_we : In
        Write ``key`` into the secret key register (write-only).
    keyed : Out
        A key has been written since reset.
    """

    request: In(stream.Signature(isn_request_layout))
    response: Out(stream.Signature(isn_response_layout))
    now_us: In(32)
    key: In(128)
    key_we: In(1)
    keyed: Out(1)

    def elaborate(self, platform):
        m = Module()

        secret = Signal(128)
        with m.If(self.key_we):
            m.d.sync += [secret.eq(self.key), self.keyed.eq(1)]

        # M: the 4 us clock, extended past the wrap of now_us (RFC 9293 s3.4.1 MUST-8).
        epoch = Signal(2)
        last_msb = Signal()
        epoch_now = Signal(2)
        m.d.comb += epoch_now.eq(epoch + (last_msb & ~self.now_us[31]))
        m.d.sync += [epoch.eq(epoch_now), last_msb.eq(self.now_us[31])]
        timer = Signal(32)  # M, latched with the request
        cookie = Signal()  # the request was a cookie's: no clock added

        # SipHash-2-4 state and message blocks (little-endian 64-bit words).
        v = [Signal(64, name=f"v{i}") for i in range(4)]
        blocks = [Signal(64, name=f"m{i}") for i in range(_BLOCKS)]
        p = self.request.p
        block_words = [
            Cat(_byteswap(p.local_ip), _byteswap(p.remote_ip)),
            Cat(_byteswap(p.local_port), _byteswap(p.remote_port),
                Mux(p.cookie, _byteswap(p.salt), 0)[:16], Const(0, 8),
                Mux(p.cookie, COOKIE_MESSAGE_BYTES, MESSAGE_BYTES)[:8]),  # length byte
        ]
        k0, k1 = secret[:64], secret[64:]
        rounds = _BLOCKS * _C_ROUNDS + _D_ROUNDS
        round_index = Signal(range(rounds))

        take = Signal()
        m.d.comb += take.eq(self.request.valid & self.request.ready)
        with m.If(take):
            m.d.sync += [
                v[0].eq(k0 ^ _SIPHASH_IV[0]),
                v[1].eq(k1 ^ _SIPHASH_IV[1]),
                v[2].eq(k0 ^ _SIPHASH_IV[2]),
                v[3].eq(k1 ^ _SIPHASH_IV[3] ^ block_words[0]),  # absorb block 0
                blocks[0].eq(block_words[0]),
                blocks[1].eq(block_words[1]),
                timer.eq(Cat(self.now_us[2:], epoch_now)),
                cookie.eq(p.cookie),
                round_index.eq(0),
            ]

        r = _sipround(*v)
        after = list(r)
        for i in range(4):
            after[i] = Signal(64, name=f"after{i}")
            m.d.comb += after[i].eq(r[i])
        # After the compression rounds of a block: v0 ^= block, then v3 ^= next block;
        # after the last block: v2 ^= 0xff (finalization).
        with m.If(round_index == _C_ROUNDS - 1):
            m.d.comb += [after[0].eq(r[0] ^ blocks[0]), after[3].eq(r[3] ^ blocks[1])]
        with m.If(round_index == 2 * _C_ROUNDS - 1):
            m.d.comb += [after[0].eq(r[0] ^ blocks[1]), after[2].eq(r[2] ^ 0xFF)]
        digest = v[0] ^ v[1] ^ v[2] ^ v[3]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.request.ready.eq(1)
                with m.If(self.request.valid):
                    m.next = "ROUND"
            with m.State("ROUND"):
                m.d.sync += [v[i].eq(after[i]) for i in range(4)]
                m.d.sync += round_index.eq(round_index + 1)
                with m.If(round_index == rounds - 1):
                    m.next = "DIGEST"
            with m.State("DIGEST"):
                # ISN = M + F (mod 2**32), F = low 32 bits of SipHash-2-4.
                m.d.sync += self.response.p.isn.eq(Mux(cookie, 0, timer) + digest[:32])
                m.next = "RESPONSE"
            with m.State("RESPONSE"):
                m.d.comb += [
                    self.response.valid.eq(1),
                    self.request.ready.eq(self.response.ready),
                ]
                with m.If(self.response.ready):
                    with m.If(self.request.valid):
                        m.next = "ROUND"
                    with m.Else():
                        m.next = "IDLE"
        return m
