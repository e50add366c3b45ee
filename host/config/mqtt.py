"""[export.mqtt]: the MQTT export's settings, checked at load like every other section."""

from __future__ import annotations

import re
from pathlib import Path

from host.config.sections import MqttConfig
from host.config.table import Invalid, Table, shown

_TOPIC_LEVELS = re.compile(r"[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*")
_CLIENT_ID = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_HOST = re.compile(r"[A-Za-z0-9_.\-:\[\]]+")
_KEYS = (
    "enabled",
    "host",
    "port",
    "prefix",
    "username",
    "password_file",
    "tls",
    "ca_file",
    "cert_file",
    "key_file",
    "client_id",
    "deadband_a",
    "discovery",
    "discovery_prefix",
    "keepalive_s",
    "reconnect_max_s",
    "events_buffer",
)


def _check_topic_prefix(text: str) -> str:
    if not _TOPIC_LEVELS.fullmatch(text):
        raise ValueError(
            'expected topic levels of letters, digits, "_", "-" and "." separated by "/" '
            f'(no "+", "#", spaces, or "/" at either end), got {shown(text)}'
        )
    return text


def _check_client_id(text: str) -> str:
    if not _CLIENT_ID.fullmatch(text):
        raise ValueError(
            f'expected 1-64 letters, digits, "_", "-" or ".", got {shown(text)} '
            '("" or no key: smartpdu-<unit id>)'
        )
    return text


def _check_host(text: str) -> str:
    if "://" in text:
        raise ValueError(
            f"expected a host name or address, not a URL, got {shown(text)} "
            '(e.g. host = "broker.lan", with port and tls set apart)'
        )
    if not _HOST.fullmatch(text):
        raise ValueError(f'expected a host name or address such as "broker.lan", got {shown(text)}')
    return text


def _existing_file(t: Table, key: str, base: Path, what: str, enabled: bool) -> Path | None:
    path = t.path_value(key, None, base)
    if path is not None and enabled and not path.is_file():
        raise Invalid(f"export.mqtt.{key}", f"{path}: no such file ({what})")
    return path


def read_mqtt(raw: object, base: Path) -> MqttConfig:
    """The [export.mqtt] table (``raw``; {} when absent). Files are checked only when the
    export is enabled, so a disabled section can be kept in the file as an example."""
    t = Table(raw, "export.mqtt", _KEYS)
    enabled = t.boolean("enabled", False)
    host = t.text("host", "", _check_host)
    if enabled and not host:
        raise Invalid(
            "export.mqtt.host",
            'missing: the MQTT broker, e.g. host = "broker.lan" (or enabled = false)',
        )
    tls = t.boolean("tls", False)
    username = t.text("username", "")
    password_file = _existing_file(
        t, "password_file", base, "write the broker password into it, readable by the service only",
        enabled,
    )  # fmt: skip
    if password_file is not None and not username:
        raise Invalid(
            "export.mqtt.password_file", "a password needs a username (export.mqtt.username)"
        )
    files = {}
    for key, what in (
        ("ca_file", "the CA certificate (PEM) that signed the broker's certificate"),
        ("cert_file", "this unit's client certificate (PEM)"),
        ("key_file", "the private key (PEM) of the client certificate"),
    ):
        files[key] = _existing_file(t, key, base, what, enabled)
        if files[key] is not None and not tls:
            raise Invalid(f"export.mqtt.{key}", "is used only with tls = true")
    if files["key_file"] is not None and files["cert_file"] is None:
        raise Invalid("export.mqtt.key_file", "needs cert_file (the certificate of that key)")
    prefix = t.text("prefix", "smartpdu", _check_topic_prefix)
    discovery_prefix = t.text("discovery_prefix", "homeassistant", _check_topic_prefix)
    return MqttConfig(
        enabled=enabled,
        host=host,
        port=t.integer("port", 8883 if tls else 1883, 1, 65535),
        prefix=prefix,
        username=username,
        password_file=password_file,
        tls=tls,
        ca_file=files["ca_file"],
        cert_file=files["cert_file"],
        key_file=files["key_file"],
        client_id=t.text("client_id", "", _check_client_id),
        deadband_a=t.number("deadband_a", 0.1, 0.0, 10.0),
        discovery=t.boolean("discovery", True),
        discovery_prefix=discovery_prefix,
        keepalive_s=t.integer("keepalive_s", 30, 5, 3600),
        reconnect_max_s=t.number("reconnect_max_s", 60.0, 1.0, 3600.0),
        events_buffer=t.integer("events_buffer", 1000, 10, 100_000),
    )
