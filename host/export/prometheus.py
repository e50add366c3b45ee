"""The unit's state as Prometheus metrics: a ``prometheus_client`` collector that reads the
latest snapshot at scrape time (``UnitState.snapshot()``, rebuilt only after a change), so a
scrape costs the same however long the unit has run. Read-only (R7).

Every series carries ``unit`` (the unit id). Values that are not live (stale, offline, no data
yet) are left out rather than shown as current; ``smartpdu_board_up`` / ``smartpdu_meter_up``
/ ``smartpdu_mains_node_up`` say why. Documented values of the state metrics:

- ``smartpdu_output_state`` (a gauge, worse is higher, so ``> 1`` alerts on any overload): -1
  no report yet, 0 off (no load), 1 ok, 2 slight and 3 serious (overload towards a trip),
  4 tripped (the output's breaker tripped).
- ``smartpdu_breaker_position{smartpdu_breaker_position=...}``: ``unknown``, ``closed``,
  ``open`` (switched off), ``tripped``.
- ``smartpdu_breaker_load_level`` / ``_neutral_load_level``: -1 no fresh meter data, 0 normal,
  1 at least 90 % of IR (InN), 2 at least 100 %, 3 at least 120 % (the status LED steady).
- ``smartpdu_output_supervision_warning``, ``smartpdu_warning``: 1 while a supervised output is
  out of its range (R12), else 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
    StateSetMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry

from host.state import UnitState
from host.state.snapshot import (
    BreakerPosition,
    ChannelState,
    Freshness,
    GroupSnapshot,
    MeterSnapshot,
    UnitSnapshot,
)

PREFIX = "smartpdu"
OUTPUT_LABELS = ("unit", "group", "channel", "label", "phase")
GROUP_LABELS = ("unit", "group")
# smartpdu_output_state's values (one gauge: a state set would cost 6 samples per output).
CHANNEL_STATE_VALUES: dict[ChannelState, float] = {
    ChannelState.NO_DATA: -1.0,
    ChannelState.OFF: 0.0,
    ChannelState.OK: 1.0,
    ChannelState.SLIGHT: 2.0,
    ChannelState.SERIOUS: 3.0,
    ChannelState.TRIPPED: 4.0,
}
BREAKER_POSITIONS = tuple(position.value for position in BreakerPosition)
KWH_JOULES = 3.6e6

# Meter quantities exported, by the snapshot's reading name: (metric, its phase label or "").
_PHASE_READINGS: dict[str, tuple[str, str]] = {
    "l1_current": ("mains_current_amperes", "L1"),
    "l2_current": ("mains_current_amperes", "L2"),
    "l3_current": ("mains_current_amperes", "L3"),
    "neutral_current": ("mains_current_amperes", "N"),
    "l1_voltage": ("mains_voltage_volts", "L1"),
    "l2_voltage": ("mains_voltage_volts", "L2"),
    "l3_voltage": ("mains_voltage_volts", "L3"),
    "l1_l2_voltage": ("mains_line_voltage_volts", "L1-L2"),
    "l2_l3_voltage": ("mains_line_voltage_volts", "L2-L3"),
    "l3_l1_voltage": ("mains_line_voltage_volts", "L3-L1"),
    "l1_power": ("mains_power_watts", "L1"),
    "l2_power": ("mains_power_watts", "L2"),
    "l3_power": ("mains_power_watts", "L3"),
    "l1_reactive_power": ("mains_reactive_power_var", "L1"),
    "l2_reactive_power": ("mains_reactive_power_var", "L2"),
    "l3_reactive_power": ("mains_reactive_power_var", "L3"),
    "l1_apparent_power": ("mains_apparent_power_voltamperes", "L1"),
    "l2_apparent_power": ("mains_apparent_power_voltamperes", "L2"),
    "l3_apparent_power": ("mains_apparent_power_voltamperes", "L3"),
}
_UNIT_READINGS: dict[str, str] = {
    "frequency": "mains_frequency_hertz",
    "total_power": "mains_total_power_watts",
    "total_reactive_power": "mains_total_reactive_power_var",
    "total_apparent_power": "mains_total_apparent_power_voltamperes",
    "total_power_factor": "mains_power_factor_ratio",
}
_HELP: dict[str, str] = {
    "mains_current_amperes": "Mains current per conductor (L1, L2, L3, N), from the main meter.",
    "mains_voltage_volts": "Mains phase-to-neutral voltage, from the main meter.",
    "mains_line_voltage_volts": "Mains line-to-line voltage, from the main meter.",
    "mains_power_watts": "Mains active power per phase, from the main meter.",
    "mains_reactive_power_var": "Mains reactive power per phase, from the main meter.",
    "mains_apparent_power_voltamperes": "Mains apparent power per phase, from the main meter.",
    "mains_frequency_hertz": "Mains frequency, from the main meter.",
    "mains_total_power_watts": "Mains active power of all phases, from the main meter.",
    "mains_total_reactive_power_var": "Mains reactive power of all phases.",
    "mains_total_apparent_power_voltamperes": "Mains apparent power of all phases.",
    "mains_power_factor_ratio": "Mains average power factor, from the main meter.",
}


def _gauge(name: str, doc: str, labels: Iterable[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=list(labels))


def _flag(value: bool | None) -> float:
    return 1.0 if value else 0.0


class UnitCollector(Collector):
    """The metrics of one unit, from its latest snapshot at each scrape."""

    def __init__(self, state: UnitState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        snapshot = self.state.snapshot()
        yield from _unit_metrics(snapshot)
        yield from _output_metrics(snapshot)
        yield from _board_metrics(snapshot.unit_id, snapshot.groups)
        yield from _meter_metrics(snapshot.unit_id, snapshot.meter)
        yield from _mains_metrics(snapshot)


def metrics_registry(state: UnitState, *, process: bool = True) -> CollectorRegistry:
    """A registry of its own (not the library's global one) holding the unit's collector and,
    with ``process``, the service process's CPU and memory (``process_*``)."""
    from prometheus_client import ProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(UnitCollector(state))
    if process:
        ProcessCollector(registry=registry)
    return registry


def _unit_metrics(s: UnitSnapshot) -> Iterator[Metric]:
    info = InfoMetricFamily(
        f"{PREFIX}_unit", "The unit: its name and model.", labels=["unit", "unit_name", "model"]
    )
    info.add_metric([s.unit_id, s.name, str(s.model)], {})
    yield info
    up = _gauge("up", "1: the unit's service answers (this scrape).", ["unit"])
    up.add_metric([s.unit_id], 1.0)
    yield up
    warning = _gauge("warning", "1 while a supervised output is out of its range (R12).", ["unit"])
    warning.add_metric([s.unit_id], _flag(s.warning_triangle))
    yield warning
    conditions = _gauge("active_conditions", "Alarms and warnings active now.", ["unit"])
    conditions.add_metric([s.unit_id], float(len(s.conditions)))
    yield conditions
    phases = _gauge(
        "outputs_phase_current_amperes",
        "Sum of the live output currents per phase (the group boards' view).",
        ["unit", "phase"],
    )
    for phase in ("L1", "L2", "L3"):
        phases.add_metric([s.unit_id, phase], s.channel_phase_currents.of(phase))
    yield phases


def _output_metrics(s: UnitSnapshot) -> Iterator[Metric]:
    current = _gauge("output_current_amperes", "Output RMS current (live only).", OUTPUT_LABELS)
    rating = _gauge("output_rating_amperes", "Rated current of the output.", OUTPUT_LABELS)
    warning = _gauge(
        "output_supervision_warning",
        "1 while the output is outside its supervised range (R12), else 0.",
        OUTPUT_LABELS,
    )
    over_range = _gauge(
        "output_over_range", "1: beyond the measuring range, the current is a lower bound.",
        OUTPUT_LABELS,
    )  # fmt: skip
    trip = _gauge(
        "output_time_to_trip_seconds",
        "Time until the output's breaker trips at this overload, when the board knows it.",
        OUTPUT_LABELS,
    )
    state = _gauge(
        "output_state",
        "Output state: -1 no data, 0 off (no load), 1 ok, 2 slight, 3 serious overload, 4 tripped.",
        OUTPUT_LABELS,
    )
    for ch in s.iter_channels():
        labels = [s.unit_id, ch.group, ch.id, ch.label, ch.phase]
        live = ch.freshness is Freshness.LIVE
        if live and ch.current_a is not None:
            current.add_metric(labels, ch.current_a)
            over_range.add_metric(labels, _flag(ch.over_range))
        if live and ch.time_to_trip_s is not None:
            trip.add_metric(labels, ch.time_to_trip_s)
        rating.add_metric(labels, ch.rating_a)
        warning.add_metric(labels, _flag(ch.supervision.warning))
        state.add_metric(labels, CHANNEL_STATE_VALUES[ch.state])
    yield from (current, rating, state, warning, over_range, trip)


def _board_metrics(unit: str, groups: tuple[GroupSnapshot, ...]) -> Iterator[Metric]:
    up = _gauge("board_up", "1: the group board answers on the bus.", GROUP_LABELS)
    info = InfoMetricFamily(
        f"{PREFIX}_board", "The group board: type, firmware, uid.",
        labels=[*GROUP_LABELS, "board_type", "firmware", "uid"],
    )  # fmt: skip
    group_current = _gauge(
        "group_current_amperes", "Sum of the group's live output currents.", GROUP_LABELS
    )
    frames = CounterMetricFamily(
        f"{PREFIX}_board_frames", "Good frames received from the board.", labels=GROUP_LABELS
    )
    crc = CounterMetricFamily(
        f"{PREFIX}_board_crc_errors", "Frames from the board with a CRC error.", labels=GROUP_LABELS
    )
    timeouts = CounterMetricFamily(
        f"{PREFIX}_board_timeouts", "Report slots the board left silent.", labels=GROUP_LABELS
    )
    rx_errors = CounterMetricFamily(
        f"{PREFIX}_board_rx_errors", "Frames the board itself rejected (its count).",
        labels=GROUP_LABELS,
    )  # fmt: skip
    latency = _gauge("board_link_latency_seconds", "Bus round trip to the board.", GROUP_LABELS)
    uptime = _gauge("board_uptime_seconds", "Time since the board started.", GROUP_LABELS)
    mismatch = _gauge(
        "board_firmware_mismatch", "1: the board's firmware is not the expected one.", GROUP_LABELS
    )
    for group in groups:
        board, labels = group.board, [unit, group.letter]
        up.add_metric(labels, _flag(board.online))
        group_current.add_metric(labels, group.current_a)
        frames.add_metric(labels, board.link.frames_ok)
        crc.add_metric(labels, board.link.crc_errors)
        timeouts.add_metric(labels, board.link.timeouts)
        mismatch.add_metric(labels, _flag(board.firmware_mismatch))
        if board.board_rx_errors is not None:
            rx_errors.add_metric(labels, board.board_rx_errors)
        if board.link.latency_ms is not None:
            latency.add_metric(labels, board.link.latency_ms / 1000.0)
        if board.uptime_s is not None:
            uptime.add_metric(labels, board.uptime_s)
        info.add_metric(
            [*labels, board.board_type or "", board.firmware or "", board.uid or ""], {}
        )
    yield from (up, info, group_current, frames, crc, timeouts, rx_errors, latency, uptime)
    yield mismatch


def _meter_metrics(unit: str, meter: MeterSnapshot) -> Iterator[Metric]:
    up = _gauge("meter_up", "1: the main meter's readings are live.", ["unit"])
    up.add_metric([unit], _flag(meter.freshness is Freshness.LIVE))
    yield up
    enabled = _gauge("meter_enabled", "1: the main meter is enabled in the config.", ["unit"])
    enabled.add_metric([unit], _flag(meter.enabled))
    yield enabled
    families: dict[str, GaugeMetricFamily] = {}
    energy: float | None = None
    for reading in meter.readings:
        if reading.freshness is not Freshness.LIVE:
            continue
        if reading.name == "import_energy":
            energy = reading.value * KWH_JOULES
        elif reading.name in _PHASE_READINGS:
            name, phase = _PHASE_READINGS[reading.name]
            family = families.get(name)
            if family is None:
                family = families[name] = _gauge(name, _HELP[name], ["unit", "phase"])
            family.add_metric([unit, phase], reading.value)
        elif reading.name in _UNIT_READINGS:
            name = _UNIT_READINGS[reading.name]
            family = families[name] = _gauge(name, _HELP[name], ["unit"])
            family.add_metric([unit], reading.value)
    yield from families.values()
    if energy is not None:
        joules = CounterMetricFamily(
            f"{PREFIX}_mains_import_energy_joules", "Imported energy (the meter's kWh).",
            labels=["unit"],
        )  # fmt: skip
        joules.add_metric([unit], energy)
        yield joules


def _mains_metrics(s: UnitSnapshot) -> Iterator[Metric]:
    unit, mains, breaker = s.unit_id, s.mains, s.breaker
    up = _gauge("mains_node_up", "1: the mains status node answers on the bus.", ["unit"])
    up.add_metric([unit], _flag(mains.online))
    yield up
    position = StateSetMetricFamily(
        f"{PREFIX}_breaker_position", "Main breaker: unknown, closed, open, tripped.",
        labels=["unit"],
    )  # fmt: skip
    position.add_metric([unit], {p: p == mains.breaker.value for p in BREAKER_POSITIONS})
    yield position
    for name, doc, level in (
        ("breaker_load_level", "Most loaded phase against IR: -1 no data, 0 normal, "
         "1 >= 90 %, 2 >= 100 %, 3 >= 120 %.", breaker.level),
        ("breaker_neutral_load_level", "Neutral against InN: -1 no data, 0 normal, "
         "1 >= 90 %, 2 >= 100 %, 3 >= 120 %.", breaker.neutral_level),
    ):  # fmt: skip
        family = _gauge(name, doc, ["unit"])
        family.add_metric([unit], float(int(level)))
        yield family
    if mains.freshness is not Freshness.LIVE:
        return
    for name, doc, flag in (
        ("emergency_stop_active", "1 while the Emergency Stop is pressed.", mains.emergency_stop),
        ("neutral_lost", "1 while the Neutral is lost.", mains.neutral_lost),
        ("mains_node_temperature_fault", "1: the temperature sensor failed.",
         mains.temperature_fault),
    ):  # fmt: skip
        if flag is not None:
            family = _gauge(name, doc, ["unit"])
            family.add_metric([unit], _flag(flag))
            yield family
    if mains.temperature_c is not None:
        temperature = _gauge("mains_node_temperature_celsius", "Inside the unit.", ["unit"])
        temperature.add_metric([unit], mains.temperature_c)
        yield temperature
    if mains.trip_count is not None:
        trips = CounterMetricFamily(
            f"{PREFIX}_breaker_trips", "Main breaker trips the node counted.", labels=["unit"]
        )
        trips.add_metric([unit], mains.trip_count)
        yield trips
