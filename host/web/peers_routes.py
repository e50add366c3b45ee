"""The peer exchange's HTTP routes: ``POST /api/v1/peers/exchange`` and ``GET /api/v1/peers``.

The exchange is machine to machine and authenticated by the envelope's HMAC, not by a
session; the status is read-only and guarded like the rest of the API. Nothing here can
switch or trip anything (R7): the exchange carries summaries only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from host.peers.directory import PeerDirectory
from host.peers.envelope import EXCHANGE_PATH, MAX_BODY_BYTES, STATUS_PATH, ExchangeError
from host.peers.exchange import error_body, read_limited

PEERS = web.AppKey("smartpdu.peers", PeerDirectory)

Guard = Callable[[web.Request], Awaitable[Any]]
STATUS_GUARD: web.AppKey[Guard] = web.AppKey("smartpdu.peers.status_guard")


async def exchange_handler(request: web.Request) -> web.Response:
    """``POST /api/v1/peers/exchange``: authenticated by the envelope's HMAC, not by a
    session (no cookie, no CSRF token: it is machine to machine)."""
    directory = request.app[PEERS]
    length = request.content_length
    body = None
    if length is None or length <= MAX_BODY_BYTES:
        body = await read_limited(request.content, MAX_BODY_BYTES)
    if body is None:
        directory.refuse(ExchangeError("oversize", f"more than {MAX_BODY_BYTES} bytes", 413),
                         request.remote)  # fmt: skip
        return web.Response(
            status=413,
            body=error_body(413, f"an exchange is at most {MAX_BODY_BYTES} bytes"),
            content_type="application/json",
            headers={"Connection": "close"},
        )
    status, payload = await directory.handle_exchange(body, request.remote)
    return web.Response(status=status, body=payload, content_type="application/json")


async def status_handler(request: web.Request) -> web.Response:
    """``GET /api/v1/peers``: the directory's counters and addresses (read-only)."""
    guard = request.app.get(STATUS_GUARD)
    if guard is not None:
        await guard(request)
    return web.json_response(request.app[PEERS].status())


def add_routes(
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
