"""The MQTT topics of one unit and the Home Assistant MQTT discovery messages that describe
them (https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery).

One HA device per unit, one sub-device per group board (``via_device``); every output's
current and state, the mains figures, the breaker position, board and meter connectivity,
and an event entity. Unique ids come from the unit id and the channel id only, so they stay
the same across restarts and relabelling. Labels appear only inside the JSON (``name``),
never in a topic: a topic is built from the unit id, group letters and channel ids, which
the configuration and host.domain restrict to letters and digits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from host.state import BreakerPosition, ChannelState, EventKind, UnitSnapshot

ONLINE = "online"
OFFLINE = "offline"


@dataclass(frozen=True)
class MainsQuantity:
    name: str  # the meter quantity (host.state.METER_QUANTITIES)
    device_class: str
    unit: str | None
    state_class: str = "measurement"
    precision: int = 1


# The mains figures published once a second (the meter's R5 set has more; these are the
# ones a site watches).
MAINS_QUANTITIES: tuple[MainsQuantity, ...] = (
    *(MainsQuantity(f"{p}_voltage", "voltage", "V") for p in ("l1", "l2", "l3")),
    *(MainsQuantity(f"{p}_current", "current", "A", precision=2) for p in ("l1", "l2", "l3")),
    MainsQuantity("neutral_current", "current", "A", precision=2),
    *(MainsQuantity(f"{p}_power", "power", "W", precision=0) for p in ("l1", "l2", "l3")),
    MainsQuantity("total_power", "power", "W", precision=0),
    MainsQuantity("frequency", "frequency", "Hz", precision=2),
    MainsQuantity("total_power_factor", "power_factor", None, precision=2),
    MainsQuantity("import_energy", "energy", "kWh", "total_increasing", precision=2),
)
_MAINS_NAMES = {
    "l1_voltage": "L1 voltage",
    "l2_voltage": "L2 voltage",
    "l3_voltage": "L3 voltage",
    "l1_current": "L1 current",
    "l2_current": "L2 current",
    "l3_current": "L3 current",
    "neutral_current": "N current",
    "l1_power": "L1 power",
    "l2_power": "L2 power",
    "l3_power": "L3 power",
    "total_power": "Total power",
    "frequency": "Frequency",
    "total_power_factor": "Power factor",
    "import_energy": "Energy",
}


@dataclass(frozen=True)
class UnitTopics:
    """Every topic of one unit under ``<prefix>/<unit id>/``."""

    prefix: str
    unit_id: str

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.unit_id}"

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def meter_availability(self) -> str:
        return f"{self.base}/meter/availability"

    @property
    def breaker(self) -> str:
        return f"{self.base}/breaker"

    @property
    def events(self) -> str:
        return f"{self.base}/event"

    @property
    def events_dropped(self) -> str:
        return f"{self.base}/export/events_dropped"

    def mains(self, quantity: str) -> str:
        return f"{self.base}/mains/{quantity}"

    def board_availability(self, group: str) -> str:
        """``group``: a letter, or "mains" for the mains status node."""
        return f"{self.base}/board/{group}/availability"

    def channel_current(self, cid: str) -> str:
        return f"{self.base}/channel/{cid}/current"

    def channel_state(self, cid: str) -> str:
        return f"{self.base}/channel/{cid}/state"


def display_text(text: str, limit: int = 64) -> str:
    """A label as an entity name: control characters (a newline) become spaces. JSON
    encoding does the rest; nothing of it ever reaches a topic."""
    clean = "".join(c if c.isprintable() else " " for c in text)
    return " ".join(clean.split())[:limit]


class Discovery:
    """The discovery config messages of one unit: ``messages(snapshot)`` gives
    {topic: JSON}, all to be published retained."""

    def __init__(self, topics: UnitTopics, discovery_prefix: str) -> None:
        self.topics = topics
        self.prefix = discovery_prefix
        self.unit_id = topics.unit_id

    def _topic(self, component: str, object_id: str) -> str:
        return f"{self.prefix}/{component}/{self.unit_id}_{object_id}/config"

    def _unit_device(self, snap: UnitSnapshot) -> dict[str, Any]:
        return {
            "identifiers": [self.unit_id],
            "name": display_text(snap.name) or self.unit_id,
            "manufacturer": "smartPDU",
            "model": f"smartPDU {snap.model}",
            "serial_number": self.unit_id,
        }

    def _group_device(self, snap: UnitSnapshot, group: str, firmware: str | None) -> dict[str, Any]:
        device: dict[str, Any] = {
            "identifiers": [f"{self.unit_id}_{group}"],
            "name": f"{display_text(snap.name) or self.unit_id} group {group}",
            "manufacturer": "smartPDU",
            "model": "group board",
            "via_device": self.unit_id,
        }
        if firmware:
            device["sw_version"] = firmware
        return device

    def _entity(
        self, object_id: str, name: str, device: dict[str, Any], also_available: str | None
    ) -> dict[str, Any]:
        availability = [{"topic": self.topics.availability}]
        if also_available is not None:
            availability.append({"topic": also_available})
        return {
            "name": name,
            "unique_id": f"{self.unit_id}_{object_id}",
            "device": device,
            "availability": availability,
            "availability_mode": "all",
            "origin": {"name": "smartPDU"},
        }

    def messages(self, snap: UnitSnapshot) -> dict[str, str]:
        out: dict[str, dict[str, Any]] = {}
        self._channels(snap, out)
        self._mains(snap, out)
        return {topic: json.dumps(payload, ensure_ascii=False) for topic, payload in out.items()}

    def _channels(self, snap: UnitSnapshot, out: dict[str, dict[str, Any]]) -> None:
        t = self.topics
        for group in snap.groups:
            device = self._group_device(snap, group.letter, group.board.firmware)
            board = t.board_availability(group.letter)
            link = self._entity(f"{group.letter}_board", "Board link", device, None)
            link.update(
                state_topic=board,
                device_class="connectivity",
                payload_on=ONLINE,
                payload_off=OFFLINE,
                entity_category="diagnostic",
            )
            out[self._topic("binary_sensor", f"{group.letter}_board")] = link
            for ch in group.channels:
                label = display_text(ch.label)
                named = f"{ch.id} {label}" if label else ch.id
                current = self._entity(f"{ch.id}_current", f"{named} current", device, board)
                current.update(
                    state_topic=t.channel_current(ch.id),
                    device_class="current",
                    unit_of_measurement="A",
                    state_class="measurement",
                    suggested_display_precision=2,
                )
                out[self._topic("sensor", f"{ch.id}_current")] = current
                state = self._entity(f"{ch.id}_state", f"{named} state", device, board)
                state.update(
                    state_topic=t.channel_state(ch.id),
                    device_class="enum",
                    options=[s.value for s in ChannelState],
                )
                out[self._topic("sensor", f"{ch.id}_state")] = state

    def _mains(self, snap: UnitSnapshot, out: dict[str, dict[str, Any]]) -> None:
        t = self.topics
        device = self._unit_device(snap)
        if snap.meter.enabled:
            for q in MAINS_QUANTITIES:
                entity = self._entity(q.name, _MAINS_NAMES[q.name], device, t.meter_availability)
                entity.update(
                    state_topic=t.mains(q.name),
                    device_class=q.device_class,
                    state_class=q.state_class,
                    suggested_display_precision=q.precision,
                )
                if q.unit is not None:
                    entity["unit_of_measurement"] = q.unit
                out[self._topic("sensor", q.name)] = entity
            meter = self._entity("meter", "Meter link", device, None)
            meter.update(
                state_topic=t.meter_availability,
                device_class="connectivity",
                payload_on=ONLINE,
                payload_off=OFFLINE,
                entity_category="diagnostic",
            )
            out[self._topic("binary_sensor", "meter")] = meter
        mains_node = t.board_availability("mains")
        breaker = self._entity("breaker", "Main breaker", device, mains_node)
        breaker.update(
            state_topic=t.breaker,
            device_class="enum",
            options=[p.value for p in BreakerPosition],
        )
        out[self._topic("sensor", "breaker")] = breaker
        node = self._entity("mains_node", "Mains status node link", device, None)
        node.update(
            state_topic=mains_node,
            device_class="connectivity",
            payload_on=ONLINE,
            payload_off=OFFLINE,
            entity_category="diagnostic",
        )
        out[self._topic("binary_sensor", "mains_node")] = node
        events = self._entity("events", "Events", device, None)
        events.update(state_topic=t.events, event_types=[k.value for k in EventKind])
        out[self._topic("event", "events")] = events
