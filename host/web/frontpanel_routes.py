"""The front panel in the web layer (R13): DATA TX pulses on every response and live frame,
the virtual front panel in the live view (``frontpanel``), ``GET /api/v1/frontpanel`` and the
admin's ``POST /api/v1/frontpanel/reset``.

The web layer does not know GPIO: it talks to a :class:`FrontPanelLink` (``host.frontpanel``
's ``FrontPanel``), attached by the service once the server runs (``attach``): the routes and
the response signal exist from the start and do nothing until then.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

FRONTPANEL_PATH = "/api/v1/frontpanel"
RESET_PATH = FRONTPANEL_PATH + "/reset"
VIEW_KEY = "frontpanel"  # the live view's member


class FrontPanelLink(Protocol):
    @property
    def virtual(self) -> bool: ...
    @property
    def version(self) -> int: ...
    def view(self) -> dict[str, Any]: ...
    def data_sent(self) -> None: ...
    def request_reset(self, source: str) -> bool: ...


@dataclass
class FrontPanelSlot:
    link: FrontPanelLink | None = None


FRONTPANEL = web.AppKey("smartpdu.frontpanel", FrontPanelSlot)


async def _pulse(request: web.Request, response: web.StreamResponse) -> None:
    link = request.app[FRONTPANEL].link
    if link is not None:
        link.data_sent()


def _link(request: web.Request) -> FrontPanelLink:
    link = request.app[FRONTPANEL].link
    if link is None:
        from host.web.app import http_error

        raise http_error(web.HTTPNotFound, "this server has no front panel")
    return link


async def status_handler(request: web.Request) -> web.Response:
    """``GET /api/v1/frontpanel``: RUN (health, heartbeats), DATA TX (sends), RESETs."""
    from host.web.app import require_read

    await require_read(request)
    return web.json_response(_link(request).view())


async def reset_handler(request: web.Request) -> web.Response:
    """``POST /api/v1/frontpanel/reset``: the RESET button: restarts the web server only
    (the bus, the meter and the recording go on). Answered before the server stops."""
    from host.web.app import require_write

    await require_write(request)
    started = _link(request).request_reset("web")
    return web.json_response({"reset": "restarting" if started else "already restarting"},
                             status=202)  # fmt: skip


def add_routes(app: web.Application) -> None:
    app[FRONTPANEL] = FrontPanelSlot()
    app.on_response_prepare.append(_pulse)
    app.router.add_get(FRONTPANEL_PATH, status_handler)
    app.router.add_post(RESET_PATH, reset_handler)


def attach(app: web.Application, link: FrontPanelLink) -> None:
    """Connect a running application to the front panel: DATA TX on its sends, and (when
    the panel is virtual) the panel in its live view."""
    from host.web.app import HUB

    if FRONTPANEL not in app:
        return  # an application built without the routes (a test's own)
    app[FRONTPANEL].link = link
    hub = app[HUB]
    hub.on_sent.append(lambda _client, _seq: link.data_sent())
    if link.virtual:
        hub.extras[VIEW_KEY] = link
        hub.poke()
