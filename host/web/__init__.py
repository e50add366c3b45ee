"""The web monitoring interface: aiohttp server, JSON API, live WebSocket, static page.

The service starts it with ``stop = await start_web(parts)`` and ends it with
``await stop()``; ``stop.port`` / ``stop.url`` say where it listens (port 0 in the config
picks a free one, which tests use).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from aiohttp import web

from host.config import ServiceConfig
from host.state import UnitState
from host.storage.store import Storage
from host.web.app import CONTEXT, HUB, WebContext, create_app

__all__ = ["CONTEXT", "HUB", "WebContext", "WebHandle", "create_app", "start_web"]

_LOG = logging.getLogger(__name__)
SHUTDOWN_TIMEOUT_S = 2.0


class ServicePartsLike(Protocol):
    """What ``start_web`` reads of ``host.service.ServiceParts``."""

    @property
    def config(self) -> ServiceConfig: ...
    @property
    def state(self) -> UnitState: ...
    @property
    def storage(self) -> Storage: ...
    @property
    def panels(self) -> Mapping[str, Any]: ...
    @property
    def peers(self) -> Any: ...  # host.peers.directory.PeerDirectory | None


class WebHandle:
    """The running web server; awaiting it (``await handle()``) stops it."""

    def __init__(self, runner: web.AppRunner, app: web.Application, port: int, host: str) -> None:
        self.runner = runner
        self.app = app
        self.port = port
        self.host = host

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    @property
    def context(self) -> WebContext:
        return self.app[CONTEXT]

    async def __call__(self) -> None:
        await self.runner.cleanup()


async def start_web(parts: ServicePartsLike) -> WebHandle:
    """Serve the web interface of ``parts`` on ``config.web.host:port``."""
    config = parts.config
    number = await parts.storage.unit_number(parts.state.unit_id)
    context = WebContext.for_service(
        config, parts.state, parts.storage, number=number, panels=parts.panels
    )
    app = create_app(context, peers=getattr(parts, "peers", None))
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    site = web.TCPSite(runner, config.web.host, config.web.port, reuse_address=True)
    await site.start()
    port = config.web.port
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:  # pyright: ignore[reportUnknownArgumentType]
            port = int(address[1])  # pyright: ignore[reportUnknownArgumentType]
            break
    handle = WebHandle(runner, app, port, config.web.host)
    _LOG.info("web interface on %s", handle.url)
    return handle
