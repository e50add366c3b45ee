"""The state's two clocks.

Every ``at`` / ``received_at`` the updaters pass is in the timebase of ``clock`` (default
``time.monotonic``, which is what ``asyncio`` loop.time() returns), so dwell times and
staleness never jump when NTP sets a Pi's clock at boot. Events and snapshots carry
wall-clock times (seconds since the epoch), converted at the moment they are made.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class StateClock:
    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._wall_clock = wall_clock

    def now(self) -> float:
        return self._clock()

    def wall(self, at: float | None) -> float | None:
        """Wall-clock time of a ``clock`` time."""
        if at is None:
            return None
        return self._wall_clock() - (self._clock() - at)

    def wall_of(self, at: float) -> float:
        """``wall`` for a time that is known."""
        return self._wall_clock() - (self._clock() - at)
