"""The Prometheus export without a Prometheus server: the collector's families and values from
a unit state, hostile channel labels escaped by the library, /metrics and the target list over
HTTP with and without the bearer token, the [export.prometheus] config, the atomic file_sd."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from host.config import ConfigError, default_config, parse_config
from host.export.prometheus import UnitCollector, metrics_registry
from host.export.targets import SiteTargets, write_targets_file
from host.state import UnitSnapshot, UnitState
from host.web import WebContext, create_app
from protocol import consts as C
from protocol.messages import Report

UNIT = "smartPDU0ABCDE"
HOSTILE = 'FOH "amp" rack\\2 \u00e9\u26a1 },x="y"'  # as a user may label an output
TOKEN = "prometheus-scrape-token-0123456789"


def make_state(**sections: Any) -> UnitState:
    config = default_config(unit={"model": 36, "id": UNIT, "name": "Stage left"}, **sections)
    state = UnitState(config)
    state.restore_settings(labels={"A1": HOSTILE})
    for address, group in ((1, "A"), (2, "B"), (3, "C")):
        state.board_online(
            address, state.now(), board_type=C.BOARD_SIM, uid=b"uid-%d" % address, group=group
        )
        amps = [7.25, 0.0, 3.5] + [0.0] * 9 if group == "A" else [0.0] * 12
        report = Report([round(a * 100) for a in amps], [0] * 12, -1, src=address)
        assert state.apply_report(address, report, state.now())
    state.apply_meter(
        {"l1_voltage": 231.4, "l1_current": 7.3, "frequency": 50.02, "import_energy": 12.5},
        state.now(),
    )
    return state


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def one(found: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    values = [v for ls, v in found[name] if all(ls.get(k) == x for k, x in labels.items())]
    assert len(values) == 1, (name, labels, found.get(name))
    return values[0]


def test_families_values_and_hostile_label() -> None:
    state = make_state()
    text = generate_latest(metrics_registry(state, process=False)).decode()
    found = samples(text)
    a1 = {"unit": UNIT, "group": "A", "channel": "A1", "phase": "L1"}
    assert one(found, "smartpdu_output_current_amperes", **a1) == pytest.approx(7.25)
    # The label comes back byte for byte through the text format's escaping.
    (labels, _), *_ = [
        s for s in found["smartpdu_output_current_amperes"] if s[0]["channel"] == "A1"
    ]
    assert labels["label"] == HOSTILE
    assert one(found, "smartpdu_output_current_amperes", channel="A3") == pytest.approx(3.5)
    assert one(found, "smartpdu_output_state", channel="A1") == 1.0  # ok
    assert one(found, "smartpdu_output_state", channel="A2") == 0.0  # off: no load
    assert len(found["smartpdu_output_rating_amperes"]) == 36
    assert one(found, "smartpdu_mains_voltage_volts", phase="L1") == pytest.approx(231.4)
    assert one(found, "smartpdu_mains_frequency_hertz") == pytest.approx(50.02)
    assert one(found, "smartpdu_mains_import_energy_joules_total") == pytest.approx(12.5 * 3.6e6)
    assert one(found, "smartpdu_meter_up") == 1.0
    assert one(found, "smartpdu_board_up", group="B") == 1.0
    assert one(found, "smartpdu_board_frames_total", group="A") == 0.0  # no bus master here
    assert one(found, "smartpdu_breaker_position", smartpdu_breaker_position="unknown") == 1.0
    assert one(found, "smartpdu_unit_info", unit_name="Stage left", model="36") == 1.0
    for name in found:
        assert name.startswith("smartpdu_"), name


class SnapshotOf:
    """A state whose snapshot is given (what the unit itself would refuse to hold)."""

    def __init__(self, snapshot: UnitSnapshot) -> None:
        self._snapshot = snapshot

    def snapshot(self) -> UnitSnapshot:
        return self._snapshot


def test_label_with_newline_and_quotes_cannot_break_the_format() -> None:
    # The unit refuses control characters in labels; the exporter must not rely on that.
    real = make_state().snapshot()
    evil = 'x"} 1\nsmartpdu_up{unit="fake"} 0\n# \\'
    groups = list(real.groups)
    channels = list(groups[0].channels)
    channels[0] = dataclasses.replace(channels[0], label=evil)
    groups[0] = dataclasses.replace(groups[0], channels=tuple(channels))
    state = SnapshotOf(dataclasses.replace(real, groups=tuple(groups)))
    registry = CollectorRegistry()
    registry.register(UnitCollector(state))  # type: ignore[arg-type]
    found = samples(generate_latest(registry).decode())
    assert one(found, "smartpdu_output_current_amperes", channel="A1", label=evil) == 7.25
    assert [ls["unit"] for ls, _ in found["smartpdu_up"]] == [UNIT]


def test_boards_offline_drop_their_currents() -> None:
    state = make_state()
    state.board_offline(1, state.now())
    found = samples(generate_latest(metrics_registry(state, process=False)).decode())
    assert one(found, "smartpdu_board_up", group="A") == 0.0
    assert all(ls["group"] != "A" for ls, _ in found["smartpdu_output_current_amperes"])


@pytest.fixture
async def client(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TestClient]:
    prometheus: dict[str, Any] = dict(getattr(request, "param", {}))
    if prometheus.pop("token", False):
        (tmp_path / "token").write_text(TOKEN + "\n")
        prometheus["bearer_token_file"] = str(tmp_path / "token")
    web: dict[str, Any] = {"read_open": prometheus.pop("read_open", True)}
    config = default_config(
        unit={"model": 36, "id": UNIT}, web=web, export={"prometheus": prometheus}
    )
    state = UnitState(config)
    app = create_app(WebContext(config=config, state=state, storage=None))  # type: ignore[arg-type]
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def test_metrics_open_by_default(client: TestClient) -> None:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = await response.text()
    assert 'smartpdu_up{unit="smartPDU0ABCDE"} 1.0' in text and "process_cpu_seconds_total" in text
    targets = await (await client.get("/api/v1/prometheus/targets")).json()
    host = f"{client.server.host}:{client.server.port}"
    assert targets == [{"targets": [host], "labels": {"unit": UNIT, "unit_name": ""}}]


@pytest.mark.parametrize("client", [{"token": True}], indirect=True)
async def test_bearer_token_required_when_set(client: TestClient) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token-wrong-token"},
        {"Authorization": TOKEN},
    ):
        response = await client.get("/metrics", headers=headers)
        assert response.status == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await client.get("/api/v1/prometheus/targets", headers=headers)).status == 401
    good = {"Authorization": f"Bearer {TOKEN}"}
    assert (await client.get("/metrics", headers=good)).status == 200
    assert (await client.get("/api/v1/prometheus/targets", headers=good)).status == 200


@pytest.mark.parametrize("client", [{"read_open": False}], indirect=True)
async def test_read_closed_without_token_needs_login(client: TestClient) -> None:
    assert (await client.get("/metrics")).status == 401


@pytest.mark.parametrize("client", [{"enabled": False}], indirect=True)
async def test_disabled_has_no_routes(client: TestClient) -> None:
    assert (await client.get("/metrics")).status == 404


async def test_metrics_is_read_only(client: TestClient) -> None:
    for method in ("POST", "PUT", "DELETE"):
        assert (await client.request(method, "/metrics")).status == 405


# ----------------------------------------------------------------------------- config


def test_config_defaults_and_keys(tmp_path: Path) -> None:
    assert default_config().prometheus.enabled is True
    (tmp_path / "token").write_text(TOKEN)
    (tmp_path / "sd").mkdir()
    text = '[export.prometheus]\nbearer_token_file = "token"\nfile_sd = "sd/units.json"\n'
    config = parse_config(text, base_dir=tmp_path, require_ports=False).prometheus
    assert config.bearer_token_file == tmp_path / "token"
    assert config.file_sd == tmp_path / "sd" / "units.json"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("enabled = 1", "export.prometheus.enabled: expected true or false"),
        ('bearer_token_file = "none"', "no such file (write the scrape token into it)"),
        ('bearer_token_file = "short"', "at least 16 printable characters"),
        ('file_sd = "targets.yml"', "name it *.json"),
        ('file_sd = "missing/targets.json"', "no such folder (create it"),
        ("file_sd_path = 1", "unknown key 'export.prometheus.file_sd_path' (did you mean"),
    ],
)
def test_config_mistakes(tmp_path: Path, body: str, message: str) -> None:
    (tmp_path / "short").write_text("abc")
    with pytest.raises(ConfigError) as caught:
        parse_config(f"[export.prometheus]\n{body}\n", base_dir=tmp_path, require_ports=False)
    assert message in caught.value.line and "\n" not in caught.value.line


def test_disabled_section_is_not_checked(tmp_path: Path) -> None:
    text = '[export.prometheus]\nenabled = false\nbearer_token_file = "none"\n'
    assert not parse_config(text, base_dir=tmp_path, require_ports=False).prometheus.enabled


# ----------------------------------------------------------------------------- file_sd


def test_targets_file_is_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / "targets.json"
    first = SiteTargets(UNIT, lambda: "FOH", web_host="10.0.0.5", web_port=lambda: 8080)
    write_targets_file(path, first.targets())
    inode = os.stat(path).st_ino
    assert json.loads(path.read_text()) == [
        {"targets": ["10.0.0.5:8080"], "labels": {"unit": UNIT, "unit_name": "FOH"}}
    ]
    write_targets_file(path, [*first.targets(), *first.targets()])
    assert os.stat(path).st_ino != inode  # a new file renamed over the old one
    assert len(json.loads(path.read_text())) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["targets.json"]  # no temp left
    assert oct(path.stat().st_mode & 0o777) == "0o644"
