"""The unit's outputs: each channel's current and state as its group board reports them,
and the user's supervision of each (R12). Reports overload and supervision changes to the
event hub. Every REPORT (hundreds a second) passes through here: keep it lean."""

from __future__ import annotations

from typing import Any

from host.config import ChannelsConfig
from host.domain import CHANNELS_PER_GROUP, Phase, channel_id, parse_channel_id
from host.state.events import EventHub, EventKind, Severity
from host.state.snapshot import ChannelSample, ChannelState, Freshness
from host.supervision import SupervisionSet, SupervisionTransition
from protocol import consts as C
from protocol.messages import Report, Telemetry

_STATE_FROM_WIRE = {
    C.ST_OFF: ChannelState.OFF,
    C.ST_OK: ChannelState.OK,
    C.ST_SLIGHT: ChannelState.SLIGHT,
    C.ST_SERIOUS: ChannelState.SERIOUS,
    C.ST_TRIPPED: ChannelState.TRIPPED,
}
_ALARM_STATES = (ChannelState.SLIGHT, ChannelState.SERIOUS, ChannelState.TRIPPED)
# REPORT alarm code -> state (code 0 is OFF or OK, told apart by the current).
_STATE_FROM_ALARM = (ChannelState.OK, *_ALARM_STATES)
# Event for a channel entering an alarm state: kind, severity, what happened.
_CHANNEL_ALARMS: dict[ChannelState, tuple[EventKind, Severity, str]] = {
    ChannelState.SLIGHT: (EventKind.CHANNEL_SLIGHT_OVERLOAD, Severity.WARNING, "slight overload, "),
    ChannelState.SERIOUS: (
        EventKind.CHANNEL_SERIOUS_OVERLOAD,
        Severity.ALARM,
        "serious overload, ",
    ),
    ChannelState.TRIPPED: (
        EventKind.CHANNEL_TRIPPED,
        Severity.ALARM,
        "output breaker (RCBO) tripped after an overload",
    ),
}


class Channel:
    """What the state knows of one output (mutable; snapshots copy it)."""

    __slots__ = (
        "clipped",
        "crest",
        "current",
        "group",
        "id",
        "label",
        "number",
        "over_range",
        "phase",
        "rating",
        "state",
        "ttt",
        "updated_at",
    )

    def __init__(self, group: str, number: int, phase: Phase, rating: float) -> None:
        self.id = channel_id(group, number)
        self.group = group
        self.number = number
        self.phase: Phase = phase
        self.rating = rating
        self.label = ""
        self.state = ChannelState.NO_DATA
        self.current: float | None = None
        self.over_range = False
        self.crest: float | None = None
        self.ttt: float | None = None
        self.clipped = False
        self.updated_at: float | None = None

    def describe(self) -> str:
        return f"{self.id} '{self.label}'" if self.label else self.id


def channel_freshness(
    ch: Channel, board_online: bool | None, stale_after_s: float, now: float
) -> Freshness:
    """How current a channel's value is; ``board_online`` None: no board serves its group."""
    if ch.updated_at is None:
        return Freshness.OFFLINE if board_online is False else Freshness.NO_DATA
    if not board_online:
        return Freshness.OFFLINE
    if now - ch.updated_at >= stale_after_s:
        return Freshness.STALE
    return Freshness.LIVE


class Channels:
    """Every channel of the model, by id and by group, with its supervisor."""

    def __init__(self, hub: EventHub, model: int, groups: str, config: ChannelsConfig) -> None:
        self._hub = hub
        self._model = model
        self._by_id: dict[str, Channel] = {}
        self._by_group: dict[str, list[Channel]] = {}
        for group in groups:
            members = [
                Channel(group, number, config.phase_of(group, number), config.rating_a)
                for number in range(1, CHANNELS_PER_GROUP + 1)
            ]
            self._by_group[group] = members
            self._by_id.update((ch.id, ch) for ch in members)
        self.supervision = SupervisionSet(self._by_id)

    # -- lookups ---------------------------------------------------------------------------

    def get(self, cid: str) -> Channel:
        """The channel 'B7' (or 'b7'); ValueError for a channel this model does not have."""
        group, number = parse_channel_id(cid, self._model)
        return self._by_id[channel_id(group, number)]

    def by_id(self, cid: str) -> Channel:
        """The channel of a canonical id, as the snapshots carry it."""
        return self._by_id[cid]

    def of_group(self, group: str) -> list[Channel]:
        return self._by_group[group]

    def sample(self, group: str, wall: float) -> ChannelSample:
        channels = self._by_group[group]
        return ChannelSample(
            wall, group, tuple(ch.current for ch in channels), tuple(ch.state for ch in channels)
        )

    # -- what the group boards tell --------------------------------------------------------

    def apply_report(self, group: str, report: Report, at: float) -> None:
        """A compact REPORT: current and alarm code of every channel of ``group``."""
        for ch, centiamps, alarm in zip(
            self._by_group[group], report.centiamps, report.alarms, strict=True
        ):
            over = centiamps >= C.REPORT_OVER_RANGE
            current = centiamps / 100.0
            if alarm:
                state = _STATE_FROM_ALARM[alarm]
                ttt = ch.ttt if alarm != C.AL_TRIPPED else None
            else:
                state = ChannelState.OFF if centiamps == 0 else ChannelState.OK
                ttt = None
            self._update(ch, at, current, over, state, ttt)

    def apply_telemetry(self, group: str, telemetry: Telemetry, at: float) -> None:
        """A full TELEMETRY: currents, states, crest factors, time to trip, clipping."""
        ttts: dict[int, int] = telemetry.time_to_trip_ds
        for index, ch in enumerate(self._by_group[group]):
            centiamps = telemetry.centiamps[index]
            current = None if centiamps == C.CENTIAMPS_INVALID else centiamps / 100.0
            state = _STATE_FROM_WIRE.get(telemetry.states[index], ChannelState.NO_DATA)
            ds = ttts.get(index)
            ttt = None if ds is None or ds == C.TTT_UNKNOWN else ds / 10.0
            crest = telemetry.crest_x10[index]
            ch.crest = crest / 10.0 if crest else None
            ch.clipped = bool(telemetry.clipped[index])
            self._update(ch, at, current, False, state, ttt)

    def group_offline(self, group: str, at: float) -> None:
        """The group's board is gone: its supervisors see no current from now on."""
        for ch in self._by_group[group]:
            self.supervision[ch.id].observe(None, at)

    def _update(
        self,
        ch: Channel,
        at: float,
        current: float | None,
        over_range: bool,
        state: ChannelState,
        ttt: float | None,
    ) -> None:
        previous = ch.state
        ch.current = current
        ch.over_range = over_range
        ch.state = state
        ch.ttt = ttt
        ch.updated_at = at
        if state is not previous:
            self._state_event(ch, previous, at)
        self.supervision_events(ch, self.supervision[ch.id].observe(current, at))

    # -- events ----------------------------------------------------------------------------

    def _state_event(self, ch: Channel, previous: ChannelState, at: float) -> None:
        name = ch.describe()
        amps = "?" if ch.current is None else f"{ch.current:.1f} A"
        pct = "" if ch.current is None else f" ({100 * ch.current / ch.rating:.0f} % of rating)"
        ttt = "" if ch.ttt is None else f"; RCBO trips in about {ch.ttt:.0f} s"
        common: dict[str, Any] = {
            "group": ch.group,
            "channel": ch.id,
            "condition": f"channel:{ch.id}",
            "current_a": ch.current,
            "previous": previous,
            "state": ch.state,
            "label": ch.label,
        }
        alarm = _CHANNEL_ALARMS.get(ch.state)
        if alarm is not None:
            kind, severity, what = alarm
            detail = f"{amps}{pct}{ttt}" if ch.state is not ChannelState.TRIPPED else ""
            self._hub.emit(at, kind, severity, f"{name}: {what}{detail}", active=True, **common)
        elif previous in _ALARM_STATES:
            self._hub.emit(
                at,
                EventKind.CHANNEL_NORMAL,
                Severity.INFO,
                f"{name}: back to normal, {amps}",
                **common,
            )

    def supervision_events(self, ch: Channel, transitions: list[SupervisionTransition]) -> None:
        for t in transitions:
            raised = t.raised
            self._hub.emit(
                t.at,
                EventKind.SUPERVISION_RAISED if raised else EventKind.SUPERVISION_CLEARED,
                Severity.WARNING if raised else Severity.INFO,
                f"{ch.describe()}: {t.reason}"
                if raised
                else f"{ch.describe()}: supervision warning cleared, {t.reason}",
                group=ch.group,
                channel=ch.id,
                condition=f"supervision:{ch.id}",
                active=raised,
                status=t.status,
                current_a=t.current_a,
                min_a=t.settings.min_a,
                max_a=t.settings.max_a,
            )
