"""A smartPDU group board on an emulated RP2040: the real rp2 MicroPython image in rp2040js.

``EmulatedBoard`` starts ``node board.mjs`` (this folder; its npm packages are pinned in
``package.json`` and installed by ``make setup``) with:

- the board's flash as a file (``flash.bin`` in the work folder: littlefs, /lib, /config
  survive restarts), a UF2 written into it first when given (as the BOOTSEL drive does);
- its USB CDC on a pseudo-terminal made here: :attr:`EmulatedBoard.port` is the slave path,
  which ``mpremote``, ``smartpdu flash`` and ``smartpdu console`` open like /dev/ttyACM0;
- optionally its UART0 + DE bridged to a virtual RS-485 bus socket (``tools/vbus.py``,
  ``timed`` endpoint), and the MCP3208 codes made by ``loadgen.py`` (the sim board's load
  model on the MicroPython unix port) from the same load messages the sim panel takes.

Events from the chip (decoded LED frames, display digits, resets) arrive as JSON lines and
are kept in :attr:`events` with their simulated time; :meth:`leds_at` and friends read them.
Simulated time runs as fast as the emulator can unless ``pace`` is set (then never ahead of
CLOCK_MONOTONIC: for a board on a bus with real-time peers; see ``tools/timescale.py`` for
running the whole virtual PDU in slow motion so the emulated chip keeps up).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import termios
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
IMAGE_DIR = ROOT / "build" / "rp2" / "out"
STOCK_IMAGE = IMAGE_DIR / "firmware-stock.uf2"
PRODUCTION_IMAGE = IMAGE_DIR / "smartpdu-rp2.uf2"


class EmulatorError(Exception):
    """The emulator could not start, or the chip stopped with an error."""


def node_command() -> str:
    found = shutil.which("node")
    if found is None:
        raise EmulatorError("node is missing: `make setup` installs Debian nodejs")
    return found


def check_installed() -> None:
    """Raise with the fix if the npm packages or node are missing."""
    node_command()
    if not (HERE / "node_modules" / "rp2040js").is_dir():
        raise EmulatorError(
            f"rp2040js is not installed in {HERE.relative_to(ROOT)}: run `make setup`"
        )


def micropython_command() -> str:
    beside = Path(sys.executable).parent / "micropython"
    return str(beside) if beside.exists() else "micropython"


def open_pty() -> tuple[int, int, str]:
    """A raw pseudo-terminal: (master fd, non-blocking; slave fd; slave path)."""
    master, slave = os.openpty()
    tty.setraw(slave, termios.TCSANOW)
    os.set_blocking(master, False)
    return master, slave, os.ttyname(slave)


@dataclass
class Event:
    t: float  # simulated seconds
    kind: str
    data: dict[str, Any]


@dataclass
class EmulatedBoard:
    """One emulated group board. Use as ``async with EmulatedBoard(...) as board:``."""

    workdir: Path
    uf2: Path | None = None
    bus_socket: str | None = None
    name: str = "rp2"
    bus_name: str | None = None  # the bus endpoint's name (default: name)
    uid: str | None = None  # the flash unique ID, 16 hex digits (machine.unique_id())
    pace: float = 0.0
    loads: bool = True
    seed: int = 1
    events: list[Event] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.flash_path = self.workdir / f"{self.name}-flash.bin"
        self.port = ""
        self.process: asyncio.subprocess.Process | None = None
        self._master = -1
        self._slave = -1
        self._tasks: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()
        self._stats: asyncio.Future[dict[str, Any]] | None = None
        self.error: str | None = None
        self.on_event: Callable[[Event], None] | None = None
        self.sim_time = 0.0  # simulated seconds, as last reported
        self.console: list[str] = []  # lines the board wrote on its USB console
        self._console_tail = ""

    # -- life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        check_installed()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._master, self._slave, self.port = open_pty()
        args = [
            node_command(),
            str(HERE / os.environ.get("RP2EMU_MAIN", "board.mjs")),
            "--flash",
            str(self.flash_path),
        ]
        args += ["--cdc-fd", str(self._master)]  # the same number in the child (pass_fds)
        if self.uf2 is not None:
            args += ["--uf2", str(self.uf2)]
        if self.bus_socket:
            args += ["--bus", self.bus_socket, "--bus-name", self.bus_name or self.name]
        if self.uid:
            args += ["--uid", self.uid]
        if os.environ.get("RP2EMU_TRACE"):
            args += ["--trace", os.environ["RP2EMU_TRACE"]]
        if self.pace:
            args += ["--pace", str(self.pace)]
        if self.loads:
            loadgen = [micropython_command(), str(HERE / "loadgen.py"), str(self.seed)]
            args += ["--loadgen", json.dumps(loadgen)]
        env = dict(os.environ)
        env["MICROPYPATH"] = f"{ROOT}:.frozen"
        self.process = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=str(ROOT),
            env=env,
            pass_fds=(self._master,),
            start_new_session=True,
            limit=1 << 20,
        )
        self._tasks.append(asyncio.create_task(self._read_events()))
        self._tasks.append(asyncio.create_task(self._read_stderr()))
        await self.wait_for(lambda: any(e.kind == "ready" for e in self.events), timeout=30)

    async def stop(self) -> None:
        proc = self.process
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, BrokenPipeError, ConnectionResetError):
                self._send({"quit": True})
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for fd in (self._master, self._slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = -1

    async def __aenter__(self) -> EmulatedBoard:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- control ------------------------------------------------------------------------

    def send(self, msg: dict[str, Any]) -> None:
        """One control message (see board.mjs)."""
        self._send(msg)

    def type(self, text: str) -> None:
        """Type ``text`` on the board's USB console (as a host would, flow-controlled)."""
        self._send({"type": text})

    def _send(self, msg: dict[str, Any]) -> None:
        proc = self.process
        if proc is None or proc.stdin is None or proc.returncode is not None:
            raise EmulatorError(f"emulator not running{': ' + self.error if self.error else ''}")
        proc.stdin.write((json.dumps(msg) + "\n").encode())

    def press(self, button: int, hold_ms: int = 150) -> None:
        self._send({"press": button, "hold_ms": hold_ms})

    def set_load(self, **load: Any) -> None:
        """A load change as the sim panel takes it: ``ch=1..12, kind=..., amps=...``."""
        self._send({"load": load})

    def reset(self) -> None:
        self._send({"reset": True})

    async def stats(self, timeout: float = 10.0) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        self._stats = loop.create_future()
        self._send({"get": "stats"})
        return await asyncio.wait_for(self._stats, timeout)

    # -- events -------------------------------------------------------------------------

    async def _read_events(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        stream = self.process.stdout
        while line := await stream.readline():
            try:
                obj = json.loads(line)
            except ValueError:
                self.log.append(line.decode(errors="replace").rstrip())
                continue
            t = float(obj.pop("t", 0.0))
            self.sim_time = max(self.sim_time, t)
            kind = next(iter(obj), "")
            if kind == "tick":
                self._changed.set()
                continue
            if kind == "stats" and self._stats is not None and not self._stats.done():
                self._stats.set_result(obj["stats"])
                continue
            if kind == "console":
                self._add_console(str(obj["console"]))
                self._changed.set()
                continue
            if kind == "error":
                self.error = str(obj["error"])
            event = Event(t, kind, obj)
            self.events.append(event)
            if self.on_event is not None:
                self.on_event(event)
            self._changed.set()
        self._changed.set()

    def _add_console(self, text: str) -> None:
        lines = (self._console_tail + text).split("\n")
        self._console_tail = lines.pop()
        self.console.extend(line.rstrip("\r") for line in lines)
        del self.console[:-2000]

    def console_since(self, index: int) -> list[str]:
        return self.console[index:]

    async def _read_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        while line := await self.process.stderr.readline():
            self.log.append(line.decode(errors="replace").rstrip())

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 60.0) -> None:
        """Wait until ``predicate()`` holds (checked on every event), or fail."""
        async with asyncio.timeout(timeout):
            while not predicate():
                if self.process is not None and self.process.returncode is not None:
                    raise EmulatorError(self._died())
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.5):
                        await self._changed.wait()

    def _died(self) -> str:
        tail = "\n".join(self.log[-20:])
        return f"emulator exited ({self.error or 'no error reported'})\n{tail}"

    async def run_for(self, seconds: float, timeout: float = 120.0) -> None:
        """Wait until ``seconds`` of simulated time have passed."""
        target = self.sim_time + seconds
        await self.wait_for(lambda: self.sim_time >= target, timeout)

    def of_kind(self, kind: str, since: float = 0.0) -> list[Event]:
        return [e for e in self.events if e.kind == kind and e.t >= since]

    def leds(self) -> list[tuple[int, int, int]]:
        frames = self.of_kind("leds")
        return [tuple(c) for c in frames[-1].data["leds"]] if frames else []  # type: ignore[misc]

    def display(self) -> str:
        shown = self.of_kind("display")
        return str(shown[-1].data["display"]) if shown else ""
