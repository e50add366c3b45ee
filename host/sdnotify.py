"""systemd's notification protocol (``sd_notify``), without a dependency: one datagram of
``KEY=VALUE`` lines to the AF_UNIX socket named by ``$NOTIFY_SOCKET`` (``@name`` is in the
abstract namespace). The unit is ``Type=notify`` with ``WatchdogSec=``: the service says
``READY=1`` once it serves, ``WATCHDOG=1`` while it is healthy (``host.frontpanel``'s
heartbeat decides), ``STOPPING=1`` when it shuts down. Outside systemd (no
``$NOTIFY_SOCKET``) every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

_LOG = logging.getLogger(__name__)


class SystemdNotifier:
    """Sends notifications to systemd; never raises (monitoring goes on without it)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_interval_s = watchdog_interval_s(env)
        self.sent = 0
        self._sock: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *fields: str) -> bool:
        """Send ``fields`` (e.g. ``"READY=1"``) as one datagram; False when not sent."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:
            if not self._warned:  # once: a missing socket would otherwise log every ping
                self._warned = True
                _LOG.warning("cannot notify systemd at %s: %s", os.fsdecode(self.address), exc)
            return False
        self.sent += 1
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _socket_address(name: str) -> bytes | None:
    if not name:
        return None
    if name.startswith("@"):  # the abstract namespace: a leading NUL byte, not a path
        return b"\0" + name[1:].encode()
    if not name.startswith("/"):
        return None  # sd_notify accepts only these two forms (vsock is not for us)
    return os.fsencode(name)


def watchdog_interval_s(environ: Mapping[str, str]) -> float | None:
    """Half of ``$WATCHDOG_USEC`` (as systemd recommends), or None when no watchdog is
    asked for this process (``$WATCHDOG_PID`` names another one: a child we started)."""
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    pid = environ.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 2e6
