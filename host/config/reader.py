"""The TOML file read into a ServiceConfig, section by section; every mistake becomes the
one-line ConfigError."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from host.breaker import (
    II_STEPS,
    INN_STEPS,
    IR_STEPS,
    ISD_STEPS,
    TN_STEPS_S,
    TR_STEPS_S,
    TSD_STEPS_S,
    BreakerSettings,
    breaker_spec,
)
from host.config.frontpanel import read_frontpanel
from host.config.mqtt import read_mqtt
from host.config.prometheus import read_prometheus
from host.config.sections import (
    BusConfig,
    ChannelsConfig,
    ConfigError,
    HistoryConfig,
    MeterConfig,
    PeersConfig,
    ServiceConfig,
    StorageConfig,
    UnitConfig,
    WebConfig,
    default_unit_id,
    default_var_dir,
)
from host.config.table import REQUIRED, Invalid, Table, UnknownKey, shown
from host.domain import (
    BUS_BAUD,
    CHANNELS_PER_GROUP,
    MAX_CHANNEL_RATING_A,
    MODEL_GROUPS,
    PHASES,
    UNIT_ID_PATTERN,
    Phase,
    channel_ids,
    group_span,
    parse_channel_id,
    rotation_phase,
    validate_unit_name,
)
from host.meter_map import DEFAULT_PROFILE, profile_names


def _check_unit_id(text: str) -> str:
    if not UNIT_ID_PATTERN.fullmatch(text):
        raise ValueError(f"{shown(text)} is not a unit id like smartPDU0A1B2C")
    return text


def _check_version(text: str) -> str:
    if not re.fullmatch(r"\d{1,3}\.\d{1,3}\.\d{1,3}", text):
        raise ValueError(f'{shown(text)} is not a firmware version like "1.2.0"')
    return text


def _check_port(text: str) -> str:
    if not text.strip():
        raise ValueError('expected a serial port such as "/dev/ttyAMA0", got ""')
    return text


_SECTIONS = (
    "unit", "bus", "meter", "breaker", "channels", "storage", "web", "peers", "history", "export",
    "frontpanel",
)  # fmt: skip
_EXPORT_TABLES = ("mqtt", "prometheus")  # [export.*]: one table per exporter
# Keys a setting written above every section most likely belongs to (for the hint only).
_KNOWN_KEYS: dict[str, tuple[str, ...]] = {
    "bus": ("port", "baud", "rs485"),
    "meter": ("device_id", "profile", "poll_s"),
    "breaker": ("ir", "isd", "ii", "inn", "tr_s"),
    "storage": ("database", "var_dir"),
}


def _read_unit(raw: object) -> UnitConfig:
    t = Table(
        raw,
        "unit",
        ("model", "name", "id", "mains_hz", "temperature_warning_c", "nominal_voltage_v"),
    )
    return UnitConfig(
        model=t.choice("model", 36, (36, 48, 72)),
        name=t.text("name", "", validate_unit_name),
        unit_id=t.text("id", default_unit_id(), _check_unit_id),
        mains_hz=t.choice("mains_hz", 50, (50, 60)),
        temperature_warning_c=t.number("temperature_warning_c", 60.0, 0.0, 120.0),
        nominal_voltage_v=t.number("nominal_voltage_v", 230.0, 90.0, 300.0),
    )


def _read_bus(raw: object, require_port: bool) -> BusConfig:
    t = Table(
        raw,
        "bus",
        (
            "port",
            "baud",
            "rs485",
            "rounds_per_sync",
            "slot_guard_us",
            "offline_after_s",
            "stale_after_s",
            "discovery_interval_s",
            "expected_firmware",
        ),
    )
    port = (
        t.text(
            "port",
            REQUIRED if require_port else "",
            _check_port,
            missing='the serial port of the RS-485 bus, e.g. port = "/dev/ttyAMA0"',
        )
        or None
    )
    firmware = t.text("expected_firmware", "", _check_version) if t.has("expected_firmware") else ""
    return BusConfig(
        port=port,
        baud=t.integer("baud", BUS_BAUD, 9600, 1_000_000),
        rs485=t.choice("rs485", "auto", ("auto", "kernel", "rts")),
        rounds_per_sync=t.integer("rounds_per_sync", 12, 1, 64),
        slot_guard_us=t.integer("slot_guard_us", 100, 0, 6000),
        offline_after_s=t.number("offline_after_s", 0.8, 0.05, 600.0),
        stale_after_s=t.number("stale_after_s", 1.0, 0.05, 600.0),
        discovery_interval_s=t.number("discovery_interval_s", 2.0, 0.5, 3600.0),
        expected_firmware=_version_tuple(firmware) if firmware else None,
    )


def _version_tuple(text: str) -> tuple[int, int, int]:
    major, minor, patch = (int(p) for p in text.split("."))
    return (major, minor, patch)


def _read_meter(raw: object, require_port: bool) -> MeterConfig:
    t = Table(
        raw,
        "meter",
        (
            "enabled",
            "port",
            "baud",
            "parity",
            "device_id",
            "profile",
            "poll_s",
            "timeout_s",
            "stale_after_s",
            "offline_after_s",
        ),
    )
    enabled = t.boolean("enabled", True)
    port = (
        t.text(
            "port",
            REQUIRED if enabled and require_port else "",
            _check_port,
            missing='the serial port of the main meter, e.g. port = "/dev/ttyUSB0" '
            "(or enabled = false)",
        )
        or None
    )
    profiles = profile_names() or (DEFAULT_PROFILE,)
    poll_s = t.number("poll_s", 1.0, 0.1, 60.0)
    stale_after_s = t.number("stale_after_s", max(5.0, 3 * poll_s), 0.2, 3600.0)
    if stale_after_s <= poll_s:
        raise Invalid(
            "meter.stale_after_s",
            f"{stale_after_s:g} s must be longer than meter.poll_s ({poll_s:g} s)",
        )
    offline_after_s = t.number("offline_after_s", max(30.0, 2 * stale_after_s), 0.5, 86400.0)
    if offline_after_s < stale_after_s:
        raise Invalid(
            "meter.offline_after_s",
            f"{offline_after_s:g} s must be at least meter.stale_after_s ({stale_after_s:g} s)",
        )
    return MeterConfig(
        enabled=enabled,
        port=port,
        baud=t.choice("baud", 9600, (9600, 19200, 38400)),
        parity=t.choice("parity", "N", ("N", "E", "O")),
        device_id=t.integer("device_id", 1, 1, 247),
        profile=t.choice("profile", "sdm630", profiles),
        poll_s=poll_s,
        timeout_s=t.number("timeout_s", 0.5, 0.01, 10.0),
        stale_after_s=stale_after_s,
        offline_after_s=offline_after_s,
    )


def _read_breaker(raw: object, model: int) -> BreakerSettings:
    t = Table(raw, "breaker", ("in_a", "ir", "isd", "ii", "inn", "tr_s", "tsd_s", "tn_s"))
    spec = breaker_spec(model)
    defaults = BreakerSettings.factory_defaults(model)
    if not spec.has_delay_settings:
        for key, name in (("tr_s", "tR"), ("tsd_s", "tsd"), ("tn_s", "tN")):
            if t.has(key):
                raise Invalid(
                    f"breaker.{key}",
                    f"the smartPDU {model} main breaker ({spec.type_name}) has no {name} "
                    "switch (tR, tsd and tN exist only on the smartPDU 72)",
                )
    ir = t.step("ir", defaults.ir, IR_STEPS)
    ii = t.step("ii", defaults.ii, II_STEPS)
    isd = t.step("isd", defaults.isd, ISD_STEPS, off=True)
    assert ir is not None and ii is not None
    settings = BreakerSettings(
        in_a=t.number("in_a", spec.in_a, 16.0, 1600.0),
        ir=ir,
        isd=isd,
        ii=ii,
        inn=t.step("inn", defaults.inn, INN_STEPS, off=True),
        tr_s=t.step("tr_s", defaults.tr_s, TR_STEPS_S) if spec.has_delay_settings else None,
        tsd_s=t.step("tsd_s", defaults.tsd_s, TSD_STEPS_S) if spec.has_delay_settings else None,
        tn_s=t.step("tn_s", defaults.tn_s, TN_STEPS_S) if spec.has_delay_settings else None,
    )
    return settings


def _read_channels(raw: object, model: int) -> ChannelsConfig:
    t = Table(
        raw,
        "channels",
        ("rating_a", "supervision_dwell_s", "supervision_hysteresis_a", "phase"),
    )
    phases: list[Phase] = [
        rotation_phase(n) for _ in MODEL_GROUPS[model] for n in range(1, CHANNELS_PER_GROUP + 1)
    ]
    if t.has("phase"):
        raw_phase = t.data["phase"]
        if isinstance(raw_phase, dict):
            for key in cast(dict[str, object], raw_phase):
                _check_phase_key(key, model)
        table = Table(raw_phase, "channels.phase", _phase_keys(model))
        # Whole groups first, then single channels, so "A = L1" plus "A3 = L2" works.
        for key in sorted(table.data, key=len):
            phases_for_key = _read_phase_entry(table, key)
            group = key[0]
            base = MODEL_GROUPS[model].index(group) * CHANNELS_PER_GROUP
            if len(key) == 1:
                for n in range(CHANNELS_PER_GROUP):
                    phases[base + n] = phases_for_key[n % len(phases_for_key)]
            else:
                phases[base + int(key[1:]) - 1] = phases_for_key[0]
    return ChannelsConfig(
        model=model,
        rating_a=t.number("rating_a", 16.0, 1.0, MAX_CHANNEL_RATING_A),
        supervision_dwell_s=t.number("supervision_dwell_s", 10.0, 0.0, 3600.0),
        supervision_hysteresis_a=t.number("supervision_hysteresis_a", 0.5, 0.0, 10.0),
        phases=tuple(phases),
    )


def _check_phase_key(key: str, model: int) -> None:
    """Name what is wrong with a group or channel this model lacks ('D1' on a 36)."""
    if not re.fullmatch(r"[A-F]\d*", key):
        return  # not channel-like: reported as an unknown key with a suggestion
    try:
        if len(key) == 1:
            if key not in MODEL_GROUPS[model]:
                raise ValueError(f"the smartPDU {model} has groups {group_span(model)}")
        else:
            parse_channel_id(key, model)
    except ValueError as exc:
        raise Invalid(f"channels.phase.{key}", str(exc)) from None


def _phase_keys(model: int) -> tuple[str, ...]:
    return tuple(MODEL_GROUPS[model]) + channel_ids(model)


def _read_phase_entry(table: Table, key: str) -> list[Phase]:
    value = table.data[key]
    path = f"channels.phase.{key}"
    if isinstance(value, str) and value in PHASES:
        return [cast(Phase, value)]
    if len(key) == 1 and isinstance(value, list):
        entries = cast(list[object], value)
        if len(entries) == CHANNELS_PER_GROUP and all(v in PHASES for v in entries):
            return [cast(Phase, v) for v in entries]
        raise Invalid(path, 'expected "L1", "L2", "L3" or an array of 12 of them')
    raise Invalid(path, f'expected "L1", "L2" or "L3", got {shown(value)}')


def _read_storage(raw: object, base: Path) -> StorageConfig:
    t = Table(raw, "storage", ("var_dir", "database"))
    var_dir = t.path_value("var_dir", default_var_dir(), base)
    assert var_dir is not None
    database = t.path_value("database", var_dir / "smartpdu.db", base)
    assert database is not None
    return StorageConfig(var_dir=var_dir, database=database)


def _read_web(raw: object, base: Path, var_dir: Path) -> WebConfig:
    t = Table(raw, "web", ("host", "port", "read_open", "admin_password_file"))
    return WebConfig(
        host=t.text("host", "0.0.0.0"),
        port=t.integer("port", 8080, 1, 65535),
        read_open=t.boolean("read_open", True),
        admin_password_file=t.path_value("admin_password_file", var_dir / "admin-password", base),
    )


def _read_peers(raw: object) -> PeersConfig:
    t = Table(
        raw,
        "peers",
        (
            "enabled",
            "site_key",
            "announce_s",
            "static",
            "mdns",
            "offline_after_s",
            "forget_after_s",
        ),
    )
    site_key = t.text("site_key", "")
    if site_key and len(site_key) < 16:
        raise Invalid("peers.site_key", "a site key needs at least 16 characters")
    if site_key != site_key.strip():
        raise Invalid(
            "peers.site_key",
            "starts or ends with a space: every unit of the site needs exactly the same key "
            "(remove the spaces, here and wherever the key was copied to)",
        )
    static = t.string_list("static", ())
    for entry in static:
        if not re.fullmatch(r"[A-Za-z0-9.\-\[\]:]+:\d{1,5}", entry):
            raise Invalid("peers.static", f'{shown(entry)} is not "host:port"')
    offline_after = t.number("offline_after_s", 5.0, 1.0, 600.0)
    forget_after = t.number("forget_after_s", 3600.0, 1.0, 30 * 86400.0)
    if forget_after < offline_after:
        raise Invalid("peers.forget_after_s", "must be at least peers.offline_after_s")
    return PeersConfig(
        enabled=t.boolean("enabled", True),
        site_key=site_key,
        announce_s=t.number("announce_s", 5.0, 0.5, 600.0),
        static=static,
        mdns=t.boolean("mdns", True),
        offline_after_s=offline_after,
        forget_after_s=forget_after,
    )


def _read_history(raw: object) -> HistoryConfig:
    t = Table(
        raw,
        "history",
        (
            "keep_samples_s",
            "keep_minutes_days",
            "keep_events_days",
            "max_size_mb",
            "flush_s",
            "black_box_s",
        ),
    )
    return HistoryConfig(
        keep_samples_s=t.integer("keep_samples_s", 3600, 60, 7 * 86400),
        keep_minutes_days=t.integer("keep_minutes_days", 30, 1, 3650),
        keep_events_days=t.integer("keep_events_days", 365, 1, 3650),
        max_size_mb=t.integer("max_size_mb", 256, 8, 65536),
        flush_s=t.number("flush_s", 2.0, 0.05, 60.0),
        black_box_s=t.number("black_box_s", 30.0, 1.0, 600.0),
    )


def _build(
    document: Mapping[str, object], base: Path, require_ports: bool, source: str
) -> ServiceConfig:
    for key, value in document.items():
        if key not in _SECTIONS and not isinstance(value, dict):
            owner = next((f"[{n}]" for n, keys in _KNOWN_KEYS.items() if key in keys), "")
            hint = f" (it belongs in {owner})" if owner else ""
            raise Invalid(key, f"a setting outside any section{hint}")
    Table(dict(document), "", _SECTIONS)  # refuses unknown sections, with a suggestion

    def section(name: str) -> object:
        return document.get(name, {})

    unit = _read_unit(section("unit"))
    storage = _read_storage(section("storage"), base)
    export = Table(section("export"), "export", _EXPORT_TABLES)
    return ServiceConfig(
        unit=unit,
        bus=_read_bus(section("bus"), require_ports),
        meter=_read_meter(section("meter"), require_ports),
        breaker=_read_breaker(section("breaker"), unit.model),
        channels=_read_channels(section("channels"), unit.model),
        storage=storage,
        web=_read_web(section("web"), base, storage.var_dir),
        peers=_read_peers(section("peers")),
        history=_read_history(section("history")),
        mqtt=read_mqtt(export.data.get("mqtt", {}), base),
        prometheus=read_prometheus(export.data.get("prometheus", {}), base),
        frontpanel=read_frontpanel(section("frontpanel")),
        source=source,
    )


def _one_line(source: str, exc: Invalid | UnknownKey) -> ConfigError:
    if isinstance(exc, Invalid):
        return ConfigError(f"{source}: {exc.key}: {exc.problem}")
    key = exc.key.lstrip(".")
    if exc.key.startswith("."):  # a top-level name: a section
        hint = f" (did you mean '[{exc.suggestion.lstrip('.')}]'?)" if exc.suggestion else ""
        return ConfigError(f"{source}: unknown section '[{key}]'{hint}")
    hint = f" (did you mean '{exc.suggestion}'?)" if exc.suggestion else ""
    return ConfigError(f"{source}: unknown key '{key}'{hint}")


def parse_config(
    text: str,
    source: str = "config.toml",
    base_dir: Path | None = None,
    *,
    require_ports: bool = True,
) -> ServiceConfig:
    """Validate TOML text. Relative paths are taken from ``base_dir`` (default: cwd)."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    return config_from_document(document, source, base_dir, require_ports=require_ports)


def config_from_document(
    document: Mapping[str, object],
    source: str = "config.toml",
    base_dir: Path | None = None,
    *,
    require_ports: bool = True,
) -> ServiceConfig:
    """Validate a TOML document already read (``read_config_document``), e.g. one a caller
    completed with what it supplies itself (``smartpdu run``: the virtual PDU's ports)."""
    try:
        return _build(document, base_dir or Path.cwd(), require_ports, source)
    except (Invalid, UnknownKey) as exc:
        raise _one_line(source, exc) from None


def read_config_document(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The TOML document of a config file, not yet validated; ConfigError with one line if
    it cannot be read or is not TOML."""
    file = Path(path)
    source = str(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not UTF-8 text") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None


def load_config(path: str | os.PathLike[str], *, require_ports: bool = True) -> ServiceConfig:
    """Read and validate the service config file; raises ConfigError with one line.

    ``require_ports=False`` accepts a file without serial ports (the virtual PDU fills
    them in); they are then None.
    """
    document = read_config_document(path)
    base = Path(path).resolve().parent
    return config_from_document(document, str(path), base, require_ports=require_ports)


def default_config(**sections: Mapping[str, object]) -> ServiceConfig:
    """The defaults (a virtual PDU; ports None unless given), with overrides per section in
    the file's own terms, checked by the same rules: ``default_config(unit={"model": 72},
    bus={"port": "/dev/pts/3"})``."""
    try:
        return _build(dict(sections), Path.cwd(), False, "<defaults>")
    except (Invalid, UnknownKey) as exc:
        raise _one_line("<defaults>", exc) from None
