"""Load scenarios for the virtual smartPDU: declarative TOML shows, validated once, at load.

A scenario says which PDU it is (36/48/72: groups A-C, A-D or A-F of 12 outputs), which phase
feeds each output, what is plugged in at the start, the unsupervised auxiliary loads (X1-X9,
seen only by the main meter) and a time line of cues and faults.  ``tools/virtual/vpdu.py``
plays it: loads go to the virtual boards (``VirtualBoard.set_load``) and, as matching ``Load``
phasors, to the simulated meter.

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
import math
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

# The public face of the scenario modules: the virtual PDU and the tests import from here.
from tools.virtual.scenario_file import (
    parse_channels,
    parse_scenario,
    parse_time,
)
from tools.virtual.scenario_model import (
    AUX_SINGLE_PHASE,
    AUX_THREE_PHASE,
    CHANNELS_PER_GROUP,
    MAIN_BREAKER_IN,
    MAX_AMPS,
    MODELS,
    PHASES,
    PRESETS,
    Action,
    AuxLoad,
    BoardPlug,
    BusErrors,
    ChannelId,
    EndOverload,
    Estop,
    LoadSpec,
    MeterOffline,
    NeutralLost,
    Overload,
    PowerLoss,
    ResetBreaker,
    Scenario,
    ScenarioError,
    SetAux,
    SetLoad,
    Step,
    Trip,
    apply_level,
    format_time,
)
from tools.virtual.waveforms import (
    AUDIO_RMS_FRACTION,
    DIMMER_ANGLE,
    DIMMER_RISE_US,
    KINDS,
    MOTOR_INRUSH,
    MOTOR_INRUSH_MS,
    Shape,
    kind_shape,
    kind_wave,
    spectrum_of,
)

__all__ = [
    "AUDIO_RMS_FRACTION",
    "AUX_SINGLE_PHASE",
    "AUX_THREE_PHASE",
    "CHANNELS_PER_GROUP",
    "DIMMER_ANGLE",
    "DIMMER_RISE_US",
    "KINDS",
    "MAIN_BREAKER_IN",
    "MAX_AMPS",
    "MODELS",
    "MOTOR_INRUSH",
    "MOTOR_INRUSH_MS",
    "PHASES",
    "PRESETS",
    "SCENARIO_DIR",
    "Action",
    "AuxLoad",
    "BoardPlug",
    "BusErrors",
    "ChannelId",
    "EndOverload",
    "Estop",
    "LoadSpec",
    "MeterOffline",
    "NeutralLost",
    "Overload",
    "PowerLoss",
    "ResetBreaker",
    "Scenario",
    "ScenarioClock",
    "ScenarioError",
    "SetAux",
    "SetLoad",
    "Shape",
    "Step",
    "Trip",
    "apply_level",
    "format_time",
    "kind_shape",
    "kind_wave",
    "load_scenario",
    "loads_scenario",
    "parse_channels",
    "parse_scenario",
    "parse_time",
    "scenario_names",
    "scenario_path",
    "spectrum_of",
]

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"


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
