"""pytest entry for the connection tests (tests/cocotb_tcp.py) on Verilator.

The configuration scales the timers down so that retransmission, back-off and TIME-WAIT
happen within a simulation: RTO 200 us (floor 200 us, cap 2 ms), MSL 500 us, R2 after 4
retransmissions (3 for a SYN).  The rules are the RFC's; only the constants differ.
"""

import pytest

from toe.hdl.config import ToeConfig
from toe.hdl.top import ToeTop
from toe.sim.runner import run_cocotb


def tcp_config(width: int = 8, **changes) -> ToeConfig:
    return ToeConfig(
        data_bytes=width, connections=16, tx_ring_bytes=2048, rx_ring_bytes=2048,
        msl_us=500, rto_initial_us=200, rto_min_us=200, rto_max_us=2000,
        r2_retries=4, r2_syn_retries=3, r2_synack_retries=3, challenge_acks_per_s=5,
        arp_timeout_us=60_000_000, arp_retry_us=200, arp_retries=3,
        # The scripted peers expect an answer to every out-of-window segment; the
        # per-connection limit of RFC 5961 s7 is tested at the engine's ports
        # (test_engine_ports_rate_limits.py).
        oow_ack_interval_us=0,
        ack_delay_us=0,  # the scripted peers expect an ACK per segment; delayed ACKs
        #                  are tested at the engine's ports (test_engine_ports_acks.py)
    ).replace(**changes)


@pytest.mark.parametrize("width", [8])
def test_tcp(width):
    """Every connection scenario at one width, in one simulator process."""
    run_cocotb(ToeTop, tcp_config(width), "toe_core", "cocotb_tcp")


def test_tcp_end_to_end():
    """The host driver's async API against a reactive peer (tests/cocotb_e2e.py)."""
    run_cocotb(ToeTop, tcp_config(8), "toe_core", "cocotb_e2e")


@pytest.mark.slow  # a model of its own, the largest: make test-all
def test_tcp_1024_connections():
    """A table of 1,024 connections elaborates, clears itself after reset and runs the
    basic scenarios (small rings keep the model small)."""
    config = tcp_config(8, connections=1024, tx_ring_bytes=256, rx_ring_bytes=2048)
    run_cocotb(ToeTop, config, "toe_core", "cocotb_tcp", [
        "test_listen_syn", "test_established_data_in_order", "test_established_fin_then_close",
        "test_syn_sent_synack", "test_established_rst_in_window",
    ])


def test_tcp_edge_cases():
    """Deviations found against real TCP test scripts, each now a rule checked on the
    wire (tests/cocotb_tcp_edges.py)."""
    run_cocotb(ToeTop, tcp_config(8), "toe_core", "cocotb_tcp_edges")


def test_tcp_options():
    """Window scale, timestamps with PAWS, SACK blocks and reassembly orders on the wire
    (tests/cocotb_tcp_options.py)."""
    run_cocotb(ToeTop, tcp_config(8), "toe_core", "cocotb_tcp_options")


def test_tcp_state_matrix():
    """Every synchronized state against RST, SYN, ACK and data events
    (tests/cocotb_tcp_matrix.py)."""
    run_cocotb(ToeTop, tcp_config(8), "toe_core", "cocotb_tcp_matrix")
