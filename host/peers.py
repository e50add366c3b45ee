"""The smartPDUs of one LAN find each other and share what they know (R8, R9, pane A of R10).

Discovery — every unit advertises itself over mDNS (python-zeroconf) under its unique name
``smartPDUxxxxxx``: a ``_smartpdu._tcp`` service for its peers, an ``_http._tcp`` service
for browsers and LAN scanners, and the host name ``smartPDUxxxxxx.local`` (the services'
``server``) resolving to its addresses. It browses for the others' ``_smartpdu._tcp``
services; ``peers.static`` adds units mDNS cannot reach.

Exchange — every ``exchange_s`` (1 s) a unit POSTs to every unit it knows
``/api/v1/peers/exchange`` with an *envelope*: its own summary (L1/L2/L3/N, warning triangle,
tripped, name, model, URLs) and those of every unit it knows, each with its age. The answer
is the other unit's envelope. Both learn from both, so a unit that sees one peer learns all
the peers that peer knows (and their addresses, which it then contacts directly). There is
no master: every unit holds the whole list, any unit can leave.

Envelope (canonical JSON: sorted keys, no spaces, ASCII, no NaN)::

    {"v": 1, "kind": "request" | "response", "from": "smartPDU0A1B2C",
     "ts": 1764000000.25,            # the sender's wall clock
     "nonce": "<32 hex>",            # fresh per envelope
     "echo": "<32 hex>",             # responses only: the request's nonce
     "units": [                      # the sender first (age 0), then what it knows
        {"id": "smartPDU0A1B2C", "name": "", "model": 48,
         "urls": ["http://10.0.0.7:8080/"], "l1": 12.5, "l2": 3.0, "l3": 0.0, "n": null,
         "source": "meter", "warning": false, "tripped": false, "online": true,
         "alarms": 0, "age_s": 0.0}, ...],
     "sig": "<64 hex>"}              # HMAC-SHA256 over the canonical JSON without "sig"

Trust — the HMAC key is derived from the site key (``peers.site_key``): a host without it
can neither add a unit nor alter one. A request is accepted once (nonce) and only when its
``ts`` is within ``freshness_s`` of the sender's clock as this unit last measured it (Pis
without network time disagree about the time: the offset is learned from answers to this
unit's own requests, which echo its nonce and so cannot be replays). Every field is checked
against a strict schema (exact key sets, types, ranges, plain-text names of at most 32
characters, ``http://`` URLs of a literal address or host name only); anything else is
dropped whole, counted in :meth:`PeerDirectory.status` and never reaches the UI. With an
empty site key the exchange is open (a fixed key: integrity, no authentication).

Presence — a unit is *reachable* while its newest summary, direct or relayed, is younger
than ``offline_after_s``; shown offline after that, and forgotten after ``forget_after_s``.
mDNS goodbyes are not trusted (anyone can send one): presence is only ever proven by signed,
fresh data. Numbers follow detection order and survive restarts (``Storage.unit_number``).

Nothing here can switch or trip anything (R7): the exchange carries summaries only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import importlib.metadata
import ipaddress
import json
import logging
import math
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeGuard

import aiohttp
import ifaddr
from aiohttp import web
from zeroconf import (
    InterfaceChoice,
    IPVersion,
    NonUniqueNameException,
    ServiceStateChange,
    Zeroconf,
)
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from host.config import LABEL_MAX_CHARS, UNIT_ID_PATTERN, PeersConfig, validate_label

_LOG = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
SERVICE_TYPE = "_smartpdu._tcp.local."
HTTP_SERVICE_TYPE = "_http._tcp.local."
EXCHANGE_PATH = "/api/v1/peers/exchange"
STATUS_PATH = "/api/v1/peers"

MAX_BODY_BYTES = 128 * 1024  # an envelope of MAX_UNITS units is about 40 kB
MAX_VIEW_BYTES = 4 * 1024 * 1024  # a peer's full view fetched for panes B-D
MAX_UNITS = 100  # in one envelope, and known at once
MAX_URLS = 4
MAX_ENDPOINTS = 256
MAX_CURRENT_A = 10_000.0
MAX_AGE_S = 10_000_000.0
NONCE_CACHE_MAX = 20_000
REJECT_LOG_EVERY_S = 60.0
LOCAL_CACHE_S = 0.2  # the local status is taken at most this often for envelopes

_SIG_DOMAIN = b"smartpdu-peers/1\n"
_KEY_LABEL = b"smartPDU peer exchange v1"
_OPEN_SECRET = "smartPDU open peer exchange (no site key)"
_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9-]{1,63})*")
_URL = re.compile(r"http://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})/")
_VIEW_PART = re.compile(r"(?:[a-z][a-z0-9_-]{0,31})(?:/[a-z0-9_-]{1,32}){0,3}")
_UNIT_KEYS = frozenset(
    {
        "id", "name", "model", "urls", "l1", "l2", "l3", "n", "source",
        "warning", "tripped", "online", "alarms", "age_s",
    }
)  # fmt: skip
_ENVELOPE_KEYS = {
    "request": frozenset({"v", "kind", "from", "ts", "nonce", "units", "sig"}),
    "response": frozenset({"v", "kind", "from", "ts", "nonce", "echo", "units", "sig"}),
}
MODELS = (36, 48, 72)
SOURCES = ("meter", "channels", "none")

Kind = Literal["request", "response"]
Source = Literal["meter", "channels", "none"]


def app_version() -> str:
    try:
        return importlib.metadata.version("smartpdu")
    except importlib.metadata.PackageNotFoundError:
        return "0"


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class PeerSettings:
    """Timing and sources of the exchange; :meth:`from_config` maps ``[peers]``."""

    exchange_s: float = 1.0  # how often each known unit is contacted (summaries refresh)
    offline_after_s: float = 5.0  # no fresh summary this long: shown offline
    forget_after_s: float = 3600.0  # ... and dropped from the list after this
    retry_s: float = 5.0  # unreachable addresses are retried this often (backoff cap)
    freshness_s: float = 10.0  # a request's timestamp may be this far off (replay window)
    request_timeout_s: float = 2.0
    network_check_s: float = 1.0  # how often own addresses and cable links are looked at
    mdns: bool = True
    static: tuple[str, ...] = ()  # "host:port" of units mDNS cannot reach

    @classmethod
    def from_config(cls, config: PeersConfig, **overrides: Any) -> PeerSettings:
        settings = cls(retry_s=config.announce_s, static=config.static, mdns=config.mdns)
        for key in ("offline_after_s", "forget_after_s"):  # once PeersConfig has them
            value = getattr(config, key, None)
            if isinstance(value, int | float):
                overrides.setdefault(key, float(value))
        return cls(**{**settings.__dict__, **overrides})


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class LocalStatus:
    """What this unit says about itself; built from pane A's own row."""

    name: str = ""  # the user's name for the unit, "" = shown by its number
    model: int = 36
    l1: float | None = None
    l2: float | None = None
    l3: float | None = None
    n: float | None = None
    source: Source = "none"
    warning: bool = False
    tripped: bool = False
    online: bool = False  # boards or meter live
    alarms: int = 0

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> LocalStatus:
        """From ``host.web.view.unit_summary(...)``: out-of-schema values are dropped so that
        what goes out is always what peers accept."""

        def current(key: str) -> float | None:
            value = row.get(key)
            if not _is_number(value) or not 0.0 <= float(value) <= MAX_CURRENT_A:
                return None
            return round(float(value), 3)

        name = row.get("custom_name", "")
        try:
            name = validate_label(name) if isinstance(name, str) else ""
        except ValueError:
            name = ""
        model = row.get("model")
        source = row.get("source")
        alarms = row.get("alarms", 0)
        return cls(
            name=name,
            model=model if isinstance(model, int) and model in MODELS else 36,
            l1=current("l1"),
            l2=current("l2"),
            l3=current("l3"),
            n=current("n"),
            source=source if source in SOURCES else "none",  # pyright: ignore[reportArgumentType]
            warning=row.get("warning") is True,
            tripped=row.get("tripped") is True,
            online=row.get("online") is True,
            alarms=min(max(alarms, 0), 10_000) if type(alarms) is int else 0,
        )


@dataclass(frozen=True)
class UnitSummary:
    """One unit as it travels between units (validated)."""

    id: str
    name: str
    model: int
    urls: tuple[str, ...]
    l1: float | None
    l2: float | None
    l3: float | None
    n: float | None
    source: Source
    warning: bool
    tripped: bool
    online: bool
    alarms: int

    def to_wire(self, age_s: float) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "model": self.model, "urls": list(self.urls),
            "l1": self.l1, "l2": self.l2, "l3": self.l3, "n": self.n, "source": self.source,
            "warning": self.warning, "tripped": self.tripped, "online": self.online,
            "alarms": self.alarms, "age_s": round(max(0.0, age_s), 3),
        }  # fmt: skip


@dataclass(frozen=True)
class Envelope:
    kind: Kind
    sender: str
    ts: float
    nonce: str
    echo: str | None
    units: tuple[tuple[UnitSummary, float], ...]  # (summary, age_s)


@dataclass(frozen=True)
class PeerUnit:
    """A peer as pane A shows it (:meth:`to_row` is a ``GET /api/v1/units`` row)."""

    id: str
    name: str  # shown: the unit's own name, else "smartPDU <number>"
    custom_name: str
    number: int | None  # detection order on this unit
    model: int
    url: str | None  # its web interface
    l1: float | None  # None while it is not reachable: no stale figures in pane A
    l2: float | None
    l3: float | None
    n: float | None
    source: str
    warning: bool
    tripped: bool
    online: bool  # reachable and its boards or meter live
    reachable: bool  # a fresh signed summary arrived within offline_after_s
    alarms: int
    last_seen_s: float  # age of its newest summary
    via: Literal["direct", "relay"]

    def to_row(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "custom_name": self.custom_name,
            "number": self.number, "model": self.model, "url": self.url, "local": False,
            "l1": self.l1, "l2": self.l2, "l3": self.l3, "n": self.n, "source": self.source,
            "warning": self.warning, "tripped": self.tripped, "online": self.online,
            "reachable": self.reachable, "alarms": self.alarms,
            "last_seen_s": round(self.last_seen_s, 1), "via": self.via,
        }  # fmt: skip


class Numbering(Protocol):
    """Detection-order numbers (``host.storage.Storage`` is one)."""

    async def unit_number(self, unit_id: str) -> int: ...


class MemoryNumbering:
    """Numbers kept in memory only (tests, and a unit without storage)."""

    def __init__(self) -> None:
        self._numbers: dict[str, int] = {}

    async def unit_number(self, unit_id: str) -> int:
        return self._numbers.setdefault(unit_id, len(self._numbers) + 1)


class ExchangeError(Exception):
    """An envelope refused; ``reason`` is the counter it is counted under."""

    def __init__(self, reason: str, detail: str, status: int = 400) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.status = status


class PeerUnavailable(Exception):
    """A peer's data could not be fetched (unknown, unreachable, or not answering)."""


# ----------------------------------------------------------------------------- wire format


def canonical_json(obj: object) -> bytes:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


class SiteKey:
    """The HMAC key of one site's exchange, derived from ``peers.site_key``."""

    def __init__(self, secret: str) -> None:
        self.authenticated = bool(secret)
        material = (secret or _OPEN_SECRET).encode("utf-8")
        self._key = hmac.new(material, _KEY_LABEL, hashlib.sha256).digest()
        # Published in mDNS TXT so units of other sites on the same LAN skip each other.
        # Not a secret and not a proof: a rogue can copy it.
        self.tag = hmac.new(self._key, b"site tag", hashlib.sha256).hexdigest()[:8]

    def sign(self, payload: Mapping[str, Any]) -> str:
        return hmac.new(
            self._key, _SIG_DOMAIN + canonical_json(payload), hashlib.sha256
        ).hexdigest()

    def verify(self, payload: Mapping[str, Any], signature: str) -> bool:
        return hmac.compare_digest(self.sign(payload), signature)


def encode_envelope(
    key: SiteKey,
    kind: Kind,
    sender: str,
    units: Sequence[tuple[UnitSummary, float]],
    *,
    ts: float,
    nonce: str | None = None,
    echo: str | None = None,
) -> tuple[bytes, str]:
    """The signed envelope's bytes and its nonce."""
    nonce = nonce or secrets.token_hex(16)
    payload: dict[str, Any] = {
        "v": PROTOCOL_VERSION,
        "kind": kind,
        "from": sender,
        "ts": round(ts, 3),
        "nonce": nonce,
        "units": [summary.to_wire(age) for summary, age in units],
    }
    if kind == "response":
        if echo is None:
            raise ValueError("a response echoes the request's nonce")
        payload["echo"] = echo
    return canonical_json({**payload, "sig": key.sign(payload)}), nonce


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json_strict(body: bytes) -> Any:
    """UTF-8 JSON without duplicate keys, NaN or Infinity; ExchangeError otherwise."""
    try:
        return json.loads(
            body.decode("utf-8"),
            object_pairs_hook=_reject_duplicates,
            parse_constant=_reject_constant,
        )
    except (ValueError, RecursionError) as exc:
        raise ExchangeError("malformed", f"not strict JSON ({str(exc)[:80]})") from None


def _is_number(value: object) -> TypeGuard[int | float]:
    """A JSON number: int or float (not bool), finite, within a float's range."""
    if type(value) is float:
        return math.isfinite(value)
    return type(value) is int and -1e300 < value < 1e300


def _malformed(where: str, problem: str) -> ExchangeError:
    return ExchangeError("malformed", f"{where}: {problem}")


def _want_dict(value: object, where: str, keys: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _malformed(where, "expected an object")
    data: dict[str, Any] = value  # pyright: ignore[reportUnknownVariableType]
    if set(data) != keys:
        extra = sorted(set(data) - keys)[:3]
        missing = sorted(keys - set(data))[:3]
        raise _malformed(where, f"unexpected keys {extra} / missing {missing}")
    return data


def _want_bool(data: Mapping[str, Any], key: str, where: str) -> bool:
    value = data[key]
    if not isinstance(value, bool):
        raise _malformed(f"{where}.{key}", "expected true or false")
    return value


def _want_number(
    data: Mapping[str, Any], key: str, where: str, lo: float, hi: float, *, null: bool = False
) -> float | None:
    value = data[key]
    if value is None and null:
        return None
    if not _is_number(value) or not lo <= value <= hi:
        raise _malformed(f"{where}.{key}", f"expected a number in {lo:g}..{hi:g}")
    return float(value)


def _want_unit_id(value: object, where: str) -> str:
    if not isinstance(value, str) or not UNIT_ID_PATTERN.fullmatch(value):
        raise _malformed(where, "expected a unit id like smartPDU0A1B2C")
    return value


def valid_url(value: object) -> str | None:
    """``value`` if it is an ``http://host:port/`` URL of a literal address or a host name."""
    if not isinstance(value, str) or len(value) > 300:
        return None
    match = _URL.fullmatch(value)
    if match is None:
        return None
    host, port = match.group(1), int(match.group(2))
    if not 1 <= port <= 65535:
        return None
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return None
    elif not _HOSTNAME.fullmatch(host):
        return None
    elif re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return None
    return value


def _parse_unit(value: object, where: str) -> tuple[UnitSummary, float]:
    data = _want_dict(value, where, _UNIT_KEYS)
    uid = _want_unit_id(data["id"], f"{where}.id")
    name = data["name"]
    if not isinstance(name, str) or len(name) > LABEL_MAX_CHARS:
        raise _malformed(f"{where}.name", f"expected text of at most {LABEL_MAX_CHARS} characters")
    try:
        if validate_label(name) != name:
            raise ValueError("not normalised")
    except ValueError as exc:
        raise _malformed(f"{where}.name", str(exc)) from None
    model = data["model"]
    if type(model) is not int or model not in MODELS:
        raise _malformed(f"{where}.model", "expected 36, 48 or 72")
    urls_raw = data["urls"]
    if not isinstance(urls_raw, list) or len(urls_raw) > MAX_URLS:  # pyright: ignore[reportUnknownArgumentType]
        raise _malformed(f"{where}.urls", f"expected a list of at most {MAX_URLS} URLs")
    urls: list[str] = []
    for index, raw in enumerate(urls_raw):  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
        url = valid_url(raw)
        if url is None:
            raise _malformed(f"{where}.urls[{index}]", "expected http://address:port/")
        urls.append(url)
    if len(set(urls)) != len(urls):
        raise _malformed(f"{where}.urls", "duplicate URL")
    currents = {
        key: _want_number(data, key, where, 0.0, MAX_CURRENT_A, null=True)
        for key in ("l1", "l2", "l3", "n")
    }
    source = data["source"]
    if not isinstance(source, str) or source not in SOURCES:
        raise _malformed(f"{where}.source", f"expected one of {', '.join(SOURCES)}")
    alarms = data["alarms"]
    if type(alarms) is not int or not 0 <= alarms <= 10_000:
        raise _malformed(f"{where}.alarms", "expected an integer in 0..10000")
    age = _want_number(data, "age_s", where, 0.0, MAX_AGE_S)
    assert age is not None
    summary = UnitSummary(
        id=uid,
        name=name,
        model=model,
        urls=tuple(urls),
        l1=currents["l1"],
        l2=currents["l2"],
        l3=currents["l3"],
        n=currents["n"],
        source=source,  # pyright: ignore[reportArgumentType]
        warning=_want_bool(data, "warning", where),
        tripped=_want_bool(data, "tripped", where),
        online=_want_bool(data, "online", where),
        alarms=alarms,
    )
    return summary, age


def decode_envelope(key: SiteKey, body: bytes) -> Envelope:
    """Parse, verify and validate one envelope; ExchangeError (never anything else) if it
    is not a well-formed envelope signed with ``key``. Freshness is the caller's."""
    if len(body) > MAX_BODY_BYTES:
        raise ExchangeError("oversize", f"{len(body)} bytes", 413)
    obj = parse_json_strict(body)
    if not isinstance(obj, dict):
        raise _malformed("envelope", "expected an object")
    data: dict[str, Any] = obj  # pyright: ignore[reportUnknownVariableType]
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in _ENVELOPE_KEYS:
        raise _malformed("envelope.kind", "expected request or response")
    keys = _ENVELOPE_KEYS[kind]
    if "sig" not in data:
        raise ExchangeError("unsigned", "no signature", 401)
    data = _want_dict(data, "envelope", keys)
    signature = data["sig"]
    if not isinstance(signature, str) or not _HEX64.fullmatch(signature):
        raise ExchangeError("unsigned", "the signature is not 64 hex digits", 401)
    payload = {k: v for k, v in data.items() if k != "sig"}
    try:
        good = key.verify(payload, signature)
    except (ValueError, TypeError):
        good = False
    if not good:
        raise ExchangeError("signature", "wrong signature (another site key?)", 401)
    # Signed by a holder of the key: still checked field by field.
    if data["v"] != PROTOCOL_VERSION or type(data["v"]) is not int:
        raise _malformed("envelope.v", f"expected protocol version {PROTOCOL_VERSION}")
    sender = _want_unit_id(data["from"], "envelope.from")
    ts = _want_number(data, "ts", "envelope", 0.0, 1e11)
    assert ts is not None
    nonce = data["nonce"]
    if not isinstance(nonce, str) or not _HEX32.fullmatch(nonce):
        raise _malformed("envelope.nonce", "expected 32 hex digits")
    echo: str | None = None
    if kind == "response":
        echo = data["echo"]
        if not isinstance(echo, str) or not _HEX32.fullmatch(echo):
            raise _malformed("envelope.echo", "expected 32 hex digits")
    raw_units = data["units"]
    if not isinstance(raw_units, list) or not 1 <= len(raw_units) <= MAX_UNITS:  # pyright: ignore[reportUnknownArgumentType]
        raise _malformed("envelope.units", f"expected 1..{MAX_UNITS} units")
    units = tuple(
        _parse_unit(raw, f"units[{i}]")
        for i, raw in enumerate(raw_units)  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
    )
    if units[0][0].id != sender or units[0][1] != 0.0:
        raise _malformed("envelope.units[0]", "must be the sender itself, age 0")
    if len({summary.id for summary, _ in units}) != len(units):
        raise _malformed("envelope.units", "a unit is listed twice")
    return Envelope(kind, sender, ts, nonce, echo, units)  # pyright: ignore[reportArgumentType]


# ----------------------------------------------------------------------------- addresses


def local_ipv4_addresses() -> list[str]:
    """This host's IPv4 addresses other than loopback: DHCP ones first, link-local last."""
    found: set[ipaddress.IPv4Address] = set()
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if not isinstance(ip.ip, str):
                continue
            with contextlib.suppress(ValueError):
                address = ipaddress.IPv4Address(ip.ip)
                if not (address.is_loopback or address.is_unspecified or address.is_multicast):
                    found.add(address)
    return [str(a) for a in sorted(found, key=lambda a: (a.is_link_local, a))]


def link_state(root: Path = Path("/sys/class/net")) -> tuple[str, ...]:
    """The network interfaces (not loopback) with a carrier: a cable plugged in and the
    other end up. Empty where sysfs does not say (not Linux)."""
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return ()
    up: list[str] = []
    for entry in entries:
        if entry.name == "lo":
            continue
        try:
            if (entry / "carrier").read_text().strip() == "1":
                up.append(entry.name)
        except OSError:  # an interface that is administratively down has no carrier file
            continue
    return tuple(up)


def web_url(address: str, port: int) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}/"


def static_url(entry: str) -> str | None:
    """``http://host:port/`` for a ``peers.static`` entry ``host:port``."""
    host, _, port = entry.rpartition(":")
    if not host or not port.isdigit():
        return None
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return valid_url(f"http://{host}:{port}/")


# ----------------------------------------------------------------------------- directory


@dataclass
class _Known:
    summary: UnitSummary
    last_seen: float  # monotonic time of its newest summary (now - its age)
    number: int | None
    heard_at: float | None = None  # last summary from the unit itself (its request or answer)
    answered_url: str | None = None  # the address of its last answer to us
    answered_at: float | None = None
    reachable: bool = True
    number_tried_at: float = 0.0


@dataclass
class _Endpoint:
    url: str
    origins: set[str] = field(default_factory=lambda: set())  # static, mdns:<name>, gossip
    unit_id: str | None = None  # verified: who answered here
    next_at: float = 0.0
    failures: int = 0
    last_ok: float | None = None
    last_error: str | None = None
    busy: bool = False
    is_self: bool = False
    added_at: float = 0.0


STAT_KEYS = (
    "polls_ok",
    "polls_failed",
    "requests_ok",
    "requests_stale",
    "rejected_malformed",
    "rejected_unsigned",
    "rejected_signature",
    "rejected_oversize",
    "rejected_replay",
    "rejected_self",
    "rejected_echo",
    "units_found",
    "units_forgotten",
    "mdns_ignored",
    "internal_errors",
)


class PeerDirectory:
    """Every other smartPDU this one knows, kept current by mDNS and the signed exchange.

    ``local`` returns this unit's own status (called for every envelope sent). Start with
    ``await start()`` (or ``async with``, or run ``run()`` as a task), mount
    :func:`setup_routes` on the web application that serves ``web_port``.
    """

    def __init__(
        self,
        unit_id: str,
        *,
        site_key: str,
        web_port: int,
        local: Callable[[], LocalStatus],
        numbering: Numbering | None = None,
        settings: PeerSettings | None = None,
        addresses: Sequence[str] | None = None,
        version: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if not UNIT_ID_PATTERN.fullmatch(unit_id):
            raise ValueError(f"{unit_id!r} is not a unit id like smartPDU0A1B2C")
        self.unit_id = unit_id
        self.key = SiteKey(site_key)
        self.web_port = web_port
        self.settings = settings or PeerSettings()
        self.version = version or app_version()
        self._local = local
        self._numbering: Numbering = numbering or MemoryNumbering()
        self._fixed_addresses = tuple(addresses) if addresses is not None else None
        self._addresses: tuple[str, ...] = ()
        self._links: tuple[str, ...] = ()
        self._clock = clock
        self._wall = wall
        self._units: dict[str, _Known] = {}
        self._endpoints: dict[str, _Endpoint] = {}
        self._offsets: dict[str, float] = {}  # peer's wall clock minus ours
        self._nonces: dict[tuple[str, str], float] = {}  # (sender, nonce) -> expiry
        self._outstanding: set[str] = set()  # nonces of our requests awaiting an answer
        self._listeners: list[Callable[[], None]] = []
        self._merge_lock = asyncio.Lock()
        self._register_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._zc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._infos: list[AsyncServiceInfo] = []
        self._mdns_error: str | None = None
        self._last_local: LocalStatus = LocalStatus()
        self._last_local_at = -math.inf
        self._reject_logged: dict[str, float] = {}
        self.number: int | None = None  # this unit's own number
        self.stats: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)
        self.started = False

    # -- what the web layer reads ------------------------------------------------------------

    def units(self) -> list[PeerUnit]:
        """Every other unit known, in detection order."""
        now = self._clock()
        out = [self._peer_unit(known, now) for known in self._units.values()]
        out.sort(key=lambda u: (u.number is None, u.number or 0, u.id))
        return out

    def rows(self) -> list[dict[str, Any]]:
        """``units()`` as ``GET /api/v1/units`` rows (a ``UnitDirectory`` peer source)."""
        return [unit.to_row() for unit in self.units()]

    @property
    def addresses(self) -> tuple[str, ...]:
        """This unit's IPv4 addresses, as advertised."""
        return self._addresses

    @property
    def urls(self) -> tuple[str, ...]:
        """This unit's web interface at each of its addresses."""
        return tuple(web_url(a, self.web_port) for a in self._addresses[:MAX_URLS])

    def get(self, unit_id: str) -> PeerUnit | None:
        known = self._units.get(unit_id)
        return None if known is None else self._peer_unit(known, self._clock())

    def on_change(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` when a unit appears, leaves, comes back or changes; returns the
        function that unregisters it."""
        self._listeners.append(callback)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(callback)

        return remove

    async def fetch_unit(
        self, unit_id: str, part: str = "view", params: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """A peer's own JSON for panes B-D: ``GET {url}api/v1/units/{unit_id}/{part}``
        (``part`` "" for the status document, "view" for the whole view, "channels", ...;
        ``params`` as the query). Raises KeyError for a unit not known, ValueError for a
        malformed ``part`` and PeerUnavailable when none of its addresses answers with a
        JSON object (the peer's own error is in the message)."""
        known = self._units.get(unit_id)
        if known is None:
            raise KeyError(unit_id)
        if part and not _VIEW_PART.fullmatch(part):
            raise ValueError(f"{part!r} is not a part of the unit API")
        session = self._session
        if session is None:
            raise PeerUnavailable("the peer directory is not running")
        first = [known.answered_url] if known.answered_url else []
        urls: list[str] = list(dict.fromkeys([*first, *known.summary.urls]))
        path = f"api/v1/units/{unit_id}" + (f"/{part}" if part else "")
        problem = "no address known"
        for base in urls:
            try:
                timeout = aiohttp.ClientTimeout(total=self.settings.request_timeout_s + 1.0)
                async with session.get(
                    base + path, params=dict(params or {}), timeout=timeout
                ) as response:
                    raw = await _read_limited(response.content, MAX_VIEW_BYTES)
                    if response.status != 200:
                        problem = f"{base}: HTTP {response.status}"
                        continue
                if raw is None:
                    problem = f"{base}: answer larger than {MAX_VIEW_BYTES} bytes"
                    continue
                data = json.loads(raw)
                if not isinstance(data, dict):
                    problem = f"{base}: not a JSON object"
                    continue
                return data  # pyright: ignore[reportUnknownVariableType]
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError, RecursionError) as exc:
                problem = f"{base}: {type(exc).__name__} {exc}".strip()
        raise PeerUnavailable(f"{unit_id}: {problem}")

    def status(self) -> dict[str, Any]:
        """Counters and endpoints, for ``GET /api/v1/peers`` and diagnostics."""
        now = self._clock()
        return {
            "unit_id": self.unit_id,
            "number": self.number,
            "protocol": PROTOCOL_VERSION,
            "authenticated": self.key.authenticated,
            "site": self.key.tag,
            "addresses": list(self._addresses),
            "mdns": {"enabled": self.settings.mdns, "error": self._mdns_error},
            "units": len(self._units),
            "reachable": sum(1 for k in self._units.values() if k.reachable),
            "stats": dict(self.stats),
            "endpoints": [
                {
                    "url": ep.url,
                    "unit_id": ep.unit_id,
                    "origins": sorted(ep.origins),
                    "self": ep.is_self,
                    "failures": ep.failures,
                    "last_ok_s": None if ep.last_ok is None else round(now - ep.last_ok, 1),
                    "last_error": ep.last_error,
                }
                for ep in self._endpoints.values()
            ],
        }

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self.started:
            return
        self.started = True
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=64, limit_per_host=2),
            headers={"User-Agent": f"smartPDU-peers/{self.version}"},
        )
        self.number = await self._number(self.unit_id)
        self._addresses = self._current_addresses()
        self._links = link_state()
        for entry in self.settings.static:
            url = static_url(entry)
            if url is None:
                _LOG.warning("peers.static: %r is not host:port, ignored", entry)
            else:
                self._add_endpoint(url, "static", due=0.0)
        self._loop_task = asyncio.create_task(self._loop(), name="peers-loop")
        if self.settings.mdns:
            self._start_mdns()

    async def close(self) -> None:
        if not self.started:
            return
        self.started = False
        tasks = [t for t in (self._loop_task, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self._stop_mdns()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def run(self) -> None:
        """Start, run until cancelled, then close (the service's task)."""
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.close()

    async def __aenter__(self) -> PeerDirectory:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the exchange: serving ---------------------------------------------------------------

    async def handle_exchange(self, body: bytes, remote: str | None = None) -> tuple[int, bytes]:
        """Answer one ``POST /api/v1/peers/exchange``: (HTTP status, JSON body). Never raises
        for anything a client sends."""
        try:
            envelope = decode_envelope(self.key, body)
            if envelope.kind != "request":
                raise _malformed("envelope.kind", "expected a request")
        except ExchangeError as exc:
            self.refuse(exc, remote)
            return exc.status, _error_body(exc.status, str(exc))
        except Exception:  # a bug here must not take the web server down with it
            _LOG.exception("peer exchange from %s: unexpected error", remote)
            self.stats["internal_errors"] += 1
            return 400, _error_body(400, "malformed exchange")
        if envelope.sender == self.unit_id:
            if envelope.nonce in self._outstanding:
                # Our own request come back (a static entry or a second address of ours):
                # answer it, so the poller finds out that address is this unit.
                return 200, self._envelope("response", echo=envelope.nonce)[0]
            exc = ExchangeError(
                "self", "another unit uses this unit's id (two units configured alike?)", 409
            )
            self.refuse(exc, remote)
            return exc.status, _error_body(exc.status, str(exc))
        key = (envelope.sender, envelope.nonce)
        if key in self._nonces:
            exc = ExchangeError("replay", f"nonce already used by {envelope.sender}", 409)
            self.refuse(exc, remote)
            return exc.status, _error_body(exc.status, str(exc))
        expected = self._wall() + self._offsets.get(envelope.sender, 0.0)
        if abs(envelope.ts - expected) <= self.settings.freshness_s:
            self._remember_nonce(key)
            self.stats["requests_ok"] += 1
            await self._merge(envelope, answered_url=None)
        else:
            # Signed but not provably fresh (a replay, or a clock we have not measured yet):
            # its data is not used. It still gets our answer, which echoes its nonce, so it
            # learns us and our clock; and we contact it at its own addresses, which teaches
            # us its clock (a replay can only make us contact a genuine unit).
            self.stats["requests_stale"] += 1
            self._log_reject(
                "stale",
                f"{envelope.sender} at {remote}: timestamp {envelope.ts - expected:+.1f} s "
                "off its measured clock; its data is ignored until its clock is measured",
            )
            for url in envelope.units[0][0].urls:
                self._add_endpoint(url, "gossip", due=self._clock())
        answer, _ = self._envelope("response", echo=envelope.nonce)
        return 200, answer

    # -- the exchange: contacting ------------------------------------------------------------

    async def _poll(self, endpoint: _Endpoint) -> None:
        session = self._session
        if session is None:
            return
        body, nonce = self._envelope("request")
        self._outstanding.add(nonce)
        sent = self._wall()
        timeout = aiohttp.ClientTimeout(total=self.settings.request_timeout_s)
        try:
            try:
                async with session.post(
                    endpoint.url + EXCHANGE_PATH.lstrip("/"),
                    data=body,
                    headers={"Content-Type": "application/json"},
                    timeout=timeout,
                ) as response:
                    raw = await _read_limited(response.content, MAX_BODY_BYTES)
                    if response.status != 200:
                        raise ExchangeError("http", f"HTTP {response.status}", 502)
                if raw is None:
                    raise ExchangeError("oversize", "answer too large", 413)
                envelope = decode_envelope(self.key, raw)
                if envelope.kind != "response" or envelope.echo != nonce:
                    raise ExchangeError("echo", "an answer that is not to our request")
            except ExchangeError as exc:
                if exc.reason != "http":
                    self.refuse(exc, endpoint.url)
                raise
            received = self._wall()
            if envelope.sender == self.unit_id:
                endpoint.is_self = True
                endpoint.unit_id = self.unit_id
                return
            self._offsets[envelope.sender] = envelope.ts - (sent + received) / 2
            endpoint.unit_id = envelope.sender
            endpoint.failures = 0
            endpoint.last_ok = self._clock()
            endpoint.last_error = None
            self.stats["polls_ok"] += 1
            await self._merge(envelope, answered_url=endpoint.url)
        except (aiohttp.ClientError, TimeoutError, OSError, ExchangeError) as exc:
            endpoint.failures += 1
            endpoint.last_error = f"{type(exc).__name__}: {exc}".rstrip(": ")[:200]
            self.stats["polls_failed"] += 1
            backoff = self.settings.exchange_s * 2 ** min(endpoint.failures, 10)
            endpoint.next_at = self._clock() + min(self.settings.retry_s, backoff)
            return
        except Exception as exc:  # a bug: logged, the address retried later, nothing stops
            _LOG.exception("peer exchange with %s: unexpected error", endpoint.url)
            self.stats["internal_errors"] += 1
            endpoint.last_error = f"internal error: {type(exc).__name__}"
            endpoint.next_at = self._clock() + self.settings.retry_s
            return
        finally:
            endpoint.busy = False
            self._outstanding.discard(nonce)
        endpoint.next_at = self._clock() + self._interval(endpoint)

    def _interval(self, endpoint: _Endpoint) -> float:
        """Every exchange_s; a second address of a unit answering elsewhere: retry_s."""
        if endpoint.unit_id is not None:
            known = self._units.get(endpoint.unit_id)
            if (
                known is not None
                and known.answered_url not in (None, endpoint.url)
                and known.answered_at is not None
                and self._clock() - known.answered_at < self.settings.offline_after_s
            ):
                return self.settings.retry_s
        return self.settings.exchange_s

    def _envelope(self, kind: Kind, echo: str | None = None) -> tuple[bytes, str]:
        now = self._clock()
        units: list[tuple[UnitSummary, float]] = [(self._local_summary(), 0.0)]
        others = sorted(self._units.values(), key=lambda k: -k.last_seen)
        for known in others[: MAX_UNITS - 1]:
            age = now - known.last_seen
            if age <= self.settings.forget_after_s:
                units.append((known.summary, age))
        return encode_envelope(self.key, kind, self.unit_id, units, ts=self._wall(), echo=echo)

    def _local_summary(self) -> UnitSummary:
        now = self._clock()
        if now - self._last_local_at >= LOCAL_CACHE_S:  # one snapshot serves a burst
            try:
                self._last_local = self._local()
            except Exception:
                _LOG.exception("local status failed; sending the last one")
            self._last_local_at = now
        status = self._last_local
        return UnitSummary(
            id=self.unit_id,
            name=status.name,
            model=status.model,
            urls=self.urls,
            l1=status.l1,
            l2=status.l2,
            l3=status.l3,
            n=status.n,
            source=status.source,
            warning=status.warning,
            tripped=status.tripped,
            online=status.online,
            alarms=status.alarms,
        )

    async def _merge(self, envelope: Envelope, answered_url: str | None) -> None:
        """Take in a verified, fresh envelope (``answered_url``: it answered our request)."""
        changed = False
        async with self._merge_lock:
            if self.number is None:  # this unit comes first in its own detection order
                self.number = await self._number(self.unit_id)
            now = self._clock()
            for summary, age in envelope.units:
                if summary.id == self.unit_id or age > self.settings.forget_after_s:
                    continue
                seen = now - age
                direct = summary.id == envelope.sender
                known = self._units.get(summary.id)
                if known is None:
                    if len(self._units) >= MAX_UNITS:
                        continue
                    known = _Known(summary, seen, await self._number(summary.id))
                    known.number_tried_at = now
                    self._units[summary.id] = known
                    self.stats["units_found"] += 1
                    _LOG.info(
                        "unit %s found (%s, via %s)",
                        summary.id,
                        ", ".join(summary.urls) or "no address",
                        "itself" if direct else envelope.sender,
                    )
                    changed = True
                elif seen > known.last_seen:
                    changed |= known.summary != summary
                    known.summary = summary
                    known.last_seen = seen
                if direct:
                    known.heard_at = now
                    if answered_url is not None:
                        known.answered_url = answered_url
                        known.answered_at = now
                if known.number is None and now - known.number_tried_at >= 10.0:
                    known.number_tried_at = now
                    known.number = await self._number(summary.id)
                    changed |= known.number is not None
                for url in summary.urls:
                    self._add_endpoint(url, "gossip")
            changed |= self._update_reachability(now)
        if changed:
            self._notify()

    async def _number(self, unit_id: str) -> int | None:
        try:
            return await self._numbering.unit_number(unit_id)
        except Exception as exc:  # a failing disk: shown unnumbered, tried again later
            _LOG.warning("cannot number unit %s: %s", unit_id, exc)
            return None

    # -- endpoints, the loop -----------------------------------------------------------------

    def _add_endpoint(self, url: str, origin: str, due: float | None = None) -> None:
        endpoint = self._endpoints.get(url)
        if endpoint is None:
            if len(self._endpoints) >= MAX_ENDPOINTS:
                self._log_reject("endpoints", f"more than {MAX_ENDPOINTS} addresses; {url} ignored")
                return
            if url in {web_url(a, self.web_port) for a in self._addresses}:
                return  # ourselves
            now = self._clock()
            endpoint = _Endpoint(url, next_at=now if due is None else due, added_at=now)
            self._endpoints[url] = endpoint
        elif due is not None and not endpoint.busy:
            endpoint.next_at = min(endpoint.next_at, due)  # announced again: try it now
        endpoint.origins.add(origin)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _LOG.error("peer task %s failed", task.get_name(), exc_info=task.exception())

    async def _loop(self) -> None:
        next_housekeeping = 0.0
        next_network = self._clock() + self.settings.network_check_s
        while True:
            try:
                now = self._clock()
                for endpoint in list(self._endpoints.values()):
                    if not endpoint.busy and not endpoint.is_self and endpoint.next_at <= now:
                        endpoint.busy = True
                        self._spawn(self._poll(endpoint), f"peers-poll {endpoint.url}")
                if self._update_reachability(now):
                    self._notify()
                if now >= next_network:
                    next_network = now + self.settings.network_check_s
                    await self._check_network()
                if now >= next_housekeeping:
                    next_housekeeping = now + 1.0
                    self._housekeeping(now)
            except Exception:  # a bug or a failing mDNS stack: log it, keep exchanging
                _LOG.exception("peer directory loop")
                self.stats["internal_errors"] += 1
                await asyncio.sleep(1.0)
            await asyncio.sleep(0.1)

    def _update_reachability(self, now: float) -> bool:
        changed = False
        for known in self._units.values():
            reachable = now - known.last_seen <= self.settings.offline_after_s
            if reachable != known.reachable:
                known.reachable = reachable
                changed = True
                _LOG.info(
                    "unit %s %s",
                    known.summary.id,
                    "is back"
                    if reachable
                    else f"is offline (silent {now - known.last_seen:.1f} s)",
                )
        return changed

    def _housekeeping(self, now: float) -> None:
        gone = [
            uid
            for uid, known in self._units.items()
            if now - known.last_seen > self.settings.forget_after_s
        ]
        for uid in gone:
            del self._units[uid]
            self._offsets.pop(uid, None)
            self.stats["units_forgotten"] += 1
            _LOG.info("unit %s forgotten (silent %.0f s)", uid, self.settings.forget_after_s)
        if gone:
            self._notify()
        wanted = {url for known in self._units.values() for url in known.summary.urls}
        for url, endpoint in list(self._endpoints.items()):
            if "gossip" in endpoint.origins and url not in wanted:
                endpoint.origins.discard("gossip")
            recently_ok = (
                endpoint.last_ok is not None
                and now - endpoint.last_ok < self.settings.forget_after_s
            )
            grace = (
                now - endpoint.added_at
                < 2 * self.settings.retry_s + 2 * self.settings.request_timeout_s
            )
            if not endpoint.origins and not recently_ok and not endpoint.busy and not grace:
                del self._endpoints[url]
        wall = self._wall()
        self._nonces = {k: t for k, t in self._nonces.items() if t > wall}

    def _remember_nonce(self, key: tuple[str, str]) -> None:
        if len(self._nonces) >= NONCE_CACHE_MAX:
            wall = self._wall()
            self._nonces = {k: t for k, t in self._nonces.items() if t > wall}
            if len(self._nonces) >= NONCE_CACHE_MAX:
                oldest = sorted(self._nonces.items(), key=lambda kv: kv[1])
                self._nonces = dict(oldest[NONCE_CACHE_MAX // 4 :])
        # Kept beyond the window on both sides of the clock: a replay is stale by then.
        self._nonces[key] = self._wall() + 2 * self.settings.freshness_s + 1.0

    def _notify(self) -> None:
        for callback in list(self._listeners):
            try:
                callback()
            except Exception:
                _LOG.exception("peer change listener failed")

    def _peer_unit(self, known: _Known, now: float) -> PeerUnit:
        s = known.summary
        age = max(0.0, now - known.last_seen)
        reachable = age <= self.settings.offline_after_s
        window = self.settings.offline_after_s
        direct = known.heard_at is not None and now - known.heard_at <= window
        return PeerUnit(
            id=s.id,
            name=s.name or (f"smartPDU {known.number}" if known.number else "smartPDU"),
            custom_name=s.name,
            number=known.number,
            model=s.model,
            url=known.answered_url or (s.urls[0] if s.urls else None),
            l1=s.l1 if reachable else None,
            l2=s.l2 if reachable else None,
            l3=s.l3 if reachable else None,
            n=s.n if reachable else None,
            source=s.source if reachable else "none",
            warning=s.warning,
            tripped=s.tripped,
            online=reachable and s.online,
            reachable=reachable,
            alarms=s.alarms,
            last_seen_s=age,
            via="direct" if direct else "relay",
        )

    # -- refusals ----------------------------------------------------------------------------

    def refuse(self, exc: ExchangeError, remote: str | None) -> None:
        """Count and (rate-limited) log one refused envelope."""
        key = f"rejected_{exc.reason}"
        if key in self.stats:
            self.stats[key] += 1
        self._log_reject(exc.reason, f"from {remote or 'unknown'}: {exc.detail}")

    def _log_reject(self, reason: str, message: str) -> None:
        now = self._clock()
        if now - self._reject_logged.get(reason, -math.inf) >= REJECT_LOG_EVERY_S:
            self._reject_logged[reason] = now
            _LOG.warning("peer exchange refused (%s) %s (logged once a minute)", reason, message)

    # -- mDNS --------------------------------------------------------------------------------

    def _current_addresses(self) -> tuple[str, ...]:
        if self._fixed_addresses is not None:
            return self._fixed_addresses
        try:
            return tuple(local_ipv4_addresses())
        except OSError as exc:
            _LOG.warning("cannot list network addresses: %s", exc)
            return self._addresses

    async def _check_network(self) -> None:
        """Follow the network: DHCP answering after start, a changed link-local address, a
        cable plugged in (hot-connect: announce again and ask again at once, rather than
        waiting for mDNS's next scheduled query, which backs off to an hour)."""
        addresses = self._current_addresses()
        links = link_state()
        if addresses != self._addresses:
            _LOG.info("addresses now %s", ", ".join(addresses) or "none")
            self._addresses = addresses
            self._links = links
            for url in [web_url(a, self.web_port) for a in addresses]:
                self._endpoints.pop(url, None)
            if self._zc is not None:
                with contextlib.suppress(Exception):
                    await self._zc.async_update_interfaces()
                await self._register()
                await self._restart_browser()
            self._contact_all_now()
            return
        plugged = set(links) - set(self._links)
        self._links = links
        if plugged:
            _LOG.info("link up on %s: announcing again", ", ".join(sorted(plugged)))
            if self._zc is not None:
                for info in self._infos:
                    with contextlib.suppress(Exception):
                        await self._zc.async_update_service(info)
                await self._restart_browser()
            self._contact_all_now()

    def _contact_all_now(self) -> None:
        now = self._clock()
        for endpoint in self._endpoints.values():
            if not endpoint.busy:
                endpoint.next_at = min(endpoint.next_at, now)

    def _service_infos(self) -> list[AsyncServiceInfo]:
        server = f"{self.unit_id}.local."
        model = str(self._last_local.model)
        properties = {
            "id": self.unit_id,
            "proto": str(PROTOCOL_VERSION),
            "ver": self.version,
            "port": str(self.web_port),
            "model": model,
            "site": self.key.tag,
            "auth": "1" if self.key.authenticated else "0",
            "path": "/",
        }
        addresses = list(self._addresses)
        return [
            AsyncServiceInfo(
                SERVICE_TYPE,
                f"{self.unit_id}.{SERVICE_TYPE}",
                port=self.web_port,
                properties=properties,
                server=server,
                parsed_addresses=addresses,
            ),
            AsyncServiceInfo(
                HTTP_SERVICE_TYPE,
                f"{self.unit_id}.{HTTP_SERVICE_TYPE}",
                port=self.web_port,
                properties={"path": "/", "id": self.unit_id, "model": model},
                server=server,
                parsed_addresses=addresses,
            ),
        ]

    def _start_mdns(self) -> None:
        try:
            self._zc = AsyncZeroconf(interfaces=InterfaceChoice.All, ip_version=IPVersion.V4Only)
            self._browser = AsyncServiceBrowser(
                self._zc.zeroconf, [SERVICE_TYPE], handlers=[self._on_service]
            )
        except OSError as exc:
            self._mdns_error = f"mDNS unavailable: {exc}"
            _LOG.error("%s; only peers.static and gossip will find units", self._mdns_error)
            self._zc = None
            return
        with contextlib.suppress(Exception):
            self._last_local = self._local()
        # Probing our names takes most of a second: browse and exchange meanwhile.
        self._spawn(self._register(), "peers-mdns-register")

    async def _restart_browser(self) -> None:
        zc = self._zc
        if zc is None:
            return
        if self._browser is not None:
            with contextlib.suppress(Exception):
                await self._browser.async_cancel()
        try:
            self._browser = AsyncServiceBrowser(
                zc.zeroconf, [SERVICE_TYPE], handlers=[self._on_service]
            )
        except Exception as exc:
            self._browser = None
            self._mdns_error = f"mDNS browsing failed: {exc}"
            _LOG.error("%s", self._mdns_error)

    async def _register(self) -> None:
        async with self._register_lock:
            await self._register_locked()

    async def _register_locked(self) -> None:
        zc = self._zc
        if zc is None:
            return
        infos = self._service_infos()
        try:
            for old in self._infos:
                with contextlib.suppress(Exception):
                    await zc.async_unregister_service(old)
            self._infos = []
            if not self._addresses:
                return  # registered once an address appears
            for info in infos:
                try:
                    await zc.async_register_service(info)
                except NonUniqueNameException:
                    # Someone else answers for our name (a misconfigured twin, or a rogue):
                    # keep being reachable under a changed instance name; the exchange
                    # still proves who we are.
                    _LOG.warning("mDNS name %s is taken; registering a variant", info.name)
                    await zc.async_register_service(info, allow_name_change=True)
                self._infos.append(info)
            self._mdns_error = None
        except Exception as exc:
            self._mdns_error = f"mDNS registration failed: {exc}"
            _LOG.error("%s", self._mdns_error)

    async def _stop_mdns(self) -> None:
        zc, self._zc = self._zc, None
        if zc is None:
            return
        with contextlib.suppress(Exception):
            if self._browser is not None:
                await self._browser.async_cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(zc.async_close(), timeout=3.0)  # sends the goodbyes
        self._browser = None
        self._infos = []

    def _on_service(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        if name.lower() == f"{self.unit_id}.{SERVICE_TYPE}".lower():
            return
        if state_change is ServiceStateChange.Removed:
            # Not trusted for presence (anyone can send a goodbye): only forget the address
            # as an mDNS one; presence still follows the signed exchange.
            for endpoint in self._endpoints.values():
                endpoint.origins.discard(f"mdns:{name}")
            return
        self._spawn(self._resolve(zeroconf, service_type, name), f"peers-resolve {name}")

    async def _resolve(self, zeroconf: Zeroconf, service_type: str, name: str) -> None:
        info = AsyncServiceInfo(service_type, name)
        if not await info.async_request(zeroconf, 3000):
            return
        properties = info.decoded_properties
        instance = name[: -len(service_type) - 1] if name.endswith(service_type) else name
        problem = None
        if properties.get("id") != instance or not UNIT_ID_PATTERN.fullmatch(instance):
            problem = "its TXT id does not match its name"
        elif properties.get("proto") != str(PROTOCOL_VERSION):
            problem = f"protocol {properties.get('proto')!r}, this unit speaks {PROTOCOL_VERSION}"
        elif self.key.authenticated and properties.get("site") != self.key.tag:
            problem = "it belongs to another site (another site key)"
        elif info.port is None:
            problem = "no port"
        if problem is not None:
            self.stats["mdns_ignored"] += 1
            _LOG.debug("mDNS service %s ignored: %s", name, problem)
            return
        assert info.port is not None
        for address in info.parsed_addresses(IPVersion.V4Only)[:MAX_URLS]:
            url = valid_url(web_url(address, info.port))
            if url is not None:
                self._add_endpoint(url, f"mdns:{name}", due=self._clock())


# ----------------------------------------------------------------------------- web routes


PEERS = web.AppKey("smartpdu.peers", PeerDirectory)


def _error_body(status: int, message: str) -> bytes:
    return json.dumps({"error": {"status": status, "message": message}}).encode()


async def _read_limited(stream: aiohttp.StreamReader, limit: int) -> bytes | None:
    """The whole body, or None as soon as it is longer than ``limit``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)


async def exchange_handler(request: web.Request) -> web.Response:
    """``POST /api/v1/peers/exchange``: authenticated by the envelope's HMAC, not by a
    session (no cookie, no CSRF token: it is machine to machine)."""
    directory = request.app[PEERS]
    length = request.content_length
    body = None
    if length is None or length <= MAX_BODY_BYTES:
        body = await _read_limited(request.content, MAX_BODY_BYTES)
    if body is None:
        directory.refuse(ExchangeError("oversize", f"more than {MAX_BODY_BYTES} bytes", 413),
                         request.remote)  # fmt: skip
        return web.Response(
            status=413,
            body=_error_body(413, f"an exchange is at most {MAX_BODY_BYTES} bytes"),
            content_type="application/json",
            headers={"Connection": "close"},
        )
    status, payload = await directory.handle_exchange(body, request.remote)
    return web.Response(status=status, body=payload, content_type="application/json")


Guard = Callable[[web.Request], Awaitable[Any]]
STATUS_GUARD: web.AppKey[Guard] = web.AppKey("smartpdu.peers.status_guard")


async def status_handler(request: web.Request) -> web.Response:
    """``GET /api/v1/peers``: the directory's counters and addresses (read-only)."""
    guard = request.app.get(STATUS_GUARD)
    if guard is not None:
        await guard(request)
    return web.json_response(request.app[PEERS].status())


def setup_routes(
    app: web.Application, directory: PeerDirectory, *, status_guard: Guard | None = None
) -> None:
    """Mount the exchange on the application that serves ``directory.web_port``.

    ``POST /api/v1/peers/exchange`` must stay reachable without a session (the HMAC is its
    authentication); ``status_guard`` (e.g. the web layer's read check) runs before
    ``GET /api/v1/peers``."""
    app[PEERS] = directory
    if status_guard is not None:
        app[STATUS_GUARD] = status_guard
    app.router.add_post(EXCHANGE_PATH, exchange_handler)
    app.router.add_get(STATUS_PATH, status_handler)


def peers_context(
    directory: PeerDirectory,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A ``cleanup_ctx`` entry running ``directory`` for the application's lifetime."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        await directory.start()
        try:
            yield
        finally:
            await directory.close()

    return context
