"""``GET /metrics`` (Prometheus exposition of the unit) and ``GET /api/v1/prometheus/targets``
(the site's target list for Prometheus's http_sd), both read-only (R7).

Access: with ``export.prometheus.bearer_token_file`` both need ``Authorization: Bearer
<token>`` (or an admin session); without it they follow ``web.read_open`` like the rest of
the API (open on the show LAN by default; with ``read_open = false`` only a logged-in
browser, which Prometheus is not: set a token then). Not registered at all with
``export.prometheus.enabled = false``.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from host.config.prometheus import read_bearer_token
from host.export.prometheus import metrics_registry
from host.export.targets import SiteTargets
from host.peers.directory import PeerDirectory
from host.web.auth import SESSION_COOKIE

if TYPE_CHECKING:
    from host.web.app import WebContext

METRICS_PATH = "/metrics"
TARGETS_PATH = "/api/v1/prometheus/targets"
ReadGuard = Callable[[web.Request], Awaitable[None]]


def _unauthorized(message: str) -> web.HTTPUnauthorized:
    return web.HTTPUnauthorized(
        text=json.dumps({"error": {"status": 401, "message": message}}),
        content_type="application/json",
        headers={"WWW-Authenticate": 'Bearer realm="smartpdu"'},
    )


class PrometheusRoutes:
    """The two handlers, with what they read."""

    def __init__(
        self, context: WebContext, targets: SiteTargets, read_guard: ReadGuard, token: str | None
    ) -> None:
        self.context = context
        self.registry = metrics_registry(context.state)
        self.targets = targets
        self.read_guard = read_guard
        self.token = token

    async def allow(self, request: web.Request) -> None:
        if self.token is None:
            await self.read_guard(request)
            return
        given = request.headers.get("Authorization", "")
        scheme, _, credentials = given.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            credentials.strip().encode(), self.token.encode()
        ):
            return
        if self.context.sessions.get(request.cookies.get(SESSION_COOKIE)) is not None:
            return
        raise _unauthorized(
            "a bearer token is required (export.prometheus.bearer_token_file): "
            "authorization: {credentials_file: ...} in prometheus.yml"
        )

    async def metrics(self, request: web.Request) -> web.Response:
        await self.allow(request)
        # The classic text format (0.0.4), whatever Accept prefers: every Prometheus reads it,
        # and it costs less CPU than OpenMetrics.
        body = generate_latest(self.registry)
        return web.Response(
            body=body,
            headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4, "Cache-Control": "no-store"},
        )

    async def site_targets(self, request: web.Request) -> web.Response:
        await self.allow(request)
        # This unit under the address the scraper used to reach it.
        own = request.host if request.host and ":" in request.host else None
        return web.json_response(self.targets.targets(own), headers={"Cache-Control": "no-store"})


def add_routes(
    app: web.Application,
    context: WebContext,
    peers: PeerDirectory | None,
    *,
    read_guard: ReadGuard,
) -> PrometheusRoutes | None:
    """Mount the routes (none with ``export.prometheus.enabled = false``)."""
    config = context.config
    settings = config.prometheus
    if not settings.enabled:
        return None
    token = read_bearer_token(settings.bearer_token_file) if settings.bearer_token_file else None
    targets = SiteTargets(
        config.unit.unit_id,
        lambda: context.state.snapshot().name,
        web_host=config.web.host,
        web_port=lambda: peers.web_port if peers is not None else config.web.port,
        peers=peers,
    )
    routes = PrometheusRoutes(context, targets, read_guard, token)
    app.router.add_get(METRICS_PATH, routes.metrics)
    app.router.add_get(TARGETS_PATH, routes.site_targets)
    return routes
