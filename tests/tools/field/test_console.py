"""``smartpdu console`` in a real terminal (tmux): an engineer calibrates a channel of a
virtual board — flashed with the real firmware by ``smartpdu flash`` through mpremote —
against a reference current; the channel then reads within 0.25 %."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.requirements import requires
from tools.field.flash import Builder, flash_board
from tools.field.usbboard import VirtualUsbBoard

pytestmark = requires(shutil.which("tmux") is not None, "tmux is not installed")

SMARTPDU = str(Path(sys.executable).parent / "smartpdu")


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


def screen(session: str) -> str:
    return tmux("capture-pane", "-p", "-J", "-S", "-200", "-t", session)


def wait_screen(session: str, pattern: str, timeout: float) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(re.finditer(pattern, screen(session)))
        if found:
            return found[-1]
        time.sleep(0.2)
    pytest.fail(f"{pattern!r} never appeared on the console:\n{screen(session)}")


def channel_amps(session: str, channel: int) -> float:
    """The current of ``channel`` in the last status table on screen."""
    rows = re.findall(rf"^\s*{channel}\s+(\d+\.\d\d)\s", screen(session), re.MULTILINE)
    assert rows, screen(session)
    return float(rows[-1])


def panel_send(path: Path, message: dict) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(json.dumps(message).encode() + b"\n")
        time.sleep(0.3)


def test_calibrate_a_channel_from_the_console(tmp_path: Path) -> None:
    panel = tmp_path / "panel.sock"
    gains = tmp_path / "cal.json"
    gains.write_text(json.dumps([1.0, 1.0, 1.03] + [1.0] * 9))  # channel 3 reads 3 % high
    env = {"SMARTPDU_CONFIG_DIR": "/config", "SMARTPDU_BUS": "", "SMARTPDU_PANEL": str(panel)}
    session = f"console{int(time.time() * 1000) % 100000}"
    with VirtualUsbBoard(tmp_path / "flash", env=env) as board:
        flash_board(board.port, "sim", group="B", calibration=gains, builder=Builder())
        for _ in range(100):
            if panel.exists():
                break
            time.sleep(0.1)
        panel_send(panel, {"load": {"ch": 3, "kind": "resistive", "amps": 10.0}})
        command = f"env SMARTPDU_HISTORY={tmp_path / 'history'} {SMARTPDU} console {board.port}"
        tmux("new-session", "-d", "-s", session, "-x", "160", "-y", "50", command)
        try:
            wait_screen(session, r"smartPDU console on", 10)
            time.sleep(4)  # the 3 s reading settles
            tmux("send-keys", "-t", session, "status", "Enter")
            wait_screen(session, r"gain ppm", 10)
            before = channel_amps(session, 3)
            assert before == pytest.approx(10.3, rel=0.01)  # miscalibrated by 3 %

            tmux("send-keys", "-t", session, "cal 3 10.00", "Enter")
            wait_screen(session, r"channel 3: read \d+ mA, reference 10000 mA.*saved", 20)
            time.sleep(4)
            tmux("send-keys", "-t", session, "status", "Enter")
            time.sleep(1)
            after = channel_amps(session, 3)
            assert after == pytest.approx(10.0, rel=0.0025)

            # History: the arrow key brings back the last command.
            tmux("send-keys", "-t", session, "Up", "")
            time.sleep(0.3)
            assert screen(session).rstrip().endswith("status")
        finally:
            subprocess.run(["tmux", "kill-session", "-t", session], check=False)
