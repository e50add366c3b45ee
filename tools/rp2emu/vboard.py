"""A group board of the virtual PDU on an emulated RP2040, driven like ``tools.vboard``'s.

``Rp2VirtualBoard`` has the interface the virtual PDU uses for a unix-port board (start,
stop, send/press/set_load, ``state`` with the LED colours and display text, ``info`` from
the boot line, ``log``), but the board is the production image on an emulated RP2040
(``tools.rp2emu.EmulatedBoard``): its real ``boards/pico_mcp3208`` drivers, its UART+DE on
the virtual bus, its ADC codes from the same load messages.

On its first start the board's flash gets the production UF2 and is then flashed with the
real ``smartpdu flash`` (host.flash.flash_board) over the emulated USB CDC with the group's
config; later starts (a power loss in the scenario) boot from the kept flash, as a real board.

The chip runs paced (never ahead of CLOCK_MONOTONIC) so its TDMA slots fall at their line
times; it runs at ~0.2-0.35 x real time, so a virtual PDU with emulated boards runs under a
dilated clock (``tools.timescale``) for the slots to hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from protocol.consts import BUS_BAUD
from tools.rp2emu import PRODUCTION_IMAGE, EmulatedBoard, EmulatorError, Event
from tools.virtual.vboard import PanelState, VirtualBoardError

BOARD = "pico_mcp3208"


def chip_uid(name: str) -> str:
    """The 16 hex digits of an emulated chip's flash unique ID, stable for a board name."""
    return hashlib.sha256(name.encode()).hexdigest()[:16]


class Rp2VirtualBoard:
    """One group board on an emulated RP2040 (see the module doc)."""

    role = "group"

    def __init__(
        self,
        name: str,
        *,
        bus_socket: str | None,
        workdir: Path,
        group: str = "A",
        uid: str | None = None,
        baud: int = BUS_BAUD,
        image: Path = PRODUCTION_IMAGE,
        pace: float = 1.0,
    ) -> None:
        self.name = name
        self.group = group
        self.workdir = Path(workdir)
        self.bus_socket = bus_socket
        # The bus endpoint name (the virtual PDU unplugs boards by it).
        self.uid = uid or f"rp2-{group}"
        self.baud = baud
        self.image = image
        self.pace = pace
        self.panel_path = str(self.workdir / f"{name}.no-panel")  # nothing listens here
        self.state = PanelState()
        self.state_changed = asyncio.Event()
        self.info: dict[str, Any] = {}
        self.emu: EmulatedBoard | None = None
        self._boot_task: asyncio.Task[None] | None = None

    @property
    def log(self) -> list[str]:
        return self.emu.log if self.emu is not None else []

    @property
    def process(self) -> asyncio.subprocess.Process | None:
        return self.emu.process if self.emu is not None else None

    @property
    def pid(self) -> int | None:
        proc = self.process
        return None if proc is None else proc.pid

    def _on_event(self, event: Event) -> None:
        if event.kind == "leds":
            leds = [tuple(c) for c in event.data["leds"]]
            self.state = PanelState(leds=leds, display=self.state.display, raw=event.data)  # type: ignore[arg-type]
        elif event.kind == "display":
            self.state = PanelState(leds=self.state.leds, display=str(event.data["display"]))
        else:
            return
        self.state_changed.set()

    async def start(self, timeout: float = 120.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        flash_file = self.workdir / f"{self.name}-flash.bin"
        first = not flash_file.exists()
        if first and not self.image.exists():
            raise VirtualBoardError(f"{self.image} is missing: run `make firmware`")
        emu = EmulatedBoard(
            workdir=self.workdir,
            uf2=self.image if first else None,
            bus_socket=self.bus_socket,
            name=self.name,
            bus_name=self.uid,
            uid=chip_uid(self.uid),
            pace=self.pace,
        )
        emu.on_event = self._on_event
        self.emu = emu
        try:
            await emu.start()
            if first:
                await asyncio.to_thread(self._provision, emu.port, timeout)
            # flash_board read the boot line on the port; its console event may still be
            # on its way from the emulator
            await emu.wait_for(self._booted, timeout)
            self.info = self._boot_info()
        except (EmulatorError, TimeoutError) as exc:
            raise VirtualBoardError(f"{self.name} (emulated RP2040): {exc}") from exc

    def _provision(self, port: str, timeout: float) -> None:
        from tools.field.flash import FlashError, flash_board

        try:
            flash_board(port, BOARD, group=self.group, info_timeout=timeout)
        except FlashError as exc:
            raise EmulatorError(f"flashing the emulated board failed: {exc}") from exc

    def _booted(self) -> bool:
        return bool(self._boot_info())

    def _boot_info(self) -> dict[str, Any]:
        emu = self.emu
        if emu is None:
            return {}
        for line in reversed(emu.console):
            if line.startswith("smartPDU-INFO "):
                with contextlib.suppress(ValueError):
                    return json.loads(line.split(" ", 1)[1])
        return {}

    async def send(self, message: Mapping[str, Any]) -> None:
        emu = self.emu
        if emu is None:
            raise VirtualBoardError(f"{self.name}: not started")
        if "input" in message:
            raise VirtualBoardError(f"{self.name}: a group board has no status inputs")
        try:
            emu.send(dict(message))
        except EmulatorError as exc:
            raise VirtualBoardError(str(exc)) from exc

    async def press(self, button: int, hold_ms: int = 120) -> None:
        await self.send({"press": button, "hold_ms": hold_ms})

    async def set_load(self, channel: int, kind: str, amps: float, **options: Any) -> None:
        await self.send({"load": {"ch": channel, "kind": kind, "amps": amps, **options}})

    async def set_input(self, name: str, active: bool) -> None:
        raise VirtualBoardError(f"{self.name}: a group board has no status inputs")

    async def console(self, line: str) -> None:
        emu = self.emu
        if emu is None:
            raise VirtualBoardError(f"{self.name}: not started")
        emu.type(line + "\r")

    async def stop(self) -> None:
        if self.emu is not None:
            await self.emu.stop()

    async def __aenter__(self) -> Rp2VirtualBoard:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
