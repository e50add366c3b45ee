"""What a scenario is: the unit's outputs and the loads plugged into them, the time line's
actions and the parsed ``Scenario`` (see ``tools.virtual.scenario`` for the file format)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tools.virtual.metersim import Load
from tools.virtual.waveforms import (
    AUDIO_RMS_FRACTION,
    DIMMER_ANGLE,
    DIMMER_RISE_US,
    MOTOR_INRUSH,
    MOTOR_INRUSH_MS,
    Shape,
    kind_shape,
)

MODELS = {36: "ABC", 48: "ABCD", 72: "ABCDEF"}
MAIN_BREAKER_IN = {36: 250, 48: 250, 72: 400}  # A, the master MCCB's rated current
PHASES = ("L1", "L2", "L3")
CHANNELS_PER_GROUP = 12
AUX_SINGLE_PHASE = {f"X{n}": PHASES[(n - 1) % 3] for n in range(1, 8)}  # default phases
AUX_THREE_PHASE = ("X8", "X9")
MAX_AMPS = 100.0  # the CT input measures up to ~108 A RMS; more is not a stage load


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


class ScenarioError(ValueError):
    """A scenario file is invalid; the message names the file, the key and the problem."""


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


def format_time(seconds: float) -> str:
    whole = int(seconds)
    frac = seconds - whole
    text = f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}"
    return text + (f"{frac:.2f}"[1:] if frac >= 0.005 else "")


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
