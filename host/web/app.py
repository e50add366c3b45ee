"""The aiohttp application of the web monitoring interface (R7, R10-R12).

``create_app(context)`` builds it from a :class:`WebContext` (the unit state, the storage,
the virtual panels, the admin login); ``host.web.start_web`` runs it inside the aggregator.
Everything the handlers share hangs off typed ``AppKey``s; the live hub runs as a
``cleanup_ctx`` background task. Nothing here can switch or trip anything (R7), and a
failing handler only fails its own request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from host.config import ServiceConfig
from host.peers.directory import PeerDirectory
from host.state import UnitState
from host.storage.schema import StorageError
from host.storage.store import Storage
from host.web import frontpanel_routes, metrics_routes
from host.web.auth import (
    CSRF_HEADER,
    SESSION_COOKIE,
    PasswordFile,
    Session,
    SessionStore,
    csrf_ok,
)
from host.web.live import LiveHub, PanelSource
from host.web.pacing import REFRESH_S
from host.web.peers_routes import add_routes as add_peer_routes
from host.web.throttle import LoginThrottle
from host.web.units import UnitDirectory

_LOG = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent
STATIC_DIR = WEB_DIR / "static"
OPENAPI_FILE = WEB_DIR / "openapi.yaml"
API_PREFIX = "/api/v1"
MAX_BODY_BYTES = 16 * 1024

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


class PressablePanel(PanelSource, Protocol):
    """A virtual board's panel (``tools.virtual.vboard.VirtualBoard``)."""

    async def press(self, button: int, hold_ms: int = 120) -> None: ...


@dataclass
class WebContext:
    """What the web layer reads and writes."""

    config: ServiceConfig
    state: UnitState
    storage: Storage
    number: int | None = None  # this unit's number in detection order
    panels: Mapping[str, Any] = field(default_factory=dict)  # group -> PanelLink
    passwords: PasswordFile = field(default_factory=lambda: PasswordFile(None))
    sessions: SessionStore = field(default_factory=SessionStore)
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    directory: UnitDirectory | None = None
    live_min_interval_s: float = 0.05
    live_refresh_s: float = REFRESH_S

    def __post_init__(self) -> None:
        if self.directory is None:
            self.directory = UnitDirectory(self.number)

    @property
    def units(self) -> UnitDirectory:
        assert self.directory is not None
        return self.directory

    @classmethod
    def for_service(
        cls,
        config: ServiceConfig,
        state: UnitState,
        storage: Storage,
        *,
        number: int | None,
        panels: Mapping[str, Any] | None = None,
    ) -> WebContext:
        path = config.web.admin_password_file
        if path is None:
            path = config.storage.var_dir / "admin-password"
        return cls(
            config=config,
            state=state,
            storage=storage,
            number=number,
            panels=dict(panels or {}),
            passwords=PasswordFile(path),
        )


CONTEXT = web.AppKey("smartpdu.context", WebContext)
HUB = web.AppKey("smartpdu.live_hub", LiveHub)


# ----------------------------------------------------------------------------- errors


def error_body(status: int, message: str, **extra: Any) -> str:
    return json.dumps({"error": {"status": status, "message": message, **extra}})


def http_error(
    kind: type[web.HTTPError], message: str, *, headers: Mapping[str, str] | None = None
) -> web.HTTPError:
    """An aiohttp HTTP error with the API's JSON body."""
    return kind(
        text=error_body(kind.status_code, message),
        content_type="application/json",
        headers=headers,
    )


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """API errors are JSON; an unexpected exception is logged and answered 500 (and a test
    fails: the fuzz run asserts there are none)."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if not request.path.startswith(API_PREFIX) or exc.content_type == "application/json":
            raise
        if exc.status_code < 400:
            raise
        message = exc.reason if not exc.text or exc.text.startswith(f"{exc.status}:") else exc.text
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return web.Response(
            status=exc.status_code,
            text=error_body(exc.status_code, message),
            content_type="application/json",
            headers=headers,
        )
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except StorageError as exc:
        return web.Response(
            status=503,
            text=error_body(503, f"the database is not available: {exc}"),
            content_type="application/json",
        )
    except Exception:
        _LOG.exception("web request %s %s failed", request.method, request.path)
        return web.Response(
            status=500,
            text=error_body(500, "internal error (logged); monitoring continues"),
            content_type="application/json",
        )


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.path.startswith(API_PREFIX) or request.path == "/":
        response.headers.setdefault("Cache-Control", "no-store")
    elif request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-cache")


# ----------------------------------------------------------------------------- access


def context_of(request: web.Request) -> WebContext:
    return request.app[CONTEXT]


def session_of(request: web.Request) -> Session | None:
    return context_of(request).sessions.get(request.cookies.get(SESSION_COOKIE))


def _same_origin(request: web.Request) -> bool:
    """A browser's Origin (when sent) must be this server: no cross-site writes."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    host = request.headers.get("Host", "")
    return origin in (f"http://{host}", f"https://{host}")


async def require_read(request: web.Request) -> None:
    """Reading is open on the LAN unless ``web.read_open = false``."""
    ctx = context_of(request)
    if not _same_origin(request) and request.path.endswith("/ws"):
        raise http_error(web.HTTPForbidden, "cross-site WebSocket refused")
    if ctx.config.web.read_open:
        return
    if session_of(request) is None:
        raise http_error(web.HTTPUnauthorized, "log in to see this unit (web.read_open is off)")


async def require_write(request: web.Request) -> Session:
    """A change needs the admin session and its CSRF token, from this site."""
    if not _same_origin(request):
        raise http_error(web.HTTPForbidden, "cross-site request refused")
    session = session_of(request)
    if session is None:
        raise http_error(web.HTTPUnauthorized, "log in as admin to change settings")
    if not csrf_ok(session, request.headers.get(CSRF_HEADER)):
        raise http_error(web.HTTPForbidden, f"missing or wrong {CSRF_HEADER} header")
    return session


# ----------------------------------------------------------------------------- static


async def index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-store"})


async def openapi(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(
        OPENAPI_FILE, headers={"Content-Type": "application/yaml; charset=utf-8"}
    )


# ----------------------------------------------------------------------------- app


async def _live_hub(app: web.Application) -> AsyncIterator[None]:
    """Background task of the live updates, for the application's lifetime."""
    hub = app[HUB]
    task = asyncio.create_task(hub.run(), name="smartpdu-live-hub")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _close_live(app: web.Application) -> None:
    await app[HUB].close()


def create_app(context: WebContext, peers: PeerDirectory | None = None) -> web.Application:
    from host.web import api, export_routes  # the handlers need CONTEXT, defined above

    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_BODY_BYTES)
    app[CONTEXT] = context
    app[HUB] = LiveHub(
        context.state,
        context.units,
        context.panels,
        min_interval_s=context.live_min_interval_s,
        refresh_s=context.live_refresh_s,
    )
    app.cleanup_ctx.append(_live_hub)
    app.on_shutdown.append(_close_live)
    app.on_response_prepare.append(_security_headers)
    app.router.add_get("/", index)
    app.router.add_get(f"{API_PREFIX}/openapi.yaml", openapi)
    api.add_routes(app)
    export_routes.add_routes(app)  # CSV export, energy report, balance advice
    if peers is not None:
        # The other units on the LAN: their signed exchange, and their rows in pane A.
        add_peer_routes(app, peers, status_guard=require_read)
        context.units.add_source(peers.rows)
        peers.on_change(context.units.changed)
    metrics_routes.add_routes(app, context, peers, read_guard=require_read)  # Prometheus
    frontpanel_routes.add_routes(app)  # R13: DATA TX on every send, the virtual panel, RESET
    app.router.add_static("/static/", STATIC_DIR, follow_symlinks=False)
    return app
