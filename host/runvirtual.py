"""``smartpdu run``: the main job without hardware — a whole virtual smartPDU (boards running
the real firmware on a virtual RS-485 bus, the mains status node, the simulated main meter,
a show scenario) with the real aggregator service and its web interface on top.

The aggregator here is exactly what runs on a Pi (``smartpdu serve``); only its serial ports
point at the virtual PDU's pseudo-terminals, and the web UI also shows the simulated boards'
front panels.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from host.config import ConfigError, default_config
from host.service import Service

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VAR = ROOT / "var" / "run"


async def run_virtual_unit(
    scenario: str = "rehearsal",
    *,
    host: str = "0.0.0.0",
    port: int = 8080,
    var_dir: Path = DEFAULT_VAR,
    speed: float = 1.0,
) -> int:
    from host.web import start_web
    from tools.vpdu import VirtualPdu

    var_dir.mkdir(parents=True, exist_ok=True)
    vpdu = VirtualPdu(scenario, var_dir / "vpdu", speed=speed)
    print(f"starting the virtual smartPDU ({scenario}) ...", flush=True)
    await vpdu.start()
    try:
        ports = vpdu.ports
        phases = vpdu.scenario.phase_list()
        by_group = {g: list(phases[i * 12 : i * 12 + 12]) for i, g in enumerate(vpdu.groups)}
        config = default_config(
            unit={"model": vpdu.scenario.model, "mains_hz": vpdu.scenario.mains_hz},
            channels={"phase": by_group},
            bus={"port": ports.master, "baud": vpdu.baud},
            meter={"port": ports.meter, "baud": vpdu.meter_baud},
            storage={"var_dir": str(var_dir), "database": str(var_dir / "smartpdu.db")},
            web={"host": host, "port": port},
        )
        service = Service(config, panels=vpdu.boards, web=start_web)
        task = asyncio.create_task(service.run())
        ready = asyncio.create_task(service.ready.wait())
        await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()
        shown = "localhost" if host in ("0.0.0.0", "::", "") else host
        print(
            f"smartPDU {vpdu.scenario.model} running: open http://{shown}:{port}/ "
            f"(bus {ports.master}, meter {ports.meter}, monitor {ports.monitor}); Ctrl-C stops",
            flush=True,
        )
        await task
    finally:
        await vpdu.stop()
    return 0


def main(scenario: str, host: str, port: int, speed: float) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

    async def guarded() -> int:
        loop = asyncio.get_running_loop()
        main_task = asyncio.current_task()
        assert main_task is not None
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, main_task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            return await run_virtual_unit(scenario, host=host, port=port, speed=speed)
        return 0

    try:
        return asyncio.run(guarded())
    except ConfigError as exc:
        print(f"smartpdu run: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"smartpdu run: {exc}", file=sys.stderr)
        return 1
