"""Path and query parameters shared by the REST handlers (``api``, ``export_routes``)."""

from __future__ import annotations

import math

from aiohttp import web

from host.web.app import WebContext, context_of, http_error

MAX_EPOCH_S = 1e11


def unit_context(request: web.Request) -> WebContext:
    """The context, after checking the path's unit is this one (peers serve their own)."""
    ctx = context_of(request)
    if request.match_info.get("unit_id") != ctx.state.unit_id:
        raise http_error(
            web.HTTPNotFound,
            "no such unit here (a peer's data is served by the peer itself: see its url "
            "in GET /api/v1/units)",
        )
    return ctx


def query_epoch(request: web.Request, key: str) -> float | None:
    """The query parameter ``key`` as seconds since the epoch, None when absent; else a 400."""
    text = request.query.get(key)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0 <= value <= MAX_EPOCH_S:
        raise http_error(web.HTTPBadRequest, f"'{key}' must be seconds since the epoch")
    return value


def query_int(request: web.Request, key: str, default: int | None, lo: int, hi: int) -> int | None:
    """The query parameter ``key`` as an integer in ``lo..hi``, ``default`` when absent; else
    a 400."""
    text = request.query.get(key)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise http_error(web.HTTPBadRequest, f"'{key}' must be an integer") from None
    if not lo <= value <= hi:
        raise http_error(web.HTTPBadRequest, f"'{key}' must be between {lo} and {hi}")
    return value
