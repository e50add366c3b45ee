"""Load scenarios for the virtual smartPDU: declarative TOML shows, validated once, at load.

A scenario says which PDU it is (36/48/72: groups A-C, A-D or A-F of 12 outputs), which phase
feeds each output, what is plugged in at the start, the unsupervised auxiliary loads (X1-X9,
seen only by the main meter) and a time line of cues and faults.  ``tools/virtual/vpdu.py`` plays it:
loads go to the virtual boards (``VirtualBoard.set_load``) and, as matching ``Load`` phasors,
to the simulated meter.

File format (``tools/virtual/scenarios/NAME.toml``)::

    [scenario]
    description = "Rehearsal on a smartPDU 48"
    model = 48                  # 36 | 48 | 72
    mains_hz = 50               # 50 | 60
    loop = true                 # repeat the time line ...
    length = "00:04:00"         # ... every 4 minutes (required with loop)
    seed = 1                    # meter voltage/frequency wander

    [phases]                    # optional; default "L1,L2,L3" = output 1 on L1, 2 on L2 ...
    B = "L2,L3,L1"              # a repeating pattern, one phase, or a list of 12
    D = "L3"

    [presets.fog]               # optional: own presets next to the built-in ones
    kind = "resistive"
    amps = 6.5

    [[load]]                    # connected at t = 0; outputs not named are off
    channels = "A1-A8"          # "A1", "A1-A8", "A" (whole group) or a list of those
    preset = "led_wash"         # see PRESETS; any key below overrides it
    amps = 5.5

    [[aux]]                     # unsupervised outputs: X1-X7 single-phase, X8/X9 3-phase
    output = "X8"               # (amps per phase)
    preset = "audio_rack"

    [[event]]
    at = "00:01:30"             # "HH:MM:SS", "MM:SS" or seconds
    action = "chase"
    channels = "C1-C8"
    preset = "dimmer"
    step = 0.5
    duration = 20

Load keys (``[[load]]``, ``[[aux]]``, ``[presets.X]``, ``look`` entries and the load events):
``preset``, ``kind`` (off, resistive, led, dimmer, motor, smps, audio - the firmware's
``firmware/loadsim.py`` kinds), ``amps``, ``level`` (0-100 %: a dimmer's firing angle
(100 % = full conduction), other kinds scale ``amps``), ``angle`` (dimmer firing angle in
degrees, instead of ``level``), ``rise_us`` (dimmer choke), ``inrush`` / ``inrush_ms``
(motor).  ``amps`` is the RMS current the CT measures, except: dimmer = the lamp's current
at full (the RMS at ``level`` follows from the phase cut) and audio = the current at full
programme (the firmware varies the programme; the steady RMS is 70 % of it).

Actions (every event has ``at`` and ``action``; optional ``repeat`` = N copies every
``every``, and ``note`` for the log):

=================  =========================================================================
``load``           ``channels`` + load keys: connect/change a load
``off``            ``channels``: switch the outputs off (the fixtures, not the breaker)
``look``           ``loads`` = a list of inline tables ``{channels = ..., <load keys>}``
``aux``            ``output`` + load keys
``chase``          ``channels`` (in chase order) + load keys, ``step`` s, ``duration`` or
                   ``steps``, ``width`` (outputs lit at once, 1), ``base`` (level of the
                   others, 0 %), ``end_level`` (after the chase; default ``base``),
                   ``bounce`` (back and forth)
``hoist``          ``channel`` + load keys (preset hoist), ``duration`` of the move
``overload``       ``channel``, ``amps`` (RMS), optional ``kind``; then either ``duration``
                   (the extra load goes away) or ``trip_after`` (the RCBO trips: current
                   collapses to 0) and optional ``reset_after`` (breaker reset, load back)
``trip``/``reset``  ``channel``: RCBO opens / is reset (``trip`` takes ``reset_after``)
``estop``          Emergency Stop: main breaker trips, every output and aux load 0;
                   ``duration`` then reset (omit: stays until ``action="estop", active=false``)
``neutral_lost``   loss of Neutral: the relay trips the main breaker; ``duration`` / ``active``
``unplug``/``plug``  ``group``: a board's bus connector (``unplug`` takes ``duration``)
``meter_offline``  ``duration`` / ``active``: the meter stops answering
``power_loss``     ``outage`` s: boards and meter lose power (boards restart, kWh resets)
``bus_errors``     ``ber`` bit-error rate on the RS-485 line, ``duration`` (then 0)
=================  =========================================================================

Time: ``ScenarioClock`` runs the time line ``speed`` times faster than real time.  Speeding up
compresses the script, not the physics: the firmware still samples 3205 times a second,
RMS windows, overload curves, motor inrush and the meter's energy run in real time, so an
overload held for "8 s" at speed 10 lasts 0.8 s and will not reach the breaker curve.
"""

from __future__ import annotations

import asyncio
import cmath
import difflib
import functools
import math
import re
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tools.virtual.metersim import Load

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"

# The firmware's load kinds (firmware/loadsim.py KINDS; cross-checked by the tests).
KINDS = ("off", "resistive", "led", "dimmer", "motor", "smps", "audio")
MODELS = {36: "ABC", 48: "ABCD", 72: "ABCDEF"}
MAIN_BREAKER_IN = {36: 250, 48: 250, 72: 400}  # A, the master MCCB's rated current
PHASES = ("L1", "L2", "L3")
CHANNELS_PER_GROUP = 12
AUX_SINGLE_PHASE = {f"X{n}": PHASES[(n - 1) % 3] for n in range(1, 8)}  # default phases
AUX_THREE_PHASE = ("X8", "X9")
MAX_AMPS = 100.0  # the CT input measures up to ~108 A RMS; more is not a stage load

# Firmware defaults for the options (firmware/loadsim.py set_load).
DIMMER_ANGLE = 90.0
DIMMER_RISE_US = 200.0
MOTOR_INRUSH = 6.0
MOTOR_INRUSH_MS = 300.0
# AUDIO loudness is uniform in 0.35..1.0 per block: RMS = sqrt(E[(0.35 + 0.65 u)^2]).
AUDIO_RMS_FRACTION = math.sqrt(0.35**2 + 0.35 * 0.65 + 0.65**2 / 3)

# Built-in presets: what one 16 A output typically feeds on a stage.
PRESETS: dict[str, dict[str, Any]] = {
    # 8 x 150 W LED wash lights: capacitor-input drivers, crest factor 3.5, strong 3rd.
    "led_wash": {"kind": "led", "amps": 5.2},
    "led_batten": {"kind": "led", "amps": 2.8},
    # 2 kW tungsten fresnel on a phase-cut dimmer channel (8.7 A at full).
    "dimmer": {"kind": "dimmer", "amps": 8.7, "level": 70},
    # 2 x 1 kW moving heads / spots with PFC supplies.
    "moving_head": {"kind": "smps", "amps": 8.9},
    # 20k lumen laser projector.
    "projector": {"kind": "smps", "amps": 7.4},
    # 1 t single-phase chain hoist (1.1 kW): 6x inrush for 0.3 s.
    "hoist": {"kind": "motor", "amps": 7.8, "inrush": 6.0, "inrush_ms": 300.0},
    # Class-D amplifier rack at full programme.
    "audio_rack": {"kind": "audio", "amps": 12.0},
    # Work lights, fog machine heaters.
    "worklight": {"kind": "resistive", "amps": 4.3},
    "off": {"kind": "off", "amps": 0.0},
}

_TABLE = 1024  # points per mains cycle, as loadsim tabulates
_MAX_ORDER = 39  # harmonics handed to the meter model
_MIN_FRACTION = 0.002


class ScenarioError(ValueError):
    """A scenario file is invalid; the message names the file, the key and the problem."""


# ---------------------------------------------------------------------- waveform physics


@dataclass(frozen=True)
class Shape:
    """Spectrum of one load kind's waveform (as the firmware synthesises it).

    ``rms_fraction``: RMS of the waveform relative to the ``amps`` it is asked for (1 for
    kinds whose ``amps`` is already the RMS; the phase cut for dimmers).  ``pf``: cos of the
    fundamental's angle to the voltage, ``leading`` its sign; ``harmonics``: amplitude
    fractions of the fundamental by order; ``crest``: peak / RMS.
    """

    rms_fraction: float
    pf: float
    leading: bool
    harmonics: tuple[tuple[int, float], ...]
    crest: float

    @property
    def h3(self) -> float:
        return dict(self.harmonics).get(3, 0.0)


def _harmonic_wave(terms: Sequence[tuple[int, float, float]]) -> list[float]:
    w = 2 * math.pi / _TABLE
    return [
        sum(a * math.sin(h * i * w + math.radians(p)) for h, a, p in terms) for i in range(_TABLE)
    ]


def _pulse_wave(start_deg: float, width_deg: float) -> list[float]:
    wave = [0.0] * _TABLE
    for i in range(_TABLE):
        deg = i * 360 / _TABLE
        sign = 1.0
        if deg >= 180:
            deg -= 180
            sign = -1.0
        x = (deg - start_deg) / width_deg
        if 0 <= x <= 1:
            wave[i] = sign * math.sin(math.pi * x) ** 2
    return wave


def _dimmer_wave(angle: float, rise_us: float, mains_hz: float) -> list[float]:
    wave = [0.0] * _TABLE
    tau = rise_us * 1e-6 / 2.197 * 2 * math.pi * mains_hz
    alpha = math.radians(angle)
    for i in range(_TABLE):
        theta = 2 * math.pi * i / _TABLE
        lag = theta % math.pi - alpha
        if lag >= 0:
            wave[i] = math.sin(theta) * (1 - math.exp(-lag / tau) if tau > 0 else 1.0)
    return wave


def kind_wave(
    kind: str,
    *,
    angle: float = DIMMER_ANGLE,
    rise_us: float = DIMMER_RISE_US,
    mains_hz: float = 50.0,
) -> list[float]:
    """One mains cycle of ``kind``'s unscaled waveform against the voltage phase (0 = rising
    zero crossing), the same formulas as ``firmware/loadsim.py``."""
    if kind == "resistive":
        return _harmonic_wave(((1, 1.0, 0.0),))
    if kind == "led":
        return _pulse_wave(52, 40)
    if kind == "dimmer":
        return _dimmer_wave(angle, rise_us, mains_hz)
    if kind == "motor":
        return _harmonic_wave(((1, 1.0, -37.0), (3, 0.06, -111.0)))
    if kind == "smps":
        return _harmonic_wave(((1, 1.0, 3.0), (3, 0.05, 0.0), (5, 0.03, 0.0), (7, 0.02, 0.0)))
    if kind == "audio":
        return _pulse_wave(40, 60)
    return [0.0] * _TABLE


def spectrum_of(wave: Sequence[float]) -> dict[int, complex]:
    """Phasors by harmonic order: component h is |X| sin(h theta + arg X)."""
    n = len(wave)
    sines = _sine_table(n)
    quarter = n // 4  # cos(x) = sin(x + pi/2); n is a multiple of 4
    points = [(i, x) for i, x in enumerate(wave) if x]
    result: dict[int, complex] = {}
    for order in range(1, _MAX_ORDER + 1):
        a = sum(x * sines[order * i % n] for i, x in points)
        b = sum(x * sines[(order * i + quarter) % n] for i, x in points)
        result[order] = complex(2 * a / n, 2 * b / n)
    return result


@functools.lru_cache(maxsize=4)
def _sine_table(n: int) -> tuple[float, ...]:
    if n % 4:
        raise ValueError("the waveform needs a multiple of 4 points per cycle")
    return tuple(math.sin(2 * math.pi * i / n) for i in range(n))


@functools.lru_cache(maxsize=512)
def kind_shape(
    kind: str,
    angle: float = DIMMER_ANGLE,
    rise_us: float = DIMMER_RISE_US,
    mains_hz: float = 50.0,
) -> Shape:
    """The ``Shape`` of a load kind (cached: dimmer angles come from a few levels)."""
    if kind == "off":
        return Shape(0.0, 1.0, False, (), 0.0)
    wave = kind_wave(kind, angle=angle, rise_us=rise_us, mains_hz=mains_hz)
    mean_square = sum(x * x for x in wave) / len(wave)
    if mean_square <= 1e-12:
        return Shape(0.0, 1.0, False, (), 0.0)
    rms = math.sqrt(mean_square)
    fraction = rms / math.sqrt(0.5) if kind == "dimmer" else 1.0
    spectrum = spectrum_of(wave)
    fundamental = spectrum[1]
    phi = cmath.phase(fundamental)
    harmonics = tuple(
        (order, round(abs(phasor) / abs(fundamental), 4))
        for order, phasor in spectrum.items()
        if order > 1 and abs(phasor) / abs(fundamental) >= _MIN_FRACTION
    )
    peak = max(abs(x) for x in wave)
    return Shape(
        rms_fraction=fraction,
        pf=max(0.01, min(1.0, math.cos(phi))),
        leading=phi > 1e-6,
        harmonics=harmonics,
        crest=peak / rms,
    )


# ---------------------------------------------------------------------- loads and channels


@dataclass(frozen=True, order=True)
class ChannelId:
    """A main output: group letter and number 1..12 (printed as ``B7``)."""

    group: str
    number: int

    def __str__(self) -> str:
        return f"{self.group}{self.number}"


@dataclass(frozen=True)
class LoadSpec:
    """What is plugged into an output (see the module doc for ``amps`` per kind)."""

    kind: str = "off"
    amps: float = 0.0
    angle: float = DIMMER_ANGLE
    rise_us: float = DIMMER_RISE_US
    inrush: float = MOTOR_INRUSH
    inrush_ms: float = MOTOR_INRUSH_MS

    @property
    def is_off(self) -> bool:
        return (
            self.kind == "off" or self.amps <= 0.0 or (self.kind == "dimmer" and self.angle >= 180)
        )

    def shape(self, mains_hz: float = 50.0) -> Shape:
        if self.kind == "dimmer":
            return kind_shape("dimmer", round(self.angle, 2), self.rise_us, mains_hz)
        return kind_shape(self.kind)

    def rms(self, mains_hz: float = 50.0) -> float:
        """Steady true-RMS current the output's CT sees (audio: programme average)."""
        if self.is_off:
            return 0.0
        if self.kind == "audio":
            return self.amps * AUDIO_RMS_FRACTION
        return self.amps * self.shape(mains_hz).rms_fraction

    def board_command(self, mains_hz: float = 50.0) -> tuple[str, float, dict[str, float]]:
        """``(kind, amps, options)`` for ``VirtualBoard.set_load`` (amps = the table's RMS)."""
        if self.is_off:
            return "off", 0.0, {}
        if self.kind == "dimmer":
            amps = self.amps * self.shape(mains_hz).rms_fraction
            return "dimmer", round(amps, 4), {"angle": self.angle, "rise_us": self.rise_us}
        if self.kind == "motor":
            return "motor", self.amps, {"inrush": self.inrush, "inrush_ms": self.inrush_ms}
        return self.kind, self.amps, {}

    def meter_load(self, mains_hz: float = 50.0, scale: float = 1.0) -> Load | None:
        """The same load as the meter model sees it: matching RMS, PF and harmonics."""
        if scale == 1.0:
            return _steady_meter_load(self, mains_hz)
        return self._meter_load(mains_hz, scale)

    def _meter_load(self, mains_hz: float, scale: float) -> Load | None:
        current = self.rms(mains_hz) * scale
        if current <= 0.0:
            return None
        shape = self.shape(mains_hz)
        h3 = shape.h3
        others = tuple((order, f) for order, f in shape.harmonics if order != 3)
        return Load(current, pf=shape.pf, leading=shape.leading, h3=h3, harmonics=others)

    def with_rms(self, target: float, mains_hz: float = 50.0) -> LoadSpec:
        """The same kind drawing ``target`` A RMS (an overload on a channel keeps its kind)."""
        if self.is_off:
            return LoadSpec("resistive", target)
        per_amp = self.rms(mains_hz) / self.amps
        return replace(self, amps=target / per_amp if per_amp > 0 else target)


@functools.lru_cache(maxsize=1024)
def _steady_meter_load(spec: LoadSpec, mains_hz: float) -> Load | None:
    # Shows repeat a few dozen distinct loads: build each meter Load once.
    return spec._meter_load(mains_hz, 1.0)


@dataclass(frozen=True)
class AuxLoad:
    """An auxiliary (unsupervised) output: X1-X7 on one phase, X8/X9 on all three."""

    output: str
    phases: tuple[str, ...]
    load: LoadSpec


# ---------------------------------------------------------------------- time line actions


@dataclass(frozen=True)
class SetLoad:
    channels: tuple[ChannelId, ...]
    load: LoadSpec


@dataclass(frozen=True)
class SetAux:
    output: str
    load: LoadSpec


@dataclass(frozen=True)
class Overload:
    """Raise ``channel`` to ``amps`` RMS (its kind kept unless ``kind`` is given)."""

    channel: ChannelId
    amps: float
    kind: str | None = None


@dataclass(frozen=True)
class EndOverload:
    channel: ChannelId


@dataclass(frozen=True)
class Trip:
    """The output's RCBO opens: its current collapses to 0."""

    channel: ChannelId


@dataclass(frozen=True)
class ResetBreaker:
    """The RCBO is closed again; an overload's extra load has been removed."""

    channel: ChannelId


@dataclass(frozen=True)
class Estop:
    active: bool


@dataclass(frozen=True)
class NeutralLost:
    active: bool


@dataclass(frozen=True)
class BoardPlug:
    group: str
    plugged: bool


@dataclass(frozen=True)
class MeterOffline:
    active: bool


@dataclass(frozen=True)
class PowerLoss:
    outage: float  # scenario seconds


@dataclass(frozen=True)
class BusErrors:
    ber: float


Action = (
    SetLoad
    | SetAux
    | Overload
    | EndOverload
    | Trip
    | ResetBreaker
    | Estop
    | NeutralLost
    | BoardPlug
    | MeterOffline
    | PowerLoss
    | BusErrors
)


@dataclass(frozen=True)
class Step:
    """One primitive action at scenario time ``at`` (s).  ``note`` is set on the first step
    of each user event (what the log prints); ``event`` is its 1-based index in the file."""

    at: float
    action: Action
    event: int = 0
    note: str = ""


@dataclass(frozen=True)
class Scenario:
    name: str
    path: Path | None
    description: str
    model: int
    mains_hz: int
    seed: int
    loop: bool
    length: float | None  # loop period, scenario seconds
    phases: Mapping[ChannelId, str]
    loads: Mapping[ChannelId, LoadSpec]  # every output at t = 0
    aux: Mapping[str, AuxLoad]
    timeline: tuple[Step, ...]
    events: int = 0

    @property
    def groups(self) -> str:
        return MODELS[self.model]

    @property
    def main_breaker_in(self) -> int:
        return MAIN_BREAKER_IN[self.model]

    def channels(self) -> list[ChannelId]:
        return [ChannelId(g, n) for g in self.groups for n in range(1, CHANNELS_PER_GROUP + 1)]

    def phase_of(self, channel: ChannelId) -> str:
        return self.phases[channel]

    def phase_list(self) -> tuple[str, ...]:
        """Phases by channel index (group index x 12 + number - 1), the order of the
        aggregator's ``ChannelsConfig.phases``."""
        return tuple(self.phases[channel] for channel in self.channels())

    @property
    def end(self) -> float:
        """Scenario time of the last step (the loop length when looping)."""
        if self.loop and self.length is not None:
            return self.length
        return max((step.at for step in self.timeline), default=0.0)


# ---------------------------------------------------------------------- parsing helpers


def format_time(seconds: float) -> str:
    whole = int(seconds)
    frac = seconds - whole
    text = f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}"
    return text + (f"{frac:.2f}"[1:] if frac >= 0.005 else "")


_TIME_RE = re.compile(r"^(?:(\d+):)?(?:(\d+):)?(\d+(?:\.\d*)?)$")


def parse_time(value: object) -> float:
    """Seconds from ``90``, ``90.5``, ``"01:30"``, ``"00:01:30"`` or ``"00:01:30.5"``."""
    if isinstance(value, bool):
        raise ValueError("a time is a number of seconds or 'HH:MM:SS'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _TIME_RE.match(value.strip())
        if not match:
            raise ValueError(f"{value!r} is not a time ('HH:MM:SS', 'MM:SS' or seconds)")
        a, b, s = match.groups()
        hours, minutes = (int(a), int(b)) if b is not None else (0, int(a or 0))
        seconds = float(s)
        if (a is not None and seconds >= 60) or (b is not None and minutes >= 60):
            raise ValueError(f"{value!r}: minutes and seconds must be below 60")
        seconds += 60 * minutes + 3600 * hours
    else:
        raise ValueError("a time is a number of seconds or 'HH:MM:SS'")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{value!r}: a time must be >= 0")
    return seconds


class _Table:
    """A TOML table being validated: remembers which keys were used and names them in
    errors as ``<file>: <where>: key 'x': <problem>``."""

    def __init__(self, raw: object, where: str, file: str) -> None:
        if not isinstance(raw, dict):
            raise ScenarioError(f"{file}: {where}: must be a table, got {type(raw).__name__}")
        self.raw: dict[str, Any] = raw
        self.where = where
        self.file = file
        self.used: set[str] = set()

    def error(self, key: str | None, problem: str) -> ScenarioError:
        if key is None:
            return ScenarioError(f"{self.file}: {self.where}: {problem}")
        return ScenarioError(f"{self.file}: {self.where}: key '{key}': {problem}")

    def has(self, key: str) -> bool:
        return key in self.raw

    def get(self, key: str, default: Any = None) -> Any:
        self.used.add(key)
        return self.raw.get(key, default)

    def require(self, key: str) -> Any:
        self.used.add(key)
        if key not in self.raw:
            raise self.error(key, "missing (required here)")
        return self.raw[key]

    def number(
        self,
        key: str,
        default: float | None = None,
        *,
        low: float | None = None,
        high: float | None = None,
        required: bool = False,
        strict_low: bool = False,
    ) -> float | None:
        value = self.require(key) if required else self.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"must be a number, got {value!r}")
        number = float(value)
        if not math.isfinite(number):
            raise self.error(key, "must be finite")
        if low is not None and (number < low or (strict_low and number <= low)):
            raise self.error(key, f"must be {'>' if strict_low else '>='} {low:g}, got {number:g}")
        if high is not None and number > high:
            raise self.error(key, f"must be <= {high:g}, got {number:g}")
        return number

    def time(self, key: str, default: float | None = None, *, required: bool = False) -> float:
        value = self.require(key) if required else self.get(key)
        if value is None:
            if default is None:
                raise self.error(key, "missing (required here)")
            return default
        try:
            return parse_time(value)
        except ValueError as exc:
            raise self.error(key, str(exc)) from None

    def string(self, key: str, default: str | None = None, *, required: bool = False) -> str:
        value = self.require(key) if required else self.get(key, default)
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, got {value!r}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {value!r}")
        return value

    def check_unknown(self, allowed: Iterable[str] = ()) -> None:
        known = self.used | set(allowed)
        for key in self.raw:
            if key not in known:
                hint = difflib.get_close_matches(key, sorted(known), n=1)
                suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
                expected = ", ".join(sorted(known))
                raise self.error(key, f"unknown key{suggestion}; expected one of: {expected}")


_CHANNEL_RE = re.compile(r"^([A-Fa-f])(\d{1,2})?(?:\s*-\s*([A-Fa-f])?(\d{1,2}))?$")


def parse_channels(spec: object, groups: str) -> tuple[ChannelId, ...]:
    """``"A1"``, ``"A1-A6"``, ``"A1-6"``, ``"A6-A1"`` (descending), ``"A"`` (all 12), or a
    comma-separated string / list of those, in the order given."""
    items: list[object]
    if isinstance(spec, str):
        items = [part for part in spec.split(",") if part.strip()]
    elif isinstance(spec, list):
        items = list(spec)  # pyright: ignore[reportUnknownArgumentType]
    else:
        raise ValueError(f"channels must be a string or a list, got {spec!r}")
    if not items:
        raise ValueError("no channels given")
    result: list[ChannelId] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"channel {item!r} is not a string like 'A1' or 'A1-A6'")
        match = _CHANNEL_RE.match(item.strip())
        if not match:
            raise ValueError(f"channel {item!r} is not like 'A1', 'A1-A6' or 'A'")
        group, first, group2, last = match.groups()
        group = group.upper()
        if group not in groups:
            raise ValueError(f"channel {item!r}: this PDU has groups {', '.join(groups)}")
        if group2 is not None and group2.upper() != group:
            raise ValueError(f"channel range {item!r} spans two groups")
        if first is None:
            if last is not None:
                raise ValueError(f"channel {item!r} is not like 'A1', 'A1-A6' or 'A'")
            numbers = list(range(1, CHANNELS_PER_GROUP + 1))
        else:
            lo = int(first)
            hi = int(last) if last is not None else lo
            for n in (lo, hi):
                if not 1 <= n <= CHANNELS_PER_GROUP:
                    raise ValueError(f"channel {item!r}: outputs are numbered 1..12")
            step = 1 if hi >= lo else -1
            numbers = list(range(lo, hi + step, step))
        result.extend(ChannelId(group, n) for n in numbers)
    if len(set(result)) != len(result):
        raise ValueError(f"channels {spec!r} name an output twice")
    return tuple(result)


# ---------------------------------------------------------------------- the loader

_LOAD_KEYS = ("preset", "kind", "amps", "level", "angle", "rise_us", "inrush", "inrush_ms")
_ACTIONS = (
    "load",
    "off",
    "look",
    "aux",
    "chase",
    "hoist",
    "overload",
    "trip",
    "reset",
    "estop",
    "neutral_lost",
    "unplug",
    "plug",
    "meter_offline",
    "power_loss",
    "bus_errors",
)


@dataclass
class _Builder:
    file: str
    groups: str = "ABCD"
    mains_hz: int = 50
    presets: dict[str, dict[str, Any]] = field(default_factory=lambda: dict(PRESETS))

    def channels(self, table: _Table, key: str) -> tuple[ChannelId, ...]:
        try:
            return parse_channels(table.require(key), self.groups)
        except ValueError as exc:
            raise table.error(key, str(exc)) from None

    def channel(self, table: _Table, key: str = "channel") -> ChannelId:
        found = self.channels(table, key)
        if len(found) != 1:
            raise table.error(key, "names more than one output; give one, like 'B4'")
        return found[0]

    def group(self, table: _Table, key: str = "group") -> str:
        value = table.string(key, required=True).strip().upper()
        if len(value) != 1 or value not in self.groups:
            raise table.error(key, f"must be one of {', '.join(self.groups)}, got {value!r}")
        return value

    def load(self, table: _Table, *, default_preset: str | None = None) -> LoadSpec:
        """Load keys of ``table`` on top of its preset (or ``default_preset``)."""
        spec, level, angle = self.load_parts(table, default_preset=default_preset)
        return apply_level(spec, level=level, angle=angle)

    def load_parts(
        self, table: _Table, *, default_preset: str | None = None
    ) -> tuple[LoadSpec, float | None, float | None]:
        """The load at full, and the ``level`` / ``angle`` to dim it to (table, else preset)."""
        preset_name = table.get("preset", default_preset)
        base: dict[str, Any] = {}
        if preset_name is not None:
            if not isinstance(preset_name, str) or preset_name not in self.presets:
                hint = difflib.get_close_matches(str(preset_name), sorted(self.presets), n=1)
                more = f" (did you mean '{hint[0]}'?)" if hint else ""
                raise table.error(
                    "preset",
                    f"unknown preset {preset_name!r}{more}; "
                    f"known: {', '.join(sorted(self.presets))}",
                )
            base = dict(self.presets[preset_name])
        kind = table.get("kind", base.get("kind"))
        if kind is None:
            raise table.error("kind", "missing: give 'kind' or 'preset'")
        if kind not in KINDS:
            hint = difflib.get_close_matches(str(kind), KINDS, n=1)
            more = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise table.error(
                "kind", f"unknown load kind {kind!r}{more}; kinds: {', '.join(KINDS)}"
            )
        amps = table.number("amps", base.get("amps"), low=0.0, high=MAX_AMPS)
        if amps is None:
            if kind != "off":
                raise table.error("amps", "missing: how many amps does the load draw?")
            amps = 0.0
        level = table.number("level", None, low=0.0, high=100.0)
        angle = table.number("angle", None, low=0.0, high=180.0)
        if level is not None and angle is not None:
            raise table.error("angle", "give either 'level' or 'angle', not both")
        if angle is not None and kind != "dimmer":
            raise table.error("angle", f"only a dimmer has a firing angle (kind is {kind!r})")
        if level is None and angle is None:
            level = base.get("level")
            angle = base.get("angle")
        options: dict[str, float] = {}
        for key, default, low in (
            ("rise_us", DIMMER_RISE_US, 0.0),
            ("inrush", MOTOR_INRUSH, 1.0),
            ("inrush_ms", MOTOR_INRUSH_MS, 1.0),
        ):
            value = table.number(key, None, low=low, high=100000.0)
            wanted_kind = "dimmer" if key == "rise_us" else "motor"
            if value is not None and kind != wanted_kind:
                raise table.error(key, f"only applies to a {wanted_kind} (kind is {kind!r})")
            options[key] = float(value if value is not None else base.get(key, default))
        spec = LoadSpec(
            kind=kind,
            amps=float(amps),
            rise_us=options["rise_us"],
            inrush=options["inrush"],
            inrush_ms=options["inrush_ms"],
        )
        return spec, level, angle

    def preset_table(self, name: str, table: _Table) -> None:
        spec = self.load(table)
        entry: dict[str, Any] = {
            "kind": spec.kind,
            "amps": spec.amps,
            "rise_us": spec.rise_us,
            "inrush": spec.inrush,
            "inrush_ms": spec.inrush_ms,
        }
        if spec.kind == "dimmer":
            entry["angle"] = spec.angle
        self.presets[name] = entry
        table.check_unknown()


def apply_level(spec: LoadSpec, *, level: float | None, angle: float | None = None) -> LoadSpec:
    """A dimmer's ``level`` sets its firing angle (100 % = 0 deg = full, 0 % = off); other
    kinds dim by drawing ``level`` % of their current (LED fixtures, fans)."""
    if spec.kind == "dimmer":
        if angle is None:
            angle = DIMMER_ANGLE if level is None else round(180.0 * (1.0 - level / 100.0), 2)
        return replace(spec, angle=angle)
    if level is None or level >= 100.0:
        return spec
    if level <= 0.0:
        return replace(spec, kind="off", amps=0.0)
    return replace(spec, amps=spec.amps * level / 100.0)


def _parse_phases(raw: object, builder: _Builder) -> dict[ChannelId, str]:
    table = _Table(raw if raw is not None else {}, "[phases]", builder.file)
    phases: dict[ChannelId, str] = {}
    for group in builder.groups:
        value = table.get(group, "L1,L2,L3")
        if isinstance(value, str):
            pattern = [p.strip().upper() for p in value.split(",") if p.strip()]
        elif isinstance(value, list):
            pattern = [str(p).strip().upper() for p in value]  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
            if len(pattern) != CHANNELS_PER_GROUP:
                raise table.error(group, f"a list must give all 12 outputs, got {len(pattern)}")
        else:
            raise table.error(group, "must be 'L1', a pattern like 'L1,L2,L3' or a list of 12")
        bad = [p for p in pattern if p not in PHASES]
        if not pattern or bad:
            raise table.error(group, f"phases are L1, L2, L3; got {bad or value!r}")
        for n in range(1, CHANNELS_PER_GROUP + 1):
            phases[ChannelId(group, n)] = pattern[(n - 1) % len(pattern)]
    for key in table.raw:
        if key.upper() in "ABCDEF" and len(key) == 1 and key.upper() not in builder.groups:
            raise table.error(
                key, f"this PDU ({len(builder.groups) * 12} outputs) has no group {key}"
            )
    table.check_unknown()
    return phases


def _aux_entry(table: _Table, builder: _Builder) -> AuxLoad:
    output = table.string("output", required=True).strip().upper()
    if output in AUX_THREE_PHASE:
        if table.has("phase"):
            raise table.error("phase", f"{output} is a 3-phase output (amps are per phase)")
        phases: tuple[str, ...] = PHASES
    elif output in AUX_SINGLE_PHASE:
        phase = table.string("phase", AUX_SINGLE_PHASE[output]).strip().upper()
        if phase not in PHASES:
            raise table.error("phase", f"must be L1, L2 or L3, got {phase!r}")
        phases = (phase,)
    else:
        raise table.error("output", f"auxiliary outputs are X1..X9, got {output!r}")
    return AuxLoad(output, phases, builder.load(table))


class _Events:
    """Expands ``[[event]]`` tables into primitive ``Step``s."""

    def __init__(self, builder: _Builder, aux: dict[str, AuxLoad]) -> None:
        self.b = builder
        self.aux = aux
        self.steps: list[Step] = []

    def add(self, index: int, raw: object) -> None:
        where = f"[[event]] #{index}"
        if isinstance(raw, dict) and "at" in raw:
            where += f" (at {raw['at']})"
        table = _Table(raw, where, self.b.file)
        at = table.time("at", required=True)
        action = table.string("action", required=True)
        if action not in _ACTIONS:
            hint = difflib.get_close_matches(action, _ACTIONS, n=1)
            more = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise table.error(
                "action", f"unknown action {action!r}{more}; actions: {', '.join(_ACTIONS)}"
            )
        repeat = table.number("repeat", 1, low=1, high=10000)
        every = table.time("every", 0.0) if table.has("every") else None
        note = table.string("note", "")
        assert repeat is not None
        if int(repeat) != repeat:
            raise table.error("repeat", "must be a whole number")
        if repeat > 1 and not every:
            raise table.error("every", "needed with 'repeat' (the time between copies)")
        if every is not None and repeat == 1:
            raise table.error("every", "only means something with 'repeat' > 1")
        steps = getattr(self, "_" + action)(table, at)
        table.check_unknown()
        label = note or f"{action} (event #{index})"
        for copy in range(int(repeat)):
            offset = copy * (every or 0.0)
            for k, (t, prim) in enumerate(steps):
                self.steps.append(Step(t + offset, prim, index, label if k == 0 else ""))

    # -- one method per action: returns [(time, primitive)] ------------------------------
    def _load(self, t: _Table, at: float) -> list[tuple[float, Action]]:
        return [(at, SetLoad(self.b.channels(t, "channels"), self.b.load(t)))]

    def _off(self, t: _Table, at: float) -> list[tuple[float, Action]]:
        return [(at, SetLoad(self.b.channels(t, "channels"), LoadSpec()))]

    def _look(self, t: _Table, at: float) -> list[tuple[float, Action]]:
        entries = t.require("loads")
        if not isinstance(entries, list) or not entries:
            raise t.error(
                "loads", "must be a list of tables like {channels = 'A1-A4', preset = 'led_wash'}"
            )
        steps: list[tuple[float, Action]] = []
        seen: set[ChannelId] = set()
        for k, raw in enumerate(entries, 1):  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
            entry = _Table(raw, f"{t.where} loads #{k}", self.b.file)
            channels = self.b.channels(entry, "channels")
            if seen & set(channels):
                raise entry.error("channels", "an output appears in two entries of this look")
            seen |= set(channels)
            steps.append((at, SetLoad(channels, self.b.load(entry))))
            entry.check_unknown()
        return steps

    def _aux(self, t: _Table, at: float) -> list[tuple[float, Action]]:
        entry = _aux_entry(t, self.b)
        known = self.aux.get(entry.output)
        if known is not None and known.phases != entry.phases:
            raise t.error("phase", f"{entry.output} is wired to {known.phases[0]} in [[aux]]")
        self.aux.setdefault(entry.output, replace(entry, load=LoadSpec()))
        return [(at, SetAux(entry.output, entry.load))]

    def _chase(self, t: _Table, at: float) -> list[tuple[float, Action]]:
        channels = self.b.channels(t, "channels")
        if t.has("angle"):
            raise t.error("angle", "a chase sets levels: use 'level' (lit) and 'base' (others)")
        load, _, _ = self.b.load_parts(t, default_preset="dimmer")
        step = t.time("step", required=True)
        if step <= 0:
            raise t.error("step", "must be > 0")
        if t.has("steps") == t.has("duration"):
            raise t.error("duration", "give either 'duration' or 'steps'")
        if t.has("steps"):
            count = t.number("steps", low=1, high=100000)
            assert count is not None
            if int(count) != count:
                raise t.error("steps", "must be a whole number")
            steps = int(count)
        else:
            steps = max(1, int(t.time("duration") / step + 1e-9))
        width = int(t.number("width", 1, low=1, high=len(channels)) or 1)
        top = t.number("level", 100.0, low=0.0, high=100.0)
        base = t.number("base", 0.0, low=0.0, high=100.0)
        end = t.number("end_level", base, low=0.0, high=100.0)
        bounce = t.boolean("bounce", False)
        n = len(channels)
        # A bounce runs 1..n..2: the ends are not lit twice in a row.
        back = list(range(n - 2, 0, -1)) if bounce else []
        order = list(range(n)) + back
        spec_on = apply_level(load, level=top)
        spec_base = apply_level(load, level=base)
        result: list[tuple[float, Action]] = []
        previous: dict[int, bool] = {}
        for k in range(steps):
            head = order[k % len(order)]
            lit = {(head + j) % n for j in range(width)}
            changed_on = [channels[i] for i in range(n) if i in lit and previous.get(i) is not True]
            changed_off = [
                channels[i] for i in range(n) if i not in lit and previous.get(i) is not False
            ]
            time_k = at + k * step
            if changed_off:
                result.append((time_k, SetLoad(tuple(changed_off), spec_base)))
            if changed_on:
                result.append((time_k, SetLoad(tuple(changed_on), spec_on)))
            previous = {i: i in lit for i in range(n)}
        result.append((at + steps * step, SetLoad(channels, apply_level(load, level=end))))
        return result

    def _hoist(self, t: _Table, at: float) -> list[tuple[float, Action]]:
        channel = self.b.channel(t)
        load = self.b.load(t, default_preset="hoist")
        duration = t.time("duration", required=True)
        return [(at, SetLoad((channel,), load)), (at + duration, SetLoad((channel,), LoadSpec()))]

    def _overload(self, t: _Table, at: float) -> list[tuple[float, Action]]:
        channel = self.b.channel(t)
        amps = t.number("amps", required=True, low=0.0, high=MAX_AMPS, strict_low=True)
        assert amps is not None
        kind = t.get("kind")
        if kind is not None and kind not in KINDS[1:]:
            raise t.error("kind", f"must be one of {', '.join(KINDS[1:])}, got {kind!r}")
        steps: list[tuple[float, Action]] = [(at, Overload(channel, amps, kind))]
        if t.has("duration") and t.has("trip_after"):
            raise t.error("trip_after", "give either 'duration' (no trip) or 'trip_after'")
        if t.has("trip_after"):
            trip = t.time("trip_after")
            steps.append((at + trip, Trip(channel)))
            if t.has("reset_after"):
                reset = t.time("reset_after")
                if reset <= trip:
                    raise t.error("reset_after", "must be later than 'trip_after'")
                steps.append((at + reset, ResetBreaker(channel)))
        elif t.has("duration"):
            if t.has("reset_after"):
                raise t.error("reset_after", "only with 'trip_after'")
            steps.append((at + t.time("duration"), EndOverload(channel)))
        else:
            raise t.error("duration", "give 'duration' (the overload ends) or 'trip_after'")
        return steps

    def _trip(self, t: _Table, at: float) -> list[tuple[float, Action]]:
        channel = self.b.channel(t)
        steps: list[tuple[float, Action]] = [(at, Trip(channel))]
        if t.has("reset_after"):
            steps.append((at + t.time("reset_after"), ResetBreaker(channel)))
        return steps

    def _reset(self, t: _Table, at: float) -> list[tuple[float, Action]]:
        return [(at, ResetBreaker(self.b.channel(t)))]

    def _switch(
        self, t: _Table, at: float, make: Callable[[bool], Action]
    ) -> list[tuple[float, Action]]:
        active = t.boolean("active", True)
        steps: list[tuple[float, Action]] = [(at, make(active))]
        if t.has("duration"):
            if not active:
                raise t.error("duration", "only with active = true")
            steps.append((at + t.time("duration"), make(False)))
        return steps

    def _estop(self, t: _Table, at: float) -> list[tuple[float, Action]]:
        return self._switch(t, at, Estop)

    def _neutral_lost(self, t: _Table, at: float) -> list[tuple[float, Action]]:
        return self._switch(t, at, NeutralLost)

    def _meter_offline(self, t: _Table, at: float) -> list[tuple[float, Action]]:
        return self._switch(t, at, MeterOffline)

    def _unplug(self, t: _Table, at: float) -> list[tuple[float, Action]]:
        group = self.b.group(t)
        steps: list[tuple[float, Action]] = [(at, BoardPlug(group, False))]
        if t.has("duration"):
            steps.append((at + t.time("duration"), BoardPlug(group, True)))
        return steps

    def _plug(self, t: _Table, at: float) -> list[tuple[float, Action]]:
        return [(at, BoardPlug(self.b.group(t), True))]

    def _power_loss(self, t: _Table, at: float) -> list[tuple[float, Action]]:
        return [(at, PowerLoss(t.time("outage", required=True)))]

    def _bus_errors(self, t: _Table, at: float) -> list[tuple[float, Action]]:
        ber = t.number("ber", required=True, low=0.0, high=0.01)
        assert ber is not None
        steps: list[tuple[float, Action]] = [(at, BusErrors(ber))]
        if t.has("duration"):
            steps.append((at + t.time("duration"), BusErrors(0.0)))
        return steps


def parse_scenario(doc: Mapping[str, Any], *, name: str, path: Path | None = None) -> Scenario:
    """Validate a parsed TOML document (see the module doc)."""
    file = str(path) if path is not None else name
    top = _Table(dict(doc), "top level", file)
    head = _Table(top.get("scenario", {}), "[scenario]", file)
    model = head.get("model", 48)
    if isinstance(model, bool) or model not in MODELS:
        raise head.error("model", f"must be 36, 48 or 72 (smartPDU models), got {model!r}")
    mains_hz = head.get("mains_hz", 50)
    if isinstance(mains_hz, bool) or mains_hz not in (50, 60):
        raise head.error("mains_hz", f"must be 50 or 60, got {mains_hz!r}")
    builder = _Builder(file, MODELS[model], int(mains_hz))
    scenario_name = head.string("name", name)
    description = head.string("description", "")
    loop = head.boolean("loop", False)
    length = head.time("length", 0.0) if head.has("length") else None
    if loop and not length:
        raise head.error("length", 'a looping show needs its length (e.g. "00:05:00")')
    seed_value = head.number("seed", 1)
    seed = int(seed_value or 0)
    head.check_unknown()

    presets = _Table(top.get("presets", {}), "[presets]", file)
    for preset_name in list(presets.raw):
        presets.used.add(preset_name)
        builder.preset_table(
            preset_name, _Table(presets.raw[preset_name], f"[presets.{preset_name}]", file)
        )

    phases = _parse_phases(top.get("phases"), builder)

    loads: dict[ChannelId, LoadSpec] = {
        ChannelId(g, n): LoadSpec() for g in builder.groups for n in range(1, 13)
    }
    assigned: dict[ChannelId, int] = {}
    for k, raw in enumerate(_array(top, "load"), 1):
        table = _Table(raw, f"[[load]] #{k}", file)
        channels = builder.channels(table, "channels")
        spec = builder.load(table)
        for channel in channels:
            if channel in assigned:
                raise table.error(
                    "channels", f"{channel} is already loaded by [[load]] #{assigned[channel]}"
                )
            assigned[channel] = k
            loads[channel] = spec
        table.check_unknown()

    aux: dict[str, AuxLoad] = {}
    for k, raw in enumerate(_array(top, "aux"), 1):
        table = _Table(raw, f"[[aux]] #{k}", file)
        entry = _aux_entry(table, builder)
        if entry.output in aux:
            raise table.error("output", f"{entry.output} appears twice in [[aux]]")
        aux[entry.output] = entry
        table.check_unknown()

    events = _Events(builder, aux)
    raw_events = _array(top, "event")
    for k, raw in enumerate(raw_events, 1):
        events.add(k, raw)
    timeline = tuple(sorted(events.steps, key=lambda step: step.at))  # stable: file order
    if loop and length is not None:
        late = [step for step in timeline if step.at > length]
        if late:
            step = late[0]
            raise ScenarioError(
                f"{file}: [[event]] #{step.event}: ends at {format_time(step.at)}, after the "
                f"loop length {format_time(length)} (lengthen [scenario] length or shorten it)"
            )
    top.check_unknown()
    return Scenario(
        name=scenario_name,
        path=path,
        description=description,
        model=int(model),
        mains_hz=int(mains_hz),
        seed=seed,
        loop=loop,
        length=length,
        phases=phases,
        loads=loads,
        aux=aux,
        timeline=timeline,
        events=len(raw_events),
    )


def _array(top: _Table, key: str) -> list[Any]:
    value = top.get(key, [])
    if not isinstance(value, list):
        raise top.error(key, f"must be an array of tables: write [[{key}]]")
    return value  # pyright: ignore[reportUnknownVariableType]


def scenario_names() -> list[str]:
    """Names of the shipped scenarios (``tools/virtual/scenarios/*.toml``)."""
    return sorted(path.stem for path in SCENARIO_DIR.glob("*.toml"))


def scenario_path(name_or_path: str | Path) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.exists() or "/" in str(name_or_path):
        return candidate
    return SCENARIO_DIR / f"{name_or_path}.toml"


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a shipped scenario by name (``rehearsal``) or any TOML file by path."""
    path = scenario_path(name_or_path)
    if not path.exists():
        names = ", ".join(scenario_names())
        raise ScenarioError(f"{path}: no such scenario (shipped: {names})")
    try:
        with open(path, "rb") as handle:
            doc = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    return parse_scenario(doc, name=path.stem, path=path)


def loads_scenario(text: str, name: str = "<string>") -> Scenario:
    """Parse scenario TOML from a string (tests, generated shows)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{name}: not valid TOML: {exc}") from None
    return parse_scenario(doc, name=name)


# ---------------------------------------------------------------------- the clock


class ScenarioClock:
    """Scenario time, ``speed`` times faster than real time (see the module doc: the
    firmware and meter physics stay in real time)."""

    def __init__(self, speed: float = 1.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        if not speed > 0 or not math.isfinite(speed):
            raise ValueError(f"speed must be > 0, got {speed}")
        self._clock = clock
        self._speed = speed
        self._real0 = clock()
        self._scenario0 = 0.0

    @property
    def speed(self) -> float:
        return self._speed

    @speed.setter
    def speed(self, value: float) -> None:
        if not value > 0 or not math.isfinite(value):
            raise ValueError(f"speed must be > 0, got {value}")
        self.start(self.now())  # keep the current scenario time, change the rate from here
        self._speed = value

    def start(self, at: float = 0.0) -> None:
        """Scenario time ``at`` is now."""
        self._real0 = self._clock()
        self._scenario0 = at

    def now(self) -> float:
        return self._scenario0 + (self._clock() - self._real0) * self._speed

    def real_seconds(self, scenario_seconds: float) -> float:
        """How long ``scenario_seconds`` of the script last in real time."""
        return scenario_seconds / self._speed

    async def sleep_until(self, at: float) -> None:
        # Re-check after waking: the speed may change while we sleep.
        while (left := at - self.now()) > 0:
            await asyncio.sleep(min(self.real_seconds(left), 1.0))
