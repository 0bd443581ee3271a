"""Run cocotb tests on a cached Verilator build, from pytest.

:func:`run_cocotb` builds the model (see :mod:`sim.build`), runs the chosen cocotb tests in a
fresh simulator process and raises ``AssertionError`` naming every failed cocotb test with its
message when any failed (or when none ran).

The cocotb side learns its context from the environment:

``TOE_CONFIG``
    The :class:`~hdl.config.ToeConfig` as JSON (:func:`sim.testbench.load_config` reads it).
``TOE_ARTIFACTS``
    The directory for this test's artefacts, ``build/artifacts/<module>.<pytest test>/``: the
    simulator log ``sim.log``, ``results.xml``, the waveform ``waves.fst``/``waves.vcd`` and
    the pcaps the testbench writes.
"""

import json
import os
import re
import shutil
import sys
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from toe.hdl.config import ToeConfig

from .build import Build, TopFactory, build, build_root, env_override, waves_requested

__all__ = ["CocotbResult", "RunResult", "artifacts_dir", "run_cocotb", "current_test_name"]


@dataclass(frozen=True)
class CocotbResult:
    """The outcome of one cocotb test: ``status`` is "passed", "failed" or "skipped"."""

    name: str
    status: str
    message: str
    sim_time_ns: float


@dataclass(frozen=True)
class RunResult:
    """What :func:`run_cocotb` did: the build used, where the artefacts are, every result."""

    build: Build
    artifacts: Path
    results_xml: Path
    log: Path
    waves: Path | None
    results: tuple[CocotbResult, ...]

    @property
    def passed(self) -> list[str]:
        return [r.name for r in self.results if r.status == "passed"]


def current_test_name(fallback: str = "test") -> str:
    """The running pytest test as ``<module>.<test>`` (``test_harness.test_x-8`` for
    ``tests/test_harness.py::test_x[8]``) from ``PYTEST_CURRENT_TEST``, else ``fallback``;
    safe as a directory name."""
    current = os.environ.get("PYTEST_CURRENT_TEST", "")
    if current:
        node = current.rsplit(" ", 1)[0]
        path, _, rest = node.partition("::")
        name = f"{Path(path).stem}.{rest}" if rest else Path(path).stem
    else:
        name = fallback
    return re.sub(r"[^\w.-]+", "-", name).strip("-.") or "test"


_used_dirs: set[Path] = set()


def artifacts_dir(name: str | None = None) -> Path:
    """``build/artifacts/<name>/`` (default: the running pytest test), created.

    The first use in a process empties it, so that it holds the artefacts of this run only
    (several :func:`run_cocotb` calls of one test then add to it).
    """
    path = build_root() / "artifacts" / (name or current_test_name())
    if path not in _used_dirs:
        _used_dirs.add(path)
        shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_cocotb(
    top_factory: TopFactory,
    config: ToeConfig,
    name: str,
    test_module: str | Path,
    testcase: str | Sequence[str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    waves: bool | None = None,
    *,
    seed: int | None = None,
    artifacts: str | None = None,
) -> RunResult:
    """Build ``top_factory(config)`` as module ``name`` (cached) and run cocotb tests on it.

    ``test_module`` is a module name importable from ``sys.path`` (pytest puts ``tests/``
    there) or a path to a ``.py`` file.  ``testcase`` selects cocotb tests by exact name, with
    all their ``@cocotb.parametrize`` variants (default: all tests in the module).  ``waves``
    (default: ``TOE_WAVES``) records a waveform into the artefacts directory; ``artifacts``
    names that directory (default: the pytest test name); ``seed`` fixes cocotb's random
    seed.  ``extra_env`` reaches the cocotb side as environment variables.

    Raises ``AssertionError`` when a cocotb test failed or none ran, and
    :class:`~sim.build.BuildError` when the build failed.
    """
    module = _import_name(test_module)
    waves = waves_requested(waves)
    model = build(top_factory, config, name, waves=waves)
    out = artifacts_dir(artifacts)
    results_xml = out / "results.xml"
    log = out / "sim.log"
    results_xml.unlink(missing_ok=True)
    wave_file = out / f"waves.{model.trace_format}" if waves else None
    for old in out.glob("waves.*"):
        old.unlink()

    env = {
        "TOE_CONFIG": json.dumps(asdict(config)),
        "TOE_ARTIFACTS": str(out),
        **(extra_env or {}),
    }
    from cocotb_tools.runner import get_runner

    runner = get_runner("verilator")
    exit_note = ""
    with env_override({**env, "WAVES": "1" if waves else "0", "GUI": None}):
        try:
            runner.test(
                test_module=module,
                hdl_toplevel=name,
                hdl_toplevel_lang="verilog",
                test_filter=_test_filter(testcase),
                seed=seed,
                extra_env=env,
                waves=waves,
                build_dir=model.directory,
                test_dir=out,
                results_xml=str(results_xml),
                test_args=["--trace-file", str(wave_file)] if wave_file else [],
                log_file=log,
            )
        except SystemExit as exc:  # the runner exits when a test failed under pytest
            exit_note = f" (simulator exit {exc.code})" if exc.code else ""
        except RuntimeError as exc:
            exit_note = f" ({exc})"

    results = _parse_results(results_xml)
    failed = [r for r in results if r.status == "failed"]
    ran = [r for r in results if r.status != "skipped"]
    where = f"log: {log}"
    if not results_xml.is_file():
        raise AssertionError(f"the simulation wrote no results{exit_note}; {where}\n{_tail(log)}")
    if failed:
        lines = [f"{len(failed)} of {len(ran)} cocotb tests failed{exit_note}; {where}"]
        lines += [f"  {r.name}: {r.message}" for r in failed]
        raise AssertionError("\n".join(lines) + "\n" + _tail(log))
    if not ran:
        raise AssertionError(f"no cocotb test ran (testcase={testcase!r}); {where}")
    if exit_note:
        raise AssertionError(f"the simulator failed{exit_note}; {where}\n{_tail(log)}")
    return RunResult(
        build=model,
        artifacts=out,
        results_xml=results_xml,
        log=log,
        waves=wave_file,
        results=tuple(results),
    )


def _test_filter(testcase: str | Sequence[str] | None) -> str | None:
    """A ``COCOTB_TEST_FILTER`` matching exactly the named tests, and all parametrizations
    (``name/param=value``) of them."""
    if testcase is None:
        return None
    names = [testcase] if isinstance(testcase, str) else list(testcase)
    names = [n.strip() for name in names for n in name.split(",") if n.strip()]
    return r"\.(" + "|".join(re.escape(n) for n in names) + r")(/.*)?$"


def _import_name(test_module: str | Path) -> str:
    """A module name for cocotb; a file path puts its directory on ``sys.path`` (which the
    runner passes on as the simulator's ``PYTHONPATH``)."""
    text = str(test_module)
    if text.endswith(".py") or os.sep in text:
        path = Path(text).resolve()
        if not path.is_file():
            raise FileNotFoundError(path)
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))
        return path.stem
    return text


def _parse_results(results_xml: Path) -> list[CocotbResult]:
    """Read cocotb's xUnit results file."""
    try:
        root = ET.parse(results_xml).getroot()
    except (OSError, ET.ParseError):
        return []
    results = []
    for case in root.iter("testcase"):
        status, message = "passed", ""
        for tag in ("failure", "error"):
            node = case.find(tag)
            if node is not None:
                status = "failed"
                message = node.get("message") or (node.text or "").strip() or tag
        if status == "passed" and case.find("skipped") is not None:
            status = "skipped"
        results.append(
            CocotbResult(
                name=case.get("name", "?"),
                status=status,
                message=message,
                sim_time_ns=float(case.get("sim_time_ns", "0") or 0),
            )
        )
    return results


def _tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return f"--- last lines of {path} ---\n" + "\n".join(text[-lines:])
