"""The service stops its parts even when one swallows its cancellation (as Python 3.11's
``asyncio.wait_for`` inside pymodbus does when the meter's answer and the cancellation
arrive together: ``smartpdu serve`` / ``run`` then hung on SIGTERM)."""

from __future__ import annotations

import asyncio

from host.service import _stop_tasks  # pyright: ignore[reportPrivateUsage]


async def test_a_part_that_swallows_its_cancellation_is_cancelled_again() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # carries on polling, as the meter did

    async def failed() -> None:
        raise RuntimeError("a part that already failed")

    tasks = [asyncio.create_task(stubborn()), asyncio.create_task(failed())]
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await _stop_tasks(tasks, timeout_s=5.0)
    assert tasks[0].cancelled() and swallowed == 1
    assert isinstance(tasks[1].exception(), RuntimeError)
    assert loop.time() - started < 2.0


async def test_a_part_that_never_stops_is_left_after_the_timeout() -> None:
    released = asyncio.Event()

    async def immortal() -> None:
        while not released.is_set():
            try:
                await released.wait()
            except asyncio.CancelledError:
                continue

    task = asyncio.create_task(immortal())
    await asyncio.sleep(0)
    await _stop_tasks([task], timeout_s=0.3)
    assert not task.done()  # logged and left: the service still closes the rest
    released.set()
    await task
