"""JSON-lines control sockets of the simulator processes (bus, meter, virtual PDU): the
server, a client helper, and the run-until-signal loop of a simulator process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable, Mapping
from typing import Any

from tools.virtual.bus_endpoints import VirtualBusError


async def start_control_server(
    path: str, handler: Callable[[dict[str, Any]], dict[str, Any]]
) -> asyncio.AbstractServer:
    """Serve ``handler`` on a UNIX socket: one JSON object per line in, one per line out."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    request = json.loads(line)
                    if not isinstance(request, dict):
                        raise ValueError("request must be a JSON object")
                    reply = handler(request)
                except ValueError as exc:
                    reply = {"ok": False, "error": f"bad request: {exc}"}
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return await asyncio.start_unix_server(serve, path=path)


async def control_request(
    path: str, request: Mapping[str, Any], *, timeout: float = 5.0
) -> dict[str, Any]:
    """Send one request to a control socket and return its reply."""
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), timeout)
    try:
        writer.write(json.dumps(dict(request)).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
    finally:
        writer.close()
    reply = json.loads(line)
    if not isinstance(reply, dict):
        raise VirtualBusError(f"bad control reply {line!r}")
    return reply


async def serve_until_signal(
    service: Any, control_path: str | None, describe: Callable[[], dict[str, Any]]
) -> int:
    """Run a simulator process: start ``service``, serve its control socket, print
    ``describe()`` as one JSON line, and stop cleanly on SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await service.start()
    control = None
    try:
        if control_path is not None:
            control = await start_control_server(control_path, service.handle_control)
        sys.stdout.write(json.dumps(describe()) + "\n")
        sys.stdout.flush()
        await stop.wait()
    finally:
        if control is not None and control_path is not None:
            control.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(control_path)
        await service.stop()
    return 0
