"""Figures of the firmware on the emulated RP2040 (``smartpdu bench --json firmware``).

Two measurements, each repeated (median and worst reported, with the load average):

- the full workload on the chip (sampling, bus answers to the real bus master, the panel,
  console commands): ``tools.rp2emu.trial`` under a clock dilated to 0.1 x real time, for
  ``seconds`` simulated seconds: ``firmware.peak_heap_kb_rp2`` (live heap after a collection,
  highest of one sample per simulated second, via the debug console's ``heap``),
  ``firmware.adc_rate_hz_rp2`` and ``firmware.adc_overruns_rp2`` (from the console's
  ``errors``: ADC blocks x sample instants per block per simulated second; blocks the sample
  task never took), ``firmware.cpu_pct_rp2`` (share of simulated time the core was not asleep in
  WFI/WFE), and what the bus master saw;
- ``rp2emu.speed_ratio``: simulated seconds per wall second of the same production image
  running unpaced with the ADC stream, the panel and loads (no bus), over 5 simulated s.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from tools.rp2emu import PRODUCTION_IMAGE, EmulatorError, check_installed
from tools.rp2emu.trial import LOADS, run_trial


async def _speed(workdir: Path, seconds: float = 5.0) -> float:
    from tools.rp2emu.vboard import Rp2VirtualBoard

    board = Rp2VirtualBoard("board-S", bus_socket=None, workdir=workdir, group="B", pace=0)
    await board.start(timeout=300)
    emu = board.emu
    assert emu is not None
    try:
        for ch, amps in LOADS.items():
            await board.set_load(ch, "resistive", amps)
        await emu.run_for(1.0)
        s0 = (await emu.stats())["sim_s"]
        w0 = time.monotonic()
        await emu.run_for(seconds, timeout=600)
        s1 = (await emu.stats())["sim_s"]
        return (s1 - s0) / (time.monotonic() - w0)
    finally:
        await board.stop()


def _spread(values: list[float], worst_is_max: bool = True) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 2),
        "worst": round(max(values) if worst_is_max else min(values), 2),
    }


def figures(runs: int = 2, seconds: float = 12.0) -> dict[str, Any]:
    try:
        check_installed()
    except EmulatorError as exc:
        return {"rp2emu.error": str(exc)}
    if not PRODUCTION_IMAGE.exists():
        return {"rp2emu.error": f"{PRODUCTION_IMAGE.name} not built: make firmware"}
    load0 = os.getloadavg()[0]
    trials = []
    speeds = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            trials.append(run_trial(seconds, Path(tmp) / "trial"))
        with tempfile.TemporaryDirectory() as tmp:
            speeds.append(asyncio.run(_speed(Path(tmp))))
    out: dict[str, Any] = {"rp2emu.runs": runs, "rp2emu.load_avg_start": round(load0, 2)}
    for key, name, worst_is_max in (
        ("peak_heap_kb", "firmware.peak_heap_kb_rp2", True),
        ("adc_rate_hz", "firmware.adc_rate_hz_rp2", False),
        ("adc_overruns", "firmware.adc_overruns_rp2", True),
        ("cpu_pct", "firmware.cpu_pct_rp2", True),
        ("reports_per_s", "rp2emu.bus_reports_per_s", False),
    ):
        values = [float(t[key]) for t in trials if t.get(key) is not None]
        if values:
            spread = _spread(values, worst_is_max)
            out[name] = spread["median"]
            out[name + "_worst"] = spread["worst"]
    spread = _spread(speeds, worst_is_max=False)
    out["rp2emu.speed_ratio"] = spread["median"]
    out["rp2emu.speed_ratio_worst"] = spread["worst"]
    out["rp2emu.trial_seconds"] = seconds
    out["rp2emu.link"] = [
        {k: t[k] for k in ("frames_ok", "crc_errors", "timeouts", "discovered_s")} for t in trials
    ]
    out["rp2emu.load_avg_end"] = round(os.getloadavg()[0], 2)
    return out
