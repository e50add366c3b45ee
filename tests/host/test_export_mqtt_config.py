"""[export.mqtt]: defaults, what is accepted, and the one line a user gets for each mistake;
the export's bounded stores and the discovery payloads without a broker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from host.config import ConfigError, MqttConfig, default_config, parse_config
from host.export.hass import Discovery, UnitTopics
from host.export.mqtt import EventBuffer, LatestValues, Message, Sampler
from host.state import UnitState


def _mqtt(text: str, base: Path | None = None) -> MqttConfig:
    return parse_config(text, base_dir=base, require_ports=False).mqtt


def _error(text: str, base: Path | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, base_dir=base, require_ports=False)
    return info.value.line


def test_defaults_off() -> None:
    cfg = default_config().mqtt
    assert cfg == MqttConfig()
    assert not cfg.enabled
    assert (cfg.port, cfg.prefix, cfg.discovery_prefix) == (1883, "smartpdu", "homeassistant")


def test_full_section(tmp_path: Path) -> None:
    for name in ("pw", "ca.pem", "unit.pem", "unit.key"):
        (tmp_path / name).write_text("x")
    cfg = _mqtt(
        '[export.mqtt]\nenabled = true\nhost = "broker.lan"\nprefix = "site/stage-left"\n'
        'username = "pdu"\npassword_file = "pw"\ntls = true\nca_file = "ca.pem"\n'
        'cert_file = "unit.pem"\nkey_file = "unit.key"\nclient_id = "pdu-7"\n'
        'deadband_a = 0.25\ndiscovery_prefix = "ha"\n',
        tmp_path,
    )
    assert cfg.enabled and cfg.tls and cfg.port == 8883  # the TLS port unless given
    assert cfg.password_file == tmp_path / "pw"
    assert cfg.ca_file == tmp_path / "ca.pem"
    assert (cfg.prefix, cfg.client_id, cfg.deadband_a) == ("site/stage-left", "pdu-7", 0.25)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (
            "[export.mqtt]\nenabled = true\n",
            'config.toml: export.mqtt.host: missing: the MQTT broker, e.g. host = "broker.lan" '
            "(or enabled = false)",
        ),
        (
            '[export.mqtt]\nhost = "mqtt://broker.lan:1883"\n',
            'config.toml: export.mqtt.host: expected a host name or address, not a URL, got '
            '"mqtt://broker.lan:1883" (e.g. host = "broker.lan", with port and tls set apart)',
        ),
        ("[export.mqtt]\nhots = 1\n", "config.toml: unknown key 'export.mqtt.hots' "
         "(did you mean 'export.mqtt.host'?)"),
        ("[export.mqqt]\n", "config.toml: unknown key 'export.mqqt' (did you mean "
         "'export.mqtt'?)"),
        ('[export.mqtt]\nprefix = "site/#"\n', 'config.toml: export.mqtt.prefix: expected '
         'topic levels of letters, digits, "_", "-" and "." separated by "/" (no "+", "#", '
         'spaces, or "/" at either end), got "site/#"'),
        ('[export.mqtt]\nprefix = "/site"\n', None),
        ('[export.mqtt]\ndiscovery_prefix = "home assistant"\n', None),
        ("[export.mqtt]\nport = 0\n", "config.toml: export.mqtt.port: 0 is out of range "
         "(1…65535)"),
        ('[export.mqtt]\ndeadband_a = "0.1"\n', 'config.toml: export.mqtt.deadband_a: '
         'expected a number, got "0.1"'),
        ('[export.mqtt]\nclient_id = "a b"\n', None),
        ('[export.mqtt]\ncert_file = "c.pem"\n', "config.toml: export.mqtt.cert_file: is "
         "used only with tls = true"),
        ('[export.mqtt]\npassword = "hunter2"\n', "config.toml: unknown key "
         "'export.mqtt.password' (did you mean 'export.mqtt.password_file'?)"),
    ],
)  # fmt: skip
def test_mistakes_are_one_line(text: str, line: str | None) -> None:
    got = _error(text)
    assert "\n" not in got
    if line is None:
        assert got.startswith("config.toml: export.mqtt.")
    else:
        assert got == line


def test_files_are_checked_when_enabled(tmp_path: Path) -> None:
    head = '[export.mqtt]\nenabled = true\nhost = "b"\n'
    line = _error(head + 'username = "u"\npassword_file = "missing"\n', tmp_path)
    assert line == (
        f"config.toml: export.mqtt.password_file: {tmp_path / 'missing'}: no such file "
        "(write the broker password into it, readable by the service only)"
    )
    (tmp_path / "pw").write_text("secret\n")
    line = _error(head + 'password_file = "pw"\n', tmp_path)
    assert line.endswith("a password needs a username (export.mqtt.username)")
    line = _error(head + 'tls = true\ncert_file = "pw"\nkey_file = "nope.key"\n', tmp_path)
    assert "export.mqtt.key_file" in line and "no such file" in line
    # Disabled: the section may stay in the file as an example, files not yet there.
    assert not _mqtt('[export.mqtt]\nusername = "u"\npassword_file = "later"\n', tmp_path).enabled


def test_example_config_parses() -> None:
    example = Path(__file__).resolve().parents[2] / "host" / "smartpdu.example.toml"
    cfg = parse_config(example.read_text(), require_ports=False)
    assert cfg.mqtt.prefix == "smartpdu"


# ----------------------------------------------------------------------------- the stores


def test_latest_values_bounded_by_topics() -> None:
    store = LatestValues()
    for n in range(10_000):
        store.put(Message(f"t/{n % 7}", str(n), True, 0))
    assert len(store) == 7 and store.pending == 7
    taken = [store.take() for _ in range(7)]
    assert store.take() is None
    assert {m.payload for m in taken if m} == {str(n) for n in range(9993, 10_000)}
    store.put(Message("t/0", taken[0].payload if taken[0] else "", True, 0))
    assert store.pending == 0  # unchanged: nothing to send
    store.republish_retained()
    assert store.pending == 7


def test_event_buffer_drops_oldest_and_counts() -> None:
    buffer = EventBuffer(10)
    for n in range(25):
        buffer.add(str(n))
    assert len(buffer) == 10 and buffer.dropped == 15
    assert buffer.peek() == "15"


HOSTILE = ('Amp "rack" \\ {x}', "舞台 左 🎛️", "line\nbreak\ttab", "+/#", "</script>", "")


def test_discovery_payloads_hostile_labels() -> None:
    state = UnitState(default_config(unit={"model": 72, "id": "smartPDU0ABCDE"}))
    for cid, label in zip(("A1", "B2", "C3", "D4", "E5", "F6"), HOSTILE, strict=True):
        state.restore_settings(labels={cid: label})  # as storage hands them back
    messages = Discovery(UnitTopics("smartpdu", "smartPDU0ABCDE"), "homeassistant").messages(
        state.snapshot()
    )
    payloads = {topic: json.loads(text) for topic, text in messages.items()}
    ids = [p["unique_id"] for p in payloads.values()]
    assert len(ids) == len(set(ids)) == 72 * 2 + 6 + 14 + 4
    for topic, payload in payloads.items():
        assert topic.isascii() and " " not in topic and "#" not in topic and "+" not in topic
        assert topic.startswith("homeassistant/") and topic.endswith("/config")
        assert "\n" not in payload["name"]
        assert all(" " not in a["topic"] for a in payload["availability"])
    a1 = payloads["homeassistant/sensor/smartPDU0ABCDE_A1_current/config"]
    assert a1["name"] == 'A1 Amp "rack" \\ {x} current'
    assert (a1["device_class"], a1["unit_of_measurement"], a1["state_class"]) == (
        "current",
        "A",
        "measurement",
    )
    assert a1["state_topic"] == "smartpdu/smartPDU0ABCDE/channel/A1/current"
    assert a1["device"]["via_device"] == "smartPDU0ABCDE"
    energy = payloads["homeassistant/sensor/smartPDU0ABCDE_import_energy/config"]
    assert (energy["device_class"], energy["state_class"], energy["unit_of_measurement"]) == (
        "energy",
        "total_increasing",
        "kWh",
    )


def test_deadband() -> None:
    state = UnitState(default_config(unit={"id": "smartPDU0ABCDE"}))
    store = LatestValues()
    cfg = MqttConfig(deadband_a=0.5)
    sampler = Sampler(cfg, UnitTopics("p", state.unit_id), store)
    sampler.channels(state.snapshot())
    # No data yet: availability, states and breaker, no current.
    topics = set()
    while (m := store.take()) is not None:
        topics.add(m.topic)
    assert not any(t.endswith("/current") for t in topics)
    assert "p/smartPDU0ABCDE/board/A/availability" in topics
