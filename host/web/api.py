"""REST handlers of ``/api/v1`` (documented in ``openapi.yaml`` beside this file).

Reads are open on the LAN unless ``web.read_open = false``; every write needs the admin
session and its CSRF token (``host.web.app.require_write``), is validated here with the same
rules as everywhere else (``validate_label``, ``SupervisionSettings.validated``), is saved
durably first and only then applied to the live state. No endpoint can switch or trip
anything (R7): the only "action" is a press on a *virtual* board's front panel, which
selects what its LOAD CURRENT display shows.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Any, Literal, cast

from aiohttp import web

from host.domain import (
    LABEL_MAX_CHARS,
    channel_ids,
    parse_channel_id,
    validate_label,
    validate_unit_name,
)
from host.state import METER_QUANTITIES, to_jsonable
from host.storage.history import HistoryPoint
from host.storage.schema import StorageError
from host.web.app import (
    API_PREFIX,
    HUB,
    PressablePanel,
    WebContext,
    context_of,
    http_error,
    require_read,
    require_write,
    session_of,
)
from host.web.auth import CSRF_HEADER, MAX_PASSWORD_CHARS, SESSION_COOKIE
from host.web.live import websocket_handler
from host.web.params import query_epoch, query_int, unit_context
from host.web.view import build_view, display_name, panel_view

JSON = dict[str, Any]
SERIES_PATTERN = re.compile(r"(?:[A-F](?:[1-9]|1[0-2])|sum\.L[123]|meter\.[a-z0-9_]{1,48})")
CHANNEL_PATTERN = re.compile(r"[A-Fa-f](?:[1-9]|1[0-2])")
KIND_PATTERN = re.compile(r"[a-z_]{1,32}\.[a-z_]{1,32}")
HISTORY_RANGES = {"hour": 3600.0, "day": 86400.0}
PHASE_SUM_SERIES = frozenset({"sum.L1", "sum.L2", "sum.L3"})
METER_SERIES = frozenset(f"meter.{q.name}" for q in METER_QUANTITIES)
MAX_HISTORY_SPAN_S = 31 * 86400.0
VERSION = "0.1.0"


# ----------------------------------------------------------------------------- helpers


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=json.dumps)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


async def _body(request: web.Request) -> JSON:
    """The JSON object of a write; 415 for another content type, 400 for bad JSON."""
    if request.content_type != "application/json":
        raise http_error(web.HTTPUnsupportedMediaType, "send application/json")
    raw = await request.read()
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise http_error(web.HTTPBadRequest, f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise http_error(web.HTTPBadRequest, "the body must be a JSON object")
    return cast(JSON, data)


def _only_keys(body: JSON, allowed: Iterable[str]) -> None:
    extra = sorted(set(body) - set(allowed))
    if extra:
        raise http_error(web.HTTPBadRequest, f"unknown field(s): {', '.join(extra)}")


def _text_field(body: JSON, key: str, max_chars: int | None = None) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        raise http_error(web.HTTPBadRequest, f"'{key}' must be a string")
    if max_chars is not None and len(value) > max_chars:
        raise http_error(
            web.HTTPBadRequest, f"'{key}' has at most {max_chars} characters, not {len(value)}"
        )
    return value


def _number_field(body: JSON, key: str, default: float | None = None) -> float:
    value = body.get(key, default)
    if value is None:
        raise http_error(web.HTTPBadRequest, f"'{key}' is required")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise http_error(web.HTTPBadRequest, f"'{key}' must be a number")
    if not math.isfinite(value):
        raise http_error(web.HTTPBadRequest, f"'{key}' must be a finite number")
    return float(value)


def _channel_id(request: web.Request, ctx: WebContext) -> str:
    text = request.match_info["channel_id"]
    if not CHANNEL_PATTERN.fullmatch(text):
        raise http_error(web.HTTPNotFound, f"'{text}' is not a channel (e.g. B7)")
    try:
        group, number = parse_channel_id(text, ctx.state.model)
    except ValueError as exc:
        raise http_error(web.HTTPNotFound, str(exc)) from None
    return f"{group}{number}"


def _base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}/"


def _client_address(request: web.Request) -> str:
    return request.remote or "unknown"


async def _saved(job: Any) -> None:
    """Run a storage write; a failing disk is a 503 with the state left unchanged."""
    try:
        await job
    except (StorageError, sqlite3.Error, OSError) as exc:
        raise http_error(web.HTTPServiceUnavailable, f"could not save the setting: {exc}") from None


# ----------------------------------------------------------------------------- service


async def health(request: web.Request) -> web.Response:
    ctx = context_of(request)
    hub = request.app[HUB]
    return _json(
        {
            "status": "ok",
            "unit": ctx.state.unit_id,
            "version": VERSION,
            "live_clients": len(hub.clients),
            "time": time.time(),
        }
    )


async def session_info(request: web.Request) -> web.Response:
    ctx = context_of(request)
    session = session_of(request)
    return _json(
        {
            "logged_in": session is not None,
            "csrf_token": None if session is None else session.csrf_token,
            "read_open": ctx.config.web.read_open,
            "password_set": ctx.passwords.is_set,
            "csrf_header": CSRF_HEADER,
        }
    )


async def login(request: web.Request) -> web.Response:
    ctx = context_of(request)
    if request.headers.get("Origin") is not None:
        host = request.headers.get("Host", "")
        if request.headers["Origin"] not in (f"http://{host}", f"https://{host}"):
            raise http_error(web.HTTPForbidden, "cross-site login refused")
    body = await _body(request)
    _only_keys(body, ("password",))
    password = _text_field(body, "password", MAX_PASSWORD_CHARS)
    client = _client_address(request)
    wait = ctx.throttle.retry_after(client)
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise http_error(
            web.HTTPTooManyRequests,
            f"too many failed logins: try again in {seconds} s",
            headers={"Retry-After": str(seconds)},
        )
    if not ctx.passwords.is_set:
        raise http_error(
            web.HTTPForbidden,
            "no admin password is set on this unit: run 'smartpdu passwd' on it first",
        )
    ok = await asyncio.get_running_loop().run_in_executor(None, ctx.passwords.check, password)
    if not ok:
        ctx.throttle.failed(client)
        raise http_error(web.HTTPUnauthorized, "wrong password")
    ctx.throttle.succeeded(client)
    ctx.sessions.delete(request.cookies.get(SESSION_COOKIE))  # no session fixation
    session = ctx.sessions.create()
    response = _json({"logged_in": True, "csrf_token": session.csrf_token})
    response.set_cookie(
        SESSION_COOKIE,
        session.id,
        httponly=True,
        samesite="Strict",
        path="/",
        secure=request.secure,
        max_age=int(ctx.sessions.max_s),
    )
    return response


async def logout(request: web.Request) -> web.Response:
    session = await require_write(request)
    context_of(request).sessions.delete(session.id)
    response = _json({"logged_in": False})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


async def websocket(request: web.Request) -> web.StreamResponse:
    return await websocket_handler(request, request.app[HUB], require_read)


# ----------------------------------------------------------------------------- units


async def units(request: web.Request) -> web.Response:
    await require_read(request)
    ctx = context_of(request)
    return _json(ctx.units.units(ctx.state.snapshot(), _base_url(request)))


async def unit_status(request: web.Request) -> web.Response:
    await require_read(request)
    ctx = unit_context(request)
    snapshot = ctx.state.snapshot()
    data = snapshot.to_dict()
    data["number"] = ctx.number
    data["display_name"] = display_name(snapshot.name, ctx.number)
    return _json(data)


async def unit_view(request: web.Request) -> web.Response:
    await require_read(request)
    ctx = unit_context(request)
    snapshot = ctx.state.snapshot()
    panels = {letter: panel_view(p.state) for letter, p in ctx.panels.items()}
    view = build_view(
        snapshot,
        number=ctx.number,
        url=_base_url(request),
        units=ctx.units.units(snapshot, _base_url(request)),
        panels=panels,
    )
    return _json(view)


async def set_unit_name(request: web.Request) -> web.Response:
    ctx = unit_context(request)
    await require_write(request)
    body = await _body(request)
    _only_keys(body, ("name",))
    try:
        name = validate_unit_name(_text_field(body, "name", LABEL_MAX_CHARS))
    except ValueError as exc:
        raise http_error(web.HTTPBadRequest, str(exc)) from None
    await _saved(ctx.storage.save_unit_name(name))
    ctx.state.set_unit_name(name)
    return _json({"name": name, "display_name": display_name(name, ctx.number)})


# ----------------------------------------------------------------------------- channels


def _channel_json(ctx: WebContext, cid: str) -> JSON:
    return to_jsonable(ctx.state.snapshot().channel(cid))


async def channels(request: web.Request) -> web.Response:
    await require_read(request)
    ctx = unit_context(request)
    return _json([to_jsonable(ch) for ch in ctx.state.snapshot().iter_channels()])


async def channel(request: web.Request) -> web.Response:
    await require_read(request)
    ctx = unit_context(request)
    return _json(_channel_json(ctx, _channel_id(request, ctx)))


async def set_channel_label(request: web.Request) -> web.Response:
    ctx = unit_context(request)
    cid = _channel_id(request, ctx)
    await require_write(request)
    body = await _body(request)
    _only_keys(body, ("label",))
    try:
        label = validate_label(_text_field(body, "label", LABEL_MAX_CHARS))
    except ValueError as exc:
        raise http_error(web.HTTPBadRequest, str(exc)) from None
    await _saved(ctx.storage.save_channel_label(cid, label))
    ctx.state.set_channel_label(cid, label)
    return _json(_channel_json(ctx, cid))


async def set_supervision(request: web.Request) -> web.Response:
    ctx = unit_context(request)
    cid = _channel_id(request, ctx)
    await require_write(request)
    body = await _body(request)
    _only_keys(body, ("enabled", "min_a", "max_a", "dwell_s", "hysteresis_a"))
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        raise http_error(web.HTTPBadRequest, "'enabled' must be true or false")
    current = ctx.state.supervision_of(cid)
    defaults = ctx.state.supervision_defaults()
    try:
        settings = replace(
            current,
            enabled=enabled,
            min_a=_number_field(body, "min_a", current.min_a if not enabled else None),
            max_a=_number_field(body, "max_a", current.max_a if not enabled else None),
            dwell_s=_number_field(body, "dwell_s", defaults.dwell_s),
            hysteresis_a=_number_field(body, "hysteresis_a", defaults.hysteresis_a),
        )
        if "hysteresis_a" in body:
            settings = settings.validated_entry()
        else:
            # The unit's default margin, narrowed to fit a range narrower than it.
            span = max(settings.max_a - settings.min_a, 0.0)
            settings = replace(settings, hysteresis_a=min(settings.hysteresis_a, span))
            settings = settings.validated()
    except ValueError as exc:
        raise http_error(web.HTTPBadRequest, str(exc)) from None
    await _saved(ctx.storage.save_supervision(cid, settings))
    ctx.state.set_supervision(cid, settings)
    return _json(_channel_json(ctx, cid))


# ----------------------------------------------------------------------------- meter, events


async def meter(request: web.Request) -> web.Response:
    await require_read(request)
    ctx = unit_context(request)
    return _json(to_jsonable(ctx.state.snapshot().meter))


async def events(request: web.Request) -> web.Response:
    await require_read(request)
    ctx = unit_context(request)
    limit = query_int(request, "limit", 100, 1, 1000)
    before = query_int(request, "before_id", None, 1, 2**62)
    since = query_epoch(request, "since")
    kinds: list[str] = []
    for text in request.query.getall("kind", []):
        for kind in text.split(","):
            if not KIND_PATTERN.fullmatch(kind):
                raise http_error(web.HTTPBadRequest, "'kind' is an event kind like board.offline")
            kinds.append(kind)
    assert limit is not None
    rows = await ctx.storage.events(limit, before_id=before, kinds=kinds or None, since=since)
    return _json({"events": [r.to_dict() for r in rows]})


async def black_box(request: web.Request) -> web.Response:
    await require_read(request)
    ctx = unit_context(request)
    try:
        event_id = int(request.match_info["event_id"])
    except ValueError:
        raise http_error(web.HTTPNotFound, "no such event") from None
    if not 1 <= event_id <= 2**62:
        raise http_error(web.HTTPNotFound, "no such event")
    box = await ctx.storage.black_box(event_id)
    if box is None:
        raise http_error(web.HTTPNotFound, "this event has no black box")
    return _json({"event_id": event_id, **box})


# ----------------------------------------------------------------------------- history


def downsample(points: list[HistoryPoint], start: float, end: float, max_points: int) -> list[Any]:
    """At most ``max_points`` buckets of [t, min, avg, max] (avg of avgs, min of mins …)."""
    if len(points) <= max_points:
        return [[p.t, p.min, p.avg, p.max] for p in points]
    width = max(1.0, (end - start) / max_points)
    out: list[list[float]] = []
    bucket: list[HistoryPoint] = []
    bucket_index = None
    for p in points:
        index = int((p.t - start) // width)
        if bucket_index is not None and index != bucket_index and bucket:
            out.append(_bucket(bucket))
            bucket = []
        bucket_index = index
        bucket.append(p)
    if bucket:
        out.append(_bucket(bucket))
    return out


def _bucket(points: list[HistoryPoint]) -> list[float]:
    return [
        points[0].t,
        min(p.min for p in points),
        sum(p.avg for p in points) / len(points),
        max(p.max for p in points),
    ]


async def _series_exists(ctx: WebContext, series: str) -> bool:
    """A series this unit records or has recorded: its own channels, the phase sums, the
    meter's quantities (the map may add names: those are known once stored)."""
    if series in channel_ids(ctx.config.unit.model) or series in PHASE_SUM_SERIES:
        return True
    if series in METER_SERIES:
        return True
    return series in await ctx.storage.series_names()


async def history(request: web.Request) -> web.Response:
    await require_read(request)
    ctx = unit_context(request)
    series = request.query.get("series", "")
    if not SERIES_PATTERN.fullmatch(series):
        raise http_error(
            web.HTTPBadRequest, "'series' is a channel (A7), sum.L1 … sum.L3 or meter.<name>"
        )
    if not await _series_exists(ctx, series):
        raise http_error(
            web.HTTPNotFound,
            f"this unit records no series {series!r}: GET …/history/series lists them",
        )
    span_name = request.query.get("range")
    start = query_epoch(request, "start")
    end = query_epoch(request, "end")
    now = time.time()
    if span_name is not None:
        if span_name not in HISTORY_RANGES:
            raise http_error(web.HTTPBadRequest, "'range' is hour or day")
        end = now if end is None else end
        start = end - HISTORY_RANGES[span_name]
    else:
        end = now if end is None else end
        start = end - 3600.0 if start is None else start
    if not start < end or end - start > MAX_HISTORY_SPAN_S:
        raise http_error(web.HTTPBadRequest, "need start < end, at most 31 days apart")
    resolution_text = request.query.get("resolution", "auto")
    if resolution_text not in ("auto", "seconds", "minutes"):
        raise http_error(web.HTTPBadRequest, "'resolution' is auto, seconds or minutes")
    if resolution_text == "auto":
        # 1 s samples while they are kept (a minute of slack: "the last hour" starts a
        # moment before the horizon by the time the database is asked).
        keep = ctx.storage.history_config.keep_samples_s
        resolution_text = "seconds" if start >= now - keep - 60 else "minutes"
    resolution = cast(Literal["seconds", "minutes"], resolution_text)
    max_points = query_int(request, "max_points", 600, 10, 5000)
    assert max_points is not None
    points = await ctx.storage.history(series, start, end, resolution)
    return _json(
        {
            "series": series,
            "start": start,
            "end": end,
            "resolution": resolution,
            "points": downsample(points, start, end, max_points),
        }
    )


async def history_series(request: web.Request) -> web.Response:
    await require_read(request)
    ctx = unit_context(request)
    return _json({"series": await ctx.storage.series_names()})


# ----------------------------------------------------------------------------- panels


def _panel(request: web.Request, ctx: WebContext) -> PressablePanel:
    group = request.match_info["group"]
    panel = ctx.panels.get(group)
    if panel is None:
        raise http_error(
            web.HTTPNotFound, "no virtual front panel for this group (only simulated boards)"
        )
    return cast(PressablePanel, panel)


async def panel(request: web.Request) -> web.Response:
    await require_read(request)
    ctx = unit_context(request)
    view = panel_view(_panel(request, ctx).state)
    if view is None:
        raise http_error(web.HTTPServiceUnavailable, "the panel has not reported yet")
    return _json(view.to_json())


async def panel_press(request: web.Request) -> web.Response:
    ctx = unit_context(request)
    target = _panel(request, ctx)
    await require_write(request)
    body = await _body(request)
    _only_keys(body, ("button", "hold_ms"))
    button = body.get("button")
    if isinstance(button, bool) or not isinstance(button, int) or not 1 <= button <= 12:
        raise http_error(web.HTTPBadRequest, "'button' is 1 to 12")
    hold = body.get("hold_ms", 120)
    if isinstance(hold, bool) or not isinstance(hold, int) or not 20 <= hold <= 5000:
        raise http_error(web.HTTPBadRequest, "'hold_ms' is 20 to 5000")
    try:
        await target.press(button, hold)
    except Exception as exc:  # a virtual board that went away
        raise http_error(
            web.HTTPServiceUnavailable, f"the virtual board did not take it: {exc}"
        ) from None
    return _json({"pressed": button, "hold_ms": hold}, status=202)


# ----------------------------------------------------------------------------- routes


def add_routes(app: web.Application) -> None:
    p = API_PREFIX
    u = f"{p}/units/{{unit_id}}"
    r = app.router
    r.add_get(f"{p}/health", health)
    r.add_get(f"{p}/session", session_info)
    r.add_post(f"{p}/login", login)
    r.add_post(f"{p}/logout", logout)
    r.add_get(f"{p}/ws", websocket)
    r.add_get(f"{p}/units", units)
    r.add_get(u, unit_status)
    r.add_get(f"{u}/view", unit_view)
    r.add_put(f"{u}/name", set_unit_name)
    r.add_get(f"{u}/channels", channels)
    r.add_get(f"{u}/channels/{{channel_id}}", channel)
    r.add_put(f"{u}/channels/{{channel_id}}/label", set_channel_label)
    r.add_put(f"{u}/channels/{{channel_id}}/supervision", set_supervision)
    r.add_get(f"{u}/meter", meter)
    r.add_get(f"{u}/events", events)
    r.add_get(f"{u}/events/{{event_id}}/black-box", black_box)
    r.add_get(f"{u}/history", history)
    r.add_get(f"{u}/history/series", history_series)
    r.add_get(f"{u}/groups/{{group}}/panel", panel)
    r.add_post(f"{u}/groups/{{group}}/panel/press", panel_press)
