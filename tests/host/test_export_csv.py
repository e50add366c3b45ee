"""CSV export: streamed in windows larger spans than one, correct headers and file names,
formula injection defused; the energy report and the balance endpoint over the same app."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from host.config import default_config
from host.state import Event, EventKind, Severity, UnitState
from host.storage.store import Storage
from host.web import WebContext, create_app, export_routes
from host.web.export_routes import export_filename, safe_cell
from protocol import consts as C
from protocol.messages import Report

UNIT = "smartPDU0CSV01"
U = f"/api/v1/units/{UNIT}"
HOSTILE = ['=HYPERLINK("http://e.vil","x")', "+1+2", "-3+4", "@SUM(A1:A9)", "\t=1"]


def make_state() -> UnitState:
    config = default_config(unit={"model": 36, "id": UNIT}, meter={"enabled": True})
    state = UnitState(config)
    for address, group in ((1, "A"), (2, "B"), (3, "C")):
        state.board_online(
            address, state.now(), board_type=C.BOARD_SIM, uid=b"uid-%d" % address, group=group
        )
        amps = [10.0, 0, 0, 6.0, 0, 0, 0, 0, 0, 0, 0, 0] if group == "A" else [0.0] * 12
        report = Report([round(a * 100) for a in amps], [0] * 12, -1, src=address)
        assert state.apply_report(address, report, state.now())
    return state


class Counting:
    """Wraps Storage.history to count the database windows a download reads."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.calls = 0
        self.largest = 0
        self._history = storage.history

    async def history(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        points = await self._history(*args, **kwargs)
        self.largest = max(self.largest, len(points))
        return points


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[tuple[TestClient, WebContext]]:
    storage = await Storage.open(tmp_path / "db.sqlite")
    config = default_config(unit={"model": 36, "id": UNIT}, meter={"enabled": True})
    ctx = WebContext(config=config, state=make_state(), storage=storage, number=1)
    test_client = TestClient(TestServer(create_app(ctx)))
    await test_client.start_server()
    try:
        yield test_client, ctx
    finally:
        await test_client.close()
        await storage.close()


def parse(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_safe_cell_defuses_formulas_only_in_text() -> None:
    for text in HOSTILE:
        assert safe_cell(text) == "'" + text
    assert safe_cell("Stage left") == "Stage left"
    assert safe_cell(-3.5) == -3.5  # a number stays a number
    assert safe_cell("") == ""


def test_filename_is_safe() -> None:
    name = export_filename('smart"PDU/../x', "group-A", 0, 3600)
    assert name == "smart_PDU_.._x-group-A-19700101T000000Z-19700101T010000Z.csv"
    assert '"' not in name and "/" not in name


async def test_history_csv_streams_window_by_window(
    client: tuple[TestClient, WebContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    web, ctx = client
    ctx.state.set_channel_label("A1", HOSTILE[0])
    now = int(time.time())
    start = now - 1500
    for t in range(start, now):
        ctx.storage.add_history(t, {"A1": 3.0 + (t % 2), "A2": 1.0})
    await ctx.storage.flush()
    counting = Counting(ctx.storage)
    monkeypatch.setattr(ctx.storage, "history", counting.history)
    monkeypatch.setattr(export_routes, "CSV_CHUNK_ROWS", 200)
    url = f"{U}/export/history.csv?select=A1&start={start}&end={now - 1}&resolution=seconds"
    response = await web.get(url)
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="smartPDU0CSV01-A1-')
    assert disposition.endswith('.csv"')
    assert "Content-Length" not in response.headers  # streamed, not built first
    rows = parse(await response.text())
    assert rows[0] == ["time_utc", "epoch_s", f"A1 {HOSTILE[0]} (A)"]  # not a formula: "A1 …"
    body = rows[1:]
    assert len(body) == 1500
    assert [int(r[1]) for r in body] == list(range(start, now))
    assert body[0][0] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start))
    assert {float(r[2]) for r in body} == {3.0, 4.0}
    # 1500 s in windows of 200 rows: 8 reads, none holding more than one window.
    assert counting.calls == 8 and counting.largest <= 200


async def test_group_mains_and_minutes(client: tuple[TestClient, WebContext]) -> None:
    web, ctx = client
    now = int(time.time())
    for t in range(now - 300, now):
        ctx.storage.add_history(t, {"B2": 2.0, "sum.L1": 10.0, "meter.l1_voltage": 231.0})
    await ctx.storage.flush()
    span = f"start={now - 300}&end={now}"
    group = parse(await (await web.get(f"{U}/export/history.csv?select=B&{span}")).text())
    assert group[0][:4] == ["time_utc", "epoch_s", "B1 (A)", "B2 (A)"] and len(group[0]) == 14
    assert len(group) == 301 and group[1][3] == "2.0" and group[1][2] == ""
    mains = parse(await (await web.get(f"{U}/export/history.csv?select=mains&{span}")).text())
    assert mains[0][2] == "channels L1 (A)" and "meter L1-N voltage (V)" in mains[0]
    await ctx.storage.maintain(now + 120)  # aggregate the minutes
    url = f"{U}/export/history.csv?select=b2&{span}&resolution=minutes"
    minutes = parse(await (await web.get(url)).text())
    assert minutes[0] == ["time_utc", "epoch_s", "B2 (A) min", "B2 (A) avg", "B2 (A) max"]
    assert all(int(r[1]) % 60 == 0 for r in minutes[1:]) and 5 <= len(minutes) - 1 <= 7
    for bad in ("select=Z", "select=A13", "select=A1&start=9&end=5", "resolution=weekly"):
        assert (await web.get(f"{U}/export/history.csv?{bad}")).status == 400, bad
    assert (await web.get(f"{U}/export/history.csv?select=D1")).status == 404
    other = await web.get("/api/v1/units/smartPDU0OTHER/export/history.csv")
    assert other.status == 404
    # The API's message, which says where a peer's data is (was without the pointer).
    assert "see its url in GET /api/v1/units" in (await other.json())["error"]["message"]
    stamp = await web.get(f"{U}/export/history.csv?select=B&start=soon")
    assert stamp.status == 400
    assert (await stamp.json())["error"]["message"] == "'start' must be seconds since the epoch"


async def test_events_csv_pages_and_defuses_messages(
    client: tuple[TestClient, WebContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    web, ctx = client
    monkeypatch.setattr(export_routes, "EVENTS_PAGE", 50)
    base = time.time() - 1000
    entries = [
        (
            Event(
                base + i,
                EventKind.SETTINGS_CHANGED,
                Severity.INFO,
                UNIT,
                "A",
                "A1",
                HOSTILE[i % len(HOSTILE)],
            ),
            None,
        )
        for i in range(130)
    ]
    await ctx.storage.append_events(entries)
    url = f"{U}/export/events.csv?start={base + 10}&end={base + 119.5}"
    response = await web.get(url)
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/csv")
    assert "-events-" in response.headers["Content-Disposition"]
    rows = parse(await response.text())
    assert rows[0][:8] == ["time_utc", "epoch_s", "id", "severity", "kind", "group", "channel",
                           "message"]  # fmt: skip
    body = rows[1:]
    assert len(body) == 110  # events 10 … 119, over three pages of 50
    times = [float(r[1]) for r in body]
    assert times == sorted(times, reverse=True)  # newest first, like the log pane
    for row in body:
        assert row[7].startswith("'") and row[7][1:] in HOSTILE
    assert (await web.get(f"{U}/export/events.csv?kind=<x>")).status == 400


async def test_report_and_balance_endpoints(client: tuple[TestClient, WebContext]) -> None:
    web, ctx = client
    ctx.state.set_channel_label("A1", HOSTILE[3])
    now = int(time.time())
    for t in range(now - 600, now):
        ctx.storage.add_history(t, {"A1": 10.0, "meter.l1_voltage": 240.0})
    await ctx.storage.flush()
    data = await (await web.get(f"{U}/report?start={now - 600}&end={now}")).json()
    a1 = next(c for c in data["channels"] if c["id"] == "A1")
    assert a1["kwh"] == pytest.approx(10 * 240 * 600 / 3.6e6) and a1["voltage_source"] == "meter"
    assert data["groups"][0]["group"] == "A" and data["groups"][0]["peak_a"] == 10.0
    report = await web.get(f"{U}/report?start={now - 600}&end={now}&format=csv")
    assert report.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert "-energy-" in report.headers["Content-Disposition"]
    rows = parse(await report.text())
    assert rows[0][0] == "show energy report" and ["A1", "'" + HOSTILE[3], "L1"] in [
        r[:3] for r in rows
    ]
    assert (await web.get(f"{U}/report?format=pdf")).status == 400
    balance = await (await web.get(f"{U}/balance")).json()
    assert balance["phases_a"]["L1"] == pytest.approx(16.0)
    assert balance["moves"][0]["channel"] == "A4" and balance["moves"][0]["to_phase"] in (
        "L2",
        "L3",
    )
