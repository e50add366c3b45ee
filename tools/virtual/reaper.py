"""The stray-process guard of the virtual PDU: the boards run in their own sessions, so a
reaper process (and an atexit hook) kills their process groups if this process dies."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
import subprocess
import sys

# ---------------------------------------------------------------------- stray-process guard

LIVE_PGIDS: set[int] = set()


def kill_stray_boards() -> None:
    # Last resort when the interpreter exits without stop(): no MicroPython process survives.
    for pgid in list(LIVE_PGIDS):
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)
    LIVE_PGIDS.clear()


atexit.register(kill_stray_boards)

# The reaper outlives a SIGKILLed virtual PDU just long enough to kill its boards: it reads
# "+pgid" / "-pgid" lines, and when its stdin closes (our process ended, however it ended)
# it kills the process groups still registered.  Its own session: no terminal signal.
_REAPER_SCRIPT = """
import os, signal, sys
for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
    signal.signal(sig, signal.SIG_IGN)
live = set()
for line in sys.stdin:
    if line[:1] in "+-" and line[1:].strip().isdigit():
        (live.add if line[0] == "+" else live.discard)(int(line[1:]))
for pgid in live:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
"""


class Reaper:
    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-c", _REAPER_SCRIPT],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self._process.pid

    def _tell(self, line: str) -> None:
        stdin = self._process.stdin
        if stdin is not None and not stdin.closed:
            with contextlib.suppress(OSError):
                stdin.write(line.encode())
                stdin.flush()

    def add(self, pgid: int) -> None:
        self._tell(f"+{pgid}\n")

    def discard(self, pgid: int) -> None:
        self._tell(f"-{pgid}\n")

    async def close(self) -> None:
        """Every board is stopped: let the reaper exit."""
        stdin = self._process.stdin
        if stdin is not None:
            with contextlib.suppress(OSError):
                stdin.close()
        for _ in range(100):
            if self._process.poll() is not None:
                return
            await asyncio.sleep(0.02)
        self._process.kill()
        self._process.wait()
