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
  model shows a reading within 5 % of the new value.
- ``host.cpu_pct_one_core``, ``host.rss_mb``: ``smartpdu serve`` (bus master, meter reader,
  state, storage, web server) for 6 boards + meter over ``cpu_window_s`` seconds, measured
  from /proc on that process alone; the virtual PDU runs in its own processes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from host.busmaster import BusMaster, CycleSettings
from host.config import default_config
from host.state import StateBusListener, UnitState
from host.transport import SerialTransport
from protocol import layouts as L
from protocol.consts import BUS_BAUD
from tools.virtual.vboard import VirtualBoard
from tools.virtual.vbus import VirtualBus

ROOT = Path(__file__).resolve().parents[2]
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
            master = BusMaster(
                transport.write,
                StateBusListener(state),
                CycleSettings(baud=baud, discover_every_s=2.0),
            )
            transport.on_data = master.feed
            await transport.open()
            task = asyncio.create_task(master.run())
            loop = asyncio.get_running_loop()
            try:
                deadline = loop.time() + 60
                while sum(1 for b in master.boards.values() if b.online) < boards:
                    if loop.time() > deadline:
                        states = {a: b.online for a, b in master.boards.items()}
                        if task.done():
                            task.result()  # the master itself failed: show why
                        raise RuntimeError(f"boards did not all come online: {states}")
                    await asyncio.sleep(0.1)
                # Measure cycles only: no discovery rounds in the window.
                master.settings = dataclasses.replace(master.settings, discover_every_s=3600)
                await asyncio.sleep(1.0)
                r0, s0, t0 = master.reports, master.superframes, loop.time()
                await asyncio.sleep(seconds)
                elapsed = loop.time() - t0
                rate = (master.reports - r0) / boards / elapsed
                scheduled = (master.superframes - s0) * master.settings.rounds / elapsed
                # Groups C-F are on one board each (A and B repeat when there are 8 boards).
                latencies = await _latency_steps(vboards[2:6], state, steps=20)
                bad = master.bad_frames
                master_guard = master.guard_us
                rounds = master.settings.rounds
            finally:
                master.stop()
                task.cancel()
                await transport.close()
                await asyncio.gather(*(b.stop() for b in vboards))
    baseline = 1.0 / modbus_cycle_s(boards, baud, rounds)
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
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
        "e2e.latency_ms_p50": round(statistics.median(latencies), 1),
        "e2e.latency_ms_p99": round(p99, 1),
        "e2e.steps": len(latencies),
    }


async def _latency_steps(boards: list[VirtualBoard], state: UnitState, steps: int) -> list[float]:
    """Step a channel's load and time until the model reads within 5 % of the new value."""
    loop = asyncio.get_running_loop()
    out: list[float] = []
    levels = (4.0, 12.0)
    for k in range(steps):
        board = boards[k % len(boards)]
        channel = 1 + (k // len(boards)) % 12
        target = levels[k % 2]
        cid = f"{board.group}{channel}"
        await board.set_load(channel, "resistive", levels[(k + 1) % 2])
        await asyncio.sleep(1.0)  # settle on the other level first
        t0 = loop.time()
        await board.set_load(channel, "resistive", target)
        while True:
            amps = state.snapshot().channel(cid).current_a
            if amps is not None and abs(amps - target) <= 0.05 * target:
                out.append((loop.time() - t0) * 1000)
                break
            if loop.time() - t0 > 5:
                out.append(5000.0)
                break
            await asyncio.sleep(0.002)
        await board.set_load(channel, "off", 0)
    return out


def _proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def _proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _service_bench(window_s: float) -> dict[str, Any]:
    """``smartpdu serve`` against a 6-board virtual PDU (smartPDU 72) + meter."""
    with tempfile.TemporaryDirectory(prefix="smartpdu-bench-") as tmp:
        work = Path(tmp)
        sim = subprocess.Popen(
            [sys.executable, "-m", "tools.virtual.vpdu", "--scenario", "bench72", "--workdir",
             str(work / "vpdu"), "-q"],
            cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        serve = None
        try:
            assert sim.stdout is not None
            ports = json.loads(sim.stdout.readline())
            config = work / "config.toml"
            config.write_text(
                f'[unit]\nmodel = 72\n[bus]\nport = "{ports["master"]}"\n'
                f'[meter]\nport = "{ports["meter"]}"\nbaud = {ports.get("meter_baud", 9600)}\n'
                f'[storage]\nvar_dir = "{work}"\ndatabase = "{work / "db.sqlite"}"\n'
                f'[web]\nhost = "127.0.0.1"\nport = {_free_port()}\n'
            )
            serve = subprocess.Popen(
                [sys.executable, "-m", "host", "--config", str(config)],
                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
            time.sleep(15)  # discovery, first cycles, meter
            cpu0, t0 = _proc_cpu_s(serve.pid), time.monotonic()
            rss_peak = 0.0
            while time.monotonic() - t0 < window_s:
                time.sleep(1)
                rss_peak = max(rss_peak, _proc_rss_mb(serve.pid))
            cpu = (_proc_cpu_s(serve.pid) - cpu0) / (time.monotonic() - t0) * 100
            if serve.poll() is not None:
                raise RuntimeError(f"smartpdu serve exited with {serve.returncode}")
        finally:
            for proc in (serve, sim):
                if proc is not None and proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)
                    try:
                        proc.wait(20)
                    except subprocess.TimeoutExpired:
                        os.killpg(proc.pid, signal.SIGKILL)
                        proc.wait()
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
    return figures


if __name__ == "__main__":
    print(json.dumps(run(), indent=1, sort_keys=True))
