"""A running virtual smartPDU with the web interface, for the web tests and the benchmark.

Real parts only: group boards running the real firmware on MicroPython (``VirtualBoard``),
a mains status node, the virtual RS-485 bus with real byte timing, the simulated Modbus
meter on its own link, and the aggregator ``Service`` with ``start_web``. The aggregator
can be stopped and started again on the same database while the boards and the meter keep
running (a restart of the Pi's service, not of the PDU).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path
from typing import Any

from host.config import default_config
from host.domain import rotation_phase
from host.service import Service, ServiceParts
from host.web import WebHandle, start_web
from host.web.auth import write_password_file
from tools.virtual.metersim import Load, MeterSim
from tools.virtual.vboard import VirtualBoard
from tools.virtual.vbus import VirtualBus

ADMIN_PASSWORD = "stage-left-42"


def free_port() -> int:
    """A TCP port nothing listens on now (the config does not take port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class WebStack:
    def __init__(
        self,
        workdir: Path,
        *,
        groups: str = "ABC",
        mains: bool = True,
        supervision_dwell_s: float = 1.0,
        baud: int = 115200,
        unit_name: str = "",
        panel_groups: str | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.groups = groups
        # Groups whose virtual front panel the web UI gets (default: all). The others look to
        # the aggregator like real boards: it knows only what they send on the bus.
        self.panel_groups = groups if panel_groups is None else panel_groups
        self.with_mains = mains
        self.supervision_dwell_s = supervision_dwell_s
        self.baud = baud
        self.unit_name = unit_name
        self.database = self.workdir / "smartpdu.db"
        self.password_file = self.workdir / "admin-password"
        self.bus: VirtualBus | None = None
        self.boards: dict[str, VirtualBoard] = {}
        self.mains: VirtualBoard | None = None
        self.meter: MeterSim | None = None
        self.bus_port = ""
        self.service: Service | None = None
        self.web: WebHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self.loads: dict[tuple[str, int], float] = {}

    # -- the PDU ---------------------------------------------------------------------------

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        write_password_file(self.password_file, ADMIN_PASSWORD)
        self.bus = VirtualBus(self.baud, socket_path=str(self.workdir / "bus.sock"))
        await self.bus.start()
        self.bus_port = self.bus.add_pty_endpoint("master")
        for g in self.groups:
            self.boards[g] = VirtualBoard(
                g, bus_socket=self.bus.socket_path, workdir=self.workdir, group=g, baud=self.baud
            )
        if self.with_mains:
            self.mains = VirtualBoard(
                "mains",
                bus_socket=self.bus.socket_path,
                workdir=self.workdir,
                role="mains",
                baud=self.baud,
            )
        everything = [*self.boards.values(), *([self.mains] if self.mains else [])]
        await asyncio.gather(*(b.start() for b in everything))
        if self.mains is not None:
            await self.mains.set_input("breaker", True)
        self.meter = MeterSim()
        await self.meter.start()
        await self.start_service()

    async def stop(self) -> None:
        await self.stop_service()
        everything = [*self.boards.values(), *([self.mains] if self.mains else [])]
        for board in everything:
            with contextlib.suppress(Exception):
                await board.stop()
        if self.meter is not None:
            await self.meter.stop()
        if self.bus is not None:
            await self.bus.stop()

    async def __aenter__(self) -> WebStack:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- the aggregator --------------------------------------------------------------------

    def config(self) -> Any:
        assert self.meter is not None
        return default_config(
            unit={"model": 36, "id": "smartPDU00WEB1", "name": self.unit_name},
            # Generous limits: the test machine has two cores shared with other jobs, and a
            # starved board process must not flap offline in the middle of a test.
            bus={
                "port": self.bus_port,
                "baud": self.baud,
                "offline_after_s": 2.0,
                "stale_after_s": 3.0,
            },
            meter={"port": self.meter.port},
            channels={"supervision_dwell_s": self.supervision_dwell_s},
            storage={"database": str(self.database), "var_dir": str(self.workdir)},
            web={
                "host": "127.0.0.1",
                "port": free_port(),
                "admin_password_file": str(self.password_file),
            },
            history={"flush_s": 0.5},
        )

    async def start_service(self, timeout: float = 20.0) -> None:
        async def web(parts: ServiceParts) -> WebHandle:
            handle = await start_web(parts)
            self.web = handle
            return handle

        panels = {g: b for g, b in self.boards.items() if g in self.panel_groups}
        self.service = Service(self.config(), panels=panels, web=web)
        self._task = asyncio.create_task(self.service.run(), name="service")
        ready = asyncio.create_task(self.service.ready.wait())
        done, _ = await asyncio.wait(
            {ready, self._task}, timeout=timeout, return_when="FIRST_COMPLETED"
        )
        if self._task in done:
            ready.cancel()
            self._task.result()
        if ready not in done:
            raise TimeoutError("the service did not start")

    async def stop_service(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=20)
            if not done:
                for other in asyncio.all_tasks():
                    other.print_stack()
                raise TimeoutError("the service did not stop within 20 s")
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.service = None
        self.web = None

    @property
    def url(self) -> str:
        assert self.web is not None
        return self.web.url

    @property
    def parts(self) -> ServiceParts:
        assert self.service is not None and self.service.parts is not None
        return self.service.parts

    # -- the scenario ----------------------------------------------------------------------

    async def set_channel(
        self, group: str, channel: int, amps: float, kind: str = "resistive"
    ) -> None:
        """A load on one output; the meter sees the same load on that output's phase."""
        await self.boards[group].set_load(channel, kind, amps)
        self.loads[(group, channel)] = amps
        self._update_meter()

    def _update_meter(self) -> None:
        assert self.meter is not None
        phases: dict[str, list[Load]] = {"L1": [], "L2": [], "L3": []}
        for (_group, number), amps in self.loads.items():
            if amps > 0:
                phases[rotation_phase(number)].append(Load(amps))
        self.meter.set_phase_loads(phases["L1"], phases["L2"], phases["L3"])

    async def until(self, predicate: Any, timeout: float, what: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            if loop.time() > deadline:
                raise TimeoutError(f"timed out: {what}")
            await asyncio.sleep(0.05)
