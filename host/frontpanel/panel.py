"""The front panel of R13: a RUN LED that flashes a heartbeat while the service is healthy,
a DATA TX LED lit while the web server sends, a RESET button that restarts the web server.

On a Pi they are GPIO lines (``host.frontpanel.gpio``); without them (a PC, the virtual
PDU, ``[frontpanel] enabled = false``) the same state is shown on the web UI's virtual
front panel (``view()``, in the live view) and RESET is a button there.

The heartbeat is a coroutine in the service's own loop: when the loop stalls it stops, and
so do the systemd watchdog pings it sends (``WATCHDOG=1`` only after a healthy check, see
``host.frontpanel.health``), so systemd restarts a stuck service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from host.config import FrontPanelConfig
from host.frontpanel.gpio import GpioLines, RequestLines
from host.frontpanel.health import Health
from host.sdnotify import SystemdNotifier

_LOG = logging.getLogger(__name__)
RESET_DELAY_S = 0.2  # the answer to the web UI's RESET goes out before its server stops
FLASH_S = 0.15  # RUN is lit this long per heartbeat


class FrontPanel:
    """RUN, DATA TX and RESET, on GPIO or virtual; ``await run()`` is the heartbeat."""

    def __init__(
        self,
        config: FrontPanelConfig,
        health: Health,
        *,
        notifier: SystemdNotifier | None = None,
    ) -> None:
        self.config = config
        self.health = health
        self.notifier = notifier if notifier is not None else SystemdNotifier()
        self.gpio: GpioLines | None = None
        self.on_reset: Callable[[], Awaitable[None]] | None = None
        self.healthy = True
        self.problem = ""
        self.run_on = False
        self.tx_on = False
        self.beats = 0
        self.tx_count = 0
        self.pings = 0
        self.resets = 0
        self.version = 0  # moves with each heartbeat and health change (the live view polls)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tx_off_at = 0.0
        self._tx_timer: asyncio.TimerHandle | None = None
        self._run_timer: asyncio.TimerHandle | None = None
        self._reset_task: asyncio.Task[None] | None = None

    @property
    def virtual(self) -> bool:
        return self.gpio is None

    def start(self, *, request_lines: RequestLines | None = None) -> None:
        """Take the GPIO lines if this machine has them (else the panel is virtual)."""
        self._loop = asyncio.get_running_loop()
        self.gpio = GpioLines.open(
            self.config, request_lines=request_lines, on_press=self._button_pressed
        )
        if self.gpio is not None:
            self.gpio.start(self._loop)

    def _button_pressed(self) -> None:
        self.request_reset("button")

    def close(self) -> None:
        for timer in (self._tx_timer, self._run_timer):
            if timer is not None:
                timer.cancel()
        if self.gpio is not None:
            self.gpio.close()
            self.gpio = None

    # -- DATA TX -----------------------------------------------------------------------------

    def data_sent(self) -> None:
        """The web server sent something (a response, a live frame): pulse DATA TX."""
        self.tx_count += 1
        loop = self._loop
        if loop is None:
            return
        self._tx_off_at = loop.time() + self.config.tx_pulse_ms / 1000
        if not self.tx_on:
            self.tx_on = True
            if self.gpio is not None:
                self.gpio.set_tx(True)
        if self._tx_timer is None:
            self._tx_timer = loop.call_at(self._tx_off_at, self._tx_check)

    def _tx_check(self) -> None:
        assert self._loop is not None
        if self._loop.time() < self._tx_off_at:  # sent again meanwhile: stay lit
            self._tx_timer = self._loop.call_at(self._tx_off_at, self._tx_check)
            return
        self._tx_timer = None
        self.tx_on = False
        if self.gpio is not None:
            self.gpio.set_tx(False)

    # -- RESET -------------------------------------------------------------------------------

    def request_reset(self, source: str) -> bool:
        """RESET pressed (``source``: "button" or "web"): restart the web server soon; False
        when a restart is already under way (a second press is not a second restart)."""
        if self._reset_task is not None and not self._reset_task.done():
            return False
        if self.on_reset is None:
            _LOG.warning("front panel: RESET (%s) with no web server to restart", source)
            return False
        self.resets += 1
        _LOG.warning("front panel: RESET (%s): restarting the web server", source)
        self._reset_task = asyncio.get_running_loop().create_task(
            self._reset(self.on_reset), name="frontpanel-reset"
        )
        return True

    async def _reset(self, restart: Callable[[], Awaitable[None]]) -> None:
        await asyncio.sleep(RESET_DELAY_S)
        try:
            await restart()
        except Exception:
            _LOG.exception("front panel: restarting the web server failed")

    async def wait_reset(self) -> None:
        """Until the restart under way (if any) has ended (tests, shutdown)."""
        task = self._reset_task
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)

    # -- RUN and the watchdog ------------------------------------------------------------------

    async def run(self) -> None:
        """Forever: check the health; while healthy flash RUN once per ``heartbeat_s`` and
        ping systemd's watchdog every half ``WatchdogSec``."""
        loop = asyncio.get_running_loop()
        period = self.config.heartbeat_s
        ping_every = self.notifier.watchdog_interval_s
        step = period if ping_every is None else min(period, ping_every)
        next_beat = loop.time()
        last_ping = float("-inf")
        try:
            while True:
                now = loop.time()
                self._set_health(self.health.check(now))
                if self.healthy:
                    if now >= next_beat:
                        self._beat(loop, min(FLASH_S, period / 3))
                        next_beat = now + period
                    if ping_every is not None and now - last_ping >= ping_every:
                        if self.notifier.watchdog():
                            self.pings += 1
                        last_ping = now
                delay = step  # unhealthy: look again in a while
                if self.healthy:  # sleep until the next beat or ping is due
                    due = (
                        next_beat if ping_every is None else min(next_beat, last_ping + ping_every)
                    )
                    delay = min(step, max(0.01, due - loop.time()))
                await asyncio.sleep(delay)
        finally:
            self._set_run(False)

    def _beat(self, loop: asyncio.AbstractEventLoop, flash_s: float) -> None:
        self.beats += 1
        self.version += 1
        self._set_run(True)
        if self._run_timer is not None:
            self._run_timer.cancel()
        self._run_timer = loop.call_later(flash_s, self._set_run, False)

    def _set_run(self, on: bool) -> None:
        self.run_on = on
        if self.gpio is not None:
            self.gpio.set_run(on)

    def _set_health(self, problem: str) -> None:
        if problem == self.problem:
            return
        if problem:
            _LOG.error("unhealthy, no heartbeat and no watchdog ping: %s", problem)
            self.notifier.status(f"unhealthy: {problem}")
        else:
            _LOG.info("healthy again: heartbeat and watchdog pings resume")
            self.notifier.status("running")
        self.problem = problem
        self.healthy = not problem
        self.version += 1
        if problem:
            self._set_run(False)

    # -- the web UI --------------------------------------------------------------------------

    def view(self) -> dict[str, Any]:
        """The virtual front panel in the live view (``frontpanel``) and the API."""
        return {
            "source": "virtual" if self.virtual else "gpio",
            "healthy": self.healthy,
            "problem": self.problem,
            "beats": self.beats,
            "heartbeat_s": self.config.heartbeat_s,
            "tx": self.tx_count,
            "resets": self.resets,
        }
