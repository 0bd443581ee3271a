"""Whole-board simulation at the RGMII pins: the Colorlight i9 board top on Verilator.

One model (``BoardTop("colorlight-i9", board_config(), simulation=True)``: the PLL
replaced by a direct clock, the behavioural DDR cells of ``RgmiiPhy``), driven by
cocotbext-eth's RGMII models (``tests/cocotb_board.py``): ARP, ping, the host link's
HELLO and registers, a whole TCP connection from the host driver over the host link
(port 1) with a peer on the network port (port 0), and the goodput each way (written to
``build/artifacts/test_board_sim.test_board_scenario-test_goodput/goodput.json``).  The
ECPIX-5 (one port shared by the network and the host link) runs the same module in the
benchmark command ``python -m toe.sim.board_sim`` (docs/boards.md), so that the suite
builds one Verilator model.
"""

import pytest

from toe.sim.board_sim import run_board_sim

#: The board model is the largest Verilator build of the project (about 20 minutes on
#: two cores): ``make test-all`` runs it, ``make test`` does not.
pytestmark = pytest.mark.slow

@pytest.mark.parametrize("scenario", [
    "test_arp_request_answered",
    "test_icmp_echo_answered",
    "test_host_link_hello_and_registers",
    "test_tcp_connection_over_host_link",
    "test_goodput",
])
def test_board_scenario(scenario):
    """One scenario of tests/cocotb_board.py on the i9 model (each cites its rule)."""
    run_board_sim("colorlight-i9", scenario)
