"""The host driver and ICMP errors (host/icmp.py, host/events.py; docs/host-driver.md):
the engine's ICMP_ERROR event and the UNREACHABLE code of RESET, as the protocol core
reports and keeps them, and the exceptions a program then gets (Linux's errno for each
message, RFC 9293 SHLD-25: the application is told)."""

import errno

import pytest
from test_host_protocol import PEER, events, make_proto, open_active

from toe.hdl.host_if import CommandOp, ErrorCode, EventKind
from toe.host.connection import ConnState, Ending, ending_exception
from toe.host.happenings import Connecting, IcmpError, Refused, TimedOut
from toe.host.icmp import IcmpReport


def test_soft_error_is_reported_kept_and_given_on_timeout():
    """An ICMP_ERROR event (host unreachable) is an IcmpError happening; the connection
    goes on; if it later times out, the error is Linux's for the ICMP message
    (EHOSTUNREACH), not ETIMEDOUT."""
    proto, wire = make_proto()
    open_active(proto, wire, conn=1)
    proto.event_received(wire.event(EventKind.ICMP_ERROR, conn=1, value=3 << 8 | 1))
    report = IcmpReport(3, 1, 0)
    assert events(proto) == [IcmpError(1, report)]
    rec = proto.connection(1)
    assert (rec.icmp_error, rec.stats.icmp_errors, rec.state) == (report, 1,
                                                                  ConnState.ESTABLISHED)
    proto.send(1, b"still open")
    proto.event_received(wire.event(EventKind.TIMEOUT, conn=1))
    assert events(proto) == [TimedOut(1, None, report)]
    with pytest.raises(OSError) as info:
        proto.send(1, b"x")
    assert info.value.errno == errno.EHOSTUNREACH
    assert "ICMP host unreachable" in str(info.value)


def test_port_unreachable_refuses_connect():
    """RESET with code UNREACHABLE ends a connect() as a RST would (the id released),
    with the ICMP message kept: ConnectionRefusedError for port unreachable, ENOPROTOOPT
    for protocol unreachable, as Linux."""
    proto, wire = make_proto()
    tag = proto.connect(PEER, 80)
    proto.commands_to_send()
    proto.event_received(wire.event(EventKind.CONNECTING, tag=tag, conn=2))
    proto.event_received(wire.event(EventKind.RESET, ErrorCode.UNREACHABLE, conn=2,
                                    value=3 << 8 | 3))
    report = IcmpReport(3, 3, 0)
    assert events(proto) == [Connecting(tag, 2), Refused(2, tag, report)]
    assert wire.ops(proto.commands_to_send()) == [(CommandOp.ABORT, 2)]
    exc = ending_exception(Ending.REFUSED, 2, icmp=report)
    assert isinstance(exc, ConnectionRefusedError) and "port unreachable" in str(exc)
    exc = ending_exception(Ending.REFUSED, 2, icmp=IcmpReport(3, 2))
    assert type(exc) is OSError and exc.errno == errno.ENOPROTOOPT


@pytest.mark.parametrize(("kind", "code", "want"), [
    (3, 0, errno.ENETUNREACH), (3, 1, errno.EHOSTUNREACH), (3, 2, errno.ENOPROTOOPT),
    (3, 3, errno.ECONNREFUSED), (3, 4, errno.EMSGSIZE), (3, 13, errno.EHOSTUNREACH),
    (11, 0, errno.EHOSTUNREACH), (12, 0, errno.EPROTO)])
def test_icmp_errno_is_linuxs(kind, code, want):
    """host/icmp.py: the errno of each message as Linux's icmp_err_convert gives it (and
    ICMP_TIME_EXCEEDED EHOSTUNREACH, ICMP_PARAMETERPROB EPROTO, as tcp_v4_err)."""
    report = IcmpReport.from_event(1500 << 16 | kind << 8 | code)
    assert (report.type, report.code, report.mtu) == (kind, code, 1500)
    assert report.errno == want
    assert report.description.startswith("ICMP ")
