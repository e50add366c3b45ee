"""Scenario TOML to a ``Scenario``: tables with file/key-naming errors, channel ranges, load
presets, the ``[[event]]`` time line (see ``tools.virtual.scenario`` for the format)."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from protocol.consts import GROUP_LETTERS
from tools.virtual.scenario_model import (
    AUX_SINGLE_PHASE,
    AUX_THREE_PHASE,
    CHANNELS_PER_GROUP,
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
    DIMMER_RISE_US,
    KINDS,
    MOTOR_INRUSH,
    MOTOR_INRUSH_MS,
)

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
        if len(key) == 1 and key.upper() in GROUP_LETTERS and key.upper() not in builder.groups:
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


def _parse_loads(top: _Table, builder: _Builder) -> dict[ChannelId, LoadSpec]:
    """Every output's load at t = 0 from the ``[[load]]`` tables (unlisted outputs: off)."""
    loads: dict[ChannelId, LoadSpec] = {
        ChannelId(g, n): LoadSpec() for g in builder.groups for n in range(1, 13)
    }
    assigned: dict[ChannelId, int] = {}
    for k, raw in enumerate(_array(top, "load"), 1):
        table = _Table(raw, f"[[load]] #{k}", builder.file)
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
    return loads


def _parse_aux(top: _Table, builder: _Builder) -> dict[str, AuxLoad]:
    """The auxiliary outputs of the ``[[aux]]`` tables, each at most once."""
    aux: dict[str, AuxLoad] = {}
    for k, raw in enumerate(_array(top, "aux"), 1):
        table = _Table(raw, f"[[aux]] #{k}", builder.file)
        entry = _aux_entry(table, builder)
        if entry.output in aux:
            raise table.error("output", f"{entry.output} appears twice in [[aux]]")
        aux[entry.output] = entry
        table.check_unknown()
    return aux


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

    loads = _parse_loads(top, builder)
    aux = _parse_aux(top, builder)

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
