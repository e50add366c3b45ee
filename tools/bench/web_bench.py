"""Web benchmark: how long from a report reaching the aggregator to the number changing in
the pages of 10 browsers (and of one).

The aggregator side is real (``UnitState``, the aiohttp app with its live hub, SQLite), fed
the way the bus master feeds it: three group boards' REPORTs at about the rate the virtual
bus delivers them (~70 a second) with a show's loads on them (a third of the outputs off,
half steady with ±0.3 % reading noise, the rest on dimmers fading), and the meter once a
second. Every ``marker_every_s`` one channel (B1) is given a new, unique current; the time
``UnitState.apply_report`` is called with it is compared with the moment a
``MutationObserver`` in each page sees that value appear in pane D. Each page is the whole
UI in a browser context (a window) of its own, visible, scrolled so that B1's tile is on
screen, with its live WebSocket. Stamps are the machine's wall clock, in ms.

The marker is a step on a channel that sat still, so the hub sends it at once (after its
≤ 20 builds a second); the other channels' noise and fades wait for the display refresh
(``host.web.pacing``, twice a second: ``refresh_frames_per_s``).

Where the time goes, per page count: ``server_publish`` (report → frame built and published
by the hub: the coalescing to ≤ 20 builds a second), ``server_send`` (report → that frame
written to the page's socket: also the wait for the page's ack of the previous frame) and
``browser`` (socket → DOM shows it: delivery through chromium's network process, the wait
for the page's main thread, the update). The CPU the browsers and the aggregator spend is
read from /proc.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from host.config import default_config
from host.state import UnitState
from host.storage.store import Storage
from host.web import HUB, WebContext, create_app
from host.web.live import MIN_INTERVAL_S, Frame, LiveClient
from protocol import consts as C
from protocol.messages import Report

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
UNIT = "smartPDU0BENCH"
REPORTS_PER_S = 70.0
MARKER_CHANNEL = "B1"
NOISE = 0.003  # ±0.3 % reading to reading, about what the boards' RMS shows on a steady load

SETTLE_S = 5.0  # after the last page opened: ten pages starting up load two cores for seconds
SCROLL_JS = (
    """(cid) => document.querySelector(`[data-ch="${cid}"]`).scrollIntoView({block: "center"})"""
)
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


def _process_cpu() -> dict[str, float]:
    """CPU seconds of this process's descendants (the Playwright driver, chromium's
    processes) by kind: renderer, gpu-process, browser, utility, driver. Linux only."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    kind: dict[int, str] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return {}
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                words = f.read().replace(b"\0", b" ").split()  # chromium rewrites its argv
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        pid = int(entry)
        parents[pid] = int(fields[1])
        cpu[pid] = (int(fields[11]) + int(fields[12])) / tick
        exe = words[0].decode(errors="replace") if words else ""
        if "chrom" not in exe:
            kind[pid] = "driver" if "node" in exe else "other"
            continue
        types = [w[7:].decode() for w in words if w.startswith(b"--type=")]
        kind[pid] = types[0] if types else "browser"
    mine = {os.getpid()}
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in mine and pid not in mine:
                mine.add(pid)
                grew = True
    totals: dict[str, float] = {}
    for pid in mine - {os.getpid()}:
        totals[kind[pid]] = totals.get(kind[pid], 0.0) + cpu[pid]
    return totals


@dataclass
class _Capture:
    """What one benchmark pass records: when each marker value was published, written to each
    page's socket and first shown on each page, and the counters around the measured span."""

    published: dict[int, float] = field(default_factory=dict)  # centiamps -> published (ms)
    marker_in_frame: dict[int, int] = field(default_factory=dict)  # frame seq -> first marker
    page_of: dict[LiveClient, int] = field(default_factory=dict)
    written: dict[tuple[int, int], float] = field(default_factory=dict)  # (page, marker) -> ms
    values: list[int] = field(default_factory=list)
    first_seen: list[dict[str, float]] = field(default_factory=list)
    render_ms: list[float] = field(default_factory=list)
    visible: int = 0
    reports: int = 0
    frames: int = 0
    refresh_frames: int = 0
    wall: float = 1.0
    cpu_before: dict[str, float] = field(default_factory=dict)
    cpu_after: dict[str, float] = field(default_factory=dict)
    own_before: os.times_result = field(default_factory=os.times)
    own_after: os.times_result = field(default_factory=os.times)
    lagging_before: int = 0
    lagging_after: int = 0

    def on_publish(self, frame: Frame) -> None:
        amps = frame.view["channels"][MARKER_CHANNEL]["current_a"]
        if amps is not None:
            centiamps = round(amps * 100)
            if centiamps not in self.published:
                self.published[centiamps] = time.time() * 1000.0
                self.marker_in_frame[frame.seq] = centiamps

    def on_sent(self, client: LiveClient, seq: int) -> None:
        page = self.page_of.get(client)
        if page is None:
            return
        now = time.time() * 1000.0
        for frame_seq, centiamps in self.marker_in_frame.items():
            if frame_seq <= seq:
                self.written.setdefault((page, centiamps), now)


async def _open_pages(browser: Any, hub: Any, url: str, clients: int, cap: _Capture) -> list[Any]:
    pages = []
    for index in range(clients):
        # A context of its own for every page: its own window, as if on its own phone.
        page = await (await browser.new_context(bypass_csp=True)).new_page()
        before = set(hub.clients)
        await page.goto(url)
        await page.wait_for_function("document.body.dataset.link === 'live'")
        for client in hub.clients - before:
            cap.page_of[client] = index
        await page.evaluate(SCROLL_JS, MARKER_CHANNEL)
        await page.evaluate(OBSERVER_JS, MARKER_CHANNEL)
        pages.append(page)
    return pages


async def _measure(
    hub: Any,
    url: str,
    clients: int,
    markers: int,
    marker_every_s: float,
    marker: dict[str, Any],
    cap: _Capture,
) -> None:
    """Open the pages, step the marker ``markers`` times and read what each page saw."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        pages = await _open_pages(browser, hub, url, clients, cap)
        await asyncio.sleep(SETTLE_S)
        for page in pages:
            cap.visible += bool(await page.evaluate("document.visibilityState === 'visible'"))
        frames_before = hub.stats.frames
        refresh_before = hub.stats.refresh_frames
        cap.lagging_before = hub.stats.lagging_sends
        sent_before = marker["sent"]
        cap.cpu_before = _process_cpu()
        cap.own_before = os.times()
        wall_before = time.monotonic()
        for k in range(1, markers + 1):
            centiamps = 100 + k  # 1.01 A, 1.02 A …: unique, shown with two decimals
            cap.values.append(centiamps)
            marker["value"] = centiamps / 100.0
            marker["pending"] = centiamps
            await asyncio.sleep(marker_every_s * random.uniform(0.8, 1.2))
        await asyncio.sleep(1.0)
        cap.wall = time.monotonic() - wall_before
        cap.cpu_after = _process_cpu()
        cap.own_after = os.times()
        cap.frames = hub.stats.frames - frames_before
        cap.refresh_frames = hub.stats.refresh_frames - refresh_before
        cap.lagging_after = hub.stats.lagging_sends
        cap.reports = marker["sent"] - sent_before
        for page in pages:
            page_stats = await page.evaluate("window.smartpdu.stats")
            if page_stats["messages"]:
                cap.render_ms.append(page_stats["renderMs"] / page_stats["messages"])
            seen: list[list[Any]] = await page.evaluate("window.__seen")
            first: dict[str, float] = {}
            for text, at in seen:
                first.setdefault(str(text), float(at))
            cap.first_seen.append(first)
        await browser.close()


async def _bench(
    clients: int, markers: int, marker_every_s: float, min_interval_s: float, noise: float
) -> dict[str, Any]:
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
    cap = _Capture()
    hub.on_publish.append(cap.on_publish)
    hub.on_sent.append(cap.on_sent)
    marker: dict[str, Any] = {"value": 1.0, "pending": None, "applied": {}, "sent": 0}
    stop = asyncio.Event()
    feeder = asyncio.create_task(_feed(state, marker, stop, noise))
    try:
        await _measure(hub, url, clients, markers, marker_every_s, marker, cap)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await feeder
        await runner.cleanup()
        await storage.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return _figures(cap, marker["applied"], hub.stats.to_json(), clients)


def _latencies(
    cap: _Capture, applied: dict[int, float]
) -> tuple[list[float], list[float], list[float], int]:
    """(applied to shown, applied to written, written to shown, markers never shown)."""
    total: list[float] = []
    send: list[float] = []
    browser_part: list[float] = []
    missed = 0
    for index, first in enumerate(cap.first_seen):
        for centiamps in cap.values:
            at = applied.get(centiamps)
            shown = first.get(f"{centiamps / 100:.2f}")
            if at is None or shown is None:
                missed += 1
                continue
            total.append(shown - at)
            out = cap.written.get((index, centiamps))
            if out is not None:
                send.append(out - at)
                browser_part.append(shown - out)
    return total, send, browser_part, missed


def _figures(
    cap: _Capture, applied: dict[int, float], stats: dict[str, Any], clients: int
) -> dict[str, Any]:
    total, send, browser_part, missed = _latencies(cap, applied)
    published = cap.published
    server = [published[c] - applied[c] for c in cap.values if c in published and c in applied]
    cpu = {key: cap.cpu_after.get(key, 0.0) - cap.cpu_before.get(key, 0.0) for key in cap.cpu_after}
    chromium = sum(v for key, v in cpu.items() if key not in ("driver", "other"))
    own_after, own_before = cap.own_after, cap.own_before
    own = (own_after.user - own_before.user) + (own_after.system - own_before.system)
    wall, frames, render_ms = cap.wall, cap.frames, cap.render_ms

    def pct(values: list[float], q: float) -> float:
        return round(_percentile(values, q), 1)

    def share(seconds: float) -> float:
        return round(100.0 * seconds / wall, 1)  # % of one core

    return {
        "update_latency_ms_p50": pct(total, 50),
        "update_latency_ms_p95": pct(total, 95),
        "update_latency_ms_p99": pct(total, 99),
        "update_latency_ms_max": round(max(total, default=float("nan")), 1),
        "update_latency_samples": len(total),
        "update_missed": missed,
        "server_publish_latency_ms_p50": pct(server, 50),
        "server_publish_latency_ms_p99": pct(server, 99),
        "server_send_latency_ms_p50": pct(send, 50),
        "server_send_latency_ms_p99": pct(send, 99),
        "browser_latency_ms_p50": pct(browser_part, 50),
        "browser_latency_ms_p99": pct(browser_part, 99),
        "pages_visible": cap.visible,
        "reports_per_s": round(cap.reports / max(wall, 1e-9), 1),
        "frames_per_s": round(frames / wall, 1),
        "refresh_frames_per_s": round(cap.refresh_frames / wall, 1),
        "lagging_sends_per_s": round((cap.lagging_after - cap.lagging_before) / wall, 1),
        "patch_bytes_mean": stats["mean_patch_bytes"],
        "full_view_bytes": stats["full_view_bytes"],
        "view_build_ms_mean": stats["mean_build_ms"],
        "page_message_ms_mean": round(statistics.fmean(render_ms), 2) if render_ms else None,
        "browser_cpu_ms_per_page_frame": round(1000.0 * chromium / max(1, frames * clients), 2),
        "renderers_cpu_percent": share(cpu.get("renderer", 0.0)),
        "gpu_process_cpu_percent": share(cpu.get("gpu-process", 0.0)),
        "browser_other_cpu_percent": share(
            chromium - cpu.get("renderer", 0.0) - cpu.get("gpu-process", 0.0)
        ),
        # This process: the aggregator, the feed and the (idle) Playwright client.
        "aggregator_cpu_percent": share(own),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def run(
    clients: int = 10,
    markers: int = 60,
    marker_every_s: float = 0.25,
    min_interval_s: float = MIN_INTERVAL_S,
    single_client_pass: bool = True,
    noise: float = NOISE,
) -> dict[str, Any]:
    """Figures of the web benchmark (see the module's docstring): ``web.*`` for ``clients``
    pages and, with ``single_client_pass``, ``web.*_1_client`` for one page, measured the
    same way (on a small machine ten browsers' renderers, not the aggregator, take the
    time)."""
    raw = asyncio.run(_bench(clients, markers, marker_every_s, min_interval_s, noise))
    figures = {"web.clients": clients} | {f"web.{key}": value for key, value in raw.items()}
    if single_client_pass and clients != 1:
        single = asyncio.run(
            _bench(1, max(20, markers // 2), marker_every_s, min_interval_s, noise)
        )
        for key in (
            "update_latency_ms_p50",
            "update_latency_ms_p99",
            "server_publish_latency_ms_p50",
            "server_publish_latency_ms_p99",
            "server_send_latency_ms_p50",
            "server_send_latency_ms_p99",
            "browser_latency_ms_p50",
            "browser_latency_ms_p99",
            "browser_cpu_ms_per_page_frame",
        ):
            figures[f"web.{key}_1_client"] = single[key]
    return figures


if __name__ == "__main__":
    print(json.dumps(run(), indent=2, sort_keys=True), file=sys.stdout)
