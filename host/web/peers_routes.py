"""The peer exchange's HTTP routes: ``POST /api/v1/peers/exchange``, ``GET /api/v1/peers``,
and the admin's ``POST /api/v1/peers/adopt`` and ``POST /api/v1/peers/remove``.

The exchange is machine to machine and authenticated by the units' signatures, not by a
session; the status is read-only and guarded like the rest of the API; adopting and removing
a unit are changes (the admin's session and CSRF token). Nothing here can switch or trip
anything (R7): the exchange carries summaries only.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from host.domain import UNIT_ID_PATTERN
from host.peers.directory import PeerDirectory
from host.peers.envelope import EXCHANGE_PATH, MAX_BODY_BYTES, STATUS_PATH, ExchangeError
from host.peers.exchange import error_body, read_limited

PEERS = web.AppKey("smartpdu.peers", PeerDirectory)

Guard = Callable[[web.Request], Awaitable[Any]]
STATUS_GUARD: web.AppKey[Guard] = web.AppKey("smartpdu.peers.status_guard")
WRITE_GUARD: web.AppKey[Guard] = web.AppKey("smartpdu.peers.write_guard")
ADOPT_PATH = STATUS_PATH + "/adopt"
REMOVE_PATH = STATUS_PATH + "/remove"


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


def _error(status: int, message: str) -> web.Response:
    return web.Response(status=status, body=error_body(status, message),
                        content_type="application/json")  # fmt: skip


async def _write_request(request: web.Request) -> tuple[PeerDirectory, dict[str, Any]]:
    """The guarded body of an adopt/remove request: ``{"unit_id": ..., ...}``."""
    guard = request.app.get(WRITE_GUARD)
    if guard is None:  # the web layer's admin check (imported here: it imports this module)
        from host.web.app import require_write

        guard = require_write
    await guard(request)
    try:
        body = json.loads(await request.read() or b"{}")
    except ValueError:
        raise web.HTTPBadRequest(text=error_body(400, "expected a JSON object").decode(),
                                 content_type="application/json") from None  # fmt: skip
    unit_id = body.get("unit_id") if isinstance(body, dict) else None
    if not isinstance(unit_id, str) or not UNIT_ID_PATTERN.fullmatch(unit_id):
        message = error_body(400, "unit_id: expected smartPDU0A1B2C").decode()
        raise web.HTTPBadRequest(text=message, content_type="application/json")
    return request.app[PEERS], body  # pyright: ignore[reportUnknownVariableType]


async def adopt_handler(request: web.Request) -> web.Response:
    """``POST /api/v1/peers/adopt`` ``{"unit_id", "fingerprint"}``: the admin adopts a
    discovered unit, on every unit trusting this one."""
    directory, body = await _write_request(request)
    fingerprint = body.get("fingerprint")
    if fingerprint is not None and not isinstance(fingerprint, str):
        return _error(400, "fingerprint: expected text")
    try:
        unit = await directory.adopt(body["unit_id"], fingerprint)
    except KeyError:
        return _error(404, f"{body['unit_id']} is not listed here")
    except ValueError as exc:
        return _error(409, str(exc))
    return web.json_response(unit.to_row())


async def remove_handler(request: web.Request) -> web.Response:
    """``POST /api/v1/peers/remove`` ``{"unit_id"}``: un-adopt a unit, on every unit."""
    directory, body = await _write_request(request)
    try:
        await directory.remove(body["unit_id"])
    except KeyError:
        return _error(404, f"{body['unit_id']} is not adopted")
    return web.json_response({"unit_id": body["unit_id"], "trust": "removed"})


def add_routes(
    app: web.Application,
    directory: PeerDirectory,
    *,
    status_guard: Guard | None = None,
    write_guard: Guard | None = None,
) -> None:
    """Mount the exchange on the application that serves ``directory.web_port``.

    ``POST /api/v1/peers/exchange`` must stay reachable without a session (signatures are
    its authentication); ``status_guard`` (e.g. the web layer's read check) runs before
    ``GET /api/v1/peers``, ``write_guard`` (default: the web layer's admin + CSRF check)
    before adopting and removing."""
    app[PEERS] = directory
    if status_guard is not None:
        app[STATUS_GUARD] = status_guard
    if write_guard is not None:
        app[WRITE_GUARD] = write_guard
    app.router.add_post(EXCHANGE_PATH, exchange_handler)
    app.router.add_get(STATUS_PATH, status_handler)
    app.router.add_post(ADOPT_PATH, adopt_handler)
    app.router.add_post(REMOVE_PATH, remove_handler)


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
