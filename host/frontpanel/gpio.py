"""The front panel's GPIO lines through libgpiod (the ``gpiod`` package, v2 API): the RUN
and DATA TX LEDs as outputs, the RESET button as an input with edge events, all in one line
request on one chip. The request's file descriptor is watched by the asyncio loop
(``add_reader``), so a press costs nothing while nobody presses.

RESET is debounced twice: the kernel's debounce where the chip offers it
(``LineSettings.debounce_period``) and here: an edge only (re)arms a timer, and the button
counts as pressed when, ``debounce_ms`` after the last edge, the line still reads active.
Holding it down is one press; it must be released before the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any, Protocol

from host.config import FrontPanelConfig

_LOG = logging.getLogger(__name__)
CONSUMER = "smartpdu"


class LineRequestLike(Protocol):
    """What is used of ``gpiod.LineRequest`` (a test's fake has the same surface)."""

    @property
    def fd(self) -> int: ...
    def set_value(self, line: int, value: Any) -> None: ...
    def get_value(self, line: int) -> Any: ...
    def read_edge_events(self, max_events: int | None = None) -> Iterable[Any]: ...
    def release(self) -> None: ...


RequestLines = Callable[..., LineRequestLike]


def _default_request_lines() -> RequestLines | None:
    try:
        import gpiod
    except ImportError:
        return None
    return gpiod.request_lines


class GpioLines:
    """The three lines, requested; ``on_press`` is called (in the loop) for each press."""

    def __init__(
        self,
        config: FrontPanelConfig,
        request: LineRequestLike,
        *,
        on_press: Callable[[], None] | None = None,
    ) -> None:
        from gpiod.line import Value

        self.config = config
        self.request = request
        self.on_press = on_press
        self.presses = 0
        self._active = Value.ACTIVE
        self._inactive = Value.INACTIVE
        self._loop: asyncio.AbstractEventLoop | None = None
        self._debounce: asyncio.TimerHandle | None = None
        self._held = False

    @classmethod
    def open(
        cls,
        config: FrontPanelConfig,
        *,
        request_lines: RequestLines | None = None,
        on_press: Callable[[], None] | None = None,
    ) -> GpioLines | None:
        """The lines of ``config``, or None (logged) when this machine has none to give:
        disabled, no ``gpiod`` package, no chip, lines taken by another program."""
        if not config.enabled:
            _LOG.info("front panel: GPIO off ([frontpanel] enabled = false); shown in the web UI")
            return None
        request_lines = request_lines or _default_request_lines()
        if request_lines is None:
            _LOG.info("front panel: no gpiod package; RUN/DATA TX/RESET shown in the web UI")
            return None
        if not os.path.exists(config.chip):
            _LOG.info("front panel: no %s; RUN/DATA TX/RESET shown in the web UI", config.chip)
            return None
        try:
            request = request_lines(config.chip, consumer=CONSUMER, config=line_settings(config))
        except Exception as exc:  # whatever libgpiod raises: the LEDs never stop the service
            _LOG.warning(
                "front panel: cannot request lines %d, %d, %d of %s: %s (check "
                "[frontpanel] and that the service's user is in the gpio group); shown in "
                "the web UI instead",
                config.run_line, config.tx_line, config.reset_line, config.chip, exc,
            )  # fmt: skip
            return None
        _LOG.info(
            "front panel on %s: RUN line %d, DATA TX line %d, RESET line %d",
            config.chip, config.run_line, config.tx_line, config.reset_line,
        )  # fmt: skip
        return cls(config, request, on_press=on_press)

    # -- outputs ---------------------------------------------------------------------------

    def set_run(self, on: bool) -> None:
        self._set(self.config.run_line, on)

    def set_tx(self, on: bool) -> None:
        self._set(self.config.tx_line, on)

    def _set(self, line: int, on: bool) -> None:
        try:
            self.request.set_value(line, self._active if on else self._inactive)
        except OSError as exc:  # an LED must never take the service down
            _LOG.debug("front panel line %d: %s", line, exc)

    # -- the button ------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_reader(self.request.fd, self._readable)

    def _readable(self) -> None:
        try:
            events = list(self.request.read_edge_events())
        except OSError as exc:
            _LOG.debug("front panel RESET events: %s", exc)
            return
        if events and self._loop is not None:
            if self._debounce is not None:
                self._debounce.cancel()
            self._debounce = self._loop.call_later(self.config.debounce_ms / 1000, self._settled)

    def _settled(self) -> None:
        self._debounce = None
        try:
            pressed = self.request.get_value(self.config.reset_line) == self._active
        except OSError:
            return
        if pressed and not self._held:
            self.presses += 1
            _LOG.warning("front panel: RESET pressed")
            if self.on_press is not None:
                self.on_press()
        self._held = pressed

    def close(self) -> None:
        if self._debounce is not None:
            self._debounce.cancel()
        if self._loop is not None:
            self._loop.remove_reader(self.request.fd)
            self._loop = None
        self.set_run(False)
        self.set_tx(False)
        with contextlib.suppress(OSError):
            self.request.release()


def line_settings(config: FrontPanelConfig) -> dict[int, Any]:
    """``request_lines``'s config: two outputs (off), one input with both edges."""
    from gpiod import LineSettings
    from gpiod.line import Bias, Direction, Edge, Value

    def output(active_low: bool) -> LineSettings:
        return LineSettings(
            direction=Direction.OUTPUT, active_low=active_low, output_value=Value.INACTIVE
        )

    return {
        config.run_line: output(config.run_active_low),
        config.tx_line: output(config.tx_active_low),
        config.reset_line: LineSettings(
            direction=Direction.INPUT,
            edge_detection=Edge.BOTH,
            bias=Bias.PULL_UP if config.reset_active_low else Bias.PULL_DOWN,
            active_low=config.reset_active_low,
            debounce_period=timedelta(milliseconds=config.debounce_ms),
        ),
    }
