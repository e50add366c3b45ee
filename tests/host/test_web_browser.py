"""The web interface in a real browser (Debian's chromium driven by Playwright) against a
running virtual smartPDU: group boards running the real firmware on the virtual RS-485 bus,
the mains status node, the simulated Modbus meter and the aggregator ``Service``.

One virtual PDU and one browser are shared by the module (the boards take a while to boot
and the machine has two cores). Screenshots of panes A-D go to ``test-artifacts/web/``.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from host.domain import rotation_phase
from tests.host.webstack import ADMIN_PASSWORD, WebStack
from tests.requirements import require_module, requires

playwright_api = require_module("playwright.async_api")

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
XSS = "<img src=x onerror=alert(1)>"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.asyncio(loop_scope="module"),
    requires(CHROMIUM.exists(), "Debian chromium is not installed"),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[WebStack]:
    # Group C has no virtual front panel in the UI: to the aggregator it is a real board.
    async with WebStack(
        tmp_path_factory.mktemp("vpdu"), supervision_dwell_s=1.0, panel_groups="AB"
    ) as running:
        await running.until(
            lambda: all(g.board.online for g in running.parts.state.snapshot().groups),
            20,
            "every group board online",
        )
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield chromium
        await chromium.close()


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Any, stack: WebStack) -> AsyncIterator[Any]:
    # bypass_csp: Playwright's wait_for_function evaluates strings, which the page's CSP
    # forbids. It also makes the XSS test stricter: no CSP to stop an injected handler.
    context = await browser.new_context(viewport={"width": 1400, "height": 1000}, bypass_csp=True)
    page = await context.new_page()
    page.set_default_timeout(15_000)
    page.dialogs = []  # type: ignore[attr-defined]
    page.errors = []  # type: ignore[attr-defined]
    page.on(
        "dialog", lambda d: (page.dialogs.append(d.message), asyncio.ensure_future(d.dismiss()))
    )
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    await open_ui(page, stack.url)
    yield page
    assert page.errors == [], page.errors
    await context.close()


async def open_ui(page: Any, url: str) -> None:
    await page.goto(url)
    await page.wait_for_function("document.body.dataset.link === 'live'")


def shot(name: str) -> str:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return str(ARTIFACTS / f"{name}.png")


async def login(page: Any) -> None:
    await page.click("#login-button")
    await page.fill("#login-password", ADMIN_PASSWORD)
    await page.click("#login-submit")
    await page.wait_for_function(
        "document.querySelector('#login-button').textContent === 'Log out'"
    )


async def unstick(page: Any) -> None:
    """The sticky bars would cover the top of a pane in its screenshot."""
    await page.add_style_tag(
        content="#topbar, #alarm-banner, #no-data { position: static !important; }"
    )


def amps_shown(text: str) -> float:
    match = re.search(r"[0-9]+(?:\.[0-9]+)?", text)
    assert match, text
    return float(match.group())


async def until_async(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if await predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: {what}")
        await asyncio.sleep(0.1)


def diagnose(stack: WebStack, cid: str) -> str:
    snapshot = stack.parts.state.snapshot()
    channel = snapshot.channel(cid)
    group = next(g for g in snapshot.groups if g.letter == cid[0])
    board = stack.boards[cid[0]]
    return (
        f"{channel}\nboard {group.board}\nlog {board.log[-5:]}\n"
        f"events {[e.message for e in snapshot.recent_events[-8:]]}"
    )


# ----------------------------------------------------------------------------- tests


async def test_pane_d_shows_the_simulated_loads(page: Any, stack: WebStack) -> None:
    loads = {("A", 1): 5.0, ("A", 10): 15.5, ("B", 5): 12.0, ("C", 7): 0.75, ("C", 12): 2.4}
    for (group, channel), amps in loads.items():
        await stack.set_channel(group, channel, amps)

    async def all_match() -> bool:
        for (group, channel), amps in loads.items():
            text = await page.text_content(f'[data-ch="{group}{channel}"] .amps')
            if abs(amps_shown(text or "") - amps) > max(0.05, 0.01 * amps):
                return False
        return True

    await until_async(all_match, 15, "pane D shows every simulated load within 1 % / 0.05 A")
    for (group, channel), amps in loads.items():
        text = await page.text_content(f'[data-ch="{group}{channel}"] .amps')
        shown = amps_shown(text or "")
        assert abs(shown - amps) <= max(0.05, 0.01 * amps), (group, channel, shown, amps)
    idle = await page.text_content('[data-ch="B1"] .amps')
    assert amps_shown(idle or "") <= 0.05
    assert await page.get_attribute('[data-ch="B5"]', "data-state") == "ok"

    # Pane A: the main meter's phase currents agree with the same loads.
    expected = {"L1": 0.0, "L2": 0.0, "L3": 0.0}
    for (_group, channel), amps in loads.items():
        expected[rotation_phase(channel)] += amps

    seen: list[str] = []

    async def pane_a_matches() -> bool:
        values = (
            await page.locator("#units .unit-row").first.locator(".u-phase .v").all_text_contents()
        )
        seen[:] = values
        if len(values) != 4 or "—" in values[:3]:
            return False
        got = [float(v) for v in values[:3]]
        return all(
            abs(g - e) <= max(0.15, 0.01 * e) for g, e in zip(got, expected.values(), strict=True)
        )

    try:
        await until_async(pane_a_matches, 20, "pane A shows the meter's L1/L2/L3")
    except AssertionError:
        raise AssertionError(f"pane A shows {seen}, expected {expected}") from None
    await page.wait_for_timeout(300)
    await unstick(page)
    for pane in "abcd":
        await page.locator(f"#pane-{pane}").screenshot(path=shot(f"pane-{pane}"))
    await page.screenshot(path=shot("main-window"), full_page=True)


async def test_a_write_without_login_is_refused(page: Any, stack: WebStack) -> None:
    unit = stack.parts.state.unit_id
    response = await page.request.put(
        f"{stack.url}api/v1/units/{unit}/name", data={"name": "hijacked"}
    )
    assert response.status in (401, 403)
    response = await page.request.put(
        f"{stack.url}api/v1/units/{unit}/channels/A1/supervision", data={"min_a": 0, "max_a": 1}
    )
    assert response.status in (401, 403)
    # Through the page: the pen pop-up asks for the login instead of saving.
    await page.click('[data-ch="A1"] button[data-action="label"]')
    await page.fill("#name-input", "not saved")
    await page.click("#name-submit")
    await page.wait_for_selector("#dlg-login[open]")
    await page.click("#dlg-login [data-close]")
    await page.wait_for_selector("#dlg-name #name-error:not(:empty)")
    assert stack.parts.state.name == ""
    assert stack.parts.state.snapshot().channel("A1").label == ""


async def test_a_script_in_a_label_is_shown_as_text(page: Any, stack: WebStack) -> None:
    await login(page)
    await page.click('[data-ch="A2"] button[data-action="label"]')
    await page.fill("#name-input", XSS)
    await page.click("#name-submit")
    await page.wait_for_selector("#dlg-name", state="hidden")
    label = page.locator('[data-ch="A2"] .ch-label')
    await page.wait_for_function(
        "t => document.querySelector('[data-ch=\"A2\"] .ch-label').textContent === t", arg=XSS
    )
    assert await label.text_content() == XSS
    assert await page.locator("img").count() == 0  # nowhere: tile, event log, dialogs
    # The event log refreshes with the new label in a message: text there too.
    await page.wait_for_function(
        "t => document.querySelector('#event-table').textContent.includes(t)",
        arg=XSS,
        timeout=15_000,
    )
    await page.wait_for_timeout(500)
    assert await page.locator("img").count() == 0
    assert page.dialogs == []  # type: ignore[attr-defined]


async def test_names_survive_an_aggregator_restart(page: Any, stack: WebStack) -> None:
    await login(page)
    assert await page.text_content("#unit-name") == "smartPDU 1"  # numbered by default
    await page.click("#rename-unit")
    await page.fill("#name-input", "Stage left PDU")
    await page.click("#name-submit")
    await page.wait_for_function(
        "document.querySelector('#unit-name').textContent === 'Stage left PDU'"
    )
    await page.click('[data-ch="B5"] button[data-action="label"]')
    await page.fill("#name-input", "Moving lights")
    await page.click("#name-submit")
    await page.wait_for_function(
        "document.querySelector('[data-ch=\"B5\"] .ch-label').textContent === 'Moving lights'"
    )
    rows = await page.locator("#units .u-name").all_text_contents()
    assert rows == ["Stage left PDU"]

    await stack.stop_service()
    # The page no longer shows anything as live.
    await page.wait_for_function("document.body.dataset.link === 'offline'")
    assert await page.is_visible("#no-data")
    await stack.start_service()
    await stack.until(
        lambda: all(g.board.online for g in stack.parts.state.snapshot().groups),
        30,
        "every group board back online after the restart",
    )
    await open_ui(page, stack.url)
    await page.wait_for_function(
        "document.querySelector('#unit-name').textContent === 'Stage left PDU'"
    )
    assert await page.text_content('[data-ch="B5"] .ch-label') == "Moving lights"
    assert (await page.locator("#units .u-name").all_text_contents()) == ["Stage left PDU"]


async def test_supervision_raises_and_clears_the_triangle(page: Any, stack: WebStack) -> None:
    await stack.set_channel("C", 4, 5.0)
    await login(page)
    triangle = page.locator("#units .unit-row .triangle")
    assert await triangle.count() == 0
    await page.click('[data-ch="C4"] button[data-action="supervision"]')
    await page.fill("#sup-min", "1")
    await page.fill("#sup-max", "8")
    await page.click("#sup-submit")
    await page.wait_for_selector("#dlg-supervision", state="hidden")
    await page.wait_for_function("document.querySelector('[data-ch=\"C4\"]').dataset.sup === 'on'")
    settings = stack.parts.state.supervision_of("C4")
    assert (settings.enabled, settings.min_a, settings.max_a) == (True, 1.0, 8.0)
    await page.wait_for_timeout(1500)  # longer than the dwell: still inside, no triangle
    assert await triangle.count() == 0

    await stack.set_channel("C", 4, 12.0)  # above the maximum
    try:
        await triangle.wait_for(state="visible", timeout=15_000)
    except Exception:
        raise AssertionError(diagnose(stack, "C4")) from None
    assert await page.get_attribute('[data-ch="C4"]', "data-sup") == "warning"
    await page.locator("#pane-a").screenshot(path=shot("pane-a-warning"))
    await page.locator('[data-ch="C4"]').screenshot(path=shot("channel-supervision-warning"))

    await stack.set_channel("C", 4, 5.0)  # back inside
    await triangle.wait_for(state="detached", timeout=15_000)
    assert await page.get_attribute('[data-ch="C4"]', "data-sup") == "on"


async def test_overload_colours_and_flash_rates(page: Any, stack: WebStack) -> None:
    await stack.set_channel("A", 3, 18.0)  # 112 %: slight overload (may-trip zone)
    await stack.set_channel("A", 6, 30.0)  # 188 %: serious once past the curve's tmin
    await page.wait_for_selector('[data-ch="A3"][data-state="slight"]', timeout=30_000)
    await page.wait_for_selector('[data-ch="A6"][data-state="serious"]', timeout=30_000)
    b5 = stack.parts.state.snapshot().channel("B5")
    assert b5.state.value == "ok", b5
    await page.wait_for_selector('[data-ch="B5"][data-state="ok"]')

    async def led_style(cid: str) -> dict[str, str]:
        return await page.eval_on_selector(
            f'[data-ch="{cid}"] .btn-led',
            "e => { const s = getComputedStyle(e); return {name: s.animationName,"
            " duration: s.animationDuration, timing: s.animationTimingFunction,"
            " iterations: s.animationIterationCount, bg: s.backgroundColor}; }",
        )

    slight, serious, ok = await led_style("A3"), await led_style("A6"), await led_style("B5")
    assert (slight["name"], slight["duration"], slight["iterations"]) == ("flash", "1s", "infinite")
    assert (serious["name"], serious["duration"]) == ("flash", "0.25s")
    assert ok["name"] == "none" and ok["bg"] == "rgb(25, 194, 107)"  # steady green

    # Sample the colours: both alarms alternate red and dark; the slow one about 1 Hz.
    samples: dict[str, list[str]] = {"A3": [], "A6": []}
    started = time.monotonic()
    while time.monotonic() - started < 2.0:
        for cid in samples:
            samples[cid].append((await led_style(cid))["bg"])
        await page.wait_for_timeout(40)
    red = "rgb(255, 45, 45)"
    for cid, colours in samples.items():
        assert red in colours and any(c != red for c in colours), (cid, colours)
    changes = {cid: sum(a != b for a, b in itertools.pairwise(c)) for cid, c in samples.items()}
    assert changes["A6"] > changes["A3"] >= 2  # rapid flashes more often than slow

    tile_text = await page.text_content('[data-ch="A6"] .ttt')
    assert tile_text and ("trip" in tile_text)  # time to trip for the overloaded channel
    await page.wait_for_selector("#alarm-banner:not([hidden])")
    await unstick(page)
    await page.locator("#pane-d").screenshot(path=shot("pane-d-overload"))
    await page.screenshot(path=shot("main-window-alarm"))
    # The virtual front panel of group A shows the board's own red flashing too.
    reds = set()
    for _ in range(20):
        reds.add(
            await page.get_attribute('.vpanel[data-group="A"] .vbtn[data-button="6"]', "data-led")
        )
        await page.wait_for_timeout(60)
    assert "#a00000" in reds and len(reds) >= 2

    # The load collapsing during an overload is read as the RCBO tripping: steady dim red.
    for channel in (3, 6):
        await stack.set_channel("A", channel, 0.0)
    await page.wait_for_selector('[data-ch="A6"][data-state="tripped"]', timeout=30_000)
    tripped = await led_style("A6")
    assert tripped["name"] == "none" and tripped["bg"] == "rgb(122, 26, 26)"
    assert await page.text_content('[data-ch="A6"] .ttt') == "TRIPPED"
    # Breaker reset, load back on and off again: the channel is quiet for the next tests.
    for channel in (3, 6):
        await stack.set_channel("A", channel, 1.0)
    await page.wait_for_selector('[data-ch="A6"][data-state="ok"]', timeout=30_000)
    for channel in (3, 6):
        await stack.set_channel("A", channel, 0.0)
    await page.wait_for_selector('[data-ch="A6"][data-state="off"]', timeout=30_000)


async def test_a_main_breaker_trip_shows_its_cause_and_black_box(
    page: Any, stack: WebStack
) -> None:
    mains = stack.mains
    assert mains is not None
    await page.wait_for_selector("#breaker-position.closed", timeout=15_000)
    # The Emergency Stop is pressed; the MCCB's alarm contact closes; the handle drops.
    await mains.set_input("estop", True)
    await asyncio.sleep(0.1)
    await mains.set_input("alarm", True)
    await mains.set_input("breaker", False)
    badge = page.locator("#units .unit-row .badge.tripped")
    await badge.wait_for(state="visible", timeout=15_000)
    await page.wait_for_selector("#breaker-position.tripped")
    cause = await page.text_content("#breaker-trip .cause") or ""
    assert "Emergency Stop" in cause
    banner = await page.text_content("#alarm-banner") or ""
    assert "MAIN BREAKER TRIPPED" in banner or "Emergency Stop" in banner
    await unstick(page)
    await page.locator("#breaker-card").screenshot(path=shot("pane-c-trip"))
    await page.locator("#pane-a").screenshot(path=shot("pane-a-tripped"))

    # The trip's black box from the event log: what every output did before it.
    button = page.locator('#event-table tr[data-kind="breaker.tripped"] button')
    await button.first.wait_for(state="visible", timeout=15_000)
    await button.first.click()
    await page.wait_for_selector(
        "#dlg-blackbox[open] #bb-body svg polyline", state="attached", timeout=10_000
    )
    await page.locator("#dlg-blackbox").screenshot(path=shot("black-box"))
    await page.click("#dlg-blackbox [data-close]")

    await mains.set_input("estop", False)
    await mains.set_input("alarm", False)
    await mains.set_input("breaker", True)
    await badge.wait_for(state="detached", timeout=15_000)
    await page.wait_for_selector("#breaker-position.closed")
    # The last trip and its cause stay visible after the breaker is closed again.
    assert "Emergency Stop" in (await page.text_content("#breaker-trip .cause") or "")


async def test_virtual_panel_press_turns_the_button_blue(page: Any, stack: WebStack) -> None:
    await stack.set_channel("B", 5, 12.0)
    await login(page)
    button = '.vpanel[data-group="B"] .vbtn[data-button="5"]'
    await page.click(button)
    await page.wait_for_function(
        "s => document.querySelector(s).dataset.led === '#0000a0'", arg=button, timeout=10_000
    )
    await page.wait_for_selector('[data-ch="B5"][data-selected="true"]')
    assert (await page.text_content('.group[data-group="B"] .g-shows') or "").strip() == "B5"
    led = await page.eval_on_selector(
        '[data-ch="B5"] .btn-led', "e => getComputedStyle(e).backgroundColor"
    )
    assert led == "rgb(47, 125, 255)"  # blue, like the button on the board
    await page.wait_for_function(
        "document.querySelector('.vpanel[data-group=\"B\"] .seg7').textContent.trim() === '12.0'"
    )
    await page.locator("#vpanels").screenshot(path=shot("virtual-front-panels"))
    await page.click(button)  # pressed again: deselected
    await page.wait_for_selector('[data-ch="B5"][data-selected="false"]', timeout=10_000)


async def test_button_pressed_on_a_real_board_shows_selected(page: Any, stack: WebStack) -> None:
    # Someone presses monitor button 7 on group C's board (no virtual panel in the UI: the
    # page knows it only from the board's REPORTs on the bus).
    assert await page.query_selector('.vpanel[data-group="C"]') is None
    await stack.set_channel("C", 7, 3.5)
    board = stack.boards["C"]
    tile = '[data-ch="C7"][data-selected="true"]'
    shows = '.group[data-group="C"] .g-shows'
    latencies = []
    for _ in range(3):
        t0 = time.monotonic()
        await board.press(7)
        await page.wait_for_selector(tile, timeout=10_000)
        latencies.append(time.monotonic() - t0)
        assert (await page.text_content(shows) or "").strip() == "C7"
        led = await page.eval_on_selector(
            '[data-ch="C7"] .btn-led', "e => getComputedStyle(e).backgroundColor"
        )
        assert led == "rgb(47, 125, 255)"  # blue, like the button on the board
        await asyncio.sleep(0.3)  # released (a click holds 120 ms)
        await board.press(7)  # pressed again: deselected, the display back to its idle text
        await page.wait_for_selector('[data-ch="C7"][data-selected="false"]', timeout=10_000)
        assert (await page.text_content(shows) or "").strip() == "—"
        await asyncio.sleep(0.3)
    # Button 2, then 9: the selection moves (one blue button per group).
    await board.press(2)
    await page.wait_for_selector('[data-ch="C2"][data-selected="true"]', timeout=10_000)
    await asyncio.sleep(0.3)
    await board.press(9)
    await page.wait_for_selector('[data-ch="C9"][data-selected="true"]', timeout=10_000)
    await page.wait_for_selector('[data-ch="C2"][data-selected="false"]', timeout=10_000)
    assert (await page.text_content(shows) or "").strip() == "C9"
    assert await page.query_selector_all('[data-group="C"] .ch[data-selected="true"]')
    assert len(await page.query_selector_all('.ch[data-selected="true"]')) == 1
    await page.locator('.group[data-group="C"]').screenshot(path=shot("selected-real-board"))
    print("press -> page, s:", [round(x, 3) for x in latencies])
    assert max(latencies) < 1.5  # shared two-core machine; ~0.1-0.2 s when quiet
    await asyncio.sleep(0.3)
    await board.press(9)
    await page.wait_for_selector('[data-ch="C9"][data-selected="false"]', timeout=10_000)


async def test_phone_layout(browser: Any, stack: WebStack) -> None:
    context = await browser.new_context(
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        bypass_csp=True,
    )
    phone = await context.new_page()
    await open_ui(phone, stack.url)
    width = await phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390  # nothing wider than the phone
    size = await phone.eval_on_selector(
        '[data-ch="B5"] .ch-current', "e => parseFloat(getComputedStyle(e).fontSize)"
    )
    assert size >= 24  # readable from a distance
    # Pane A's figures fit their boxes, also when a phase carries a three-digit current.
    await phone.wait_for_selector("#units .u-phase .v")
    assert await clipped_figures(phone) == []
    await phone.evaluate(
        "() => document.querySelectorAll('#units .u-phase .v').forEach("
        "v => { v.textContent = '999.9'; v.classList.add('long'); })"
    )
    assert await clipped_figures(phone) == []
    await phone.screenshot(path=shot("phone"), full_page=False)
    await context.close()


async def clipped_figures(page: Any) -> list[str]:
    return await page.evaluate(
        "() => [...document.querySelectorAll('#units .u-phase')]"
        ".filter(box => box.scrollWidth > box.clientWidth)"
        ".map(box => box.textContent + ' ' + box.scrollWidth + '>' + box.clientWidth)"
    )


async def test_black_box_chart_under_the_pages_own_csp(browser: Any, stack: WebStack) -> None:
    # No bypass_csp here: the page runs under the policy it ships with, and every refused
    # style or script shows as a console error.
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    await page.goto(stack.url)
    await page.wait_for_selector('body[data-link="live"]', timeout=15_000)
    await stack.set_channel("A", 2, 3.0)
    await stack.set_channel("A", 4, 5.0)
    mains = stack.mains
    assert mains is not None
    await page.wait_for_selector("#breaker-position.closed", timeout=15_000)
    # A trip (the MCCB's alarm contact closes, then the handle drops) records a black box.
    await mains.set_input("alarm", True)
    await mains.set_input("breaker", False)
    button = page.locator('#event-table tr[data-kind="breaker.tripped"] button')
    await button.first.wait_for(state="visible", timeout=15_000)
    await button.first.click()
    await page.wait_for_selector("#dlg-blackbox[open] #bb-body svg polyline", state="attached")
    strokes = await page.evaluate(
        "() => [...document.querySelectorAll('#bb-body .chart')].map(chart => "
        "[...new Set([...chart.querySelectorAll('polyline')]"
        ".map(line => getComputedStyle(line).stroke))])"
    )
    legends = await page.evaluate(
        "() => [...document.querySelectorAll('#bb-body .legend')]"
        ".map(legend => legend.querySelectorAll('span').length)"
    )
    ticks = await page.evaluate(
        "() => [...document.querySelectorAll('#bb-body svg text')].map(t => t.textContent)"
    )
    await page.click("#dlg-blackbox [data-close]")
    await mains.set_input("alarm", False)
    await mains.set_input("breaker", True)
    await page.wait_for_selector("#breaker-position.closed", timeout=15_000)
    await stack.set_channel("A", 2, 0.0)
    await stack.set_channel("A", 4, 0.0)
    await context.close()
    # Each chart draws as many colours as its legend lists series (a group with one loaded
    # output has one; group A two; the meter L1, L2, L3, N).
    assert len(strokes) >= 2, strokes
    assert [len(colours) for colours in strokes] == legends, (strokes, legends)
    assert max(len(colours) for colours in strokes) >= 4, strokes
    # A 30 s window is labelled to the second, so it cannot read as hours:minutes.
    assert any(re.fullmatch(r"\d\d:\d\d:\d\d", tick) for tick in ticks), ticks
    assert [line for line in console if line.startswith("error")] == [], console
