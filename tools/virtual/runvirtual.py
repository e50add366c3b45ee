"""``smartpdu run``: the main job without hardware — a whole virtual smartPDU (boards running
the real firmware on a virtual RS-485 bus, the mains status node, the simulated main meter,
a show scenario) with the real aggregator service and its web interface on top.

The aggregator here is exactly what runs on a Pi (``smartpdu serve``); only its serial ports
point at the virtual PDU's pseudo-terminals, and the web UI also shows the simulated boards'
front panels.

``smartpdu run --config FILE`` takes the same TOML file as ``smartpdu serve`` (unit id and
name, ``[peers]`` site key, ``[web]``, ``[storage]``, timings), so several virtual units can
run side by side as distinct units of one site. The virtual PDU supplies what belongs to the
hardware: the serial ports (``bus.port``, ``meter.port``: the file's are not used), the
model and mains frequency (``unit.model`` / ``unit.mains_hz`` in the file must match the
scenario's, or be left out) and the outputs' phases (``channels.phase``, from the
scenario). ``bus.baud`` and ``meter.baud`` set the virtual lines' speeds. Data goes to the
file's ``storage.var_dir``, else to ``var/run/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from host.config import (
    ConfigError,
    ServiceConfig,
    config_from_document,
    read_config_document,
)
from host.service import Service
from tools.virtual.scenario import ScenarioError, load_scenario
from tools.virtual.vpdu import VirtualPdu

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_VAR = ROOT / "var" / "run"


def _section(document: dict[str, Any], name: str) -> dict[str, Any]:
    """The document's table ``name`` (a copy, created when missing). A value that is not a
    table is left as it is, for the validation to name it."""
    table = document.get(name, {})
    if not isinstance(table, dict):
        return {}
    copy: dict[str, Any] = dict(table)  # pyright: ignore[reportUnknownArgumentType]
    document[name] = copy
    return copy


def virtual_document(
    document: Mapping[str, Any],
    source: str,
    *,
    scenario: str,
    model: int,
    mains_hz: int,
    host: str | None,
    port: int | None,
    var_dir: Path | None,
) -> dict[str, Any]:
    """``document`` (a config file's, or empty) completed for a virtual unit: the scenario's
    model and mains frequency, the web address given on the command line, the data folder.
    ConfigError when the file contradicts the scenario."""
    doc: dict[str, Any] = dict(document)
    unit = _section(doc, "unit")
    for key, wanted in (("model", model), ("mains_hz", mains_hz)):
        if key in unit and unit[key] != wanted:
            raise ConfigError(
                f"{source}: unit.{key}: {unit[key]!r}, but the scenario {scenario!r} plays a "
                f"smartPDU {model} at {mains_hz} Hz: leave unit.{key} out of a file for "
                "smartpdu run (the virtual PDU sets it) or choose another --scenario"
            )
        unit[key] = wanted
    web = _section(doc, "web")
    if host is not None:
        web["host"] = host
    if port is not None:
        web["port"] = port
    storage = _section(doc, "storage")
    if var_dir is not None or "var_dir" not in storage:
        folder = (var_dir or DEFAULT_VAR).resolve()
        storage["var_dir"] = str(folder)
        if var_dir is not None or "database" not in storage:
            storage["database"] = str(folder / "smartpdu.db")
    return doc


def with_virtual_ports(
    document: Mapping[str, Any],
    *,
    bus_port: str,
    meter_port: str,
    phases: Mapping[str, list[str]],
) -> dict[str, Any]:
    """``document`` with the virtual PDU's serial ports and its outputs' wiring."""
    doc: dict[str, Any] = dict(document)
    _section(doc, "bus")["port"] = bus_port
    _section(doc, "meter")["port"] = meter_port
    _section(doc, "channels")["phase"] = dict(phases)
    return doc


@dataclass
class VirtualUnit:
    """A running virtual unit (:func:`virtual_unit`)."""

    pdu: VirtualPdu
    service: Service
    config: ServiceConfig
    task: asyncio.Task[None]  # the service; it ends only if a part of it fails

    @property
    def url(self) -> str:
        """Its web interface, as this machine reaches it."""
        host = self.config.web.host
        shown = "localhost" if host in ("0.0.0.0", "::", "") else host
        return f"http://{shown}:{self.config.web.port}/"


@contextlib.asynccontextmanager
async def virtual_unit(
    scenario: str | Path = "rehearsal",
    *,
    host: str | None = None,
    port: int | None = None,
    var_dir: Path | None = None,
    speed: float = 1.0,
    config_file: Path | None = None,
    rp2_groups: tuple[str, ...] = (),
) -> AsyncIterator[VirtualUnit]:
    """A virtual PDU with the aggregator service and web interface on top, ready (boards
    booting, web and peer exchange up) while the context lasts; stopped in order after.
    ``host``/``port``/``var_dir``: None = the config file's (``config_file``), else
    0.0.0.0, 8080 and ``var/run/``."""
    from host.web import start_web

    show = load_scenario(scenario)
    source = str(config_file) if config_file is not None else "<defaults>"
    document = read_config_document(config_file) if config_file is not None else {}
    base_dir = config_file.resolve().parent if config_file is not None else None
    completed = virtual_document(
        document,
        source,
        scenario=show.name,
        model=show.model,
        mains_hz=show.mains_hz,
        host=host,
        port=port,
        var_dir=var_dir,
    )
    # Checked whole before anything starts: a typo stops here, with one line.
    draft = config_from_document(completed, source, base_dir, require_ports=False)
    folder = draft.storage.var_dir
    folder.mkdir(parents=True, exist_ok=True)
    vpdu = VirtualPdu(
        show,
        folder / "vpdu",
        baud=draft.bus.baud,
        meter_baud=draft.meter.baud,
        speed=speed,
        rp2_groups=rp2_groups,
    )
    print(f"starting the virtual smartPDU ({show.name}) ...", flush=True)
    await vpdu.start()
    task: asyncio.Task[None] | None = None
    try:
        ports = vpdu.ports
        phases = show.phase_list()
        by_group = {g: list(phases[i * 12 : i * 12 + 12]) for i, g in enumerate(vpdu.groups)}
        config = config_from_document(
            with_virtual_ports(
                completed, bus_port=ports.master, meter_port=ports.meter, phases=by_group
            ),
            source,
            base_dir,
            require_ports=False,
        )
        service = Service(config, panels=vpdu.boards, web=start_web)
        task = asyncio.create_task(service.run(), name="service")
        ready = asyncio.create_task(service.ready.wait())
        try:
            await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        if task.done():
            task.result()
        yield VirtualUnit(vpdu, service, config, task)
    finally:
        try:
            if task is not None:
                # Once only: a cancelled caller has already cancelled the task it awaited,
                # and a second cancellation would cut the service's orderly stop short.
                if not task.done() and task.cancelling() == 0:
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        finally:
            await vpdu.stop()


async def run_virtual_unit(
    scenario: str | Path = "rehearsal",
    *,
    host: str | None = None,
    port: int | None = None,
    var_dir: Path | None = None,
    speed: float = 1.0,
    config_file: Path | None = None,
    rp2_groups: tuple[str, ...] = (),
) -> int:
    """``smartpdu run``: a virtual unit until cancelled (see :func:`virtual_unit`)."""
    async with virtual_unit(
        scenario,
        host=host,
        port=port,
        var_dir=var_dir,
        speed=speed,
        config_file=config_file,
        rp2_groups=rp2_groups,
    ) as unit:
        ports = unit.pdu.ports
        print(
            f"smartPDU {unit.config.unit.model} {unit.config.unit.unit_id} running: open "
            f"{unit.url} (bus {ports.master}, meter {ports.meter}, monitor {ports.monitor}); "
            "Ctrl-C stops",
            flush=True,
        )
        await unit.task
    return 0


def main(
    scenario: str,
    host: str | None,
    port: int | None,
    speed: float,
    config_file: Path | None = None,
    rp2_groups: tuple[str, ...] = (),
) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

    async def guarded() -> int:
        loop = asyncio.get_running_loop()
        main_task = asyncio.current_task()
        assert main_task is not None
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, main_task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            return await run_virtual_unit(
                scenario,
                host=host,
                port=port,
                speed=speed,
                config_file=config_file,
                rp2_groups=rp2_groups,
            )
        return 0

    try:
        return asyncio.run(guarded())
    except (ConfigError, ScenarioError) as exc:
        print(f"smartpdu run: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"smartpdu run: {exc}", file=sys.stderr)
        return 1
