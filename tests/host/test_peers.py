"""host.peers in one process: the signed envelope, its strict schema, replay protection, and
units exchanging over real HTTP on loopback (mDNS off; the namespace test covers mDNS)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from host.config import PeersConfig
from host.peers.directory import PeerDirectory
from host.peers.envelope import (
    EXCHANGE_PATH,
    MAX_BODY_BYTES,
    STATUS_PATH,
    ExchangeError,
    LocalStatus,
    SiteKey,
    UnitSummary,
    canonical_json,
    decode_envelope,
    encode_envelope,
    static_url,
    valid_url,
)
from host.peers.exchange import PeerUnavailable
from host.peers.settings import PeerSettings
from host.storage.store import Storage
from host.web.peers_routes import add_routes as setup_routes
from host.web.units import UNIT_FIELDS

KEY = "site-key-0123456789abcdef"
FAST = PeerSettings(
    exchange_s=0.2, offline_after_s=1.0, forget_after_s=3.0, retry_s=0.5, mdns=False
)


def summary(uid: str, l1: float | None = 10.0, **changes: Any) -> UnitSummary:
    base = UnitSummary(
        id=uid,
        name="",
        model=36,
        urls=("http://10.0.0.7:8080/",),
        l1=l1,
        l2=2.0,
        l3=3.0,
        n=0.5,
        source="meter",
        warning=False,
        tripped=False,
        online=True,
        alarms=0,
    )
    return replace(base, **changes)


def request_body(
    key: SiteKey,
    sender: str = "smartPDU0000B1",
    units: Sequence[tuple[UnitSummary, float]] | None = None,
    ts: float | None = None,
    nonce: str | None = None,
) -> bytes:
    body, _ = encode_envelope(
        key,
        "request",
        sender,
        units if units is not None else [(summary(sender), 0.0)],
        ts=time.time() if ts is None else ts,
        nonce=nonce,
    )
    return body


def resign(key: SiteKey, obj: dict[str, Any]) -> bytes:
    """``obj`` (an envelope without "sig") signed with the right key: only the schema can
    refuse it."""
    return canonical_json({**obj, "sig": key.sign(obj)})


def directory(unit_id: str = "smartPDU0000A1", **kwargs: Any) -> PeerDirectory:
    kwargs.setdefault("settings", FAST)
    kwargs.setdefault("addresses", ["127.0.0.1"])
    return PeerDirectory(
        unit_id,
        site_key=kwargs.pop("site_key", KEY),
        web_port=kwargs.pop("web_port", 9),
        local=kwargs.pop("local", lambda: LocalStatus(l1=1.0, l2=2.0, l3=3.0, online=True)),
        **kwargs,
    )


async def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


# ----------------------------------------------------------------------------- the envelope


def test_envelope_round_trip() -> None:
    key = SiteKey(KEY)
    units = [(summary("smartPDU0000B1"), 0.0), (summary("smartPDU0000C1", l1=None), 1.25)]
    body, nonce = encode_envelope(key, "response", "smartPDU0000B1", units, ts=1e9, echo="a" * 32)
    envelope = decode_envelope(key, body)
    assert envelope.kind == "response" and envelope.echo == "a" * 32 and envelope.nonce == nonce
    assert envelope.units == tuple(units)
    assert body == canonical_json(json.loads(body))  # what is sent is canonical


def test_every_field_is_covered_by_the_signature() -> None:
    key = SiteKey(KEY)
    signed = json.loads(request_body(key))
    tampered = [
        {"ts": signed["ts"] + 1},
        {"nonce": "0" * 32},
        {"from": "smartPDU0000ZZ"},
        {"units": [{**signed["units"][0], "l1": 99.0}]},
        {"units": [{**signed["units"][0], "tripped": True}]},
        {"units": [{**signed["units"][0], "urls": ["http://10.0.0.66:8080/"]}]},
    ]
    for change in tampered:
        with pytest.raises(ExchangeError) as caught:
            decode_envelope(key, canonical_json({**signed, **change}))
        assert caught.value.reason == "signature", change
    with pytest.raises(ExchangeError) as caught:
        decode_envelope(SiteKey("another-site-key-0123456789"), canonical_json(signed))
    assert caught.value.reason == "signature"
    del signed["sig"]
    with pytest.raises(ExchangeError) as caught:
        decode_envelope(key, canonical_json(signed))
    assert caught.value.reason == "unsigned"


def test_an_open_exchange_still_has_integrity_but_is_marked_open() -> None:
    open_key, site = SiteKey(""), SiteKey(KEY)
    assert not open_key.authenticated and site.authenticated
    assert open_key.tag != site.tag
    with pytest.raises(ExchangeError):
        decode_envelope(site, request_body(open_key))


def _valid_unit() -> dict[str, Any]:
    return summary("smartPDU0000B1").to_wire(0.0)


def _valid_envelope(**units_change: Any) -> dict[str, Any]:
    return {
        "v": 1,
        "kind": "request",
        "from": "smartPDU0000B1",
        "ts": time.time(),
        "nonce": "ab" * 16,
        "units": [{**_valid_unit(), **units_change}],
    }


BAD_UNIT_FIELDS: list[tuple[str, object]] = [
    ("name", "x" * 33),
    ("name", "evil\u202eeman"),  # bidi override
    ("name", "line\nbreak"),
    ("name", " padded"),  # not what validate_label keeps
    ("name", 12),
    ("model", 40),
    ("model", 36.0),
    ("model", True),
    ("urls", ["javascript:alert(1)"]),
    ("urls", ["http://10.0.0.1:8080/admin"]),
    ("urls", ["http://999.1.1.1:8080/"]),
    ("urls", ["http://10.0.0.1:70000/"]),
    ("urls", ["https://10.0.0.1:8080/"]),
    ("urls", ["http://a b:80/"]),
    ("urls", ["http://10.0.0.1:80/"] * 2),
    ("urls", [f"http://10.0.0.{i}:80/" for i in range(5)]),
    ("urls", "http://10.0.0.1:80/"),
    ("l1", -1.0),
    ("l1", 1e9),
    ("l1", True),
    ("l1", "12"),
    ("l1", 10**400),
    ("n", [1.0]),
    ("source", "guess"),
    ("warning", 1),
    ("tripped", "no"),
    ("online", None),
    ("alarms", -1),
    ("alarms", 1.5),
    ("age_s", 1.0),  # the sender itself is age 0
    ("id", "smartPDU0000B1<"),
    ("extra", 1),
]


@pytest.mark.parametrize(("field", "value"), BAD_UNIT_FIELDS)
def test_a_signed_envelope_out_of_schema_is_refused_whole(field: str, value: object) -> None:
    key = SiteKey(KEY)
    envelope = _valid_envelope(**{field: value})
    with pytest.raises(ExchangeError) as caught:
        decode_envelope(key, resign(key, envelope))
    assert caught.value.reason == "malformed", caught.value


BAD_ENVELOPES: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
    ("version 2", lambda e: e.update(v=2)),
    ("version true", lambda e: e.update(v=True)),
    ("kind", lambda e: e.update(kind="push")),
    ("from", lambda e: e.update({"from": "someone"})),
    ("ts string", lambda e: e.update(ts="now")),
    ("ts negative", lambda e: e.update(ts=-1)),
    ("nonce", lambda e: e.update(nonce="xyz")),
    ("no units", lambda e: e.update(units=[])),
    ("units not list", lambda e: e.update(units={})),
    ("sender not first", lambda e: e["units"].insert(0, summary("smartPDU0000C1").to_wire(0))),
    ("twice", lambda e: e["units"].append(e["units"][0])),
    ("too many", lambda e: e["units"].extend(
        summary(f"smartPDU{i:06X}").to_wire(1) for i in range(100))),
    ("extra key", lambda e: e.update(extra=1)),
    ("echo in a request", lambda e: e.update(echo="ab" * 16)),
]  # fmt: skip


@pytest.mark.parametrize(("what", "change"), BAD_ENVELOPES, ids=[b[0] for b in BAD_ENVELOPES])
def test_a_signed_envelope_with_a_bad_header_is_refused(
    what: str, change: Callable[[dict[str, Any]], None]
) -> None:
    key = SiteKey(KEY)
    envelope = _valid_envelope()
    change(envelope)
    with pytest.raises(ExchangeError) as caught:
        decode_envelope(key, resign(key, envelope))
    assert caught.value.reason in ("malformed", "oversize"), what


RAW_BODIES = [
    b"",
    b"not json",
    b"\xff\xfe\x00",
    b"[1, 2, 3]",
    b"null",
    b'{"v": 1, "ts": NaN}',
    b'{"v": 1, "v": 1}',
    b"[" * 100_000,
    b'{"kind": "request"}',
    b'{"kind": "request", "sig": 5}',
    b"1" * 5000,
]


@pytest.mark.parametrize("body", RAW_BODIES, ids=range(len(RAW_BODIES)))
def test_garbage_is_an_exchange_error_never_a_crash(body: bytes) -> None:
    with pytest.raises(ExchangeError):
        decode_envelope(SiteKey(KEY), body)


def test_urls_and_static_entries() -> None:
    assert valid_url("http://10.77.0.1:8080/") == "http://10.77.0.1:8080/"
    assert valid_url("http://smartPDU0A1B2C.local:8080/") is not None
    assert valid_url("http://[fe80::1]:8080/") is not None
    assert valid_url("http://[zz::1]:8080/") is None
    assert valid_url("http://10.0.0.1:8080/x") is None
    assert valid_url("http://-bad:80/") is None
    assert static_url("10.0.0.5:8080") == "http://10.0.0.5:8080/"
    assert static_url("fe80::1:8080") == "http://[fe80::1]:8080/"
    assert static_url("nonsense") is None


def test_local_status_from_a_pane_a_row_is_always_in_schema() -> None:
    row = {
        "custom_name": "Stage\nleft",
        "model": 99,
        "l1": float("nan"),
        "l2": -3,
        "l3": 12.3456,
        "n": None,
        "source": "x",
        "warning": 1,
        "tripped": True,
        "online": True,
        "alarms": True,
    }
    status = LocalStatus.from_row(row)
    assert status == LocalStatus(
        name="", model=36, l1=None, l2=None, l3=12.346, n=None, source="none",
        warning=False, tripped=True, online=True, alarms=0,
    )  # fmt: skip


def test_settings_from_config() -> None:
    config = PeersConfig(announce_s=7.0, static=("10.0.0.5:8080",))
    settings = PeerSettings.from_config(config, offline_after_s=6.0)
    assert settings.retry_s == 7.0 and settings.static == ("10.0.0.5:8080",)
    assert settings.offline_after_s == 6.0 and settings.exchange_s == 1.0
    assert settings.mdns is True
    assert PeerSettings.from_config(PeersConfig(mdns=False)).mdns is False


# ----------------------------------------------------------------------------- serving


async def test_forgeries_are_counted_and_never_reach_the_list() -> None:
    d = directory()
    key, wrong = SiteKey(KEY), SiteKey("not-the-site-key-0123456789")
    statuses = [
        (await d.handle_exchange(request_body(wrong)))[0],
        (await d.handle_exchange(b"junk"))[0],
        (await d.handle_exchange(resign(key, _valid_envelope(name="<b>" * 20))))[0],
        (await d.handle_exchange(canonical_json(_valid_envelope())))[0],
    ]
    assert statuses == [401, 400, 400, 401]
    assert d.units() == [] and d.rows() == []
    stats = d.stats
    assert stats["rejected_signature"] == 1 and stats["rejected_unsigned"] == 1
    assert stats["rejected_malformed"] == 2


async def test_a_request_is_taken_once_and_answered_with_a_signed_echo() -> None:
    d = directory()
    key = SiteKey(KEY)
    body = request_body(key, units=[(summary("smartPDU0000B1", l1=42.0), 0.0)])
    status, answer = await d.handle_exchange(body)
    assert status == 200
    response = decode_envelope(key, answer)
    assert response.kind == "response" and response.echo == json.loads(body)["nonce"]
    assert response.sender == d.unit_id
    (unit,) = d.units()
    assert (unit.id, unit.l1, unit.reachable, unit.via, unit.number) == (
        "smartPDU0000B1", 42.0, True, "direct", 2
    )  # fmt: skip
    status, _ = await d.handle_exchange(body)  # the same bytes again: a replay
    assert status == 409 and d.stats["rejected_replay"] == 1


async def test_a_request_outside_the_freshness_window_is_not_used() -> None:
    d = directory()
    key = SiteKey(KEY)
    old = request_body(key, units=[(summary("smartPDU0000B1"), 0.0)], ts=time.time() - 60)
    status, answer = await d.handle_exchange(old)
    assert status == 200  # answered (its sender learns us), but its data is not taken
    assert decode_envelope(key, answer).kind == "response"
    assert d.units() == [] and d.stats["requests_stale"] == 1


async def test_own_id_is_refused() -> None:
    d = directory("smartPDU0000A1")
    status, _ = await d.handle_exchange(request_body(SiteKey(KEY), sender="smartPDU0000A1"))
    assert status == 409 and d.stats["rejected_self"] == 1


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=2000),
        st.recursive(
            st.none()
            | st.booleans()
            | st.floats(allow_nan=False)
            | st.text(max_size=40)
            | st.integers(),
            lambda inner: (
                st.lists(inner, max_size=5)
                | st.dictionaries(
                    st.sampled_from(
                        ["v", "kind", "from", "ts", "nonce", "units", "sig", "echo", "id", "l1"]
                    ),
                    inner,
                    max_size=8,
                )
            ),
            max_leaves=30,
        ).map(lambda obj: json.dumps(obj).encode()),
    )
)
def test_fuzzed_bodies_never_raise_and_never_add_a_unit(body: bytes) -> None:  # fmt: skip
    d = directory()
    status, answer = asyncio.run(d.handle_exchange(body))
    assert 400 <= status < 500
    assert json.loads(answer)["error"]["status"] == status
    assert d.units() == [] and d.stats["internal_errors"] == 0


# ----------------------------------------------------------------------------- over HTTP


@dataclass
class Node:
    directory: PeerDirectory
    runner: web.AppRunner
    url: str
    status: LocalStatus  # what the unit says about itself; assign to change it

    async def stop(self) -> None:
        await self.directory.close()
        await self.runner.cleanup()


async def start_node(
    unit_id: str,
    *,
    static: Sequence[str] = (),
    l1: float = 10.0,
    site_key: str = KEY,
    wall: Callable[[], float] = time.time,
    numbering: Storage | None = None,
) -> Node:
    """A unit on 127.0.0.1 (a free port) serving the real exchange routes."""
    d = PeerDirectory(
        unit_id,
        site_key=site_key,
        web_port=0,
        local=lambda: node.status,
        numbering=numbering,
        settings=replace(FAST, static=tuple(static)),
        addresses=["127.0.0.1"],
        wall=wall,
    )
    app = web.Application()
    setup_routes(app, d)

    async def unit_part(request: web.Request) -> web.Response:
        return web.json_response({"unit_id": unit_id, "part": request.match_info.get("part")})

    app.router.add_get("/api/v1/units/{unit_id}/{part}", unit_part)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    d.web_port = int(runner.addresses[0][1])
    status = LocalStatus(l1=l1, l2=1.0, l3=2.0, n=0.1, source="meter", online=True)
    node = Node(d, runner, f"http://127.0.0.1:{d.web_port}/", status)
    await d.start()
    return node


@pytest.fixture
async def nodes() -> AsyncIterator[list[Node]]:
    started: list[Node] = []
    yield started
    for node in started:
        await node.stop()


def hostport(node: Node) -> str:
    return node.url.removeprefix("http://").rstrip("/")


def view(node: Node) -> dict[str, dict[str, Any]]:
    return {row["id"]: row for row in node.directory.rows()}


async def test_a_unit_that_sees_one_peer_learns_all_the_peers_it_knows(nodes: list[Node]) -> None:
    c = await start_node("smartPDU0000C1", l1=30.0)
    nodes.append(c)
    b = await start_node("smartPDU0000B1", l1=20.0, static=[hostport(c)])
    nodes.append(b)
    a = await start_node("smartPDU0000A1", l1=10.0, static=[hostport(b)])
    nodes.append(a)
    everyone = {n.directory.unit_id for n in nodes}

    def full() -> bool:
        return all(
            {u for u, r in view(n).items() if r["online"]} == everyone - {n.directory.unit_id}
            for n in nodes
        )

    await wait_for(full, 5.0, "every unit lists every other")
    rows = view(a)
    assert rows["smartPDU0000C1"]["l1"] == 30.0 and rows["smartPDU0000B1"]["l1"] == 20.0
    # C never heard of A from config: it learnt A's address from B and now talks to it.
    await wait_for(lambda: view(c)["smartPDU0000A1"]["via"] == "direct", 3.0, "C talks to A")
    assert view(c)["smartPDU0000A1"]["url"] == a.url
    for row in rows.values():
        assert set(UNIT_FIELDS) <= set(row)

    # Summaries refresh: a change on C shows on A within a couple of exchanges.
    c.status = LocalStatus(l1=31.5, online=True, warning=True)
    await wait_for(lambda: view(a)["smartPDU0000C1"]["l1"] == 31.5, 3.0, "C's new L1 on A")
    assert view(a)["smartPDU0000C1"]["warning"] is True

    # Panes B-D: a peer's own document, fetched from the peer.
    assert await a.directory.fetch_unit("smartPDU0000C1") == {
        "unit_id": "smartPDU0000C1",
        "part": "view",
    }
    with pytest.raises(KeyError):
        await a.directory.fetch_unit("smartPDU000000")
    with pytest.raises(ValueError):
        await a.directory.fetch_unit("smartPDU0000C1", "../../etc")

    # No master: B (the only link A was configured with) leaves; A and C keep each other.
    await b.stop()
    nodes.remove(b)
    await wait_for(
        lambda: not view(a)["smartPDU0000B1"]["online"] and not view(c)["smartPDU0000B1"]["online"],
        5.0,
        "B offline on A and C",
    )
    assert view(a)["smartPDU0000B1"]["l1"] is None  # no stale figures shown as live
    assert view(a)["smartPDU0000C1"]["online"] and view(c)["smartPDU0000A1"]["online"]
    with pytest.raises(PeerUnavailable):
        await a.directory.fetch_unit("smartPDU0000B1")
    # ... and is dropped after forget_after_s.
    await wait_for(lambda: "smartPDU0000B1" not in view(a), 5.0, "B forgotten on A")
    assert view(a)["smartPDU0000C1"]["online"]


async def test_a_wrong_site_key_never_joins(nodes: list[Node]) -> None:
    a = await start_node("smartPDU0000A1")
    nodes.append(a)
    rogue = await start_node(
        "smartPDU0000EE", site_key="not-the-site-key-0123", static=[hostport(a)]
    )
    nodes.append(rogue)
    await wait_for(lambda: a.directory.stats["rejected_signature"] >= 3, 5.0, "rogue refused")
    assert view(a) == {} and view(rogue) == {}


async def test_units_whose_clocks_disagree_still_exchange(nodes: list[Node]) -> None:
    # A Pi without network time can be hours off: freshness is judged on the sender's clock
    # as measured by answers to our own requests, not on ours.
    a = await start_node("smartPDU0000A1", l1=1.0)
    nodes.append(a)
    b = await start_node(
        "smartPDU0000B1", l1=2.0, static=[hostport(a)], wall=lambda: time.time() + 7200
    )
    nodes.append(b)
    a_dir = a.directory
    await wait_for(lambda: "smartPDU0000B1" in view(a), 5.0, "B's pushes accepted by A")
    assert a_dir.stats["requests_stale"] >= 1  # before A had measured B's clock
    stale = a_dir.stats["requests_stale"]
    await asyncio.sleep(1.0)
    assert a_dir.stats["requests_stale"] == stale and view(a)["smartPDU0000B1"]["online"]
    assert view(b)["smartPDU0000A1"]["online"]


async def test_numbers_follow_detection_order_and_survive_a_restart(
    nodes: list[Node], tmp_path: Path
) -> None:
    c = await start_node("smartPDU0000C1")
    b = await start_node("smartPDU0000B1", static=[hostport(c)])
    nodes.extend([b, c])
    await wait_for(lambda: "smartPDU0000B1" in view(c), 3.0, "B and C know each other")
    db = tmp_path / "a.db"

    async def numbers(static: Sequence[str]) -> dict[str, int | None]:
        storage = await Storage.open(db)
        a = await start_node("smartPDU0000A1", static=static, numbering=storage)
        try:
            await wait_for(lambda: len(view(a)) == 2, 5.0, "A sees B and C")
            assert a.directory.number == 1
            return {uid: row["number"] for uid, row in view(a).items()}
        finally:
            await a.stop()
            await storage.close()

    first = await numbers([hostport(b)])  # B first; C learnt through B
    assert first == {"smartPDU0000B1": 2, "smartPDU0000C1": 3}
    second = await numbers([hostport(c)])  # after a restart C is seen first: same numbers
    assert second == first


async def test_http_routes(nodes: list[Node]) -> None:
    a = await start_node("smartPDU0000A1")
    nodes.append(a)
    async with aiohttp.ClientSession() as session:
        big = b"{" + b" " * (MAX_BODY_BYTES + 10)
        async with session.post(a.url + EXCHANGE_PATH[1:], data=big) as response:
            assert response.status == 413
        async with session.post(a.url + EXCHANGE_PATH[1:], data=b"{}") as response:
            assert response.status == 400
            assert (await response.json())["error"]["status"] == 400
        async with session.get(a.url + STATUS_PATH[1:]) as response:
            status = await response.json()
    assert status["unit_id"] == "smartPDU0000A1" and status["authenticated"] is True
    assert status["stats"]["rejected_oversize"] == 1 and status["stats"]["rejected_malformed"] == 1


async def test_a_static_entry_pointing_at_itself_is_recognised(nodes: list[Node]) -> None:
    a = await start_node("smartPDU0000A1")
    nodes.append(a)
    # Its own advertised URLs are never contacted; another name for it is found out.
    a.directory._add_endpoint(a.url, "static", due=0.0)  # pyright: ignore[reportPrivateUsage]
    assert a.directory.status()["endpoints"] == []
    other_name = f"http://localhost:{a.directory.web_port}/"
    a.directory._add_endpoint(other_name, "static", due=0.0)  # pyright: ignore[reportPrivateUsage]
    await wait_for(
        lambda: any(e["self"] for e in a.directory.status()["endpoints"]), 3.0, "self found"
    )
    assert view(a) == {}


async def test_change_listeners_hear_arrivals_and_departures(nodes: list[Node]) -> None:
    b = await start_node("smartPDU0000B1")
    nodes.append(b)
    a = await start_node("smartPDU0000A1", static=[hostport(b)])
    nodes.append(a)
    calls: list[float] = []
    remove = a.directory.on_change(lambda: calls.append(time.monotonic()))
    await wait_for(lambda: bool(calls), 3.0, "arrival heard")
    await b.stop()
    nodes.remove(b)
    count = len(calls)
    await wait_for(lambda: len(calls) > count, 3.0, "departure heard")
    remove()


async def test_wiring_into_the_web_layer(nodes: list[Node]) -> None:
    """What the service does: the local status from pane A's own row of a real unit state,
    the rows as a UnitDirectory peer source, change notifications to its listeners."""
    from host.config import default_config
    from host.state import UnitState
    from host.web.units import UnitDirectory
    from host.web.view import unit_summary

    state = UnitState(default_config(unit={"id": "smartPDU0000A1", "model": 48}))
    local = LocalStatus.from_row(unit_summary(state.snapshot(), number=None, url=""))
    assert local.model == 48 and local.name == "" and local.source in ("meter", "channels", "none")

    b = await start_node("smartPDU0000B1", l1=20.0)
    nodes.append(b)
    a = await start_node("smartPDU0000A1", static=[hostport(b)])
    nodes.append(a)
    pane_a = UnitDirectory(number=1)
    pushed: list[int] = []
    pane_a.on_change(lambda: pushed.append(1))
    pane_a.add_source(a.directory.rows)
    a.directory.on_change(pane_a.changed)
    await wait_for(lambda: len(pane_a.peers("smartPDU0000A1")) == 1, 3.0, "B in pane A")
    (row,) = pane_a.peers("smartPDU0000A1")
    assert row["id"] == "smartPDU0000B1" and row["l1"] == 20.0 and row["local"] is False
    assert row["name"] == "smartPDU 2" and row["url"] == b.url and pushed


async def test_the_status_route_runs_the_guard(nodes: list[Node]) -> None:
    d = directory()
    app = web.Application()

    async def refuse(request: web.Request) -> None:
        raise web.HTTPUnauthorized()

    setup_routes(app, d, status_guard=refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}{STATUS_PATH}"
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            assert response.status == 401
    finally:
        await runner.cleanup()
