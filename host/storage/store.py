"""``Storage``: the database of one unit, one object for the service and the web API over
the settings store, the event log, the history and its retention."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from host.config import HistoryConfig
from host.state import Event
from host.storage.database import Database
from host.storage.events import EventLog, StoredEvent
from host.storage.history import HistoryPoint, HistoryStore
from host.storage.retention import Retention
from host.storage.schema import StorageError
from host.storage.settings import SettingsStore, StoredSettings
from host.supervision import SupervisionSettings

_LOG = logging.getLogger(__name__)
T = TypeVar("T")
MAINTAIN_EVERY_S = 60.0


class Storage:
    """The database of one unit. Open with ``await Storage.open(path)``; run ``run()`` as a
    background task (flushes history, aggregates minutes, prunes); ``await close()``."""

    def __init__(self, path: Path, history: HistoryConfig | None = None) -> None:
        self.path = Path(path)
        self.history_config = history or HistoryConfig()
        self._db = Database(self.path)
        self._settings = SettingsStore(self._db)
        self._events = EventLog(self._db)
        self._history = HistoryStore(self._db, self.history_config)
        self._retention = Retention(self._db, self.history_config)

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    async def open(cls, path: str | Path, history: HistoryConfig | None = None) -> Storage:
        storage = cls(Path(path), history)
        await storage._db.write(storage._open_writer)
        await storage._db.read(storage._db.open_reader)
        return storage

    def _open_writer(self) -> None:
        self._db.open_writer(self._history.load_series)
        # Minutes a crash left undone are aggregated before anything new is written.
        self._retention.aggregate_minutes(time.time())

    async def __aenter__(self) -> Storage:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Write what is pending and close; safe to call twice."""
        if self._db.closed:
            return
        with contextlib.suppress(Exception):
            await self.flush()
        await self._db.close()

    async def _write(self, job: Callable[[], T]) -> T:
        """Run ``job`` on the writer thread (tests use it to look at the connection)."""
        return await self._db.write(job)

    @property
    def _w(self) -> sqlite3.Connection:
        return self._db.w

    # -- settings --------------------------------------------------------------------------

    async def save_unit_name(self, name: str) -> None:
        await self._settings.save_unit_name(name)

    async def save_channel_label(self, channel: str, label: str) -> None:
        await self._settings.save_channel_label(channel, label)

    async def save_supervision(self, channel: str, settings: SupervisionSettings) -> None:
        await self._settings.save_supervision(channel, settings)

    async def load_settings(self) -> StoredSettings:
        return await self._settings.load()

    async def unit_number(self, unit_id: str) -> int:
        """The unit's number in detection order, assigned on first sight and kept."""
        return await self._settings.unit_number(unit_id)

    async def unit_numbers(self) -> dict[str, int]:
        return await self._settings.unit_numbers()

    # -- events ----------------------------------------------------------------------------

    async def append_event(self, event: Event, black_box: Mapping[str, Any] | None = None) -> int:
        """Log one event (durably, like a setting); returns its id."""
        return (await self.append_events([(event, black_box)]))[0]

    async def append_events(
        self, entries: Sequence[tuple[Event, Mapping[str, Any] | None]]
    ) -> list[int]:
        """Log events with their black boxes in one durable transaction; returns their ids."""
        return await self._events.append(entries)

    async def events(
        self,
        limit: int = 100,
        *,
        before_id: int | None = None,
        kinds: Iterable[str] | None = None,
        since: float | None = None,
    ) -> list[StoredEvent]:
        """Newest first; page with ``before_id``."""
        return await self._events.page(limit, before_id=before_id, kinds=kinds, since=since)

    async def black_box(self, event_id: int) -> dict[str, Any] | None:
        return await self._events.black_box(event_id)

    # -- history ---------------------------------------------------------------------------

    @property
    def samples_dropped(self) -> int:
        return self._history.samples_dropped

    @property
    def history_syncs(self) -> int:
        """History batches committed with an fsync."""
        return self._history.history_syncs

    def add_history(self, at: float, values: Mapping[str, float]) -> None:
        """Queue one second of values (no I/O here; ``flush`` writes them in a batch)."""
        self._history.add(at, values)

    async def flush(self) -> None:
        """Write the queued history in one transaction (synchronous=NORMAL)."""
        await self._history.flush()

    async def series_names(self) -> list[str]:
        return await self._history.series_names()

    async def history(
        self,
        series: str,
        start: float,
        end: float,
        resolution: Literal["auto", "seconds", "minutes"] = "auto",
    ) -> list[HistoryPoint]:
        """Points of one series in [start, end]: 1 s samples while they are kept (auto),
        else 1 min min/avg/max."""
        return await self._history.query(series, start, end, resolution)

    # -- maintenance -----------------------------------------------------------------------

    async def maintain(self, now: float | None = None) -> None:
        """Aggregate finished minutes, drop what is past its retention, keep the file
        under ``max_size_mb``. ``run()`` calls it every minute."""
        at = time.time() if now is None else now
        await self.flush()
        await self._db.write(lambda: self._retention.maintain(at))

    def used_bytes(self) -> int:
        """Bytes in use in the file (writer thread only)."""
        return self._retention.used_bytes()

    async def integrity_check(self) -> str:
        return await self._db.integrity_check()

    async def run(self) -> None:
        """Background task: flush history every ``flush_s``, maintain every minute."""
        loop = asyncio.get_running_loop()
        next_maintain = loop.time() + MAINTAIN_EVERY_S
        while not self._db.closed:
            await asyncio.sleep(self.history_config.flush_s)
            try:
                if loop.time() >= next_maintain:
                    next_maintain = loop.time() + MAINTAIN_EVERY_S
                    await self.maintain()
                else:
                    await self.flush()
            except StorageError:
                if self._db.closed:
                    return
                raise
            except sqlite3.Error:
                _LOG.exception("history write failed; retrying at the next flush")
