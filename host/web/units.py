"""Pane A's list of units: this one, and the peers a discovery layer adds.

Peers slot in through :meth:`UnitDirectory.add_source`: a callable returning the summaries of
the units it knows (the same shape as ``GET /api/v1/units`` rows, with ``local`` False and
the ``url`` of the peer's own web interface), and :meth:`UnitDirectory.changed` to wake the
live updates when that list changes. The local unit is always first; peers follow in their
detection order (``number``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from host.state import UnitSnapshot
from host.web.view import unit_summary

_LOG = logging.getLogger(__name__)

JSON = dict[str, Any]
PeerSource = Callable[[], Sequence[JSON]]
UNIT_FIELDS = ("id", "name", "number", "url", "l1", "l2", "l3", "n", "warning", "tripped", "online")


class UnitDirectory:
    def __init__(self, number: int | None) -> None:
        self.number = number  # this unit's number in detection order
        self._sources: list[PeerSource] = []
        self._listeners: list[Callable[[], None]] = []

    def add_source(self, source: PeerSource) -> Callable[[], None]:
        """Register a provider of peer summaries; returns the function that removes it."""
        self._sources.append(source)
        self.changed()

        def remove() -> None:
            if source in self._sources:
                self._sources.remove(source)
                self.changed()

        return remove

    def on_change(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)

    def changed(self) -> None:
        """A peer appeared, left or changed: push pane A to every browser."""
        for callback in list(self._listeners):
            callback()

    def peers(self, local_id: str) -> list[JSON]:
        rows: list[JSON] = []
        seen = {local_id}
        for source in list(self._sources):
            try:
                found = list(source())
            except Exception:
                _LOG.exception("peer source failed")
                continue
            for row in found:
                uid = row.get("id")
                if not isinstance(uid, str) or uid in seen:
                    continue
                seen.add(uid)
                rows.append({**row, "local": False})
        rows.sort(key=lambda r: (r.get("number") is None, r.get("number") or 0, r["id"]))
        return rows

    def units(self, snapshot: UnitSnapshot, local_url: str) -> list[JSON]:
        local = unit_summary(snapshot, number=self.number, url=local_url)
        return [local, *self.peers(snapshot.unit_id)]
