"""pytest entry for the engine tests (tests/cocotb_engine.py) at data widths 1, 8 and 64.

Width 8 runs in the default suite; 1 and 64 (a model each, and width 1 simulates eight
times the cycles) are ``slow``: ``make test-all`` runs them."""

import pytest

from toe.hdl.config import ToeConfig
from toe.hdl.top import ToeTop
from toe.sim.runner import run_cocotb

WIDTHS = [pytest.param(1, marks=pytest.mark.slow), 8, pytest.param(64, marks=pytest.mark.slow)]

TESTS = [
    "test_registers",
    "test_arp_announcement_at_start",
    "test_arp_request_answered",
    "test_arp_conflict_counted",
    "test_arp_resolution",
    "test_arp_retry_then_fail",
    "test_arp_entry_expires",
    "test_ping_sizes",
    "test_ping_padding_and_ip_options",
    "test_ping_back_to_back",
    "test_closed_syn_gets_rst_ack",
    "test_closed_data_fin_gets_rst_ack",
    "test_closed_ack_gets_rst",
    "test_closed_rst_not_answered",
    "test_malformed_frames_dropped_and_counted",
    "test_fuzz_mutated_frames",
    "test_idle_and_backpressure_matrix",
    "test_buffer_full_drops_and_recovers",
]


def engine_config(width: int) -> ToeConfig:
    """Short ARP timers so that retries and expiry happen within a test, and an RX buffer
    small enough (about two and a half largest frames) to be filled by a test."""
    return ToeConfig(data_bytes=width, arp_timeout_us=2_000, arp_retry_us=50, arp_retries=3,
                     rx_buffer_bytes=4096)


@pytest.mark.parametrize("width", WIDTHS)
def test_engine(width):
    """All engine scenarios at one width, in one simulator process."""
    run_cocotb(ToeTop, engine_config(width), "toe_core", "cocotb_engine", TESTS)
