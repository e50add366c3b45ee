"""History: 1 s samples queued in memory and written in batches, read back as 1 s points or
1 min min/avg/max.

Batches commit with ``synchronous=NORMAL`` (atomic, never corrupt, survives kill -9), and at
least every ``HISTORY_DURABLE_S`` one batch commits with ``synchronous=FULL``: that fsyncs
the WAL and with it every batch before, so a power cut loses at most the last
~``HISTORY_DURABLE_S + flush_s`` seconds of history. An fsync every few seconds of a few KB
is what an SD card can take for years; one per second per event would not.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from host.config import HistoryConfig
from host.storage.database import Database

MAX_PENDING_SAMPLES = 3600  # 1 h of 1 s rows waiting for a stuck disk, then the oldest go
HISTORY_DURABLE_S = 5.0  # a history batch is fsynced at least this often (power cuts)


@dataclass(frozen=True)
class HistoryPoint:
    t: int  # s since the epoch: the second, or the start of the minute
    min: float
    avg: float
    max: float


class HistoryStore:
    """The queue of seconds not yet written, the series ids (writer thread), and the
    queries."""

    def __init__(self, db: Database, config: HistoryConfig) -> None:
        self._db = db
        self.config = config
        self._series: dict[str, int] = {}  # writer thread only
        self._pending: deque[tuple[int, Mapping[str, float]]] = deque()
        self.samples_dropped = 0
        self.history_syncs = 0  # history batches committed with an fsync
        self._history_synced_at = -math.inf

    def load_series(self, con: sqlite3.Connection) -> None:
        """Read the series ids when the writer opens (writer thread)."""
        self._series = dict(con.execute("SELECT name, id FROM series").fetchall())

    def add(self, at: float, values: Mapping[str, float]) -> None:
        """Queue one second of values (no I/O here; ``flush`` writes them in a batch)."""
        clean = {k: float(v) for k, v in values.items() if math.isfinite(v)}
        if not clean:
            return
        self._pending.append((int(at), clean))
        while len(self._pending) > MAX_PENDING_SAMPLES:
            self._pending.popleft()
            self.samples_dropped += 1

    async def flush(self) -> None:
        """Write the queued history in one transaction (synchronous=NORMAL)."""
        if not self._pending:
            return
        batch = list(self._pending)
        self._pending.clear()
        try:
            await self._db.write(lambda: self._write_samples(batch))
        except BaseException:
            self._pending.extendleft(reversed(batch))  # try again at the next flush
            raise

    def _series_id(self, name: str) -> int:
        sid = self._series.get(name)
        if sid is None:
            con = self._db.w
            con.execute("INSERT OR IGNORE INTO series (name) VALUES (?)", (name,))
            sid = int(con.execute("SELECT id FROM series WHERE name = ?", (name,)).fetchone()[0])
            self._series[name] = sid
        return sid

    def _write_samples(self, batch: Sequence[tuple[int, Mapping[str, float]]]) -> None:
        con = self._db.w
        durable = time.monotonic() - self._history_synced_at >= HISTORY_DURABLE_S
        if durable:
            con.execute("PRAGMA synchronous = FULL")
        con.execute("BEGIN IMMEDIATE")
        try:
            rows = [
                (self._series_id(name), t, value)
                for t, values in batch
                for name, value in values.items()
            ]
            con.executemany(
                "INSERT OR REPLACE INTO samples (series_id, t, value) VALUES (?, ?, ?)", rows
            )
            con.execute("COMMIT")
            if durable:
                self._history_synced_at = time.monotonic()
                self.history_syncs += 1
        except BaseException:
            con.execute("ROLLBACK")
            self._series = dict(con.execute("SELECT name, id FROM series").fetchall())
            raise
        finally:
            if durable:
                con.execute("PRAGMA synchronous = NORMAL")

    async def series_names(self) -> list[str]:
        return await self._db.read(
            lambda: [r[0] for r in self._db.r.execute("SELECT name FROM series ORDER BY name")]
        )

    async def query(
        self,
        series: str,
        start: float,
        end: float,
        resolution: Literal["auto", "seconds", "minutes"] = "auto",
    ) -> list[HistoryPoint]:
        """Points of one series in [start, end]: 1 s samples while they are kept (auto),
        else 1 min min/avg/max."""
        if resolution == "auto":
            keep = self.config.keep_samples_s
            resolution = "seconds" if start >= time.time() - keep else "minutes"
        lo, hi = math.floor(start), math.ceil(end)

        def job() -> list[HistoryPoint]:
            con = self._db.r
            row = con.execute("SELECT id FROM series WHERE name = ?", (series,)).fetchone()
            if row is None:
                return []
            if resolution == "seconds":
                return [
                    HistoryPoint(t, v, v, v)
                    for t, v in con.execute(
                        "SELECT t, value FROM samples WHERE series_id = ? AND t BETWEEN ? AND ? "
                        "ORDER BY t",
                        (row[0], lo, hi),
                    )
                ]
            return [
                HistoryPoint(*r)
                for r in con.execute(
                    "SELECT t, min, avg, max FROM minutes WHERE series_id = ? "
                    "AND t BETWEEN ? AND ? ORDER BY t",
                    (row[0], lo - 59, hi),
                )
            ]

        return await self._db.read(job)
