"""The supply side of the unit: the main meter's readings and their freshness, the main
breaker's load as its trip unit sees it, and the mains status node (breaker contacts,
E-Stop, loss of Neutral, temperature). Changes go to the event hub; nothing here switches
or trips anything (R7)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

from host.breaker import (
    BreakerSettings,
    Confidence,
    LoadLevel,
    LoadLevelChange,
    LoadSample,
    MainBreakerMonitor,
    TripDiagnosis,
    TripEvidence,
)
from host.config import MeterConfig
from host.state.clock import StateClock
from host.state.events import EventHub, EventKind, Severity
from host.state.snapshot import BreakerPosition, Freshness
from protocol import consts as C
from protocol.messages import Status

TEMPERATURE_CLEAR_MARGIN_C = 5.0


@dataclass(frozen=True)
class MeterQuantity:
    name: str  # the register map's name (the meter profile, e.g. sdm630.toml)
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


# ----------------------------------------------------------------------------- main breaker


class MainBreaker:
    """The trip unit's view of the meter's currents, and the load-level events."""

    def __init__(self, hub: EventHub, settings: BreakerSettings) -> None:
        self._hub = hub
        self.monitor = MainBreakerMonitor(settings)
        self._reported = {"phase": LoadLevel.NORMAL, "neutral": LoadLevel.NORMAL}

    def feed(self, readings: Mapping[str, float], at: float) -> None:
        """A meter read; only one with a phase current says anything about the load."""
        if not any(name in readings for name in _PHASE_CURRENTS):
            return
        sample = LoadSample(
            at=at,
            phase_currents_a=(
                readings.get("l1_current"),
                readings.get("l2_current"),
                readings.get("l3_current"),
            ),
            neutral_current_a=readings.get("neutral_current"),
            phase_voltages_v=(
                readings.get("l1_voltage"),
                readings.get("l2_voltage"),
                readings.get("l3_voltage"),
            ),
        )
        for change in self.monitor.update(sample):
            self._level_event(change)

    def mark_unknown(self, at: float) -> None:
        for change in self.monitor.mark_unknown(at):
            self._level_event(change)

    def _level_event(self, change: LoadLevelChange) -> None:
        if change.level is LoadLevel.UNKNOWN:
            return  # the meter's own event says why; the last known level stays reported
        if change.level == self._reported[change.conductor]:
            return
        self._reported[change.conductor] = change.level
        load = change.load
        settings = self.monitor.settings
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
        self._hub.emit(
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


# ----------------------------------------------------------------------------- main meter


class MainMeter:
    """The latest value of every quantity with its age, and the meter's own freshness."""

    def __init__(
        self, hub: EventHub, config: MeterConfig, breaker: MainBreaker, started_at: float
    ) -> None:
        self._hub = hub
        self.config = config
        self._breaker = breaker
        self._started_at = started_at
        self.values: dict[str, tuple[float, float]] = {}  # name -> (value, at)
        self.last_ok: float | None = None
        self.error: str | None = None
        self._forced_offline = False
        self.freshness = Freshness.NO_DATA if config.enabled else Freshness.DISABLED

    def apply(self, readings: Mapping[str, float], at: float) -> dict[str, float]:
        """One successful read; returns the finite values it carried (the rest count as
        missing, and quantities the read did not include keep their own age)."""
        clean = {
            name: float(value)
            for name, value in readings.items()
            if isinstance(value, int | float) and math.isfinite(value)
        }
        for name, value in clean.items():
            self.values[name] = (value, at)
        self.last_ok = at
        self._forced_offline = False
        self.error = None
        self.refresh(at)
        return clean

    def failed(self, at: float, reason: str, offline: bool) -> None:
        self.error = reason
        if offline:
            self._forced_offline = True
        self.refresh(at)

    def value(self, name: str, now: float) -> float | None:
        if self.freshness is not Freshness.LIVE:
            return None
        entry = self.values.get(name)
        if entry is None or self.reading_freshness(entry[1], now) is not Freshness.LIVE:
            return None
        return entry[0]

    def reading_freshness(self, at: float, now: float) -> Freshness:
        if self._forced_offline or now - at >= self.config.offline_after_s:
            return Freshness.OFFLINE
        if now - at >= self.config.stale_after_s:
            return Freshness.STALE
        return Freshness.LIVE

    def _status(self, now: float) -> Freshness:
        if not self.config.enabled:
            return Freshness.DISABLED
        if self.last_ok is None:
            if self._forced_offline or now - self._started_at >= self.config.offline_after_s:
                return Freshness.OFFLINE
            return Freshness.NO_DATA
        return self.reading_freshness(self.last_ok, now)

    def refresh(self, now: float) -> bool:
        """Re-judge the meter's freshness; True (after its event) when it moved."""
        status = self._status(now)
        previous = self.freshness
        if status is previous:
            return False
        self.freshness = status
        error = f" ({self.error})" if self.error else ""
        if status is Freshness.STALE:
            self._hub.emit(
                now,
                EventKind.METER_STALE,
                Severity.WARNING,
                "main meter readings are stale: no answer for "
                f"{self.config.stale_after_s:g} s{error}",
                condition="meter",
                active=True,
            )
        elif status is Freshness.OFFLINE:
            self._hub.emit(
                now,
                EventKind.METER_OFFLINE,
                Severity.ALARM,
                f"main meter offline: voltages, currents and the breaker load are unknown{error}",
                condition="meter",
                active=True,
            )
            self._breaker.mark_unknown(now)
        elif status is Freshness.LIVE and previous in (Freshness.STALE, Freshness.OFFLINE):
            self._hub.emit(
                now, EventKind.METER_LIVE, Severity.INFO, "main meter back", condition="meter"
            )
        return True


# ----------------------------------------------------------------------------- status node


class MainsNode:
    """What the mains status node last said: contacts, latched cause, temperature."""

    def __init__(
        self, hub: EventHub, clock: StateClock, breaker: MainBreaker, temperature_limit_c: float
    ) -> None:
        self._hub = hub
        self._clock = clock
        self._breaker = breaker
        self._temperature_limit_c = temperature_limit_c
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

    def apply_status(self, status: Status, at: float) -> None:
        first = self.inputs is None
        previous_position = self.position
        previous_count = self.trip_count
        inputs = status.inputs
        self.inputs = inputs
        self.cause = status.cause
        self.trip_count = status.trip_count
        self.updated_at = at
        position = self.position
        self._breaker.monitor.set_breaker_closed(position is BreakerPosition.CLOSED)

        estop = bool(inputs & C.IN_ESTOP)
        neutral = bool(inputs & C.IN_NEUTRAL_LOST)
        self._estop_event(self.estop, estop, at)
        self._neutral_event(self.neutral_lost, neutral, at)
        self.estop = estop
        self.neutral_lost = neutral
        self._temperature(status, at)

        counted = previous_count is not None and status.trip_count != previous_count
        tripped_now = position is BreakerPosition.TRIPPED and (
            first or previous_position is not BreakerPosition.TRIPPED
        )
        if counted or tripped_now:
            self._trip_event(status, at, first, estop, neutral)
        elif not first and position is not previous_position:
            self._position_event(position, previous_position, at)

    def _trip_event(
        self, status: Status, at: float, first: bool, estop: bool, neutral: bool
    ) -> None:
        since = None if status.since_trip_s == 0xFFFF else status.since_trip_s
        trip_at = at - (since or 0)
        diagnosis = self._breaker.monitor.diagnose_trip(
            TripEvidence(trip_at, estop, neutral, status.cause)
        )
        diagnosis = replace(diagnosis, at=self._clock.wall_of(trip_at))
        self.last_trip = diagnosis
        found = " (found tripped when monitoring started)" if first else ""
        likely = " (likely)" if diagnosis.confidence is Confidence.LIKELY else ""
        self._hub.emit(
            trip_at,
            EventKind.BREAKER_TRIPPED,
            Severity.ALARM,
            f"MAIN BREAKER TRIPPED: {diagnosis.text}{likely}{found}",
            condition="breaker:trip",
            active=self.position is not BreakerPosition.CLOSED,
            cause=diagnosis.cause,
            confidence=diagnosis.confidence,
            evidence=list(diagnosis.evidence),
            trip_count=status.trip_count,
            found_at_start=first,
        )

    def _position_event(
        self, position: BreakerPosition, previous: BreakerPosition, at: float
    ) -> None:
        if position is BreakerPosition.CLOSED:
            severity, text = Severity.INFO, "main breaker switched on"
            kind = EventKind.BREAKER_CLOSED
        elif position is BreakerPosition.OPEN and previous is BreakerPosition.TRIPPED:
            severity, text = Severity.INFO, "main breaker reset after its trip (handle at OFF)"
            kind = EventKind.BREAKER_OPENED
        elif position is BreakerPosition.OPEN:
            severity, text = Severity.WARNING, "main breaker switched off (no trip)"
            kind = EventKind.BREAKER_OPENED
        else:
            return
        self._hub.emit(at, kind, severity, text, condition="breaker:trip")

    def _estop_event(self, previous: bool | None, pressed: bool, at: float) -> None:
        if pressed == bool(previous) and previous is not None:
            return
        if pressed:
            self._hub.emit(
                at,
                EventKind.EMERGENCY_STOP,
                Severity.ALARM,
                "Emergency Stop pressed",
                condition="mains:estop",
                active=True,
                pressed=True,
            )
        elif previous:
            self._hub.emit(
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
            self._hub.emit(
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
            self._hub.emit(
                at,
                EventKind.NEUTRAL_LOST,
                Severity.INFO,
                "loss-of-Neutral relay reset",
                condition="mains:neutral",
                lost=False,
            )

    def _temperature(self, status: Status, at: float) -> None:
        fault = bool(status.inputs & C.IN_TEMP_FAULT)
        temperature = None if fault else status.temp_decidegc / 10.0
        if fault and not self.temp_fault:
            self._hub.emit(
                at,
                EventKind.TEMPERATURE,
                Severity.WARNING,
                "temperature sensor fault",
                condition="mains:temperature",
                active=True,
                fault=True,
            )
        limit = self._temperature_limit_c
        if temperature is not None:
            high = temperature >= limit or (
                self.temperature_high and temperature > limit - TEMPERATURE_CLEAR_MARGIN_C
            )
            if high and not self.temperature_high:
                self._hub.emit(
                    at,
                    EventKind.TEMPERATURE,
                    Severity.WARNING,
                    f"temperature {temperature:.1f} °C inside the unit (limit {limit:g} °C)",
                    condition="mains:temperature",
                    active=True,
                    temperature_c=temperature,
                )
            elif (not high and self.temperature_high) or (not fault and self.temp_fault):
                self._hub.emit(
                    at,
                    EventKind.TEMPERATURE,
                    Severity.INFO,
                    f"temperature back to normal ({temperature:.1f} °C)",
                    condition="mains:temperature",
                    temperature_c=temperature,
                )
            self.temperature_high = high
        self.temp_fault = fault
        self.temperature = temperature
