"""host.frontpanel with a gpiod-level fake: RUN heartbeat, DATA TX pulses, debounced RESET,
and the health that stops both the heartbeat and systemd's watchdog pings.

libgpiod's own test facility (gpio-sim, configured through configfs) needs the gpio-sim
kernel module; this machine's kernel has none (``modprobe gpio-sim``: not found, no
/sys/kernel/config), so the lines are a fake with the surface of ``gpiod.request_lines`` /
``LineRequest`` (``fd``, ``set_value``, ``get_value``, ``read_edge_events``,
``wait_edge_events``, ``release``); the line settings are real ``gpiod.LineSettings``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from gpiod import EdgeEvent, LineSettings
from gpiod.line import Bias, Direction, Edge, Value

from host.config import ConfigError, FrontPanelConfig, default_config
from host.frontpanel import FrontPanel, GpioLines, Health, line_settings
from host.sdnotify import SystemdNotifier

# ----------------------------------------------------------------------------- the fake


@dataclass
class FakeEdge:
    event_type: EdgeEvent.Type
    line_offset: int
    timestamp_ns: int


class FakeRequest:
    """One line request on a fake chip; the test drives the inputs (``drive``)."""

    def __init__(self, path: str, config: dict[Any, LineSettings | None], consumer: str | None):
        self.path = path
        self.consumer = consumer
        self.settings: dict[int, LineSettings] = {}
        for key, settings in config.items():
            for offset in key if isinstance(key, tuple) else (key,):
                self.settings[int(offset)] = settings or LineSettings()
        self.values = {
            offset: s.output_value if s.direction is Direction.OUTPUT else Value.INACTIVE
            for offset, s in self.settings.items()
        }
        self.writes: list[tuple[float, int, Value]] = []  # (monotonic time, line, value)
        self._events: list[FakeEdge] = []
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        self.released = False

    @property
    def fd(self) -> int:
        return self._read_fd

    def set_value(self, line: int, value: Value) -> None:
        assert self.settings[line].direction is Direction.OUTPUT, f"line {line} is an input"
        self.values[line] = value
        self.writes.append((time.monotonic(), line, value))

    def get_value(self, line: int) -> Value:
        return self.values[line]

    def wait_edge_events(self, timeout: timedelta | float | None = None) -> bool:
        seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
        readable, _, _ = select.select([self._read_fd], [], [], seconds)
        return bool(readable)

    def read_edge_events(self, max_events: int | None = None) -> list[FakeEdge]:
        with contextlib.suppress(BlockingIOError):
            os.read(self._read_fd, 4096)
        events, self._events = self._events, []
        return events

    def release(self) -> None:
        if not self.released:
            self.released = True
            os.close(self._read_fd)
            os.close(self._write_fd)

    # -- the test's side -------------------------------------------------------------------

    def drive(self, line: int, active: bool) -> None:
        """The input's logical level changes (active = pressed): one edge event."""
        settings = self.settings[line]
        assert settings.direction is Direction.INPUT and settings.edge_detection is Edge.BOTH
        self.values[line] = Value.ACTIVE if active else Value.INACTIVE
        kind = EdgeEvent.Type.RISING_EDGE if active else EdgeEvent.Type.FALLING_EDGE
        self._events.append(FakeEdge(kind, line, time.monotonic_ns()))
        os.write(self._write_fd, b"e")

    def times_set(self, line: int, value: Value) -> list[float]:
        return [t for t, n, v in self.writes if n == line and v is value]


@dataclass
class FakeChip:
    path: str = "/dev/gpiochip-fake"
    requests: list[FakeRequest] = field(default_factory=list)

    def request_lines(
        self,
        path: str,
        config: dict[Any, LineSettings | None],
        consumer: str | None = None,
        event_buffer_size: int | None = None,
        output_values: dict[Any, Value] | None = None,
    ) -> FakeRequest:
        request = FakeRequest(path, config, consumer)
        self.requests.append(request)
        return request

    @property
    def request(self) -> FakeRequest:
        assert len(self.requests) == 1
        return self.requests[0]


class NotifyListener:
    """A NOTIFY_SOCKET the test owns: every datagram with its arrival time."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.05)
        self.received: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.received.append((time.monotonic(), data.decode()))

    def times(self, message: str) -> list[float]:
        return [t for t, text in list(self.received) if message in text.split("\n")]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def chip(tmp_path: Path) -> FakeChip:
    device = tmp_path / "gpiochip9"
    device.touch()  # the panel checks that the chip exists before it asks for lines
    return FakeChip(str(device))


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[NotifyListener]:
    running = NotifyListener(str(tmp_path / "notify.sock"))
    yield running
    running.close()


def panel_config(fake: FakeChip, **overrides: Any) -> FrontPanelConfig:
    settings: dict[str, Any] = {"chip": fake.path, "heartbeat_s": 0.2, "stall_after_s": 2.0}
    settings.update(overrides)
    return default_config(frontpanel=settings).frontpanel


def notifier_for(listener: NotifyListener, watchdog_s: float) -> SystemdNotifier:
    return SystemdNotifier(
        {"NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": str(int(watchdog_s * 1e6))}
    )


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


# ----------------------------------------------------------------------------- the lines


def test_line_settings_two_outputs_and_a_debounced_button() -> None:
    config = FrontPanelConfig(run_line=5, tx_line=6, reset_line=13, tx_active_low=True)
    settings = line_settings(config)
    assert settings[5].direction is Direction.OUTPUT and not settings[5].active_low
    assert settings[5].output_value is Value.INACTIVE
    assert settings[6].direction is Direction.OUTPUT and settings[6].active_low
    button = settings[13]
    assert button.direction is Direction.INPUT and button.edge_detection is Edge.BOTH
    assert button.active_low and button.bias is Bias.PULL_UP  # a button to ground
    assert button.debounce_period == timedelta(milliseconds=30)


def test_no_chip_or_disabled_means_the_virtual_panel(chip: FakeChip, tmp_path: Path) -> None:
    missing = panel_config(chip, chip=str(tmp_path / "gpiochip77"))
    assert GpioLines.open(missing, request_lines=chip.request_lines) is None
    disabled = panel_config(chip, enabled=False)
    assert GpioLines.open(disabled, request_lines=chip.request_lines) is None
    assert chip.requests == []


def test_lines_taken_by_another_program_fall_back_to_virtual(chip: FakeChip) -> None:
    def busy(*args: object, **kwargs: object) -> FakeRequest:
        raise OSError(16, "Device or resource busy")

    assert GpioLines.open(panel_config(chip), request_lines=busy) is None


async def test_heartbeat_flashes_run_and_data_tx_pulses(chip: FakeChip) -> None:
    panel = FrontPanel(panel_config(chip), Health(2.0), notifier=SystemdNotifier({}))
    panel.start(request_lines=chip.request_lines)
    request = chip.request
    assert request.consumer == "smartpdu" and not panel.virtual
    beating = asyncio.create_task(panel.run())
    await until(lambda: len(request.times_set(panel.config.run_line, Value.INACTIVE)) >= 3)
    for _ in range(5):
        panel.data_sent()
    await asyncio.sleep(0.1)
    beating.cancel()
    await asyncio.gather(beating, return_exceptions=True)
    cfg = panel.config
    assert len(request.times_set(cfg.run_line, Value.ACTIVE)) >= 3  # 0.2 s heartbeat
    assert len(request.times_set(cfg.run_line, Value.INACTIVE)) >= 3
    # Five sends inside one pulse: DATA TX lit once, dark again after tx_pulse_ms.
    assert len(request.times_set(cfg.tx_line, Value.ACTIVE)) == 1
    assert request.values[cfg.tx_line] is Value.INACTIVE
    assert panel.tx_count == 5 and panel.view()["source"] == "gpio"
    panel.close()
    assert request.released


async def test_reset_is_debounced_and_holding_it_is_one_press(chip: FakeChip) -> None:
    panel = FrontPanel(panel_config(chip, debounce_ms=200), Health(2.0))
    restarts: list[float] = []

    async def restart() -> None:
        restarts.append(time.monotonic())

    panel.on_reset = restart
    panel.start(request_lines=chip.request_lines)
    request = chip.request
    line = panel.config.reset_line
    for level in (True, False, True, False, True):  # contact bounce, well within 200 ms
        request.drive(line, level)
        await asyncio.sleep(0.002)
    gpio = panel.gpio
    assert gpio is not None
    await until(lambda: gpio.presses >= 1)
    await asyncio.sleep(0.5)  # held down: still one press
    assert gpio.presses == 1
    await panel.wait_reset()
    assert len(restarts) == 1
    request.drive(line, False)
    await asyncio.sleep(0.3)
    request.drive(line, True)  # a glitch shorter than the debounce is no press
    request.drive(line, False)
    await asyncio.sleep(0.4)
    assert gpio.presses == 1
    request.drive(line, True)  # released and pressed again: the second press
    await until(lambda: gpio.presses == 2)
    await panel.wait_reset()
    assert len(restarts) == 2
    panel.close()


# ----------------------------------------------------------------------------- health


async def test_a_stalled_loop_stops_heartbeat_and_watchdog(
    chip: FakeChip, listener: NotifyListener
) -> None:
    panel = FrontPanel(panel_config(chip), Health(2.0), notifier=notifier_for(listener, 0.2))
    panel.start(request_lines=chip.request_lines)
    beating = asyncio.create_task(panel.run())
    await asyncio.sleep(0.8)
    stalled_at = time.monotonic()
    time.sleep(1.5)  # a blocking call in the loop: nothing of the service runs
    resumed_at = time.monotonic()
    await asyncio.sleep(0.8)
    beating.cancel()
    await asyncio.gather(beating, return_exceptions=True)
    run = chip.request.times_set(panel.config.run_line, Value.ACTIVE)
    pings = listener.times("WATCHDOG=1")
    for times in (run, pings):
        assert any(t < stalled_at for t in times)
        assert not any(stalled_at + 0.05 < t < resumed_at - 0.05 for t in times)
        assert any(t > resumed_at for t in times)  # and back once the loop runs again
    panel.close()


async def test_a_stalled_task_stops_heartbeat_and_watchdog(
    chip: FakeChip, listener: NotifyListener
) -> None:
    loop = asyncio.get_running_loop()
    superframes = 0

    async def bus() -> None:
        nonlocal superframes
        while superframes < 10:
            superframes += 1
            await asyncio.sleep(0.05)
        await asyncio.Event().wait()  # stuck on an await that never returns: alive, idle

    task = asyncio.create_task(bus(), name="bus-master")
    health = Health(2.0)
    health.watch_task(task, lambda: superframes, now=loop.time())
    panel = FrontPanel(panel_config(chip), health, notifier=notifier_for(listener, 0.2))
    panel.start(request_lines=chip.request_lines)
    beating = asyncio.create_task(panel.run())
    await until(lambda: bool(listener.times("WATCHDOG=1")))
    assert panel.healthy
    stuck_at = time.monotonic()  # the counter stopped moving at ~0.5 s
    await asyncio.sleep(3.0)
    assert not panel.healthy and "bus-master made no progress" in panel.problem
    cut = time.monotonic() - 0.5
    run = chip.request.times_set(panel.config.run_line, Value.ACTIVE)
    assert any(t < stuck_at for t in run) and not any(t > cut for t in run)
    assert not any(t > cut for t in listener.times("WATCHDOG=1"))
    assert any("STATUS=unhealthy: bus-master" in text for _, text in listener.received)
    assert chip.request.values[panel.config.run_line] is Value.INACTIVE
    task.cancel()  # an ended task is unhealthy too
    await asyncio.gather(task, return_exceptions=True)
    await until(lambda: "bus-master has stopped" in panel.problem)
    beating.cancel()
    await asyncio.gather(beating, return_exceptions=True)
    panel.close()


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"tx_line": 17}, "frontpanel.tx_line: line 17 is already frontpanel.run_line"),
        ({"chip": "gpiochip0"}, "frontpanel.chip: expected the path of a GPIO chip device"),
        ({"reset_line": -1}, "frontpanel.reset_line: -1 is out of range"),
        ({"heartbeat_s": 5.0, "stall_after_s": 6.0}, "frontpanel.stall_after_s: 6 s must be"),
        ({"run_lin": 4}, "unknown key 'frontpanel.run_lin' (did you mean 'frontpanel.run_line'?)"),
        ({"run_active_low": "yes"}, "frontpanel.run_active_low: expected true or false"),
    ],
)
def test_config_mistakes_are_one_line(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        default_config(frontpanel=settings)
    assert message in caught.value.line
