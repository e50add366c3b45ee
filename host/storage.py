"""Persistence on the Pi: SQLite in WAL mode, one writer thread, schema migrations.

What is kept:

* user settings: the unit's name, channel labels, supervision ranges, the numbering of the
  units in detection order;
* the event log, with a "black box" (the last 30 s of every channel and the meter) saved
  with every trip;
* history: 1 s samples for the last hour, 1 min min/avg/max for 30 days, bounded in size.

Durability, and why the two ``synchronous`` levels:

* Settings (and events) are committed in their own transaction with ``synchronous=FULL``:
  in WAL mode that fsyncs the log at every commit, so once a ``save_*`` coroutine returns,
  the setting survives kill -9 *and* a power cut. They are rare, so the fsync costs nothing
  anyone notices. The ``Recorder`` writes every event queued at that moment in one such
  transaction, so a burst (a power loss, a script renaming channels) costs one fsync and
  the log never falls seconds behind the unit.
* History is written in batches every ``flush_s`` with ``synchronous=NORMAL`` (atomic, never
  corrupt, survives kill -9), and at least every ``HISTORY_DURABLE_S`` one batch commits with
  ``synchronous=FULL``: that fsyncs the WAL and with it every batch before, so a power cut
  loses at most the last ~``HISTORY_DURABLE_S + flush_s`` seconds of history. An fsync every
  few seconds of a few KB is what an SD card can take for years; one per second per event
  would not.

All writes go through one thread (a single-worker executor that owns the write connection),
so the event loop never waits on the disk and writes never contend; reads use a second
connection on a second thread (WAL lets them run beside the writer).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import sqlite3
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from host.config import HistoryConfig
from host.domain import validate_label
from host.model import (
    ChannelSample,
    Event,
    EventKind,
    EventQueue,
    Freshness,
    MeterSample,
    Sample,
    UnitSnapshot,
    UnitState,
    to_jsonable,
)
from host.supervision import SupervisionSettings

_LOG = logging.getLogger(__name__)
T = TypeVar("T")

# Each migration is a list of statements run in one transaction; never edit a released one,
# add the next instead. The schema version is the number of migrations applied.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: settings, units, events, black boxes, history
        """CREATE TABLE settings (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL,            -- JSON
            updated_at REAL NOT NULL
        )""",
        """CREATE TABLE channel_labels (
            channel TEXT PRIMARY KEY,       -- 'A7'
            label TEXT NOT NULL,
            updated_at REAL NOT NULL
        )""",
        """CREATE TABLE channel_supervision (
            channel TEXT PRIMARY KEY,
            enabled INTEGER NOT NULL,
            min_a REAL NOT NULL,
            max_a REAL NOT NULL,
            dwell_s REAL NOT NULL,
            hysteresis_a REAL NOT NULL,
            updated_at REAL NOT NULL
        )""",
        """CREATE TABLE units (
            unit_id TEXT PRIMARY KEY,       -- smartPDUxxxxxx
            number INTEGER NOT NULL UNIQUE, -- detection order, 1-based, never reused
            first_seen REAL NOT NULL
        )""",
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            t REAL NOT NULL,                -- wall clock, s since the epoch
            kind TEXT NOT NULL,
            severity TEXT NOT NULL,
            unit TEXT NOT NULL,
            grp TEXT,
            channel TEXT,
            message TEXT NOT NULL,
            data TEXT NOT NULL              -- JSON
        )""",
        """CREATE TABLE black_boxes (
            event_id INTEGER PRIMARY KEY REFERENCES events(id) ON DELETE CASCADE,
            window_s REAL NOT NULL,
            data BLOB NOT NULL              -- zlib-compressed JSON
        )""",
        """CREATE TABLE series (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE       -- 'A7', 'sum.L1', 'meter.l1_current'
        )""",
        """CREATE TABLE samples (
            series_id INTEGER NOT NULL,
            t INTEGER NOT NULL,             -- whole seconds since the epoch
            value REAL NOT NULL,
            PRIMARY KEY (series_id, t)
        ) WITHOUT ROWID""",
        """CREATE TABLE minutes (
            series_id INTEGER NOT NULL,
            t INTEGER NOT NULL,             -- start of the minute
            min REAL NOT NULL,
            avg REAL NOT NULL,
            max REAL NOT NULL,
            count INTEGER NOT NULL,
            PRIMARY KEY (series_id, t)
        ) WITHOUT ROWID""",
        """CREATE TABLE meta (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        )""",
    ),
    (  # 2: the event log is browsed by time and filtered by kind
        "CREATE INDEX events_by_time ON events(t)",
        "CREATE INDEX events_by_kind ON events(kind, t)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

TRIP_KINDS = frozenset({EventKind.BREAKER_TRIPPED, EventKind.CHANNEL_TRIPPED})
MAX_EVENTS = 200_000  # beyond the retention time, a flapping input cannot fill the card
MAX_PENDING_SAMPLES = 3600  # 1 h of 1 s rows waiting for a stuck disk, then the oldest go
HISTORY_DURABLE_S = 5.0  # a history batch is fsynced at least this often (power cuts)
BLACK_BOX_MIN_INTERVAL_S = 0.1  # at most 10 frames a second per group in the black box
MAINTAIN_EVERY_S = 60.0
MAX_EVENT_BATCH = 500  # events per transaction of the event log
_KEY_MINUTES_DONE = "minutes_done_until"


class StorageError(Exception):
    """The database cannot be used (newer schema, unreadable file)."""


@dataclass(frozen=True)
class StoredSettings:
    unit_name: str | None
    labels: Mapping[str, str]
    supervision: Mapping[str, SupervisionSettings]


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


@dataclass(frozen=True)
class HistoryPoint:
    t: int  # s since the epoch: the second, or the start of the minute
    min: float
    avg: float
    max: float


# ----------------------------------------------------------------------------- black box


class BlackBox:
    """The last ``window_s`` of every group's reports and of the meter, in memory; a dump
    is saved with each trip so what led up to it can be seen afterwards."""

    def __init__(self, window_s: float = 30.0) -> None:
        self.window_s = window_s
        self._channels: deque[ChannelSample] = deque()
        self._meter: deque[MeterSample] = deque()
        self._last_kept: dict[str, float] = {}

    def record(self, sample: Sample) -> None:
        if isinstance(sample, ChannelSample):
            last = self._last_kept.get(sample.group)
            # 10 % slack: a board reporting at exactly 10 Hz must not lose every other frame
            # to float rounding of its timestamps.
            if last is not None and 0 <= sample.at - last < 0.9 * BLACK_BOX_MIN_INTERVAL_S:
                return
            self._last_kept[sample.group] = sample.at
            self._channels.append(sample)
        else:
            self._meter.append(sample)
        self._trim(sample.at)

    def _trim(self, now: float) -> None:
        horizon = now - self.window_s
        while self._channels and self._channels[0].at < horizon:
            self._channels.popleft()
        while self._meter and self._meter[0].at < horizon:
            self._meter.popleft()

    def dump(self) -> dict[str, Any]:
        """The window as JSON-ready data: per group a list of [t, currents, states]."""
        groups: dict[str, list[list[Any]]] = {}
        for s in self._channels:
            groups.setdefault(s.group, []).append(
                [round(s.at, 3), list(s.currents_a), [st.value for st in s.states]]
            )
        meter = [[round(s.at, 3), dict(s.readings)] for s in self._meter]
        return {"window_s": self.window_s, "groups": groups, "meter": meter}


def history_values(snapshot: UnitSnapshot) -> dict[str, float]:
    """The series recorded every second: live channel currents, per-phase channel sums and
    live meter readings. Stale or missing data is left out, never written as a value."""
    values: dict[str, float] = {}
    for channel in snapshot.iter_channels():
        if channel.freshness is Freshness.LIVE and channel.current_a is not None:
            values[channel.id] = channel.current_a
    if any(g.board.online for g in snapshot.groups):
        sums = snapshot.channel_phase_currents
        values.update({"sum.L1": sums.l1, "sum.L2": sums.l2, "sum.L3": sums.l3})
    for reading in snapshot.meter.readings:
        if reading.freshness is Freshness.LIVE:
            values[f"meter.{reading.name}"] = reading.value
    return values


# ----------------------------------------------------------------------------- migrations


def schema_version(con: sqlite3.Connection) -> int:
    con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = con.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def migrate(con: sqlite3.Connection, target: int = SCHEMA_VERSION, source: str = "") -> int:
    """Bring the schema to ``target``, one transaction per migration; refuses a database
    made by newer software (it would not know what it breaks)."""
    current = schema_version(con)
    if current > len(MIGRATIONS):
        raise StorageError(
            f"{source or 'database'}: schema version {current} is newer than this software "
            f"supports ({len(MIGRATIONS)}); update the software or move the file away"
        )
    for version in range(current + 1, target + 1):
        con.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[version - 1]:
                con.execute(statement)
            con.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        _LOG.info("database schema migrated to version %d", version)
    return max(current, target)


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: no implicit transactions; every write names its own.
    con = sqlite3.connect(path, isolation_level=None, timeout=10.0, check_same_thread=False)
    con.execute("PRAGMA busy_timeout = 10000")
    con.execute("PRAGMA foreign_keys = ON")
    return con


# ----------------------------------------------------------------------------- storage


class Storage:
    """The database of one unit. Open with ``await Storage.open(path)``; run ``run()`` as a
    background task (flushes history, aggregates minutes, prunes); ``await close()``."""

    def __init__(self, path: Path, history: HistoryConfig | None = None) -> None:
        self.path = Path(path)
        self.history_config = history or HistoryConfig()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="smartpdu-db-writer")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="smartpdu-db-reader")
        self._wcon: sqlite3.Connection | None = None
        self._rcon: sqlite3.Connection | None = None
        self._series: dict[str, int] = {}  # writer thread only
        self._pending: deque[tuple[int, Mapping[str, float]]] = deque()
        self._closed = False
        self._last_maintain = 0.0
        self.samples_dropped = 0
        self.history_syncs = 0  # history batches committed with an fsync
        self._history_synced_at = -math.inf

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    async def open(cls, path: str | Path, history: HistoryConfig | None = None) -> Storage:
        storage = cls(Path(path), history)
        await storage._write(storage._open_writer)
        await storage._read(storage._open_reader)
        return storage

    async def __aenter__(self) -> Storage:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _open_writer(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = _connect(self.path)
        try:
            if con.execute("PRAGMA page_count").fetchone()[0] == 0:
                # Only possible before the first table: lets pruning give space back.
                con.execute("PRAGMA auto_vacuum = INCREMENTAL")
            mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StorageError(f"{self.path}: cannot use WAL mode (got {mode})")
            con.execute("PRAGMA synchronous = FULL")  # migrations are settings too
            con.execute("PRAGMA journal_size_limit = 8388608")
            migrate(con, source=str(self.path))
            con.execute("PRAGMA synchronous = NORMAL")
            self._series = dict(con.execute("SELECT name, id FROM series").fetchall())
        except sqlite3.DatabaseError as exc:
            con.close()
            raise StorageError(f"{self.path}: {exc}") from exc
        except BaseException:
            con.close()
            raise
        self._wcon = con
        self._aggregate_minutes(time.time())

    def _open_reader(self) -> None:
        self._rcon = _connect(self.path)

    async def close(self) -> None:
        """Write what is pending and close; safe to call twice."""
        if self._closed:
            return
        with contextlib.suppress(Exception):
            await self.flush()
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer, self._close_writer)
        await loop.run_in_executor(self._reader, self._close_reader)
        self._writer.shutdown(wait=True)
        self._reader.shutdown(wait=True)

    def _close_writer(self) -> None:
        if self._wcon is not None:
            with contextlib.suppress(sqlite3.Error):
                self._wcon.execute("PRAGMA optimize")
            self._wcon.close()
            self._wcon = None

    def _close_reader(self) -> None:
        if self._rcon is not None:
            self._rcon.close()
            self._rcon = None

    async def _write(self, job: Callable[[], T]) -> T:
        if self._closed:
            raise StorageError(f"{self.path}: storage is closed")
        return await asyncio.get_running_loop().run_in_executor(self._writer, job)

    async def _read(self, job: Callable[[], T]) -> T:
        if self._closed:
            raise StorageError(f"{self.path}: storage is closed")
        return await asyncio.get_running_loop().run_in_executor(self._reader, job)

    @property
    def _w(self) -> sqlite3.Connection:
        assert self._wcon is not None, "writer connection used before open"
        return self._wcon

    @property
    def _r(self) -> sqlite3.Connection:
        assert self._rcon is not None, "reader connection used before open"
        return self._rcon

    def _durable(self, statements: Iterable[tuple[str, Sequence[Any]]]) -> list[int | None]:
        """One transaction committed with synchronous=FULL: on disk when this returns.
        Returns each statement's lastrowid."""
        con = self._w
        con.execute("PRAGMA synchronous = FULL")
        try:
            con.execute("BEGIN IMMEDIATE")
            try:
                ids = [con.execute(sql, params).lastrowid for sql, params in statements]
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        finally:
            con.execute("PRAGMA synchronous = NORMAL")
        return ids

    # -- settings --------------------------------------------------------------------------

    async def save_unit_name(self, name: str) -> None:
        clean = validate_label(name)
        await self._write(
            lambda: self._durable(
                [
                    (
                        "INSERT OR REPLACE INTO settings (key, value, updated_at) "
                        "VALUES ('unit_name', ?, ?)",
                        (json.dumps(clean), time.time()),
                    )
                ]
            )
        )

    async def save_channel_label(self, channel: str, label: str) -> None:
        clean = validate_label(label)
        await self._write(
            lambda: self._durable(
                [
                    (
                        "INSERT OR REPLACE INTO channel_labels (channel, label, updated_at) "
                        "VALUES (?, ?, ?)",
                        (channel, clean, time.time()),
                    )
                ]
            )
        )

    async def save_supervision(self, channel: str, settings: SupervisionSettings) -> None:
        s = settings.validated()
        await self._write(
            lambda: self._durable(
                [
                    (
                        "INSERT OR REPLACE INTO channel_supervision (channel, enabled, min_a, "
                        "max_a, dwell_s, hysteresis_a, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            channel,
                            int(s.enabled),
                            s.min_a,
                            s.max_a,
                            s.dwell_s,
                            s.hysteresis_a,
                            time.time(),
                        ),
                    )
                ]
            )
        )

    async def load_settings(self) -> StoredSettings:
        def job() -> StoredSettings:
            con = self._r
            row = con.execute("SELECT value FROM settings WHERE key = 'unit_name'").fetchone()
            labels = dict(con.execute("SELECT channel, label FROM channel_labels").fetchall())
            supervision = {
                channel: SupervisionSettings(bool(enabled), lo, hi, dwell, hyst)
                for channel, enabled, lo, hi, dwell, hyst in con.execute(
                    "SELECT channel, enabled, min_a, max_a, dwell_s, hysteresis_a "
                    "FROM channel_supervision"
                )
            }
            return StoredSettings(None if row is None else json.loads(row[0]), labels, supervision)

        return await self._read(job)

    async def unit_number(self, unit_id: str) -> int:
        """The unit's number in detection order: assigned on first sight, then kept for
        good (a unit seen again after a restart keeps its number)."""

        def job() -> int:
            self._durable(
                [
                    (
                        "INSERT OR IGNORE INTO units (unit_id, number, first_seen) VALUES "
                        "(?, (SELECT COALESCE(MAX(number), 0) + 1 FROM units), ?)",
                        (unit_id, time.time()),
                    )
                ]
            )
            row = self._w.execute("SELECT number FROM units WHERE unit_id = ?", (unit_id,))
            return int(row.fetchone()[0])

        return await self._write(job)

    async def unit_numbers(self) -> dict[str, int]:
        return await self._read(
            lambda: dict(self._r.execute("SELECT unit_id, number FROM units").fetchall())
        )

    # -- events ----------------------------------------------------------------------------

    async def append_event(self, event: Event, black_box: Mapping[str, Any] | None = None) -> int:
        """Log one event (durably, like a setting); returns its id."""
        return (await self.append_events([(event, black_box)]))[0]

    async def append_events(
        self, entries: Sequence[tuple[Event, Mapping[str, Any] | None]]
    ) -> list[int]:
        """Log events, each with its black box or None, in one durable transaction: a burst
        costs one fsync, not one per event. Returns their ids, in order."""
        rows: list[tuple[tuple[Any, ...], bytes | None, float]] = []
        for event, black_box in entries:
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
            rows.append((values, box, window))

        def job() -> list[int]:
            con = self._w
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
                                "INSERT INTO black_boxes (event_id, window_s, data) "
                                "VALUES (?, ?, ?)",
                                (event_id, window, box),
                            )
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
            finally:
                con.execute("PRAGMA synchronous = NORMAL")
            return ids

        if not rows:
            return []
        return await self._write(job)

    async def events(
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
                for r in self._r.execute(sql, params)
            ]

        return await self._read(job)

    async def black_box(self, event_id: int) -> dict[str, Any] | None:
        def job() -> dict[str, Any] | None:
            row = self._r.execute(
                "SELECT data FROM black_boxes WHERE event_id = ?", (event_id,)
            ).fetchone()
            return None if row is None else json.loads(zlib.decompress(row[0]))

        return await self._read(job)

    # -- history ---------------------------------------------------------------------------

    def add_history(self, at: float, values: Mapping[str, float]) -> None:
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
            await self._write(lambda: self._write_samples(batch))
        except BaseException:
            self._pending.extendleft(reversed(batch))  # try again at the next flush
            raise

    def _series_id(self, name: str) -> int:
        sid = self._series.get(name)
        if sid is None:
            con = self._w
            con.execute("INSERT OR IGNORE INTO series (name) VALUES (?)", (name,))
            sid = int(con.execute("SELECT id FROM series WHERE name = ?", (name,)).fetchone()[0])
            self._series[name] = sid
        return sid

    def _write_samples(self, batch: Sequence[tuple[int, Mapping[str, float]]]) -> None:
        con = self._w
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
        return await self._read(
            lambda: [r[0] for r in self._r.execute("SELECT name FROM series ORDER BY name")]
        )

    async def history(
        self,
        series: str,
        start: float,
        end: float,
        resolution: Literal["auto", "seconds", "minutes"] = "auto",
    ) -> list[HistoryPoint]:
        """Points of one series in [start, end]: 1 s samples while they are kept (auto),
        else 1 min min/avg/max."""
        if resolution == "auto":
            keep = self.history_config.keep_samples_s
            resolution = "seconds" if start >= time.time() - keep else "minutes"
        lo, hi = math.floor(start), math.ceil(end)

        def job() -> list[HistoryPoint]:
            con = self._r
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

        return await self._read(job)

    # -- maintenance -----------------------------------------------------------------------

    async def maintain(self, now: float | None = None) -> None:
        """Aggregate finished minutes, drop what is past its retention, keep the file
        under ``max_size_mb``. ``run()`` calls it every minute."""
        at = time.time() if now is None else now
        await self.flush()
        await self._write(lambda: self._maintain(at))

    def _maintain(self, now: float) -> None:
        self._aggregate_minutes(now)
        self._prune(now)
        self._bound_size()

    def _meta(self, key: str) -> str | None:
        row = self._w.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _aggregate_minutes(self, now: float) -> None:
        """Minutes are computed from the 1 s samples, which are kept for an hour, so a crash
        loses no minute: the next start aggregates whatever was not done."""
        con = self._w
        until = int(now) // 60 * 60  # the minute in progress stays open
        done_text = self._meta(_KEY_MINUTES_DONE)
        if done_text is None:
            row = con.execute("SELECT MIN(t) FROM samples").fetchone()
            if row[0] is None:
                return
            done = int(row[0]) // 60 * 60
        else:
            done = int(done_text)
        done = max(done, until - self.history_config.keep_samples_s)
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
        con = self._w
        h = self.history_config
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
        con = self._w
        pages = con.execute("PRAGMA page_count").fetchone()[0]
        free = con.execute("PRAGMA freelist_count").fetchone()[0]
        size = con.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    def _bound_size(self) -> None:
        """Over the size limit: give up the oldest day of minutes, then of 1 s samples,
        until under it. Settings and the event log are never dropped for space."""
        con = self._w
        limit = self.history_config.max_size_mb * 1024 * 1024
        for table in ("minutes", "samples"):
            while self.used_bytes() > limit:
                row = con.execute(f"SELECT MIN(t), MAX(t) FROM {table}").fetchone()
                if row[0] is None:
                    break
                oldest, newest = int(row[0]), int(row[1])
                step = 86400 if table == "minutes" else 600
                cut = min(oldest + step, newest + 1)
                con.execute("BEGIN IMMEDIATE")
                try:
                    for (sid,) in con.execute("SELECT id FROM series").fetchall():
                        con.execute(
                            f"DELETE FROM {table} WHERE series_id = ? AND t < ?", (sid, cut)
                        )
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                _LOG.warning("history over %d MB: dropped %s before %d", limit >> 20, table, cut)
        pages = con.execute("PRAGMA page_count").fetchone()[0]
        free = con.execute("PRAGMA freelist_count").fetchone()[0]
        if free > max(256, pages // 8):  # give space back only when it is worth a rewrite
            con.execute("PRAGMA incremental_vacuum")

    async def integrity_check(self) -> str:
        return await self._write(
            lambda: "; ".join(r[0] for r in self._w.execute("PRAGMA integrity_check"))
        )

    async def run(self) -> None:
        """Background task: flush history every ``flush_s``, maintain every minute."""
        loop = asyncio.get_running_loop()
        next_maintain = loop.time() + MAINTAIN_EVERY_S
        while not self._closed:
            await asyncio.sleep(self.history_config.flush_s)
            try:
                if loop.time() >= next_maintain:
                    next_maintain = loop.time() + MAINTAIN_EVERY_S
                    await self.maintain()
                else:
                    await self.flush()
            except StorageError:
                if self._closed:
                    return
                raise
            except sqlite3.Error:
                _LOG.exception("history write failed; retrying at the next flush")


# ----------------------------------------------------------------------------- recorder


class Recorder:
    """Wires a UnitState to Storage: every event into the log (trips with their black box),
    one history row per second, and the black box fed from every report."""

    def __init__(self, state: UnitState, storage: Storage, black_box_s: float = 30.0) -> None:
        self.state = state
        self.storage = storage
        self.black_box = BlackBox(black_box_s)
        self.events_logged = 0

    async def run(self, sample_every_s: float = 1.0) -> None:
        remove_samples = self.state.add_sample_listener(self.black_box.record)
        queue = self.state.event_queue(maxsize=10_000)
        logger = asyncio.create_task(self._log_events(queue), name="smartpdu-event-log")
        try:
            loop = asyncio.get_running_loop()
            next_at = loop.time()
            while True:
                snapshot = self.state.snapshot()
                values = history_values(snapshot)
                if values:
                    self.storage.add_history(snapshot.taken_at, values)
                next_at += sample_every_s
                await asyncio.sleep(max(0.0, next_at - loop.time()))
        finally:
            remove_samples()
            logger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await logger
            # Events that arrived but were not yet written are still worth keeping.
            while not queue.empty():
                with contextlib.suppress(Exception):
                    await self._log_batch(_take_batch(queue, []))
            queue.close()

    async def _log_events(self, queue: EventQueue) -> None:
        # Everything queued goes in one transaction: a burst of events (or of settings
        # changes) costs one fsync, so the log keeps up and a kill -9 or a power cut loses
        # only the batch being written, not a backlog of seconds.
        while True:
            batch = _take_batch(queue, [await queue.get()])
            try:
                await self._log_batch(batch)
            except (sqlite3.Error, StorageError):
                _LOG.exception("could not log %d events (%s …)", len(batch), batch[0].kind)

    async def _log_batch(self, batch: Sequence[Event]) -> None:
        box = None
        if any(event.kind in TRIP_KINDS for event in batch):
            box = self.black_box.dump()
        await self.storage.append_events(
            [(event, box if event.kind in TRIP_KINDS else None) for event in batch]
        )
        self.events_logged += len(batch)


def _take_batch(queue: EventQueue, batch: list[Event]) -> list[Event]:
    while len(batch) < MAX_EVENT_BATCH and not queue.empty():
        batch.append(queue.get_nowait())
    return batch
