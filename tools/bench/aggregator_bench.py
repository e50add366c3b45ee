"""Aggregator benchmark: bus cycle rate against a Modbus RTU baseline, end-to-end latency,
and the service's CPU and memory on a loaded unit. Prints figures; asserts nothing.

- ``bus.cycle_rate_ratio_vs_modbus``: 8 virtual boards (real firmware) on the virtual bus at
  115200 baud, this process as the bus master. A cycle is one report from every board:
  measured cycles/s = REPORT frames received per board per second (frames lost or garbled
  do not count). Divided by the cycles/s a Modbus RTU master reaches reading the same data:
  per board and cycle an FC04 read of the registers that carry a REPORT (11 registers for
  its 21 bytes), plus, as often as the bus master collects one (once per SYNC, i.e. every
  ``rounds`` cycles), a read of a board's TELEMETRY (27 registers); 11-bit characters,
  t3.5 = 1.75 ms after request and reply, and 1 ms slave turnaround.
- ``e2e.latency_ms_p99``: load step in the simulator (a board's waveform changes) → the unit
  model shows a reading within 5 % of the new value, checked as each REPORT of the stepped
  board is applied; split into step → first REPORT with the value (``e2e.report_*``), the
  board's REPORT spacing there (``e2e.report_gap_*``: the wait for the slot is at most that)
  and REPORT → model (``e2e.model_*``).
- ``host.cpu_pct_one_core``, ``host.rss_mb``: ``smartpdu serve`` (bus master, meter reader,
  state, storage, web server) for 6 boards + meter over ``cpu_window_s`` seconds, measured
  from /proc on that process alone; the virtual PDU runs in its own processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from host.busmaster import BusMaster, CycleSettings
from host.config import default_config
from host.state import StateBusListener, UnitState
from host.state.bus import BoardLinkLike
from host.transport import SerialTransport
from protocol import layouts as L
from protocol.consts import BUS_BAUD
from protocol.messages import Report
from tools.bench.service_proc import bench72_service, proc_cpu_s, proc_rss_mb
from tools.virtual.vboard import VirtualBoard
from tools.virtual.vbus import VirtualBus

T35_S = 0.00175
TURNAROUND_S = 0.001


def modbus_transaction_s(registers: int, baud: int) -> float:
    """One FC04 read: 8-byte request, 5 + 2N byte reply, 11-bit characters, gaps."""
    chars = 8 + 5 + 2 * registers
    return chars * 11 / baud + 2 * T35_S + TURNAROUND_S


def modbus_cycle_s(boards: int, baud: int, rounds: int) -> float:
    """One cycle: every board's REPORT registers, and 1/rounds of one board's TELEMETRY."""
    report_regs = (L.REPORT_LEN + 1) // 2
    telemetry_regs = (L.TELEMETRY_FIXED_LEN + 1) // 2
    total = boards * modbus_transaction_s(report_regs, baud)
    return total + modbus_transaction_s(telemetry_regs, baud) / rounds


async def _all_online(master: BusMaster, task: asyncio.Task[Any], boards: int) -> None:
    deadline = time.monotonic() + 60
    while sum(1 for b in master.boards.values() if b.online) < boards:
        if time.monotonic() > deadline:
            states = {a: b.online for a, b in master.boards.items()}
            if task.done():
                task.result()  # the master itself failed: show why
            raise RuntimeError(f"boards did not all come online: {states}")
        await asyncio.sleep(0.1)


async def _bus_bench(boards: int, baud: int, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="smartpdu-bench-") as tmp:
        work = Path(tmp)
        async with VirtualBus(baud, socket_path=str(work / "bus.sock")) as bus:
            port = bus.add_pty_endpoint("master")
            # A unit has at most six group boards (A-F); more boards on the bench bus repeat
            # the letters (the bus does not care, each has its own uid and address).
            groups = ("ABCDEF" * 3)[:boards]
            vboards = [
                VirtualBoard(
                    f"b{i}",
                    bus_socket=bus.socket_path,
                    workdir=work,
                    group=g,
                    uid=f"bench-{i}",
                    baud=baud,
                )
                for i, g in enumerate(groups)
            ]
            await asyncio.gather(*(b.start(timeout=60) for b in vboards))
            config = default_config(unit={"model": 72}, bus={"port": port, "baud": baud})
            state = UnitState(config)
            transport = SerialTransport(port, baud)
            listener = _TimingListener(state)
            master = BusMaster(
                transport.write,
                listener,
                CycleSettings(baud=baud, discover_every_s=2.0),
            )
            transport.on_data = master.feed
            await transport.open()
            task = asyncio.create_task(master.run())
            loop = asyncio.get_running_loop()
            try:
                await _all_online(master, task, boards)
                # Measure cycles only: no discovery rounds in the window.
                master.settings = dataclasses.replace(master.settings, discover_every_s=3600)
                await asyncio.sleep(1.0)
                r0, s0, t0 = master.reports, master.superframes, loop.time()
                await asyncio.sleep(seconds)
                elapsed = loop.time() - t0
                rate = (master.reports - r0) / boards / elapsed
                scheduled = (master.superframes - s0) * master.settings.rounds / elapsed
                # Groups C-F are on one board each (A and B repeat when there are 8 boards).
                timed = await _latency_steps(vboards[2:6], listener, steps=20)
                bad = master.bad_frames
                master_guard = master.guard_us
                rounds = master.settings.rounds
            finally:
                master.stop()
                task.cancel()
                await transport.close()
                await asyncio.gather(*(b.stop() for b in vboards))
    baseline = 1.0 / modbus_cycle_s(boards, baud, rounds)
    return {
        "bus.boards": boards,
        "bus.baud": baud,
        "bus.cycles_per_s": round(rate, 2),
        "bus.cycles_scheduled_per_s": round(scheduled, 2),
        "bus.rounds_per_sync": rounds,
        "bus.modbus_cycles_per_s": round(baseline, 2),
        "bus.cycle_rate_ratio_vs_modbus": round(rate / baseline, 3),
        "bus.slot_guard_us_final": master_guard,
        "bus.bad_frames": bad,
        "e2e.latency_ms_p50": round(statistics.median(timed["total"]), 1),
        "e2e.latency_ms_p99": _p(timed["total"], 0.99),
        "e2e.steps": len(timed["total"]),
        # Where it goes: step -> first REPORT with the value (board window, tx lead, slot,
        # wire), the board's REPORT spacing there, REPORT -> model.
        "e2e.report_latency_ms_p50": _p(timed["report"], 0.5),
        "e2e.report_latency_ms_p99": _p(timed["report"], 0.99),
        "e2e.report_gap_ms_p50": _p(timed["gap"], 0.5),
        "e2e.report_gap_ms_p99": _p(timed["gap"], 0.99),
        "e2e.model_latency_ms_p99": _p(timed["model"], 0.99),
    }


@dataclasses.dataclass
class _Step:
    """One load step being timed (times are loop time, s)."""

    group: str
    channel: int  # 1..12
    target_a: float
    started: float
    done: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    previous_report: float | None = None  # the board's last REPORT still short of the value
    report_at: float | None = None  # the first REPORT within 5 % (received on the line)
    model_at: float | None = None  # the model shows it

    def close_to(self, amps: float | None) -> bool:
        return amps is not None and abs(amps - self.target_a) <= 0.05 * self.target_a


class _TimingListener(StateBusListener):
    """The state's bus listener, also timing the current load step: right after each REPORT
    of the stepped board is applied it checks that REPORT and the model (no polling loop
    competing with the boards for the two cores, no 2 ms polling grain)."""

    step: _Step | None = None

    def report(self, link: BoardLinkLike, report: Report, received_at: float) -> None:
        super().report(link, report, received_at)
        step = self.step
        if step is None or step.model_at is not None or link.group != step.group:
            return
        if step.report_at is None:
            if not step.close_to(report.centiamps[step.channel - 1] / 100.0):
                step.previous_report = received_at
                return
            step.report_at = received_at
        amps = self.state.snapshot().channel(f"{step.group}{step.channel}").current_a
        if step.close_to(amps):
            step.model_at = time.monotonic()  # the loop's clock
            step.done.set()


async def _latency_steps(
    boards: list[VirtualBoard], listener: _TimingListener, steps: int
) -> dict[str, list[float]]:
    """Step a channel's load and time until the model reads within 5 % of the new value,
    split into step -> first REPORT with the value (the board's engine: a whole cycle after
    the step, reported from the cycles since it alone; its frame built up to the sim UART's
    20 ms lead before its slot, the wait for the slot, the wire),
    the spacing of the board's REPORTs there (the slot's share is at most that) and REPORT
    -> model."""
    loop = asyncio.get_running_loop()
    out: dict[str, list[float]] = {"total": [], "report": [], "gap": [], "model": []}
    levels = (4.0, 12.0)
    for k in range(steps):
        board = boards[k % len(boards)]
        channel = 1 + (k // len(boards)) % 12
        target = levels[k % 2]
        await board.set_load(channel, "resistive", levels[(k + 1) % 2])
        await asyncio.sleep(1.0)  # settle on the other level first
        step = _Step(board.group, channel, target, loop.time())
        listener.step = step
        await board.set_load(channel, "resistive", target)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5.0):
                await step.done.wait()
        listener.step = None
        if step.model_at is None or step.report_at is None:
            out["total"].append(5000.0)
        else:
            out["total"].append((step.model_at - step.started) * 1000)
            out["report"].append((step.report_at - step.started) * 1000)
            out["model"].append((step.model_at - step.report_at) * 1000)
            if step.previous_report is not None:
                out["gap"].append((step.report_at - step.previous_report) * 1000)
        await board.set_load(channel, "off", 0)
    return out


def _p(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 1)


def _service_bench(window_s: float) -> dict[str, Any]:
    """``smartpdu serve`` against a 6-board virtual PDU (smartPDU 72) + meter."""
    with bench72_service() as serve:
        cpu0, t0 = proc_cpu_s(serve.pid), time.monotonic()
        rss_peak = 0.0
        while time.monotonic() - t0 < window_s:
            time.sleep(1)
            rss_peak = max(rss_peak, proc_rss_mb(serve.pid))
        cpu = (proc_cpu_s(serve.pid) - cpu0) / (time.monotonic() - t0) * 100
    return {
        "host.cpu_pct_one_core": round(cpu, 1),
        "host.rss_mb": round(rss_peak, 1),
        "host.window_s": window_s,
        "host.boards": 6,
    }


def run(
    boards: int = 8,
    baud: int = BUS_BAUD,
    seconds: float = 10.0,
    cpu_window_s: float = 60.0,
) -> dict[str, Any]:
    figures = asyncio.run(_bus_bench(boards, baud, seconds))
    figures.update(_service_bench(cpu_window_s))
    from tools.bench import export_bench  # imports this module's helpers

    figures.update(export_bench.run())  # export.metrics_scrape_ms (72 outputs)
    from tools.bench import mqtt_bench  # imports this module's helpers too

    # export.mqtt_msgs_per_s, host CPU with MQTT and a 5 s scrape (once: smartpdu bench repeats)
    figures.update(mqtt_bench.run(repeats=1))
    return figures


if __name__ == "__main__":
    print(json.dumps(run(), indent=1, sort_keys=True))
