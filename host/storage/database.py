"""The SQLite file of one unit: a write connection on a writer thread, a read connection on
a reader thread, WAL mode, and the durable (fsynced) transaction settings and events use.

All writes go through one thread (a single-worker executor that owns the write connection),
so the event loop never waits on the disk and writes never contend; reads use a second
connection on a second thread (WAL lets them run beside the writer).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from host.storage.schema import StorageError, connect, migrate

T = TypeVar("T")


class Database:
    """Both connections and their threads. ``open_writer``/``open_reader`` run on their
    threads (through ``write``/``read``); ``close`` ends both."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="smartpdu-db-writer")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="smartpdu-db-reader")
        self._wcon: sqlite3.Connection | None = None
        self._rcon: sqlite3.Connection | None = None
        self.closed = False

    def open_writer(self, prepare: Callable[[sqlite3.Connection], None]) -> None:
        """Open (creating the file and migrating it) on the writer thread; ``prepare`` reads
        what the stores cache, before the connection is taken into use."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = connect(self.path)
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
            prepare(con)
        except sqlite3.DatabaseError as exc:
            con.close()
            raise StorageError(f"{self.path}: {exc}") from exc
        except BaseException:
            con.close()
            raise
        self._wcon = con

    def open_reader(self) -> None:
        self._rcon = connect(self.path)

    async def close(self) -> None:
        """Close both connections and stop both threads; later ``write``/``read`` fail."""
        self.closed = True
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

    async def write(self, job: Callable[[], T]) -> T:
        """Run ``job`` on the writer thread."""
        if self.closed:
            raise StorageError(f"{self.path}: storage is closed")
        return await asyncio.get_running_loop().run_in_executor(self._writer, job)

    async def read(self, job: Callable[[], T]) -> T:
        """Run ``job`` on the reader thread."""
        if self.closed:
            raise StorageError(f"{self.path}: storage is closed")
        return await asyncio.get_running_loop().run_in_executor(self._reader, job)

    @property
    def w(self) -> sqlite3.Connection:
        """The write connection (writer thread only)."""
        assert self._wcon is not None, "writer connection used before open"
        return self._wcon

    @property
    def r(self) -> sqlite3.Connection:
        """The read connection (reader thread only)."""
        assert self._rcon is not None, "reader connection used before open"
        return self._rcon

    def durable(self, statements: Iterable[tuple[str, Sequence[Any]]]) -> list[int | None]:
        """One transaction committed with synchronous=FULL: on disk when this returns.
        Returns each statement's lastrowid. Writer thread only."""
        con = self.w
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

    async def integrity_check(self) -> str:
        return await self.write(
            lambda: "; ".join(r[0] for r in self.w.execute("PRAGMA integrity_check"))
        )
