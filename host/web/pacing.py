"""Which live frames go out at once and which wait for the display's refresh.

A page redraws whatever a frame changes. Reports arrive 60-100 times a second and most of
what they change is a number's last digit: reading noise, a dimmer's slow fade, a board's
last-seen time, the crest factors each TELEMETRY brings, the virtual front panel's counters.
Those are refreshed ``REFRESH_S`` apart (twice a second, as a panel meter's display is); a
browser that redraws 20 times a second for them spends most of a phone's (or a small
machine's) CPU on digits nobody can read. Everything else goes out at once (after the
hub's ``min_interval_s`` from the previous build), without the other channels' jitter (that
waits for the refresh, so a step redraws one number): a channel's current that leaves the range
it moved in over the last second (``HISTORY``) by more than ``STEP_FACTOR`` times its mean
move between builds, or that jumps by more than ``JUMP_FACTOR`` mean moves since the last
build (a load switched on or off, a step, a trip, a chase), a state, an alarm, the meter, an
event, a board coming or going.

The range test tells a step from jitter without a fixed threshold: a noisy channel's values
stay inside their own recent range, a fade moves by about its mean move (well inside the
margin), a value that flickers between two digits stays inside its range, and a channel that
sat still moves out of it by any amount. A step widens the margin for the second after it: a
smaller second step within that second may wait for the refresh.
"""

from __future__ import annotations

from collections import deque
from itertools import pairwise
from typing import Any

from host.web.view import JSON

REFRESH_S = 0.5  # numbers that only jitter or drift: 2 frames a second
HISTORY = 20  # builds a channel's range and mean move are taken over (1 s at 20 a second)
STEP_FACTOR = 3.0
JUMP_FACTOR = 6.0  # a move since the last build this many mean moves is news, even in range
# What may change in a frame that waits for the refresh (every other member is urgent).
_JITTER_GROUP = frozenset({"current_a", "phases", "board"})
_JITTER_BOARD = frozenset({"last_seen", "frames_ok", "uptime_s"})
# Top-level parts whose members move by themselves: the virtual front panel's counters (its
# DATA TX counts the frames sent: urgent, it would send itself 20 times a second) and the
# status node's time stamp.
_JITTER_PARTS = {"frontpanel": frozenset({"tx", "beats"}), "mains": frozenset({"updated_at"})}
_JITTER_TOP = frozenset({"taken_at", "channels", "groups", "units", *_JITTER_PARTS})
_JITTER_CHANNEL = frozenset({"current_a", "crest"})  # the crest factor moves with each TELEMETRY
_UNIT_CURRENTS = frozenset({"l1", "l2", "l3", "n"})  # pane A: a unit's phase currents


class _Track:
    """One channel's last ``HISTORY`` currents, one per build."""

    __slots__ = ("values",)

    def __init__(self) -> None:
        self.values: deque[float] = deque(maxlen=HISTORY)

    def is_step(self, amps: float) -> bool:
        values = self.values
        if len(values) < 2:
            return True
        lo, hi = min(values), max(values)
        moves = [abs(b - a) for a, b in pairwise(values)]
        mean_move = sum(moves) / len(moves)
        margin = STEP_FACTOR * mean_move
        if amps < lo - margin or amps > hi + margin:
            return True
        # Back to a level of the last second (a load off again): a jump, not a wander.
        return abs(amps - values[-1]) > JUMP_FACTOR * mean_move


class FramePacer:
    """Fed every view the hub builds; says which of its patch may wait for the refresh."""

    def __init__(self) -> None:
        self._tracks: dict[str, _Track] = {}

    def observe(self, view: JSON) -> None:
        """Record this build's currents (after ``split`` judged its patch)."""
        channels: dict[str, Any] = view.get("channels") or {}
        for cid, channel in channels.items():
            amps = channel.get("current_a") if isinstance(channel, dict) else None
            track = self._tracks.get(cid)
            if track is None:
                track = self._tracks[cid] = _Track()
            if isinstance(amps, (int, float)):
                track.values.append(float(amps))
            else:
                track.values.clear()  # no reading: the next one is news

    def split(self, patch: JSON, shown: JSON) -> tuple[bool, set[str], set[str]]:
        """``(urgent, channels, groups)`` for ``patch`` (from ``shown``, the last published
        view, to this build): whether it holds more than jitter, and the channels and groups
        whose change is jitter alone. Pane A's unit list is jitter when only its units'
        currents moved (without a meter they are the sums of the outputs)."""
        channels: set[str] = set()
        groups: set[str] = set()
        urgent = not patch.keys() <= _JITTER_TOP
        if any(not _within(patch.get(key), members) for key, members in _JITTER_PARTS.items()):
            urgent = True
        if "units" in patch and not _currents_only(shown.get("units"), patch["units"]):
            urgent = True
        for letter, group in (patch.get("groups") or {}).items():
            if _only(group, _JITTER_GROUP) and _within(group.get("board"), _JITTER_BOARD):
                groups.add(letter)
            else:
                urgent = True
        for cid, channel in (patch.get("channels") or {}).items():
            if not _only(channel, _JITTER_CHANNEL):
                urgent = True
            elif "current_a" in channel and self._is_step(cid, channel["current_a"]):
                urgent = True  # the crest factor alone is jitter
            else:
                channels.add(cid)
        return urgent, channels, groups

    def _is_step(self, cid: str, amps: Any) -> bool:
        track = self._tracks.get(cid)
        return not isinstance(amps, (int, float)) or track is None or track.is_step(amps)


def hold_back(
    patch: JSON, view: JSON, shown: JSON, jitter: set[str], calm: set[str]
) -> tuple[JSON, JSON] | None:
    """The frame of a step, as ``(view, patch)``: the jitter left as ``shown`` has it (the
    ``jitter`` channels, the ``calm`` groups none of whose channels has news, pane A's
    currents), so the step redraws its own numbers; None when there is no jitter to leave."""
    news = (patch.get("channels") or {}).keys() - jitter
    kept_groups = {g for g in calm if not news & set(view["groups"][g]["channels"])}
    kept_units = "units" in patch and _currents_only(shown.get("units"), patch["units"])
    if not (jitter or kept_groups or kept_units):
        return None
    view = {
        **view,
        "channels": view["channels"] | {cid: shown["channels"][cid] for cid in jitter},
        "groups": view["groups"] | {g: shown["groups"][g] for g in kept_groups},
    }
    patch = dict(patch)
    for key, kept in (("channels", jitter), ("groups", kept_groups)):
        rest = {k: v for k, v in (patch.get(key) or {}).items() if k not in kept}
        if rest:
            patch[key] = rest
        else:
            patch.pop(key, None)
    if kept_units:
        view["units"] = shown["units"]
        del patch["units"]
    return view, patch


def _only(part: Any, members: frozenset[str]) -> bool:
    """An object with no member outside ``members``."""
    return isinstance(part, dict) and part.keys() <= members


def _within(part: Any, members: frozenset[str]) -> bool:
    """Absent, or an object with no member outside ``members``."""
    return part is None or _only(part, members)


def _currents_only(before: Any, after: Any) -> bool:
    """Whether two unit lists differ only in their units' currents."""
    if not isinstance(before, list) or not isinstance(after, list) or len(before) != len(after):
        return False
    for old, new in zip(before, after, strict=True):
        if not isinstance(old, dict) or not isinstance(new, dict) or old.keys() != new.keys():
            return False
        if any(old[key] != new[key] for key in old.keys() - _UNIT_CURRENTS):
            return False
    return True
