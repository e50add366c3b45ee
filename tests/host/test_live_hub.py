"""The live hub's coalescing, on a clock of the test's own (nothing here is timed)."""

from __future__ import annotations

import asyncio
from typing import Any

from host.web.live import LiveHub
from host.web.units import UnitDirectory
from tests.host.test_web_api import feed, make_state


class FakeClock:
    """Time that moves only when told; ``step`` is added after every reading (a build that
    takes time)."""

    def __init__(self, now: float = 100.0, step: float = 0.0) -> None:
        self.now = now
        self.step = step

    def __call__(self) -> float:
        now = self.now
        self.now += self.step
        return now


class QuietSocket:
    closed = False

    async def send_str(self, text: str) -> None:
        pass


async def _yield(times: int = 20) -> None:
    for _ in range(times):
        await asyncio.sleep(0)


def test_the_interval_counts_from_the_start_of_a_build() -> None:
    clock = FakeClock(100.0, step=0.004)  # every reading 4 ms later: a slow build
    hub = LiveHub(make_state(), UnitDirectory(1), min_interval_s=0.05, clock=clock)
    hub.add(QuietSocket())  # type: ignore[arg-type]
    assert hub.publish_due() < clock.now  # nothing published yet: at once
    frame = hub.publish()
    assert frame is not None and frame.published_at > 100.0
    assert hub.publish_due() == 100.05  # not 50 ms after the build ended


async def test_a_change_after_a_quiet_spell_goes_at_once_and_one_soon_after_waits() -> None:
    clock = FakeClock(100.0)
    state = make_state()
    hub = LiveHub(state, UnitDirectory(1), min_interval_s=3600.0, clock=clock)
    published: list[Any] = []
    hub.on_publish.append(published.append)
    hub.add(QuietSocket())  # type: ignore[arg-type]
    task = asyncio.create_task(hub.run())
    try:
        await _yield()
        assert len(published) == 1  # the first client's frame
        clock.now = 5000.0  # far more than the interval since that frame
        feed(state, 1, [2.5] + [0.0] * 11)
        await _yield()
        assert len(published) == 2 and published[-1].view["channels"]["A1"]["current_a"] == 2.5
        clock.now = 5001.0  # well within the interval: this one waits for its turn
        feed(state, 1, [3.5] + [0.0] * 11)
        await _yield()
        assert len(published) == 2
        assert hub.publish_due() == 5000.0 + 3600.0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
