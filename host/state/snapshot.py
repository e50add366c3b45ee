"""The immutable pictures of the unit the web, storage and peer layers read: snapshots of
every source, and the samples handed to the black box. Values only, no behaviour beyond
lookups; host.state.builder makes them from the live parts."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from host.breaker import (
    BreakerLed,
    BreakerLoad,
    BreakerSettings,
    LoadLevel,
    TripCause,
    TripDiagnosis,
)
from host.domain import Phase, parse_channel_id
from host.state.events import ActiveCondition, Event
from host.state.jsonable import to_jsonable
from host.supervision import SupervisionState


class ChannelState(StrEnum):
    """The board's classification (protocol ST_*), plus NO_DATA before the first report."""

    NO_DATA = "no_data"
    OFF = "off"
    OK = "ok"
    SLIGHT = "slight"
    SERIOUS = "serious"
    TRIPPED = "tripped"


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


Sample = ChannelSample | MeterSample  # what the sample listeners receive
