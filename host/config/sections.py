"""The configuration's result types, one frozen dataclass per section of the TOML file,
with their defaults; ``ConfigError`` for what a user got wrong."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from host.breaker import BreakerSettings
from host.domain import BUS_BAUD, CHANNELS_PER_GROUP, MODEL_GROUPS, Phase, rotation_phase

Rs485Mode = Literal["auto", "kernel", "rts"]
Parity = Literal["N", "E", "O"]


@dataclass(frozen=True)
class UnitConfig:
    model: int = 36
    name: str = ""  # "" = shown by its number in detection order
    unit_id: str = ""  # smartPDUxxxxxx: hostname, mDNS name, the label next to the breaker
    mains_hz: int = 50
    temperature_warning_c: float = 60.0  # mains status node temperature that raises a warning
    # Phase-to-neutral voltage the energy report assumes while the meter is not live.
    nominal_voltage_v: float = 230.0

    @property
    def groups(self) -> str:
        return MODEL_GROUPS[self.model]


@dataclass(frozen=True)
class BusConfig:
    port: str | None = None  # None: the caller (the virtual PDU) supplies the port
    baud: int = BUS_BAUD
    rs485: Rs485Mode = "auto"  # kernel RS-485 ioctl, RTS-driven DE, or whichever works
    rounds_per_sync: int = 12  # report cycles per SYNC (superframe), see protocol/PROTOCOL.md
    slot_guard_us: int = 100  # slack per REPORT slot for the boards' timing jitter
    offline_after_s: float = 0.8  # a board silent this long is offline (bus master)
    stale_after_s: float = 1.0  # its values are shown as stale after this (unit state)
    discovery_interval_s: float = 2.0  # look for hot-plugged boards
    expected_firmware: tuple[int, int, int] | None = None  # None: boards must agree


@dataclass(frozen=True)
class MeterConfig:
    enabled: bool = True
    port: str | None = None
    baud: int = 9600
    parity: Parity = "N"
    device_id: int = 1
    profile: str = "sdm630"
    poll_s: float = 1.0
    timeout_s: float = 0.5
    stale_after_s: float = 5.0
    offline_after_s: float = 30.0


@dataclass(frozen=True)
class ChannelsConfig:
    model: int = 36
    rating_a: float = 16.0
    supervision_dwell_s: float = 10.0  # out of range this long before a warning
    supervision_hysteresis_a: float = 0.5  # back inside by this much to clear it
    phases: tuple[Phase, ...] = ()  # by channel index (group x 12 + number - 1)

    def phase_of(self, group: str, number: int) -> Phase:
        if not self.phases:
            return rotation_phase(number)
        index = MODEL_GROUPS[self.model].index(group) * CHANNELS_PER_GROUP + number - 1
        return self.phases[index]


@dataclass(frozen=True)
class StorageConfig:
    var_dir: Path = field(default_factory=lambda: default_var_dir())
    database: Path = field(default_factory=lambda: default_var_dir() / "smartpdu.db")


@dataclass(frozen=True)
class WebConfig:
    host: str = "0.0.0.0"
    port: int = 8080
    read_open: bool = True  # anyone on the LAN may look; changes always need the admin
    admin_password_file: Path | None = None  # None: <var_dir>/admin-password


@dataclass(frozen=True)
class PeersConfig:
    enabled: bool = True
    site_key: str = ""  # optional pre-shared secret: units proving it adopt each other
    announce_s: float = 5.0
    static: tuple[str, ...] = ()  # host:port of units mDNS cannot reach
    mdns: bool = True  # false: announce nothing, find units through ``static`` only
    offline_after_s: float = 5.0  # a peer silent this long is shown offline
    forget_after_s: float = 3600.0  # and dropped from the list after this long


@dataclass(frozen=True)
class HistoryConfig:
    keep_samples_s: int = 3600  # 1 s samples
    keep_minutes_days: int = 30  # 1 min min/avg/max
    keep_events_days: int = 365
    max_size_mb: int = 256  # oldest minutes are dropped beyond this
    flush_s: float = 2.0  # history batches; a power cut loses at most ~5 s + this
    black_box_s: float = 30.0  # kept in memory, saved with each trip


@dataclass(frozen=True)
class MqttConfig:
    """[export.mqtt]: the unit's state published to an MQTT broker, read-only (R7)."""

    enabled: bool = False
    host: str = ""
    port: int = 1883  # 8883 by default with tls
    prefix: str = "smartpdu"  # state topics: <prefix>/<unit id>/...
    username: str = ""
    password_file: Path | None = None  # the password, never in the TOML
    tls: bool = False
    ca_file: Path | None = None  # None: the system's CA certificates
    cert_file: Path | None = None  # client certificate (brokers that require one)
    key_file: Path | None = None
    client_id: str = ""  # "" = smartpdu-<unit id>
    deadband_a: float = 0.1  # a channel current is published when it moved this much
    discovery: bool = True  # Home Assistant MQTT discovery
    discovery_prefix: str = "homeassistant"
    keepalive_s: int = 30
    reconnect_max_s: float = 60.0  # cap of the exponential back-off
    events_buffer: int = 1000  # events kept while the broker is away (oldest dropped)


@dataclass(frozen=True)
class PrometheusConfig:
    """[export.prometheus]: ``/metrics`` for a site's Prometheus, and the site's target list
    (file_sd) from the units the peer exchange knows; read-only (R7)."""

    enabled: bool = True
    # Set: /metrics and the target list need "Authorization: Bearer <the file's token>" (or
    # an admin session). None: they follow web.read_open, like the rest of the API.
    bearer_token_file: Path | None = None
    file_sd: Path | None = None  # the target list written here (JSON) whenever it changes


@dataclass(frozen=True)
class FrontPanelConfig:
    """[frontpanel]: the Pi's RUN and DATA TX LEDs and RESET button (R13) on GPIO lines of
    one chip (libgpiod); without the chip, or ``enabled = false``, the web UI shows them."""

    enabled: bool = True
    chip: str = "/dev/gpiochip0"  # the Pi's 40-pin header (a Pi 5 on an old kernel: gpiochip4)
    run_line: int = 17  # line offsets on that chip (BCM numbers on a Pi)
    tx_line: int = 27
    reset_line: int = 22
    run_active_low: bool = False  # LED from the pin through a resistor to ground: false
    tx_active_low: bool = False
    reset_active_low: bool = True  # button to ground with the internal pull-up: true
    heartbeat_s: float = 1.0  # one RUN flash per period while the service is healthy
    tx_pulse_ms: int = 40  # DATA TX stays lit this long after the web server sent
    debounce_ms: int = 30  # RESET must stay pressed this long to count
    stall_after_s: float = 20.0  # the bus or the meter making no progress this long: unhealthy


@dataclass(frozen=True)
class ServiceConfig:
    unit: UnitConfig
    bus: BusConfig
    meter: MeterConfig
    breaker: BreakerSettings
    channels: ChannelsConfig
    storage: StorageConfig
    web: WebConfig
    peers: PeersConfig
    history: HistoryConfig
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    prometheus: PrometheusConfig = field(default_factory=PrometheusConfig)
    frontpanel: FrontPanelConfig = field(default_factory=FrontPanelConfig)
    source: str = "<defaults>"


class ConfigError(Exception):
    """A configuration mistake; ``line`` is the one line to show the user."""

    def __init__(self, line: str) -> None:
        super().__init__(line)
        self.line = line


# ----------------------------------------------------------------------------- defaults


def default_var_dir() -> Path:
    """$SMARTPDU_VAR_DIR, else /var/lib/smartpdu as root, else the user's state dir."""
    env = os.environ.get("SMARTPDU_VAR_DIR")
    if env:
        return Path(env)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/smartpdu")
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "smartpdu"


def default_unit_id() -> str:
    """smartPDU + the last three bytes of this machine's MAC address, like the label."""
    return f"smartPDU{uuid.getnode() & 0xFFFFFF:06X}"
