"""Channel supervision (R12): a minimum and a maximum current per channel.

A warning is raised when the current stays outside [min, max] for the dwell time (a dimmer
fade or a motor start does not raise one), and cleared only when the current is back inside
by the hysteresis margin (a load hovering at the limit does not flap). While any supervised
channel has a warning, the unit shows the warning triangle in pane A.

Pure logic, no I/O and no clock of its own: the caller passes the time of each sample.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

MAX_SUPERVISION_A = 63.0  # the largest channel rating a board supports (protocol K_RATING)


class SupervisionStatus(StrEnum):
    UNSUPERVISED = "unsupervised"
    OK = "ok"
    BELOW_MIN = "below_min"  # warning
    ABOVE_MAX = "above_max"  # warning


WARNING_STATUSES = frozenset({SupervisionStatus.BELOW_MIN, SupervisionStatus.ABOVE_MAX})


def validate_supervision_range(min_a: float, max_a: float) -> tuple[float, float]:
    """0 ≤ min ≤ max ≤ 63 A; ValueError with a message for the user otherwise."""
    for name, value in (("minimum", min_a), ("maximum", max_a)):
        if isinstance(value, bool) or not isinstance(value, int | float):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ValueError(f"the {name} current must be a number")
        if not math.isfinite(value):
            raise ValueError(f"the {name} current must be a finite number")
        if not 0.0 <= value <= MAX_SUPERVISION_A:
            raise ValueError(
                f"the {name} current must be between 0 and {MAX_SUPERVISION_A:g} A, not {value:g} A"
            )
    if min_a > max_a:
        raise ValueError(f"the minimum ({min_a:g} A) is above the maximum ({max_a:g} A)")
    return float(min_a), float(max_a)


@dataclass(frozen=True)
class SupervisionSettings:
    """What the user set with the eye icon. ``enabled`` False keeps the range for later."""

    enabled: bool = False
    min_a: float = 0.0
    max_a: float = 16.0
    dwell_s: float = 10.0
    hysteresis_a: float = 0.5

    def validated(self) -> SupervisionSettings:
        validate_supervision_range(self.min_a, self.max_a)
        if not (math.isfinite(self.dwell_s) and 0.0 <= self.dwell_s <= 3600.0):
            raise ValueError("the dwell time must be between 0 and 3600 s")
        if not (math.isfinite(self.hysteresis_a) and 0.0 <= self.hysteresis_a <= 10.0):
            raise ValueError("the hysteresis must be between 0 and 10 A")
        return self

    def validated_entry(self) -> SupervisionSettings:
        """``validated`` plus what only makes sense to refuse when a person enters it: a
        hysteresis wider than the range (the supervisor itself narrows such a margin to
        half the range, so settings stored before this check still work)."""
        self.validated()
        span = self.max_a - self.min_a
        if self.hysteresis_a > span:
            raise ValueError(
                f"the hysteresis ({self.hysteresis_a:g} A) is larger than the range "
                f"{self.min_a:g}-{self.max_a:g} A; make it at most {span:g} A"
            )
        return self


@dataclass(frozen=True)
class SupervisionTransition:
    """A warning raised (``raised`` True) or cleared on one channel."""

    channel: str
    at: float
    raised: bool
    status: SupervisionStatus  # for a clear: the side that was out of range
    current_a: float | None
    settings: SupervisionSettings
    reason: str


@dataclass(frozen=True)
class SupervisionState:
    """One channel's supervision as the snapshot shows it."""

    settings: SupervisionSettings
    status: SupervisionStatus
    since: float | None  # when the present status began
    out_of_range_since: float | None  # pending or active excursion

    @property
    def warning(self) -> bool:
        return self.status in WARNING_STATUSES


class ChannelSupervisor:
    """The supervision state machine of one channel."""

    def __init__(self, channel: str, settings: SupervisionSettings | None = None) -> None:
        self.channel = channel
        self._settings = (settings or SupervisionSettings()).validated()
        self._status = (
            SupervisionStatus.OK if self._settings.enabled else SupervisionStatus.UNSUPERVISED
        )
        self._since: float | None = None
        self._pending: SupervisionStatus | None = None
        self._pending_since: float | None = None

    @property
    def settings(self) -> SupervisionSettings:
        return self._settings

    @property
    def status(self) -> SupervisionStatus:
        return self._status

    @property
    def warning(self) -> bool:
        return self._status in WARNING_STATUSES

    def state(self) -> SupervisionState:
        out_since = self._since if self.warning else self._pending_since
        return SupervisionState(self._settings, self._status, self._since, out_since)

    def configure(
        self, settings: SupervisionSettings, now: float, current_a: float | None = None
    ) -> list[SupervisionTransition]:
        """New settings from the user. An active warning is re-judged against the new range
        at once (with the latest current, if given); a pending excursion starts over."""
        settings = settings.validated()
        self._settings = settings
        self._pending = None
        self._pending_since = None
        transitions: list[SupervisionTransition] = []
        if not settings.enabled:
            if self.warning:
                transitions.append(self._clear(now, current_a, "supervision switched off"))
            self._status = SupervisionStatus.UNSUPERVISED
            self._since = now
            return transitions
        if self._status is SupervisionStatus.UNSUPERVISED:
            self._status = SupervisionStatus.OK
            self._since = now
        if current_a is not None:
            transitions.extend(self.observe(current_a, now))
        return transitions

    def _side(self, current_a: float) -> SupervisionStatus | None:
        s = self._settings
        if current_a < s.min_a:
            return SupervisionStatus.BELOW_MIN
        if current_a > s.max_a:
            return SupervisionStatus.ABOVE_MAX
        return None

    def _back_inside(self, current_a: float, side: SupervisionStatus) -> bool:
        """Inside [min, max] by the hysteresis margin on the side that was out of range;
        the margin never asks for more than the middle of the range, so a narrow range
        (min = max) can still clear."""
        s = self._settings
        if not s.min_a <= current_a <= s.max_a:
            return False
        margin = min(s.hysteresis_a, (s.max_a - s.min_a) / 2.0)
        if side is SupervisionStatus.BELOW_MIN:
            return current_a >= s.min_a + margin
        return current_a <= s.max_a - margin

    def _clear(self, now: float, current_a: float | None, reason: str) -> SupervisionTransition:
        side = self._status
        self._status = SupervisionStatus.OK
        self._since = now
        return SupervisionTransition(
            self.channel, now, False, side, current_a, self._settings, reason
        )

    def observe(self, current_a: float | None, now: float) -> list[SupervisionTransition]:
        """One measurement (None: no valid measurement, e.g. the board is offline; an active
        warning stays up, since nothing shows the load came back, but no new one starts)."""
        if not self._settings.enabled:
            return []
        if current_a is None or not math.isfinite(current_a):
            self._pending = None
            self._pending_since = None
            return []
        transitions: list[SupervisionTransition] = []
        side = self._side(current_a)
        s = self._settings

        if self.warning:
            if side is not None and side is not self._status:
                # Jumped from one side to the other: still out of range, name the new side.
                transitions.append(self._clear(now, current_a, "crossed to the other limit"))
                transitions.append(self._raise(side, now, current_a))
            elif side is None and self._back_inside(current_a, self._status):
                transitions.append(self._clear(now, current_a, _inside_text(current_a, s)))
            return transitions

        if side is None:
            self._pending = None
            self._pending_since = None
            return transitions
        if self._pending is not side:
            self._pending = side
            self._pending_since = now
        if self._pending_since is None or now < self._pending_since:
            self._pending_since = now  # the clock was stepped back: time the dwell afresh
        if now - self._pending_since >= s.dwell_s:
            transitions.append(self._raise(side, self._pending_since, current_a, now))
        return transitions

    def _raise(
        self,
        side: SupervisionStatus,
        since: float,
        current_a: float,
        now: float | None = None,
    ) -> SupervisionTransition:
        at = since if now is None else now
        self._status = side
        self._since = since
        self._pending = None
        self._pending_since = None
        s = self._settings
        if side is SupervisionStatus.BELOW_MIN:
            reason = f"{current_a:.2f} A is below the minimum {s.min_a:g} A"
        else:
            reason = f"{current_a:.2f} A is above the maximum {s.max_a:g} A"
        return SupervisionTransition(self.channel, at, True, side, current_a, s, reason)


def _inside_text(current_a: float, s: SupervisionSettings) -> str:
    return f"{current_a:.2f} A is back within {s.min_a:g}-{s.max_a:g} A"


class SupervisionSet:
    """The supervisors of every channel of a unit, and the unit's warning triangle."""

    def __init__(
        self, channels: Iterable[str], settings: Mapping[str, SupervisionSettings] | None = None
    ) -> None:
        given = settings or {}
        self._by_channel = {ch: ChannelSupervisor(ch, given.get(ch)) for ch in channels}

    def __getitem__(self, channel: str) -> ChannelSupervisor:
        return self._by_channel[channel]

    def __contains__(self, channel: object) -> bool:
        return channel in self._by_channel

    @property
    def warning_triangle(self) -> bool:
        """True while any supervised channel is out of its range (R12)."""
        return any(s.warning for s in self._by_channel.values())

    def channels_in_warning(self) -> tuple[str, ...]:
        return tuple(ch for ch, s in self._by_channel.items() if s.warning)
