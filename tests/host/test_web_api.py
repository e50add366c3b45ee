"""The web API and the live WebSocket against a real aiohttp server, with the unit state fed
the reports a bus master would deliver (no boards, no browser: fast)."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from host.config import default_config
from host.state import Event, EventKind, Severity, UnitState
from host.storage.store import Storage
from host.web import HUB, WebContext, create_app
from host.web.auth import (
    PasswordFile,
    SessionStore,
    passwd_main,
    verify_password,
    write_password_file,
)
from host.web.live import LiveClient, LiveHub
from host.web.throttle import LoginThrottle
from host.web.units import UNIT_FIELDS, UnitDirectory
from host.web.view import apply_patch, merge_diff, panel_view
from protocol import consts as C
from protocol.messages import Report

PASSWORD = "front-of-house"
UNIT = "smartPDU0ABCDE"
XSS = "<img src=x onerror=alert(1)>"


@dataclass
class FakePanel:
    state: Any = None
    presses: list[tuple[int, int]] = field(default_factory=list)

    async def press(self, button: int, hold_ms: int = 120) -> None:
        self.presses.append((button, hold_ms))


@dataclass
class PanelState:
    leds: list[tuple[int, int, int]]
    display: str


def feed(
    state: UnitState,
    address: int,
    amps: list[float],
    alarms: list[int] | None = None,
    selected: int = -1,
) -> None:
    report = Report([round(a * 100) for a in amps], alarms or [0] * 12, selected, src=address)
    assert state.apply_report(address, report, state.now())


def make_state(**channels: Any) -> UnitState:
    config = default_config(
        unit={"model": 36, "id": UNIT},
        channels={"supervision_dwell_s": 0.0, **channels},
        meter={"enabled": True},
    )
    state = UnitState(config)
    for address, group in ((1, "A"), (2, "B"), (3, "C")):
        state.board_online(
            address, state.now(), board_type=C.BOARD_SIM, uid=b"uid-%d" % address, group=group
        )
        feed(state, address, [0.0] * 12)
    return state


class Harness:
    def __init__(self, client: TestClient, ctx: WebContext, panel: FakePanel) -> None:
        self.client = client
        self.ctx = ctx
        self.panel = panel
        self.csrf: str | None = None

    @property
    def state(self) -> UnitState:
        return self.ctx.state

    async def login(self, password: str = PASSWORD) -> Any:
        response = await self.client.post("/api/v1/login", json={"password": password})
        if response.status == 200:
            self.csrf = (await response.json())["csrf_token"]
        return response

    def headers(self) -> dict[str, str]:
        return {"X-CSRF-Token": self.csrf} if self.csrf else {}

    async def put(self, path: str, body: Any) -> Any:
        return await self.client.put(path, json=body, headers=self.headers())


async def make_harness(tmp_path: Path, *, read_open: bool = True) -> AsyncIterator[Harness]:
    state = make_state()
    storage = await Storage.open(tmp_path / "db.sqlite")
    password_file = tmp_path / "admin-password"
    write_password_file(password_file, PASSWORD)
    config = default_config(
        unit={"model": 36, "id": UNIT}, web={"read_open": read_open}, meter={"enabled": True}
    )
    panel = FakePanel(PanelState([(0, 160, 0)] * 11 + [(0, 0, 160)], " 7.3"))
    ctx = WebContext(
        config=config,
        state=state,
        storage=storage,
        number=1,
        panels={"A": panel},
        passwords=PasswordFile(password_file),
        sessions=SessionStore(),
        throttle=LoginThrottle(),
        live_min_interval_s=0.02,
    )
    client = TestClient(TestServer(create_app(ctx)))
    await client.start_server()
    try:
        yield Harness(client, ctx, panel)
    finally:
        await client.close()
        await storage.close()


@pytest.fixture
async def web(tmp_path: Path) -> AsyncIterator[Harness]:
    async for harness in make_harness(tmp_path):
        yield harness


@pytest.fixture
async def closed_web(tmp_path: Path) -> AsyncIterator[Harness]:
    async for harness in make_harness(tmp_path, read_open=False):
        yield harness


U = f"/api/v1/units/{UNIT}"


# ----------------------------------------------------------------------------- pages


async def test_index_and_static_with_security_headers(web: Harness) -> None:
    response = await web.client.get("/")
    assert response.status == 200
    html = await response.text()
    assert "/static/app.js" in html and "http://" not in html and "https://" not in html
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    for name in ("app.js", "app.css", "favicon.svg"):
        static = await web.client.get(f"/static/{name}")
        assert static.status == 200, name
        text = await static.text()
        assert "innerHTML" not in text and "//cdn" not in text and "fonts.googleapis" not in text


# ----------------------------------------------------------------------------- reading


async def test_units_list_has_the_pane_a_fields(web: Harness) -> None:
    feed(web.state, 1, [5.0, 2.0, 1.0] + [0.0] * 9)
    response = await web.client.get("/api/v1/units")
    assert response.status == 200
    units = await response.json()
    assert len(units) == 1
    row = units[0]
    assert set(UNIT_FIELDS) <= set(row)
    assert row["id"] == UNIT and row["name"] == "smartPDU 1" and row["number"] == 1
    assert row["url"].startswith("http://") and row["local"] is True
    # No live meter: the phases are the sums of the outputs; no neutral without the meter.
    assert (row["l1"], row["l2"], row["l3"], row["n"]) == (5.0, 2.0, 1.0, None)
    assert row["source"] == "channels"
    assert row["warning"] is False and row["tripped"] is False and row["online"] is True


async def test_peers_slot_into_the_units_list(web: Harness) -> None:
    peer = {
        "id": "smartPDU0PEER1",
        "name": "Stage left",
        "number": 2,
        "url": "http://10.0.0.7:8080/",
        "l1": 1.0,
        "l2": 2.0,
        "l3": 3.0,
        "n": 0.5,
        "warning": True,
        "tripped": False,
        "online": True,
    }
    web.ctx.units.add_source(lambda: [peer, {"id": UNIT, "name": "dup"}])
    units = await (await web.client.get("/api/v1/units")).json()
    assert [u["id"] for u in units] == [UNIT, "smartPDU0PEER1"]
    assert units[1]["local"] is False and units[1]["warning"] is True


async def test_unit_status_channels_meter_and_unknown_ids(web: Harness) -> None:
    feed(web.state, 2, [0.0] * 6 + [7.25] + [0.0] * 5)
    status = await (await web.client.get(U)).json()
    assert status["display_name"] == "smartPDU 1" and status["unit_id"] == UNIT
    assert len(status["groups"]) == 3
    channel = await (await web.client.get(f"{U}/channels/B7")).json()
    assert channel["current_a"] == 7.25 and channel["phase"] == "L1"
    assert len(await (await web.client.get(f"{U}/channels")).json()) == 36
    meter = await (await web.client.get(f"{U}/meter")).json()
    assert meter["enabled"] is True
    for path in ("/api/v1/units/smartPDU0OTHER", f"{U}/channels/D1", f"{U}/channels/A13"):
        response = await web.client.get(path)
        assert response.status == 404, path
        assert "message" in (await response.json())["error"]


async def test_view_matches_the_state(web: Harness) -> None:
    feed(web.state, 3, [16.5] + [0.0] * 11, [C.AL_SLIGHT] + [0] * 11)
    view = await (await web.client.get(f"{U}/view")).json()
    assert view["channels"]["C1"]["current_a"] == 16.5
    assert view["channels"]["C1"]["state"] == "slight"
    # The fake virtual panel lights button 12 blue, but the selection comes from the
    # board's REPORTs only (one path for real and virtual boards): none reported yet.
    assert view["groups"]["A"]["panel"]["selected"] == 12
    assert view["channels"]["A12"]["selected"] is False
    assert view["groups"]["A"]["selected"] is None
    feed(web.state, 2, [0.0] * 12, selected=6)  # group B (no virtual panel): button 7
    view = await (await web.client.get(f"{U}/view")).json()
    assert view["groups"]["B"]["selected"] == 7
    assert [cid for cid, c in view["channels"].items() if c["selected"]] == ["B7"]
    status = await (await web.client.get(U)).json()
    assert [g["selected"] for g in status["groups"]] == [None, 7, None]
    channel = await (await web.client.get(f"{U}/channels/B7")).json()
    assert channel["selected"] is True
    assert [q[0] for q in view["meter_quantities"]][:4] == [
        "l1_current",
        "l2_current",
        "l3_current",
        "neutral_current",
    ]


# ----------------------------------------------------------------------------- writing


async def test_writes_without_login_are_refused(web: Harness) -> None:
    for path, body in (
        (f"{U}/name", {"name": "FOH"}),
        (f"{U}/channels/A1/label", {"label": "x"}),
        (f"{U}/channels/A1/supervision", {"min_a": 1, "max_a": 2}),
    ):
        response = await web.client.put(path, json=body)
        assert response.status == 401, path
    response = await web.client.post(f"{U}/groups/A/panel/press", json={"button": 3})
    assert response.status == 401
    assert web.panel.presses == []
    assert web.state.name == ""


async def test_csrf_and_origin_are_checked(web: Harness) -> None:
    assert (await web.login()).status == 200
    no_token = await web.client.put(f"{U}/name", json={"name": "FOH"})
    assert no_token.status == 403
    wrong = await web.client.put(
        f"{U}/name", json={"name": "FOH"}, headers={"X-CSRF-Token": "nope"}
    )
    assert wrong.status == 403
    cross = await web.client.put(
        f"{U}/name",
        json={"name": "FOH"},
        headers={**web.headers(), "Origin": "http://evil.example"},
    )
    assert cross.status == 403
    form = await web.client.put(f"{U}/name", data="name=FOH", headers=web.headers())
    assert form.status == 415
    assert web.state.name == ""


async def test_login_cookie_flags_and_logout(web: Harness) -> None:
    response = await web.login()
    assert response.status == 200
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    session = await (await web.client.get("/api/v1/session")).json()
    assert session["logged_in"] is True and session["csrf_token"] == web.csrf
    logout = await web.client.post("/api/v1/logout", headers=web.headers())
    assert logout.status == 200
    session = await (await web.client.get("/api/v1/session")).json()
    assert session["logged_in"] is False
    assert (await web.put(f"{U}/name", {"name": "x"})).status == 401


async def test_login_attempts_are_rate_limited(web: Harness) -> None:
    statuses = [(await web.login("wrong-password")).status for _ in range(4)]
    assert statuses[:3] == [401, 401, 401]
    assert statuses[3] == 429
    limited = await web.login("wrong-password")
    assert limited.status == 429 and int(limited.headers["Retry-After"]) >= 1
    # Even the right password waits out the lock (no oracle for a guesser).
    assert (await web.login()).status == 429


async def test_a_login_flood_from_many_addresses_spares_a_fresh_one(web: Harness) -> None:
    # Loopback answers from any 127.0.0.0/8 source: 50 guessers, 3 wrong passwords each,
    # over real TCP connections, then the admin from an address of its own.
    url = web.client.make_url("/api/v1/login")

    async def attempt(source: str, password: str) -> int:
        connector = aiohttp.TCPConnector(local_addr=(source, 0))
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.post(url, json={"password": password}) as response,
        ):
            return response.status

    statuses = [
        [await attempt(f"127.0.1.{n}", "wrong-password") for _ in range(3)] for n in range(1, 51)
    ]
    assert all(first == 401 for first, *_ in statuses)  # every guesser got one guess …
    assert statuses[-1] == [401, 429, 429]  # … and once the flood shows, only one
    assert web.ctx.throttle.under_attack()
    assert await attempt("127.0.1.7", PASSWORD) == 429  # a guesser stays locked out
    assert await attempt("127.0.2.1", PASSWORD) == 200


async def test_no_password_set_means_read_only(web: Harness) -> None:
    assert web.ctx.passwords.path is not None
    web.ctx.passwords.path.unlink()
    response = await web.login()
    assert response.status == 403
    assert "smartpdu passwd" in (await response.json())["error"]["message"]


async def test_rename_unit_validated_and_saved(web: Harness) -> None:
    await web.login()
    too_long = await web.put(f"{U}/name", {"name": "x" * 33})
    assert too_long.status == 400
    control = await web.put(f"{U}/name", {"name": "FOH\u202eevil"})
    assert control.status == 400
    assert "control character" in (await control.json())["error"]["message"]
    not_text = await web.put(f"{U}/name", {"name": 7})
    assert not_text.status == 400
    extra = await web.put(f"{U}/name", {"name": "a", "admin": True})
    assert extra.status == 400
    ok = await web.put(f"{U}/name", {"name": "  Front of house  "})
    assert ok.status == 200
    assert await ok.json() == {"name": "Front of house", "display_name": "Front of house"}
    assert web.state.name == "Front of house"
    assert (await web.ctx.storage.load_settings()).unit_name == "Front of house"
    units = await (await web.client.get("/api/v1/units")).json()
    assert units[0]["name"] == "Front of house"
    cleared = await web.put(f"{U}/name", {"name": ""})
    assert (await cleared.json())["display_name"] == "smartPDU 1"


async def test_channel_label_is_stored_as_text(web: Harness) -> None:
    await web.login()
    response = await web.put(f"{U}/channels/b7/label", {"label": XSS})
    assert response.status == 200
    assert (await response.json())["label"] == XSS
    assert (await web.ctx.storage.load_settings()).labels == {"B7": XSS}
    assert web.state.snapshot().channel("B7").label == XSS


@pytest.mark.parametrize(
    "body",
    [
        {"min_a": 5, "max_a": 2},
        {"min_a": -1, "max_a": 2},
        {"min_a": 0, "max_a": 63.5},
        {"min_a": "1", "max_a": 2},
        {"min_a": True, "max_a": 2},
        {"max_a": 2},
        {"min_a": 1, "max_a": 2, "enabled": "yes"},
        {"min_a": 1, "max_a": 2, "dwell_s": -1},
        {"min_a": 1, "max_a": 2, "colour": "red"},
        {"min_a": 5, "max_a": 5.2, "hysteresis_a": 0.5},  # a margin wider than the range
    ],
)
async def test_supervision_range_is_validated(web: Harness, body: dict[str, Any]) -> None:
    await web.login()
    response = await web.put(f"{U}/channels/A1/supervision", body)
    assert response.status == 400, body
    assert web.state.supervision_of("A1").enabled is False


async def test_supervision_rejects_nan(web: Harness) -> None:
    await web.login()
    response = await web.client.put(
        f"{U}/channels/A1/supervision",
        data='{"min_a": NaN, "max_a": 2}',
        headers={**web.headers(), "Content-Type": "application/json"},
    )
    assert response.status == 400


async def test_supervision_raises_the_triangle(web: Harness) -> None:
    await web.login()
    response = await web.put(f"{U}/channels/A3/supervision", {"min_a": 1, "max_a": 10})
    assert response.status == 200
    body = await response.json()
    assert body["supervision"]["settings"]["enabled"] is True
    assert body["supervision"]["settings"]["max_a"] == 10
    saved = (await web.ctx.storage.load_settings()).supervision["A3"]
    assert (saved.min_a, saved.max_a, saved.enabled) == (1.0, 10.0, True)
    feed(web.state, 1, [0.0, 0.0, 12.0] + [0.0] * 9)
    feed(web.state, 1, [0.0, 0.0, 12.0] + [0.0] * 9)  # dwell 0: the next report raises it
    units = await (await web.client.get("/api/v1/units")).json()
    assert units[0]["warning"] is True
    feed(web.state, 1, [0.0, 0.0, 5.0] + [0.0] * 9)
    units = await (await web.client.get("/api/v1/units")).json()
    assert units[0]["warning"] is False
    off = await web.put(f"{U}/channels/A3/supervision", {"enabled": False})
    assert off.status == 200
    assert web.state.supervision_of("A3").enabled is False


async def test_no_endpoint_can_switch_anything(web: Harness) -> None:
    """R7: the only writes are settings, the session, a virtual panel press and the front
    panel's RESET (which restarts this web server, nothing else)."""
    writes = sorted(
        (route.method, route.resource.canonical)
        for route in web.client.app.router.routes()  # type: ignore[union-attr]
        if route.method not in ("GET", "HEAD") and route.resource is not None
    )
    assert writes == [
        ("POST", "/api/v1/frontpanel/reset"),
        ("POST", "/api/v1/login"),
        ("POST", "/api/v1/logout"),
        ("POST", "/api/v1/units/{unit_id}/groups/{group}/panel/press"),
        ("PUT", "/api/v1/units/{unit_id}/channels/{channel_id}/label"),
        ("PUT", "/api/v1/units/{unit_id}/channels/{channel_id}/supervision"),
        ("PUT", "/api/v1/units/{unit_id}/name"),
    ]


async def test_virtual_panel_read_and_press(web: Harness) -> None:
    panel = await (await web.client.get(f"{U}/groups/A/panel")).json()
    assert panel["display"] == " 7.3" and panel["selected"] == 12
    assert panel["leds"][0] == "#00a000"
    assert (await web.client.get(f"{U}/groups/B/panel")).status == 404
    await web.login()
    bad = await web.client.post(
        f"{U}/groups/A/panel/press", json={"button": 13}, headers=web.headers()
    )
    assert bad.status == 400
    ok = await web.client.post(
        f"{U}/groups/A/panel/press", json={"button": 4}, headers=web.headers()
    )
    assert ok.status == 202
    assert web.panel.presses == [(4, 120)]


# ----------------------------------------------------------------------------- history, events


async def test_events_and_black_box(web: Harness) -> None:
    storage = web.ctx.storage
    event = Event(1.7e9, EventKind.BREAKER_TRIPPED, Severity.ALARM, UNIT, None, None, "tripped")
    box = {"window_s": 30.0, "groups": {"A": [[1.7e9, [1.0] * 12, ["ok"] * 12]]}, "meter": []}
    event_id = await storage.append_event(event, box)
    other = await storage.append_event(
        Event(1.7e9 + 1, EventKind.BOARD_ONLINE, Severity.INFO, UNIT, "A", None, "online")
    )
    listed = (await (await web.client.get(f"{U}/events")).json())["events"]
    assert [e["id"] for e in listed] == [other, event_id]
    assert listed[1]["has_black_box"] is True and listed[0]["has_black_box"] is False
    only = await (await web.client.get(f"{U}/events?kind=breaker.tripped")).json()
    assert [e["id"] for e in only["events"]] == [event_id]
    got = await (await web.client.get(f"{U}/events/{event_id}/black-box")).json()
    assert got["event_id"] == event_id and got["groups"]["A"][0][1] == [1.0] * 12
    assert (await web.client.get(f"{U}/events/{other}/black-box")).status == 404
    assert (await web.client.get(f"{U}/events?limit=0")).status == 400
    assert (await web.client.get(f"{U}/events?kind=<script>")).status == 400


async def test_history_of_a_channel(web: Harness) -> None:
    import time

    storage = web.ctx.storage
    now = int(time.time())
    for t in range(now - 1200, now):
        storage.add_history(t, {"A1": 3.0 + (t % 2), "sum.L1": 10.0})
    await storage.flush()
    data = await (await web.client.get(f"{U}/history?series=A1&range=hour&max_points=100")).json()
    assert data["resolution"] == "seconds"
    assert 30 <= len(data["points"]) <= 101  # 1200 s of data in 36 s buckets
    t, lo, avg, hi = data["points"][0]
    assert lo == 3.0 and hi == 4.0 and 3.0 <= avg <= 4.0
    names = (await (await web.client.get(f"{U}/history/series")).json())["series"]
    assert "A1" in names and "sum.L1" in names
    for bad in ("series=Z9", "series=A1&range=week", "series=A1&start=5&end=1"):
        assert (await web.client.get(f"{U}/history?{bad}")).status == 400, bad
    # A time that is no number gets the same message as one out of range (was "a number").
    for bad in ("start=soon", "start=-1", "end=inf"):
        response = await web.client.get(f"{U}/history?series=A1&{bad}")
        assert response.status == 400, bad
        key = bad.split("=")[0]
        message = (await response.json())["error"]["message"]
        assert message == f"'{key}' must be seconds since the epoch", bad
    # Well formed but not this unit's: a 36 has no group D, the meter no 'bogus'.
    for unknown in ("D1", "meter.bogus"):
        response = await web.client.get(f"{U}/history?series={unknown}&range=hour")
        assert response.status == 404, unknown
        assert unknown in (await response.json())["error"]["message"]
    # One of its own outputs that never carried a load: no points, not an error.
    empty = await web.client.get(f"{U}/history?series=B12&range=hour")
    assert empty.status == 200 and (await empty.json())["points"] == []
    assert (await web.client.get(f"{U}/history?series=meter.frequency&range=hour")).status == 200


# ----------------------------------------------------------------------------- read_open off


async def test_read_closed_needs_login(closed_web: Harness) -> None:
    web = closed_web
    assert (await web.client.get("/api/v1/units")).status == 401
    assert (await web.client.get(f"{U}/view")).status == 401
    assert (await web.client.get("/")).status == 200  # the login page itself
    assert (await web.client.get("/api/v1/session")).status == 200
    with pytest.raises(Exception):  # noqa: B017 - the upgrade is refused with 401
        await web.client.ws_connect("/api/v1/ws")
    await web.login()
    assert (await web.client.get("/api/v1/units")).status == 200


# ----------------------------------------------------------------------------- live


async def _next_json(ws: Any, timeout: float = 3.0) -> dict[str, Any]:
    message = await ws.receive(timeout=timeout)
    assert message.type is WSMsgType.TEXT, message
    return json.loads(message.data)


async def test_websocket_full_then_patches(web: Harness) -> None:
    ws = await web.client.ws_connect("/api/v1/ws")
    first = await _next_json(ws)
    assert first["type"] == "full"
    view = first["view"]
    assert view["channels"]["B2"]["current_a"] == 0.0
    feed(web.state, 2, [0.0, 9.87] + [0.0] * 10)
    message: dict[str, Any] = {}
    for _ in range(20):
        message = await _next_json(ws)
        assert message["type"] == "patch" and message["seq"] > first["seq"]
        view = apply_patch(view, message["patch"])
        if view["channels"]["B2"]["current_a"] == 9.87:
            break
    assert view["channels"]["B2"]["current_a"] == 9.87
    patch_size = len(json.dumps(message["patch"]))
    assert patch_size < len(json.dumps(view)) / 5  # a patch is much smaller than a view
    # The merged view is what the REST view says (same source, same moment).
    rest = await (await web.client.get(f"{U}/view")).json()
    assert view["channels"] == rest["channels"]
    await ws.close()


async def test_cross_site_websocket_is_refused(web: Harness) -> None:
    with pytest.raises(Exception):  # noqa: B017 - 403 on the upgrade
        await web.client.ws_connect("/api/v1/ws", headers={"Origin": "http://evil.example"})


class StuckSocket:
    """A client whose socket never drains."""

    closed = False

    def __init__(self) -> None:
        self.sent = 0

    async def send_str(self, text: str) -> None:
        self.sent += 1
        await asyncio.Event().wait()

    async def close(self, code: int = 1000, message: bytes = b"") -> bool:
        self.closed = True
        return True


class QuickSocket:
    closed = False

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def send_str(self, text: str) -> None:
        self.messages.append(json.loads(text))

    async def close(self, code: int = 1000, message: bytes = b"") -> bool:
        self.closed = True
        return True


async def test_a_stuck_client_does_not_hold_up_the_others() -> None:
    state = make_state()
    hub = LiveHub(state, UnitDirectory(1), min_interval_s=0.0)
    stuck_ws, quick_ws = StuckSocket(), QuickSocket()
    stuck = hub.add(stuck_ws)  # type: ignore[arg-type]
    quick = hub.add(quick_ws)  # type: ignore[arg-type]
    tasks = [asyncio.create_task(c.run()) for c in (stuck, quick)]
    view: dict[str, Any] = {}
    try:
        for i in range(1, 30):
            feed(state, 1, [i / 10] + [0.0] * 11)
            hub.publish()
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        await asyncio.sleep(0.05)
        assert stuck_ws.sent == 1  # still blocked on its first frame
        assert quick_ws.messages[0]["type"] == "full"
        view = quick_ws.messages[0]["view"]
        for message in quick_ws.messages[1:]:
            view = apply_patch(view, message["patch"])
        assert view["channels"]["A1"]["current_a"] == 2.9
        assert hub.frame is not None and hub.frame.seq >= 29
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_lagging_client_gets_one_combined_patch() -> None:
    state = make_state()
    hub = LiveHub(state, UnitDirectory(1), min_interval_s=0.0)
    ws = QuickSocket()
    client = LiveClient(ws, hub)  # type: ignore[arg-type]
    hub.clients.add(client)
    feed(state, 1, [1.0] + [0.0] * 11)
    hub.publish()
    client.wake.set()
    task = asyncio.create_task(client.run())
    await asyncio.sleep(0.01)
    for amps in (2.0, 3.0, 4.0):  # three frames while the client is not scheduled
        feed(state, 1, [amps] + [0.0] * 11)
        hub.publish()
    await asyncio.sleep(0.01)
    task.cancel()
    assert [m["type"] for m in ws.messages] == ["full", "patch"]
    view = apply_patch(ws.messages[0]["view"], ws.messages[1]["patch"])
    assert view["channels"]["A1"]["current_a"] == 4.0
    assert hub.stats.lagging_sends == 1


# ----------------------------------------------------------------------------- pure parts

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from("abcde"), children, max_size=4)
    ),
    max_leaves=20,
)
views = st.dictionaries(st.sampled_from("abcdef"), json_values, max_size=5)


@settings(max_examples=200, deadline=None)
@given(old=views, new=views)
def test_merge_patch_round_trip(old: dict[str, Any], new: dict[str, Any]) -> None:
    assert apply_patch(old, merge_diff(old, new)) == new


def test_panel_view_finds_the_blue_button() -> None:
    view = panel_view(PanelState([(0, 0, 0)] * 4 + [(0, 0, 160)] + [(160, 0, 0)] * 7, "12.0"))
    assert view is not None
    assert view.selected == 5 and view.leds[5] == "#a00000" and view.display == "12.0"
    assert panel_view(object()) is None


def test_passwd_writes_a_private_salted_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    target = tmp_path / "sub" / "admin-password"
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse\n"))
    assert passwd_main(["--file", str(target), "--password-stdin"]) == 0
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    line = target.read_text().strip()
    assert line.startswith("scrypt$") and "correct horse" not in line
    assert verify_password("correct horse", line)
    assert not verify_password("correct horsf", line)
    # The same password hashes differently each time (salted).
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse\n"))
    assert passwd_main(["--file", str(target), "--password-stdin"]) == 0
    assert target.read_text().strip() != line
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert passwd_main(["--file", str(target), "--password-stdin"]) == 1
    assert "at least" in capsys.readouterr().err
    assert [p.name for p in target.parent.iterdir()] == ["admin-password"]  # no temp left


def test_hub_serves_the_app_key(tmp_path: Path) -> None:
    ctx = WebContext(config=default_config(), state=make_state(), storage=None)  # type: ignore[arg-type]
    app = create_app(ctx)
    assert isinstance(app[HUB], LiveHub)
