"""The front panel inside the whole service (a virtual smartPDU: boards running the real
firmware on the virtual RS-485 bus, the simulated meter, the aggregator and its web server),
with the GPIO lines on the gpiod-level fake and systemd's NOTIFY_SOCKET owned by the test:

* READY=1 once it serves, WATCHDOG=1 pings and the RUN heartbeat while healthy, DATA TX on
  web responses, STOPPING=1 when it stops;
* RESET (the button) restarts the web server while the bus and the measurements go on;
* a stalled event loop, and then a stalled bus task, stop both the heartbeat and the pings.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from gpiod.line import Value

from host.config import ServiceConfig
from tests.host.test_frontpanel import FakeChip, NotifyListener
from tests.host.webstack import WebStack

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]
WATCHDOG_S = 0.4  # WatchdogSec: a ping every 0.2 s


class PanelStack(WebStack):
    """The web test stack with a GPIO front panel on the fake chip."""

    def __init__(self, workdir: Path, chip: FakeChip) -> None:
        super().__init__(workdir)
        self.chip = chip

    def config(self) -> Any:
        config: ServiceConfig = super().config()
        panel = dataclasses.replace(
            config.frontpanel, chip=self.chip.path, heartbeat_s=0.2, stall_after_s=2.0
        )
        return dataclasses.replace(config, frontpanel=panel)


@pytest.fixture(scope="module")
def monkeymodule() -> Any:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig(
    tmp_path_factory: pytest.TempPathFactory, monkeymodule: pytest.MonkeyPatch
) -> AsyncIterator[tuple[PanelStack, FakeChip, NotifyListener]]:
    workdir = tmp_path_factory.mktemp("frontpanel")
    device = workdir / "gpiochip9"
    device.touch()
    chip = FakeChip(str(device))
    listener = NotifyListener(str(workdir / "notify.sock"))
    monkeymodule.setattr("host.frontpanel.gpio._default_request_lines", lambda: chip.request_lines)
    monkeymodule.setenv("NOTIFY_SOCKET", listener.path)
    monkeymodule.setenv("WATCHDOG_USEC", str(int(WATCHDOG_S * 1e6)))
    monkeymodule.delenv("WATCHDOG_PID", raising=False)
    stack = PanelStack(workdir / "vpdu", chip)
    try:
        async with stack:
            await stack.until(
                lambda: all(g.board.online for g in stack.parts.state.snapshot().groups),
                30,
                "every group board online",
            )
            panel = stack.parts.frontpanel
            assert panel is not None
            await stack.until(lambda: panel.healthy, 10, "the service healthy")
            yield stack, chip, listener
    finally:
        listener.close()


def recent(times: list[float], since: float) -> list[float]:
    return [t for t in times if t > since]


async def test_ready_pings_heartbeat_and_data_tx(
    rig: tuple[PanelStack, FakeChip, NotifyListener],
) -> None:
    stack, chip, listener = rig
    assert listener.times("READY=1")
    panel = stack.parts.frontpanel
    assert panel is not None and not panel.virtual
    since = time.monotonic()
    async with aiohttp.ClientSession() as http, http.get(stack.url + "api/v1/frontpanel") as r:
        assert r.status == 200
        body = await r.json()
    await asyncio.sleep(1.0)
    assert body["source"] == "gpio" and body["healthy"] is True
    request = chip.request
    cfg = panel.config
    assert len(recent(request.times_set(cfg.run_line, Value.ACTIVE), since)) >= 3
    assert len(recent(listener.times("WATCHDOG=1"), since)) >= 3
    assert recent(request.times_set(cfg.tx_line, Value.ACTIVE), since)  # the response


async def test_reset_button_restarts_the_web_server_only(
    rig: tuple[PanelStack, FakeChip, NotifyListener],
) -> None:
    stack, chip, listener = rig
    service = stack.service
    assert service is not None
    panel = stack.parts.frontpanel
    assert panel is not None
    old_web = stack.web
    master = stack.parts.master
    before = master.superframes
    version = stack.parts.state.version
    since = time.monotonic()
    chip.request.drive(panel.config.reset_line, True)  # pressed with a ballpoint pen
    await stack.until(lambda: service.web_restarts == 1, 10, "the web server restarted")
    chip.request.drive(panel.config.reset_line, False)
    assert stack.web is not None and stack.web is not old_web
    async with aiohttp.ClientSession() as http, http.get(stack.url + "api/v1/frontpanel") as r:
        assert r.status == 200
        assert (await r.json())["resets"] == 1
    # The bus, the meter and the unit state went on through the restart.
    await stack.until(lambda: master.superframes > before + 5, 10, "bus cycles go on")
    await stack.until(lambda: stack.parts.state.version > version, 10, "measurements go on")
    assert all(g.board.online for g in stack.parts.state.snapshot().groups)
    assert service.parts is not None and service.parts.master is master
    assert panel.healthy and recent(listener.times("WATCHDOG=1"), since)


async def test_a_stalled_loop_stops_heartbeat_and_watchdog(
    rig: tuple[PanelStack, FakeChip, NotifyListener],
) -> None:
    stack, chip, listener = rig
    panel = stack.parts.frontpanel
    assert panel is not None
    await asyncio.sleep(0.5)
    stalled_at = time.monotonic()
    time.sleep(1.5)  # a blocking call in the service's loop
    resumed_at = time.monotonic()
    await asyncio.sleep(1.0)
    run = chip.request.times_set(panel.config.run_line, Value.ACTIVE)
    pings = listener.times("WATCHDOG=1")
    for times in (run, pings):
        assert any(stalled_at - 0.6 < t < stalled_at for t in times)
        assert not any(stalled_at + 0.05 < t < resumed_at - 0.05 for t in times)
        assert any(t > resumed_at for t in times)


async def test_a_stalled_bus_task_stops_heartbeat_and_watchdog(
    rig: tuple[PanelStack, FakeChip, NotifyListener], monkeymodule: pytest.MonkeyPatch
) -> None:
    stack, chip, listener = rig
    panel = stack.parts.frontpanel
    assert panel is not None
    master = stack.parts.master

    async def stuck() -> None:
        await asyncio.Event().wait()  # an await that never returns: the task lives, idle

    monkeymodule.setattr(master, "cycle", stuck)
    stuck_at = time.monotonic()
    await stack.until(lambda: not panel.healthy, 10, "the stall noticed")
    assert "bus-master made no progress" in panel.problem
    noticed = time.monotonic()
    assert noticed - stuck_at >= 1.5  # stall_after_s = 2 s
    await asyncio.sleep(1.0)
    cut = noticed + 0.1
    assert not recent(chip.request.times_set(panel.config.run_line, Value.ACTIVE), cut)
    assert not recent(listener.times("WATCHDOG=1"), cut)
    assert any("STATUS=unhealthy: bus-master" in text for _, text in listener.received)
    assert chip.request.values[panel.config.run_line] is Value.INACTIVE


async def test_stopping_is_notified(rig: tuple[PanelStack, FakeChip, NotifyListener]) -> None:
    stack, chip, listener = rig
    await stack.stop_service()
    await asyncio.sleep(0.2)
    assert listener.times("STOPPING=1")
    assert chip.request.released
