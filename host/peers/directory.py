"""The peer directory: discovery, the exchange and the known units of one smartPDU, run as one.

:class:`PeerDirectory` is what the service and the web layer hold: it starts mDNS
(``host.peers.discovery``), contacts and answers the other units (``host.peers.exchange``),
keeps the list of known units (``host.peers.known``) and tells listeners when pane A
changed, and holds this unit's key pair (``host.peers.identity``) and the site's trust set
(``host.peers.trust``): :meth:`PeerDirectory.adopt` and :meth:`PeerDirectory.remove` are the
admin's. The HTTP routes are ``host.web.peers_routes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import math
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any

from host.domain import UNIT_ID_PATTERN
from host.peers.discovery import Discovery
from host.peers.envelope import (
    MAX_URLS,
    PROTOCOL_VERSION,
    ExchangeError,
    LocalStatus,
    UnitSummary,
    static_url,
    web_url,
)
from host.peers.exchange import Exchange
from host.peers.identity import Identity, SiteKey
from host.peers.known import KnownUnits, MemoryNumbering, Numbering, PeerUnit
from host.peers.settings import STAT_KEYS, PeerSettings
from host.peers.trust import TrustSet

_LOG = logging.getLogger(__name__)

LOCAL_CACHE_S = 0.2  # the local status is taken at most this often for envelopes


def app_version() -> str:
    try:
        return importlib.metadata.version("smartpdu")
    except importlib.metadata.PackageNotFoundError:
        return "0"


class PeerDirectory:
    """Every other smartPDU this one knows, kept current by mDNS and the signed exchange.

    ``local`` returns this unit's own status (called for every envelope sent). ``data_dir``
    keeps the key pair and the trust set (None: a new key in memory, or ``identity``). Start with
    ``await start()`` (or ``async with``, or run ``run()`` as a task), mount
    ``host.web.peers_routes.add_routes`` on the web application that serves ``web_port``.
    """

    def __init__(
        self,
        unit_id: str,
        *,
        site_key: str = "",
        web_port: int,
        local: Callable[[], LocalStatus],
        numbering: Numbering | None = None,
        settings: PeerSettings | None = None,
        addresses: Sequence[str] | None = None,
        data_dir: Path | None = None,
        identity: Identity | None = None,
        version: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if not UNIT_ID_PATTERN.fullmatch(unit_id):
            raise ValueError(f"{unit_id!r} is not a unit id like smartPDU0A1B2C")
        self.unit_id = unit_id
        self.key = SiteKey(site_key)
        if identity is None:
            identity = Identity.load(data_dir) if data_dir is not None else Identity.generate()
        self.identity = identity
        self.trust = TrustSet(unit_id, identity, data_dir)
        self.web_port = web_port
        self.settings = settings or PeerSettings()
        self.version = version or app_version()
        self.stats: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)
        self.started = False
        self._local = local
        self._clock = clock
        self._listeners: list[Callable[[], None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._last_local: LocalStatus = LocalStatus()
        self._last_local_at = -math.inf
        self.known = KnownUnits(
            unit_id,
            self.settings,
            numbering or MemoryNumbering(),
            self.stats,
            clock,
            trust=self.trust,
            site=self.key,
        )
        self.exchange = Exchange(
            unit_id,
            identity,
            self.key,
            self.settings,
            self.known,
            self.stats,
            local=self._local_summary,
            is_own_url=self._is_own_url,
            notify=self._notify,
            clock=clock,
            wall=wall,
        )
        self.discovery = Discovery(
            unit_id,
            self.key,
            self.version,
            self.exchange,
            self.stats,
            port=lambda: self.web_port,
            model=lambda: self._last_local.model,
            refresh_local=self._refresh_local,
            spawn=self._spawn,
            clock=clock,
            addresses=addresses,
        )

    # -- what the web layer reads ------------------------------------------------------------

    @property
    def number(self) -> int | None:
        """This unit's own number in detection order."""
        return self.known.number

    @number.setter
    def number(self, value: int | None) -> None:
        self.known.number = value

    def units(self) -> list[PeerUnit]:
        """Every other unit known, in detection order."""
        return self.known.units()

    def rows(self) -> list[dict[str, Any]]:
        """``units()`` as ``GET /api/v1/units`` rows (a ``UnitDirectory`` peer source)."""
        return [unit.to_row() for unit in self.units()]

    @property
    def addresses(self) -> tuple[str, ...]:
        """This unit's IPv4 addresses, as advertised."""
        return self.discovery.addresses

    @property
    def urls(self) -> tuple[str, ...]:
        """This unit's web interface at each of its addresses."""
        return tuple(web_url(a, self.web_port) for a in self.addresses[:MAX_URLS])

    def get(self, unit_id: str) -> PeerUnit | None:
        known = self.known.get(unit_id)
        return None if known is None else self.known.peer_unit(known, self._clock())

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
        """A peer's own JSON for panes B-D (see :meth:`Exchange.fetch_unit`)."""
        return await self.exchange.fetch_unit(unit_id, part, params)

    def status(self) -> dict[str, Any]:
        """Counters and endpoints, for ``GET /api/v1/peers`` and diagnostics."""
        return {
            "unit_id": self.unit_id,
            "number": self.number,
            "protocol": PROTOCOL_VERSION,
            "fingerprint": self.identity.fingerprint,
            "public_key": self.identity.public_hex,
            "authenticated": self.key.enabled,  # a site key adopts the units proving it
            "site": self.key.tag,
            "addresses": list(self.addresses),
            "mdns": {"enabled": self.settings.mdns, "error": self.discovery.mdns_error},
            "units": len(self.known),
            "adopted": sum(1 for u in self.known.by_id.values() if u.trust == "adopted"),
            "reachable": self.known.reachable_count(),
            "trust": self.trust.rows(),
            "stats": dict(self.stats),
            "endpoints": self.exchange.endpoint_rows(self._clock()),
        }

    # -- adoption ----------------------------------------------------------------------------

    async def adopt(self, unit_id: str, fingerprint: str | None = None) -> PeerUnit:
        """Adopt a discovered unit (``fingerprint``: the one the admin saw, which must still
        be its key's). KeyError: not listed; ValueError: its key is not that one."""
        known = self.known.get(unit_id)
        if known is None:
            raise KeyError(unit_id)
        unit = self.known.peer_unit(known, self._clock())
        if fingerprint is not None and fingerprint != unit.fingerprint:
            raise ValueError(f"{unit_id} now has the key {unit.fingerprint}, not {fingerprint}")
        self.trust.adopt(unit_id, known.statement.key)
        await self._trust_changed()
        return self.known.peer_unit(known, self._clock())

    async def remove(self, unit_id: str) -> None:
        """Un-adopt ``unit_id`` on every unit trusting this one. KeyError: not adopted."""
        if not self.trust.remove(unit_id):
            raise KeyError(unit_id)
        await self._trust_changed()

    async def _trust_changed(self) -> None:
        await self.known.retrust()
        self._notify()
        self.exchange.contact_all_now()  # the records travel now, not at the next poll

    # -- the exchange's HTTP side ------------------------------------------------------------

    async def handle_exchange(self, body: bytes, remote: str | None = None) -> tuple[int, bytes]:
        """Answer one ``POST /api/v1/peers/exchange``: (HTTP status, JSON body). Never raises
        for anything a client sends."""
        return await self.exchange.handle(body, remote)

    def refuse(self, exc: ExchangeError, remote: str | None) -> None:
        """Count and (rate-limited) log one refused envelope."""
        self.exchange.refuse(exc, remote)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self.started:
            return
        self.started = True
        self.exchange.open(self.version)
        self.number = await self.known.number_of(self.unit_id)
        self.discovery.look()
        for entry in self.settings.static:
            url = static_url(entry)
            if url is None:
                _LOG.warning("peers.static: %r is not host:port, ignored", entry)
            else:
                self._add_endpoint(url, "static", due=0.0)
        self._loop_task = asyncio.create_task(self._loop(), name="peers-loop")
        if self.settings.mdns:
            self.discovery.start()

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
        await self.discovery.stop()
        await self.exchange.close()

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

    # -- internals ---------------------------------------------------------------------------

    def _add_endpoint(self, url: str, origin: str, due: float | None = None) -> None:
        self.exchange.add_endpoint(url, origin, due)

    def _is_own_url(self, url: str) -> bool:
        return url in {web_url(a, self.web_port) for a in self.addresses}

    def _refresh_local(self) -> None:
        self._last_local = self._local()

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

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _LOG.error("peer task %s failed", task.get_name(), exc_info=task.exception())

    def _notify(self) -> None:
        for callback in list(self._listeners):
            try:
                callback()
            except Exception:
                _LOG.exception("peer change listener failed")

    async def _loop(self) -> None:
        next_housekeeping = 0.0
        next_network = self._clock() + self.settings.network_check_s
        while True:
            try:
                now = self._clock()
                for endpoint in self.exchange.due(now):
                    self._spawn(self.exchange.poll(endpoint), f"peers-poll {endpoint.url}")
                if self.known.update_reachability(now):
                    self._notify()
                if now >= next_network:
                    next_network = now + self.settings.network_check_s
                    await self.discovery.check_network()
                if now >= next_housekeeping:
                    next_housekeeping = now + 1.0
                    self._housekeeping(now)
            except Exception:  # a bug or a failing mDNS stack: log it, keep exchanging
                _LOG.exception("peer directory loop")
                self.stats["internal_errors"] += 1
                await asyncio.sleep(1.0)
            await asyncio.sleep(0.1)

    def _housekeeping(self, now: float) -> None:
        gone = self.known.forget_silent(now)
        if gone:
            self._notify()
        self.exchange.prune(now, self.known.urls())
