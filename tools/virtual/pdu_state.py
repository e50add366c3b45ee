"""The virtual PDU's electrical state: what each output draws after the time line's actions
(overloads, trips, main breaker, power loss), the phase loads the meter sees, and the currents
the aggregator should read."""

from __future__ import annotations

import math

from tools.virtual.metersim import (
    Load,
    neutral_current,
    phase_spectrum,
    rms_of,
)
from tools.virtual.scenario import (
    PHASES,
    Action,
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
    SetAux,
    SetLoad,
    Trip,
    apply_level,
)

# ---------------------------------------------------------------------- electrical state


class PduState:
    """What flows where, as the scenario has set it (no I/O; ``VirtualPdu`` acts on it)."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.mains_hz = float(scenario.mains_hz)
        self.loads: dict[ChannelId, LoadSpec] = dict(scenario.loads)
        self.saved: dict[ChannelId, LoadSpec] = {}  # the load before an overload
        self.tripped: set[ChannelId] = set()  # output RCBOs that are open
        self.aux: dict[str, LoadSpec] = {name: a.load for name, a in scenario.aux.items()}
        self.aux_phases: dict[str, tuple[str, ...]] = {
            name: a.phases for name, a in scenario.aux.items()
        }
        self.estop = False
        self.neutral_lost = False
        self.powered = True
        self.unplugged: set[str] = set()
        self.meter_offline = False
        self.ber = 0.0
        self.motor_started: dict[ChannelId, float] = {}  # monotonic time of the last start
        self._steady: tuple[tuple[object, ...], tuple[list[Load], list[Load], list[Load]]] | None
        self._steady = None

    @property
    def mains_on(self) -> bool:
        """The master MCCB is closed and the unit has power."""
        return self.powered and not self.estop and not self.neutral_lost

    def effective(self, channel: ChannelId) -> LoadSpec:
        """The load actually drawing current from ``channel`` now."""
        if not self.mains_on or channel in self.tripped:
            return LoadSpec()
        return self.loads[channel]

    def effective_all(self) -> dict[ChannelId, LoadSpec]:
        return {channel: self.effective(channel) for channel in self.loads}

    def expected_channel_amps(self, channel: ChannelId) -> float:
        """Steady RMS the output's board should read (motors: running current)."""
        return self.effective(channel).rms(self.mains_hz)

    def phase_loads(self, now: float | None = None) -> tuple[list[Load], list[Load], list[Load]]:
        """The meter's loads per phase; with ``now``, motors starting draw their inrush."""
        key = self._key()
        if now is None and self._steady is not None and self._steady[0] == key:
            return self._steady[1]
        per_phase: dict[str, list[Load]] = {p: [] for p in PHASES}
        for channel, spec in self.effective_all().items():
            scale = 1.0
            started = self.motor_started.get(channel)
            if now is not None and spec.kind == "motor" and started is not None:
                age_ms = (now - started) * 1000.0
                scale = 1.0 + (spec.inrush - 1.0) * math.exp(-3.0 * age_ms / spec.inrush_ms)
            load = spec.meter_load(self.mains_hz, scale)
            if load is not None:
                per_phase[self.scenario.phases[channel]].append(load)
        if self.mains_on:
            for name, spec in self.aux.items():
                load = spec.meter_load(self.mains_hz)
                if load is not None:
                    for phase in self.aux_phases[name]:
                        per_phase[phase].append(load)
        result = (per_phase["L1"], per_phase["L2"], per_phase["L3"])
        if now is None:
            self._steady = (key, result)
        return result

    def _key(self) -> tuple[object, ...]:
        # Everything the steady phase loads depend on (loads are frozen, so hashable).
        return (
            tuple(self.loads.values()),
            frozenset(self.tripped),
            tuple(self.aux.items()),
            self.mains_on,
        )

    def expected_phase_amps(self, phase: str) -> float:
        """The meter's steady reading of ``phase``: RMS of the phasor sum of its loads."""
        return rms_of(phase_spectrum(self.phase_loads()[PHASES.index(phase)]))

    def expected_neutral_amps(self) -> float:
        return neutral_current([phase_spectrum(loads) for loads in self.phase_loads()])

    def channel_sum_amps(self, phase: str) -> float:
        """Arithmetic sum of the outputs' RMS currents on ``phase`` (what boards add up)."""
        return sum(
            self.expected_channel_amps(channel)
            for channel, p in self.scenario.phases.items()
            if p == phase
        )

    def aux_amps(self, phase: str) -> float:
        if not self.mains_on:
            return 0.0
        return sum(
            spec.rms(self.mains_hz)
            for name, spec in self.aux.items()
            if phase in self.aux_phases[name]
        )

    def apply(self, action: Action, now: float) -> set[ChannelId]:
        """Apply a load action; returns the outputs whose flowing load changed."""
        before = self.effective_all()
        if isinstance(action, SetLoad):
            for channel in action.channels:
                self.loads[channel] = action.load
                self.saved.pop(channel, None)
        elif isinstance(action, SetAux):
            self.aux[action.output] = action.load
            self.aux_phases.setdefault(action.output, self.scenario.aux[action.output].phases)
        elif isinstance(action, Overload):
            current = self.loads[action.channel]
            self.saved.setdefault(action.channel, current)
            base = current if action.kind is None else LoadSpec(action.kind, 1.0)
            if action.kind == "dimmer":
                base = apply_level(base, level=100.0)
            self.loads[action.channel] = base.with_rms(action.amps, self.mains_hz)
        elif isinstance(action, EndOverload):
            if action.channel in self.saved:
                self.loads[action.channel] = self.saved.pop(action.channel)
        elif isinstance(action, Trip):
            self.tripped.add(action.channel)
        elif isinstance(action, ResetBreaker):
            self.tripped.discard(action.channel)
            if action.channel in self.saved:  # the extra load was unplugged before the reset
                self.loads[action.channel] = self.saved.pop(action.channel)
        elif isinstance(action, Estop):
            self.estop = action.active
        elif isinstance(action, NeutralLost):
            self.neutral_lost = action.active
        elif isinstance(action, MeterOffline):
            self.meter_offline = action.active
        elif isinstance(action, BusErrors):
            self.ber = action.ber
        elif isinstance(action, BoardPlug):
            if action.plugged:
                self.unplugged.discard(action.group)
            else:
                self.unplugged.add(action.group)
        elif isinstance(action, PowerLoss):
            pass  # sequenced by VirtualPdu.power_loss (powered goes False, then True)
        after = self.effective_all()
        changed = {channel for channel in after if after[channel] != before[channel]}
        for channel in changed:
            if after[channel].kind == "motor" and not after[channel].is_off:
                self.motor_started[channel] = now
        return changed

    def reset_show(self, now: float) -> set[ChannelId]:
        """Back to the scenario's t = 0 loads (a looping show starts again)."""
        before = self.effective_all()
        self.loads = dict(self.scenario.loads)
        self.saved.clear()
        self.tripped.clear()
        self.aux = {name: a.load for name, a in self.scenario.aux.items()}
        after = self.effective_all()
        changed = {channel for channel in after if after[channel] != before[channel]}
        for channel in changed:
            if after[channel].kind == "motor":
                self.motor_started[channel] = now
        return changed
