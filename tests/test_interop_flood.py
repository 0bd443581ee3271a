"""A spoofed-source SYN flood against the engine, with Linux as the legitimate client, on
the virtual NIC (RFC 4987).  Root only, as tests/test_interop.py.  The figures at
higher rates are ``toe bench-flood`` (sim/bench_flood.py, docs/defences.md)."""

from collections import defaultdict

import pytest
from scapy.layers.inet import IP, TCP
from scapy.utils import PcapReader
from test_interop import make_nic, run  # noqa: F401 (make_nic is a fixture)

from toe.host.socket_transport import open_engine
from toe.sim.bench_flood import ECHO_PORT, connects_under_flood
from toe.sim.vnic import can_run_vnic

_WHY_NOT = can_run_vnic()
pytestmark = pytest.mark.skipif(_WHY_NOT is not None, reason=f"virtual NIC: {_WHY_NOT}")

ENGINE = "10.0.0.2"
CLIENTS = 20


def test_connects_during_a_spoofed_syn_flood(make_nic, tmp_path):  # noqa: F811
    """RFC 4987 s3.6 and s3.1 against Linux: 2,000 spoofed SYNs a second from
    198.18.0.0/15 fill the listener's SYN queue with half-open connections, and every
    later SYN is answered with a SYN cookie, no state kept.  Meanwhile 20 legitimate
    Linux connects each send 64 bytes, get them back from the engine's echo server and
    see its FIN: each comes in by a cookie (the SYN queue stays full), none is refused
    or lost.  On the wire, every spoofed SYN the engine read got one SYN-ACK
    acknowledging it (SEG.ACK = SEG.SEQ + 1); only the 8 half-open ones are ever sent
    again.  When the flood stops the port takes a connect at once."""
    pcap = tmp_path / "flood.pcap"
    nic = make_nic(pcap=pcap)

    async def scenario() -> dict:
        engine = await open_engine(str(nic.socket))
        result = await connects_under_flood(engine, nic, {"rate": 2000, "seconds": 120},
                                            clients=CLIENTS, parallel=4, timeout=30)
        await engine.transport.close()
        return result

    result = run(scenario())
    nic.stop()
    assert result["connects_ok"] == CLIENTS, result
    assert result["port_usable_after_seconds"] is not None
    assert result["port_usable_after_seconds"] < 1.0
    assert result["engine_connections_aborted_at_end"] == 0  # every close came through
    counters = result["counters"]
    assert counters["tcp_passive_opens"] == 8  # ToeConfig.syn_backlog: the flood's
    assert counters["tcp_cookies_accepted"] == counters["tcp_established"] >= CLIENTS
    assert counters["tcp_cookies_invalid"] == counters["tcp_cookie_overflows"] == 0
    assert counters["tcp_backlog_drops"] == counters["drop_buffer_full"] == 0

    syns: dict[tuple, int] = {}
    answers: dict[tuple, list[int]] = defaultdict(list)
    with PcapReader(str(pcap)) as frames:
        for frame in frames:
            if IP not in frame or TCP not in frame:
                continue
            ip, tcp = frame[IP], frame[TCP]
            if ip.dst == ENGINE and tcp.dport == ECHO_PORT and ip.src.startswith("198.1"):
                assert tcp.flags == "S"
                syns[ip.src, tcp.sport] = tcp.seq
            elif ip.src == ENGINE and ip.dst.startswith("198.1"):
                assert tcp.flags == "SA", frame.summary()
                answers[ip.dst, tcp.dport].append(tcp.ack)
    assert len(syns) >= 1000, "the flood reached the engine"
    assert set(answers) == set(syns)
    for source, seq in syns.items():
        assert set(answers[source]) == {(seq + 1) & 0xFFFFFFFF}
    assert sum(len(acks) > 1 for acks in answers.values()) <= 8
    assert counters["tcp_cookies_sent"] >= len(syns) - 8
