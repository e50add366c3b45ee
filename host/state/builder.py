"""Builds the immutable UnitSnapshot from the live parts. Reads only: no events, no caching,
no change to any part (the unit state decides when to rebuild)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from host.breaker import BreakerLed, LoadLevel, TripCause, breaker_spec
from host.domain import PHASES
from host.state.boards import BOARD_TYPE_NAMES, Board, BoardRegistry, flag_names, fmt_version
from host.state.channels import Channel, Channels, channel_freshness
from host.state.clock import StateClock
from host.state.events import EventHub
from host.state.mains import (
    METER_QUANTITIES,
    METER_QUANTITY_BY_NAME,
    MainBreaker,
    MainMeter,
    MainsNode,
    MeterQuantity,
)
from host.state.snapshot import (
    BoardSnapshot,
    BreakerPosition,
    BreakerSnapshot,
    ChannelSnapshot,
    Freshness,
    GroupSnapshot,
    LinkStats,
    MainsSnapshot,
    MeterReading,
    MeterSnapshot,
    PhaseCurrents,
    UnitSnapshot,
)
from host.supervision import SupervisionState
from protocol import consts as C

_LATCHED_CAUSE = {
    C.CAUSE_OVERLOAD: TripCause.OVERLOAD,
    C.CAUSE_NEUTRAL_LOST: TripCause.NEUTRAL_LOST,
    C.CAUSE_ESTOP: TripCause.EMERGENCY_STOP,
}
NO_BOARD = BoardSnapshot(
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


@dataclass(frozen=True)
class SnapshotSources:
    """The parts a snapshot is made of (references to the live, mutable parts)."""

    unit_id: str
    model: int
    groups: str
    bus_stale_after_s: float
    clock: StateClock
    hub: EventHub
    boards: BoardRegistry
    channels: Channels
    meter: MainMeter
    breaker: MainBreaker
    mains: MainsNode


def group_board_online(sources: SnapshotSources, group: str) -> bool | None:
    """Whether the board of ``group`` is online; None when no board serves it."""
    board = sources.boards.of_group(group)
    return None if board is None else board.online


def build_snapshot(sources: SnapshotSources, name: str, version: int, now: float) -> UnitSnapshot:
    groups = tuple(_group_snapshot(sources, letter, now) for letter in sources.groups)
    totals = {p: sum((g.phase_currents.of(p) for g in groups), 0.0) for p in PHASES}
    meter = _meter_snapshot(sources, now)
    return UnitSnapshot(
        unit_id=sources.unit_id,
        name=name,
        model=sources.model,
        version=version,
        taken_at=sources.clock.wall_of(now),
        groups=groups,
        channel_phase_currents=PhaseCurrents(totals["L1"], totals["L2"], totals["L3"]),
        meter=meter,
        breaker=_breaker_snapshot(sources, meter),
        mains=_mains_snapshot(sources, now),
        warning_triangle=sources.channels.supervision.warning_triangle,
        conditions=sources.hub.conditions(),
        recent_events=sources.hub.recent_events(),
    )


def _group_snapshot(sources: SnapshotSources, letter: str, now: float) -> GroupSnapshot:
    board = sources.boards.of_group(letter)
    online = None if board is None else board.online
    selected = board.selected if board is not None and board.online else None
    group_phase = dict.fromkeys(PHASES, 0.0)
    channels: list[ChannelSnapshot] = []
    for ch in sources.channels.of_group(letter):
        freshness = channel_freshness(ch, online, sources.bus_stale_after_s, now)
        if freshness is Freshness.LIVE and ch.current is not None:
            group_phase[ch.phase] += ch.current
        channels.append(_channel_snapshot(sources, ch, freshness, ch.number == selected))
    phase_currents = PhaseCurrents(group_phase["L1"], group_phase["L2"], group_phase["L3"])
    return GroupSnapshot(
        letter=letter,
        board=_board_snapshot(sources, board),
        channels=tuple(channels),
        current_a=phase_currents.total,
        phase_currents=phase_currents,
        selected=selected,
    )


def _channel_snapshot(
    sources: SnapshotSources, ch: Channel, freshness: Freshness, selected: bool
) -> ChannelSnapshot:
    return ChannelSnapshot(
        id=ch.id,
        group=ch.group,
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
        supervision=_supervision_snapshot(sources, ch),
        updated_at=sources.clock.wall(ch.updated_at),
        freshness=freshness,
        selected=selected,
    )


def _supervision_snapshot(sources: SnapshotSources, ch: Channel) -> SupervisionState:
    state = sources.channels.supervision[ch.id].state()
    wall = sources.clock.wall
    return replace(
        state, since=wall(state.since), out_of_range_since=wall(state.out_of_range_since)
    )


def _board_snapshot(sources: SnapshotSources, board: Board | None) -> BoardSnapshot:
    if board is None:
        return NO_BOARD
    board_type = board.board_type
    return BoardSnapshot(
        address=board.address,
        online=board.online,
        board_type=None
        if board_type is None
        else BOARD_TYPE_NAMES.get(board_type, str(board_type)),
        firmware=fmt_version(board.firmware),
        firmware_mismatch=sources.boards.firmware_mismatch(board),
        uid=None if board.uid is None else board.uid.hex(),
        config_digest=board.config_digest,
        flags=flag_names(board.flags),
        link=board.link,
        board_rx_errors=board.rx_errors,
        uptime_s=board.uptime,
        mains_hz=board.mains_hz,
        last_seen=sources.clock.wall(board.last_seen),
    )


def _meter_snapshot(sources: SnapshotSources, now: float) -> MeterSnapshot:
    meter = sources.meter
    values = meter.values
    names = [q.name for q in METER_QUANTITIES if q.name in values]
    names += sorted(n for n in values if n not in METER_QUANTITY_BY_NAME)
    readings: list[MeterReading] = []
    for name in names:
        value, at = values[name]
        quantity = METER_QUANTITY_BY_NAME.get(name, MeterQuantity(name, "", name))
        readings.append(
            MeterReading(
                name,
                quantity.label,
                quantity.unit,
                value,
                sources.clock.wall_of(at),
                meter.reading_freshness(at, now),
            )
        )
    return MeterSnapshot(
        enabled=meter.config.enabled,
        freshness=meter.freshness,
        last_reading_at=sources.clock.wall(meter.last_ok),
        last_error=meter.error,
        readings=tuple(readings),
    )


def _breaker_snapshot(sources: SnapshotSources, meter: MeterSnapshot) -> BreakerSnapshot:
    monitor = sources.breaker.monitor
    load = monitor.load
    live = meter.freshness is Freshness.LIVE and load is not None
    if load is not None:
        load = replace(load, at=sources.clock.wall_of(load.at))
    return BreakerSnapshot(
        type_name=breaker_spec(sources.model).type_name,
        settings=monitor.settings,
        load=load,
        level=load.level if live and load else LoadLevel.UNKNOWN,
        neutral_level=load.neutral_level if live and load else LoadLevel.UNKNOWN,
        led=load.led if live and load else BreakerLed.UNKNOWN,
        freshness=meter.freshness if load is not None else Freshness.NO_DATA,
        last_trip=sources.mains.last_trip,
    )


def _mains_snapshot(sources: SnapshotSources, now: float) -> MainsSnapshot:
    mains = sources.mains
    board = sources.boards.mains()
    online = board is not None and board.online
    if mains.updated_at is None:
        freshness = Freshness.NO_DATA
    elif not online:
        freshness = Freshness.OFFLINE
    elif now - mains.updated_at >= sources.bus_stale_after_s:
        freshness = Freshness.STALE
    else:
        freshness = Freshness.LIVE
    cause = mains.cause
    latched = None
    if cause is not None and cause != C.CAUSE_NONE:
        latched = _LATCHED_CAUSE.get(cause, TripCause.UNKNOWN)
    return MainsSnapshot(
        online=online,
        address=sources.boards.mains_address,
        breaker=mains.position if freshness is not Freshness.NO_DATA else BreakerPosition.UNKNOWN,
        emergency_stop=mains.estop,
        neutral_lost=mains.neutral_lost,
        temperature_c=mains.temperature,
        temperature_fault=mains.temp_fault,
        trip_count=mains.trip_count,
        latched_cause=latched,
        last_trip=mains.last_trip,
        updated_at=sources.clock.wall(mains.updated_at),
        freshness=freshness,
    )
