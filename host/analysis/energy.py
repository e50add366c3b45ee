"""The show energy report: energy per phase, group and output between two times, the peak
currents, and every warning and alarm of that span.

Per phase, the meter's energy registers are the reference: a per-phase import register
(``meter.l1_import_energy`` …) when the meter map has one, else the total import register
(``meter.import_energy``) split over the phases by the meter's integrated per-phase power.
A register keeps counting while the link to the meter is down, so only its first and last
reading in the span matter; a drop is the meter's reset after a power loss (what it counted
since is added). Per group and output, the energy is integrated from the recorded channel
currents (1 s samples while kept, else 1 min averages) times the phase voltage the meter
recorded at the same time, or ``nominal_voltage_v`` when it recorded none; that is apparent
energy (kVAh), equal to kWh at unity power factor. The report says which voltage it used.

History is read window by window through ``Storage.history`` (the reader thread), so a long
span never holds more than one window of one series in memory.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from host.domain import PHASES, Phase
from host.storage.events import StoredEvent
from host.storage.store import Storage

Resolution = Literal["seconds", "minutes"]
SECONDS_WINDOW_S = 3600  # one query of 1 s samples: at most 3600 rows of one series
MINUTES_WINDOW_S = 86400  # one query of 1 min rows: at most 1440 rows
MINUTE_S = 60
EDGE_GAP_S = 90.0  # register readings this close to both ends: scaled to the whole span
ALARM_SEVERITIES = frozenset({"warning", "alarm"})
MAX_ALARMS = 10_000
KWH_J = 3.6e6


@dataclass(frozen=True)
class Window:
    start: int  # [start, end) in whole seconds
    end: int
    resolution: Resolution


@dataclass(frozen=True)
class Point:
    t: float  # start of the second or minute
    weight_s: float  # seconds of the span it stands for
    min: float
    avg: float
    max: float


def windows(start: float, end: float, now: float, keep_samples_s: int) -> list[Window]:
    """Minute windows while only minutes are kept, then 1 s windows to ``end``."""
    lo, hi = math.floor(start), math.ceil(end)
    # 1 s samples from here on (a margin for the pruning that runs every minute).
    split = max(lo, math.ceil((now - keep_samples_s + 120) / MINUTE_S) * MINUTE_S)
    out: list[Window] = []
    t = lo
    while t < min(split, hi):
        nxt = min(split, hi, (t // MINUTES_WINDOW_S + 1) * MINUTES_WINDOW_S)
        out.append(Window(t, nxt, "minutes"))
        t = nxt
    while t < hi:
        nxt = min(hi, t + SECONDS_WINDOW_S)
        out.append(Window(t, nxt, "seconds"))
        t = nxt
    return out


async def window_points(storage: Storage, series: str, window: Window) -> list[Point]:
    """The points of one series in one window, each weighted by its overlap with it."""
    if window.resolution == "seconds":
        rows = await storage.history(series, window.start, window.end - 1, "seconds")
        return [
            Point(p.t, 1.0, p.min, p.avg, p.max) for p in rows if window.start <= p.t < window.end
        ]
    rows = await storage.history(series, window.start, window.end - 1, "minutes")
    points: list[Point] = []
    for p in rows:
        overlap = min(p.t + MINUTE_S, window.end) - max(p.t, window.start)
        if overlap > 0:
            points.append(Point(p.t, float(overlap), p.min, p.avg, p.max))
    return points


async def series_points(
    storage: Storage, series: str, spans: Sequence[Window]
) -> AsyncIterator[list[Point]]:
    for window in spans:
        yield await window_points(storage, series, window)


# ----------------------------------------------------------------------------- results


@dataclass
class ChannelEnergy:
    id: str
    group: str
    phase: Phase
    label: str
    kwh: float = 0.0  # current x voltage: kVAh (kWh at unity power factor)
    peak_a: float = 0.0
    measured_s: float = 0.0
    nominal_voltage_s: float = 0.0  # of measured_s, with the nominal voltage

    @property
    def voltage_source(self) -> str:
        return voltage_source(self.measured_s, self.nominal_voltage_s)


@dataclass
class GroupEnergy:
    group: str
    kwh: float = 0.0
    phase_kwh: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    peak_a: float = 0.0  # highest sum of its outputs at one time (1 s, or 1 min averages)
    measured_s: float = 0.0
    nominal_voltage_s: float = 0.0

    @property
    def voltage_source(self) -> str:
        return voltage_source(self.measured_s, self.nominal_voltage_s)


@dataclass
class PhaseEnergy:
    phase: Phase
    meter_kwh: float | None = None  # from the meter's registers; None: no reading in the span
    meter_method: str = "no meter reading in this span"
    channels_kwh: float = 0.0  # sum of the outputs on this phase (current x voltage)
    meter_power_kwh: float = 0.0  # the meter's per-phase power integrated (for the split)
    peak_meter_a: float | None = None
    peak_channels_a: float | None = None


@dataclass
class EnergyReport:
    unit_id: str
    unit_name: str
    start: float
    end: float
    generated_at: float
    nominal_voltage_v: float
    phases: list[PhaseEnergy]
    groups: list[GroupEnergy]
    channels: list[ChannelEnergy]
    alarms: list[StoredEvent]
    meter_total_kwh: float | None = None
    meter_coverage_pct: float = 0.0  # of the span between the first and last meter reading
    resolution: str = "seconds"
    alarms_truncated: bool = False
    notes: list[str] = field(default_factory=lambda: [])

    def to_dict(self) -> dict[str, Any]:
        return {
            "unit": self.unit_id,
            "name": self.unit_name,
            "start": self.start,
            "end": self.end,
            "generated_at": self.generated_at,
            "nominal_voltage_v": self.nominal_voltage_v,
            "resolution": self.resolution,
            "meter_total_kwh": self.meter_total_kwh,
            "meter_coverage_pct": self.meter_coverage_pct,
            "phases": [asdict(p) for p in self.phases],
            "groups": [{**asdict(g), "voltage_source": g.voltage_source} for g in self.groups],
            "channels": [{**asdict(c), "voltage_source": c.voltage_source} for c in self.channels],
            "alarms": [e.to_dict() for e in self.alarms],
            "alarms_truncated": self.alarms_truncated,
            "notes": list(self.notes),
        }


def voltage_source(measured_s: float, nominal_s: float) -> str:
    if measured_s <= 0:
        return "no data"
    if nominal_s <= 0:
        return "meter"
    if nominal_s >= measured_s:
        return "nominal"
    return f"meter, nominal for {100.0 * nominal_s / measured_s:.0f} %"


# ----------------------------------------------------------------------------- building


@dataclass(frozen=True)
class OutputInfo:
    """What the report needs to know of one output (from the unit's configuration)."""

    id: str
    group: str
    phase: Phase
    label: str = ""


@dataclass
class Register:
    """An energy register's readings folded into the energy counted between the first and
    the last (a drop is a reset: the value after it was counted since)."""

    first_t: float | None = None
    last_t: float | None = None
    last_value: float | None = None
    delta: float = 0.0
    resets: int = 0

    def feed(self, t: float, value: float) -> None:
        if self.last_value is not None:
            if value >= self.last_value:
                self.delta += value - self.last_value
            elif value < self.last_value * 0.999 - 1e-6:  # float32 jitter is no reset
                self.delta += value
                self.resets += 1
        if self.first_t is None:
            self.first_t = t
        self.last_t = t
        self.last_value = value

    def feed_points(self, points: Iterable[Point], resolution: Resolution) -> None:
        for p in points:
            if resolution == "minutes":  # a minute's lowest reading is its first
                self.feed(p.t, p.min)
                self.feed(p.t + MINUTE_S - 1, p.max)
            else:
                self.feed(p.t, p.avg)

    def over(self, start: float, end: float) -> tuple[float | None, float]:
        """The energy over [start, end] and the % of it between the first and last reading;
        scaled to the whole span when the readings reach close to both ends."""
        if self.first_t is None or self.last_t is None:
            return None, 0.0
        covered = self.last_t - self.first_t
        span = max(end - start, 1e-9)
        pct = min(100.0, 100.0 * (covered + 1.0) / span)
        near_ends = self.first_t - start <= EDGE_GAP_S and end - (self.last_t + 1) <= EDGE_GAP_S
        if covered > 0 and near_ends:
            return self.delta * span / covered, pct
        return self.delta, pct


async def _alarms(storage: Storage, start: float, end: float) -> tuple[list[StoredEvent], bool]:
    """Warnings and alarms in [start, end], oldest first (paged newest first)."""
    found: list[StoredEvent] = []
    before: int | None = None
    while True:
        page = await storage.events(1000, before_id=before, since=start)
        for event in page:
            if event.time <= end and event.severity in ALARM_SEVERITIES:
                found.append(event)
        if len(page) < 1000 or len(found) >= MAX_ALARMS:
            break
        before = page[-1].id
    found.sort(key=lambda e: (e.time, e.id))
    return found[:MAX_ALARMS], len(found) > MAX_ALARMS


class _Builder:
    """Accumulates one report window by window."""

    def __init__(self, storage: Storage, outputs: Sequence[OutputInfo], nominal_v: float) -> None:
        self.storage = storage
        self.nominal_v = nominal_v
        self.channels = [ChannelEnergy(o.id, o.group, o.phase, o.label) for o in outputs]
        letters = sorted({o.group for o in outputs})
        self.groups = {g: GroupEnergy(g) for g in letters}
        self.phases = {p: PhaseEnergy(p) for p in PHASES}
        self.total_register = Register()
        self.phase_registers = {p: Register() for p in PHASES}

    async def window(self, window: Window, phase_registers: bool) -> None:
        volts: dict[Phase, dict[float, float]] = {}
        for n, phase in enumerate(PHASES, start=1):
            points = await window_points(self.storage, f"meter.l{n}_voltage", window)
            volts[phase] = {p.t: p.avg for p in points}
        sums: dict[str, dict[float, float]] = {g: {} for g in self.groups}
        for ch in self.channels:
            self._channel(ch, await window_points(self.storage, ch.id, window), volts, sums)
        for letter, per_t in sums.items():
            if per_t:
                group = self.groups[letter]
                group.peak_a = max(group.peak_a, max(per_t.values()))
        await self._meter(window, phase_registers)

    def _channel(
        self,
        ch: ChannelEnergy,
        points: Sequence[Point],
        volts: dict[Phase, dict[float, float]],
        sums: dict[str, dict[float, float]],
    ) -> None:
        group = self.groups[ch.group]
        by_t = sums[ch.group]
        phase_volts = volts[ch.phase]
        for p in points:
            volt = phase_volts.get(p.t)
            if volt is None or volt <= 0:
                volt = self.nominal_v
                ch.nominal_voltage_s += p.weight_s
                group.nominal_voltage_s += p.weight_s
            kwh = p.avg * volt * p.weight_s / KWH_J
            ch.kwh += kwh
            ch.peak_a = max(ch.peak_a, p.max)
            ch.measured_s += p.weight_s
            group.kwh += kwh
            group.phase_kwh[ch.phase] += kwh
            group.measured_s += p.weight_s
            by_t[p.t] = by_t.get(p.t, 0.0) + p.avg

    async def _meter(self, window: Window, phase_registers: bool) -> None:
        points = await window_points(self.storage, "meter.import_energy", window)
        self.total_register.feed_points(points, window.resolution)
        for n, phase in enumerate(PHASES, start=1):
            result = self.phases[phase]
            if phase_registers:
                points = await window_points(self.storage, f"meter.l{n}_import_energy", window)
                self.phase_registers[phase].feed_points(points, window.resolution)
            power = await window_points(self.storage, f"meter.l{n}_power", window)
            result.meter_power_kwh += sum(p.avg * p.weight_s for p in power) / KWH_J
            for series, attr in ((f"meter.l{n}_current", "peak_meter_a"),
                                 (f"sum.L{n}", "peak_channels_a")):  # fmt: skip
                peak = max((p.max for p in await window_points(self.storage, series, window)),
                           default=None)  # fmt: skip
                old = getattr(result, attr)
                if peak is not None and (old is None or peak > old):
                    setattr(result, attr, peak)

    def finish(self, report: EnergyReport, phase_registers: bool) -> None:
        start, end = report.start, report.end
        total, coverage = self.total_register.over(start, end)
        report.meter_total_kwh, report.meter_coverage_pct = total, coverage
        power_sum = sum(p.meter_power_kwh for p in self.phases.values())
        for ch in self.channels:
            self.phases[ch.phase].channels_kwh += ch.kwh
        for phase, result in self.phases.items():
            if phase_registers:
                result.meter_kwh, _ = self.phase_registers[phase].over(start, end)
                result.meter_method = "the meter's per-phase import register (kWh delta)"
            elif total is not None and power_sum > 0:
                result.meter_kwh = total * result.meter_power_kwh / power_sum
                result.meter_method = (
                    "the meter's total import register (kWh delta), split by its per-phase power"
                )
            elif total is not None:
                result.meter_kwh = total / 3.0 if total > 0 else 0.0
                result.meter_method = "the meter's total import register, no per-phase power"
        if self.total_register.resets:
            report.notes.append(
                f"the meter's energy register restarted {self.total_register.resets} time(s) "
                "(a power loss); what it counted since is included"
            )
        if total is None:
            report.notes.append("the meter recorded no energy reading in this span")
        elif coverage < 99.0:
            report.notes.append(f"the meter's readings cover {coverage:.0f} % of the span")
        report.channels = self.channels
        report.groups = list(self.groups.values())
        report.phases = [self.phases[p] for p in PHASES]


async def build_report(
    storage: Storage,
    outputs: Sequence[OutputInfo],
    start: float,
    end: float,
    *,
    unit_id: str,
    unit_name: str = "",
    nominal_voltage_v: float = 230.0,
    now: float | None = None,
) -> EnergyReport:
    """The report of [start, end] (seconds since the epoch, start < end)."""
    at = time.time() if now is None else now
    spans = windows(start, min(end, at + 1), at, storage.history_config.keep_samples_s)
    known = set(await storage.series_names())
    phase_registers = all(f"meter.l{n}_import_energy" in known for n in (1, 2, 3))
    builder = _Builder(storage, outputs, nominal_voltage_v)
    for window in spans:
        await builder.window(window, phase_registers)
    alarms, truncated = await _alarms(storage, start, end)
    kinds = {w.resolution for w in spans}
    report = EnergyReport(
        unit_id=unit_id,
        unit_name=unit_name,
        start=start,
        end=end,
        generated_at=at,
        nominal_voltage_v=nominal_voltage_v,
        phases=[],
        groups=[],
        channels=[],
        alarms=alarms,
        resolution="+".join(sorted(kinds)) or "seconds",
        alarms_truncated=truncated,
    )
    builder.finish(report, phase_registers)
    if "minutes" in kinds:
        report.notes.append(
            "older than the 1 s samples kept: integrated from 1 min averages, group peaks "
            "are peaks of 1 min averages"
        )
    report.notes.append(
        "output and group energy = recorded current x phase voltage (kVAh; kWh at unity "
        f"power factor); nominal voltage {nominal_voltage_v:g} V where the meter recorded none"
    )
    return report
