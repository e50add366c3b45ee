"""The event hub: what happened (events) and what is wrong now (conditions), handed to
listeners and bounded per-consumer queues. Every source of the unit state reports through
one hub, so the log, the web clients and the status pane see one ordered stream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from host.state.clock import StateClock
from host.state.jsonable import to_jsonable

if TYPE_CHECKING:
    from host.state.snapshot import Sample

_LOG = logging.getLogger("host.state")

RECENT_EVENTS = 50  # kept in every snapshot for the status pane
EVENT_HISTORY = 500  # kept in memory; the event log lives in storage


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ALARM = "alarm"  # needs someone now: overload, trip, lost data of a whole group


class EventKind(StrEnum):
    CHANNEL_SLIGHT_OVERLOAD = "channel.slight_overload"
    CHANNEL_SERIOUS_OVERLOAD = "channel.serious_overload"
    CHANNEL_TRIPPED = "channel.tripped"
    CHANNEL_NORMAL = "channel.normal"  # left SLIGHT / SERIOUS / TRIPPED
    SUPERVISION_RAISED = "supervision.raised"
    SUPERVISION_CLEARED = "supervision.cleared"
    BOARD_ONLINE = "board.online"
    BOARD_OFFLINE = "board.offline"
    BOARD_FIRMWARE_MISMATCH = "board.firmware_mismatch"
    BOARD_HEALTH = "board.health"  # config defaults, watchdog reset, task restarted, no vref
    BOARD_CONFLICT = "board.conflict"  # two boards claim one group, or a group the model lacks
    METER_STALE = "meter.stale"
    METER_OFFLINE = "meter.offline"
    METER_LIVE = "meter.live"  # back after stale / offline
    BREAKER_LOAD = "breaker.load"  # phase load level vs IR changed
    BREAKER_NEUTRAL_LOAD = "breaker.neutral_load"  # neutral load level vs InN changed
    BREAKER_TRIPPED = "breaker.tripped"
    BREAKER_OPENED = "breaker.opened"  # switched off by hand (no trip contact)
    BREAKER_CLOSED = "breaker.closed"
    EMERGENCY_STOP = "mains.emergency_stop"  # pressed or released
    NEUTRAL_LOST = "mains.neutral_lost"  # relay operated or reset
    TEMPERATURE = "mains.temperature"  # too hot, sensor fault, or back to normal
    SETTINGS_CHANGED = "settings.changed"  # a label, the unit name or a supervision range


@dataclass(frozen=True)
class Event:
    time: float  # wall clock, seconds since the epoch
    kind: EventKind
    severity: Severity
    unit: str
    group: str | None
    channel: str | None  # "A7"
    message: str
    data: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(self)


@dataclass(frozen=True)
class ActiveCondition:
    """Something wrong right now (as opposed to an event, which is a change)."""

    key: str
    kind: EventKind
    severity: Severity
    since: float
    group: str | None
    channel: str | None
    message: str


def severity_rank(severity: Severity) -> int:
    return {Severity.ALARM: 0, Severity.WARNING: 1, Severity.INFO: 2}[severity]


class EventQueue:
    """Events for one consumer (a web client, the event logger). Bounded: when a slow
    consumer lets it fill up, the oldest events are dropped (counted in ``dropped``), so a
    stuck browser can never hold up the bus."""

    def __init__(self, hub: EventHub, maxsize: int) -> None:
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self._hub = hub
        self.dropped = 0

    def put(self, event: Event) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(event)

    async def get(self) -> Event:
        return await self._queue.get()

    def get_nowait(self) -> Event:
        return self._queue.get_nowait()

    def empty(self) -> bool:
        return self._queue.empty()

    def close(self) -> None:
        self._hub.discard_queue(self)

    def __enter__(self) -> EventQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __aiter__(self) -> EventQueue:
        return self

    async def __anext__(self) -> Event:
        return await self.get()


def _remove(listeners: list[Callable[[Any], None]], callback: Callable[[Any], None]) -> None:
    with contextlib.suppress(ValueError):
        listeners.remove(callback)


class EventHub:
    """Events, active conditions, and who listens: event and sample listeners, queues."""

    def __init__(self, unit_id: str, clock: StateClock) -> None:
        self.unit_id = unit_id
        self._clock = clock
        self._conditions: dict[str, ActiveCondition] = {}
        self._events: deque[Event] = deque(maxlen=EVENT_HISTORY)
        self._event_listeners: list[Callable[[Event], None]] = []
        self._sample_listeners: list[Callable[[Sample], None]] = []
        self._queues: set[EventQueue] = set()

    # -- consumers -------------------------------------------------------------------------

    def add_event_listener(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        self._event_listeners.append(callback)
        return lambda: _remove(self._event_listeners, callback)

    def add_sample_listener(self, callback: Callable[[Sample], None]) -> Callable[[], None]:
        self._sample_listeners.append(callback)
        return lambda: _remove(self._sample_listeners, callback)

    def event_queue(self, maxsize: int) -> EventQueue:
        queue = EventQueue(self, maxsize)
        self._queues.add(queue)
        return queue

    def discard_queue(self, queue: EventQueue) -> None:
        self._queues.discard(queue)

    # -- what the snapshot shows -----------------------------------------------------------

    def conditions(self) -> tuple[ActiveCondition, ...]:
        """Active conditions, worst first, then oldest first."""
        ordered = sorted(
            self._conditions.values(), key=lambda c: (severity_rank(c.severity), c.since)
        )
        return tuple(ordered)

    def recent_events(self) -> tuple[Event, ...]:
        """The last ``RECENT_EVENTS`` events, newest last."""
        return tuple(self._events)[-RECENT_EVENTS:]

    # -- producers -------------------------------------------------------------------------

    def sample(self, sample: Sample) -> None:
        for callback in list(self._sample_listeners):
            try:
                callback(sample)
            except Exception:
                _LOG.exception("sample listener failed")

    def clear_condition(self, key: str) -> None:
        """Drop a condition without an event (its cause went away silently)."""
        self._conditions.pop(key, None)

    def emit(
        self,
        at: float,
        kind: EventKind,
        severity: Severity,
        message: str,
        *,
        group: str | None = None,
        channel: str | None = None,
        condition: str | None = None,
        active: bool = False,
        **data: Any,
    ) -> Event:
        """Record an event; with ``condition``, also raise (``active``) or clear the named
        condition shown in the status pane until it clears."""
        wall = self._clock.wall_of(at)
        event = Event(
            wall,
            kind,
            severity,
            self.unit_id,
            group,
            channel,
            message,
            MappingProxyType({k: to_jsonable(v) for k, v in data.items()}),
        )
        if condition is not None:
            if active:
                previous = self._conditions.get(condition)
                since = previous.since if previous and previous.kind is kind else wall
                self._conditions[condition] = ActiveCondition(
                    condition, kind, severity, since, group, channel, message
                )
            else:
                self._conditions.pop(condition, None)
        self._events.append(event)
        for callback in list(self._event_listeners):
            try:
                callback(event)
            except Exception:
                _LOG.exception("event listener failed")
        for queue in list(self._queues):
            queue.put(event)
        log = _LOG.warning if severity is not Severity.INFO else _LOG.info
        log("%s: %s", kind.value, message)
        return event
