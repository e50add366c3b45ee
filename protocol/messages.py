"""Every message of the protocol, for the aggregator, the tools and the tests: the classes
of all families (``cycle``, ``admin``, ``discovery``), ``encode(message) -> bytes`` and
``decode(bytes) -> message``. A board imports only the families it answers."""

from protocol.admin import (
    Ack,
    ConfigGet,
    ConfigSet,
    ConfigValue,
    GetInfo,
    Identify,
    Info,
    Nak,
    check_config_value,
)
from protocol.cycle import Poll, Report, Status, Sync, Telemetry
from protocol.discovery import Assign, Discover, DiscoverReply, Mute
from protocol.schema import BY_NAME, BY_TYPE, Message, decode, encode, message_from_reader

MESSAGE_CLASSES = (
    Poll,
    Sync,
    Report,
    Telemetry,
    Status,
    GetInfo,
    Info,
    ConfigGet,
    ConfigValue,
    ConfigSet,
    Identify,
    Discover,
    DiscoverReply,
    Mute,
    Assign,
    Ack,
    Nak,
)

__all__ = [
    "BY_NAME",
    "BY_TYPE",
    "MESSAGE_CLASSES",
    "Ack",
    "Assign",
    "ConfigGet",
    "ConfigSet",
    "ConfigValue",
    "Discover",
    "DiscoverReply",
    "GetInfo",
    "Identify",
    "Info",
    "Message",
    "Mute",
    "Nak",
    "Poll",
    "Report",
    "Status",
    "Sync",
    "Telemetry",
    "check_config_value",
    "decode",
    "encode",
    "message_from_reader",
]
