"""An emulated RP2040 group board on a virtual RS-485 bus with the real aggregator's bus master.

``python -m tools.rp2emu.trial --seconds S --workdir DIR`` runs, in one process, the virtual
bus (tools/vbus.py), the host's ``BusMaster`` on the bus's pseudo-terminal (pyserial) and one
``Rp2VirtualBoard`` (the production image, flashed with ``smartpdu flash`` the first time),
with loads on its outputs, button presses and the board's debug console, then prints one JSON
object: what the master saw (discovery, REPORTs, link quality, currents) and what the chip did
(heap, ADC blocks and overruns, CPU share, emulator speed).

The chip runs slower than real time, so this belongs under a dilated clock
(``tools.timescale``): ``run_trial()`` starts it that way. All durations here are of that
clock, i.e. simulated seconds for the chip.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tools.virtual import timescale

LOADS = {1: 5.0, 3: 7.5, 12: 12.0}  # output -> amperes


class Seen:
    """The bus master's listener: what it accepted from the boards."""

    def __init__(self) -> None:
        self.infos: dict[int, Any] = {}
        self.reports: list[tuple[float, Any]] = []
        self.online: list[int] = []

    def board_online(self, link: Any) -> None:
        self.online.append(link.address)

    def board_offline(self, link: Any) -> None:
        pass

    def board_info(self, link: Any, info: Any) -> None:
        self.infos[link.address] = info

    def report(self, link: Any, report: Any, received_at: float) -> None:
        self.reports.append((received_at, report))

    def telemetry(self, link: Any, telemetry: Any, received_at: float) -> None:
        pass

    def status(self, link: Any, status: Any, received_at: float) -> None:
        pass


async def trial(seconds: float, workdir: Path) -> dict[str, Any]:
    from host.busmaster import BusMaster, CycleSettings
    from host.transport import SerialTransport
    from tools.rp2emu.vboard import Rp2VirtualBoard
    from tools.virtual.vbus import VirtualBus

    workdir.mkdir(parents=True, exist_ok=True)
    async with VirtualBus(115200, socket_path=str(workdir / "bus.sock")) as bus:
        port = bus.add_pty_endpoint("master")
        board = Rp2VirtualBoard("board-A", bus_socket=bus.socket_path, workdir=workdir, group="A")
        booted = time.monotonic()
        await board.start(timeout=600)
        boot_s = time.monotonic() - booted
        emu = board.emu
        assert emu is not None
        for ch, amps in LOADS.items():
            await board.set_load(ch, "resistive", amps)
        recorder = Seen()
        transport = SerialTransport(port, 115200)
        master = BusMaster(transport.write, recorder, CycleSettings())
        transport.on_data = master.feed
        await transport.open()
        task = asyncio.create_task(master.run())
        heap: list[int] = []
        per_block, most_behind = 64, None
        blocks: list[tuple[float, int, int]] = []
        try:
            found = time.monotonic()
            while not recorder.reports and time.monotonic() - found < 60:
                await asyncio.sleep(0.2)
            found_s = time.monotonic() - found
            start = time.monotonic()
            stats0 = await emu.stats()
            seen = len(emu.console)
            presses = 0
            while time.monotonic() - start < seconds:
                await asyncio.sleep(1.0)
                presses += 1
                await board.press(1 + presses % 12, hold_ms=100)  # the panel at work
                await board.console("heap")
                await board.console("errors")
            await asyncio.sleep(0.5)
            stats1 = await emu.stats()
            board_bus = [
                line.strip() for line in emu.console[seen:] if re.search(r"\b(bus|tx): ", line)
            ][-2:]
            for line in emu.console[seen:]:
                if m := re.search(r"heap: used (\d+)", line):
                    heap.append(int(m.group(1)))
                if m := re.search(r"adc: blocks (\d+)\s+overruns (\d+)", line):
                    blocks.append((time.monotonic(), int(m.group(1)), int(m.group(2))))
                if m := re.search(r"samples/block (\d+)\s+most behind (\d+)", line):
                    per_block, most_behind = int(m.group(1)), int(m.group(2))
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await transport.close()
            await board.stop()
    link = next(iter(master.boards.values()), None)
    rows = recorder.reports
    last = rows[-1][1].centiamps if rows else []
    sim_s = stats1["sim_s"] - stats0["sim_s"]
    loop1, loop0 = stats1["loop"], stats0["loop"]
    idle = (loop1["idleNs"] - loop0["idleNs"]) / 1e9
    adc_rate = None
    overruns = None
    if len(blocks) >= 2:
        (_, b0, o0), (_, b1, o1) = blocks[0], blocks[-1]
        span = (len(blocks) - 1) * 1.0  # one `errors` per simulated second
        adc_rate = (b1 - b0) * per_block / span
        overruns = o1 - o0
    return {
        "boot_s": round(boot_s, 1),
        "discovered_s": round(found_s, 1),
        "uid": board.info.get("uid"),
        "bus_uid": link.uid.hex() if link else None,
        "info": bool(recorder.infos),
        "address": link.address if link else None,
        "reports": len(rows),
        "reports_per_s": round(len(rows) / max(sim_s, 1e-9), 1),
        "currents_a": {str(ch): last[ch - 1] / 100 for ch in LOADS} if last else {},
        "frames_ok": link.quality.frames_ok if link else 0,
        "crc_errors": link.quality.crc_errors if link else 0,
        "timeouts": link.quality.timeouts if link else 0,
        "sim_s": round(sim_s, 2),
        "peak_heap_kb": round(max(heap) / 1024, 1) if heap else None,
        "adc_rate_hz": round(adc_rate, 1) if adc_rate else None,
        "adc_overruns": overruns,
        "adc_most_behind": most_behind,
        "cpu_pct": round(100 * (1 - idle / sim_s), 1) if sim_s else None,
        "max_lag_ms": round(stats1["maxLagMs"], 1),
        "board_bus": board_bus,
        "bridge": {k: stats1.get(k, 0) for k in ("busTx", "busRx", "txWithoutDe", "txCut")},
        "resets": stats1["resets"],
    }


def run_trial(
    seconds: float, workdir: Path, scale: float = 0.1, timeout: float = 1200
) -> dict[str, Any]:
    """The trial in its own process tree under a clock dilated to ``scale``."""
    argv = [
        sys.executable,
        "-m",
        "tools.rp2emu.trial",
        "--seconds",
        str(seconds),
        "--workdir",
        str(workdir),
    ]
    done = subprocess.run(
        timescale.faketime_command(argv, scale),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=timescale.scaled_env(scale),
        cwd=Path(__file__).resolve().parent.parent.parent,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"rp2 trial failed ({done.returncode}): {done.stderr[-3000:]}")
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description="an emulated RP2040 board on a virtual bus")
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--workdir", type=Path, required=True)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(trial(args.seconds, args.workdir))), flush=True)


if __name__ == "__main__":
    main()
