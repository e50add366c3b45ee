"""The site's Prometheus target list: this unit and every unit the peer exchange knows, in
the JSON that Prometheus's file_sd and http_sd share::

    [{"targets": ["10.0.0.12:8080"], "labels": {"unit": "smartPDU0A1B2C", "unit_name": "FOH"}}]

``GET /api/v1/prometheus/targets`` serves it (http_sd); with ``export.prometheus.file_sd`` the
service also writes it to that file whenever it changes (file_sd), atomically: a temporary
file in the same folder, fsync, rename, fsync of the folder, so Prometheus never reads half a
list and a power cut leaves the old list or the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from host.peers.directory import PeerDirectory

_LOG = logging.getLogger(__name__)

Target = dict[str, Any]


def _host_port(url: str | None) -> str | None:
    """ "10.0.0.12:8080" of "http://10.0.0.12:8080/" (None: no usable address)."""
    if not url:
        return None
    parts = urlsplit(url)
    if not parts.hostname or parts.port is None:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{parts.port}"


def _entry(address: str, unit_id: str, name: str) -> Target:
    return {"targets": [address], "labels": {"unit": unit_id, "unit_name": name}}


class SiteTargets:
    """Builds the target list of the site as this unit sees it."""

    def __init__(
        self,
        unit_id: str,
        unit_name: Callable[[], str],
        *,
        web_host: str,
        web_port: Callable[[], int],
        peers: PeerDirectory | None = None,
    ) -> None:
        self.unit_id = unit_id
        self.unit_name = unit_name
        self.web_host = web_host
        self.web_port = web_port
        self.peers = peers

    def own_address(self) -> str:
        """Where the other units reach this one, else the configured host, else the host name."""
        if self.peers is not None:
            for url in self.peers.urls:
                address = _host_port(url)
                if address is not None:
                    return address
        host = self.web_host
        if host in ("0.0.0.0", "", "::"):
            host = socket.getfqdn()
        elif ":" in host:
            host = f"[{host}]"
        return f"{host}:{self.web_port()}"

    def targets(self, own_address: str | None = None) -> list[Target]:
        """This unit first, then the known units with a web address, in detection order. A unit
        gone offline stays listed (Prometheus shows it down) until the exchange forgets it."""
        out = [_entry(own_address or self.own_address(), self.unit_id, self.unit_name())]
        if self.peers is not None:
            for unit in self.peers.units():
                address = _host_port(unit.url)
                if address is not None:
                    out.append(_entry(address, unit.id, unit.name))
        return out

    async def keep_file(self, path: Path, *, settle_s: float = 0.5) -> None:
        """Write the list to ``path`` now and after every change (the service's task)."""
        changed = asyncio.Event()
        changed.set()
        remove = self.peers.on_change(changed.set) if self.peers is not None else None
        written: list[Target] | None = None
        try:
            while True:
                await changed.wait()
                changed.clear()
                targets = self.targets()
                if targets != written:
                    try:
                        await asyncio.to_thread(write_targets_file, path, targets)
                        written = targets
                    except OSError as exc:
                        _LOG.error("prometheus file_sd: cannot write %s: %s", path, exc)
                        changed.set()  # retried after the pause
                await asyncio.sleep(settle_s)  # a burst of changes makes one write
        finally:
            if remove is not None:
                remove()


def write_targets_file(path: Path, targets: list[Target]) -> None:
    """Replace ``path`` with ``targets`` atomically (temp file, fsync, rename, fsync folder)."""
    data = json.dumps(targets, indent=1, ensure_ascii=False).encode() + b"\n"
    folder = path.parent
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp, 0o644)  # Prometheus runs as its own user
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
