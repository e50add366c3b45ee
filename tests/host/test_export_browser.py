"""CSV export and the show energy report from the web UI in a real browser (Debian's chromium
driven by Playwright), against a virtual smartPDU whose simulated Modbus meter integrates
the loads into its kWh registers: the report's energy per phase matches the meter's kWh
delta within 1 %."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.host.webstack import WebStack
from tests.requirements import require_module, requires

playwright_api = require_module("playwright.async_api")

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# Constant loads: L1 14 A (A1 + A4), L2 6 A (A2), L3 3 A (B3).
LOADS = {("A", 1): 10.0, ("A", 4): 4.0, ("A", 2): 6.0, ("B", 3): 3.0}
SPAN_S = 150.0  # the meter is polled about once a second: its readings lag by up to a poll

pytestmark = [
    pytest.mark.slow,
    pytest.mark.asyncio(loop_scope="module"),
    requires(CHROMIUM.exists(), "Debian chromium is not installed"),
]


class Truth:
    """The simulated meter's own registers and per-phase power, read by the test."""

    def __init__(self, stack: WebStack) -> None:
        assert stack.meter is not None
        self.model = stack.meter.model
        self.phase_kwh = [0.0, 0.0, 0.0]
        self.start = self.end = 0.0
        self.energy_start = self.energy_end = 0.0

    async def run(self, seconds: float) -> None:
        self.start = time.time()
        values = self.model.readings()
        self.energy_start = values["import_energy"]
        last_t, last = self.start, values
        while time.time() < self.start + seconds:
            await asyncio.sleep(0.5)
            now, values = time.time(), self.model.readings()
            for n in range(3):
                mean = (last[f"l{n + 1}_power"] + values[f"l{n + 1}_power"]) / 2
                self.phase_kwh[n] += mean * (now - last_t) / 3.6e6
            last_t, last = now, values
        self.end = last_t
        self.energy_end = last["import_energy"]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def scenario(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[WebStack, Truth]]:
    async with WebStack(tmp_path_factory.mktemp("vpdu"), groups="AB") as stack:
        await stack.until(
            lambda: all(
                g.board.online
                for g in stack.parts.state.snapshot().groups
                if g.letter in stack.groups
            ),
            30,
            "every group board online",
        )
        stack.parts.state.set_channel_label("A1", '=HYPERLINK("x")')
        for (group, channel), amps in LOADS.items():
            await stack.set_channel(group, channel, amps)

        def settled() -> bool:
            snapshot = stack.parts.state.snapshot()
            l1 = snapshot.meter.live_value("l1_current")
            a1 = snapshot.channel("A1").current_a
            return l1 is not None and abs(l1 - 14.0) < 0.3 and a1 is not None and a1 > 9.5

        await stack.until(settled, 30, "loads seen by the boards and the meter")
        await asyncio.sleep(3)
        truth = Truth(stack)
        await truth.run(SPAN_S)
        await asyncio.sleep(3)  # the last seconds flushed to the database
        yield stack, truth


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield chromium
        await chromium.close()


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Any, scenario: tuple[WebStack, Truth]) -> AsyncIterator[Any]:
    stack, _truth = scenario
    context = await browser.new_context(
        viewport={"width": 1400, "height": 1000}, bypass_csp=True, accept_downloads=True
    )
    page = await context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(stack.url)
    await page.wait_for_function("document.body.dataset.link === 'live'")
    yield page
    assert errors == [], errors
    await context.close()


async def report_json(stack: WebStack, start: float, end: float) -> dict[str, Any]:
    unit = stack.parts.state.unit_id
    async with aiohttp.ClientSession() as http:
        url = f"{stack.url.rstrip('/')}/api/v1/units/{unit}/report?start={start}&end={end}"
        async with http.get(url) as response:
            assert response.status == 200
            return await response.json()


async def test_report_energy_per_phase_matches_the_meter(scenario: tuple[WebStack, Truth]) -> None:
    stack, truth = scenario
    report = await report_json(stack, truth.start, truth.end)
    delta = truth.energy_end - truth.energy_start
    assert delta > 0.001
    assert report["meter_total_kwh"] == pytest.approx(delta, rel=0.01)
    for n, phase in enumerate(report["phases"]):
        assert phase["meter_kwh"] == pytest.approx(truth.phase_kwh[n], rel=0.01), phase
        # The outputs' own energy (current x the meter's voltage) tells the same story.
        assert phase["channels_kwh"] == pytest.approx(truth.phase_kwh[n], rel=0.05), phase
    assert sum(truth.phase_kwh) == pytest.approx(delta, rel=0.01)
    a1 = next(c for c in report["channels"] if c["id"] == "A1")
    assert a1["voltage_source"] == "meter" and a1["peak_a"] == pytest.approx(10.0, rel=0.05)
    group_a = next(g for g in report["groups"] if g["group"] == "A")
    assert group_a["peak_a"] == pytest.approx(20.0, rel=0.05)


async def test_csv_download_and_report_from_the_ui(
    page: Any, scenario: tuple[WebStack, Truth]
) -> None:
    stack, _truth = scenario
    await page.click("#export-quick button[data-seconds='3600']")
    await page.wait_for_function("document.querySelector('#export-select').options.length > 3")
    await page.select_option("#export-select", "A")
    async with page.expect_download() as info:
        await page.click("#export-history")
    download = await info.value
    assert download.suggested_filename.startswith(f"{stack.parts.state.unit_id}-group-A-")
    text = Path(await download.path()).read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:3] == ["time_utc", "epoch_s", 'A1 =HYPERLINK("x") (A)']
    assert len(rows) > SPAN_S and rows[-1][0].endswith("Z")
    a1 = [float(r[2]) for r in rows[1:] if r[2]]
    assert max(a1) == pytest.approx(10.0, rel=0.05)

    async with page.expect_download() as info:
        await page.click("#events-csv")
    events = Path(await (await info.value).path()).read_text(encoding="utf-8")
    assert events.startswith("time_utc,epoch_s,id,severity,kind")

    await page.click("#export-report")
    await page.wait_for_selector("#dlg-report[open] #report-total")
    total = await page.text_content("#report-total")
    assert total is not None and "kWh" in total
    assert await page.locator("#report-body table").count() >= 3
    async with page.expect_download() as info:
        await page.click("#report-csv")
    report_csv = Path(await (await info.value).path()).read_text(encoding="utf-8")
    assert report_csv.startswith("show energy report")
    # Printing shows the report alone (the print stylesheet hides the rest of the page).
    await page.emulate_media(media="print")
    assert await page.evaluate("getComputedStyle(document.querySelector('main')).display") == "none"
    assert await page.is_visible("#report-body")
    await page.emulate_media(media="screen")
    await page.click("#dlg-report [data-close]")

    # Pane C: the balance advice (L1 14 A, L2 6 A, L3 3 A: A4 or A1 should move to L3).
    await page.wait_for_selector("#balance-moves li")
    advice = await page.text_content("#balance-moves li")
    assert advice is not None and "(L3)" in advice and advice.startswith("Move A")
