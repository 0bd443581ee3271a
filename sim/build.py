"""Amaranth -> Verilog -> Verilator, cached per configuration.

A *top factory* is a callable that takes a :class:`~hdl.config.ToeConfig` and returns either a
``wiring.Component`` (its ports come from its signature) or a pair ``(elaboratable, ports)`` for
a plain ``Elaboratable`` (``ports`` as :func:`amaranth.back.verilog.convert` takes them).

Each (top name, configuration) builds into its own directory::

    build/sim/<name>-<config.key()>/          the Verilog, the Verilator model, build.log
    build/sim/<name>-<config.key()>-waves/    the same, compiled with --trace-fst

A build is skipped when a stamp in that directory matches a digest of the Verilog text (less
its ``src`` attributes, which only record Python line numbers), the Verilator version and the
build arguments.  Concurrent builders (pytest-xdist workers) serialise on an ``fcntl`` lock per
directory, so the second worker finds the first one's finished build.  Verilator's runtime
objects (``verilated*.o``: design independent, and most of a cold build's compile time) are
kept in ``build/sim/.runtime/`` and seeded into new build directories of the same top.

Environment: ``TOE_BUILD_DIR`` moves ``build/``; ``TOE_WAVES=1`` (or cocotb's ``WAVES=1``)
selects the waveform build where the caller leaves ``waves`` as ``None``.  Waveforms are FST
when liblz4-dev is installed (Verilator's FST writer needs it), VCD otherwise.
"""

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amaranth.back import verilog as amaranth_verilog
from amaranth.hdl import Elaboratable
from amaranth.lib import wiring

from toe.hdl.config import ToeConfig

from .verilator import use_verilator, verilator_root, verilator_version

__all__ = [
    "Build",
    "BuildError",
    "TopFactory",
    "build",
    "build_dir",
    "build_root",
    "verilog",
    "verilog_text",
    "waves_requested",
    "VERILATOR_ARGS",
    "trace_format",
    "env_override",
]

TopFactory = Callable[[ToeConfig], "wiring.Component | tuple[Elaboratable, Any]"]
"""``factory(config)`` -> a ``wiring.Component``, or ``(elaboratable, ports)``."""

VERILATOR_ARGS: tuple[str, ...] = (
    "-Wno-fatal",
    "-Wno-lint",
    "-Wno-style",
    "-O3",
    "--x-assign",
    "fast",
    "--x-initial",
    "fast",
)
"""Verilator arguments of every build (the generated Verilog is not ours to lint)."""

MAKE_ARGS: tuple[str, ...] = ("OPT_FAST=-O2",)
"""Make variables of every build: the model's hot code at -O2 (Verilator's default is -Os)."""


TIMESCALE = ("1ns", "1ps")

_REPO_ROOT = Path(__file__).resolve().parent.parent
_SRC_ATTR = re.compile(r"\(\* src = \"[^\"]*\" \*\)")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STAMP = "build.stamp"
_verilog_cache: dict[tuple[Any, ToeConfig, str], str] = {}


class BuildError(RuntimeError):
    """Verilog generation or the Verilator build failed; the message has the log tail."""


@dataclass(frozen=True)
class Build:
    """A compiled simulation model.

    ``compiled`` is True when this call ran Verilator, False when the cache was used.
    """

    name: str
    config: ToeConfig
    directory: Path
    verilog: Path
    executable: Path
    waves: bool
    compiled: bool
    seconds: float

    @property
    def trace_format(self) -> str | None:
        """``"fst"`` or ``"vcd"`` for a waveform build, else None."""
        return trace_format() if self.waves else None


def build_root() -> Path:
    """``build/`` at the repository root, or ``$TOE_BUILD_DIR``."""
    return Path(os.environ.get("TOE_BUILD_DIR") or _REPO_ROOT / "build").resolve()


def waves_requested(waves: bool | None = None) -> bool:
    """``waves`` if given, else whether ``TOE_WAVES`` (or cocotb's ``WAVES``) is set true."""
    if waves is not None:
        return waves
    for var in ("TOE_WAVES", "WAVES"):
        value = os.environ.get(var, "").strip().lower()
        if value:
            return value not in ("0", "false", "no", "off")
    return False


def build_dir(config: ToeConfig, name: str, waves: bool = False) -> Path:
    """``build/sim/<name>-<config.key()>[-waves]``."""
    return build_root() / "sim" / f"{name}-{config.key()}{'-waves' if waves else ''}"


@functools.cache
def trace_format() -> str:
    """The waveform format of waveform builds: ``"fst"`` when the C++ compiler finds
    ``lz4.h`` and ``zlib.h`` (Verilator's FST writer needs liblz4-dev and zlib1g-dev),
    else ``"vcd"``."""
    probe = "#include <lz4.h>\n#include <zlib.h>\n"
    try:
        result = subprocess.run(
            [os.environ.get("CXX", "c++"), "-fsyntax-only", "-x", "c++", "-"],
            input=probe,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except OSError:
        return "vcd"
    if result.returncode != 0:
        warnings.warn(
            "lz4.h not found (install liblz4-dev): waveform builds write VCD, not FST",
            stacklevel=2,
        )
        return "vcd"
    return "fst"


def verilog_text(top_factory: TopFactory, config: ToeConfig, name: str) -> str:
    """Elaborate ``top_factory(config)`` and return its Verilog with module name ``name``.

    Memoised per process: the same (factory, config, name) converts once.
    """
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"{name!r} is not a Verilog module name")
    key = (top_factory, config, name)
    try:
        return _verilog_cache[key]
    except (KeyError, TypeError):
        pass
    top = top_factory(config)
    if isinstance(top, tuple):
        elaboratable, ports = top
        text = amaranth_verilog.convert(elaboratable, name=name, ports=ports)
    elif isinstance(top, wiring.Component):
        text = amaranth_verilog.convert(top, name=name)
    else:
        raise TypeError(
            f"top factory returned {type(top).__name__}: expected a wiring.Component "
            "or a pair (elaboratable, ports)"
        )
    with contextlib.suppress(TypeError):  # unhashable factory: do not memoise
        _verilog_cache[key] = text
    return text


def verilog(top_factory: TopFactory, config: ToeConfig, name: str, *, waves: bool = False) -> Path:
    """Write the Verilog of ``top_factory(config)`` to ``<build_dir>/<name>.v`` and return the
    path.  The file is replaced atomically and only when its text changed."""
    directory = build_dir(config, name, waves)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.v"
    _write_if_changed(path, verilog_text(top_factory, config, name))
    return path


def build(
    top_factory: TopFactory,
    config: ToeConfig,
    name: str,
    *,
    waves: bool | None = None,
    extra_args: Sequence[str] = (),
) -> Build:
    """Compile ``top_factory(config)`` with Verilator for cocotb, unless an identical build
    exists.  Safe to call from concurrent processes.  Raises :class:`BuildError`."""
    started = time.monotonic()
    waves = waves_requested(waves)
    use_verilator()
    text = verilog_text(top_factory, config, name)
    trace_args = ["--trace-fst"] if waves and trace_format() == "fst" else []
    args = [*VERILATOR_ARGS, *trace_args, *extra_args]
    directory = build_dir(config, name, waves)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.v"
    executable = directory / name
    digest = _digest(text, args, waves)

    with _locked(directory / ".lock"):
        _write_if_changed(path, text)
        stamp = directory / _STAMP
        compiled = not (executable.is_file() and _read_stamp(stamp) == digest)
        if compiled:
            stamp.unlink(missing_ok=True)
            _compile(directory, path, name, waves, args)
            if not executable.is_file():
                raise BuildError(f"the build of {name} left no {executable}")
            stamp.write_text(
                json.dumps({"digest": digest, "name": name, "config": config.key()}) + "\n"
            )
    return Build(
        name=name,
        config=config,
        directory=directory,
        verilog=path,
        executable=executable,
        waves=waves,
        compiled=compiled,
        seconds=time.monotonic() - started,
    )


# -- internals ----------------------------------------------------------------------------


def _digest(text: str, args: Sequence[str], waves: bool) -> str:
    import cocotb

    h = hashlib.sha256()
    for part in (
        _SRC_ATTR.sub("", text),
        "\0".join(args),
        "\0".join(MAKE_ARGS),
        str(waves),
        str(TIMESCALE),
        verilator_version(),
        str(verilator_root()),
        cocotb.__version__,
    ):
        h.update(part.encode())
        h.update(b"\0\1")
    return h.hexdigest()


def _read_stamp(stamp: Path) -> str | None:
    try:
        return json.loads(stamp.read_text())["digest"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_if_changed(path: Path, text: str) -> None:
    with contextlib.suppress(OSError):
        if path.read_text() == text:
            return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """An exclusive ``fcntl`` lock on ``lock_path`` for the duration of the block."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def env_override(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set (or, for ``None``, remove) variables in ``os.environ`` for the block.

    cocotb's runner builds its subprocess environment from ``os.environ`` *over* the
    ``extra_env`` it is given, and reads ``WAVES``/``GUI`` from it, so the harness pins them.
    """
    saved = {key: os.environ.get(key) for key in values}
    try:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _runtime_cache(name: str, args: Sequence[str], waves: bool) -> Path:
    h = hashlib.sha256(
        "\0".join(
            [name, verilator_version(), str(verilator_root()), str(waves), *args, *MAKE_ARGS]
        ).encode()
    )
    return build_root() / "sim" / ".runtime" / h.hexdigest()[:12]


_SEED_SCRIPT = """
import pathlib, shutil, sys
cache, directory = map(pathlib.Path, sys.argv[1:3])
if not any(directory.glob("verilated*.o")):
    for path in cache.iterdir():
        shutil.copy(path, directory / path.name)
"""


def _store_runtime(directory: Path, cache: Path) -> None:
    """Keep the design-independent runtime objects of a finished build for later builds."""
    if cache.is_dir():
        return
    objects = [o for o in directory.glob("verilated*.o") if o.with_suffix(".d").is_file()]
    if not objects:
        return
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache.parent, prefix=".tmp-"))
    for obj in objects:
        shutil.copy2(obj, tmp / obj.name)
        shutil.copy2(obj.with_suffix(".d"), tmp / obj.with_suffix(".d").name)
    try:
        os.rename(tmp, cache)
    except OSError:  # another process stored it first
        shutil.rmtree(tmp, ignore_errors=True)


def _runner(cache: Path) -> Any:
    """cocotb's Verilator runner, seeding a fresh build directory from ``cache``.

    Verilator's runtime objects (``verilated*.o``) do not depend on the design, but make
    rebuilds them whenever ``Vtop.mk`` is newer, which it always is in a fresh directory.  So
    the cached objects are copied in (with fresh time stamps) *between* the ``verilator`` and
    ``make`` commands of the runner's build.  Should a later cocotb-tools change the shape of
    those commands, seeding is skipped and builds are merely slower.
    """
    from cocotb_tools.runner import Verilator

    class SeedingVerilator(Verilator):
        def _build_command(self):  # noqa: ANN202 - cocotb-tools' private hook
            cmds = super()._build_command()
            if cmds and cmds[-1] and cmds[-1][0] == "make":
                # The PyPI wheel's verilated.mk leaves the precompiled-header include flag
                # empty, which breaks designs large enough to be split into several files.
                cmds[-1] = [*cmds[-1], "CFG_CXXFLAGS_PCH_I=-include", *MAKE_ARGS]
            if cache.is_dir() and len(cmds) >= 2 and cmds[-1] and cmds[-1][0] == "make":
                seed = [sys.executable, "-c", _SEED_SCRIPT, str(cache), str(self.build_dir)]
                cmds.insert(len(cmds) - 1, seed)
            return cmds

    return SeedingVerilator()


def _compile(directory: Path, source: Path, name: str, waves: bool, args: Sequence[str]) -> None:
    """Run cocotb's Verilator build (verilator, then make) in ``directory``."""
    cache = _runtime_cache(name, args, waves)
    log = directory / "build.log"
    runner = _runner(cache)
    try:
        with env_override({"WAVES": "1" if waves else "0"}):
            runner.build(
                sources=[source],
                hdl_toplevel=name,
                build_dir=directory,
                build_args=list(args),
                waves=waves,
                timescale=TIMESCALE,
                log_file=log,
            )
    except (RuntimeError, SystemExit) as exc:
        raise BuildError(f"Verilator build of {name} failed ({exc}); {_tail(log)}") from None
    _store_runtime(directory, cache)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"no log at {path}"
    return f"last lines of {path}:\n" + "\n".join(text[-lines:])
