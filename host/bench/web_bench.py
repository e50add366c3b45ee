"""Web benchmark: how long from a report reaching the aggregator to the number changing in
the pages of 10 browsers.

The aggregator side is real (``UnitState``, the aiohttp app with its live hub, SQLite), fed
the way the bus master feeds it: three group boards' REPORTs at about the rate the virtual
bus delivers them (~70 a second) with a show's loads on them (a third of the outputs off,
half steady with ±0.3 % reading noise, the rest on dimmers fading), and the meter once a
second. Every ``marker_every_s`` one channel (B1) is given a new, unique current; the time
``UnitState.apply_report`` is called with it is compared with the moment a
``MutationObserver`` in each page sees that value appear in pane D (Debian's chromium via
Playwright, 10 pages). Both stamps are the machine's wall clock, in ms.

``run()`` returns figures only; nothing here asserts a timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from host.config import default_config
from host.model import UnitState
from host.storage import Storage
from host.web import HUB, WebContext, create_app
from host.web.live import MIN_INTERVAL_S, Frame
from protocol import consts as C
from protocol.messages import Report

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
UNIT = "smartPDU0BENCH"
REPORTS_PER_S = 70.0
MARKER_CHANNEL = "B1"
NOISE = 0.003  # ±0.3 % reading to reading, about what the boards' RMS shows on a steady load

OBSERVER_JS = """
(cid) => {
  window.__seen = [];
  const watch = () => {
    const node = document.querySelector(`[data-ch="${cid}"] .amps`);
    if (!node) { setTimeout(watch, 20); return; }
    new MutationObserver(() => window.__seen.push([node.textContent, Date.now()]))
      .observe(node, {childList: true, characterData: true, subtree: true});
  };
  watch();
}
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100.0 * (len(ordered) - 1))))
    return ordered[index]


def _state() -> UnitState:
    config = default_config(unit={"model": 36, "id": UNIT})
    state = UnitState(config)
    for address, group in ((1, "A"), (2, "B"), (3, "C")):
        state.board_online(
            address, state.now(), board_type=C.BOARD_SIM, uid=b"bench-%d" % address, group=group
        )
    return state


def _show(rng: random.Random) -> list[list[tuple[str, float]]]:
    """What the 36 outputs carry, like a show: a third off, half steady loads (LED
    fixtures, amplifiers), the rest on dimmers fading up and down."""
    kinds = ["off"] * 12 + ["steady"] * 18 + ["fade"] * 6
    rng.shuffle(kinds)
    return [[(kinds[g * 12 + n], rng.uniform(0.5, 12.0)) for n in range(12)] for g in range(3)]


def _amps(kind: str, level: float, t: float, rng: random.Random, noise: float) -> float:
    if kind == "off":
        return 0.0
    if kind == "fade":  # a 20 s fade cycle
        level *= 0.5 + 0.5 * math.sin(2 * math.pi * t / 20.0 + level)
    return max(0.0, level * (1.0 + rng.uniform(-noise, noise)))


async def _feed(state: UnitState, marker: dict[str, Any], stop: asyncio.Event, noise: float) -> int:
    """Reports round-robin from the three boards; B1 carries the marker value."""
    rng = random.Random(7)
    show = _show(rng)
    loop = asyncio.get_running_loop()
    period = 1.0 / REPORTS_PER_S
    next_at = loop.time()
    sent = 0
    meter_at = loop.time()
    while not stop.is_set():
        index = sent % 3
        address = index + 1
        now = loop.time()
        amps = [_amps(kind, level, now, rng, noise) for kind, level in show[index]]
        if address == 2:
            amps[0] = marker["value"]
        report = Report([round(a * 100) for a in amps], [0] * 12, src=address)
        if address == 2 and marker["pending"] is not None:
            marker["applied"][marker["pending"]] = time.time() * 1000.0
            marker["pending"] = None
        state.apply_report(address, report, loop.time())
        sent += 1
        marker["sent"] = sent
        if loop.time() >= meter_at:
            meter_at += 1.0
            state.apply_meter(
                {
                    "l1_current": 60 + rng.random(),
                    "l2_current": 55 + rng.random(),
                    "l3_current": 50 + rng.random(),
                    "neutral_current": 8 + rng.random(),
                    "l1_voltage": 230 + rng.random(),
                    "frequency": 50.0,
                },
                loop.time(),
            )
        next_at += period
        await asyncio.sleep(max(0.0, next_at - loop.time()))
    return sent


async def _bench(
    clients: int, markers: int, marker_every_s: float, min_interval_s: float, noise: float
) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    workdir = Path(tempfile.mkdtemp(prefix="smartpdu-web-bench-"))
    state = _state()
    storage = await Storage.open(workdir / "bench.db")
    context = WebContext(
        config=state.config,
        state=state,
        storage=storage,
        number=1,
        live_min_interval_s=min_interval_s,
    )
    app = create_app(context)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}/"
    hub = app[HUB]
    published: dict[int, float] = {}  # marker value (centiamps) -> frame published (ms)

    def on_publish(frame: Frame) -> None:
        amps = frame.view["channels"][MARKER_CHANNEL]["current_a"]
        if amps is not None:
            published.setdefault(round(amps * 100), time.time() * 1000.0)

    hub.on_publish.append(on_publish)
    marker: dict[str, Any] = {"value": 1.0, "pending": None, "applied": {}, "sent": 0}
    stop = asyncio.Event()
    feeder = asyncio.create_task(_feed(state, marker, stop, noise))
    reports = 0
    sent_before = 0
    cpu_before = os.times()
    wall_before = time.monotonic()
    frames_before = 0
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            pages = []
            for _ in range(clients):
                page = await (await browser.new_context(bypass_csp=True)).new_page()
                await page.goto(url)
                await page.wait_for_function("document.body.dataset.link === 'live'")
                await page.evaluate(OBSERVER_JS, MARKER_CHANNEL)
                pages.append(page)
            await asyncio.sleep(2.0)  # everything settled
            frames_before = hub.stats.frames
            sent_before = marker["sent"]
            cpu_before = os.times()
            wall_before = time.monotonic()
            values: list[int] = []
            for k in range(1, markers + 1):
                centiamps = 100 + k  # 1.01 A, 1.02 A …: unique, shown with two decimals
                values.append(centiamps)
                marker["value"] = centiamps / 100.0
                marker["pending"] = centiamps
                await asyncio.sleep(marker_every_s * random.uniform(0.8, 1.2))
            await asyncio.sleep(1.0)
            wall = time.monotonic() - wall_before
            cpu_after = os.times()
            frames = hub.stats.frames - frames_before
            reports = marker["sent"] - sent_before
            latencies: list[float] = []
            missed = 0
            render_ms: list[float] = []
            for page in pages:
                page_stats = await page.evaluate("window.smartpdu.stats")
                if page_stats["messages"]:
                    render_ms.append(page_stats["renderMs"] / page_stats["messages"])
                seen: list[list[Any]] = await page.evaluate("window.__seen")
                first: dict[str, float] = {}
                for text, at in seen:
                    first.setdefault(str(text), float(at))
                for centiamps in values:
                    applied = marker["applied"].get(centiamps)
                    shown = first.get(f"{centiamps / 100:.2f}")
                    if applied is None or shown is None:
                        missed += 1
                        continue
                    latencies.append(shown - applied)
            await browser.close()
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await feeder
        await runner.cleanup()
        await storage.close()
        shutil.rmtree(workdir, ignore_errors=True)
    server = [
        published[c] - marker["applied"][c]
        for c in values
        if c in published and c in marker["applied"]
    ]
    cpu = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    stats = hub.stats.to_json()
    return {
        "web.update_latency_ms_p50": round(_percentile(latencies, 50), 1),
        "web.update_latency_ms_p95": round(_percentile(latencies, 95), 1),
        "web.update_latency_ms_p99": round(_percentile(latencies, 99), 1),
        "web.update_latency_ms_max": round(max(latencies, default=float("nan")), 1),
        "web.update_latency_samples": len(latencies),
        "web.update_missed": missed,
        "web.clients": clients,
        "web.server_publish_latency_ms_p99": round(_percentile(server, 99), 1),
        "web.server_publish_latency_ms_mean": round(statistics.fmean(server), 1)
        if server
        else None,
        "web.reports_per_s": round(reports / max(wall, 1e-9), 1) if reports else None,
        "web.frames_per_s": round(frames / wall, 1),
        "web.patch_bytes_mean": stats["mean_patch_bytes"],
        "web.full_view_bytes": stats["full_view_bytes"],
        "web.view_build_ms_mean": stats["mean_build_ms"],
        "web.page_message_ms_mean": round(statistics.fmean(render_ms), 2) if render_ms else None,
        # The Playwright client runs in this process too (idle while measuring).
        "web.aggregator_cpu_percent": round(100.0 * cpu / wall, 1),
        "web.load_average_1min": round(os.getloadavg()[0], 2),
    }


def run(
    clients: int = 10,
    markers: int = 60,
    marker_every_s: float = 0.25,
    min_interval_s: float = MIN_INTERVAL_S,
    single_client_pass: bool = True,
    noise: float = NOISE,
) -> dict[str, Any]:
    """Figures of the web benchmark (see the module's docstring). With
    ``single_client_pass``, the latency with one page is measured too: on a small machine
    ten browsers' renderers, not the aggregator, are what takes the time."""
    figures = asyncio.run(_bench(clients, markers, marker_every_s, min_interval_s, noise))
    if single_client_pass and clients != 1:
        single = asyncio.run(
            _bench(1, max(20, markers // 2), marker_every_s, min_interval_s, noise)
        )
        for key in ("p50", "p99"):
            figures[f"web.update_latency_ms_{key}_1_client"] = single[
                f"web.update_latency_ms_{key}"
            ]
    return figures


if __name__ == "__main__":
    print(json.dumps(run(), indent=2, sort_keys=True), file=sys.stdout)
