"""Discovery: this unit's addresses and links, and mDNS (python-zeroconf) advertise + browse.

Every unit advertises itself under its unique name ``smartPDUxxxxxx``: a ``_smartpdu._tcp``
service for its peers, an ``_http._tcp`` service for browsers and LAN scanners, and the host
name ``smartPDUxxxxxx.local`` (the services' ``server``) resolving to its addresses. It
browses for the others' ``_smartpdu._tcp`` services and hands their addresses to the
exchange, whatever its site (units of any site are listed as discovered; adoption decides).
mDNS says nothing trusted: a name announced here is only an address to ask, goodbyes are not
believed (anyone can send one), presence is only ever proven by the signed exchange.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import ifaddr
from zeroconf import (
    InterfaceChoice,
    IPVersion,
    NonUniqueNameException,
    ServiceStateChange,
    Zeroconf,
)
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from host.domain import UNIT_ID_PATTERN
from host.peers.envelope import MAX_URLS, PROTOCOL_VERSION, valid_url, web_url
from host.peers.exchange import Exchange
from host.peers.identity import SiteKey

_LOG = logging.getLogger(__name__)

SERVICE_TYPE = "_smartpdu._tcp.local."
HTTP_SERVICE_TYPE = "_http._tcp.local."


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


# ----------------------------------------------------------------------------- mDNS


class Discovery:
    """This unit's addresses, its mDNS services, and the browser for the others'.

    ``port`` and ``model`` are read when the services are (re)registered; ``refresh_local``
    takes the local status once mDNS is up (the model in the TXT record); ``spawn`` runs a
    background task owned by the directory."""

    def __init__(
        self,
        unit_id: str,
        key: SiteKey,
        version: str,
        exchange: Exchange,
        stats: dict[str, int],
        *,
        port: Callable[[], int],
        model: Callable[[], int],
        refresh_local: Callable[[], None],
        spawn: Callable[[Coroutine[Any, Any, None], str], None],
        clock: Callable[[], float],
        addresses: Sequence[str] | None = None,
    ) -> None:
        self.unit_id = unit_id
        self.key = key
        self.version = version
        self.exchange = exchange
        self.stats = stats
        self.addresses: tuple[str, ...] = ()
        self.mdns_error: str | None = None
        self._port = port
        self._model = model
        self._refresh_local = refresh_local
        self._spawn = spawn
        self._clock = clock
        self._fixed_addresses = tuple(addresses) if addresses is not None else None
        self._links: tuple[str, ...] = ()
        self._register_lock = asyncio.Lock()
        self._zc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._infos: list[AsyncServiceInfo] = []

    def look(self) -> None:
        """Take this unit's addresses and links as they are now (at start)."""
        self.addresses = self._current_addresses()
        self._links = link_state()

    def _current_addresses(self) -> tuple[str, ...]:
        if self._fixed_addresses is not None:
            return self._fixed_addresses
        try:
            return tuple(local_ipv4_addresses())
        except OSError as exc:
            _LOG.warning("cannot list network addresses: %s", exc)
            return self.addresses

    async def check_network(self) -> None:
        """Follow the network: DHCP answering after start, a changed link-local address, a
        cable plugged in (hot-connect: announce again and ask again at once, rather than
        waiting for mDNS's next scheduled query, which backs off to an hour)."""
        addresses = self._current_addresses()
        links = link_state()
        if addresses != self.addresses:
            _LOG.info("addresses now %s", ", ".join(addresses) or "none")
            self.addresses = addresses
            self._links = links
            self.exchange.drop_own(addresses, self._port())
            if self._zc is not None:
                with contextlib.suppress(Exception):
                    await self._zc.async_update_interfaces()
                await self._register()
                await self._restart_browser()
            self.exchange.contact_all_now()
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
            self.exchange.contact_all_now()

    def _service_infos(self) -> list[AsyncServiceInfo]:
        server = f"{self.unit_id}.local."
        model = str(self._model())
        properties = {
            "id": self.unit_id,
            "proto": str(PROTOCOL_VERSION),
            "ver": self.version,
            "port": str(self._port()),
            "model": model,
            "site": self.key.tag,
            "auth": "1" if self.key.enabled else "0",
            "path": "/",
        }
        addresses = list(self.addresses)
        return [
            AsyncServiceInfo(
                SERVICE_TYPE,
                f"{self.unit_id}.{SERVICE_TYPE}",
                port=self._port(),
                properties=properties,
                server=server,
                parsed_addresses=addresses,
            ),
            AsyncServiceInfo(
                HTTP_SERVICE_TYPE,
                f"{self.unit_id}.{HTTP_SERVICE_TYPE}",
                port=self._port(),
                properties={"path": "/", "id": self.unit_id, "model": model},
                server=server,
                parsed_addresses=addresses,
            ),
        ]

    def start(self) -> None:
        try:
            self._zc = AsyncZeroconf(interfaces=InterfaceChoice.All, ip_version=IPVersion.V4Only)
            self._browser = AsyncServiceBrowser(
                self._zc.zeroconf, [SERVICE_TYPE], handlers=[self._on_service]
            )
        except OSError as exc:
            self.mdns_error = f"mDNS unavailable: {exc}"
            _LOG.error("%s; only peers.static and gossip will find units", self.mdns_error)
            self._zc = None
            return
        with contextlib.suppress(Exception):
            self._refresh_local()
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
            self.mdns_error = f"mDNS browsing failed: {exc}"
            _LOG.error("%s", self.mdns_error)

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
            if not self.addresses:
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
            self.mdns_error = None
        except Exception as exc:
            self.mdns_error = f"mDNS registration failed: {exc}"
            _LOG.error("%s", self.mdns_error)

    async def stop(self) -> None:
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
            self.exchange.drop_origin(f"mdns:{name}")
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
                self.exchange.add_endpoint(url, f"mdns:{name}", due=self._clock())
