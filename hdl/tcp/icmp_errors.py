"""ICMP errors about a connection's segments: RFC 9293 s3.9.2.2 as steps of the TCP engine.

The receive parser hands the engine an ICMP destination unreachable, time exceeded or
parameter problem that quotes a TCP segment this engine sent (``Verdict.ICMP_ERROR``,
hdl/rx/meta.py), with the quoted socket pair and sequence number in the segment fields,
so the ordinary socket-pair lookup finds the connection (MUST-54).  Then:

- ``icmp_check`` (RFC 5927 s4.1): the quoted sequence number must lie in
  SND.UNA =< SEQ < SND.MAX, the data in flight (SND.MAX rather than the RFC's SND.NXT:
  after a timeout SND.NXT goes back to SND.UNA, and the segments sent before are still
  in flight).  Anything else is dropped and counted (``tcp_icmp_bad_seq``), as is an
  error for no connection (``tcp_icmp_no_conn``): a blind attacker must guess an
  in-flight sequence number, as for a segment.
- Fragmentation needed (type 3 code 4, RFC 1191): SND.MSS comes down to the next-hop
  MTU less the IPv4 and TCP headers (and the timestamp option, RFC 6691), never below
  ``min_pmtu`` (hdl/config.py; RFC 5927 s7.2), and never up.  In a synchronized state
  the data in flight was too large for the path, so SND.NXT goes back to SND.UNA and the
  output routine sends it again at once at the new size, without the congestion
  response of a timeout (RFC 1191 s6.5; Linux's ``tcp_simple_retransmit``).
- Hard errors (protocol or port unreachable, codes 2 and 3; RFC 1122 s4.2.3.9) abort a
  connection that is opening (SHLD-26): SYN-SENT ends with RESET, code UNREACHABLE, for
  the host; a half-open connection of a listener is deleted.  In a synchronized state a
  hard error is reported like a soft one (RFC 5461 s4.1: aborting an established
  connection on an ICMP message would hand a blind attacker a reset).
- Every other error is soft (destination unreachable 0, 1, 5-15, time exceeded,
  parameter problem): reported to the host as an ICMP_ERROR event, never an abort
  (SHLD-25, MUST-56).  One report per connection until SND.UNA next advances
  (``icmp_reported``), so a flood of errors cannot flood the host's event stream.
  Source quench never gets here (MUST-55: the parser drops it).
"""

from amaranth.hdl import Cat, Mux

from ..host_if import ErrorCode, EventKind
from ..proto import icmp, ipv4, tcp
from .event_context import EventSlot
from .seq import seq_le, seq_lt
from .states import TcpState

__all__ = ["add_icmp_error_steps"]

S = TcpState
#: What a fragmentation-needed MTU leaves for the TCP payload: the IPv4 and TCP headers.
HEADERS = ipv4.MIN_HEADER_BYTES + tcp.MIN_HEADER_BYTES


def add_icmp_error_steps(e, listeners):
    """The steps of an ICMP error for a connection, into the engine's FSM: entered from
    ``seg_dispatch`` with the connection's TCB loaded."""
    m, cfg, t, s = e.m, e.cfg, e.t, e.s
    kind = s.icmp_type
    unreachable = kind == icmp.TYPE_DEST_UNREACHABLE
    frag_needed = unreachable & (s.icmp_code == icmp.CODE_FRAG_NEEDED)
    hard = unreachable & Cat(s.icmp_code == code for code in icmp.HARD_CODES).any()
    half_open = (t.state == S.SYN_RECEIVED) & t.passive
    # The event's value: type << 8 | code, and the reported MTU in the top half.
    report = s.icmp_mtu << 16 | kind << 8 | s.icmp_code
    # The MSS the reported MTU allows, at least the floor's.
    floor = min(cfg.min_pmtu, cfg.mtu)
    mtu = Mux(s.icmp_mtu < floor, floor, s.icmp_mtu)
    options = Mux(t.ts_ok, tcp.TS_OPTION_BYTES, 0)
    path_mss = (mtu - HEADERS - options)[:16]

    with m.State("icmp_check"):
        in_flight = seq_le(t.snd_una, s.tcp_seq) & seq_lt(s.tcp_seq, t.snd_max)
        m.next = "finish"
        with m.If(~in_flight):
            e.count("tcp_icmp_bad_seq")
            m.d.sync += e.write_tcb.eq(0)
            m.next = "emit"
        with m.Elif(frag_needed):
            with m.If(path_mss < t.snd_mss):
                e.count("tcp_icmp_pmtu")
                m.d.sync += t.snd_mss.eq(path_mss)
                with m.If(e.synchronized & (t.snd_nxt != t.snd_una)):
                    # Go back: what is in flight is sent again at the new size.
                    m.d.sync += [t.snd_nxt.eq(t.snd_una), t.rtt_active.eq(0)]
                    e.enqueue()
        with m.Elif(hard & (t.state == S.SYN_SENT)):
            e.to_closed(S.SYN_SENT, "RFC 9293 s3.9.2.2 SHLD-26, RFC 1122 s4.2.3.9")
            e.count("tcp_icmp_aborts")
            with m.If(t.owned):
                e.event(EventSlot.ENDING, EventKind.RESET, ErrorCode.UNREACHABLE, report)
        with m.Elif(hard & half_open):
            e.to_closed(S.SYN_RECEIVED, "RFC 9293 s3.9.2.2 SHLD-26 (a half-open connection)")
            e.count("tcp_icmp_aborts")
            listeners.half_open_done(t.listener)
        with m.Else():
            e.count("tcp_icmp_soft")
            with m.If(t.owned & ~t.icmp_reported):
                m.d.sync += t.icmp_reported.eq(1)
                e.event(EventSlot.OPEN, EventKind.ICMP_ERROR, value=report)
