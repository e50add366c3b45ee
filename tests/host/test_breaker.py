"""Main breaker model: settings per model, load levels with hysteresis, the status LED as
the manual words it, the long-time estimate, and the trip-cause classifier."""

from __future__ import annotations

import pytest

from host.breaker import (
    BreakerLed,
    BreakerSettings,
    Confidence,
    LoadLevel,
    LoadSample,
    MainBreakerMonitor,
    TripCause,
    TripEvidence,
    breaker_spec,
    classify_trip,
    describe_settings,
    long_time_trip_s,
    next_load_level,
    status_led,
)
from protocol import consts as C

S250 = BreakerSettings.factory_defaults(36)  # In 250 A, IR 1 x In = 250 A
S400 = BreakerSettings.factory_defaults(72)  # In 400 A, tR 6 s


def sample(t: float, l1: float, l2: float = 0.0, l3: float = 0.0, n: float = 0.0) -> LoadSample:
    return LoadSample(t, (l1, l2, l3), n, (230.0, 230.0, 230.0))


def test_specs_and_factory_defaults() -> None:
    assert breaker_spec(36).type_name == "NM8S-250" and breaker_spec(48).in_a == 250.0
    assert breaker_spec(72).type_name == "NM8S-400" and breaker_spec(72).has_delay_settings
    assert not breaker_spec(48).has_delay_settings
    with pytest.raises(ValueError):
        breaker_spec(24)
    assert (S250.ir, S250.isd, S250.ii, S250.inn, S250.tr_s) == (1.0, 6.0, 10.0, None, None)
    assert (S400.tr_s, S400.tsd_s, S400.tn_s) == (6.0, 0.3, 0.4)
    settings = BreakerSettings(in_a=250.0, ir=0.8, isd=None, inn=0.5)
    assert settings.ir_a == 200.0 and settings.isd_a is None and settings.inn_a == 125.0
    assert settings.neutral_reference_a == 125.0 and S250.neutral_reference_a == 250.0
    assert dict(describe_settings(S400))["IR"] == "1 x In = 400 A"
    assert dict(describe_settings(settings))["Isd"] == "OFF"


def test_status_led_follows_the_manual_wording() -> None:
    # "LED flashes: single-phase operational current is <= 90 % IR"
    assert status_led(0.0) is BreakerLed.FLASHING
    assert status_led(0.90) is BreakerLed.FLASHING
    # "LED lights constantly: single-phase operational current is >= 120 % IR"
    assert status_led(1.20) is BreakerLed.STEADY
    assert status_led(2.0) is BreakerLed.STEADY
    # Between the two the manual says nothing: reported as such, not guessed.
    assert status_led(0.95) is BreakerLed.UNDOCUMENTED
    assert status_led(1.19) is BreakerLed.UNDOCUMENTED
    assert status_led(None) is BreakerLed.UNKNOWN
    assert status_led(1.5, breaker_closed=False) is BreakerLed.OFF


def test_load_levels_rise_at_thresholds_and_fall_with_hysteresis() -> None:
    level = LoadLevel.NORMAL
    trace = []
    for fraction in (0.5, 0.89, 0.90, 0.99, 1.00, 1.19, 1.20, 1.18, 1.16, 0.98, 0.96, 0.88, 0.86):
        level = next_load_level(level, fraction)
        trace.append(level.name)
    assert trace == [
        "NORMAL",
        "NORMAL",
        "NEAR_IR",
        "NEAR_IR",
        "OVER_IR",
        "OVER_IR",
        "FAR_OVER_IR",
        "FAR_OVER_IR",  # 1.18 > 1.20 - 0.03: stays
        "OVER_IR",  # 1.16 < 1.20 - 0.03: falls out
        "OVER_IR",
        "NEAR_IR",
        "NEAR_IR",
        "NORMAL",
    ]
    assert next_load_level(LoadLevel.FAR_OVER_IR, None) is LoadLevel.UNKNOWN


def test_long_time_curve() -> None:
    # Below pickup (1.05 x IR) it never trips.
    assert long_time_trip_s(S400, 400.0) is None
    assert long_time_trip_s(S400, 419.0) is None
    # I2t through tR at 6 x IR: 6 s at 2400 A... but that is above Isd (6 x In): short time.
    assert long_time_trip_s(S400, 2400.0) == pytest.approx(0.3)
    assert long_time_trip_s(S400, 4000.0) == 0.0  # Ii = 10 x In: instantaneous
    # 2 x IR: tR * (6 / 2)^2 = 54 s.
    assert long_time_trip_s(S400, 800.0) == pytest.approx(54.0)
    # The 36/48 have no tR switch: the assumed fixed curve is used.
    assert long_time_trip_s(S250, 500.0) == pytest.approx(54.0)
    # A lower IR trips sooner for the same current.
    lower = BreakerSettings(in_a=400.0, ir=0.5, tr_s=3.0, tsd_s=0.1, tn_s=0.1)
    assert long_time_trip_s(lower, 400.0) == pytest.approx(3.0 * 9.0)


def test_monitor_reports_level_changes_and_led() -> None:
    monitor = MainBreakerMonitor(S250)
    monitor.set_breaker_closed(True)
    changes = monitor.update(sample(0, 100, 50, 20))
    assert [(c.previous, c.level) for c in changes if c.conductor == "phase"] == [
        (LoadLevel.UNKNOWN, LoadLevel.NORMAL)
    ]
    load = monitor.load
    assert load is not None and load.highest_phase == "L1"
    assert load.highest_fraction_of_ir == pytest.approx(0.4)
    assert load.led is BreakerLed.FLASHING and load.time_to_trip_s is None
    # L2 climbs to 92 %, 105 %, 125 % of IR.
    levels = []
    for t, amps in ((1, 230.0), (2, 262.5), (3, 312.5)):
        levels += [c.level for c in monitor.update(sample(t, 100, amps, 20))]
    assert levels == [LoadLevel.NEAR_IR, LoadLevel.OVER_IR, LoadLevel.FAR_OVER_IR]
    load = monitor.load
    assert load is not None and load.highest_phase == "L2" and load.led is BreakerLed.STEADY
    assert load.time_to_trip_s is not None and load.time_to_trip_s > 0
    # Breaker opened: its trip unit has no power.
    monitor.set_breaker_closed(False)
    monitor.update(sample(4, 0, 0, 0))
    assert monitor.load is not None and monitor.load.led is BreakerLed.OFF


def test_long_time_estimate_counts_down_and_cools() -> None:
    monitor = MainBreakerMonitor(S400)
    full = long_time_trip_s(S400, 800.0)
    assert full == pytest.approx(54.0)
    remaining = []
    for t in range(0, 40, 10):
        monitor.update(sample(t, 800.0))
        load = monitor.load
        assert load is not None and load.time_to_trip_s is not None
        remaining.append(round(load.time_to_trip_s))
    assert remaining == [54, 44, 34, 24]  # time already spent overloaded counts
    # Back to normal: the memory decays over minutes, not at once.
    monitor.update(sample(41, 200.0))
    load = monitor.load
    assert load is not None and load.time_to_trip_s is None
    progress = load.long_time_progress
    assert 0.5 < progress < 0.6
    monitor.update(sample(41 + 600, 200.0))
    load = monitor.load
    assert load is not None and load.long_time_progress < progress / 5


def test_neutral_level_uses_inn_or_in() -> None:
    monitor = MainBreakerMonitor(BreakerSettings(in_a=250.0, inn=0.5))  # InN = 125 A
    changes = monitor.update(sample(0, 100, 100, 100, n=120))
    assert [c.level for c in changes if c.conductor == "neutral"] == [LoadLevel.NEAR_IR]
    monitor2 = MainBreakerMonitor(S250)  # InN OFF: measured against In
    changes = monitor2.update(sample(0, 100, 100, 100, n=120))
    assert [c.level for c in changes if c.conductor == "neutral"] == [LoadLevel.NORMAL]


def test_mark_unknown_when_the_meter_is_gone() -> None:
    monitor = MainBreakerMonitor(S250)
    monitor.update(sample(0, 240))
    changes = monitor.mark_unknown(5)
    assert {(c.conductor, c.previous, c.level) for c in changes} == {
        ("phase", LoadLevel.NEAR_IR, LoadLevel.UNKNOWN),
        ("neutral", LoadLevel.NORMAL, LoadLevel.UNKNOWN),
    }
    assert monitor.mark_unknown(6) == []


def evidence(
    at: float = 100.0, estop: bool = False, neutral: bool = False, cause: int = C.CAUSE_NONE
) -> TripEvidence:
    return TripEvidence(at, estop, neutral, cause)


NORMAL_HISTORY = [sample(t, 120, 110, 100) for t in range(70, 100)]
OVERLOAD_HISTORY = [sample(t, 120, 300 if t > 80 else 200, 100) for t in range(70, 100)]
SHIFTED_HISTORY = [LoadSample(t, (50, 40, 30), 5, (230, 230, 230)) for t in range(70, 95)] + [
    LoadSample(t, (50, 40, 30), 5, (320, 150, 230)) for t in range(95, 100)
]


def test_trip_cause_contacts_win() -> None:
    d = classify_trip(S250, evidence(estop=True, cause=C.CAUSE_ESTOP), OVERLOAD_HISTORY)
    assert d.cause is TripCause.EMERGENCY_STOP and d.confidence is Confidence.CERTAIN
    assert d.evidence[0] == "Emergency Stop button pressed"
    d = classify_trip(S250, evidence(neutral=True), SHIFTED_HISTORY)
    assert d.cause is TripCause.NEUTRAL_LOST and d.confidence is Confidence.CERTAIN
    assert any("phase voltages shifted" in e for e in d.evidence)
    assert d.text == "loss of Neutral"


def test_trip_cause_overload_from_load_history() -> None:
    # The node latched "overload" and the meter saw L2 at 120 % IR: certain.
    d = classify_trip(S250, evidence(cause=C.CAUSE_OVERLOAD), OVERLOAD_HISTORY)
    assert d.cause is TripCause.OVERLOAD and d.confidence is Confidence.CERTAIN
    assert d.evidence[0].startswith("load: L2 at 300 A (120 % IR)")
    # No latched cause, but the history shows the overload: likely.
    d = classify_trip(S250, evidence(), OVERLOAD_HISTORY)
    assert d.cause is TripCause.OVERLOAD and d.confidence is Confidence.LIKELY
    # The node says overload, the meter saw nothing (it was offline): likely.
    d = classify_trip(S250, evidence(cause=C.CAUSE_OVERLOAD), [])
    assert d.cause is TripCause.OVERLOAD and d.confidence is Confidence.LIKELY
    # An overload long before the look-back window does not count.
    old = [sample(t, 400) for t in range(0, 10)] + NORMAL_HISTORY
    assert classify_trip(S250, evidence(), old).cause is TripCause.UNKNOWN


def test_trip_cause_neutral_overcurrent_is_an_overload() -> None:
    settings = BreakerSettings(in_a=250.0, inn=0.5)
    history = [sample(t, 100, 100, 100, n=140) for t in range(90, 100)]
    d = classify_trip(settings, evidence(), history)
    assert d.cause is TripCause.OVERLOAD
    assert "neutral at 140 A (112 % InN)" in d.evidence[0]


def test_trip_cause_from_latched_cause_and_voltage_shift() -> None:
    d = classify_trip(S250, evidence(cause=C.CAUSE_ESTOP), NORMAL_HISTORY)
    assert d.cause is TripCause.EMERGENCY_STOP and d.confidence is Confidence.LIKELY
    d = classify_trip(S250, evidence(cause=C.CAUSE_NEUTRAL_LOST), NORMAL_HISTORY)
    assert d.cause is TripCause.NEUTRAL_LOST and d.confidence is Confidence.LIKELY
    d = classify_trip(S250, evidence(cause=C.CAUSE_NEUTRAL_LOST), SHIFTED_HISTORY)
    assert d.confidence is Confidence.CERTAIN
    # Relay and latch both silent, but the voltages moved apart: likely a lost neutral.
    d = classify_trip(S250, evidence(), SHIFTED_HISTORY)
    assert d.cause is TripCause.NEUTRAL_LOST and d.confidence is Confidence.LIKELY
    d = classify_trip(S250, evidence(cause=C.CAUSE_UNKNOWN), NORMAL_HISTORY)
    assert d.cause is TripCause.UNKNOWN and d.confidence is Confidence.NONE


def test_monitor_diagnoses_with_its_own_history() -> None:
    monitor = MainBreakerMonitor(S250)
    for s in OVERLOAD_HISTORY:
        monitor.update(s)
    d = monitor.diagnose_trip(evidence(at=100.0, cause=C.CAUSE_OVERLOAD))
    assert d.cause is TripCause.OVERLOAD and d.confidence is Confidence.CERTAIN
    # History is bounded.
    for t in range(100, 400):
        monitor.update(sample(t, 10))
    assert len(monitor.history) <= 121
