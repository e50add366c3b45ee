"""Virtual boards: the real firmware on the MicroPython unix port with the ``sim`` board.

A ``VirtualBoard`` is one MicroPython process running ``firmware.app`` exactly as a board
runs it, attached to a virtual RS-485 bus (UNIX socket) and serving its front panel on a
second UNIX socket (JSON lines, see ``firmware/drivers/sim/panel_server.py``). This side
starts and stops the process, follows the panel state (LED colours, display text) and drives
it: button presses, status inputs, and the simulated load on each CT channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol.consts import BUS_BAUD

ROOT = Path(__file__).resolve().parents[2]


class VirtualBoardError(Exception):
    """The virtual board process failed or its panel did not answer."""


def micropython_command() -> str:
    beside = Path(sys.executable).parent / "micropython"
    return str(beside) if beside.exists() else "micropython"


@dataclass
class PanelState:
    """Last state line the board's panel sent."""

    leds: list[tuple[int, int, int]] = field(default_factory=list)
    display: str = ""
    pressed: list[int] = field(default_factory=list)
    inputs: dict[str, int] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)


class VirtualBoard:
    """One simulated board process. ``role`` is "group" or "mains"."""

    def __init__(
        self,
        name: str,
        *,
        bus_socket: str | None,
        workdir: Path,
        group: str = "A",
        role: str = "group",
        uid: str | None = None,
        baud: int = BUS_BAUD,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.role = role
        self.group = group
        self.workdir = Path(workdir)
        self.bus_socket = bus_socket
        self.uid = uid or (f"sim-{group}" if role == "group" else "sim-mains")
        self.baud = baud
        self.extra_env = dict(extra_env or {})
        self.panel_path = str(self.workdir / f"{name}.panel")
        self.config_dir = self.workdir / f"{name}-flash"
        self.process: asyncio.subprocess.Process | None = None
        self.state = PanelState()
        self.state_changed = asyncio.Event()
        self.log: list[str] = []
        self._panel_reader: asyncio.StreamReader | None = None
        self._panel_writer: asyncio.StreamWriter | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.info: dict[str, Any] = {}

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    async def start(self, timeout: float = 10.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(
            {
                "MICROPYPATH": f"{ROOT}:.frozen",
                "SMARTPDU_PANEL": self.panel_path,
                "SMARTPDU_UID": self.uid,
                "SMARTPDU_GROUP": self.group,
                "SMARTPDU_ROLE": self.role,
                "SMARTPDU_CONFIG_DIR": str(self.config_dir),
                "SMARTPDU_BAUD": str(self.baud),
                # stdin is our pipe: if this process dies, the board exits too
                "SMARTPDU_EXIT_ON_EOF": "1",
            }
        )
        if self.bus_socket:
            env["SMARTPDU_BUS"] = self.bus_socket
        env.update(self.extra_env)
        self.process = await asyncio.create_subprocess_exec(
            micropython_command(),
            "-X",
            "heapsize=4M",
            "-m",
            "firmware.app",
            "sim",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=str(ROOT),
            env=env,
            start_new_session=True,
        )
        self._tasks.append(asyncio.create_task(self._read_console()))
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.info:
            if self.process.returncode is not None:
                raise VirtualBoardError(f"{self.name} exited: {' | '.join(self.log[-10:])}")
            if asyncio.get_running_loop().time() > deadline:
                raise VirtualBoardError(f"{self.name} did not boot: {' | '.join(self.log[-10:])}")
            await asyncio.sleep(0.02)
        await self._connect_panel(deadline)

    async def _read_console(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while line := await self.process.stdout.readline():
            text = line.decode(errors="replace").rstrip()
            self.log.append(text)
            del self.log[:-200]
            if text.startswith("smartPDU-INFO "):
                with contextlib.suppress(ValueError):
                    self.info = json.loads(text.split(" ", 1)[1])

    async def _connect_panel(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(self.panel_path)
                break
            except OSError:
                if loop.time() > deadline:
                    raise VirtualBoardError(f"{self.name}: panel socket never opened") from None
                await asyncio.sleep(0.05)
        self._panel_reader, self._panel_writer = reader, writer
        self._tasks.append(asyncio.create_task(self._read_panel()))

    async def _read_panel(self) -> None:
        reader = self._panel_reader
        assert reader is not None
        while line := await reader.readline():
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "leds" in msg or "display" in msg or "inputs" in msg:
                self.state = PanelState(
                    leds=[tuple(c) for c in msg.get("leds", [])],  # type: ignore[misc]
                    display=msg.get("display", ""),
                    pressed=list(msg.get("pressed", [])),
                    inputs=dict(msg.get("inputs", {})),
                    raw=msg,
                )
                self.state_changed.set()
            elif "error" in msg:
                self.log.append(f"panel error: {msg['error']}")

    async def send(self, message: Mapping[str, Any]) -> None:
        writer = self._panel_writer
        if writer is None:
            raise VirtualBoardError(f"{self.name}: panel not connected")
        writer.write(json.dumps(message).encode() + b"\n")
        await writer.drain()

    async def press(self, button: int, hold_ms: int = 120) -> None:
        """Press monitor button ``button`` (1..12)."""
        await self.send({"press": button, "hold_ms": hold_ms})

    async def set_load(self, channel: int, kind: str, amps: float, **options: Any) -> None:
        """Connect a simulated load to output ``channel`` (1..12)."""
        await self.send({"load": {"ch": channel, "kind": kind, "amps": amps, **options}})

    async def set_input(self, name: str, active: bool) -> None:
        """Mains status node: ``breaker``, ``alarm``, ``estop`` or ``neutral``."""
        await self.send({"input": name, "value": 1 if active else 0})

    async def console(self, line: str) -> None:
        """Type a debug command on the board's console."""
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._panel_writer is not None:
            self._panel_writer.close()
        process = self.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 3)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def __aenter__(self) -> VirtualBoard:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def led_colour_name(rgb: tuple[int, int, int]) -> str:
    """'off', 'green', 'red', 'blue', 'white' or 'dim-red' for an LED's wire colour."""
    r, g, b = rgb
    if r == g == b == 0:
        return "off"
    if r and g and b:
        return "white"
    if b and not r and not g:
        return "blue"
    if g and not r:
        return "green"
    if r and not g and not b:
        return "red" if r > 60 else "dim-red"
    return f"rgb{rgb}"
