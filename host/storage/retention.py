"""Retention on the writer thread: minutes aggregated from the 1 s samples, rows past their
keep time pruned, and the file kept under its size limit. Settings and the event log are
never dropped for space."""

from __future__ import annotations

import logging

from host.config import HistoryConfig
from host.storage.database import Database

_LOG = logging.getLogger(__name__)

MAX_EVENTS = 200_000  # beyond the retention time, a flapping input cannot fill the card
_KEY_MINUTES_DONE = "minutes_done_until"


class Retention:
    """Every method runs on the writer thread."""

    def __init__(self, db: Database, config: HistoryConfig) -> None:
        self._db = db
        self.config = config

    def maintain(self, now: float) -> None:
        self.aggregate_minutes(now)
        self._prune(now)
        self._bound_size()

    def _meta(self, key: str) -> str | None:
        row = self._db.w.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def aggregate_minutes(self, now: float) -> None:
        """Minutes are computed from the 1 s samples, which are kept for an hour, so a crash
        loses no minute: the next start aggregates whatever was not done."""
        con = self._db.w
        until = int(now) // 60 * 60  # the minute in progress stays open
        done_text = self._meta(_KEY_MINUTES_DONE)
        if done_text is None:
            row = con.execute("SELECT MIN(t) FROM samples").fetchone()
            if row[0] is None:
                return
            done = int(row[0]) // 60 * 60
        else:
            done = int(done_text)
        done = max(done, until - self.config.keep_samples_s)
        if done >= until:
            return
        con.execute("BEGIN IMMEDIATE")
        try:
            for (sid,) in con.execute("SELECT id FROM series").fetchall():
                con.execute(
                    "INSERT OR REPLACE INTO minutes (series_id, t, min, avg, max, count) "
                    "SELECT series_id, t / 60 * 60, MIN(value), AVG(value), MAX(value), "
                    "COUNT(*) FROM samples WHERE series_id = ? AND t >= ? AND t < ? "
                    "GROUP BY t / 60",
                    (sid, done, until),
                )
            con.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                (_KEY_MINUTES_DONE, str(until)),
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def _prune(self, now: float) -> None:
        con = self._db.w
        h = self.config
        sample_horizon = int(now) - h.keep_samples_s
        minute_horizon = int(now) - h.keep_minutes_days * 86400
        event_horizon = now - h.keep_events_days * 86400
        con.execute("BEGIN IMMEDIATE")
        try:
            for (sid,) in con.execute("SELECT id FROM series").fetchall():
                # Range deletes on the (series_id, t) key: no full-table scan.
                con.execute(
                    "DELETE FROM samples WHERE series_id = ? AND t < ?", (sid, sample_horizon)
                )
                con.execute(
                    "DELETE FROM minutes WHERE series_id = ? AND t < ?", (sid, minute_horizon)
                )
            con.execute("DELETE FROM events WHERE t < ?", (event_horizon,))
            con.execute(
                "DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?", (MAX_EVENTS,)
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def used_bytes(self) -> int:
        con = self._db.w
        pages = con.execute("PRAGMA page_count").fetchone()[0]
        free = con.execute("PRAGMA freelist_count").fetchone()[0]
        size = con.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    def _bound_size(self) -> None:
        """Over the size limit: give up the oldest day of minutes, then of 1 s samples,
        until under it."""
        con = self._db.w
        limit = self.config.max_size_mb * 1024 * 1024
        for table in ("minutes", "samples"):
            while self.used_bytes() > limit:
                row = con.execute(f"SELECT MIN(t), MAX(t) FROM {table}").fetchone()
                if row[0] is None:
                    break
                oldest, newest = int(row[0]), int(row[1])
                step = 86400 if table == "minutes" else 600
                cut = min(oldest + step, newest + 1)
                self._drop_before(table, cut)
                _LOG.warning("history over %d MB: dropped %s before %d", limit >> 20, table, cut)
        pages = con.execute("PRAGMA page_count").fetchone()[0]
        free = con.execute("PRAGMA freelist_count").fetchone()[0]
        if free > max(256, pages // 8):  # give space back only when it is worth a rewrite
            con.execute("PRAGMA incremental_vacuum")

    def _drop_before(self, table: str, cut: int) -> None:
        con = self._db.w
        con.execute("BEGIN IMMEDIATE")
        try:
            for (sid,) in con.execute("SELECT id FROM series").fetchall():
                con.execute(f"DELETE FROM {table} WHERE series_id = ? AND t < ?", (sid, cut))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
