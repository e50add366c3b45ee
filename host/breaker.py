"""Main breaker (4-pole MCCB) model: its settings (R6), its load as the trip unit sees it,
its status LED, an estimate of the long-time (overload) trip, and the trip-cause classifier.

Pure logic, no I/O: the unit state feeds it the main meter's currents and the mains status
node's contacts, and turns what it returns into events. Monitoring never controls power
(R7): nothing here can open or close the breaker.

What the manual gives and what is assumed (assumptions are marked as such where used):

* Settings are DIP-switch steps, multiples of In: IR 0.4…1, Isd OFF/1.5…8, Ii 1.5…12,
  InN OFF/0.5/1; the smartPDU 72 also has tR 3/6/12/18 s, tsd 0.1…0.4 s, tN 0.1…0.4 s.
* Status LED, manual wording: "LED flashes: single-phase operational current is ≤ 90 % IR",
  "LED lights constantly: single-phase operational current is ≥ 120 % IR". Between 90 % and
  120 % the manual says nothing, so the model reports that band as such, never a guess.
* Long-time curve (assumed): the I²t curve of electronic trip units, t = tR * (6 / m)² at
  m = I / IR, with tR quoted at 6 x IR, pickup at 1.05 x IR (IEC 60947-2 conventional
  non-tripping current: the earliest the unit may start counting). The 36/48 breaker has no
  tR switch; `ASSUMED_FIXED_TR_S` stands in for its fixed curve.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Literal

from host.domain import PHASES, Phase
from protocol import consts as C

# DIP-switch steps of the NM8S trip units (manual, "Master MCCB").
IR_STEPS: tuple[float, ...] = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
ISD_STEPS: tuple[float, ...] = (1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0)  # or OFF
II_STEPS: tuple[float, ...] = (1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 12.0)
INN_STEPS: tuple[float, ...] = (0.5, 1.0)  # or OFF
TR_STEPS_S: tuple[float, ...] = (3.0, 6.0, 12.0, 18.0)
TSD_STEPS_S: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4)
TN_STEPS_S: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4)

# Assumptions (see the module docstring).
LONG_TIME_PICKUP = 1.05  # x IR
LONG_TIME_REFERENCE_MULTIPLE = 6.0  # tR is the trip time at 6 x IR
ASSUMED_FIXED_TR_S = 6.0  # 36/48: no tR switch; assume the 72's factory default
ASSUMED_FIXED_TSD_S = 0.1  # 36/48: no tsd switch
ASSUMED_FIXED_TN_S = 0.1  # 36/48: no tN switch
# Thermal memory: an electronic unit forgets a partial overload over minutes, not at once.
LONG_TIME_COOLING_S = 300.0

# Warning levels, fractions of IR, and the margin a level's current must fall below to clear.
LEVEL_NEAR_IR = 0.90
LEVEL_OVER_IR = 1.00
LEVEL_FAR_OVER_IR = 1.20
LEVEL_CLEAR_MARGIN = 0.03

# Trip-cause evidence windows.
TRIP_LOOKBACK_S = 30.0  # load history examined before a trip
NEUTRAL_SHIFT_FRACTION = 0.15  # phase voltage this far from the mean of the three: neutral lost


@dataclass(frozen=True)
class BreakerSpec:
    """The MCCB fitted to one model (manual, "Master MCCB")."""

    model: int
    type_name: str
    in_a: float
    has_delay_settings: bool  # tR, tsd and tN switches (smartPDU 72 only)


BREAKER_SPECS: dict[int, BreakerSpec] = {
    36: BreakerSpec(36, "NM8S-250", 250.0, False),
    48: BreakerSpec(48, "NM8S-250", 250.0, False),
    72: BreakerSpec(72, "NM8S-400", 400.0, True),
}


def breaker_spec(model: int) -> BreakerSpec:
    try:
        return BREAKER_SPECS[model]
    except KeyError:
        raise ValueError(f"no smartPDU model {model} (choose 36, 48 or 72)") from None


@dataclass(frozen=True)
class BreakerSettings:
    """Trip settings as set on the breaker's DIP switches. Multiples are of In; None is OFF
    (Isd, InN) or "this breaker has no such switch" (tR, tsd, tN on the 36/48)."""

    in_a: float
    ir: float = 1.0
    isd: float | None = 6.0
    ii: float = 10.0
    inn: float | None = None
    tr_s: float | None = None
    tsd_s: float | None = None
    tn_s: float | None = None

    @classmethod
    def factory_defaults(cls, model: int) -> BreakerSettings:
        spec = breaker_spec(model)
        if spec.has_delay_settings:
            return cls(in_a=spec.in_a, tr_s=6.0, tsd_s=0.3, tn_s=0.4)
        return cls(in_a=spec.in_a)

    @property
    def ir_a(self) -> float:
        return self.ir * self.in_a

    @property
    def isd_a(self) -> float | None:
        return None if self.isd is None else self.isd * self.in_a

    @property
    def ii_a(self) -> float:
        return self.ii * self.in_a

    @property
    def inn_a(self) -> float | None:
        return None if self.inn is None else self.inn * self.in_a

    @property
    def effective_tr_s(self) -> float:
        return ASSUMED_FIXED_TR_S if self.tr_s is None else self.tr_s

    @property
    def effective_tsd_s(self) -> float:
        return ASSUMED_FIXED_TSD_S if self.tsd_s is None else self.tsd_s

    @property
    def effective_tn_s(self) -> float:
        return ASSUMED_FIXED_TN_S if self.tn_s is None else self.tn_s

    @property
    def neutral_reference_a(self) -> float:
        """What neutral load is measured against: InN, or In when neutral protection is OFF
        (the neutral pole is still only rated In)."""
        return self.in_a if self.inn is None else self.inn * self.in_a


class LoadLevel(IntEnum):
    """Load of the most loaded phase (or of the neutral) against IR (or InN)."""

    UNKNOWN = -1  # no fresh meter data
    NORMAL = 0
    NEAR_IR = 1  # ≥ 90 % IR: the breaker's long-time protection is close
    OVER_IR = 2  # ≥ 100 % IR
    FAR_OVER_IR = 3  # ≥ 120 % IR: the status LED lights constantly


_LEVEL_THRESHOLDS: tuple[tuple[LoadLevel, float], ...] = (
    (LoadLevel.FAR_OVER_IR, LEVEL_FAR_OVER_IR),
    (LoadLevel.OVER_IR, LEVEL_OVER_IR),
    (LoadLevel.NEAR_IR, LEVEL_NEAR_IR),
)


class BreakerLed(StrEnum):
    """The breaker's status LED, as the manual describes it."""

    UNKNOWN = "unknown"  # no fresh meter data
    OFF = "off"  # breaker open: the trip unit is not powered
    FLASHING = "flashing"  # ≤ 90 % IR
    UNDOCUMENTED = "undocumented"  # 90…120 % IR: the manual does not say what the LED does
    STEADY = "steady"  # ≥ 120 % IR


def status_led(fraction_of_ir: float | None, breaker_closed: bool | None = True) -> BreakerLed:
    if breaker_closed is False:
        return BreakerLed.OFF
    if fraction_of_ir is None:
        return BreakerLed.UNKNOWN
    if fraction_of_ir <= LEVEL_NEAR_IR:
        return BreakerLed.FLASHING
    if fraction_of_ir >= LEVEL_FAR_OVER_IR:
        return BreakerLed.STEADY
    return BreakerLed.UNDOCUMENTED


def next_load_level(previous: LoadLevel, fraction: float | None) -> LoadLevel:
    """Level for ``fraction`` of the reference current, with hysteresis: rising to a level
    needs its threshold, falling out of it needs the threshold minus LEVEL_CLEAR_MARGIN."""
    if fraction is None:
        return LoadLevel.UNKNOWN
    for level, threshold in _LEVEL_THRESHOLDS:
        if fraction >= threshold:
            return level
        if previous >= level and fraction >= threshold - LEVEL_CLEAR_MARGIN:
            return level
    return LoadLevel.NORMAL


def long_time_trip_s(settings: BreakerSettings, current_a: float) -> float | None:
    """Estimated trip time of a constant ``current_a`` on one phase (the whole curve: long
    time, short time, instantaneous); None when the breaker would not trip."""
    if current_a >= settings.ii_a:
        return 0.0
    isd = settings.isd_a
    if isd is not None and current_a >= isd:
        return settings.effective_tsd_s
    m = current_a / settings.ir_a
    if m < LONG_TIME_PICKUP:
        return None
    return settings.effective_tr_s * (LONG_TIME_REFERENCE_MULTIPLE / m) ** 2


def neutral_trip_s(settings: BreakerSettings, current_a: float) -> float | None:
    inn = settings.inn_a
    if inn is None or current_a < inn * LONG_TIME_PICKUP:
        return None
    return settings.effective_tn_s


@dataclass(frozen=True)
class LoadSample:
    """One meter reading as the breaker sees it."""

    at: float
    phase_currents_a: tuple[float | None, float | None, float | None]
    neutral_current_a: float | None
    phase_voltages_v: tuple[float | None, float | None, float | None] = (None, None, None)

    @property
    def highest_phase(self) -> tuple[Phase, float] | None:
        best: tuple[Phase, float] | None = None
        for phase, amps in zip(PHASES, self.phase_currents_a, strict=True):
            if amps is not None and (best is None or amps > best[1]):
                best = (phase, amps)
        return best


@dataclass(frozen=True)
class BreakerLoad:
    """The breaker's load at one meter reading, in the terms its trip unit uses."""

    at: float
    phase_currents_a: tuple[float | None, float | None, float | None]
    neutral_current_a: float | None
    phase_fraction_of_ir: tuple[float | None, float | None, float | None]
    highest_phase: Phase | None
    highest_fraction_of_ir: float | None
    neutral_fraction: float | None  # of InN, or of In when InN is OFF
    level: LoadLevel
    neutral_level: LoadLevel
    led: BreakerLed
    long_time_progress: float  # 0..1: estimated share of the long-time delay already used
    time_to_trip_s: float | None  # estimate if the present load stays; None: no trip expected


@dataclass(frozen=True)
class LoadLevelChange:
    """A warning level change the unit state reports as an event."""

    at: float
    conductor: Literal["phase", "neutral"]
    previous: LoadLevel
    level: LoadLevel
    load: BreakerLoad


class TripCause(StrEnum):
    OVERLOAD = "overload"
    NEUTRAL_LOST = "neutral_lost"
    EMERGENCY_STOP = "emergency_stop"
    UNKNOWN = "unknown"


TRIP_CAUSE_TEXT: dict[TripCause, str] = {
    TripCause.OVERLOAD: "overload",
    TripCause.NEUTRAL_LOST: "loss of Neutral",
    TripCause.EMERGENCY_STOP: "Emergency Stop",
    TripCause.UNKNOWN: "cause not identified",
}

_NODE_CAUSES: dict[int, TripCause] = {
    C.CAUSE_OVERLOAD: TripCause.OVERLOAD,
    C.CAUSE_NEUTRAL_LOST: TripCause.NEUTRAL_LOST,
    C.CAUSE_ESTOP: TripCause.EMERGENCY_STOP,
}


class Confidence(StrEnum):
    CERTAIN = "certain"  # a contact that names the cause, or two sources that agree
    LIKELY = "likely"  # one indirect source
    NONE = "none"


@dataclass(frozen=True)
class TripEvidence:
    """What the mains status node reported around a trip."""

    at: float  # when the breaker tripped (received time - the node's since_trip)
    estop_pressed: bool
    neutral_relay_operated: bool
    node_cause: int  # protocol CAUSE_* latched by the status node


@dataclass(frozen=True)
class TripDiagnosis:
    at: float
    cause: TripCause
    confidence: Confidence
    evidence: tuple[str, ...]

    @property
    def text(self) -> str:
        return TRIP_CAUSE_TEXT[self.cause]


def _overload_evidence(
    settings: BreakerSettings, history: Sequence[LoadSample], trip_at: float
) -> str | None:
    window = [s for s in history if trip_at - TRIP_LOOKBACK_S <= s.at <= trip_at + 1.0]
    worst: tuple[float, Phase, LoadSample] | None = None
    worst_neutral: tuple[float, LoadSample] | None = None
    for sample in window:
        top = sample.highest_phase
        if top is not None and (worst is None or top[1] > worst[0]):
            worst = (top[1], top[0], sample)
        n = sample.neutral_current_a
        if n is not None and (worst_neutral is None or n > worst_neutral[0]):
            worst_neutral = (n, sample)
    if worst is not None and worst[0] >= settings.ir_a * LONG_TIME_PICKUP:
        pct = 100.0 * worst[0] / settings.ir_a
        ago = trip_at - worst[2].at
        return f"{worst[1]} at {worst[0]:.0f} A ({pct:.0f} % IR) {ago:.0f} s before"
    inn = settings.inn_a
    if worst_neutral is not None and inn is not None and worst_neutral[0] >= inn:
        pct = 100.0 * worst_neutral[0] / inn
        ago = trip_at - worst_neutral[1].at
        return f"neutral at {worst_neutral[0]:.0f} A ({pct:.0f} % InN) {ago:.0f} s before"
    return None


def _neutral_shift_evidence(history: Sequence[LoadSample], trip_at: float) -> str | None:
    """Phase voltages pulled apart (one high, one low) while the meter, upstream of the
    breaker, still sees them: the symptom of a lost neutral."""
    for sample in reversed(history):
        if sample.at > trip_at + 1.0 or sample.at < trip_at - TRIP_LOOKBACK_S:
            continue
        volts = [v for v in sample.phase_voltages_v if v is not None]
        if len(volts) < 3:
            continue
        mean = sum(volts) / 3.0
        if mean <= 0:
            continue
        spread = max(abs(v - mean) for v in volts) / mean
        if spread >= NEUTRAL_SHIFT_FRACTION:
            shown = ", ".join(f"{p} {v:.0f} V" for p, v in zip(PHASES, volts, strict=True))
            return f"phase voltages shifted ({shown})"
    return None


def classify_trip(
    settings: BreakerSettings, evidence: TripEvidence, history: Sequence[LoadSample]
) -> TripDiagnosis:
    """Name the cause of a trip. Contacts win (the E-Stop button latches until twisted; the
    loss-of-Neutral relay is the protection device itself); then the node's latched cause,
    confirmed or not by the load and voltage history the meter recorded before the trip."""
    overload = _overload_evidence(settings, history, evidence.at)
    shift = _neutral_shift_evidence(history, evidence.at)
    node = _NODE_CAUSES.get(evidence.node_cause)
    notes: list[str] = []
    if node is not None:
        notes.append(f"status node latched: {TRIP_CAUSE_TEXT[node]}")

    if evidence.estop_pressed:
        return TripDiagnosis(
            evidence.at,
            TripCause.EMERGENCY_STOP,
            Confidence.CERTAIN,
            ("Emergency Stop button pressed", *notes),
        )
    if evidence.neutral_relay_operated:
        extra = (shift,) if shift else ()
        return TripDiagnosis(
            evidence.at,
            TripCause.NEUTRAL_LOST,
            Confidence.CERTAIN,
            ("loss-of-Neutral relay operated", *extra, *notes),
        )
    if node is TripCause.EMERGENCY_STOP:
        return TripDiagnosis(evidence.at, node, Confidence.LIKELY, tuple(notes))
    if node is TripCause.NEUTRAL_LOST:
        extra = (shift,) if shift else ()
        confidence = Confidence.CERTAIN if shift else Confidence.LIKELY
        return TripDiagnosis(evidence.at, node, confidence, (*notes, *extra))
    if overload is not None:
        confidence = Confidence.CERTAIN if node is TripCause.OVERLOAD else Confidence.LIKELY
        return TripDiagnosis(
            evidence.at, TripCause.OVERLOAD, confidence, (f"load: {overload}", *notes)
        )
    if node is TripCause.OVERLOAD:
        return TripDiagnosis(evidence.at, node, Confidence.LIKELY, tuple(notes))
    if shift is not None:
        return TripDiagnosis(evidence.at, TripCause.NEUTRAL_LOST, Confidence.LIKELY, (shift,))
    return TripDiagnosis(
        evidence.at,
        TripCause.UNKNOWN,
        Confidence.NONE,
        ("no contact, latched cause or load history explains the trip",),
    )


def _fraction(value: float | None, reference: float) -> float | None:
    return None if value is None else value / reference


class MainBreakerMonitor:
    """Follows the breaker's load from the main meter: warning levels with hysteresis, the
    status LED, the long-time delay used so far, and a short load history for the trip
    classifier."""

    def __init__(self, settings: BreakerSettings, history_s: float = 2 * TRIP_LOOKBACK_S):
        self._settings = settings
        self._history: deque[LoadSample] = deque()
        self._history_s = history_s
        self._level = LoadLevel.UNKNOWN
        self._neutral_level = LoadLevel.UNKNOWN
        self._progress = 0.0
        self._load: BreakerLoad | None = None
        self._breaker_closed: bool | None = None

    @property
    def settings(self) -> BreakerSettings:
        return self._settings

    @property
    def load(self) -> BreakerLoad | None:
        return self._load

    @property
    def history(self) -> tuple[LoadSample, ...]:
        return tuple(self._history)

    def set_breaker_closed(self, closed: bool | None) -> None:
        """The status node's contact: an open breaker's trip unit has no power (LED off)."""
        self._breaker_closed = closed

    def update(self, sample: LoadSample) -> list[LoadLevelChange]:
        """Feed one meter reading; returns the warning level changes it caused."""
        settings = self._settings
        previous = self._history[-1] if self._history else None
        self._history.append(sample)
        while self._history and self._history[0].at < sample.at - self._history_s:
            self._history.popleft()

        fractions = tuple(_fraction(a, settings.ir_a) for a in sample.phase_currents_a)
        top = sample.highest_phase
        top_fraction = None if top is None else top[1] / settings.ir_a
        neutral_fraction = _fraction(sample.neutral_current_a, settings.neutral_reference_a)

        # Long-time delay used so far: integrate dt / t_trip while above pickup, cool down
        # otherwise (a real unit's thermal memory), so a long overload warns before it trips.
        dt = 0.0 if previous is None else max(0.0, sample.at - previous.at)
        trip_s = None if top is None else long_time_trip_s(settings, top[1])
        if trip_s is not None and trip_s > 0:
            self._progress = min(1.0, self._progress + dt / trip_s)
        elif trip_s is None:
            self._progress *= math.exp(-dt / LONG_TIME_COOLING_S)
        remaining = None if trip_s is None else max(0.0, (1.0 - self._progress) * trip_s)

        changes: list[LoadLevelChange] = []
        level = next_load_level(self._level, top_fraction)
        neutral_level = next_load_level(self._neutral_level, neutral_fraction)
        load = BreakerLoad(
            at=sample.at,
            phase_currents_a=sample.phase_currents_a,
            neutral_current_a=sample.neutral_current_a,
            phase_fraction_of_ir=(fractions[0], fractions[1], fractions[2]),
            highest_phase=None if top is None else top[0],
            highest_fraction_of_ir=top_fraction,
            neutral_fraction=neutral_fraction,
            level=level,
            neutral_level=neutral_level,
            led=status_led(top_fraction, self._breaker_closed),
            long_time_progress=self._progress,
            time_to_trip_s=remaining,
        )
        if level != self._level:
            changes.append(LoadLevelChange(sample.at, "phase", self._level, level, load))
        if neutral_level != self._neutral_level:
            changes.append(
                LoadLevelChange(sample.at, "neutral", self._neutral_level, neutral_level, load)
            )
        self._level = level
        self._neutral_level = neutral_level
        self._load = load
        return changes

    def mark_unknown(self, at: float) -> list[LoadLevelChange]:
        """The meter went offline: the load is no longer known (levels become UNKNOWN without
        claiming the load went back to normal)."""
        changes: list[LoadLevelChange] = []
        load = self._load
        if load is not None and self._level != LoadLevel.UNKNOWN:
            changes.append(LoadLevelChange(at, "phase", self._level, LoadLevel.UNKNOWN, load))
        if load is not None and self._neutral_level != LoadLevel.UNKNOWN:
            changes.append(
                LoadLevelChange(at, "neutral", self._neutral_level, LoadLevel.UNKNOWN, load)
            )
        self._level = LoadLevel.UNKNOWN
        self._neutral_level = LoadLevel.UNKNOWN
        return changes

    def diagnose_trip(self, evidence: TripEvidence) -> TripDiagnosis:
        return classify_trip(self._settings, evidence, tuple(self._history))


def describe_settings(settings: BreakerSettings) -> Iterable[tuple[str, str]]:
    """Settings as an electrician reads them off the switches, for the status pane."""

    def multiple(v: float | None) -> str:
        return "OFF" if v is None else f"{v:g} x In"

    yield "In", f"{settings.in_a:g} A"
    yield "IR", f"{multiple(settings.ir)} = {settings.ir_a:g} A"
    yield "Isd", multiple(settings.isd)
    yield "Ii", multiple(settings.ii)
    yield "InN", multiple(settings.inn)
    if settings.tr_s is not None:
        yield "tR", f"{settings.tr_s:g} s"
    if settings.tsd_s is not None:
        yield "tsd", f"{settings.tsd_s:g} s"
    if settings.tn_s is not None:
        yield "tN", f"{settings.tn_s:g} s"
