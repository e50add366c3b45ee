"""``smartpdu run --config FILE``: the file's unit, web, storage and peers settings, the
virtual PDU's model, mains frequency, ports and wiring (no processes started here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from host.config import ConfigError, config_from_document, read_config_document
from tools.cli import build_parser
from tools.virtual.runvirtual import DEFAULT_VAR, virtual_document, with_virtual_ports

UNIT_FILE = """\
[unit]
id = "smartPDU0007A1"
name = "Stage rack 1"

[web]
port = 8181

[storage]
var_dir = "data"

[peers]
site_key = "festival-site-key-2026-stage-left"
offline_after_s = 3
"""


def complete(document: dict[str, object], **kwargs: object) -> dict[str, object]:
    options: dict[str, object] = {
        "scenario": "rehearsal", "model": 48, "mains_hz": 50, "host": None, "port": None,
        "var_dir": None,
    }  # fmt: skip
    options.update(kwargs)
    return virtual_document(document, "unit.toml", **options)  # type: ignore[arg-type]


def test_a_config_file_makes_a_distinct_unit(tmp_path: Path) -> None:
    path = tmp_path / "unit.toml"
    path.write_text(UNIT_FILE)
    document = complete(read_config_document(path))
    virtual = with_virtual_ports(
        document, bus_port="/dev/pts/7", meter_port="/dev/pts/8", phases={"A": ["L2"] * 12}
    )
    config = config_from_document(virtual, str(path), tmp_path, require_ports=False)
    assert config.unit.unit_id == "smartPDU0007A1" and config.unit.name == "Stage rack 1"
    assert config.unit.model == 48 and config.unit.mains_hz == 50  # the scenario's
    assert config.web.host == "0.0.0.0" and config.web.port == 8181
    assert config.storage.var_dir == tmp_path / "data"  # relative to the file
    assert config.storage.database == tmp_path / "data" / "smartpdu.db"
    assert config.peers.site_key == "festival-site-key-2026-stage-left"
    assert config.peers.offline_after_s == 3.0
    assert config.bus.port == "/dev/pts/7" and config.meter.port == "/dev/pts/8"
    assert config.channels.phase_of("A", 1) == "L2" and config.channels.phase_of("B", 1) == "L1"
    # The command line wins over the file.
    document = complete(read_config_document(path), host="127.0.0.1", port=9000)
    config = config_from_document(document, str(path), tmp_path, require_ports=False)
    assert (config.web.host, config.web.port) == ("127.0.0.1", 9000)


def test_without_a_file_it_is_the_plain_virtual_unit() -> None:
    config = config_from_document(complete({}), "<defaults>", require_ports=False)
    assert config.web.host == "0.0.0.0" and config.web.port == 8080
    assert config.storage.var_dir == DEFAULT_VAR and config.unit.model == 48
    assert config.peers.enabled and config.peers.site_key == ""


def test_a_file_contradicting_the_scenario_is_one_clear_line() -> None:
    with pytest.raises(ConfigError) as info:
        complete({"unit": {"model": 72}})
    assert info.value.line == (
        "unit.toml: unit.model: 72, but the scenario 'rehearsal' plays a smartPDU 48 at 50 Hz: "
        "leave unit.model out of a file for smartpdu run (the virtual PDU sets it) or choose "
        "another --scenario"
    )
    complete({"unit": {"model": 48, "mains_hz": 50}})  # agreeing is fine
    with pytest.raises(ConfigError, match=r"unit.toml: unknown key 'web.prot'"):
        config_from_document(complete({"web": {"prot": 1}}), "unit.toml", require_ports=False)


def test_run_command_line() -> None:
    args = build_parser().parse_args(["run"])
    assert (args.config, args.host, args.port, args.scenario) == (None, None, None, "rehearsal")
    args = build_parser().parse_args(["run", "--config", "u.toml", "--port", "8081"])
    assert (args.config, args.port) == ("u.toml", 8081)
