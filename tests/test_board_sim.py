"""Whole-board simulation at the RGMII pins: the Colorlight i9 board top on Verilator.

One model (``BoardTop("colorlight-i9", board_config(), simulation=True)``: the PLL
replaced by a direct clock, the behavioural DDR cells of ``RgmiiPhy``), every scenario
of ``tests/cocotb_board.py`` in one simulator process: ARP, ping, the host link's HELLO
and registers, a whole TCP connection from the host driver over the host link (port 1)
with a peer on the network port (port 0), and the goodput each way (written to
``build/artifacts/test_board_sim.test_colorlight_i9_at_the_rgmii_pins/goodput.json``).
The ECPIX-5 (one port shared by the network and the host link) runs the same module in
the benchmark command ``python -m toe.sim.board_sim`` (docs/boards.md), so that the
suite builds one Verilator model.
"""

from toe.sim.board_sim import run_board_sim


def test_colorlight_i9_at_the_rgmii_pins():
    """ARP, ICMP echo, host link, a TCP connection over the host link, goodput."""
    result = run_board_sim("colorlight-i9")
    assert (result.artifacts / "goodput.json").is_file()
