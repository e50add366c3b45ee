"""The emulator's PIO clock and peripheral models (tools/rp2emu) against the real drivers.

``tools/rp2emu/unittest.mjs`` programs PIO and DMA registers directly (no firmware): PIO edges
on the fractional-divider grid, stall skipping, the DMA chain / ring / trigger-alias ping-pong
the MCP3208 driver uses, FJOIN_RX, pacing. ``tools/rp2emu/selftest.mjs`` boots the frozen
MicroPython image (``build/rp2/out/firmware-frozen.uf2``, ``make firmware``) on rp2040js and
runs the real ``Mcp3208Stream``, ``Ws2812`` and ``Display`` drivers against the MCP3208 pair,
WS2812 chain and TM1637 models. Both need node and the ``rp2040js``/``uf2`` npm packages
resolvable from tools/rp2emu (``npm install`` there); the tests skip without them (fail under
``make test``, whose setup installs them: ``tests/requirements.py``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.requirements import requires

ROOT = Path(__file__).resolve().parents[2]
EMU = ROOT / "tools" / "rp2emu"
IMAGE = ROOT / "build" / "rp2" / "out" / "firmware-frozen.uf2"


def _node_ready() -> str | None:
    node = shutil.which("node")
    if node is None:
        return "node not installed"
    probe = subprocess.run(
        [node, "--input-type=module", "-e", "await import('rp2040js'); await import('uf2');"],
        cwd=EMU,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if probe.returncode != 0:
        return "rp2040js / uf2 not installed for tools/rp2emu (npm install there)"
    return None


pytestmark = requires(_node_ready())


def _run(script: str, *args: str, timeout: int) -> dict:
    proc = subprocess.run(
        ["node", script, *args],
        cwd=EMU,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    start = proc.stdout.rfind("\n{")
    text = proc.stdout[start + 1 :] if start >= 0 else proc.stdout
    try:
        summary = json.loads(text)
    except json.JSONDecodeError:
        pytest.fail(
            f"{script} printed no summary (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    assert proc.returncode == 0, f"{script} failed: {summary.get('failed')}\n{proc.stderr}"
    return summary


def test_pio_clock_and_dma_registers():
    summary = _run("unittest.mjs", timeout=300)
    assert summary["ok"] and summary["checks"] >= 12


@requires(IMAGE.exists(), "no frozen rp2 image (make firmware)")
def test_real_drivers_on_emulated_chip(tmp_path):
    out = tmp_path / "selftest.json"
    summary = _run("selftest.mjs", f"--json={out}", "--timeout=500", timeout=600)
    assert summary["ok"], summary["failed"]
    # every block of the stream matched the model's codes, none lost
    assert summary["rate"]["overruns"] == 0 and summary["rate"]["missed_irqs"] == 0
    # 3205.8 instants/s (50.09 blocks of 64 a second before the board took blocks of 32)
    assert abs(summary["rate"]["samplesPerSPerChannel"] - 3205.8) < 2.0
    assert summary["ws2812"]["frames"] == 3 and summary["ws2812"]["malformedBits"] == 0
    assert [c[0] for c in summary["displayChanges"]][-3:] == ["-A- ", " 0.35", " 0.35"]
