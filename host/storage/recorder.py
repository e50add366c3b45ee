"""The recorder wires a UnitState to Storage: every event into the log (trips with their
black box), one history row per second, and the black box fed from every report.

The recorder writes every event queued at that moment in one durable transaction, so a burst
(a power loss, a script renaming channels) costs one fsync and the log never falls seconds
behind the unit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Sequence

from host.state import Event, EventKind, EventQueue, Freshness, UnitSnapshot, UnitState
from host.storage.blackbox import BlackBox
from host.storage.schema import StorageError
from host.storage.store import Storage

_LOG = logging.getLogger(__name__)

TRIP_KINDS = frozenset({EventKind.BREAKER_TRIPPED, EventKind.CHANNEL_TRIPPED})
MAX_EVENT_BATCH = 500  # events per transaction of the event log


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
