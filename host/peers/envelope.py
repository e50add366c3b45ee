"""The envelope two smartPDUs exchange (protocol 2): its schema, signatures and strict parsing.

Pure: no I/O, no asyncio. The exchange (``host.peers.exchange``) sends and answers these.

Envelope (canonical JSON: sorted keys, no spaces, ASCII, no NaN)::

    {"v": 2, "kind": "request" | "response", "from": "smartPDU0A1B2C",
     "nonce": "<32 hex>",            # fresh per envelope
     "echo": "<32 hex>",             # responses only: the request's nonce
     "units": [                      # the sender's own statement first (age 0), then the
        {"unit": {"id": "smartPDU0A1B2C", "name": "", "model": 48,   # adopted units' ones
                  "urls": ["http://10.0.0.7:8080/"], "l1": 12.5, "l2": 3.0, "l3": 0.0,
                  "n": null, "source": "meter", "warning": false, "tripped": false,
                  "online": true, "alarms": 0,
                  "key": "<64 hex>",   # the unit's Ed25519 public key
                  "ctr": 4294967297,   # its counter: grows with every statement it signs
                  "site": null},       # or an HMAC proving the optional site key
         "sig": "<128 hex>",           # Ed25519 by "key" over "unit"
         "age_s": 0.0}, ...],
     "trust": [<trust records, host.peers.trust>]}

Every statement is signed by the unit it describes, so a relay can pass it on but not alter
it; a statement counts only when its counter is newer than the last one taken from that unit,
its key is the one adopted for its id, and the unit is adopted (``host.peers.known``). Every
field is checked against a strict schema (exact key sets, types, ranges, plain-text names of
at most 32 characters, ``http://`` URLs of a literal address or host name only); anything
else raises :class:`ExchangeError` and is dropped whole. Protocol 1 (one HMAC per envelope)
is refused: it carries no unit key.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard

from host.domain import LABEL_MAX_CHARS, UNIT_ID_PATTERN, validate_label
from host.peers.identity import Identity, canonical_json, verify
from host.peers.trust import MAX_RECORDS, Record, RecordError, parse_record

PROTOCOL_VERSION = 2
EXCHANGE_PATH = "/api/v1/peers/exchange"
STATUS_PATH = "/api/v1/peers"

MAX_BODY_BYTES = 256 * 1024  # MAX_UNITS statements are about 60 kB, MAX_RECORDS 150 kB
MAX_UNITS = 100  # in one envelope, and known at once
MAX_URLS = 4
MAX_CURRENT_A = 10_000.0
MAX_AGE_S = 10_000_000.0

_UNIT_DOMAIN = b"smartpdu-unit/2\n"
_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX128 = re.compile(r"[0-9a-f]{128}")
_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9-]{1,63})*")
_URL = re.compile(r"http://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})/")
_SUMMARY_KEYS = frozenset(
    {
        "id", "name", "model", "urls", "l1", "l2", "l3", "n", "source",
        "warning", "tripped", "online", "alarms",
    }
)  # fmt: skip
_UNIT_KEYS = _SUMMARY_KEYS | {"key", "ctr", "site"}
_STATEMENT_KEYS = frozenset({"unit", "sig", "age_s"})
_ENVELOPE_KEYS = {
    "request": frozenset({"v", "kind", "from", "nonce", "units", "trust"}),
    "response": frozenset({"v", "kind", "from", "nonce", "echo", "units", "trust"}),
}
MODELS = (36, 48, 72)
SOURCES = ("meter", "channels", "none")

Kind = Literal["request", "response"]
Source = Literal["meter", "channels", "none"]

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

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "model": self.model, "urls": list(self.urls),
            "l1": self.l1, "l2": self.l2, "l3": self.l3, "n": self.n, "source": self.source,
            "warning": self.warning, "tripped": self.tripped, "online": self.online,
            "alarms": self.alarms,
        }  # fmt: skip


@dataclass(frozen=True)
class Statement:
    """A unit's summary as that unit signed it (relays pass it on unchanged)."""

    summary: UnitSummary
    key: str  # the unit's public key, 64 hex
    ctr: int  # grows with every statement the unit signs
    site: str | None  # the site-key proof, if the unit has one
    sig: str

    def unit_wire(self) -> dict[str, Any]:
        return {**self.summary.to_wire(), "key": self.key, "ctr": self.ctr, "site": self.site}

    def signed_bytes(self) -> bytes:
        return _UNIT_DOMAIN + canonical_json(self.unit_wire())

    def to_wire(self, age_s: float) -> dict[str, Any]:
        return {"unit": self.unit_wire(), "sig": self.sig, "age_s": round(max(0.0, age_s), 3)}

    def verified(self) -> bool:
        """The signature is the key's (says nothing about whether that key is adopted)."""
        return verify(self.key, self.signed_bytes(), self.sig)

    @classmethod
    def sign(cls, summary: UnitSummary, identity: Identity, site: str | None) -> Statement:
        unsigned = cls(summary, identity.public_hex, identity.next_counter(), site, "")
        return cls(
            summary, unsigned.key, unsigned.ctr, site, identity.sign(unsigned.signed_bytes())
        )


@dataclass(frozen=True)
class Envelope:
    kind: Kind
    sender: str
    nonce: str
    echo: str | None
    units: tuple[tuple[Statement, float], ...]  # (statement, age_s), the sender's first
    trust: tuple[Record, ...]

    @property
    def own(self) -> Statement:
        return self.units[0][0]


class ExchangeError(Exception):
    """An envelope refused; ``reason`` is the counter it is counted under."""

    def __init__(self, reason: str, detail: str, status: int = 400) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.status = status


# ----------------------------------------------------------------------------- wire format


def encode_envelope(
    kind: Kind,
    sender: str,
    units: Sequence[tuple[Statement, float]],
    trust: Sequence[Mapping[str, Any]] = (),
    *,
    nonce: str | None = None,
    echo: str | None = None,
) -> tuple[bytes, str]:
    """The envelope's bytes and its nonce (its statements and records are signed already)."""
    nonce = nonce or secrets.token_hex(16)
    payload: dict[str, Any] = {
        "v": PROTOCOL_VERSION,
        "kind": kind,
        "from": sender,
        "nonce": nonce,
        "units": [statement.to_wire(age) for statement, age in units],
        "trust": list(trust)[:MAX_RECORDS],
    }
    if kind == "response":
        if echo is None:
            raise ValueError("a response echoes the request's nonce")
        payload["echo"] = echo
    return canonical_json(payload), nonce


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


def malformed(where: str, problem: str) -> ExchangeError:
    """An envelope refused as malformed at ``where``."""
    return ExchangeError("malformed", f"{where}: {problem}")


def _want_dict(value: object, where: str, keys: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise malformed(where, "expected an object")
    data: dict[str, Any] = value  # pyright: ignore[reportUnknownVariableType]
    if set(data) != keys:
        extra = sorted(set(data) - keys)[:3]
        missing = sorted(keys - set(data))[:3]
        raise malformed(where, f"unexpected keys {extra} / missing {missing}")
    return data


def _want_bool(data: Mapping[str, Any], key: str, where: str) -> bool:
    value = data[key]
    if not isinstance(value, bool):
        raise malformed(f"{where}.{key}", "expected true or false")
    return value


def _want_number(
    data: Mapping[str, Any], key: str, where: str, lo: float, hi: float, *, null: bool = False
) -> float | None:
    value = data[key]
    if value is None and null:
        return None
    if not _is_number(value) or not lo <= value <= hi:
        raise malformed(f"{where}.{key}", f"expected a number in {lo:g}..{hi:g}")
    return float(value)


def _want_unit_id(value: object, where: str) -> str:
    if not isinstance(value, str) or not UNIT_ID_PATTERN.fullmatch(value):
        raise malformed(where, "expected a unit id like smartPDU0A1B2C")
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


def _parse_unit(data: dict[str, Any], where: str) -> UnitSummary:
    uid = _want_unit_id(data["id"], f"{where}.id")
    name = data["name"]
    if not isinstance(name, str) or len(name) > LABEL_MAX_CHARS:
        raise malformed(f"{where}.name", f"expected text of at most {LABEL_MAX_CHARS} characters")
    try:
        if validate_label(name) != name:
            raise ValueError("not normalised")
    except ValueError as exc:
        raise malformed(f"{where}.name", str(exc)) from None
    model = data["model"]
    if type(model) is not int or model not in MODELS:
        raise malformed(f"{where}.model", "expected 36, 48 or 72")
    urls_raw = data["urls"]
    if not isinstance(urls_raw, list) or len(urls_raw) > MAX_URLS:  # pyright: ignore[reportUnknownArgumentType]
        raise malformed(f"{where}.urls", f"expected a list of at most {MAX_URLS} URLs")
    urls: list[str] = []
    for index, raw in enumerate(urls_raw):  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
        url = valid_url(raw)
        if url is None:
            raise malformed(f"{where}.urls[{index}]", "expected http://address:port/")
        urls.append(url)
    if len(set(urls)) != len(urls):
        raise malformed(f"{where}.urls", "duplicate URL")
    currents = {
        key: _want_number(data, key, where, 0.0, MAX_CURRENT_A, null=True)
        for key in ("l1", "l2", "l3", "n")
    }
    source = data["source"]
    if not isinstance(source, str) or source not in SOURCES:
        raise malformed(f"{where}.source", f"expected one of {', '.join(SOURCES)}")
    alarms = data["alarms"]
    if type(alarms) is not int or not 0 <= alarms <= 10_000:
        raise malformed(f"{where}.alarms", "expected an integer in 0..10000")
    return UnitSummary(
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


def _parse_statement(value: object, where: str) -> tuple[Statement, float]:
    outer = _want_dict(value, where, _STATEMENT_KEYS)
    data = _want_dict(outer["unit"], f"{where}.unit", _UNIT_KEYS)
    summary = _parse_unit(data, f"{where}.unit")
    key, ctr, site, sig = data["key"], data["ctr"], data["site"], outer["sig"]
    if not isinstance(key, str) or not _HEX64.fullmatch(key):
        raise malformed(f"{where}.unit.key", "expected 64 hex digits")
    if type(ctr) is not int or not 0 < ctr < 1 << 53:
        raise malformed(f"{where}.unit.ctr", "expected a positive integer")
    if site is not None and (not isinstance(site, str) or not _HEX64.fullmatch(site)):
        raise malformed(f"{where}.unit.site", "expected null or 64 hex digits")
    if not isinstance(sig, str) or not _HEX128.fullmatch(sig):
        raise ExchangeError("unsigned", f"{where}: the signature is not 128 hex digits", 401)
    age = _want_number(outer, "age_s", where, 0.0, MAX_AGE_S)
    assert age is not None
    return Statement(summary, key, ctr, site, sig), age


def decode_envelope(body: bytes) -> Envelope:
    """Parse and validate one envelope, and check its sender's own signature; ExchangeError
    (never anything else) if it is not a well-formed protocol 2 envelope. Whether its keys
    are adopted, its counters new and its relayed statements genuine is the caller's."""
    if len(body) > MAX_BODY_BYTES:
        raise ExchangeError("oversize", f"{len(body)} bytes", 413)
    obj = parse_json_strict(body)
    if not isinstance(obj, dict):
        raise malformed("envelope", "expected an object")
    data: dict[str, Any] = obj  # pyright: ignore[reportUnknownVariableType]
    if data.get("v") != PROTOCOL_VERSION or type(data.get("v")) is not int:
        raise ExchangeError("version", f"expected peer protocol {PROTOCOL_VERSION}", 400)
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in _ENVELOPE_KEYS:
        raise malformed("envelope.kind", "expected request or response")
    data = _want_dict(data, "envelope", _ENVELOPE_KEYS[kind])
    sender = _want_unit_id(data["from"], "envelope.from")
    nonce = data["nonce"]
    if not isinstance(nonce, str) or not _HEX32.fullmatch(nonce):
        raise malformed("envelope.nonce", "expected 32 hex digits")
    echo: str | None = None
    if kind == "response":
        echo = data["echo"]
        if not isinstance(echo, str) or not _HEX32.fullmatch(echo):
            raise malformed("envelope.echo", "expected 32 hex digits")
    raw_units = data["units"]
    if not isinstance(raw_units, list) or not 1 <= len(raw_units) <= MAX_UNITS:  # pyright: ignore[reportUnknownArgumentType]
        raise malformed("envelope.units", f"expected 1..{MAX_UNITS} units")
    units = tuple(
        _parse_statement(raw, f"units[{i}]")
        for i, raw in enumerate(raw_units)  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
    )
    if units[0][0].summary.id != sender or units[0][1] != 0.0:
        raise malformed("envelope.units[0]", "must be the sender itself, age 0")
    if len({statement.summary.id for statement, _ in units}) != len(units):
        raise malformed("envelope.units", "a unit is listed twice")
    raw_trust = data["trust"]
    if not isinstance(raw_trust, list) or len(raw_trust) > MAX_RECORDS:  # pyright: ignore[reportUnknownArgumentType]
        raise malformed("envelope.trust", f"expected at most {MAX_RECORDS} records")
    try:
        trust = tuple(parse_record(raw) for raw in raw_trust)  # pyright: ignore[reportUnknownVariableType]
    except RecordError as exc:
        raise malformed("envelope.trust", str(exc)) from None
    if not units[0][0].verified():
        raise ExchangeError(
            "signature", f"{sender}: its own statement is not signed by its key", 401
        )
    return Envelope(kind, sender, nonce, echo, units, trust)  # pyright: ignore[reportArgumentType]


# ----------------------------------------------------------------------------- addresses


def web_url(address: str, port: int) -> str:
    """The web interface of a unit at ``address``."""
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
