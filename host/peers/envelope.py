"""The envelope two smartPDUs exchange: its schema, canonical JSON, HMAC and strict parsing.

Pure: no I/O, no asyncio. The exchange (``host.peers.exchange``) sends and answers these.

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

The HMAC key is derived from the site key (``peers.site_key``); with an empty site key a
fixed key is used (integrity, no authentication). Every field is checked against a strict
schema (exact key sets, types, ranges, plain-text names of at most 32 characters,
``http://`` URLs of a literal address or host name only); anything else raises
:class:`ExchangeError` and is dropped whole.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import math
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard

from host.domain import LABEL_MAX_CHARS, UNIT_ID_PATTERN, validate_label

PROTOCOL_VERSION = 1
EXCHANGE_PATH = "/api/v1/peers/exchange"
STATUS_PATH = "/api/v1/peers"

MAX_BODY_BYTES = 128 * 1024  # an envelope of MAX_UNITS units is about 40 kB
MAX_UNITS = 100  # in one envelope, and known at once
MAX_URLS = 4
MAX_CURRENT_A = 10_000.0
MAX_AGE_S = 10_000_000.0

_SIG_DOMAIN = b"smartpdu-peers/1\n"
_KEY_LABEL = b"smartPDU peer exchange v1"
_OPEN_SECRET = "smartPDU open peer exchange (no site key)"
_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9-]{1,63})*")
_URL = re.compile(r"http://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})/")
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


class ExchangeError(Exception):
    """An envelope refused; ``reason`` is the counter it is counted under."""

    def __init__(self, reason: str, detail: str, status: int = 400) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.status = status


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


def _parse_unit(value: object, where: str) -> tuple[UnitSummary, float]:
    data = _want_dict(value, where, _UNIT_KEYS)
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
        raise malformed("envelope", "expected an object")
    data: dict[str, Any] = obj  # pyright: ignore[reportUnknownVariableType]
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in _ENVELOPE_KEYS:
        raise malformed("envelope.kind", "expected request or response")
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
        raise malformed("envelope.v", f"expected protocol version {PROTOCOL_VERSION}")
    sender = _want_unit_id(data["from"], "envelope.from")
    ts = _want_number(data, "ts", "envelope", 0.0, 1e11)
    assert ts is not None
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
        _parse_unit(raw, f"units[{i}]")
        for i, raw in enumerate(raw_units)  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
    )
    if units[0][0].id != sender or units[0][1] != 0.0:
        raise malformed("envelope.units[0]", "must be the sender itself, age 0")
    if len({summary.id for summary, _ in units}) != len(units):
        raise malformed("envelope.units", "a unit is listed twice")
    return Envelope(kind, sender, ts, nonce, echo, units)  # pyright: ignore[reportArgumentType]


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
