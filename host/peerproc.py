"""A stand-alone peer: the real :class:`host.peers.directory.PeerDirectory` and exchange
routes with a synthetic unit, no boards. Used by the multi-process tests and the peer benchmark::

    python -m host.peerproc --unit-id smartPDU0000A1 --data-dir /tmp/a --port 8080 \\
        --l1 10.5 --l2 11.5 --l3 12.5 --n 1.5 --view-file /tmp/a.json --admin-token T

It serves ``POST /api/v1/peers/exchange``, ``GET /api/v1/peers``, ``GET /api/v1/units``
(pane A: itself first, then its peers), ``GET /api/v1/units/{id}`` and ``.../view`` (a
minimal document, enough for ``fetch_unit``). With ``--view-file`` it also writes pane A
there (atomically, every ``--view-every`` s) so a test can watch it without HTTP. Adopting
and removing (``POST /api/v1/peers/adopt``, ``.../remove``) need the header
``X-Admin-Token: <--admin-token>`` (no token: refused). ``--data-dir`` keeps its key pair and
trust set. SIGTERM or SIGINT stop it cleanly (mDNS goodbyes sent).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from host.domain import UNIT_ID_PATTERN, validate_label
from host.peers.directory import PeerDirectory
from host.peers.envelope import LocalStatus
from host.peers.known import MemoryNumbering, Numbering
from host.peers.settings import PeerSettings
from host.web.peers_routes import add_routes as add_peer_routes

_LOG = logging.getLogger("host.peerproc")


def _unit_id(text: str) -> str:
    if not UNIT_ID_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a unit id like smartPDU0A1B2C")
    return text


def _label(text: str) -> str:
    try:
        return validate_label(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m host.peerproc", description=__doc__)
    p.add_argument("--unit-id", type=_unit_id, required=True)
    p.add_argument("--site-key", default="", help="pre-shared site key: adopts its holders")
    p.add_argument("--data-dir", type=Path, help="keeps the key pair and the trust set")
    p.add_argument("--admin-token", default="", help="X-Admin-Token for adopt/remove")
    p.add_argument("--port", type=int, default=8080, help="web port (0 = any free one)")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--address", action="append", help="advertise this address (repeatable)")
    p.add_argument("--name", type=_label, default="")
    p.add_argument("--model", type=int, choices=(36, 48, 72), default=36)
    for phase in ("l1", "l2", "l3", "n"):
        p.add_argument(f"--{phase}", type=float, default=None, help=f"{phase.upper()} current, A")
    p.add_argument("--warning", action="store_true")
    p.add_argument("--tripped", action="store_true")
    p.add_argument("--static", action="append", default=[], help="host:port of a peer")
    p.add_argument("--no-mdns", action="store_true")
    p.add_argument("--db", type=Path, help="SQLite database for the detection-order numbers")
    p.add_argument("--view-file", type=Path)
    p.add_argument("--view-every", type=float, default=0.2)
    p.add_argument("--exchange-s", type=float, default=1.0)
    p.add_argument("--offline-after", type=float, default=5.0)
    p.add_argument("--forget-after", type=float, default=3600.0)
    p.add_argument("--retry-s", type=float, default=5.0)
    p.add_argument("--log-level", default="WARNING")
    return p.parse_args(argv)


class SyntheticUnit:
    """A unit with fixed currents."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.unit_id: str = args.unit_id
        self.status = LocalStatus(
            name=args.name,
            model=args.model,
            l1=args.l1,
            l2=args.l2,
            l3=args.l3,
            n=args.n,
            source="meter" if args.l1 is not None else "none",
            warning=args.warning,
            tripped=args.tripped,
            online=True,
        )

    def row(self, number: int | None, url: str) -> dict[str, Any]:
        s = self.status
        return {
            "id": self.unit_id, "name": s.name or f"smartPDU {number}", "custom_name": s.name,
            "number": number, "model": s.model, "url": url, "local": True,
            "l1": s.l1, "l2": s.l2, "l3": s.l3, "n": s.n, "source": s.source,
            "warning": s.warning, "tripped": s.tripped, "online": s.online, "alarms": s.alarms,
        }  # fmt: skip


UNIT = web.AppKey("peerproc.unit", SyntheticUnit)
DIRECTORY = web.AppKey("peerproc.directory", PeerDirectory)


def pane_a(app: web.Application, url: str) -> list[dict[str, Any]]:
    directory = app[DIRECTORY]
    return [app[UNIT].row(directory.number, url), *directory.rows()]


async def units_handler(request: web.Request) -> web.Response:
    return web.json_response(pane_a(request.app, f"{request.scheme}://{request.host}/"))


async def unit_handler(request: web.Request) -> web.Response:
    unit = request.app[UNIT]
    if request.match_info["unit_id"] != unit.unit_id:
        raise web.HTTPNotFound(text='{"error": "not this unit"}', content_type="application/json")
    row = unit.row(request.app[DIRECTORY].number, f"{request.scheme}://{request.host}/")
    return web.json_response({"unit_id": unit.unit_id, "synthetic": True, "summary": row})


def token_guard(token: str) -> Callable[[web.Request], Awaitable[None]]:
    """The admin check of a stand-alone peer: a fixed token in ``X-Admin-Token``."""

    async def guard(request: web.Request) -> None:
        given = request.headers.get("X-Admin-Token", "")
        if not token or not hmac.compare_digest(given.encode(), token.encode()):
            raise web.HTTPForbidden(
                text='{"error": "admin token"}', content_type="application/json"
            )

    return guard


def create_app(unit: SyntheticUnit, directory: PeerDirectory, token: str = "") -> web.Application:
    app = web.Application()
    app[UNIT] = unit
    app[DIRECTORY] = directory
    add_peer_routes(app, directory, write_guard=token_guard(token))
    app.router.add_get("/api/v1/units", units_handler)
    app.router.add_get("/api/v1/units/{unit_id}", unit_handler)
    app.router.add_get("/api/v1/units/{unit_id}/view", unit_handler)
    return app


def write_view(path: Path, app: web.Application, url: str) -> None:
    directory = app[DIRECTORY]
    data = {
        "unit_id": app[UNIT].unit_id,
        "t": time.time(),
        "pid": os.getpid(),
        "units": pane_a(app, url),
        "status": directory.status(),
    }
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


async def serve(args: argparse.Namespace) -> None:
    unit = SyntheticUnit(args)
    numbering: Numbering = MemoryNumbering()
    storage = None
    if args.db is not None:
        from host.storage.store import Storage

        storage = await Storage.open(args.db)
        numbering = storage
    settings = PeerSettings(
        exchange_s=args.exchange_s,
        offline_after_s=args.offline_after,
        forget_after_s=args.forget_after,
        retry_s=args.retry_s,
        mdns=not args.no_mdns,
        static=tuple(args.static),
    )
    runner: web.AppRunner | None = None
    directory: PeerDirectory | None = None
    try:
        directory = PeerDirectory(
            unit.unit_id,
            site_key=args.site_key,
            web_port=args.port,
            local=lambda: unit.status,
            numbering=numbering,
            settings=settings,
            addresses=args.address,
            data_dir=args.data_dir,
        )
        app = create_app(unit, directory, args.admin_token)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, args.host, args.port, reuse_address=True)
        await site.start()
        port = args.port
        for address in runner.addresses:
            if isinstance(address, tuple) and len(address) >= 2:  # pyright: ignore[reportUnknownArgumentType]
                port = int(address[1])  # pyright: ignore[reportUnknownArgumentType]
                break
        directory.web_port = port  # the socket first: the port is known before it is announced
        await directory.start()
        url = (directory.urls or (f"http://127.0.0.1:{port}/",))[0]
        _LOG.warning(
            "peer %s on %s (key %s, site key %s)", unit.unit_id, url,
            directory.identity.fingerprint, "set" if args.site_key else "none",
        )  # fmt: skip
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        while not stop.is_set():
            if args.view_file is not None:
                try:
                    write_view(args.view_file, app, url)
                except OSError as exc:
                    _LOG.error("cannot write %s: %s", args.view_file, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), args.view_every)
    finally:
        if directory is not None:
            await directory.close()
        if runner is not None:
            await runner.cleanup()
        if storage is not None:
            await storage.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
