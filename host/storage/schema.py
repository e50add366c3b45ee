"""The database schema: its migrations, applying them, and opening a connection."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

_LOG = logging.getLogger(__name__)

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


class StorageError(Exception):
    """The database cannot be used (newer schema, unreadable file)."""


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


def connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: no implicit transactions; every write names its own.
    con = sqlite3.connect(path, isolation_level=None, timeout=10.0, check_same_thread=False)
    con.execute("PRAGMA busy_timeout = 10000")
    con.execute("PRAGMA foreign_keys = ON")
    return con
