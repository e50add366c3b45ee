"""Live updates over one WebSocket per browser, pushed as reports arrive.

One hub builds the view (``host.web.view``) when the unit state changed, at most every
``min_interval_s`` (coalescing: 60-100 reports a second become ≤ 20 builds a second, and the
first change after a quiet spell goes out at once), diffs it against the previous view and
encodes that patch once for every client. Jitter (a number's noise or slow drift,
``host.web.pacing``) waits for the display refresh, twice a second; anything more (a step, a
state, an alarm) goes out with the build that saw it. Each client has its own sender task
holding the last view it was sent: a client that keeps up gets the shared patch; a slow one,
blocked on its own socket, gets one combined patch from the view it has to the newest when it
drains; nothing it does can hold up the hub, the state or the bus. A client that cannot take a
frame within ``SEND_TIMEOUT_S`` is disconnected (its page reconnects and starts afresh).

Wire format (server → client, text frames of JSON)::

    {"type": "full",  "seq": 17, "view": {...}}     on connect
    {"type": "patch", "seq": 18, "patch": {...}}    merge patch onto the previous view

Client → server: ``{"type": "ack", "seq": 18}`` once it has applied a frame (optional).
A client that acknowledges has at most ``MAX_IN_FLIGHT`` (2) frames unacknowledged: the next
frame goes out while the previous one's ack is still on its way, but a phone that renders
slowly is sent fewer, combined patches instead of a queue it cannot drain (and a machine
running many browsers is not flooded). A client that never acknowledges is sent every frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from host.state import UnitState
from host.web.pacing import REFRESH_S, FramePacer, hold_back
from host.web.units import UnitDirectory
from host.web.view import JSON, PanelView, build_view, merge_diff, panel_view

_LOG = logging.getLogger(__name__)

MIN_INTERVAL_S = 0.05  # ≤ 20 frames a second to each browser
POLL_S = 0.1  # virtual panels and peers are polled this often (they signal nothing)
SEND_TIMEOUT_S = 10.0
MAX_CLIENTS = 100
# Frames a page that acknowledges may have unacknowledged: a second one goes out while the
# first one's ack is on its way back (one in flight would add that round trip to every
# frame that follows a busy moment), and no page is sent a backlog.
MAX_IN_FLIGHT = 2
HEARTBEAT_S = 20.0


class PanelSource(Protocol):
    @property
    def state(self) -> Any: ...


class ViewPart(Protocol):
    """A part of the view from outside the unit state (the virtual front panel): published
    when its version moves."""

    @property
    def version(self) -> int: ...
    def view(self) -> JSON: ...


class Frame:
    """One published view, with its patch from the previous one encoded once."""

    __slots__ = ("_full_text", "patch_text", "published_at", "seq", "view")

    def __init__(self, seq: int, view: JSON, patch: JSON | None, published_at: float) -> None:
        self.seq = seq
        self.view = view
        self.published_at = published_at
        self.patch_text = (
            None if patch is None else json.dumps({"type": "patch", "seq": seq, "patch": patch})
        )
        self._full_text: str | None = None

    @property
    def full_text(self) -> str:
        if self._full_text is None:
            self._full_text = json.dumps({"type": "full", "seq": self.seq, "view": self.view})
        return self._full_text


@dataclass
class LiveStats:
    builds: int = 0
    frames: int = 0
    refresh_frames: int = 0  # frames of jitter alone, sent at the display refresh
    held_builds: int = 0  # builds of jitter alone that waited for the refresh
    patch_bytes: int = 0
    full_bytes: int = 0
    build_s: float = 0.0
    lagging_sends: int = 0  # combined patches for clients that fell behind
    dropped_clients: int = 0
    sent: int = 0

    def to_json(self) -> JSON:
        frames = max(1, self.frames)
        builds = max(1, self.builds)
        return {
            "frames": self.frames,
            "refresh_frames": self.refresh_frames,
            "held_builds": self.held_builds,
            "mean_patch_bytes": round(self.patch_bytes / frames),
            "full_view_bytes": self.full_bytes,
            "builds": self.builds,
            "mean_build_ms": round(1000 * self.build_s / builds, 3),
            "lagging_sends": self.lagging_sends,
            "dropped_clients": self.dropped_clients,
            "sent": self.sent,
        }


@dataclass(eq=False)
class LiveClient:
    ws: web.WebSocketResponse
    hub: LiveHub
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    sent_seq: int = 0
    sent_view: JSON | None = None
    acked_seq: int = 0
    flow_control: bool = False  # on once the client acknowledges frames
    # Sent, not yet acknowledged (bounded: a client that never acknowledges keeps no list).
    unacked: deque[int] = field(default_factory=lambda: deque[int](maxlen=MAX_IN_FLIGHT))

    def ack(self, seq: int) -> None:
        self.flow_control = True
        if self.sent_seq >= seq > self.acked_seq:
            self.acked_seq = seq
            while self.unacked and self.unacked[0] <= seq:
                self.unacked.popleft()
            self.wake.set()

    async def run(self) -> None:
        hub = self.hub
        while not self.ws.closed:
            await self.wake.wait()
            self.wake.clear()
            frame = hub.frame
            if frame is None or frame.seq == self.sent_seq:
                continue
            if self.flow_control and len(self.unacked) >= MAX_IN_FLIGHT:
                continue  # the page is still applying what it has: an ack wakes us
            if self.sent_view is None:
                text = frame.full_text
            elif frame.seq == self.sent_seq + 1 and frame.patch_text is not None:
                text = frame.patch_text
            else:
                hub.stats.lagging_sends += 1
                patch = merge_diff(self.sent_view, frame.view)
                text = json.dumps({"type": "patch", "seq": frame.seq, "patch": patch})
            try:
                async with asyncio.timeout(SEND_TIMEOUT_S):
                    await self.ws.send_str(text)
            except TimeoutError:
                hub.stats.dropped_clients += 1
                _LOG.info("live client too slow; disconnected")
                await self.ws.close(code=1013, message=b"too slow")
                return
            except (ConnectionError, RuntimeError):
                return  # closed under us
            hub.stats.sent += 1
            self.sent_seq = frame.seq
            self.sent_view = frame.view
            self.unacked.append(frame.seq)
            for callback in hub.on_sent:
                callback(self, frame.seq)


class LiveHub:
    """Builds and publishes frames; run ``run()`` as a background task (cleanup_ctx)."""

    def __init__(
        self,
        state: UnitState,
        directory: UnitDirectory,
        panels: Mapping[str, PanelSource] | None = None,
        *,
        min_interval_s: float = MIN_INTERVAL_S,
        refresh_s: float = REFRESH_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state = state
        self.directory = directory
        self.panels = dict(panels or {})
        self.min_interval_s = min_interval_s
        self.refresh_s = refresh_s
        self.clock = clock
        self.pacer = FramePacer()
        self.frame: Frame | None = None
        self.stats = LiveStats()
        self.clients: set[LiveClient] = set()
        self._has_clients = asyncio.Event()
        self._poked = False
        self._panel_states: dict[str, object] = {}
        self.extras: dict[str, ViewPart] = {}  # view member -> part
        self._extra_versions: dict[str, int] = {}
        self._last_build = float("-inf")
        # The last build whose every change the pages have: before the last build, jitter is
        # waiting for the refresh.
        self._last_refresh = float("-inf")
        self._published_version = -1
        self.on_publish: list[Callable[[Frame], None]] = []
        # (client, seq) once a frame is written to a client's socket (the benchmark's clock)
        self.on_sent: list[Callable[[LiveClient, int], None]] = []
        directory.on_change(self.poke)

    def poke(self) -> None:
        """Something outside the unit state changed (peers): publish soon."""
        self._poked = True

    # -- clients ---------------------------------------------------------------------------

    def add(self, ws: web.WebSocketResponse) -> LiveClient:
        client = LiveClient(ws, self)
        self.clients.add(client)
        self._has_clients.set()
        if self.frame is not None:
            client.wake.set()
        else:
            self._poked = True
        return client

    def remove(self, client: LiveClient) -> None:
        self.clients.discard(client)
        if not self.clients:
            self._has_clients.clear()
            self.frame = None  # nobody to keep it for: the next client gets a fresh view

    # -- publishing ------------------------------------------------------------------------

    def _panels_moved(self) -> bool:
        moved = False
        for letter, panel in self.panels.items():
            current = panel.state
            if self._panel_states.get(letter) is not current:
                self._panel_states[letter] = current
                moved = True
        for key, part in self.extras.items():
            if self._extra_versions.get(key) != part.version:
                self._extra_versions[key] = part.version
                moved = True
        return moved

    def build(self) -> JSON:
        snapshot = self.state.snapshot()
        panels: dict[str, PanelView | None] = {
            letter: panel_view(panel.state) for letter, panel in self.panels.items()
        }
        view = build_view(
            snapshot,
            number=self.directory.number,
            url="/",
            units=self.directory.units(snapshot, "/"),
            panels=panels,
        )
        for key, part in self.extras.items():
            view[key] = part.view()
        return view

    def publish(self, *, paced: bool = False) -> Frame | None:
        """Build the view now and send what changed; None when nothing did (or, ``paced``,
        when it is jitter alone and the last complete frame is younger than ``refresh_s``)."""
        started = time.perf_counter()
        try:
            return self._publish(paced)
        finally:
            self.stats.build_s += time.perf_counter() - started

    def _publish(self, paced: bool) -> Frame | None:
        # The interval counts from the start of a build: neither the build nor a late
        # wake-up stretches the next one (the builds keep to min_interval_s, not beyond).
        building_at = self.clock()
        self._last_build = building_at
        view = self.build()
        stats = self.stats
        stats.builds += 1
        previous = self.frame
        patch: JSON | None = None
        urgent = complete = True
        if previous is None:
            self.pacer.observe(view)
        else:
            diff: JSON = merge_diff(previous.view, view)
            urgent, jitter, calm = self.pacer.split(diff, previous.view)
            self.pacer.observe(view)
            if not (diff.keys() - {"taken_at"}):
                self._last_refresh = building_at  # the pages show every change there is
                return None
            patch = diff
            if paced and building_at - self._last_refresh < self.refresh_s:
                if not urgent:
                    stats.held_builds += 1
                    return None
                held = hold_back(diff, view, previous.view, jitter, calm)
                if held is not None:
                    view, patch = held
                    complete = False
        seq = 1 if previous is None else previous.seq + 1
        frame = Frame(seq, view, patch, self.clock())
        self.frame = frame
        if complete:
            self._last_refresh = building_at
        stats.frames += 1
        stats.refresh_frames += not urgent
        if frame.patch_text is not None:
            stats.patch_bytes += len(frame.patch_text)
        else:
            stats.full_bytes = len(frame.full_text)
        for client in self.clients:
            client.wake.set()
        for callback in self.on_publish:
            callback(frame)
        return frame

    def publish_due(self) -> float:
        """When a change may be built: at once (now or earlier) when the last build is older
        than ``min_interval_s``, else exactly that interval after the last build started.
        Every change that arrives until then goes in that one build."""
        return self._last_build + self.min_interval_s

    def refresh_due(self) -> float:
        """When held jitter goes out even if nothing else changes."""
        return self._last_refresh + self.refresh_s

    async def run(self) -> None:
        """Forever: wait for a change (while anyone listens), coalesce, publish. A failure
        to build a frame is logged and retried; it never ends the service."""
        version = -1
        while True:
            try:
                await self._has_clients.wait()
                timeout = POLL_S
                holding = self._last_refresh < self._last_build
                if holding:
                    timeout = min(timeout, max(0.0, self.refresh_due() - self.clock()))
                version = await self.state.wait_changed(version, timeout)
                changed = version != self._published_version or holding
                if self._panels_moved():
                    changed = True
                if self._poked:
                    changed = True
                if not changed and self.frame is not None:
                    continue
                wait = self.publish_due() - self.clock()
                if wait > 0:
                    await asyncio.sleep(wait)
                self._poked = False
                version = self.state.version
                self._published_version = version
                if self.clients:
                    self.publish(paced=True)
            except asyncio.CancelledError:
                raise
            except Exception:
                _LOG.exception("live view failed; trying again")
                await asyncio.sleep(1.0)

    async def close(self) -> None:
        for client in list(self.clients):
            with contextlib.suppress(Exception):
                await client.ws.close(code=1001, message=b"server shutdown")
        self.clients.clear()


def _client_message(client: LiveClient, text: str) -> None:
    """An ack; anything else a client sends is ignored."""
    try:
        data = json.loads(text)
    except ValueError:
        return
    if isinstance(data, dict) and data.get("type") == "ack":  # pyright: ignore[reportUnknownMemberType]
        seq = data.get("seq")  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
        if isinstance(seq, int) and not isinstance(seq, bool):
            client.ack(seq)


async def websocket_handler(
    request: web.Request, hub: LiveHub, allowed: Callable[[web.Request], Awaitable[None]]
) -> web.StreamResponse:
    """``GET /api/v1/ws``: the live view. ``allowed`` raises when the request may not read."""
    await allowed(request)
    if len(hub.clients) >= MAX_CLIENTS:
        raise web.HTTPServiceUnavailable(
            text=json.dumps({"error": {"status": 503, "message": "too many live clients"}}),
            content_type="application/json",
        )
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=4096, compress=False)
    if not ws.can_prepare(request).ok:
        raise web.HTTPBadRequest(
            text=json.dumps(
                {"error": {"status": 400, "message": "this endpoint needs a WebSocket upgrade"}}
            ),
            content_type="application/json",
        )
    await ws.prepare(request)
    client = hub.add(ws)
    sender = asyncio.create_task(client.run(), name="smartpdu-live-client")
    try:
        async for message in ws:
            if message.type is WSMsgType.ERROR:
                break
            if message.type is WSMsgType.TEXT:
                _client_message(client, message.data)
    finally:
        hub.remove(client)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender
    return ws
