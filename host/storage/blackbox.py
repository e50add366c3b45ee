"""The black box: the last seconds of every group's reports and of the meter, kept in
memory and saved with each trip."""

from __future__ import annotations

from collections import deque
from typing import Any

from host.state import ChannelSample, MeterSample, Sample

BLACK_BOX_MIN_INTERVAL_S = 0.1  # at most 10 frames a second per group in the black box


class BlackBox:
    """The last ``window_s`` of every group's reports and of the meter, in memory; a dump
    is saved with each trip so what led up to it can be seen afterwards."""

    def __init__(self, window_s: float = 30.0) -> None:
        self.window_s = window_s
        self._channels: deque[ChannelSample] = deque()
        self._meter: deque[MeterSample] = deque()
        self._last_kept: dict[str, float] = {}

    def record(self, sample: Sample) -> None:
        if isinstance(sample, ChannelSample):
            last = self._last_kept.get(sample.group)
            # 10 % slack: a board reporting at exactly 10 Hz must not lose every other frame
            # to float rounding of its timestamps.
            if last is not None and 0 <= sample.at - last < 0.9 * BLACK_BOX_MIN_INTERVAL_S:
                return
            self._last_kept[sample.group] = sample.at
            self._channels.append(sample)
        else:
            self._meter.append(sample)
        self._trim(sample.at)

    def _trim(self, now: float) -> None:
        horizon = now - self.window_s
        while self._channels and self._channels[0].at < horizon:
            self._channels.popleft()
        while self._meter and self._meter[0].at < horizon:
            self._meter.popleft()

    def dump(self) -> dict[str, Any]:
        """The window as JSON-ready data: per group a list of [t, currents, states]."""
        groups: dict[str, list[list[Any]]] = {}
        for s in self._channels:
            groups.setdefault(s.group, []).append(
                [round(s.at, 3), list(s.currents_a), [st.value for st in s.states]]
            )
        meter = [[round(s.at, 3), dict(s.readings)] for s in self._meter]
        return {"window_s": self.window_s, "groups": groups, "meter": meter}
