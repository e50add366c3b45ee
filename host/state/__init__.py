"""The unit state: one model of the whole PDU, one module per source.

- ``boards``: the boards on the bus (registry, INFO, firmware checks, link, group claims)
- ``channels``: each output's current and state, and its supervision (R12)
- ``mains``: the main meter, the main breaker's load, the mains status node
- ``settings``: unit name, channel labels, supervision ranges
- ``events``: the event hub (events, conditions, listeners, EventQueue)
- ``snapshot``: the frozen snapshots and samples; ``builder`` makes them, without side effects
- ``unit``: ``UnitState``, the facade the bus master, the meter reader and the web call
- ``bus``: ``StateBusListener``, the bus master's listener calls applied to a UnitState

It never imports the web, storage or transport layers.
"""

from host.state.boards import BOARD_TYPE_NAMES, MAINS_BOARD_TYPES
from host.state.bus import BoardLinkLike, LinkQualityLike, StateBusListener
from host.state.events import (
    EVENT_HISTORY,
    RECENT_EVENTS,
    ActiveCondition,
    Event,
    EventKind,
    EventQueue,
    Severity,
)
from host.state.jsonable import to_jsonable
from host.state.mains import METER_QUANTITIES, METER_QUANTITY_BY_NAME, MeterQuantity
from host.state.snapshot import (
    BoardSnapshot,
    BreakerPosition,
    BreakerSnapshot,
    ChannelSample,
    ChannelSnapshot,
    ChannelState,
    Freshness,
    GroupSnapshot,
    LinkStats,
    MainsSnapshot,
    MeterReading,
    MeterSample,
    MeterSnapshot,
    PhaseCurrents,
    Sample,
    UnitSnapshot,
)
from host.state.text import supervision_status_text, trip_cause_text
from host.state.unit import UnitState

__all__ = [
    "BOARD_TYPE_NAMES",
    "EVENT_HISTORY",
    "MAINS_BOARD_TYPES",
    "METER_QUANTITIES",
    "METER_QUANTITY_BY_NAME",
    "RECENT_EVENTS",
    "ActiveCondition",
    "BoardLinkLike",
    "BoardSnapshot",
    "BreakerPosition",
    "BreakerSnapshot",
    "ChannelSample",
    "ChannelSnapshot",
    "ChannelState",
    "Event",
    "EventKind",
    "EventQueue",
    "Freshness",
    "GroupSnapshot",
    "LinkQualityLike",
    "LinkStats",
    "MainsSnapshot",
    "MeterQuantity",
    "MeterReading",
    "MeterSample",
    "MeterSnapshot",
    "PhaseCurrents",
    "Sample",
    "Severity",
    "StateBusListener",
    "UnitSnapshot",
    "UnitState",
    "supervision_status_text",
    "to_jsonable",
    "trip_cause_text",
]
