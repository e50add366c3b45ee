"""One model of the whole PDU: the unit state the bus master and the meter reader update,
and the immutable snapshots and events the web, storage and peer layers read.

Layering: transport -> protocol -> bus master / meter reader -> **unit state** -> storage,
web. The state knows nothing about serial ports, SQLite or HTTP. It runs on the event loop
(its methods are plain, fast, synchronous calls; none blocks), and it never controls power
(R7): nothing here switches, trips or resets anything.

Time: every ``at`` / ``received_at`` the updaters pass is in the timebase of ``clock``
(default ``time.monotonic``, which is what ``asyncio`` loop.time() returns), so dwell times
and staleness never jump when NTP sets a Pi's clock at boot. Events and snapshots carry
wall-clock times (seconds since the epoch), converted at the moment they are made.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from enum import Enum, StrEnum
from pathlib import PurePath
from types import MappingProxyType
from typing import Any, Protocol

from host.breaker import (
    PHASES,
    TRIP_CAUSE_TEXT,
    BreakerLed,
    BreakerLoad,
    BreakerSettings,
    Confidence,
    LoadLevel,
    LoadLevelChange,
    LoadSample,
    MainBreakerMonitor,
    Phase,
    TripCause,
    TripDiagnosis,
    TripEvidence,
    breaker_spec,
)
from host.config import (
    CHANNELS_PER_GROUP,
    MODEL_GROUPS,
    ServiceConfig,
    channel_id,
    default_config,
    parse_channel_id,
    validate_label,
)
from host.supervision import (
    SupervisionSet,
    SupervisionSettings,
    SupervisionState,
    SupervisionStatus,
    SupervisionTransition,
)
from protocol import consts as C
from protocol.messages import Info, Report, Status, Telemetry

__all__ = [
    "METER_QUANTITIES",
    "BoardSnapshot",
    "ChannelSample",
    "ChannelSnapshot",
    "ChannelState",
    "Event",
    "EventKind",
    "EventQueue",
    "Freshness",
    "GroupSnapshot",
    "LinkStats",
    "MainsSnapshot",
    "MeterQuantity",
    "MeterReading",
    "MeterSample",
    "MeterSnapshot",
    "PhaseCurrents",
    "Severity",
    "StateBusListener",
    "UnitSnapshot",
    "UnitState",
    "to_jsonable",
    "validate_label",
]

_LOG = logging.getLogger(__name__)

RECENT_EVENTS = 50  # kept in every snapshot for the status pane
EVENT_HISTORY = 500  # kept in memory; the event log lives in storage
TEMPERATURE_CLEAR_MARGIN_C = 5.0
MAINS_BOARD_TYPES = (C.BOARD_MAINS_STATUS, C.BOARD_MAINS_STATUS_SIM)
BOARD_TYPE_NAMES = {
    C.BOARD_PICO_MCP3208: "pico_mcp3208",
    C.BOARD_SIM: "sim",
    C.BOARD_MAINS_STATUS: "mains_status",
    C.BOARD_MAINS_STATUS_SIM: "mains_status_sim",
}
BOARD_FLAG_NAMES = (
    (C.F_CONFIG_DEFAULTS, "config_defaults"),
    (C.F_CLIPPING, "clipping"),
    (C.F_IDENTIFY, "identify"),
    (C.F_NO_VREF, "no_voltage_reference"),
    (C.F_WATCHDOG_RESET, "watchdog_reset"),
    (C.F_TASK_RESTARTED, "task_restarted"),
)
# Board flags worth an event when they appear (clipping and identify come and go).
BOARD_FLAG_EVENTS = {
    C.F_CONFIG_DEFAULTS: "runs on default settings: its config file was missing or corrupt",
    C.F_WATCHDOG_RESET: "was restarted by its watchdog",
    C.F_TASK_RESTARTED: "restarted a crashed firmware task",
    C.F_NO_VREF: "has no voltage reference; it uses the meter's frequency",
}


# ----------------------------------------------------------------------------- vocabulary


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


class ChannelState(StrEnum):
    """The board's classification (protocol ST_*), plus NO_DATA before the first report."""

    NO_DATA = "no_data"
    OFF = "off"
    OK = "ok"
    SLIGHT = "slight"
    SERIOUS = "serious"
    TRIPPED = "tripped"


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


class Freshness(StrEnum):
    NO_DATA = "no_data"  # nothing received yet
    LIVE = "live"
    STALE = "stale"  # older than its stale limit: shown, never as live
    OFFLINE = "offline"  # the source is gone
    DISABLED = "disabled"  # the meter is switched off in the config


class BreakerPosition(StrEnum):
    UNKNOWN = "unknown"
    CLOSED = "closed"
    OPEN = "open"  # switched off
    TRIPPED = "tripped"


@dataclass(frozen=True)
class MeterQuantity:
    name: str  # the register map's name (tools/meter_maps/sdm630.toml)
    unit: str
    label: str


def _q(name: str, unit: str, label: str) -> MeterQuantity:
    return MeterQuantity(name, unit, label)


# Every R5 quantity, in the order the meter's buttons show them.
METER_QUANTITIES: tuple[MeterQuantity, ...] = (
    _q("l1_current", "A", "L1 current"),
    _q("l2_current", "A", "L2 current"),
    _q("l3_current", "A", "L3 current"),
    _q("neutral_current", "A", "Neutral current"),
    _q("l1_current_demand", "A", "L1 current demand"),
    _q("l2_current_demand", "A", "L2 current demand"),
    _q("l3_current_demand", "A", "L3 current demand"),
    _q("max_l1_current_demand", "A", "L1 max current demand"),
    _q("max_l2_current_demand", "A", "L2 max current demand"),
    _q("max_l3_current_demand", "A", "L3 max current demand"),
    _q("neutral_current_demand", "A", "Neutral current demand"),
    _q("max_neutral_current_demand", "A", "Neutral max current demand"),
    _q("l1_voltage", "V", "L1-N voltage"),
    _q("l2_voltage", "V", "L2-N voltage"),
    _q("l3_voltage", "V", "L3-N voltage"),
    _q("l1_l2_voltage", "V", "L1-L2 voltage"),
    _q("l2_l3_voltage", "V", "L2-L3 voltage"),
    _q("l3_l1_voltage", "V", "L3-L1 voltage"),
    _q("frequency", "Hz", "Frequency"),
    _q("l1_power", "W", "L1 power"),
    _q("l2_power", "W", "L2 power"),
    _q("l3_power", "W", "L3 power"),
    _q("total_power", "W", "Total power"),
    _q("l1_reactive_power", "VAr", "L1 reactive power"),
    _q("l2_reactive_power", "VAr", "L2 reactive power"),
    _q("l3_reactive_power", "VAr", "L3 reactive power"),
    _q("total_reactive_power", "VAr", "Total reactive power"),
    _q("l1_apparent_power", "VA", "L1 apparent power"),
    _q("l2_apparent_power", "VA", "L2 apparent power"),
    _q("l3_apparent_power", "VA", "L3 apparent power"),
    _q("total_apparent_power", "VA", "Total apparent power"),
    _q("total_power_factor", "", "Average power factor"),
    _q("total_power_demand", "W", "Power demand"),
    _q("max_total_power_demand", "W", "Max power demand"),
    _q("total_va_demand", "VA", "VA demand"),
    _q("max_total_va_demand", "VA", "Max VA demand"),
    _q("import_energy", "kWh", "Import energy"),
    _q("import_reactive_energy", "kVArh", "Import reactive energy"),
)
METER_QUANTITY_BY_NAME = {q.name: q for q in METER_QUANTITIES}
_PHASE_CURRENTS = ("l1_current", "l2_current", "l3_current")
_PHASE_VOLTAGES = ("l1_voltage", "l2_voltage", "l3_voltage")


# ----------------------------------------------------------------------------- JSON


def to_jsonable(value: object) -> Any:
    """Plain JSON types from snapshots and events: dataclasses become objects, enums their
    value, tuples lists, non-finite floats null, bytes hex."""
    if isinstance(value, Enum):
        return value.value if isinstance(value, StrEnum) else value.name.lower()
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        items = value.items()  # pyright: ignore[reportUnknownVariableType]
        return {str(k): to_jsonable(v) for k, v in items}  # pyright: ignore[reportUnknownArgumentType]
    if isinstance(value, tuple | list | frozenset | set):
        return [to_jsonable(v) for v in value]  # pyright: ignore[reportUnknownVariableType]
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, PurePath):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


# ----------------------------------------------------------------------------- events


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


# ----------------------------------------------------------------------------- snapshots


@dataclass(frozen=True)
class LinkStats:
    """Bus link quality of one board, as the bus master measures it."""

    frames_ok: int = 0
    crc_errors: int = 0
    timeouts: int = 0
    latency_ms: float | None = None


@dataclass(frozen=True)
class PhaseCurrents:
    l1: float = 0.0
    l2: float = 0.0
    l3: float = 0.0

    @property
    def total(self) -> float:
        return self.l1 + self.l2 + self.l3

    def of(self, phase: Phase) -> float:
        return {"L1": self.l1, "L2": self.l2, "L3": self.l3}[phase]


@dataclass(frozen=True)
class ChannelSnapshot:
    id: str  # "A7"
    group: str
    number: int  # 1..12, as on the front panel
    label: str
    phase: Phase
    rating_a: float
    state: ChannelState
    current_a: float | None  # None: no valid measurement
    over_range: bool  # beyond the REPORT's range (163.83 A): current_a is a lower bound
    crest_factor: float | None
    time_to_trip_s: float | None  # only while SLIGHT / SERIOUS, when the board knows it
    clipped: bool
    supervision: SupervisionState
    updated_at: float | None
    freshness: Freshness
    # Its monitor button is blue: selected on the board's front panel, so the group's LOAD
    # CURRENT display shows it (from the board's REPORTs; False while the board is offline).
    selected: bool = False


@dataclass(frozen=True)
class BoardSnapshot:
    address: int | None
    online: bool
    board_type: str | None
    firmware: str | None  # "1.2.0"
    firmware_mismatch: bool
    uid: str | None  # hex
    config_digest: int | None
    flags: tuple[str, ...]
    link: LinkStats
    board_rx_errors: int | None  # frames the board rejected (its own count)
    uptime_s: int | None
    mains_hz: float | None  # frequency its RMS window uses
    last_seen: float | None


@dataclass(frozen=True)
class GroupSnapshot:
    letter: str
    board: BoardSnapshot
    channels: tuple[ChannelSnapshot, ...]
    current_a: float  # sum of the live channels
    phase_currents: PhaseCurrents  # sum of the live channels per phase
    # The output (1..12) selected on the front panel, whose current the LOAD CURRENT display
    # shows; None: nothing selected (the display's idle pattern), or the board is offline.
    selected: int | None = None


@dataclass(frozen=True)
class MeterReading:
    name: str
    label: str
    unit: str
    value: float
    at: float
    freshness: Freshness


@dataclass(frozen=True)
class MeterSnapshot:
    enabled: bool
    freshness: Freshness
    last_reading_at: float | None
    last_error: str | None
    readings: tuple[MeterReading, ...]  # METER_QUANTITIES first, then any extra names

    def get(self, name: str) -> MeterReading | None:
        for reading in self.readings:
            if reading.name == name:
                return reading
        return None

    def live_value(self, name: str) -> float | None:
        reading = self.get(name)
        return reading.value if reading and reading.freshness is Freshness.LIVE else None


@dataclass(frozen=True)
class BreakerSnapshot:
    type_name: str
    settings: BreakerSettings
    load: BreakerLoad | None
    level: LoadLevel
    neutral_level: LoadLevel
    led: BreakerLed
    freshness: Freshness  # of the load (the meter's)
    last_trip: TripDiagnosis | None


@dataclass(frozen=True)
class MainsSnapshot:
    """The mains status node: breaker contacts, E-Stop, loss of Neutral, temperature."""

    online: bool
    address: int | None
    breaker: BreakerPosition
    emergency_stop: bool | None
    neutral_lost: bool | None
    temperature_c: float | None
    temperature_fault: bool | None
    trip_count: int | None
    latched_cause: TripCause | None
    last_trip: TripDiagnosis | None
    updated_at: float | None
    freshness: Freshness


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


@dataclass(frozen=True)
class UnitSnapshot:
    unit_id: str
    name: str
    model: int
    version: int  # increases with every change of the state
    taken_at: float
    groups: tuple[GroupSnapshot, ...]
    channel_phase_currents: PhaseCurrents  # sum of every live channel per phase
    meter: MeterSnapshot
    breaker: BreakerSnapshot
    mains: MainsSnapshot
    warning_triangle: bool  # R12: a supervised channel is out of its range
    conditions: tuple[ActiveCondition, ...]  # worst first
    recent_events: tuple[Event, ...]  # newest last

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(self)

    def channel(self, cid: str) -> ChannelSnapshot:
        group, number = parse_channel_id(cid)
        for g in self.groups:
            if g.letter == group:
                return g.channels[number - 1]
        raise KeyError(cid)

    def iter_channels(self) -> Iterator[ChannelSnapshot]:
        for group in self.groups:
            yield from group.channels


# ----------------------------------------------------------------------------- samples


@dataclass(frozen=True)
class ChannelSample:
    """Every report of one group, for the black box (finer than the 1 s history)."""

    at: float  # wall clock
    group: str
    currents_a: tuple[float | None, ...]
    states: tuple[ChannelState, ...]


@dataclass(frozen=True)
class MeterSample:
    at: float  # wall clock
    readings: Mapping[str, float]


Sample = ChannelSample | MeterSample


# ----------------------------------------------------------------------------- internals


class _Channel:
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


class _Board:
    __slots__ = (
        "address",
        "board_type",
        "config_digest",
        "firmware",
        "flags",
        "group",
        "last_seen",
        "link",
        "mains_hz",
        "mismatch_reported",
        "online",
        "rx_errors",
        "selected",
        "uid",
        "uptime",
    )

    def __init__(self, address: int) -> None:
        self.address = address
        self.board_type: int | None = None
        self.group = ""
        self.uid: bytes | None = None
        self.firmware: tuple[int, int, int] | None = None
        self.config_digest: int | None = None
        self.flags = 0
        self.online = False
        self.last_seen: float | None = None
        self.link = LinkStats()
        self.rx_errors: int | None = None
        self.uptime: int | None = None
        self.mains_hz: float | None = None
        self.mismatch_reported: tuple[int, int, int] | None = None
        self.selected: int | None = None  # front-panel output 1..12 (REPORT), None: none

    @property
    def is_mains(self) -> bool:
        return self.board_type in MAINS_BOARD_TYPES


class _Mains:
    __slots__ = (
        "cause",
        "estop",
        "inputs",
        "last_trip",
        "neutral_lost",
        "temp_fault",
        "temperature",
        "temperature_high",
        "trip_count",
        "updated_at",
    )

    def __init__(self) -> None:
        self.inputs: int | None = None
        self.cause: int | None = None
        self.estop: bool | None = None
        self.neutral_lost: bool | None = None
        self.temperature: float | None = None
        self.temp_fault: bool | None = None
        self.temperature_high = False
        self.trip_count: int | None = None
        self.updated_at: float | None = None
        self.last_trip: TripDiagnosis | None = None

    @property
    def position(self) -> BreakerPosition:
        if self.inputs is None:
            return BreakerPosition.UNKNOWN
        if self.inputs & C.IN_BREAKER_TRIPPED:
            return BreakerPosition.TRIPPED
        if self.inputs & C.IN_BREAKER_CLOSED:
            return BreakerPosition.CLOSED
        return BreakerPosition.OPEN


def _fmt_version(version: tuple[int, int, int] | None) -> str | None:
    return None if version is None else ".".join(str(v) for v in version)


def _flag_names(flags: int) -> tuple[str, ...]:
    return tuple(name for bit, name in BOARD_FLAG_NAMES if flags & bit)


def _severity_rank(severity: Severity) -> int:
    return {Severity.ALARM: 0, Severity.WARNING: 1, Severity.INFO: 2}[severity]


# ----------------------------------------------------------------------------- subscriptions


class EventQueue:
    """Events for one consumer (a web client, the event logger). Bounded: when a slow
    consumer lets it fill up, the oldest events are dropped (counted in ``dropped``), so a
    stuck browser can never hold up the bus."""

    def __init__(self, state: UnitState, maxsize: int) -> None:
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self._state = state
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
        self._state._queues.discard(self)  # pyright: ignore[reportPrivateUsage]

    def __enter__(self) -> EventQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __aiter__(self) -> EventQueue:
        return self

    async def __anext__(self) -> Event:
        return await self.get()


# ----------------------------------------------------------------------------- the state


class UnitState:
    """The live model of one smartPDU. Updated by the bus master and the meter reader, read
    through ``snapshot()``; changes are announced to listeners and ``wait_changed``."""

    def __init__(
        self,
        config: ServiceConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config or default_config()
        self._clock = clock
        self._wall_clock = wall_clock
        unit = self.config.unit
        self.unit_id = unit.unit_id
        self.model = unit.model
        self._name = unit.name
        self._groups = MODEL_GROUPS[unit.model]
        channels_config = self.config.channels
        self._channels: dict[str, _Channel] = {}
        self._by_group: dict[str, list[_Channel]] = {}
        for group in self._groups:
            for number in range(1, CHANNELS_PER_GROUP + 1):
                ch = _Channel(
                    group,
                    number,
                    channels_config.phase_of(group, number),
                    channels_config.rating_a,
                )
                self._channels[ch.id] = ch
        self._supervision = SupervisionSet(self._channels)
        self._boards: dict[int, _Board] = {}
        self._group_boards: dict[str, int] = {}  # group letter -> address
        self._mains_address: int | None = None
        self._mains = _Mains()
        self._breaker = MainBreakerMonitor(self.config.breaker)
        self._breaker_reported = {"phase": LoadLevel.NORMAL, "neutral": LoadLevel.NORMAL}
        self._meter_values: dict[str, tuple[float, float]] = {}  # name -> (value, at)
        self._meter_last_ok: float | None = None
        self._meter_forced_offline = False
        self._meter_error: str | None = None
        self._meter_freshness = (
            Freshness.NO_DATA if self.config.meter.enabled else Freshness.DISABLED
        )
        self._started_at = clock()
        self._conditions: dict[str, ActiveCondition] = {}
        self._events: deque[Event] = deque(maxlen=EVENT_HISTORY)
        self._event_listeners: list[Callable[[Event], None]] = []
        self._sample_listeners: list[Callable[[Sample], None]] = []
        self._queues: set[EventQueue] = set()
        self._version = 0
        self._snapshot: UnitSnapshot | None = None
        self._changed: asyncio.Event | None = None

    # -- time ------------------------------------------------------------------------------

    def now(self) -> float:
        return self._clock()

    def wall(self, at: float | None) -> float | None:
        """Wall-clock time of a ``clock`` time."""
        if at is None:
            return None
        return self._wall_clock() - (self._clock() - at)

    # -- listeners -------------------------------------------------------------------------

    @property
    def version(self) -> int:
        return self._version

    def add_event_listener(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback(event)`` for every event; returns the function that removes it.
        Callbacks run on the event loop inside the update: keep them short."""
        self._event_listeners.append(callback)
        return lambda: self._remove(self._event_listeners, callback)

    def add_sample_listener(self, callback: Callable[[Sample], None]) -> Callable[[], None]:
        """Every group report and meter reading as it arrives (the black box uses this)."""
        self._sample_listeners.append(callback)
        return lambda: self._remove(self._sample_listeners, callback)

    @staticmethod
    def _remove(listeners: list[Callable[[Any], None]], callback: Callable[[Any], None]) -> None:
        with contextlib.suppress(ValueError):
            listeners.remove(callback)

    def event_queue(self, maxsize: int = 1000) -> EventQueue:
        """A bounded queue of the events from now on; ``close()`` it (or use ``with``)."""
        queue = EventQueue(self, maxsize)
        self._queues.add(queue)
        return queue

    async def wait_changed(self, since_version: int, timeout: float | None = None) -> int:
        """Wait until the state is newer than ``since_version``; returns the new version
        (or the same one after ``timeout``)."""
        if self._version != since_version:
            return self._version
        if self._changed is None:
            self._changed = asyncio.Event()
        changed = self._changed
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation that
        # arrives as the event is set, and with hundreds of changes a second that happens:
        # the service then never stopped (its live view kept running).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await changed.wait()
        return self._version

    def _touch(self) -> None:
        self._version += 1
        self._snapshot = None
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def _notify_samples(self, sample: Sample) -> None:
        for callback in list(self._sample_listeners):
            try:
                callback(sample)
            except Exception:
                _LOG.exception("sample listener failed")

    def _emit(
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
        wall = self.wall(at)
        assert wall is not None
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

    # -- user settings ---------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    def _channel(self, cid: str) -> _Channel:
        group, number = parse_channel_id(cid, self.model)
        return self._channels[channel_id(group, number)]

    def restore_settings(
        self,
        *,
        unit_name: str | None = None,
        labels: Mapping[str, str] | None = None,
        supervision: Mapping[str, SupervisionSettings] | None = None,
    ) -> None:
        """Settings loaded from storage at start-up: applied without events. Entries for
        channels this model does not have are ignored (a unit re-configured 72 -> 48)."""
        now = self.now()
        if unit_name is not None:
            self._name = validate_label(unit_name)
        for cid, label in (labels or {}).items():
            with contextlib.suppress(ValueError, KeyError):
                self._channel(cid).label = validate_label(label)
        for cid, settings in (supervision or {}).items():
            with contextlib.suppress(ValueError, KeyError):
                ch = self._channel(cid)
                self._supervision[ch.id].configure(settings, now)
        self._touch()

    def set_unit_name(self, name: str) -> str:
        """Rename the unit (pane B, pen icon). ValueError for an invalid name."""
        clean = validate_label(name)
        if clean != self._name:
            old, self._name = self._name, clean
            self._emit(
                self.now(),
                EventKind.SETTINGS_CHANGED,
                Severity.INFO,
                f"unit renamed from '{old}' to '{clean}'" if old else f"unit named '{clean}'",
                setting="unit_name",
                old=old,
                new=clean,
            )
            self._touch()
        return clean

    def set_channel_label(self, cid: str, label: str) -> str:
        """Label a channel (R11). ValueError for an unknown channel or an invalid label."""
        ch = self._channel(cid)
        clean = validate_label(label)
        if clean != ch.label:
            old, ch.label = ch.label, clean
            self._emit(
                self.now(),
                EventKind.SETTINGS_CHANGED,
                Severity.INFO,
                f"{ch.id} label set to '{clean}'" if clean else f"{ch.id} label removed",
                group=ch.group,
                channel=ch.id,
                setting="label",
                old=old,
                new=clean,
            )
            self._touch()
        return clean

    def supervision_defaults(self) -> SupervisionSettings:
        channels = self.config.channels
        return SupervisionSettings(
            enabled=False,
            min_a=0.0,
            max_a=channels.rating_a,
            dwell_s=channels.supervision_dwell_s,
            hysteresis_a=channels.supervision_hysteresis_a,
        )

    def supervision_of(self, cid: str) -> SupervisionSettings:
        return self._supervision[self._channel(cid).id].settings

    def set_supervision(self, cid: str, settings: SupervisionSettings) -> SupervisionSettings:
        """Set a channel's supervision (R12, eye icon). ValueError if out of range."""
        ch = self._channel(cid)
        settings = settings.validated()
        supervisor = self._supervision[ch.id]
        old = supervisor.settings
        if settings == old:
            return settings
        now = self.now()
        current = ch.current if self._channel_freshness(ch, now) is Freshness.LIVE else None
        transitions = supervisor.configure(settings, now, current)
        if settings.enabled:
            text = f"{ch.id} supervised between {settings.min_a:g} and {settings.max_a:g} A"
        else:
            text = f"{ch.id} supervision switched off"
        self._emit(
            now,
            EventKind.SETTINGS_CHANGED,
            Severity.INFO,
            text,
            group=ch.group,
            channel=ch.id,
            setting="supervision",
            old=old,
            new=settings,
        )
        self._supervision_events(ch, transitions)
        self._touch()
        return settings

    # -- boards ----------------------------------------------------------------------------

    def _board(self, address: int) -> _Board:
        board = self._boards.get(address)
        if board is None:
            board = self._boards[address] = _Board(address)
        return board

    def board_online(
        self,
        address: int,
        at: float,
        *,
        board_type: int | None = None,
        uid: bytes | None = None,
        group: str = "",
    ) -> None:
        """The bus master heard from a board (first time, or back after being offline)."""
        board = self._board(address)
        if board_type is not None:
            board.board_type = board_type
        if uid is not None:
            board.uid = bytes(uid)
        board.last_seen = at
        was_online = board.online
        board.online = True
        assigned = False
        if board.is_mains or address == self._mains_address:
            self._mains_address = address
        elif group:
            assigned = self._assign_group(board, group, at)
        if not was_online or assigned:
            self._board_online_event(board, at)
        self._touch()

    def board_info(self, address: int, info: Info, at: float) -> None:
        """INFO from a board: firmware, uid, group, config digest and flags."""
        board = self._board(address)
        board.board_type = info.board_type
        board.uid = bytes(info.uid)
        major, minor, patch = info.fw_version
        board.firmware = (int(major), int(minor), int(patch))
        board.config_digest = info.config_digest
        if board.is_mains:
            self._mains_address = address
        elif info.group and self._assign_group(board, info.group, at) and board.online:
            self._board_online_event(board, at)
        self._update_flags(board, info.flags, at)
        self._check_firmware(at)
        self._touch()

    def board_offline(self, address: int, at: float, reason: str = "no answer") -> None:
        board = self._boards.get(address)
        if board is None or not board.online:
            return
        board.online = False
        board.selected = None  # unknown until its next REPORT
        if board.is_mains:
            self._emit(
                at,
                EventKind.BOARD_OFFLINE,
                Severity.ALARM,
                f"mains status node offline ({reason}): breaker, E-Stop and Neutral status unknown",
                condition="board:mains",
                active=True,
                address=address,
                reason=reason,
            )
        elif board.group and self._group_boards.get(board.group) == address:
            self._emit(
                at,
                EventKind.BOARD_OFFLINE,
                Severity.ALARM,
                f"group {board.group} board offline ({reason}): its 12 channels are not monitored",
                group=board.group,
                condition=f"board:{board.group}",
                active=True,
                address=address,
                reason=reason,
            )
            for ch in self._group_channels(board.group):
                self._supervision[ch.id].observe(None, at)
        self._touch()

    def update_link(self, address: int, stats: LinkStats) -> None:
        """Link counters from the bus master (no event: the snapshot shows them)."""
        board = self._board(address)
        if stats != board.link:
            board.link = stats
            self._touch()

    def _board_online_event(self, board: _Board, at: float) -> None:
        if board.is_mains:
            self._emit(
                at,
                EventKind.BOARD_ONLINE,
                Severity.INFO,
                "mains status node online",
                condition="board:mains",
                address=board.address,
            )
        elif board.group and self._group_boards.get(board.group) == board.address:
            self._emit(
                at,
                EventKind.BOARD_ONLINE,
                Severity.INFO,
                f"group {board.group} board online",
                group=board.group,
                condition=f"board:{board.group}",
                address=board.address,
            )

    def _assign_group(self, board: _Board, group: str, at: float) -> bool:
        """Make ``board`` the board of ``group``; True when that is new."""
        if board.group == group and self._group_boards.get(group) == board.address:
            return False
        if group not in self._groups:
            self._emit(
                at,
                EventKind.BOARD_CONFLICT,
                Severity.WARNING,
                f"a board (address {board.address}) says it serves group {group}, which the "
                f"smartPDU {self.model} does not have; its data is ignored",
                group=group,
                address=board.address,
            )
            return False
        previous = self._group_boards.get(group)
        if previous is not None and previous != board.address:
            other = self._boards.get(previous)
            if other is not None and other.online:
                self._emit(
                    at,
                    EventKind.BOARD_CONFLICT,
                    Severity.ALARM,
                    f"two boards claim group {group} (addresses {previous} and "
                    f"{board.address}); showing address {board.address}",
                    group=group,
                    addresses=[previous, board.address],
                )
            if other is not None:
                other.group = ""
        if board.group and self._group_boards.get(board.group) == board.address:
            del self._group_boards[board.group]
        board.group = group
        self._group_boards[group] = board.address
        return True

    def _update_flags(self, board: _Board, flags: int, at: float) -> None:
        appeared = flags & ~board.flags
        board.flags = flags
        where = "mains status node" if board.is_mains else f"group {board.group or '?'} board"
        for bit, text in BOARD_FLAG_EVENTS.items():
            if appeared & bit:
                severity = Severity.INFO if bit == C.F_NO_VREF else Severity.WARNING
                self._emit(
                    at,
                    EventKind.BOARD_HEALTH,
                    severity,
                    f"{where} {text}",
                    group=board.group or None,
                    address=board.address,
                    flag=dict(BOARD_FLAG_NAMES)[bit],
                )

    def _reference_firmware(self) -> tuple[int, int, int] | None:
        expected = self.config.bus.expected_firmware
        if expected is not None:
            return expected
        versions = [
            b.firmware
            for b in self._boards.values()
            if not b.is_mains and b.group and b.firmware is not None
        ]
        if not versions:
            return None
        # The most common version; on a tie the newest, which is the likely target.
        return max(set(versions), key=lambda v: (versions.count(v), v))

    def _check_firmware(self, at: float) -> None:
        reference = self._reference_firmware()
        for board in self._boards.values():
            if board.is_mains or not board.group or board.firmware is None:
                continue
            key = f"firmware:{board.group}"
            if reference is not None and board.firmware != reference:
                if board.mismatch_reported != board.firmware:
                    board.mismatch_reported = board.firmware
                    self._emit(
                        at,
                        EventKind.BOARD_FIRMWARE_MISMATCH,
                        Severity.WARNING,
                        f"group {board.group} board runs firmware "
                        f"{_fmt_version(board.firmware)}, expected {_fmt_version(reference)}",
                        group=board.group,
                        condition=key,
                        active=True,
                        firmware=_fmt_version(board.firmware),
                        expected=_fmt_version(reference),
                    )
            elif board.mismatch_reported is not None:
                board.mismatch_reported = None
                self._conditions.pop(key, None)

    def _firmware_mismatch(self, board: _Board) -> bool:
        reference = self._reference_firmware()
        return reference is not None and board.firmware is not None and board.firmware != reference

    def _group_channels(self, group: str) -> list[_Channel]:
        # Every REPORT (hundreds a second) goes through here: build each group's list once.
        channels = self._by_group.get(group)
        if channels is None:
            channels = [
                self._channels[channel_id(group, n)] for n in range(1, CHANNELS_PER_GROUP + 1)
            ]
            self._by_group[group] = channels
        return channels

    def _group_of(self, address: int, at: float) -> tuple[_Board, str] | None:
        board = self._boards.get(address)
        if board is None or not board.group or self._group_boards.get(board.group) != address:
            return None
        board.last_seen = at
        return board, board.group

    # -- group reports ---------------------------------------------------------------------

    def apply_report(self, address: int, report: Report, received_at: float) -> bool:
        """A compact REPORT. False when the board has no group yet (before its INFO)."""
        found = self._group_of(address, received_at)
        if found is None:
            return False
        board, group = found
        board.selected = report.selected + 1 if report.selected >= 0 else None
        for ch, centiamps, alarm in zip(
            self._group_channels(group), report.centiamps, report.alarms, strict=True
        ):
            over = centiamps >= C.REPORT_OVER_RANGE
            current = centiamps / 100.0
            if alarm:
                state = _STATE_FROM_ALARM[alarm]
                ttt = ch.ttt if alarm != C.AL_TRIPPED else None
            else:
                state = ChannelState.OFF if centiamps == 0 else ChannelState.OK
                ttt = None
            self._update_channel(ch, received_at, current, over, state, ttt)
        self._after_group_update(group, received_at)
        return True

    def apply_telemetry(self, address: int, telemetry: Telemetry, received_at: float) -> bool:
        """A full TELEMETRY: currents, states, crest factors, time to trip, board health."""
        found = self._group_of(address, received_at)
        if found is None:
            return False
        board, group = found
        board.uptime = telemetry.uptime_s
        board.rx_errors = telemetry.rx_errors
        board.mains_hz = telemetry.freq_centihz / 100.0 if telemetry.freq_centihz else None
        self._update_flags(board, telemetry.flags, received_at)
        ttts: dict[int, int] = telemetry.time_to_trip_ds
        for index, ch in enumerate(self._group_channels(group)):
            centiamps = telemetry.centiamps[index]
            current = None if centiamps == C.CENTIAMPS_INVALID else centiamps / 100.0
            state = _STATE_FROM_WIRE.get(telemetry.states[index], ChannelState.NO_DATA)
            ds = ttts.get(index)
            ttt = None if ds is None or ds == C.TTT_UNKNOWN else ds / 10.0
            crest = telemetry.crest_x10[index]
            ch.crest = crest / 10.0 if crest else None
            ch.clipped = bool(telemetry.clipped[index])
            self._update_channel(ch, received_at, current, False, state, ttt)
        self._after_group_update(group, received_at)
        return True

    def _update_channel(
        self,
        ch: _Channel,
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
            self._channel_state_event(ch, previous, at)
        self._supervision_events(ch, self._supervision[ch.id].observe(current, at))

    def _after_group_update(self, group: str, at: float) -> None:
        channels = self._group_channels(group)
        wall = self.wall(at)
        assert wall is not None
        self._notify_samples(
            ChannelSample(
                wall,
                group,
                tuple(ch.current for ch in channels),
                tuple(ch.state for ch in channels),
            )
        )
        self._touch()

    def _describe(self, ch: _Channel) -> str:
        return f"{ch.id} '{ch.label}'" if ch.label else ch.id

    def _channel_state_event(self, ch: _Channel, previous: ChannelState, at: float) -> None:
        name = self._describe(ch)
        amps = "?" if ch.current is None else f"{ch.current:.1f} A"
        pct = "" if ch.current is None else f" ({100 * ch.current / ch.rating:.0f} % of rating)"
        ttt = "" if ch.ttt is None else f"; RCBO trips in about {ch.ttt:.0f} s"
        key = f"channel:{ch.id}"
        common: dict[str, Any] = {
            "group": ch.group,
            "channel": ch.id,
            "condition": key,
            "current_a": ch.current,
            "previous": previous,
            "state": ch.state,
            "label": ch.label,
        }
        alarm = _CHANNEL_ALARMS.get(ch.state)
        if alarm is not None:
            kind, severity, what = alarm
            detail = f"{amps}{pct}{ttt}" if ch.state is not ChannelState.TRIPPED else ""
            self._emit(at, kind, severity, f"{name}: {what}{detail}", active=True, **common)
        elif previous in _ALARM_STATES:
            self._emit(
                at,
                EventKind.CHANNEL_NORMAL,
                Severity.INFO,
                f"{name}: back to normal, {amps}",
                **common,
            )

    def _supervision_events(self, ch: _Channel, transitions: list[SupervisionTransition]) -> None:
        for t in transitions:
            name = self._describe(ch)
            if t.raised:
                self._emit(
                    t.at,
                    EventKind.SUPERVISION_RAISED,
                    Severity.WARNING,
                    f"{name}: {t.reason}",
                    group=ch.group,
                    channel=ch.id,
                    condition=f"supervision:{ch.id}",
                    active=True,
                    status=t.status,
                    current_a=t.current_a,
                    min_a=t.settings.min_a,
                    max_a=t.settings.max_a,
                )
            else:
                self._emit(
                    t.at,
                    EventKind.SUPERVISION_CLEARED,
                    Severity.INFO,
                    f"{name}: supervision warning cleared, {t.reason}",
                    group=ch.group,
                    channel=ch.id,
                    condition=f"supervision:{ch.id}",
                    status=t.status,
                    current_a=t.current_a,
                    min_a=t.settings.min_a,
                    max_a=t.settings.max_a,
                )

    # -- main meter ------------------------------------------------------------------------

    def apply_meter(self, readings: Mapping[str, float], received_at: float) -> None:
        """One successful meter read (names from the meter profile). Non-finite values are
        treated as missing; quantities the read did not include keep their own age."""
        if not self.config.meter.enabled:
            return
        clean = {
            name: float(value)
            for name, value in readings.items()
            if isinstance(value, int | float) and math.isfinite(value)
        }
        for name, value in clean.items():
            self._meter_values[name] = (value, received_at)
        self._meter_last_ok = received_at
        self._meter_forced_offline = False
        self._meter_error = None
        self._refresh_meter(received_at)

        if any(name in clean for name in _PHASE_CURRENTS):
            sample = LoadSample(
                at=received_at,
                phase_currents_a=(
                    clean.get("l1_current"),
                    clean.get("l2_current"),
                    clean.get("l3_current"),
                ),
                neutral_current_a=clean.get("neutral_current"),
                phase_voltages_v=(
                    clean.get("l1_voltage"),
                    clean.get("l2_voltage"),
                    clean.get("l3_voltage"),
                ),
            )
            for change in self._breaker.update(sample):
                self._breaker_level_event(change)
        wall = self.wall(received_at)
        assert wall is not None
        self._notify_samples(MeterSample(wall, MappingProxyType(dict(clean))))
        self._touch()

    def meter_error(self, at: float, reason: str, *, offline: bool = False) -> None:
        """A failed meter read. ``offline`` True: the reader knows the meter is gone (port
        lost, several timeouts) and the values must not wait for the stale limit."""
        self._meter_error = reason
        if offline:
            self._meter_forced_offline = True
        self._refresh_meter(at)
        self._touch()

    def meter_value(self, name: str) -> float | None:
        """A live meter value (None when stale or missing): e.g. the bus master's SYNC
        frequency."""
        if self._meter_freshness is not Freshness.LIVE:
            return None
        entry = self._meter_values.get(name)
        if entry is None or self._reading_freshness(entry[1], self.now()) is not Freshness.LIVE:
            return None
        return entry[0]

    def _reading_freshness(self, at: float, now: float) -> Freshness:
        meter = self.config.meter
        if self._meter_forced_offline or now - at >= meter.offline_after_s:
            return Freshness.OFFLINE
        if now - at >= meter.stale_after_s:
            return Freshness.STALE
        return Freshness.LIVE

    def _meter_status(self, now: float) -> Freshness:
        if not self.config.meter.enabled:
            return Freshness.DISABLED
        if self._meter_last_ok is None:
            if self._meter_forced_offline or now - self._started_at >= (
                self.config.meter.offline_after_s
            ):
                return Freshness.OFFLINE
            return Freshness.NO_DATA
        return self._reading_freshness(self._meter_last_ok, now)

    def _refresh_meter(self, now: float) -> bool:
        status = self._meter_status(now)
        previous = self._meter_freshness
        if status is previous:
            return False
        self._meter_freshness = status
        error = f" ({self._meter_error})" if self._meter_error else ""
        if status is Freshness.STALE:
            self._emit(
                now,
                EventKind.METER_STALE,
                Severity.WARNING,
                "main meter readings are stale: no answer for "
                f"{self.config.meter.stale_after_s:g} s{error}",
                condition="meter",
                active=True,
            )
        elif status is Freshness.OFFLINE:
            self._emit(
                now,
                EventKind.METER_OFFLINE,
                Severity.ALARM,
                f"main meter offline: voltages, currents and the breaker load are unknown{error}",
                condition="meter",
                active=True,
            )
            for change in self._breaker.mark_unknown(now):
                self._breaker_level_event(change)
        elif status is Freshness.LIVE and previous in (Freshness.STALE, Freshness.OFFLINE):
            self._emit(
                now, EventKind.METER_LIVE, Severity.INFO, "main meter back", condition="meter"
            )
        return True

    # -- main breaker ----------------------------------------------------------------------

    def _breaker_level_event(self, change: LoadLevelChange) -> None:
        if change.level is LoadLevel.UNKNOWN:
            return  # the meter's own event says why; the last known level stays reported
        reported = self._breaker_reported[change.conductor]
        if change.level == reported:
            return
        self._breaker_reported[change.conductor] = change.level
        load = change.load
        settings = self._breaker.settings
        neutral = change.conductor == "neutral"
        if neutral:
            amps = load.neutral_current_a or 0.0
            ref = "InN" if settings.inn is not None else "In (neutral protection OFF)"
            where = "Neutral"
            pct = 100.0 * (load.neutral_fraction or 0.0)
        else:
            amps = max((a for a in load.phase_currents_a if a is not None), default=0.0)
            ref = "IR"
            where = load.highest_phase or "?"
            pct = 100.0 * (load.highest_fraction_of_ir or 0.0)
        level = change.level
        ttt = load.time_to_trip_s
        trip_text = "" if ttt is None or neutral else f"; trips in about {ttt:.0f} s if it stays"
        if level is LoadLevel.NORMAL:
            severity = Severity.INFO
            text = f"main breaker load back below 90 % {ref} ({where} {amps:.0f} A, {pct:.0f} %)"
        elif level is LoadLevel.NEAR_IR:
            severity = Severity.WARNING
            text = (
                f"main breaker load {pct:.0f} % of {ref} on {where} ({amps:.0f} A): near its limit"
            )
        elif level is LoadLevel.OVER_IR:
            severity = Severity.ALARM
            text = f"main breaker overloaded: {where} {amps:.0f} A, {pct:.0f} % of {ref}{trip_text}"
        else:
            severity = Severity.ALARM
            text = (
                f"main breaker heavily overloaded: {where} {amps:.0f} A, {pct:.0f} % of {ref} "
                f"(status LED steady){trip_text}"
            )
        self._emit(
            change.at,
            EventKind.BREAKER_NEUTRAL_LOAD if neutral else EventKind.BREAKER_LOAD,
            severity,
            text,
            condition=f"breaker:{change.conductor}",
            active=level is not LoadLevel.NORMAL,
            level=level,
            previous=change.previous,
            percent=round(pct, 1),
            current_a=amps,
            conductor=where,
            time_to_trip_s=None if neutral else ttt,
        )

    # -- mains status node -----------------------------------------------------------------

    def apply_status(self, address: int, status: Status, received_at: float) -> None:
        """STATUS from the mains status node: contacts, latched cause, temperature."""
        board = self._board(address)
        if not board.is_mains:
            board.board_type = board.board_type or C.BOARD_MAINS_STATUS
        self._mains_address = address
        board.last_seen = received_at
        board.uptime = status.uptime_s
        board.rx_errors = status.rx_errors
        mains = self._mains
        first = mains.inputs is None
        previous_position = mains.position
        previous_count = mains.trip_count
        inputs = status.inputs
        mains.inputs = inputs
        mains.cause = status.cause
        mains.trip_count = status.trip_count
        mains.updated_at = received_at
        position = mains.position
        self._breaker.set_breaker_closed(position is BreakerPosition.CLOSED)

        estop = bool(inputs & C.IN_ESTOP)
        neutral = bool(inputs & C.IN_NEUTRAL_LOST)
        self._estop_event(mains.estop, estop, received_at)
        self._neutral_event(mains.neutral_lost, neutral, received_at)
        mains.estop = estop
        mains.neutral_lost = neutral
        self._temperature(status, received_at)

        counted = previous_count is not None and status.trip_count != previous_count
        tripped_now = position is BreakerPosition.TRIPPED and (
            first or previous_position is not BreakerPosition.TRIPPED
        )
        if counted or tripped_now:
            since = None if status.since_trip_s == 0xFFFF else status.since_trip_s
            trip_at = received_at - (since or 0)
            diagnosis = self._breaker.diagnose_trip(
                TripEvidence(trip_at, estop, neutral, status.cause)
            )
            wall_trip = self.wall(trip_at)
            assert wall_trip is not None
            diagnosis = replace(diagnosis, at=wall_trip)
            mains.last_trip = diagnosis
            found = " (found tripped when monitoring started)" if first else ""
            self._emit(
                trip_at,
                EventKind.BREAKER_TRIPPED,
                Severity.ALARM,
                f"MAIN BREAKER TRIPPED: {diagnosis.text}"
                f"{' (likely)' if diagnosis.confidence is Confidence.LIKELY else ''}{found}",
                condition="breaker:trip",
                active=position is not BreakerPosition.CLOSED,
                cause=diagnosis.cause,
                confidence=diagnosis.confidence,
                evidence=list(diagnosis.evidence),
                trip_count=status.trip_count,
                found_at_start=first,
            )
        elif not first and position is not previous_position:
            if position is BreakerPosition.CLOSED:
                self._emit(
                    received_at,
                    EventKind.BREAKER_CLOSED,
                    Severity.INFO,
                    "main breaker switched on",
                    condition="breaker:trip",
                )
            elif position is BreakerPosition.OPEN and previous_position is BreakerPosition.TRIPPED:
                self._emit(
                    received_at,
                    EventKind.BREAKER_OPENED,
                    Severity.INFO,
                    "main breaker reset after its trip (handle at OFF)",
                    condition="breaker:trip",
                )
            elif position is BreakerPosition.OPEN:
                self._emit(
                    received_at,
                    EventKind.BREAKER_OPENED,
                    Severity.WARNING,
                    "main breaker switched off (no trip)",
                    condition="breaker:trip",
                )
        self._touch()

    def _estop_event(self, previous: bool | None, pressed: bool, at: float) -> None:
        if pressed == bool(previous) and previous is not None:
            return
        if pressed:
            self._emit(
                at,
                EventKind.EMERGENCY_STOP,
                Severity.ALARM,
                "Emergency Stop pressed",
                condition="mains:estop",
                active=True,
                pressed=True,
            )
        elif previous:
            self._emit(
                at,
                EventKind.EMERGENCY_STOP,
                Severity.INFO,
                "Emergency Stop released",
                condition="mains:estop",
                pressed=False,
            )

    def _neutral_event(self, previous: bool | None, lost: bool, at: float) -> None:
        if lost == bool(previous) and previous is not None:
            return
        if lost:
            self._emit(
                at,
                EventKind.NEUTRAL_LOST,
                Severity.ALARM,
                "loss of Neutral detected: have the supply wiring inspected before "
                "switching on again",
                condition="mains:neutral",
                active=True,
                lost=True,
            )
        elif previous:
            self._emit(
                at,
                EventKind.NEUTRAL_LOST,
                Severity.INFO,
                "loss-of-Neutral relay reset",
                condition="mains:neutral",
                lost=False,
            )

    def _temperature(self, status: Status, at: float) -> None:
        mains = self._mains
        fault = bool(status.inputs & C.IN_TEMP_FAULT)
        temperature = None if fault else status.temp_decidegc / 10.0
        if fault and not mains.temp_fault:
            self._emit(
                at,
                EventKind.TEMPERATURE,
                Severity.WARNING,
                "temperature sensor fault",
                condition="mains:temperature",
                active=True,
                fault=True,
            )
        limit = self.config.unit.temperature_warning_c
        if temperature is not None:
            high = temperature >= limit or (
                mains.temperature_high and temperature > limit - TEMPERATURE_CLEAR_MARGIN_C
            )
            if high and not mains.temperature_high:
                self._emit(
                    at,
                    EventKind.TEMPERATURE,
                    Severity.WARNING,
                    f"temperature {temperature:.1f} °C inside the unit (limit {limit:g} °C)",
                    condition="mains:temperature",
                    active=True,
                    temperature_c=temperature,
                )
            elif (not high and mains.temperature_high) or (not fault and mains.temp_fault):
                self._emit(
                    at,
                    EventKind.TEMPERATURE,
                    Severity.INFO,
                    f"temperature back to normal ({temperature:.1f} °C)",
                    condition="mains:temperature",
                    temperature_c=temperature,
                )
            mains.temperature_high = high
        mains.temp_fault = fault
        mains.temperature = temperature

    # -- time passing ----------------------------------------------------------------------

    def tick(self, now: float | None = None) -> None:
        """Re-judge what depends on time alone (meter staleness). Call about once a
        second; ``snapshot()`` calls it too, so a snapshot never shows stale data as live."""
        now = self.now() if now is None else now
        if self._refresh_meter(now):
            self._touch()

    # -- snapshot --------------------------------------------------------------------------

    def _channel_freshness(self, ch: _Channel, now: float) -> Freshness:
        address = self._group_boards.get(ch.group)
        board = None if address is None else self._boards.get(address)
        if ch.updated_at is None:
            return (
                Freshness.OFFLINE if board is not None and not board.online else Freshness.NO_DATA
            )
        if board is None or not board.online:
            return Freshness.OFFLINE
        if now - ch.updated_at >= self.config.bus.stale_after_s:
            return Freshness.STALE
        return Freshness.LIVE

    def snapshot(self, now: float | None = None) -> UnitSnapshot:
        """The whole unit, immutable. Rebuilt only after a change (or when time alone made
        data stale)."""
        now = self.now() if now is None else now
        self.tick(now)
        if self._snapshot is not None and not self._freshness_moved(self._snapshot, now):
            return self._snapshot
        snapshot = self._build_snapshot(now)
        self._snapshot = snapshot
        return snapshot

    def _freshness_moved(self, snapshot: UnitSnapshot, now: float) -> bool:
        for group in snapshot.groups:
            for cs in group.channels:
                if cs.freshness is Freshness.LIVE:
                    ch = self._channels[cs.id]
                    if self._channel_freshness(ch, now) is not Freshness.LIVE:
                        return True
        for reading in snapshot.meter.readings:
            if reading.freshness is Freshness.LIVE:
                entry = self._meter_values.get(reading.name)
                if entry and self._reading_freshness(entry[1], now) is not Freshness.LIVE:
                    return True
        return False

    def _build_snapshot(self, now: float) -> UnitSnapshot:
        groups: list[GroupSnapshot] = []
        totals = dict.fromkeys(PHASES, 0.0)
        for letter in self._groups:
            channel_snaps: list[ChannelSnapshot] = []
            group_phase = dict.fromkeys(PHASES, 0.0)
            selected = self._selected_output(letter)
            for ch in self._group_channels(letter):
                freshness = self._channel_freshness(ch, now)
                if freshness is Freshness.LIVE and ch.current is not None:
                    group_phase[ch.phase] += ch.current
                channel_snaps.append(
                    ChannelSnapshot(
                        id=ch.id,
                        group=letter,
                        number=ch.number,
                        label=ch.label,
                        phase=ch.phase,
                        rating_a=ch.rating,
                        state=ch.state,
                        current_a=ch.current,
                        over_range=ch.over_range,
                        crest_factor=ch.crest,
                        time_to_trip_s=ch.ttt,
                        clipped=ch.clipped,
                        supervision=self._supervision_snapshot(ch),
                        updated_at=self.wall(ch.updated_at),
                        freshness=freshness,
                        selected=ch.number == selected,
                    )
                )
            for phase in PHASES:
                totals[phase] += group_phase[phase]
            phase_currents = PhaseCurrents(group_phase["L1"], group_phase["L2"], group_phase["L3"])
            groups.append(
                GroupSnapshot(
                    letter=letter,
                    board=self._board_snapshot(self._group_boards.get(letter)),
                    channels=tuple(channel_snaps),
                    current_a=phase_currents.total,
                    phase_currents=phase_currents,
                    selected=selected,
                )
            )
        meter = self._meter_snapshot(now)
        conditions = sorted(
            self._conditions.values(), key=lambda c: (_severity_rank(c.severity), c.since)
        )
        wall_now = self.wall(now)
        assert wall_now is not None
        return UnitSnapshot(
            unit_id=self.unit_id,
            name=self._name,
            model=self.model,
            version=self._version,
            taken_at=wall_now,
            groups=tuple(groups),
            channel_phase_currents=PhaseCurrents(totals["L1"], totals["L2"], totals["L3"]),
            meter=meter,
            breaker=self._breaker_snapshot(meter),
            mains=self._mains_snapshot(now),
            warning_triangle=self._supervision.warning_triangle,
            conditions=tuple(conditions),
            recent_events=tuple(self._events)[-RECENT_EVENTS:],
        )

    def _selected_output(self, letter: str) -> int | None:
        address = self._group_boards.get(letter)
        board = None if address is None else self._boards.get(address)
        return board.selected if board is not None and board.online else None

    def _supervision_snapshot(self, ch: _Channel) -> SupervisionState:
        state = self._supervision[ch.id].state()
        return replace(
            state,
            since=self.wall(state.since),
            out_of_range_since=self.wall(state.out_of_range_since),
        )

    def _board_snapshot(self, address: int | None) -> BoardSnapshot:
        board = None if address is None else self._boards.get(address)
        if board is None:
            return BoardSnapshot(
                address=None,
                online=False,
                board_type=None,
                firmware=None,
                firmware_mismatch=False,
                uid=None,
                config_digest=None,
                flags=(),
                link=LinkStats(),
                board_rx_errors=None,
                uptime_s=None,
                mains_hz=None,
                last_seen=None,
            )
        return BoardSnapshot(
            address=board.address,
            online=board.online,
            board_type=None
            if board.board_type is None
            else BOARD_TYPE_NAMES.get(board.board_type, str(board.board_type)),
            firmware=_fmt_version(board.firmware),
            firmware_mismatch=self._firmware_mismatch(board),
            uid=None if board.uid is None else board.uid.hex(),
            config_digest=board.config_digest,
            flags=_flag_names(board.flags),
            link=board.link,
            board_rx_errors=board.rx_errors,
            uptime_s=board.uptime,
            mains_hz=board.mains_hz,
            last_seen=self.wall(board.last_seen),
        )

    def _meter_snapshot(self, now: float) -> MeterSnapshot:
        readings: list[MeterReading] = []
        names = [q.name for q in METER_QUANTITIES if q.name in self._meter_values]
        names += sorted(n for n in self._meter_values if n not in METER_QUANTITY_BY_NAME)
        for name in names:
            value, at = self._meter_values[name]
            quantity = METER_QUANTITY_BY_NAME.get(name, MeterQuantity(name, "", name))
            wall = self.wall(at)
            assert wall is not None
            readings.append(
                MeterReading(
                    name,
                    quantity.label,
                    quantity.unit,
                    value,
                    wall,
                    self._reading_freshness(at, now),
                )
            )
        return MeterSnapshot(
            enabled=self.config.meter.enabled,
            freshness=self._meter_freshness,
            last_reading_at=self.wall(self._meter_last_ok),
            last_error=self._meter_error,
            readings=tuple(readings),
        )

    def _breaker_snapshot(self, meter: MeterSnapshot) -> BreakerSnapshot:
        monitor = self._breaker
        load = monitor.load
        live = meter.freshness is Freshness.LIVE and load is not None
        if load is not None:
            wall = self.wall(load.at)
            assert wall is not None
            load = replace(load, at=wall)
        return BreakerSnapshot(
            type_name=breaker_spec(self.model).type_name,
            settings=monitor.settings,
            load=load,
            level=load.level if live and load else LoadLevel.UNKNOWN,
            neutral_level=load.neutral_level if live and load else LoadLevel.UNKNOWN,
            led=load.led if live and load else BreakerLed.UNKNOWN,
            freshness=meter.freshness if load is not None else Freshness.NO_DATA,
            last_trip=self._mains.last_trip,
        )

    def _mains_snapshot(self, now: float) -> MainsSnapshot:
        mains = self._mains
        address = self._mains_address
        board = None if address is None else self._boards.get(address)
        online = board is not None and board.online
        if mains.updated_at is None:
            freshness = Freshness.NO_DATA
        elif not online:
            freshness = Freshness.OFFLINE
        elif now - mains.updated_at >= self.config.bus.stale_after_s:
            freshness = Freshness.STALE
        else:
            freshness = Freshness.LIVE
        cause = mains.cause
        latched = None
        if cause is not None and cause != C.CAUSE_NONE:
            latched = {
                C.CAUSE_OVERLOAD: TripCause.OVERLOAD,
                C.CAUSE_NEUTRAL_LOST: TripCause.NEUTRAL_LOST,
                C.CAUSE_ESTOP: TripCause.EMERGENCY_STOP,
            }.get(cause, TripCause.UNKNOWN)
        return MainsSnapshot(
            online=online,
            address=address,
            breaker=mains.position
            if freshness is not Freshness.NO_DATA
            else BreakerPosition.UNKNOWN,
            emergency_stop=mains.estop,
            neutral_lost=mains.neutral_lost,
            temperature_c=mains.temperature,
            temperature_fault=mains.temp_fault,
            trip_count=mains.trip_count,
            latched_cause=latched,
            last_trip=mains.last_trip,
            updated_at=self.wall(mains.updated_at),
            freshness=freshness,
        )


# ----------------------------------------------------------------------------- bus adapter


class BoardLinkLike(Protocol):
    """What the adapter reads of the bus master's per-board record (host.busmaster's
    BoardLink), declared here so the state does not import the bus layer."""

    @property
    def address(self) -> int: ...
    @property
    def uid(self) -> bytes: ...
    @property
    def board_type(self) -> int: ...
    @property
    def group(self) -> str: ...
    @property
    def quality(self) -> LinkQualityLike: ...


class LinkQualityLike(Protocol):
    @property
    def frames_ok(self) -> int: ...
    @property
    def crc_errors(self) -> int: ...
    @property
    def timeouts(self) -> int: ...
    @property
    def latency_ms(self) -> float: ...


class StateBusListener:
    """The bus master's listener calls, applied to a UnitState. Times the master passes
    are loop time (``time.monotonic``), the state's default clock."""

    def __init__(self, state: UnitState) -> None:
        self.state = state

    def _link(self, link: BoardLinkLike) -> None:
        q = link.quality
        latency = q.latency_ms or None
        self.state.update_link(
            link.address, LinkStats(q.frames_ok, q.crc_errors, q.timeouts, latency)
        )

    def board_online(self, link: BoardLinkLike) -> None:
        self.state.board_online(
            link.address,
            self.state.now(),
            board_type=link.board_type,
            uid=link.uid,
            group=link.group,
        )

    def board_offline(self, link: BoardLinkLike) -> None:
        self._link(link)
        self.state.board_offline(link.address, self.state.now())

    def board_info(self, link: BoardLinkLike, info: Info) -> None:
        self.state.board_info(link.address, info, self.state.now())

    def report(self, link: BoardLinkLike, report: Report, received_at: float) -> None:
        self.state.apply_report(link.address, report, received_at)

    def telemetry(self, link: BoardLinkLike, telemetry: Telemetry, received_at: float) -> None:
        self._link(link)  # once per detail rotation: often enough for link figures
        self.state.apply_telemetry(link.address, telemetry, received_at)

    def status(self, link: BoardLinkLike, status: Status, received_at: float) -> None:
        self._link(link)
        self.state.apply_status(link.address, status, received_at)


def trip_cause_text(cause: TripCause) -> str:
    return TRIP_CAUSE_TEXT[cause]


def supervision_status_text(status: SupervisionStatus) -> str:
    return {
        SupervisionStatus.UNSUPERVISED: "not supervised",
        SupervisionStatus.OK: "within range",
        SupervisionStatus.BELOW_MIN: "below minimum",
        SupervisionStatus.ABOVE_MAX: "above maximum",
    }[status]
