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
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol.consts import BUS_BAUD
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


@dataclass
class ConsoleFigures:
    """What the board's own console said during the trial (``heap``, ``errors``)."""

    heap: list[int] = field(default_factory=list)
    blocks: list[tuple[int, int]] = field(default_factory=list)  # (blocks, overruns) a second
    per_block: int = 64
    most_behind: int | None = None
    board_bus: list[str] = field(default_factory=list)
    # per task: the longest stretch it held the core, one figure per `errors` read
    longest_runs_us: dict[str, list[int]] = field(default_factory=dict)

    @classmethod
    def parse(cls, lines: list[str]) -> ConsoleFigures:
        out = cls()
        out.board_bus = [line.strip() for line in lines if re.search(r"\b(bus|tx): ", line)][-2:]
        for line in lines:
            if m := re.search(r"heap: used (\d+)", line):
                out.heap.append(int(m.group(1)))
            if m := re.search(r"adc: blocks (\d+)\s+overruns (\d+)", line):
                out.blocks.append((int(m.group(1)), int(m.group(2))))
            if m := re.search(r"samples/block (\d+)\s+most behind (\d+)", line):
                out.per_block, out.most_behind = int(m.group(1)), int(m.group(2))
            if m := re.search(r"task (\S+)\s+crashes \d+\s+longest run (\d+) us", line):
                out.longest_runs_us.setdefault(m.group(1), []).append(int(m.group(2)))
        return out

    def adc(self) -> tuple[float | None, int | None]:
        """Samples per second per channel and blocks lost, from the first to the last count."""
        if len(self.blocks) < 2:
            return None, None
        (b0, o0), (b1, o1) = self.blocks[0], self.blocks[-1]
        span = (len(self.blocks) - 1) * 1.0  # one `errors` per simulated second
        return (b1 - b0) * self.per_block / span, o1 - o0

    def longest_run_ms(self) -> dict[str, float]:
        """Per task, the longest it held the core (the first read covers the boot: left out)."""
        return {
            name: round(max(runs[1:]) / 1000, 1)
            for name, runs in self.longest_runs_us.items()
            if len(runs) > 1
        }


async def _exercise(
    board: Any, recorder: Seen, seconds: float
) -> tuple[float, dict[str, Any], dict[str, Any], ConsoleFigures]:
    """Wait for the first REPORT, then press buttons and ask the console once a second."""
    emu = board.emu
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
    if trace := os.environ.get("RP2EMU_TRIAL_TRACE"):
        Path(trace + ".console").write_text("\n".join(emu.console))
    return found_s, stats0, stats1, ConsoleFigures.parse(list(emu.console[seen:]))


async def trial(seconds: float, workdir: Path) -> dict[str, Any]:
    from host.busmaster import BusMaster, CycleSettings
    from host.transport import SerialTransport
    from tools.rp2emu.vboard import Rp2VirtualBoard
    from tools.virtual.vbus import VirtualBus

    workdir.mkdir(parents=True, exist_ok=True)
    async with VirtualBus(BUS_BAUD, socket_path=str(workdir / "bus.sock")) as bus:
        port = bus.add_pty_endpoint("master")
        trace = _trace_line(bus) if os.environ.get("RP2EMU_TRIAL_TRACE") else None
        board = Rp2VirtualBoard("board-A", bus_socket=bus.socket_path, workdir=workdir, group="A")
        booted = time.monotonic()
        await board.start(timeout=600)
        boot_s = time.monotonic() - booted
        assert board.emu is not None
        for ch, amps in LOADS.items():
            await board.set_load(ch, "resistive", amps)
        recorder = Seen()
        transport = SerialTransport(port, BUS_BAUD)
        master = BusMaster(transport.write, recorder, CycleSettings())
        transport.on_data = master.feed
        await transport.open()
        task = asyncio.create_task(master.run())
        try:
            found_s, stats0, stats1, console = await _exercise(board, recorder, seconds)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await transport.close()
            await board.stop()
    if trace is not None:
        _save_trace(trace, Path(os.environ["RP2EMU_TRIAL_TRACE"]))
    link = next(iter(master.boards.values()), None)
    figures = _link_figures(recorder, link, stats1["sim_s"] - stats0["sim_s"])
    figures["master"] = {
        "superframes": master.superframes,
        "bad_frames": master.bad_frames,
        "guard_us": master.guard_us,
    }
    figures.update(_chip_figures(console, stats0, stats1))
    figures.update(boot_s=round(boot_s, 1), discovered_s=round(found_s, 1))
    figures["uid"] = board.info.get("uid")
    return figures


def _trace_line(bus: Any) -> list[tuple[float, Any]]:
    """Diagnostics (environment RP2EMU_TRIAL_TRACE=FILE): every transmission on the line,
    kept with the bus time it was read at, saved after the trial by ``_save_trace``."""
    kept: list[tuple[float, Any]] = []
    schedule = bus._schedule  # the line's one entry point for transmissions

    def logged(segment: Any) -> None:
        kept.append((bus.loop.time(), segment))
        schedule(segment)

    bus._schedule = logged
    return kept


def _save_trace(kept: list[tuple[float, Any]], path: Path) -> None:
    """One JSON line per transmission: source, start and end on the line, read at, bytes
    (as they reached the line, collisions included) and how many were garbled."""
    with path.open("w") as out:
        for read_at, seg in kept:
            row = {
                "src": seg.source.name if seg.source is not None else None,
                "start": seg.start,
                "end": seg.end,
                "read_at": read_at,
                "data": bytes(seg.data).hex(),
                "garbled": sum(seg.garbled) if seg.garbled is not None else 0,
            }
            out.write(json.dumps(row) + "\n")


def _link_figures(recorder: Seen, link: Any, sim_s: float) -> dict[str, Any]:
    rows = recorder.reports
    last = rows[-1][1].centiamps if rows else []
    return {
        "bus_uid": link.uid.hex() if link else None,
        "info": bool(recorder.infos),
        "address": link.address if link else None,
        "reports": len(rows),
        "reports_per_s": round(len(rows) / max(sim_s, 1e-9), 1),
        "currents_a": {str(ch): last[ch - 1] / 100 for ch in LOADS} if last else {},
        "frames_ok": link.quality.frames_ok if link else 0,
        "crc_errors": link.quality.crc_errors if link else 0,
        "timeouts": link.quality.timeouts if link else 0,
    }


def _chip_figures(
    console: ConsoleFigures, stats0: dict[str, Any], stats1: dict[str, Any]
) -> dict[str, Any]:
    sim_s = stats1["sim_s"] - stats0["sim_s"]
    idle = (stats1["loop"]["idleNs"] - stats0["loop"]["idleNs"]) / 1e9
    adc_rate, overruns = console.adc()
    return {
        "sim_s": round(sim_s, 2),
        "peak_heap_kb": round(max(console.heap) / 1024, 1) if console.heap else None,
        "adc_rate_hz": round(adc_rate, 1) if adc_rate else None,
        "adc_overruns": overruns,
        "adc_most_behind": console.most_behind,
        "cpu_pct": round(100 * (1 - idle / sim_s), 1) if sim_s else None,
        "max_lag_ms": round(stats1["maxLagMs"], 1),
        "board_bus": console.board_bus,
        "longest_run_ms": console.longest_run_ms(),
        "bridge": {
            **{
                k: stats1.get(k, 0) for k in ("busTx", "busRx", "txWithoutDe", "txCut", "lagResets")
            },
            **{k: stats1.get("uart", {}).get(k, 0) for k in ("rxLate", "rxLateMaxUs", "overruns")},
        },
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
