"""The virtual front panel (R13) in a real browser (Debian's chromium driven by Playwright)
against a running virtual smartPDU, which has no GPIO: RUN flashes once per heartbeat, DATA
TX flashes as the server sends, both stop while the service's loop is stalled, and the
admin's RESET restarts the web server while the measurements go on.

Screenshots go to ``test-artifacts/web/``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.host.webstack import ADMIN_PASSWORD, WebStack
from tests.requirements import require_module, requires

playwright_api = require_module("playwright.async_api")

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.asyncio(loop_scope="module"),
    requires(CHROMIUM.exists(), "Debian chromium is not installed"),
]

# Every time an LED of the virtual panel lights, with the page's clock (the same machine's).
WATCH_LEDS = """
window.fpSeen = { run: [], tx: [] };
document.addEventListener("DOMContentLoaded", () => {
  const watch = (id, list) => {
    const node = document.getElementById(id);
    new MutationObserver(() => {
      if (node.classList.contains("on")) list.push(Date.now() / 1000);
    }).observe(node, { attributes: true, attributeFilter: ["class"] });
  };
  watch("fp-run", window.fpSeen.run);
  watch("fp-tx", window.fpSeen.tx);
});
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[WebStack]:
    async with WebStack(tmp_path_factory.mktemp("vpdu-frontpanel")) as running:
        await running.until(
            lambda: all(g.board.online for g in running.parts.state.snapshot().groups),
            30,
            "every group board online",
        )
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def page(stack: WebStack) -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        # No bypass_csp: the page runs under the policy it ships with (a refused style or
        # script is a console error); the waits poll page.evaluate, which the CSP allows.
        context = await browser.new_context(viewport={"width": 1400, "height": 900})
        await context.add_init_script(WATCH_LEDS)
        page = await context.new_page()
        page.set_default_timeout(20_000)
        page.errors = []  # type: ignore[attr-defined]
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        page.on(
            "console",
            lambda m: page.errors.append(m.text) if m.type == "error" else None,
        )
        page.on("dialog", lambda d: asyncio.ensure_future(d.accept()))  # RESET's confirm()
        await page.goto(stack.url)
        await until_js(page, "document.body.dataset.link === 'live'")
        yield page
        await context.close()
        await browser.close()


def shot(name: str) -> str:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return str(ARTIFACTS / f"{name}.png")


async def until_js(page: Any, expression: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await page.evaluate(f"() => Boolean({expression})"):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: {expression}")
        await asyncio.sleep(0.05)


async def seen(page: Any) -> dict[str, list[float]]:
    return await page.evaluate("window.fpSeen")


async def test_virtual_panel_shows_run_heartbeat_and_data_tx(page: Any, stack: WebStack) -> None:
    panel = stack.parts.frontpanel
    assert panel is not None and panel.virtual  # no GPIO chip on this machine
    await page.wait_for_selector("#frontpanel", state="visible")
    assert await page.text_content("#fp-run") == "RUN"
    assert await page.text_content("#fp-tx") == "DATA TX"
    beats = panel.beats
    await until_js(page, "window.fpSeen.run.length >= 3 && window.fpSeen.tx.length >= 3")
    assert panel.beats >= beats + 2
    await page.wait_for_selector("#fp-run.on", timeout=5000)  # caught lit, for the picture
    await page.locator("#topbar").screenshot(path=shot("frontpanel-virtual"))
    assert await page.get_attribute("#fp-run", "data-healthy") == "true"
    assert page.errors == [], page.errors


async def test_a_stalled_loop_stops_the_virtual_heartbeat(page: Any, stack: WebStack) -> None:
    await until_js(page, "window.fpSeen.run.length >= 1")
    await asyncio.sleep(1.0)
    stalled_at = time.time()
    time.sleep(2.0)  # a blocking call in the service's loop: no beat, no frame
    resumed_at = time.time()
    await until_js(page, f"window.fpSeen.run.some((t) => t > {resumed_at})", 10)
    lit = await seen(page)
    for name in ("run", "tx"):
        during = [t for t in lit[name] if stalled_at + 0.3 < t < resumed_at]
        assert during == [], (name, during)
    assert any(t < stalled_at for t in lit["run"])


async def test_reset_restarts_the_web_server_while_measuring(page: Any, stack: WebStack) -> None:
    service = stack.service
    assert service is not None
    master = stack.parts.master
    old_web = stack.web
    superframes = master.superframes
    await page.click("#fp-reset")  # not logged in: asks for the login first
    await page.fill("#login-password", ADMIN_PASSWORD)
    await page.click("#login-submit")
    await until_js(page, "document.querySelector('#login-button').textContent === 'Log out'")
    await page.click("#fp-reset")
    await until_js(page, "document.querySelector('#fp-status').textContent.includes('restarting')")
    await stack.until(lambda: service.web_restarts == 1, 10, "the web server restarted")
    assert stack.web is not None and stack.web is not old_web
    restarted_at = time.time()
    # The page reconnects by itself and the panel goes on beating; the bus never stopped.
    await until_js(page, f"window.fpSeen.run.filter((t) => t > {restarted_at}).length >= 2", 20)
    await until_js(page, "document.body.dataset.link === 'live'")
    assert master.superframes > superframes
    assert stack.parts.master is master
    assert all(g.board.online for g in stack.parts.state.snapshot().groups)
    frontpanel = await page.evaluate("window.smartpdu.view.frontpanel")
    assert frontpanel["resets"] == 1 and frontpanel["source"] == "virtual"
    assert page.errors == [], page.errors
