"""Service config: valid files load into frozen dataclasses; every mistake is one line that
names the key path and the problem."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from host.breaker import BreakerSettings
from host.config import (
    ConfigError,
    ServiceConfig,
    default_config,
    load_config,
    parse_config,
)
from host.domain import channel_ids, parse_channel_id, validate_label

PORTS = '[bus]\nport = "/dev/ttyAMA0"\n[meter]\nport = "/dev/ttyUSB0"\n'

FULL_EXAMPLE = """
[unit]
model = 72
name = "Stage left"
id = "smartPDU0A1B2C"
mains_hz = 50
temperature_warning_c = 55

[bus]
port = "/dev/ttyAMA0"
baud = 250000
rs485 = "kernel"
rounds_per_sync = 6
slot_guard_us = 400
offline_after_s = 0.4
stale_after_s = 1.5
discovery_interval_s = 5
expected_firmware = "1.2.0"

[meter]
port = "/dev/ttyUSB0"
baud = 19200
parity = "E"
device_id = 2
profile = "sdm630"
poll_s = 0.5
timeout_s = 0.3
stale_after_s = 3
offline_after_s = 20

[breaker]
ir = 0.8
isd = "off"
ii = 12
inn = 1
tr_s = 12
tsd_s = 0.1
tn_s = 0.2

[channels]
rating_a = 16
supervision_dwell_s = 5
supervision_hysteresis_a = 0.25

[channels.phase]
B = "L2"
B3 = "L3"
C = ["L1", "L1", "L1", "L2", "L2", "L2", "L3", "L3", "L3", "L1", "L2", "L3"]

[storage]
var_dir = "var"
database = "/tmp/pdu.db"

[web]
host = "127.0.0.1"
port = 8081
read_open = false
admin_password_file = "admin.pw"

[peers]
enabled = true
site_key = "0123456789abcdef0123"
announce_s = 2
mdns = false
static = ["10.0.0.5:8080", "smartPDU0A1B2D.local:8080"]

[history]
keep_samples_s = 1800
keep_minutes_days = 14
keep_events_days = 90
max_size_mb = 64
flush_s = 1.0
black_box_s = 20
"""


def error_of(text: str, **kwargs: object) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "config.toml", **kwargs)  # type: ignore[arg-type]
    line = info.value.line
    assert "\n" not in line
    assert str(info.value) == line
    return line


def test_full_example_loads_every_section(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(FULL_EXAMPLE)
    config = load_config(path)
    assert isinstance(config, ServiceConfig)
    assert config.unit.model == 72 and config.unit.name == "Stage left"
    assert config.unit.unit_id == "smartPDU0A1B2C" and config.unit.groups == "ABCDEF"
    assert config.bus.port == "/dev/ttyAMA0" and config.bus.baud == 250000
    assert config.bus.rs485 == "kernel" and config.bus.expected_firmware == (1, 2, 0)
    assert config.bus.offline_after_s == 0.4 and config.bus.stale_after_s == 1.5
    assert config.bus.rounds_per_sync == 6 and config.bus.slot_guard_us == 400
    assert config.meter.baud == 19200 and config.meter.parity == "E"
    assert config.meter.device_id == 2 and config.meter.offline_after_s == 20.0
    assert config.breaker == BreakerSettings(
        in_a=400.0, ir=0.8, isd=None, ii=12.0, inn=1.0, tr_s=12.0, tsd_s=0.1, tn_s=0.2
    )
    assert config.breaker.ir_a == pytest.approx(320.0)
    assert config.channels.supervision_dwell_s == 5.0
    # Group B on L2 except B3; group C spelled out; A by rotation.
    assert config.channels.phase_of("A", 1) == "L1" and config.channels.phase_of("A", 5) == "L2"
    assert config.channels.phase_of("B", 1) == "L2" and config.channels.phase_of("B", 3) == "L3"
    assert config.channels.phase_of("C", 4) == "L2" and config.channels.phase_of("C", 12) == "L3"
    # Relative paths are taken from the config file's folder.
    assert config.storage.var_dir == tmp_path / "var"
    assert config.storage.database == Path("/tmp/pdu.db")
    assert config.web.admin_password_file == tmp_path / "admin.pw"
    assert config.web.read_open is False and config.web.port == 8081
    assert config.peers.static == ("10.0.0.5:8080", "smartPDU0A1B2D.local:8080")
    assert config.peers.site_key == "0123456789abcdef0123" and config.peers.mdns is False
    assert config.history.keep_minutes_days == 14 and config.history.black_box_s == 20.0
    assert config.source == str(path)


def test_config_is_frozen() -> None:
    config = default_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.unit.model = 72  # type: ignore[misc]
    hash(config.bus)  # frozen and hashable


def test_shipped_example_config_loads() -> None:
    example = Path(__file__).resolve().parents[2] / "host" / "smartpdu.example.toml"
    config = load_config(example)
    assert config.unit.model == 48 and config.bus.port == "/dev/ttyAMA0"
    assert config.peers.enabled and config.peers.mdns and config.peers.site_key == ""


def test_defaults_run_a_virtual_pdu() -> None:
    config = default_config()
    assert config.peers.site_key == "" and config.peers.mdns  # open, zero configuration
    assert config.unit.model == 36 and config.unit.unit_id.startswith("smartPDU")
    assert config.bus.port is None and config.meter.port is None  # the caller fills them in
    assert config.bus.baud == 115200 and config.meter.baud == 9600
    assert config.meter.profile == "sdm630"
    assert config.breaker == BreakerSettings.factory_defaults(36)
    assert config.breaker.in_a == 250.0 and config.breaker.tr_s is None
    assert config.channels.rating_a == 16.0
    assert config.storage.database.name == "smartpdu.db"


def test_default_config_overrides_are_validated_like_a_file() -> None:
    config = default_config(unit={"model": 72}, bus={"port": "/dev/pts/3"})
    assert config.breaker.in_a == 400.0 and config.breaker.tr_s == 6.0  # 72 factory defaults
    assert config.bus.port == "/dev/pts/3"
    with pytest.raises(ConfigError, match=r"<defaults>: unit.model: 40 is not one of 36, 48, 72"):
        default_config(unit={"model": 40})


def test_breaker_defaults_follow_the_model() -> None:
    for model, in_a in ((36, 250.0), (48, 250.0), (72, 400.0)):
        config = parse_config(f"[unit]\nmodel = {model}\n" + PORTS)
        assert config.breaker.in_a == in_a
        assert config.breaker.ir == 1.0 and config.breaker.isd == 6.0
        assert config.breaker.ii == 10.0 and config.breaker.inn is None
    c72 = parse_config("[unit]\nmodel = 72\n" + PORTS).breaker
    assert (c72.tr_s, c72.tsd_s, c72.tn_s) == (6.0, 0.3, 0.4)


# (config text, the line after "config.toml: ")
ONE_LINE_CASES = [
    ('[bus]\nport = "x"\nbaud = "fast"', 'bus.baud: expected an integer, got "fast"'),
    ("[bus]\nbuad = 9600", "unknown key 'bus.buad' (did you mean 'bus.baud'?)"),
    ("[buss]\nport = 1", "unknown section '[buss]' (did you mean '[bus]'?)"),
    ("[bus]\nport = 'x'\nbaud = 9600.5", "bus.baud: expected an integer, got 9600.5"),
    ("[bus]\nport = 'x'\nbaud = true", "bus.baud: expected an integer, got true"),
    ("[bus]\nport = 'x'\nbaud = 50", "bus.baud: 50 is out of range (9600…1000000)"),
    ("[bus]\nrs485 = 'auto-ish'", 'bus.rs485: "auto-ish" is not one of "auto", "kernel", "rts"'),
    (
        "[bus]\nexpected_firmware = 'one'",
        'bus.expected_firmware: "one" is not a firmware version like "1.2.0"',
    ),
    ("[unit]\nmodel = 60", "unit.model: 60 is not one of 36, 48, 72"),
    ("[unit]\nid = 'PDU12'", 'unit.id: "PDU12" is not a unit id like smartPDU0A1B2C'),
    ("[unit]\nmodle = 36", "unknown key 'unit.modle' (did you mean 'unit.model'?)"),
    ("[unit]\nfoo = 1", "unknown key 'unit.foo'"),
    ("bus = 3", "bus: expected a table [bus], got 3"),
    ("baud = 9600", "baud: a setting outside any section (it belongs in [bus])"),
    ("colour = 'red'", "colour: a setting outside any section"),
    ("[web]\nport = 70000", "web.port: 70000 is out of range (1…65535)"),
    ("[web]\nread_open = 'yes'", 'web.read_open: expected true or false, got "yes"'),
    ("[peers]\nsite_key = 'short'", "peers.site_key: a site key needs at least 16 characters"),
    ("[peers]\nstatic = ['nohost']", 'peers.static: "nohost" is not "host:port"'),
    (
        "[peers]\nsite_key = '0123456789abcdef0123 '",
        "peers.site_key: starts or ends with a space: every unit of the site needs exactly the "
        "same key (remove the spaces, here and wherever the key was copied to)",
    ),
    ("[peers]\nmdns = 'no'", 'peers.mdns: expected true or false, got "no"'),
    ("[history]\nflush_s = 'often'", 'history.flush_s: expected a number, got "often"'),
    ("[history]\nkeep_minutes_days = 0", "history.keep_minutes_days: 0 is out of range (1…3650)"),
    ("[channels]\nrating_a = 80", "channels.rating_a: 80 is out of range (1…63)"),
    ("[channels.phase]\nA1 = 'L4'", 'channels.phase.A1: expected "L1", "L2" or "L3", got "L4"'),
    ("[channels.phase]\nA13 = 'L1'", "channels.phase.A13: 'A13': channels are numbered 1-12"),
    ("[channels.phase]\nE = 'L1'", "channels.phase.E: the smartPDU 36 has groups A-C"),
    (
        "[channels.phase]\na1 = 'L1'",
        "unknown key 'channels.phase.a1' (did you mean 'channels.phase.A1'?)",
    ),
    ("[channels]\nphase = 'L1'", 'channels.phase: expected a table [channels.phase], got "L1"'),
    (
        "[channels.phase]\nD1 = 'L1'",
        "channels.phase.D1: 'D1': the smartPDU 36 has groups A-C",
    ),
    (
        "[channels.phase]\nA = ['L1']",
        'channels.phase.A: expected "L1", "L2", "L3" or an array of 12 of them',
    ),
]


@pytest.mark.parametrize(("text", "expected"), ONE_LINE_CASES)
def test_one_clear_line_per_mistake(text: str, expected: str) -> None:
    assert error_of(text, require_ports=False) == "config.toml: " + expected


def test_missing_port_names_the_key_and_gives_an_example() -> None:
    line = error_of('[meter]\nport = "/dev/ttyUSB0"')
    assert line.startswith("config.toml: bus.port: missing: ")
    assert '"/dev/ttyAMA0"' in line
    line = error_of('[bus]\nport = "/dev/ttyAMA0"')
    assert line.startswith("config.toml: meter.port: missing: ")
    assert "enabled = false" in line
    # A disabled meter needs no port; a virtual PDU supplies both.
    assert parse_config('[bus]\nport = "a"\n[meter]\nenabled = false').meter.port is None
    assert parse_config("", require_ports=False).bus.port is None
    assert error_of('[bus]\nport = ""', require_ports=False).startswith(
        'config.toml: bus.port: expected a serial port such as "/dev/ttyAMA0", got ""'
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[breaker]\nir = 0.85", "config.toml: breaker.ir: 0.85 is not a position of the switch "
         "(choose 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1)"),
        ("[breaker]\nir = 0.3", "config.toml: breaker.ir: 0.3 is not a position of the switch "
         "(choose 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1)"),
        ("[breaker]\nisd = 7", 'config.toml: breaker.isd: 7 is not a position of the switch '
         '(choose "off", 1.5, 2, 3, 4, 5, 6, 8)'),
        ("[breaker]\nii = 'off'", 'config.toml: breaker.ii: expected a number, got "off"'),
        ("[breaker]\ninn = 0.7", 'config.toml: breaker.inn: 0.7 is not a position of the switch '
         '(choose "off", 0.5, 1)'),
        ("[breaker]\ntr_s = 6", "config.toml: breaker.tr_s: the smartPDU 36 main breaker "
         "(NM8S-250) has no tR switch (tR, tsd and tN exist only on the smartPDU 72)"),
        ("[unit]\nmodel = 48\n[breaker]\ntsd_s = 0.2", "config.toml: breaker.tsd_s: the smartPDU "
         "48 main breaker (NM8S-250) has no tsd switch (tR, tsd and tN exist only on the "
         "smartPDU 72)"),
        ("[unit]\nmodel = 72\n[breaker]\ntr_s = 9", "config.toml: breaker.tr_s: 9 is not a "
         "position of the switch (choose 3, 6, 12, 18)"),
        ("[unit]\nmodel = 72\n[breaker]\ntn_s = 0.5", "config.toml: breaker.tn_s: 0.5 is not a "
         "position of the switch (choose 0.1, 0.2, 0.3, 0.4)"),
        ("[breaker]\ntrs = 6", "config.toml: unknown key 'breaker.trs' (did you mean "
         "'breaker.tr_s'?)"),
    ],
)  # fmt: skip
def test_breaker_settings_the_model_does_not_have_are_refused(text: str, expected: str) -> None:
    assert error_of(text, require_ports=False) == expected


def test_breaker_off_settings_and_integer_spelling() -> None:
    config = parse_config('[breaker]\nisd = "OFF"\ninn = 0.5\nii = 4\nir = 1', require_ports=False)
    assert config.breaker.isd is None and config.breaker.inn == 0.5
    assert config.breaker.ii == 4.0 and config.breaker.ir == 1.0
    assert config.breaker.inn_a == 125.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[meter]\nbaud = 4800", "meter.baud: 4800 is not one of 9600, 19200, 38400"),
        ("[meter]\nbaud = 115200", "meter.baud: 115200 is not one of 9600, 19200, 38400"),
        ("[meter]\ndevice_id = 0", "meter.device_id: 0 is out of range (1…247)"),
        ("[meter]\nprofile = 'sdm120'", 'meter.profile: "sdm120" is not one of "sdm630"'),
        ("[meter]\npoll_s = 2\nstale_after_s = 1",
         "meter.stale_after_s: 1 s must be longer than meter.poll_s (2 s)"),
        ("[meter]\nstale_after_s = 10\noffline_after_s = 5",
         "meter.offline_after_s: 5 s must be at least meter.stale_after_s (10 s)"),
    ],
)  # fmt: skip
def test_meter_settings(text: str, expected: str) -> None:
    assert error_of(text, require_ports=False) == "config.toml: " + expected


def test_toml_syntax_and_file_errors(tmp_path: Path) -> None:
    line = error_of("[bus\nport = 1")
    assert line.startswith("config.toml: not valid TOML: ") and "line 1" in line
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "missing.toml")
    assert info.value.line == f"{tmp_path / 'missing.toml'}: cannot read: No such file or directory"
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"\xff\xfe[bus]")
    with pytest.raises(ConfigError, match=r"bad.toml: not UTF-8 text"):
        load_config(bad)


def test_error_names_the_file_as_given(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text('[bus]\nport = "x"\nbaud = "fast"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.line == f'{path}: bus.baud: expected an integer, got "fast"'


def test_unit_name_follows_the_label_rules() -> None:
    assert parse_config('[unit]\nname = "  FOH  "', require_ports=False).unit.name == "FOH"
    line = error_of('[unit]\nname = "' + "x" * 33 + '"', require_ports=False)
    assert line == "config.toml: unit.name: a unit name has at most 32 characters; this one has 33"
    line = error_of('[unit]\nname = "a\\u0007b"', require_ports=False)
    assert line == (
        "config.toml: unit.name: a unit name cannot contain the control character U+0007 "
        "(character 2)"
    )


def test_validate_label() -> None:
    assert validate_label("Spot rack 1") == "Spot rack 1"
    assert validate_label("  padded ") == "padded"
    assert validate_label("") == ""
    assert validate_label("<b>not html</b>") == "<b>not html</b>"  # text, rendered as text
    assert validate_label("Ünïcødé ✓ 舞台") == "Ünïcødé ✓ 舞台"
    assert validate_label("x" * 32) == "x" * 32
    for bad in ("x" * 33, "line\nbreak", "tab\there", "bidi\u202eevil", "nul\x00"):
        with pytest.raises(ValueError):
            validate_label(bad)


def test_channel_ids() -> None:
    assert channel_ids(36)[:2] == ("A1", "A2") and channel_ids(36)[-1] == "C12"
    assert len(channel_ids(72)) == 72
    assert parse_channel_id("b7") == ("B", 7)
    for bad in ("A0", "A13", "G1", "7", ""):
        with pytest.raises(ValueError):
            parse_channel_id(bad)
    with pytest.raises(ValueError, match="the smartPDU 36 has groups A-C"):
        parse_channel_id("D1", 36)
