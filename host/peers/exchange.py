"""The exchange over HTTP: contacting every known address, answering the others' requests.

Every ``exchange_s`` (1 s) a unit POSTs to every address it knows ``/api/v1/peers/exchange``
with an envelope (``host.peers.envelope``): its own summary and those of every unit it
knows, each with its age. The answer is the other unit's envelope. Both learn from both, so
a unit that sees one peer learns all the peers that peer knows (and their addresses, which it
then contacts directly). There is no master: every unit holds the whole list.

A request is taken once: its sender's own statement carries a counter that must be newer than
the last one taken from that unit (no clock needed: Pis without network time disagree about
the time); an answer must echo the nonce of one of this unit's own requests. A request from a
unit proves it is up: its addresses are contacted at once, whatever their backoff. Refused
envelopes are counted in the directory's stats.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from host.peers.envelope import (
    EXCHANGE_PATH,
    MAX_BODY_BYTES,
    Envelope,
    ExchangeError,
    Kind,
    Statement,
    UnitSummary,
    decode_envelope,
    encode_envelope,
    malformed,
    web_url,
)
from host.peers.identity import Identity, SiteKey
from host.peers.known import KnownUnits
from host.peers.settings import PeerSettings

_LOG = logging.getLogger(__name__)

MAX_VIEW_BYTES = 4 * 1024 * 1024  # a peer's full view fetched for panes B-D
MAX_ENDPOINTS = 256
REJECT_LOG_EVERY_S = 60.0
_VIEW_PART = re.compile(r"(?:[a-z][a-z0-9_-]{0,31})(?:/[a-z0-9_-]{1,32}){0,3}")


class PeerUnavailable(Exception):
    """A peer's data could not be fetched (unknown, unreachable, or not answering)."""


@dataclass
class Endpoint:
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


def error_body(status: int, message: str) -> bytes:
    return json.dumps({"error": {"status": status, "message": message}}).encode()


async def read_limited(stream: aiohttp.StreamReader, limit: int) -> bytes | None:
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


class Exchange:
    """The addresses to contact, the signed exchange with them, and replay protection.

    ``local`` is this unit's own summary (first in every envelope), ``is_own_url`` says
    whether an address is this unit, ``notify`` is called when a merge changed pane A."""

    def __init__(
        self,
        unit_id: str,
        identity: Identity,
        site: SiteKey,
        settings: PeerSettings,
        known: KnownUnits,
        stats: dict[str, int],
        *,
        local: Callable[[], UnitSummary],
        is_own_url: Callable[[str], bool],
        notify: Callable[[], None],
        clock: Callable[[], float],
        wall: Callable[[], float],
    ) -> None:
        self.unit_id = unit_id
        self.identity = identity
        self.site_proof = site.proof(unit_id, identity.public_hex)
        self.settings = settings
        self.known = known
        self.stats = stats
        self.endpoints: dict[str, Endpoint] = {}
        self._local = local
        self._is_own_url = is_own_url
        self._notify = notify
        self._clock = clock
        self._wall = wall
        self._outstanding: set[str] = set()  # nonces of our requests awaiting an answer
        self._reject_logged: dict[str, float] = {}
        self._session: aiohttp.ClientSession | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self, version: str) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=64, limit_per_host=2),
            headers={"User-Agent": f"smartPDU-peers/{version}"},
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- serving -----------------------------------------------------------------------------

    async def handle(self, body: bytes, remote: str | None = None) -> tuple[int, bytes]:
        """Answer one ``POST /api/v1/peers/exchange``: (HTTP status, JSON body). Never raises
        for anything a client sends."""
        try:
            envelope = decode_envelope(body)
            if envelope.kind != "request":
                raise malformed("envelope.kind", "expected a request")
        except ExchangeError as exc:
            self.refuse(exc, remote)
            return exc.status, error_body(exc.status, str(exc))
        except Exception:  # a bug here must not take the web server down with it
            _LOG.exception("peer exchange from %s: unexpected error", remote)
            self.stats["internal_errors"] += 1
            return 400, error_body(400, "malformed exchange")
        if envelope.sender == self.unit_id:
            if envelope.nonce in self._outstanding:
                # Our own request come back (a static entry or a second address of ours):
                # answer it, so the poller finds out that address is this unit.
                return 200, self.envelope("response", echo=envelope.nonce)[0]
            exc = ExchangeError(
                "self", "another unit uses this unit's id (two units configured alike?)", 409
            )
            self.refuse(exc, remote)
            return exc.status, error_body(exc.status, str(exc))
        if self.known.classify(envelope.own) is None:
            exc = ExchangeError("impostor", f"{envelope.sender} signs with another key", 409)
            self.refuse(exc, remote)
            return exc.status, error_body(exc.status, str(exc))
        if self.known.is_replay(envelope.own):
            exc = ExchangeError("replay", f"an old statement of {envelope.sender}", 409)
            self.refuse(exc, remote)
            return exc.status, error_body(exc.status, str(exc))
        self.stats["requests_ok"] += 1
        await self._merge(envelope, answered_url=None)
        if envelope.sender in self.known.by_id:  # it is up: contact it now, whatever backoff
            for url in envelope.own.summary.urls:
                self.add_endpoint(url, "gossip", due=self._clock(), reset=True)
        answer, _ = self.envelope("response", echo=envelope.nonce)
        return 200, answer

    # -- contacting --------------------------------------------------------------------------

    def due(self, now: float) -> list[Endpoint]:
        """The endpoints to contact now, marked busy until their poll ends."""
        out: list[Endpoint] = []
        for endpoint in list(self.endpoints.values()):
            if not endpoint.busy and not endpoint.is_self and endpoint.next_at <= now:
                endpoint.busy = True
                out.append(endpoint)
        return out

    async def poll(self, endpoint: Endpoint) -> None:
        """One request to ``endpoint`` and the merge of its answer; schedules the next."""
        session = self._session
        if session is None:
            return
        body, nonce = self.envelope("request")
        self._outstanding.add(nonce)
        try:
            envelope = await self._post(session, endpoint, body, nonce)
            if envelope.sender == self.unit_id:
                endpoint.is_self = True
                endpoint.unit_id = self.unit_id
                return
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

    async def _post(
        self, session: aiohttp.ClientSession, endpoint: Endpoint, body: bytes, nonce: str
    ) -> Envelope:
        """The verified answer to our request ``body``; refusals counted, then raised."""
        timeout = aiohttp.ClientTimeout(total=self.settings.request_timeout_s)
        try:
            async with session.post(
                endpoint.url + EXCHANGE_PATH.lstrip("/"),
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=timeout,
            ) as response:
                raw = await read_limited(response.content, MAX_BODY_BYTES)
                if response.status != 200:
                    raise ExchangeError("http", f"HTTP {response.status}", 502)
            if raw is None:
                raise ExchangeError("oversize", "answer too large", 413)
            envelope = decode_envelope(raw)
            if envelope.kind != "response" or envelope.echo != nonce:
                raise ExchangeError("echo", "an answer that is not to our request")
            if envelope.sender != self.unit_id and self.known.classify(envelope.own) is None:
                raise ExchangeError("impostor", f"{envelope.sender} answers with another key")
        except ExchangeError as exc:
            if exc.reason != "http":
                self.refuse(exc, endpoint.url)
            raise
        return envelope

    def _interval(self, endpoint: Endpoint) -> float:
        """Every exchange_s; a second address of a unit answering elsewhere: retry_s."""
        if endpoint.unit_id is not None:
            known = self.known.get(endpoint.unit_id)
            if (
                known is not None
                and known.answered_url not in (None, endpoint.url)
                and known.answered_at is not None
                and self._clock() - known.answered_at < self.settings.offline_after_s
            ):
                return self.settings.retry_s
        return self.settings.exchange_s

    def envelope(self, kind: Kind, echo: str | None = None) -> tuple[bytes, str]:
        """Our signed envelope (ourselves first, then who we know) and its nonce."""
        own = Statement.sign(self._local(), self.identity, self.site_proof)
        units: list[tuple[Statement, float]] = [(own, 0.0)]
        units += self.known.relayed(self._clock())
        trust = self.known.trust.wire()
        return encode_envelope(kind, self.unit_id, units, trust, echo=echo)

    async def _merge(self, envelope: Envelope, answered_url: str | None) -> None:
        if await self.known.merge(envelope, answered_url, self._add_gossip):
            self._notify()

    def _add_gossip(self, url: str) -> None:
        self.add_endpoint(url, "gossip")

    # -- endpoints ---------------------------------------------------------------------------

    def add_endpoint(
        self, url: str, origin: str, due: float | None = None, *, reset: bool = False
    ) -> None:
        """Contact ``url`` (``due``: from then on; ``reset``: it is known to be up)."""
        endpoint = self.endpoints.get(url)
        if endpoint is None:
            if len(self.endpoints) >= MAX_ENDPOINTS:
                self.log_reject("endpoints", f"more than {MAX_ENDPOINTS} addresses; {url} ignored")
                return
            if self._is_own_url(url):
                return  # ourselves
            now = self._clock()
            endpoint = Endpoint(url, next_at=now if due is None else due, added_at=now)
            self.endpoints[url] = endpoint
        elif due is not None and not endpoint.busy:
            endpoint.next_at = min(endpoint.next_at, due)  # announced again, or it spoke
            if reset:
                endpoint.failures = 0
        endpoint.origins.add(origin)

    def drop_origin(self, origin: str) -> None:
        """No endpoint comes from ``origin`` any more (an mDNS service gone)."""
        for endpoint in self.endpoints.values():
            endpoint.origins.discard(origin)

    def drop_own(self, addresses: tuple[str, ...], port: int) -> None:
        """Forget the endpoints that are now this unit's own addresses."""
        for url in [web_url(a, port) for a in addresses]:
            self.endpoints.pop(url, None)

    def contact_all_now(self) -> None:
        now = self._clock()
        for endpoint in self.endpoints.values():
            if not endpoint.busy:
                endpoint.next_at = min(endpoint.next_at, now)

    def prune(self, now: float, wanted: set[str]) -> None:
        """Drop addresses nobody announces any more (``wanted``: the known units' ones)."""
        for url, endpoint in list(self.endpoints.items()):
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
                del self.endpoints[url]

    def endpoint_rows(self, now: float) -> list[dict[str, Any]]:
        return [
            {
                "url": ep.url,
                "unit_id": ep.unit_id,
                "origins": sorted(ep.origins),
                "self": ep.is_self,
                "failures": ep.failures,
                "last_ok_s": None if ep.last_ok is None else round(now - ep.last_ok, 1),
                "last_error": ep.last_error,
            }
            for ep in self.endpoints.values()
        ]

    # -- refusals ----------------------------------------------------------------------------

    def refuse(self, exc: ExchangeError, remote: str | None) -> None:
        """Count and (rate-limited) log one refused envelope."""
        key = f"rejected_{exc.reason}"
        if key in self.stats:
            self.stats[key] += 1
        self.log_reject(exc.reason, f"from {remote or 'unknown'}: {exc.detail}")

    def log_reject(self, reason: str, message: str) -> None:
        now = self._clock()
        if now - self._reject_logged.get(reason, -math.inf) >= REJECT_LOG_EVERY_S:
            self._reject_logged[reason] = now
            _LOG.warning("peer exchange refused (%s) %s (logged once a minute)", reason, message)

    # -- a peer's own data -------------------------------------------------------------------

    async def fetch_unit(
        self, unit_id: str, part: str = "view", params: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """A peer's own JSON for panes B-D: ``GET {url}api/v1/units/{unit_id}/{part}``
        (``part`` "" for the status document, "view" for the whole view, "channels", ...;
        ``params`` as the query). Raises KeyError for a unit not known, ValueError for a
        malformed ``part`` and PeerUnavailable when none of its addresses answers with a
        JSON object (the peer's own error is in the message)."""
        known = self.known.get(unit_id)
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
                    raw = await read_limited(response.content, MAX_VIEW_BYTES)
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
