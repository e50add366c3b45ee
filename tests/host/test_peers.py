"""host.peers in one process: the signed statements, their strict schema, counters and
adoption, and units exchanging over real HTTP on loopback (mDNS off; the namespace tests
cover mDNS). The trust set's own unit tests are in ``test_peers_trust.py``."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from functools import cache
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
    Statement,
    UnitSummary,
    decode_envelope,
    encode_envelope,
    static_url,
    valid_url,
)
from host.peers.exchange import PeerUnavailable
from host.peers.identity import Identity, SiteKey, canonical_json
from host.peers.settings import PeerSettings
from host.storage.store import Storage
from host.web.peers_routes import add_routes as setup_routes
from host.web.units import UNIT_FIELDS

KEY = "site-key-0123456789abcdef"
FAST = PeerSettings(
    exchange_s=0.2, offline_after_s=1.0, forget_after_s=3.0, retry_s=0.5, mdns=False
)


@cache
def identity(uid: str) -> Identity:
    """One key pair per unit id for the whole module (as a unit's data folder keeps it)."""
    return Identity.generate()


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


def statement(uid: str, l1: float | None = 10.0, *, site: str = "", **changes: Any) -> Statement:
    """``uid``'s statement signed with its key (``site``: proving that site key)."""
    proof = SiteKey(site).proof(uid, identity(uid).public_hex)
    return Statement.sign(summary(uid, l1, **changes), identity(uid), proof)


def request_body(
    sender: str = "smartPDU0000B1",
    units: Sequence[tuple[Statement, float]] | None = None,
    *,
    trust: Sequence[dict[str, Any]] = (),
    nonce: str | None = None,
) -> bytes:
    units = units if units is not None else [(statement(sender), 0.0)]
    return encode_envelope("request", sender, units, trust, nonce=nonce)[0]


def resign(obj: dict[str, Any]) -> bytes:
    """``obj`` (an envelope) with every statement re-signed by its unit's key: only the
    schema can refuse it."""
    for entry in obj["units"]:
        unit = entry["unit"]
        uid = unit["id"] if isinstance(unit.get("id"), str) else "smartPDU0000B1"
        key = identity(uid)
        unit["key"] = key.public_hex
        entry["sig"] = key.sign(b"smartpdu-unit/2\n" + canonical_json(unit))
    return canonical_json(obj)


def directory(unit_id: str = "smartPDU0000A1", **kwargs: Any) -> PeerDirectory:
    kwargs.setdefault("settings", FAST)
    kwargs.setdefault("addresses", ["127.0.0.1"])
    return PeerDirectory(
        unit_id,
        site_key=kwargs.pop("site_key", ""),
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
    units = [(statement("smartPDU0000B1"), 0.0), (statement("smartPDU0000C1", l1=None), 1.25)]
    body, nonce = encode_envelope("response", "smartPDU0000B1", units, echo="a" * 32)
    envelope = decode_envelope(body)
    assert envelope.kind == "response" and envelope.echo == "a" * 32 and envelope.nonce == nonce
    assert envelope.units == tuple(units) and envelope.trust == ()
    assert all(s.verified() for s, _ in envelope.units)
    assert body == canonical_json(json.loads(body))  # what is sent is canonical


def test_every_field_of_a_statement_is_covered_by_its_signature() -> None:
    signed = json.loads(request_body())
    unit = signed["units"][0]["unit"]
    tampered = [
        {"l1": 99.0}, {"tripped": True}, {"alarms": 9}, {"urls": ["http://10.0.0.66:8080/"]},
        {"ctr": unit["ctr"] + 1}, {"key": identity("smartPDU0000C1").public_hex},
        {"site": "0" * 64}, {"name": "EVACUATE NOW"},
    ]  # fmt: skip
    for change in tampered:
        body = {**signed, "units": [{**signed["units"][0], "unit": {**unit, **change}}]}
        with pytest.raises(ExchangeError) as caught:
            decode_envelope(canonical_json(body))
        assert caught.value.reason == "signature", change
    unsigned = {**signed, "units": [{"unit": unit, "sig": "", "age_s": 0.0}]}
    with pytest.raises(ExchangeError) as caught:
        decode_envelope(canonical_json(unsigned))
    assert caught.value.reason == "unsigned"


def test_counters_grow_across_restarts_of_a_data_folder(tmp_path: Path) -> None:
    first = Identity.load(tmp_path)
    counters = [first.next_counter() for _ in range(3)]
    assert counters == sorted(set(counters))
    again = Identity.load(tmp_path)  # a restart: same key, a later epoch
    assert again.public_hex == first.public_hex and again.next_counter() > counters[-1]
    key_file = tmp_path / "peer-ed25519.key"
    assert key_file.stat().st_mode & 0o777 == 0o600 and len(key_file.read_bytes()) == 32
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically
    assert Identity.load(tmp_path / "other").public_hex != first.public_hex


def test_protocol_1_is_refused_as_an_old_version() -> None:
    old = {"v": 1, "kind": "request", "from": "smartPDU0000B1", "ts": time.time(),
           "nonce": "ab" * 16, "units": [], "sig": "0" * 64}  # fmt: skip
    with pytest.raises(ExchangeError) as caught:
        decode_envelope(canonical_json(old))
    assert caught.value.reason == "version"


def test_the_site_key_proof_binds_id_and_key() -> None:
    site, other = SiteKey(KEY), SiteKey("another-site-key-0123456789")
    key = identity("smartPDU0000B1").public_hex
    proof = site.proof("smartPDU0000B1", key)
    assert site.proves("smartPDU0000B1", key, proof)
    assert not other.proves("smartPDU0000B1", key, proof)
    assert not site.proves("smartPDU0000C1", key, proof)  # copied to another id
    assert not site.proves("smartPDU0000B1", identity("smartPDU0000C1").public_hex, proof)
    assert not SiteKey("").enabled and SiteKey("").proof("smartPDU0000B1", key) is None


def _valid_envelope(**unit_change: Any) -> dict[str, Any]:
    entry = statement("smartPDU0000B1").to_wire(0.0)
    age = unit_change.pop("age_s", 0.0)
    return {
        "v": 2,
        "kind": "request",
        "from": "smartPDU0000B1",
        "nonce": "ab" * 16,
        "units": [{**entry, "unit": {**entry["unit"], **unit_change}, "age_s": age}],
        "trust": [],
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
    ("ctr", 0),
    ("ctr", 2**53),
    ("ctr", 1.5),
    ("site", "proof"),
    ("extra", 1),
]


@pytest.mark.parametrize(("field", "value"), BAD_UNIT_FIELDS)
def test_a_signed_envelope_out_of_schema_is_refused_whole(field: str, value: object) -> None:
    envelope = _valid_envelope(**{field: value})
    with pytest.raises(ExchangeError) as caught:
        decode_envelope(resign(envelope))
    assert caught.value.reason == "malformed", caught.value


def _other(uid: str, age: float = 1.0) -> dict[str, Any]:
    return statement(uid).to_wire(age)


BAD_ENVELOPES: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
    ("version 3", lambda e: e.update(v=3)),
    ("version true", lambda e: e.update(v=True)),
    ("kind", lambda e: e.update(kind="push")),
    ("from", lambda e: e.update({"from": "someone"})),
    ("a ts", lambda e: e.update(ts=time.time())),
    ("nonce", lambda e: e.update(nonce="xyz")),
    ("no units", lambda e: e.update(units=[])),
    ("units not list", lambda e: e.update(units={})),
    ("sender not first", lambda e: e["units"].insert(0, _other("smartPDU0000C1", 0))),
    ("twice", lambda e: e["units"].append(e["units"][0])),
    ("too many", lambda e: e["units"].extend(_other(f"smartPDU{i:06X}") for i in range(100))),
    ("extra key", lambda e: e.update(extra=1)),
    ("echo in a request", lambda e: e.update(echo="ab" * 16)),
    ("trust not list", lambda e: e.update(trust={})),
    ("trust record", lambda e: e.update(trust=[{"op": "adopt"}])),
]  # fmt: skip


@pytest.mark.parametrize(("what", "change"), BAD_ENVELOPES, ids=[b[0] for b in BAD_ENVELOPES])
def test_a_signed_envelope_with_a_bad_header_is_refused(
    what: str, change: Callable[[dict[str, Any]], None]
) -> None:
    envelope = _valid_envelope()
    change(envelope)
    with pytest.raises(ExchangeError) as caught:
        decode_envelope(resign(envelope))
    assert caught.value.reason in ("malformed", "oversize", "version"), what


RAW_BODIES = [
    b"",
    b"not json",
    b"\xff\xfe\x00",
    b"[1, 2, 3]",
    b"null",
    b'{"v": 2, "ts": NaN}',
    b'{"v": 2, "v": 2}',
    b"[" * 100_000,
    b'{"v": 2, "kind": "request"}',
    b'{"v": 2, "kind": "request", "sig": 5}',
    b"1" * 5000,
]


@pytest.mark.parametrize("body", RAW_BODIES, ids=range(len(RAW_BODIES)))
def test_garbage_is_an_exchange_error_never_a_crash(body: bytes) -> None:
    with pytest.raises(ExchangeError):
        decode_envelope(body)


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
    forged = json.loads(request_body())
    forged["units"][0]["unit"]["l1"] = 999.0  # altered after signing
    statuses = [
        (await d.handle_exchange(canonical_json(forged)))[0],
        (await d.handle_exchange(b"junk"))[0],
        (await d.handle_exchange(resign(_valid_envelope(name="<b>" * 20))))[0],
        (await d.handle_exchange(canonical_json({**forged, "units": [
            {**forged["units"][0], "sig": "zz"}]})))[0],
    ]  # fmt: skip
    assert statuses == [401, 400, 400, 401]
    assert d.units() == [] and d.rows() == []
    stats = d.stats
    assert stats["rejected_signature"] == 1 and stats["rejected_unsigned"] == 1
    assert stats["rejected_malformed"] == 2


async def test_a_request_is_taken_once_and_answered_with_a_signed_echo() -> None:
    d = directory()
    body = request_body(units=[(statement("smartPDU0000B1", l1=42.0, alarms=3, tripped=True), 0.0)])
    status, answer = await d.handle_exchange(body)
    assert status == 200
    response = decode_envelope(answer)
    assert response.kind == "response" and response.echo == json.loads(body)["nonce"]
    assert response.sender == d.unit_id and response.own.key == d.identity.public_hex
    # Not adopted: listed as discovered, name and address only, nothing that can alarm.
    (unit,) = d.units()
    assert (unit.id, unit.trust, unit.l1, unit.tripped, unit.alarms, unit.online) == (
        "smartPDU0000B1", "discovered", None, False, 0, False
    )  # fmt: skip
    assert unit.fingerprint == identity("smartPDU0000B1").fingerprint and unit.number is None
    assert unit.url == "http://10.0.0.7:8080/"
    status, _ = await d.handle_exchange(body)  # the same bytes again: a replay
    assert status == 409 and d.stats["rejected_replay"] == 1
    await d.adopt("smartPDU0000B1", identity("smartPDU0000B1").fingerprint)
    (unit,) = d.units()
    assert (unit.trust, unit.l1, unit.tripped, unit.alarms, unit.number) == (
        "adopted", 42.0, True, 3, 2
    )  # fmt: skip
    with pytest.raises(ValueError):  # a key other than the one the admin saw
        await d.adopt("smartPDU0000B1", "0000-0000-0000-0000")
    await d.remove("smartPDU0000B1")
    assert d.units()[0].trust == "discovered" and d.units()[0].l1 is None
    with pytest.raises(KeyError):
        await d.remove("smartPDU0000B1")


async def test_old_counters_and_other_keys_for_an_adopted_id_are_dropped_and_counted() -> None:
    d = directory()
    first = request_body(units=[(statement("smartPDU0000B1", l1=1.0), 0.0)])
    newer = request_body(units=[(statement("smartPDU0000B1", l1=2.0), 0.0)])
    assert (await d.handle_exchange(newer))[0] == 200
    await d.adopt("smartPDU0000B1")
    assert (await d.handle_exchange(first))[0] == 409  # signed earlier: an old counter
    assert d.stats["rejected_replay"] == 1 and d.units()[0].l1 == 2.0
    # A rogue with its own key claiming B's id (in its own name, or relayed by it): dropped.
    rogue = Identity.generate()
    fake = Statement.sign(summary("smartPDU0000B1", 999.0), rogue, None)
    assert (await d.handle_exchange(request_body(units=[(fake, 0.0)])))[0] == 409
    relay = request_body("smartPDU0000EE", [(statement("smartPDU0000EE"), 0.0), (fake, 0.0)])
    assert (await d.handle_exchange(relay))[0] == 200
    assert d.stats["rejected_impostor"] == 1  # the relay of a unit not adopted is not read
    assert {u.id: u.l1 for u in d.units()} == {"smartPDU0000B1": 2.0, "smartPDU0000EE": None}
    # Relayed by an adopted unit: the newer statement is taken, a forged one is not.
    await d.adopt("smartPDU0000EE")
    later = statement("smartPDU0000B1", l1=3.0)
    relay = request_body("smartPDU0000EE", [(statement("smartPDU0000EE"), 0.0), (fake, 0.0)])
    assert (await d.handle_exchange(relay))[0] == 200
    assert d.stats["rejected_impostor"] == 2
    relay = request_body("smartPDU0000EE", [(statement("smartPDU0000EE"), 0.0), (later, 0.5)])
    await d.handle_exchange(relay)
    assert {u.id: u.l1 for u in d.units()}["smartPDU0000B1"] == 3.0


async def test_a_site_key_adopts_the_units_proving_it() -> None:
    d = directory(site_key=KEY)
    await d.handle_exchange(request_body(units=[(statement("smartPDU0000B1", site=KEY), 0.0)]))
    wrong = "another-site-key-0123456789"
    await d.handle_exchange(
        request_body("smartPDU0000C1", [(statement("smartPDU0000C1", site=wrong), 0.0)])
    )
    assert {u.id: (u.trust, u.l1) for u in d.units()} == {
        "smartPDU0000B1": ("adopted", 10.0), "smartPDU0000C1": ("discovered", None)
    }  # fmt: skip
    await d.remove("smartPDU0000B1")  # removed stays removed, site key or not
    await d.handle_exchange(request_body(units=[(statement("smartPDU0000B1", site=KEY), 0.0)]))
    assert d.units()[0].trust == "discovered"


async def test_own_id_is_refused() -> None:
    d = directory("smartPDU0000A1")
    status, _ = await d.handle_exchange(request_body(sender="smartPDU0000A1"))
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
                        ["v", "kind", "from", "nonce", "units", "trust", "echo", "unit", "id"]
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
    key: Identity | None = None,
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
        identity=key,
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


async def test_a_wrong_site_key_is_only_discovered(nodes: list[Node]) -> None:
    a = await start_node("smartPDU0000A1")
    nodes.append(a)
    rogue = await start_node(
        "smartPDU0000EE", site_key="not-the-site-key-0123", static=[hostport(a)]
    )
    nodes.append(rogue)
    await wait_for(lambda: "smartPDU0000EE" in view(a), 5.0, "the other site discovered")
    await asyncio.sleep(0.5)
    for row in (view(a)["smartPDU0000EE"], view(rogue)["smartPDU0000A1"]):
        assert row["trust"] == "discovered" and row["l1"] is None and row["online"] is False
        assert row["tripped"] is False and row["alarms"] == 0 and row["number"] is None


async def test_units_whose_clocks_disagree_still_exchange(nodes: list[Node]) -> None:
    # A Pi without network time can be hours off: replays are told by counters, not clocks.
    a = await start_node("smartPDU0000A1", l1=1.0)
    nodes.append(a)
    b = await start_node(
        "smartPDU0000B1", l1=2.0, static=[hostport(a)], wall=lambda: time.time() + 7200
    )
    nodes.append(b)
    await wait_for(lambda: "smartPDU0000B1" in view(a), 5.0, "B's pushes accepted by A")
    await wait_for(lambda: "smartPDU0000A1" in view(b), 5.0, "A's answers accepted by B")
    assert view(a)["smartPDU0000B1"]["online"] and view(b)["smartPDU0000A1"]["online"]
    assert a.directory.stats["rejected_replay"] == 0


async def test_one_adoption_spreads_and_a_new_unit_joins_the_site(nodes: list[Node]) -> None:
    """No site key: A and B adopted each other; C is new. Adopting C on A adopts it on B
    (A's record travels signed), and C, adopting nobody yet, joins: it adopts A and, through
    A's records, B. Removing C on B removes it on A."""
    a = await start_node("smartPDU0000A1", site_key="")
    b = await start_node("smartPDU0000B1", site_key="", static=[hostport(a)])
    nodes.extend([a, b])
    await wait_for(lambda: "smartPDU0000B1" in view(a), 3.0, "B discovered on A")
    await a.directory.adopt("smartPDU0000B1")
    await wait_for(lambda: view(b).get("smartPDU0000A1", {}).get("trust") == "adopted", 3.0,
                   "B joins A")  # fmt: skip
    c = await start_node("smartPDU0000C1", site_key="", l1=33.0, static=[hostport(a)])
    nodes.append(c)
    await wait_for(lambda: "smartPDU0000C1" in view(a), 3.0, "C discovered on A")
    assert view(a)["smartPDU0000C1"]["l1"] is None
    await a.directory.adopt("smartPDU0000C1", view(a)["smartPDU0000C1"]["fingerprint"])

    def everyone_adopted() -> bool:
        return all(
            len(view(n)) == 2
            and all(r["trust"] == "adopted" and r["online"] for r in view(n).values())
            for n in nodes
        )

    took = await wait_for(everyone_adopted, 5.0, "every unit adopted every other")
    assert took < 5.0 and view(b)["smartPDU0000C1"]["l1"] == 33.0
    await b.directory.remove("smartPDU0000C1")
    await wait_for(lambda: view(a)["smartPDU0000C1"]["trust"] == "discovered", 3.0,
                   "C removed on A too")  # fmt: skip
    assert view(a)["smartPDU0000C1"]["l1"] is None


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
        # Restarted with its key (a unit keeps it in its data folder): the same unit.
        a = await start_node(
            "smartPDU0000A1", static=static, numbering=storage, key=identity("smartPDU0000A1")
        )
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
    assert status["protocol"] == 2 and status["fingerprint"] == a.directory.identity.fingerprint
    assert status["stats"]["rejected_oversize"] == 1 and status["stats"]["rejected_version"] == 1


async def test_adopt_and_remove_routes_run_the_write_guard() -> None:
    d = directory()
    await d.handle_exchange(request_body())
    app = web.Application()

    async def admin(request: web.Request) -> None:
        if request.headers.get("X-Test-Admin") != "yes":
            raise web.HTTPForbidden()

    setup_routes(app, d, write_guard=admin)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}{STATUS_PATH}"
    fp = identity("smartPDU0000B1").fingerprint
    ok = {"X-Test-Admin": "yes"}
    try:
        async with aiohttp.ClientSession() as session:
            body = {"unit_id": "smartPDU0000B1", "fingerprint": fp}
            async with session.post(base + "/adopt", json=body) as response:
                assert response.status == 403 and d.units()[0].trust == "discovered"
            async with session.post(base + "/adopt", json={"unit_id": "x"}, headers=ok) as r:
                assert r.status == 400
            async with session.post(base + "/adopt", json={"unit_id": "smartPDU0000C9"},
                                    headers=ok) as r:  # fmt: skip
                assert r.status == 404
            async with session.post(base + "/adopt", json={**body, "fingerprint": "0"},
                                    headers=ok) as r:  # fmt: skip
                assert r.status == 409
            async with session.post(base + "/adopt", json=body, headers=ok) as r:
                assert r.status == 200 and (await r.json())["trust"] == "adopted"
            async with session.post(base + "/remove", json=body) as r:
                assert r.status == 403
            async with session.post(base + "/remove", json=body, headers=ok) as r:
                assert r.status == 200 and d.units()[0].trust == "discovered"
            async with session.post(base + "/remove", json=body, headers=ok) as r:
                assert r.status == 404
    finally:
        await runner.cleanup()


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


async def test_adopting_through_the_web_app_needs_the_admin_session() -> None:
    """Mounted by the web layer (no write guard given): its admin + CSRF check applies."""
    from host.config import default_config
    from host.web import WebContext, create_app
    from tests.host.test_web_api import UNIT, make_state

    d = directory(UNIT)
    await d.handle_exchange(request_body())
    context = WebContext(config=default_config(), state=make_state(), storage=None)  # type: ignore[arg-type]
    runner = web.AppRunner(create_app(context, d))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}{STATUS_PATH}"
    body = {"unit_id": "smartPDU0000B1"}
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(base + "/adopt", json=body) as response:
                assert response.status == 401
            cross = {"Origin": "http://evil.example"}
            async with session.post(base + "/adopt", json=body, headers=cross) as response:
                assert response.status == 403
            async with session.post(base + "/remove", json=body) as response:
                assert response.status == 401
    finally:
        await runner.cleanup()
    assert d.units()[0].trust == "discovered"
