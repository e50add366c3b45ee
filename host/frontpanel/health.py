"""Whether the service is healthy, for the RUN heartbeat and systemd's watchdog.

Healthy means: the loop runs (checked by the heartbeat itself: a stalled loop runs no
check at all), every watched part is alive (its task has not ended, the web server listens)
and every part with a progress counter (the bus master's superframes, the meter's polls)
moved within ``stall_after_s``: a task stuck on an await that never returns is alive but
makes no progress, and systemd should restart the service.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class _Watched:
    name: str
    alive: Callable[[], bool]
    progress: Callable[[], int] | None
    last_value: int | None = None
    last_moved: float = 0.0


class Health:
    """The watched parts; ``check(now)`` says what is wrong, or "" when nothing is."""

    def __init__(self, stall_after_s: float) -> None:
        self.stall_after_s = stall_after_s
        self._parts: dict[str, _Watched] = {}

    def watch(
        self,
        name: str,
        alive: Callable[[], bool],
        progress: Callable[[], int] | None = None,
        *,
        now: float,
    ) -> None:
        self._parts[name] = _Watched(name, alive, progress, None, now)

    def watch_task(
        self, task: asyncio.Task[Any], progress: Callable[[], int] | None = None, *, now: float
    ) -> None:
        self.watch(task.get_name(), lambda: not task.done(), progress, now=now)

    def forget(self, name: str) -> None:
        self._parts.pop(name, None)

    @property
    def names(self) -> list[str]:
        return sorted(self._parts)

    def check(self, now: float) -> str:
        problems: list[str] = []
        for part in self._parts.values():
            if not part.alive():
                problems.append(f"{part.name} has stopped")
                continue
            if part.progress is None:
                continue
            value = part.progress()
            if value != part.last_value:
                part.last_value = value
                part.last_moved = now
            elif now - part.last_moved > self.stall_after_s:
                problems.append(f"{part.name} made no progress for {now - part.last_moved:.0f} s")
        return "; ".join(problems)


def web_serving(handle: object) -> bool:
    """The web server (a ``host.web.WebHandle``) still listens on all its sockets."""
    runner = getattr(handle, "runner", None)
    if runner is None:
        return handle is not None
    if getattr(runner, "server", None) is None:
        return False
    sites = list(getattr(runner, "sites", ()))
    if not sites:
        return False
    for site in sites:
        server = getattr(site, "_server", None)  # aiohttp keeps the asyncio.Server private
        if isinstance(server, asyncio.Server) and not server.is_serving():
            return False
    return True
