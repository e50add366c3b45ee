"""The event log, with the black box saved beside each trip. Events are committed durably
(fsynced), like settings; a batch of them costs one fsync."""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from host.state import Event, to_jsonable
from host.storage.database import Database

# An event's columns, then its compressed black box (or None) and the box's window.
_EventRow = tuple[tuple[Any, ...], bytes | None, float]


@dataclass(frozen=True)
class StoredEvent:
    id: int
    time: float
    kind: str
    severity: str
    unit: str
    group: str | None
    channel: str | None
    message: str
    data: Mapping[str, Any]
    has_black_box: bool

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(self)


def _event_row(event: Event, black_box: Mapping[str, Any] | None) -> _EventRow:
    values = (
        event.time,
        event.kind.value,
        event.severity.value,
        event.unit,
        event.group,
        event.channel,
        event.message,
        json.dumps(to_jsonable(event.data)),
    )
    box: bytes | None = None
    window = 0.0
    if black_box is not None:
        box = zlib.compress(json.dumps(to_jsonable(black_box)).encode(), 6)
        window = float(black_box.get("window_s", 0.0))
    return values, box, window


class EventLog:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def append(self, entries: Sequence[tuple[Event, Mapping[str, Any] | None]]) -> list[int]:
        """Log events, each with its black box or None, in one durable transaction: a burst
        costs one fsync, not one per event. Returns their ids, in order."""
        rows = [_event_row(event, black_box) for event, black_box in entries]
        if not rows:
            return []
        return await self._db.write(lambda: self._insert(rows))

    def _insert(self, rows: Sequence[_EventRow]) -> list[int]:
        con = self._db.w
        ids: list[int] = []
        con.execute("PRAGMA synchronous = FULL")
        try:
            con.execute("BEGIN IMMEDIATE")
            try:
                for values, box, window in rows:
                    event_id = con.execute(
                        "INSERT INTO events (t, kind, severity, unit, grp, channel, message, "
                        "data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        values,
                    ).lastrowid
                    assert event_id is not None
                    ids.append(event_id)
                    if box is not None:
                        con.execute(
                            "INSERT INTO black_boxes (event_id, window_s, data) VALUES (?, ?, ?)",
                            (event_id, window, box),
                        )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        finally:
            con.execute("PRAGMA synchronous = NORMAL")
        return ids

    async def page(
        self,
        limit: int = 100,
        *,
        before_id: int | None = None,
        kinds: Iterable[str] | None = None,
        since: float | None = None,
    ) -> list[StoredEvent]:
        """Newest first; page with ``before_id``."""
        where: list[str] = []
        params: list[Any] = []
        if before_id is not None:
            where.append("e.id < ?")
            params.append(before_id)
        kind_list = list(kinds or ())
        if kind_list:
            where.append(f"e.kind IN ({', '.join('?' * len(kind_list))})")
            params.extend(kind_list)
        if since is not None:
            where.append("e.t >= ?")
            params.append(since)
        sql = (
            "SELECT e.id, e.t, e.kind, e.severity, e.unit, e.grp, e.channel, e.message, e.data, "
            "b.event_id IS NOT NULL FROM events e LEFT JOIN black_boxes b ON b.event_id = e.id"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY e.id DESC LIMIT ?"
        )
        params.append(max(1, min(limit, 10_000)))

        def job() -> list[StoredEvent]:
            return [
                StoredEvent(
                    r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], json.loads(r[8]), bool(r[9])
                )
                for r in self._db.r.execute(sql, params)
            ]

        return await self._db.read(job)

    async def black_box(self, event_id: int) -> dict[str, Any] | None:
        def job() -> dict[str, Any] | None:
            row = self._db.r.execute(
                "SELECT data FROM black_boxes WHERE event_id = ?", (event_id,)
            ).fetchone()
            return None if row is None else json.loads(zlib.decompress(row[0]))

        return await self._db.read(job)
