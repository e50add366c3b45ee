"""What the browser shows, as plain JSON: the *view* of a unit, built from a ``UnitSnapshot``.

The live WebSocket sends the whole view once, then RFC 7386 JSON merge patches from one view
to the next. The view is keyed by id (groups by letter, channels by "A7", meter readings by
name) so a patch carries only what moved (mostly currents), and values are rounded to what
the instruments resolve (10 mA, 0.1 V …) so noise below the resolution sends nothing.

Pure functions, no I/O: the live hub calls them, the tests call them directly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from host.breaker import TRIP_CAUSE_TEXT, BreakerLed, LoadLevel, describe_settings
from host.state import (
    METER_QUANTITIES,
    BoardSnapshot,
    ChannelSnapshot,
    Event,
    Freshness,
    UnitSnapshot,
)

JSON = dict[str, Any]
RECENT_EVENTS_IN_VIEW = 20

LED_TEXT: dict[BreakerLed, str] = {
    BreakerLed.UNKNOWN: "unknown (no live meter data)",
    BreakerLed.OFF: "off (breaker open)",
    BreakerLed.FLASHING: "flashing: load ≤ 90 % IR",
    BreakerLed.UNDOCUMENTED: "between 90 and 120 % IR (the manual leaves the LED undefined)",
    BreakerLed.STEADY: "steady: load ≥ 120 % IR",
}
LEVEL_TEXT: dict[LoadLevel, str] = {
    LoadLevel.UNKNOWN: "unknown",
    LoadLevel.NORMAL: "normal",
    LoadLevel.NEAR_IR: "near IR (≥ 90 %)",
    LoadLevel.OVER_IR: "over IR (≥ 100 %)",
    LoadLevel.FAR_OVER_IR: "far over IR (≥ 120 %)",
}
_DECIMALS_BY_UNIT = {"A": 2, "V": 1, "Hz": 2, "W": 0, "VAr": 0, "VA": 0, "": 3, "kWh": 2}
_DECIMALS_BY_UNIT["kVArh"] = 2


def rnd(value: float | None, decimals: int) -> float | int | None:
    if value is None or not math.isfinite(value):
        return None
    if decimals <= 0:
        return round(value)
    return round(value, decimals)


@dataclass(frozen=True)
class PanelView:
    """A virtual board's front panel as it lights now (the simulated hardware; the unit's
    selection comes from the REPORTs, ``GroupSnapshot.selected``)."""

    leds: tuple[str, ...]  # "#rrggbb" per button
    display: str
    selected: int | None  # 1..12: the button lit blue

    def to_json(self) -> JSON:
        return {"leds": list(self.leds), "display": self.display, "selected": self.selected}


def panel_view(state: object) -> PanelView | None:
    """From a ``tools.virtual.vboard.PanelState`` (duck-typed: ``leds``, ``display``)."""
    leds_raw = getattr(state, "leds", None)
    if not isinstance(leds_raw, list | tuple):
        return None
    leds: list[str] = []
    selected: int | None = None
    for index, rgb in enumerate(leds_raw[:12]):  # pyright: ignore[reportUnknownVariableType,reportUnknownArgumentType]
        try:
            r, g, b = (max(0, min(255, int(c))) for c in rgb)  # pyright: ignore[reportUnknownVariableType,reportUnknownArgumentType]
        except (TypeError, ValueError):
            r = g = b = 0
        leds.append(f"#{r:02x}{g:02x}{b:02x}")
        if b and not r and not g and selected is None:
            selected = index + 1
    display = getattr(state, "display", "")
    return PanelView(tuple(leds), display if isinstance(display, str) else "", selected)


def channel_view(ch: ChannelSnapshot) -> JSON:
    sup = ch.supervision
    return {
        "n": ch.number,
        "label": ch.label,
        "phase": ch.phase,
        "rating_a": ch.rating_a,
        "state": ch.state.value,
        "current_a": rnd(ch.current_a, 2),
        "over_range": ch.over_range,
        "crest": rnd(ch.crest_factor, 1),
        "ttt_s": rnd(ch.time_to_trip_s, 0),
        "clipped": ch.clipped,
        "freshness": ch.freshness.value,
        "sup_on": sup.settings.enabled,
        "sup_min": sup.settings.min_a,
        "sup_max": sup.settings.max_a,
        "sup_status": sup.status.value,
        # Blue on the board's front panel, from its REPORTs (real and virtual boards alike).
        "selected": ch.selected,
    }


def board_view(board: BoardSnapshot) -> JSON:
    return {
        "online": board.online,
        "address": board.address,
        "type": board.board_type,
        "firmware": board.firmware,
        "firmware_mismatch": board.firmware_mismatch,
        "flags": list(board.flags),
        "frames_ok": board.link.frames_ok,
        "crc_errors": board.link.crc_errors,
        "timeouts": board.link.timeouts,
        "latency_ms": rnd(board.link.latency_ms, 1),
        "rx_errors": board.board_rx_errors,
        "uptime_s": board.uptime_s,
        "mains_hz": rnd(board.mains_hz, 2),
        "last_seen": rnd(board.last_seen, 1),
    }


def event_view(event: Event) -> JSON:
    return {
        "time": rnd(event.time, 3),
        "kind": event.kind.value,
        "severity": event.severity.value,
        "group": event.group,
        "channel": event.channel,
        "message": event.message,
    }


def meter_view(snapshot: UnitSnapshot) -> JSON:
    meter = snapshot.meter
    readings: JSON = {}
    for reading in meter.readings:
        decimals = _DECIMALS_BY_UNIT.get(reading.unit, 3)
        readings[reading.name] = {"v": rnd(reading.value, decimals), "f": reading.freshness.value}
    return {
        "enabled": meter.enabled,
        "freshness": meter.freshness.value,
        "last_reading_at": rnd(meter.last_reading_at, 1),
        "last_error": meter.last_error,
        "readings": readings,
    }


def breaker_view(snapshot: UnitSnapshot) -> JSON:
    b = snapshot.breaker
    load = b.load
    trip = b.last_trip
    s = b.settings
    return {
        "type": b.type_name,
        "settings": {
            "in_a": s.in_a,
            "ir": s.ir,
            "ir_a": s.ir_a,
            "isd": s.isd,
            "ii": s.ii,
            "inn": s.inn,
            "tr_s": s.tr_s,
            "tsd_s": s.tsd_s,
            "tn_s": s.tn_s,
        },
        "settings_text": [[k, v] for k, v in describe_settings(s)],
        "load_pct": None
        if load is None or load.highest_fraction_of_ir is None
        else rnd(100.0 * load.highest_fraction_of_ir, 1),
        "phase_pct": [
            None if f is None else rnd(100.0 * f, 1)
            for f in (load.phase_fraction_of_ir if load else (None, None, None))
        ],
        "neutral_pct": None
        if load is None or load.neutral_fraction is None
        else rnd(100.0 * load.neutral_fraction, 1),
        "highest_phase": None if load is None else load.highest_phase,
        "level": b.level.name.lower(),
        "level_text": LEVEL_TEXT[b.level],
        "neutral_level": b.neutral_level.name.lower(),
        "led": b.led.value,
        "led_text": LED_TEXT[b.led],
        "time_to_trip_s": None if load is None else rnd(load.time_to_trip_s, 0),
        "freshness": b.freshness.value,
        "last_trip": None
        if trip is None
        else {
            "at": rnd(trip.at, 1),
            "cause": trip.cause.value,
            "cause_text": TRIP_CAUSE_TEXT[trip.cause],
            "confidence": trip.confidence.value,
            "evidence": list(trip.evidence),
        },
    }


def mains_view(snapshot: UnitSnapshot) -> JSON:
    m = snapshot.mains
    return {
        "online": m.online,
        "breaker": m.breaker.value,
        "emergency_stop": m.emergency_stop,
        "neutral_lost": m.neutral_lost,
        "temperature_c": rnd(m.temperature_c, 1),
        "temperature_fault": m.temperature_fault,
        "trip_count": m.trip_count,
        "latched_cause": None if m.latched_cause is None else m.latched_cause.value,
        "freshness": m.freshness.value,
        "updated_at": rnd(m.updated_at, 1),
    }


def phase_currents(snapshot: UnitSnapshot) -> JSON:
    """Pane A's L1/L2/L3/N: the main meter when it is live, else the sum of the channels
    (no neutral then: the boards cannot measure it)."""
    meter = snapshot.meter
    values = [meter.live_value(n) for n in ("l1_current", "l2_current", "l3_current")]
    if all(v is not None for v in values):
        return {
            "l1": rnd(values[0], 1),
            "l2": rnd(values[1], 1),
            "l3": rnd(values[2], 1),
            "n": rnd(meter.live_value("neutral_current"), 1),
            "source": "meter",
        }
    sums = snapshot.channel_phase_currents
    live = any(g.board.online for g in snapshot.groups)
    return {
        "l1": rnd(sums.l1, 1) if live else None,
        "l2": rnd(sums.l2, 1) if live else None,
        "l3": rnd(sums.l3, 1) if live else None,
        "n": None,
        "source": "channels" if live else "none",
    }


def display_name(name: str, number: int | None) -> str:
    """The name shown: the user's, else "smartPDU <number in detection order>"."""
    if name:
        return name
    return f"smartPDU {number}" if number is not None else "smartPDU"


def unit_summary(snapshot: UnitSnapshot, *, number: int | None, url: str) -> JSON:
    """One row of pane A (``GET /api/v1/units``): the same shape for peers."""
    currents = phase_currents(snapshot)
    online = any(g.board.online for g in snapshot.groups) or snapshot.meter.freshness in (
        Freshness.LIVE,
        Freshness.STALE,
    )
    return {
        "id": snapshot.unit_id,
        "name": display_name(snapshot.name, number),
        "custom_name": snapshot.name,
        "number": number,
        "model": snapshot.model,
        "url": url,
        "local": True,
        "l1": currents["l1"],
        "l2": currents["l2"],
        "l3": currents["l3"],
        "n": currents["n"],
        "source": currents["source"],
        "warning": snapshot.warning_triangle,
        "tripped": snapshot.mains.breaker.value == "tripped",
        "online": online,
        "alarms": sum(1 for c in snapshot.conditions if c.severity.value == "alarm"),
    }


def build_view(
    snapshot: UnitSnapshot,
    *,
    number: int | None,
    url: str,
    units: Sequence[JSON] = (),
    panels: Mapping[str, PanelView | None] | None = None,
) -> JSON:
    """The whole view of the local unit (plus pane A's list of every known unit)."""
    panels = panels or {}
    groups: JSON = {}
    channels: JSON = {}
    for g in snapshot.groups:
        panel = panels.get(g.letter)
        pc = g.phase_currents
        groups[g.letter] = {
            "current_a": rnd(g.current_a, 2),
            "phases": [rnd(pc.l1, 2), rnd(pc.l2, 2), rnd(pc.l3, 2)],
            "board": board_view(g.board),
            # The output selected on the front panel: its button is blue and the LOAD CURRENT
            # display shows its current (None: nothing selected, or the board is offline).
            "selected": g.selected,
            "panel": None if panel is None else panel.to_json(),
            "channels": [c.id for c in g.channels],
        }
        for ch in g.channels:
            channels[ch.id] = channel_view(ch)
    return {
        "unit": {
            "id": snapshot.unit_id,
            "name": display_name(snapshot.name, number),
            "custom_name": snapshot.name,
            "number": number,
            "model": snapshot.model,
            "url": url,
        },
        "taken_at": rnd(snapshot.taken_at, 2),
        "units": list(units),
        "triangle": snapshot.warning_triangle,
        "currents": phase_currents(snapshot),
        "group_order": [g.letter for g in snapshot.groups],
        "groups": groups,
        "channels": channels,
        "meter_quantities": [[q.name, q.label, q.unit] for q in METER_QUANTITIES],
        "meter": meter_view(snapshot),
        "breaker": breaker_view(snapshot),
        "mains": mains_view(snapshot),
        "conditions": [
            {
                "key": c.key,
                "kind": c.kind.value,
                "severity": c.severity.value,
                "since": rnd(c.since, 1),
                "group": c.group,
                "channel": c.channel,
                "message": c.message,
            }
            for c in snapshot.conditions
        ],
        "events": [event_view(e) for e in snapshot.recent_events[-RECENT_EVENTS_IN_VIEW:]],
    }


# ----------------------------------------------------------------------------- merge patch


_MISSING = object()
REPLACE = "$replace"


def merge_diff(old: Any, new: Any) -> Any:
    """A JSON merge patch (RFC 7386 style) that turns ``old`` into ``new``.

    Two differences from the RFC: ``null`` in a patch sets a member to null (it does not
    delete it), and an object that lost members is sent whole as ``{"$replace": object}``
    (views keep their keys, so that is rare). ``apply_patch`` here and in app.js agree."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    if not old.keys() <= new.keys():
        return {REPLACE: new}
    patch: JSON = {}
    for key, value in new.items():  # pyright: ignore[reportUnknownVariableType]
        before = old.get(key, _MISSING)  # pyright: ignore[reportUnknownMemberType]
        if before is _MISSING:
            patch[key] = _wrap(value)
        elif before != value:
            if isinstance(before, dict) and isinstance(value, dict):
                patch[key] = merge_diff(before, value)
            else:
                patch[key] = _wrap(value)
    return patch


def _wrap(value: Any) -> Any:
    """A new object is sent as a replacement, not merged into whatever was there."""
    return {REPLACE: value} if isinstance(value, dict) else value


def apply_patch(target: Any, patch: Any) -> Any:
    """Apply a ``merge_diff`` patch."""
    if not isinstance(patch, dict):
        return patch
    if REPLACE in patch:
        return patch[REPLACE]
    result: JSON = dict(target) if isinstance(target, dict) else {}  # pyright: ignore[reportUnknownArgumentType]
    for key, value in patch.items():  # pyright: ignore[reportUnknownVariableType]
        result[key] = apply_patch(result.get(key), value)
    return result
