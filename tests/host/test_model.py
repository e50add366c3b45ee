"""The unit state: boards, channels, meter, breaker and mains status node in one model, with
events, immutable snapshots and change notification. Messages are built with the protocol
classes and round-tripped through the wire encoding, as the bus master delivers them."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import pytest

from host.breaker import BreakerLed, LoadLevel, TripCause
from host.config import default_config
from host.state import (
    ChannelSample,
    ChannelState,
    Event,
    EventKind,
    Freshness,
    LinkStats,
    MeterSample,
    Severity,
    UnitState,
)
from host.supervision import SupervisionSettings, SupervisionStatus
from protocol import consts as C
from protocol.messages import Info, Report, Status, Telemetry, decode, encode

WALL_OFFSET = 1_700_000_000.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now + WALL_OFFSET


def wire(message: Any) -> Any:
    return decode(encode(message))


def info(group: str, fw: tuple[int, int, int] = (1, 0, 0), flags: int = 0, uid: int = 1) -> Info:
    return wire(
        Info(fw, 1, C.BOARD_SIM, uid.to_bytes(8, "big"), group, 12, 0xDEADBEEF, flags, src=uid)
    )


def report(
    amps: list[float], alarms: list[int] | None = None, src: int = 1, selected: int = -1
) -> Report:
    centiamps = [round(a * 100) for a in amps]
    return wire(Report(centiamps, alarms or [0] * 12, selected, src=src))


def telemetry(
    amps: list[float],
    states: list[int] | None = None,
    ttt: dict[int, int] | None = None,
    flags: int = 0,
    src: int = 1,
) -> Telemetry:
    states = states or [C.ST_OK if a else C.ST_OFF for a in amps]
    crest = [14 if a else 0 for a in amps]
    return wire(
        Telemetry(
            flags,
            [round(a * 100) for a in amps],
            states,
            [False] * 12,
            crest,
            3600,
            2,
            100,
            5000,
            ttt or {},
            src=src,
        )
    )


def status(
    inputs: int = C.IN_BREAKER_CLOSED,
    cause: int = C.CAUSE_NONE,
    trips: int = 0,
    since: int = 0xFFFF,
    temp: int = 300,
) -> Status:
    return wire(Status(inputs, cause, temp, 100, 0, trips, since, src=50))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def state(clock: FakeClock) -> UnitState:
    config = default_config(unit={"model": 36, "id": "smartPDU00AA01"})
    return UnitState(config, clock=clock.monotonic, wall_clock=clock.wall)


class Recorder:
    def __init__(self, state: UnitState) -> None:
        self.events: list[Event] = []
        state.add_event_listener(self.events.append)

    def kinds(self) -> list[EventKind]:
        kinds = [e.kind for e in self.events]
        self.events.clear()
        return kinds

    def take(self) -> list[Event]:
        events = list(self.events)
        self.events.clear()
        return events


def online_group(state: UnitState, clock: FakeClock, group: str = "A", address: int = 1) -> None:
    state.board_online(address, clock.now, board_type=C.BOARD_SIM)
    state.board_info(address, info(group, uid=address), clock.now)


AMPS = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 0.0]


# ----------------------------------------------------------------------------- geometry


def test_model_geometry_and_phase_rotation(state: UnitState) -> None:
    snap = state.snapshot()
    assert snap.model == 36 and [g.letter for g in snap.groups] == ["A", "B", "C"]
    channels = list(snap.iter_channels())
    assert len(channels) == 36 and channels[0].id == "A1" and channels[-1].id == "C12"
    assert [c.phase for c in snap.groups[1].channels[:4]] == ["L1", "L2", "L3", "L1"]
    assert all(c.rating_a == 16.0 and c.state is ChannelState.NO_DATA for c in channels)
    assert all(c.freshness is Freshness.NO_DATA for c in channels)
    big = UnitState(default_config(unit={"model": 72}, channels={"phase": {"F": "L3"}}))
    snap72 = big.snapshot()
    assert len(snap72.groups) == 6 and {c.phase for c in snap72.groups[5].channels} == {"L3"}


# ----------------------------------------------------------------------------- boards


def test_reports_wait_for_the_boards_group(state: UnitState, clock: FakeClock) -> None:
    events = Recorder(state)
    state.board_online(1, clock.now, board_type=C.BOARD_SIM)
    assert not state.apply_report(1, report(AMPS), clock.now)  # group unknown until INFO
    assert events.kinds() == []
    state.board_info(1, info("A"), clock.now)
    assert events.kinds() == [EventKind.BOARD_ONLINE]
    assert state.apply_report(1, report(AMPS), clock.now)
    snap = state.snapshot()
    group = snap.groups[0]
    assert [c.current_a for c in group.channels] == AMPS
    assert group.channels[0].state is ChannelState.OK and group.channels[11].state is (
        ChannelState.OFF
    )
    assert all(c.freshness is Freshness.LIVE for c in group.channels)
    # Rotation: L1 = 1+4+7+10, L2 = 2+5+8+11, L3 = 3+6+9+0.
    assert group.phase_currents.l1 == pytest.approx(22.0)
    assert group.phase_currents.l2 == pytest.approx(26.0)
    assert group.phase_currents.l3 == pytest.approx(18.0)
    assert group.current_a == pytest.approx(66.0)
    assert snap.channel_phase_currents == group.phase_currents
    board = group.board
    assert board.online and board.firmware == "1.0.0" and board.uid == "0000000000000001"
    assert board.config_digest == 0xDEADBEEF and board.board_type == "sim"
    assert not board.firmware_mismatch


def test_board_offline_and_back(state: UnitState, clock: FakeClock) -> None:
    online_group(state, clock)
    state.apply_report(1, report(AMPS), clock.now)
    events = Recorder(state)
    clock.now += 1
    state.board_offline(1, clock.now, "5 cycles unanswered")
    [event] = events.take()
    assert event.kind is EventKind.BOARD_OFFLINE and event.severity is Severity.ALARM
    assert event.group == "A" and "5 cycles unanswered" in event.message
    snap = state.snapshot()
    assert not snap.groups[0].board.online
    assert all(c.freshness is Freshness.OFFLINE for c in snap.groups[0].channels)
    assert snap.groups[0].current_a == 0.0  # offline channels are not summed
    assert [c.kind for c in snap.conditions] == [EventKind.BOARD_OFFLINE]
    state.board_offline(1, clock.now)  # already offline: nothing new
    assert events.kinds() == []
    clock.now += 1
    state.board_online(1, clock.now)
    assert events.kinds() == [EventKind.BOARD_ONLINE]
    assert state.snapshot().conditions == ()


def test_front_panel_selection_from_reports(state: UnitState, clock: FakeClock) -> None:
    online_group(state, clock)
    online_group(state, clock, "B", 2)
    state.apply_report(1, report(AMPS), clock.now)
    snap = state.snapshot()
    assert snap.groups[0].selected is None and not any(c.selected for c in snap.iter_channels())
    events = Recorder(state)
    state.apply_report(1, report(AMPS, selected=4), clock.now)  # button 5 pressed on A
    snap = state.snapshot()
    assert snap.groups[0].selected == 5 and snap.groups[1].selected is None
    assert [c.id for c in snap.iter_channels() if c.selected] == ["A5"]
    assert snap.to_dict()["groups"][0]["selected"] == 5  # the status API carries it
    assert events.kinds() == []  # a press is not an event
    state.apply_report(2, report(AMPS, src=2, selected=11), clock.now)
    assert [c.id for c in state.snapshot().iter_channels() if c.selected] == ["A5", "B12"]
    state.apply_report(1, report(AMPS), clock.now)  # pressed again: deselected
    assert state.snapshot().groups[0].selected is None
    # An offline board's selection is unknown; it is back with its next REPORT.
    state.apply_report(2, report(AMPS, src=2, selected=11), clock.now)
    state.board_offline(2, clock.now)
    assert state.snapshot().groups[1].selected is None
    assert not any(c.selected for c in state.snapshot().iter_channels())
    state.board_online(2, clock.now)
    assert state.snapshot().groups[1].selected is None
    state.apply_report(2, report(AMPS, src=2, selected=0), clock.now)
    assert state.snapshot().groups[1].selected == 1


def test_link_stats_and_board_health(state: UnitState, clock: FakeClock) -> None:
    online_group(state, clock)
    state.update_link(1, LinkStats(frames_ok=1000, crc_errors=3, timeouts=1, latency_ms=2.5))
    events = Recorder(state)
    state.apply_telemetry(1, telemetry(AMPS, flags=C.F_WATCHDOG_RESET | C.F_CLIPPING), clock.now)
    state.apply_telemetry(1, telemetry(AMPS, flags=C.F_WATCHDOG_RESET), clock.now)
    [event] = events.take()  # once, when the flag appears; clipping is no event
    assert event.kind is EventKind.BOARD_HEALTH and "watchdog" in event.message
    board = state.snapshot().groups[0].board
    assert board.link == LinkStats(1000, 3, 1, 2.5)
    assert board.flags == ("watchdog_reset",) and board.uptime_s == 3600
    assert board.board_rx_errors == 2 and board.mains_hz == 50.0


def test_firmware_mismatch(state: UnitState, clock: FakeClock) -> None:
    events = Recorder(state)
    online_group(state, clock, "A", 1)
    online_group(state, clock, "B", 2)
    state.board_online(3, clock.now, board_type=C.BOARD_SIM)
    state.board_info(3, info("C", fw=(1, 1, 0), uid=3), clock.now)
    mismatches = [e for e in events.take() if e.kind is EventKind.BOARD_FIRMWARE_MISMATCH]
    assert [(e.group, e.data["firmware"], e.data["expected"]) for e in mismatches] == [
        ("C", "1.1.0", "1.0.0")
    ]
    snap = state.snapshot()
    assert [g.board.firmware_mismatch for g in snap.groups] == [False, False, True]
    # With an expected version in the config, every board is held to it.
    expected = default_config(bus={"expected_firmware": "1.1.0"})
    strict = UnitState(expected, clock=clock.monotonic, wall_clock=clock.wall)
    online_group(strict, clock, "A", 1)
    assert [g.board.firmware_mismatch for g in strict.snapshot().groups][:1] == [True]


def test_group_conflicts(state: UnitState, clock: FakeClock) -> None:
    events = Recorder(state)
    online_group(state, clock, "A", 1)
    state.board_online(2, clock.now, board_type=C.BOARD_SIM)
    state.board_info(2, info("A", uid=2), clock.now)
    kinds = events.kinds()
    assert EventKind.BOARD_CONFLICT in kinds
    assert state.snapshot().groups[0].board.address == 2
    assert not state.apply_report(1, report(AMPS), clock.now)  # the displaced board
    state.board_online(3, clock.now, board_type=C.BOARD_SIM)
    state.board_info(3, info("E", uid=3), clock.now)  # a 36 has no group E
    [event] = events.take()
    assert event.kind is EventKind.BOARD_CONFLICT and "does not have" in event.message


# ----------------------------------------------------------------------------- channels


def test_channel_overload_events(state: UnitState, clock: FakeClock) -> None:
    online_group(state, clock)
    state.set_channel_label("A3", "Spot rack")
    events = Recorder(state)
    amps = [1.0] * 12
    amps[2] = 18.0
    state.apply_telemetry(
        1,
        telemetry(amps, [C.ST_OK, C.ST_OK, C.ST_SLIGHT] + [C.ST_OK] * 9, {2: 450}),
        clock.now,
    )
    [event] = events.take()
    assert event.kind is EventKind.CHANNEL_SLIGHT_OVERLOAD and event.severity is Severity.WARNING
    assert event.channel == "A3" and event.group == "A"
    assert event.message == "A3 'Spot rack': slight overload, 18.0 A (112 % of rating); " + (
        "RCBO trips in about 45 s"
    )
    channel = state.snapshot().channel("A3")
    assert channel.state is ChannelState.SLIGHT and channel.time_to_trip_s == 45.0
    assert channel.crest_factor == 1.4
    # A compact REPORT keeps the time to trip while the state holds.
    clock.now += 0.1
    state.apply_report(1, report(amps, [0, 0, C.AL_SLIGHT] + [0] * 9), clock.now)
    assert state.snapshot().channel("A3").time_to_trip_s == 45.0
    clock.now += 0.1
    state.apply_report(1, report(amps, [0, 0, C.AL_SERIOUS] + [0] * 9), clock.now)
    clock.now += 0.1
    state.apply_report(
        1, report([1.0] * 2 + [0.0] + [1.0] * 9, [0, 0, C.AL_TRIPPED] + [0] * 9), clock.now
    )
    clock.now += 0.1
    state.apply_report(1, report([1.0] * 2 + [0.0] + [1.0] * 9), clock.now)
    taken = events.take()
    assert [e.kind for e in taken] == [
        EventKind.CHANNEL_SERIOUS_OVERLOAD,
        EventKind.CHANNEL_TRIPPED,
        EventKind.CHANNEL_NORMAL,
    ]
    assert [e.severity for e in taken] == [Severity.ALARM, Severity.ALARM, Severity.INFO]
    assert state.snapshot().channel("A3").state is ChannelState.OFF
    assert state.snapshot().conditions == ()


def test_over_range_and_invalid_currents(state: UnitState, clock: FakeClock) -> None:
    online_group(state, clock)
    centi = [C.REPORT_OVER_RANGE] + [100] * 11
    state.apply_report(1, wire(Report(centi, [C.AL_SERIOUS] + [0] * 11)), clock.now)
    channel = state.snapshot().channel("A1")
    assert channel.over_range and channel.current_a == pytest.approx(163.83)
    tm = telemetry([1.0] * 12)
    tm.centiamps[0] = C.CENTIAMPS_INVALID
    state.apply_telemetry(1, wire(tm), clock.now)
    assert state.snapshot().channel("A1").current_a is None


def test_channel_values_go_stale(state: UnitState, clock: FakeClock) -> None:
    online_group(state, clock)
    state.apply_report(1, report(AMPS), clock.now)
    assert state.snapshot().channel("A1").freshness is Freshness.LIVE
    clock.now += state.config.bus.stale_after_s + 0.1
    snap = state.snapshot()  # time alone made them stale: never shown as live
    assert snap.channel("A1").freshness is Freshness.STALE
    assert snap.groups[0].current_a == 0.0


# ----------------------------------------------------------------------------- supervision


def test_supervision_warning_triangle(state: UnitState, clock: FakeClock) -> None:
    online_group(state, clock)
    events = Recorder(state)
    settings = SupervisionSettings(True, 2.0, 6.0, dwell_s=3.0, hysteresis_a=0.5)
    state.set_supervision("A7", settings)  # A7 draws 7 A: above max
    assert events.kinds() == [EventKind.SETTINGS_CHANGED]
    assert state.supervision_of("a7") == settings
    for _ in range(4):
        state.apply_report(1, report(AMPS), clock.now)
        clock.now += 1.0
    raised = events.take()
    assert [e.kind for e in raised] == [EventKind.SUPERVISION_RAISED]
    assert raised[0].message == "A7: 7.00 A is above the maximum 6 A"
    snap = state.snapshot()
    assert snap.warning_triangle
    assert snap.channel("A7").supervision.status is SupervisionStatus.ABOVE_MAX
    amps = list(AMPS)
    amps[6] = 5.0
    state.apply_report(1, report(amps), clock.now)
    assert events.kinds() == [EventKind.SUPERVISION_CLEARED]
    assert not state.snapshot().warning_triangle


def test_supervision_settings_are_validated(state: UnitState) -> None:
    with pytest.raises(ValueError, match="between 0 and 63 A"):
        state.set_supervision("A1", SupervisionSettings(True, 0.0, 70.0))
    with pytest.raises(ValueError, match="above the maximum"):
        state.set_supervision("A1", SupervisionSettings(True, 8.0, 4.0))
    with pytest.raises(ValueError, match="groups A-C"):
        state.set_supervision("D1", SupervisionSettings(True, 0.0, 4.0))
    defaults = state.supervision_defaults()
    assert defaults.max_a == 16.0 and defaults.dwell_s == 10.0 and not defaults.enabled


# ----------------------------------------------------------------------------- settings


def test_labels_and_unit_name(state: UnitState) -> None:
    events = Recorder(state)
    assert state.set_channel_label("b2", "  Sound FOH ") == "Sound FOH"
    assert state.snapshot().channel("B2").label == "Sound FOH"
    with pytest.raises(ValueError, match="at most 32"):
        state.set_channel_label("B2", "x" * 40)
    with pytest.raises(ValueError):
        state.set_channel_label("B13", "x")
    state.set_unit_name("Stage left")
    assert state.snapshot().name == "Stage left"
    state.set_unit_name("Stage left")  # unchanged: no event
    assert events.kinds() == [EventKind.SETTINGS_CHANGED, EventKind.SETTINGS_CHANGED]
    state.restore_settings(
        unit_name="Restored",
        labels={"A1": "Movers", "Z9": "ignored"},
        supervision={"A2": SupervisionSettings(True, 1.0, 2.0)},
    )
    assert events.kinds() == []  # restoring is not a change the user made
    snap = state.snapshot()
    assert snap.name == "Restored" and snap.channel("A1").label == "Movers"
    assert snap.channel("A2").supervision.settings.max_a == 2.0


# ----------------------------------------------------------------------------- meter


METER = {
    "l1_voltage": 231.0,
    "l2_voltage": 229.5,
    "l3_voltage": 230.2,
    "l1_current": 100.0,
    "l2_current": 80.0,
    "l3_current": 60.0,
    "neutral_current": 35.0,
    "frequency": 50.01,
    "import_energy": 12.5,
    "total_power_factor": 0.97,
}


def test_meter_readings_and_freshness(state: UnitState, clock: FakeClock) -> None:
    events = Recorder(state)
    snap = state.snapshot()
    assert snap.meter.freshness is Freshness.NO_DATA and snap.meter.readings == ()
    state.apply_meter({**METER, "weird_extra": 1.0, "bad": float("nan")}, clock.now)
    snap = state.snapshot()
    assert snap.meter.freshness is Freshness.LIVE
    l1 = snap.meter.get("l1_current")
    assert l1 is not None and l1.value == 100.0 and l1.unit == "A" and l1.label == "L1 current"
    assert l1.at == clock.now + WALL_OFFSET and l1.freshness is Freshness.LIVE
    assert [r.name for r in snap.meter.readings][:2] == ["l1_current", "l2_current"]
    assert snap.meter.get("weird_extra") is not None and snap.meter.get("bad") is None
    assert state.meter_value("frequency") == 50.01
    assert events.kinds() == []  # first reading: no "back" event
    # Stale after stale_after_s: shown with its age, never as live.
    clock.now += state.config.meter.stale_after_s + 0.5
    snap = state.snapshot()
    assert snap.meter.freshness is Freshness.STALE
    assert {r.freshness for r in snap.meter.readings} == {Freshness.STALE}
    assert snap.meter.live_value("l1_current") is None
    assert state.meter_value("frequency") is None
    assert events.kinds() == [EventKind.METER_STALE]
    clock.now += state.config.meter.offline_after_s
    state.tick()
    assert state.snapshot().meter.freshness is Freshness.OFFLINE
    assert events.kinds() == [EventKind.METER_OFFLINE]
    state.apply_meter(METER, clock.now)
    assert events.kinds() == [EventKind.METER_LIVE]
    assert state.snapshot().conditions == ()


def test_meter_never_answering_goes_offline(state: UnitState, clock: FakeClock) -> None:
    events = Recorder(state)
    state.meter_error(clock.now, "timeout")
    assert state.snapshot().meter.freshness is Freshness.NO_DATA
    clock.now += state.config.meter.offline_after_s
    snap = state.snapshot()
    assert snap.meter.freshness is Freshness.OFFLINE and snap.meter.last_error == "timeout"
    [event] = events.take()
    assert event.kind is EventKind.METER_OFFLINE and "(timeout)" in event.message
    # The reader can declare it offline at once.
    state.apply_meter(METER, clock.now)
    state.meter_error(clock.now, "port lost", offline=True)
    assert state.snapshot().meter.freshness is Freshness.OFFLINE


def test_disabled_meter(clock: FakeClock) -> None:
    state = UnitState(default_config(meter={"enabled": False}), clock=clock.monotonic)
    state.apply_meter(METER, clock.now)
    clock.now += 1000
    snap = state.snapshot()
    assert snap.meter.freshness is Freshness.DISABLED and snap.meter.readings == ()


# ----------------------------------------------------------------------------- main breaker


def test_breaker_load_warnings(state: UnitState, clock: FakeClock) -> None:
    events = Recorder(state)
    ir = state.config.breaker.ir_a  # 250 A
    for fraction in (0.5, 0.92, 1.05, 1.25, 0.5):
        clock.now += 1
        state.apply_meter({**METER, "l2_current": fraction * ir}, clock.now)
        if fraction == 1.25:
            snap = state.snapshot()
            assert snap.breaker.led is BreakerLed.STEADY
            assert snap.breaker.level is LoadLevel.FAR_OVER_IR
            assert snap.breaker.load is not None and snap.breaker.load.highest_phase == "L2"
    loads = [e for e in events.take() if e.kind is EventKind.BREAKER_LOAD]
    assert [(e.data["level"], e.severity) for e in loads] == [
        ("near_ir", Severity.WARNING),
        ("over_ir", Severity.ALARM),
        ("far_over_ir", Severity.ALARM),
        ("normal", Severity.INFO),
    ]
    assert loads[0].message == "main breaker load 92 % of IR on L2 (230 A): near its limit"
    assert "status LED steady" in loads[2].message and "trips in about" in loads[2].message
    snap = state.snapshot()
    assert snap.breaker.led is BreakerLed.FLASHING and snap.breaker.type_name == "NM8S-250"
    # The meter goes offline: the load is unknown, not "back to normal".
    clock.now += 100
    snap = state.snapshot()
    assert snap.breaker.level is LoadLevel.UNKNOWN and snap.breaker.led is BreakerLed.UNKNOWN
    assert [e.kind for e in events.take()] == [EventKind.METER_OFFLINE]  # no tick between


# ----------------------------------------------------------------------------- mains node


def test_emergency_stop_trip(state: UnitState, clock: FakeClock) -> None:
    state.board_online(50, clock.now, board_type=C.BOARD_MAINS_STATUS_SIM)
    state.apply_status(50, status(), clock.now)
    assert state.snapshot().mains.breaker.value == "closed"
    events = Recorder(state)
    clock.now += 0.5
    state.apply_status(
        50,
        status(C.IN_BREAKER_TRIPPED | C.IN_ESTOP, C.CAUSE_ESTOP, trips=1, since=0),
        clock.now,
    )
    taken = events.take()
    assert [e.kind for e in taken] == [EventKind.EMERGENCY_STOP, EventKind.BREAKER_TRIPPED]
    trip = taken[1]
    assert trip.severity is Severity.ALARM
    assert trip.message == "MAIN BREAKER TRIPPED: Emergency Stop"
    assert trip.data["cause"] == "emergency_stop" and trip.data["confidence"] == "certain"
    snap = state.snapshot()
    assert snap.mains.breaker.value == "tripped" and snap.mains.emergency_stop
    assert snap.mains.last_trip is not None
    assert snap.mains.last_trip.cause is TripCause.EMERGENCY_STOP
    assert snap.breaker.last_trip == snap.mains.last_trip
    assert snap.mains.latched_cause is TripCause.EMERGENCY_STOP
    assert snap.conditions[0].severity is Severity.ALARM
    # The same latched trip reported again: no second event.
    state.apply_status(
        50,
        status(C.IN_BREAKER_TRIPPED | C.IN_ESTOP, C.CAUSE_ESTOP, trips=1, since=1),
        clock.now,
    )
    assert events.kinds() == []
    # Button twisted back, breaker switched on.
    state.apply_status(50, status(C.IN_BREAKER_TRIPPED, C.CAUSE_ESTOP, trips=1), clock.now)
    state.apply_status(50, status(C.IN_BREAKER_CLOSED, C.CAUSE_ESTOP, trips=1), clock.now)
    assert events.kinds() == [EventKind.EMERGENCY_STOP, EventKind.BREAKER_CLOSED]
    assert state.snapshot().conditions == ()


def test_overload_trip_uses_the_meter_history(state: UnitState, clock: FakeClock) -> None:
    state.board_online(50, clock.now, board_type=C.BOARD_MAINS_STATUS)
    state.apply_status(50, status(), clock.now)
    for _ in range(20):
        clock.now += 1
        state.apply_meter({**METER, "l3_current": 320.0}, clock.now)
    events = Recorder(state)
    clock.now += 3
    state.apply_status(
        50, status(C.IN_BREAKER_TRIPPED, C.CAUSE_OVERLOAD, trips=1, since=2), clock.now
    )
    [trip] = [e for e in events.take() if e.kind is EventKind.BREAKER_TRIPPED]
    assert trip.message == "MAIN BREAKER TRIPPED: overload"
    assert trip.data["confidence"] == "certain"
    assert trip.data["evidence"][0].startswith("load: L3 at 320 A (128 % IR)")
    assert trip.time == pytest.approx(clock.now - 2 + WALL_OFFSET)  # when it tripped


def test_short_trip_between_polls_is_not_missed(state: UnitState, clock: FakeClock) -> None:
    state.apply_status(50, status(trips=4), clock.now)
    events = Recorder(state)
    # Tripped and switched on again between two polls: only the counter shows it.
    state.apply_status(
        50, status(C.IN_BREAKER_CLOSED, C.CAUSE_NEUTRAL_LOST, trips=5, since=30), clock.now
    )
    [trip] = events.take()
    assert trip.kind is EventKind.BREAKER_TRIPPED and trip.data["cause"] == "neutral_lost"
    assert "(likely)" in trip.message


def test_found_tripped_at_start_and_switched_off(state: UnitState, clock: FakeClock) -> None:
    events = Recorder(state)
    state.apply_status(
        50, status(C.IN_BREAKER_TRIPPED | C.IN_NEUTRAL_LOST, trips=2, since=600), clock.now
    )
    taken = events.take()
    assert [e.kind for e in taken] == [EventKind.NEUTRAL_LOST, EventKind.BREAKER_TRIPPED]
    assert taken[1].data["found_at_start"] is True
    assert "found tripped when monitoring started" in taken[1].message
    state.apply_status(50, status(0, trips=2), clock.now)  # reset to OFF
    state.apply_status(50, status(C.IN_BREAKER_CLOSED, trips=2), clock.now)
    state.apply_status(50, status(0, trips=2), clock.now)  # switched off by hand
    kinds = events.kinds()
    assert kinds == [
        EventKind.NEUTRAL_LOST,
        EventKind.BREAKER_OPENED,
        EventKind.BREAKER_CLOSED,
        EventKind.BREAKER_OPENED,
    ]


def test_temperature_warning_with_hysteresis(state: UnitState, clock: FakeClock) -> None:
    events = Recorder(state)
    for temp in (300, 590, 600, 580, 560, 540):
        state.apply_status(50, status(temp=temp), clock.now)
    taken = events.take()
    assert [(e.kind, e.severity) for e in taken] == [
        (EventKind.TEMPERATURE, Severity.WARNING),
        (EventKind.TEMPERATURE, Severity.INFO),
    ]
    assert "60.0 °C" in taken[0].message and "54.0 °C" in taken[1].message
    state.apply_status(50, status(C.IN_BREAKER_CLOSED | C.IN_TEMP_FAULT), clock.now)
    assert events.kinds() == [EventKind.TEMPERATURE]
    assert state.snapshot().mains.temperature_c is None


def test_mains_node_offline(state: UnitState, clock: FakeClock) -> None:
    state.board_online(50, clock.now, board_type=C.BOARD_MAINS_STATUS)
    state.apply_status(50, status(), clock.now)
    events = Recorder(state)
    state.board_offline(50, clock.now)
    [event] = events.take()
    assert event.kind is EventKind.BOARD_OFFLINE and "mains status node" in event.message
    assert state.snapshot().mains.freshness is Freshness.OFFLINE


# ----------------------------------------------------------------------------- snapshots


def test_snapshot_is_immutable_cached_and_json(state: UnitState, clock: FakeClock) -> None:
    online_group(state, clock)
    state.apply_telemetry(1, telemetry(AMPS), clock.now)
    state.apply_meter(METER, clock.now)
    state.apply_status(50, status(), clock.now)
    state.set_supervision("A1", SupervisionSettings(True, 0.5, 2.0))
    snap = state.snapshot()
    assert state.snapshot() is snap  # nothing changed: the same object
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.name = "x"  # type: ignore[misc]
    data = json.loads(json.dumps(snap.to_dict()))
    assert data["unit_id"] == "smartPDU00AA01" and data["model"] == 36
    channel = data["groups"][0]["channels"][0]
    assert channel["id"] == "A1" and channel["current_a"] == 1.0 and channel["state"] == "ok"
    assert channel["supervision"]["settings"]["max_a"] == 2.0
    assert data["meter"]["readings"][0]["name"] == "l1_current"
    assert data["breaker"]["settings"]["in_a"] == 250.0
    assert data["breaker"]["level"] == "normal" and data["mains"]["breaker"] == "closed"
    assert data["recent_events"][-1]["kind"] == "settings.changed"
    state.apply_report(1, report(AMPS), clock.now)
    assert state.snapshot() is not snap and state.snapshot().version > snap.version


def test_event_to_dict(state: UnitState, clock: FakeClock) -> None:
    events = Recorder(state)
    state.set_channel_label("A1", "Movers")
    data = json.loads(json.dumps(events.events[0].to_dict()))
    assert data == {
        "time": clock.now + WALL_OFFSET,
        "kind": "settings.changed",
        "severity": "info",
        "unit": "smartPDU00AA01",
        "group": "A",
        "channel": "A1",
        "message": "A1 label set to 'Movers'",
        "data": {"setting": "label", "old": "", "new": "Movers"},
    }


# ----------------------------------------------------------------------------- subscribers


async def test_event_queue_and_wait_changed(state: UnitState, clock: FakeClock) -> None:
    version = state.version
    waiter = asyncio.create_task(state.wait_changed(version, timeout=5))
    await asyncio.sleep(0)
    with state.event_queue(maxsize=2) as queue:
        state.set_channel_label("A1", "one")
        state.set_channel_label("A1", "two")
        state.set_channel_label("A1", "three")
        assert await asyncio.wait_for(waiter, 1) > version
        assert queue.dropped == 1  # a slow consumer loses the oldest, never blocks the bus
        assert [(await queue.get()).data["new"] for _ in range(2)] == ["two", "three"]
    state.set_channel_label("A1", "four")
    assert queue.empty()  # closed: no longer fed
    same = state.version
    assert await state.wait_changed(same, timeout=0.01) == same


def test_listeners_can_be_removed_and_cannot_break_updates(state: UnitState) -> None:
    seen: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("listener bug")

    state.add_event_listener(broken)
    remove = state.add_event_listener(seen.append)
    state.set_channel_label("A1", "x")
    remove()
    state.set_channel_label("A1", "y")
    assert len(seen) == 1


def test_sample_listener_gets_every_report_and_meter_read(
    state: UnitState, clock: FakeClock
) -> None:
    samples: list[object] = []
    state.add_sample_listener(samples.append)
    online_group(state, clock)
    state.apply_report(1, report(AMPS), clock.now)
    state.apply_meter(METER, clock.now)
    assert isinstance(samples[0], ChannelSample) and samples[0].currents_a == tuple(AMPS)
    assert isinstance(samples[1], MeterSample) and samples[1].readings["l1_current"] == 100.0


def test_monitoring_has_no_way_to_control_power() -> None:
    # R7: the state has no method that switches, trips or resets anything.
    public = {name for name in dir(UnitState) if not name.startswith("_")}
    forbidden = {"trip", "switch", "open", "close", "reset", "turn_on", "turn_off", "control"}
    assert not {n for n in public if any(word in n for word in forbidden)}


@dataclasses.dataclass
class FakeQuality:
    frames_ok: int = 10
    crc_errors: int = 1
    timeouts: int = 0
    latency_ms: float = 3.0


@dataclasses.dataclass
class FakeLink:
    address: int
    uid: bytes
    board_type: int
    group: str = ""
    quality: FakeQuality = dataclasses.field(default_factory=FakeQuality)


def test_bus_listener_adapter(state: UnitState, clock: FakeClock) -> None:
    from host.state import StateBusListener

    bus = StateBusListener(state)
    link = FakeLink(7, bytes(8), C.BOARD_SIM)
    events = Recorder(state)
    bus.board_online(link)  # first frame: group not known yet
    bus.report(link, report(AMPS), clock.now)
    assert state.snapshot().channel("B1").current_a is None
    link.group = "B"
    bus.board_info(link, info("B", uid=7))
    bus.report(link, report(AMPS), clock.now)
    bus.telemetry(link, telemetry(AMPS), clock.now)
    snap = state.snapshot()
    assert snap.channel("B1").current_a == 1.0
    assert snap.groups[1].board.link == LinkStats(10, 1, 0, 3.0)
    bus.board_offline(link)
    assert events.kinds() == [EventKind.BOARD_ONLINE, EventKind.BOARD_OFFLINE]
    mains = FakeLink(50, bytes(8), C.BOARD_MAINS_STATUS_SIM)
    bus.board_online(mains)
    bus.status(mains, status(), clock.now)
    assert state.snapshot().mains.online and state.snapshot().mains.breaker.value == "closed"
