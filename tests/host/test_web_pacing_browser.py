"""The live view's pacing in a real browser (Debian's chromium, Playwright): a step on one
channel reaches the page at once while another channel's jitter waits for the refresh."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from host.storage.store import Storage
from host.web import HUB, WebContext, create_app
from host.web.live import LiveHub
from tests.host.test_web_api import feed, make_state
from tests.requirements import require_module, requires

playwright_api = require_module("playwright.async_api")

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

pytestmark = [pytest.mark.slow, requires(CHROMIUM.exists(), "Debian chromium is not installed")]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def served(tmp_path: Path, marker: dict[str, float]) -> AsyncIterator[tuple[str, LiveHub]]:
    """The web app on a unit whose A1 jitters (±1 % around 5 A, 60 reports a second) and
    whose A2 carries ``marker["A2"]``; the refresh never falls due unless the test says."""
    state = make_state()
    storage = await Storage.open(tmp_path / "db.sqlite")
    context = WebContext(
        config=state.config, state=state, storage=storage, number=1, live_refresh_s=3600.0
    )
    app = create_app(context)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()

    async def jitter() -> None:
        rng = random.Random(11)
        while not stop.is_set():
            a1 = round(5.0 * (1 + rng.uniform(-0.01, 0.01)), 2)
            feed(state, 1, [a1, marker["A2"]] + [0.0] * 10)
            await asyncio.sleep(1 / 60)

    task = asyncio.create_task(jitter())
    try:
        yield f"http://127.0.0.1:{port}/", app[HUB]
    finally:
        stop.set()
        await task
        await runner.cleanup()
        await storage.close()


async def shown(page: Any, cid: str) -> str:
    return await page.inner_text(f'[data-ch="{cid}"] .amps')


async def test_a_step_shows_at_once_and_jitter_waits_for_the_refresh(tmp_path: Path) -> None:
    marker = {"A2": 1.0}
    async with served(tmp_path, marker) as (url, hub), playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        page = await (await browser.new_context(bypass_csp=True)).new_page()
        page.set_default_timeout(15_000)
        await page.goto(url)
        await page.wait_for_function("document.body.dataset.link === 'live'")
        # A second of builds gives A1 its range: from then on its noise is jitter.
        await asyncio.sleep(2.0)
        held_before = hub.stats.held_builds
        a1 = await shown(page, "A1")
        for amps in (2.5, 3.75, 1.25):
            marker["A2"] = amps
            await page.wait_for_function(
                "([sel, text]) => document.querySelector(sel).textContent === text",
                arg=['[data-ch="A2"] .amps', f"{amps:.2f}"],
            )
            assert await shown(page, "A1") == a1  # the steps went out without A1's jitter
        assert hub.stats.held_builds > held_before  # A1 did jitter, held each time

        hub.refresh_s = 0.25  # the refresh falls due: A1's jitter goes out
        await page.wait_for_function(
            "([sel, text]) => document.querySelector(sel).textContent !== text",
            arg=['[data-ch="A1"] .amps', a1],
        )
        assert hub.stats.refresh_frames > 0
        await browser.close()
