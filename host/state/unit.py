"""UnitState: the one model of the whole PDU, composed of one part per source (boards,
channels, mains, settings) around one event hub, in the manner of Home Assistant's
coordinators. The bus master and the meter reader call it; the web, storage and peer layers
read its snapshots and events.

Layering: transport -> protocol -> bus master / meter reader -> **unit state** -> storage,
web. The state knows nothing about serial ports, SQLite or HTTP. It runs on the event loop
(its methods are plain, fast, synchronous calls; none blocks), and it never controls power
(R7): nothing here switches, trips or resets anything. Times: see host.state.clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType

from host.config import ServiceConfig, default_config
from host.domain import MODEL_GROUPS
from host.state.boards import BoardRegistry
from host.state.builder import SnapshotSources, build_snapshot, group_board_online
from host.state.channels import Channel, Channels, channel_freshness
from host.state.clock import StateClock
from host.state.events import Event, EventHub, EventQueue
from host.state.mains import MainBreaker, MainMeter, MainsNode
from host.state.settings import UnitSettings
from host.state.snapshot import Freshness, LinkStats, MeterSample, Sample, UnitSnapshot
from host.supervision import SupervisionSettings
from protocol.messages import Info, Report, Status, Telemetry


class UnitState:
    """The live model of one smartPDU. Updated by the bus master and the meter reader, read
    through ``snapshot()``; changes are announced to listeners and ``wait_changed``."""

    def __init__(
        self,
        config: ServiceConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config = config or default_config()
        self._clock = StateClock(clock, wall_clock)
        unit = config.unit
        self.unit_id = unit.unit_id
        self.model = unit.model
        groups = MODEL_GROUPS[unit.model]
        self._hub = hub = EventHub(unit.unit_id, self._clock)
        self._boards = BoardRegistry(hub, unit.model, groups, config.bus.expected_firmware)
        self._channels = Channels(hub, unit.model, groups, config.channels)
        self._settings = UnitSettings(hub, self._channels, unit.name, config.channels)
        self._breaker = MainBreaker(hub, config.breaker)
        self._meter = MainMeter(hub, config.meter, self._breaker, started_at=clock())
        self._mains = MainsNode(hub, self._clock, self._breaker, unit.temperature_warning_c)
        self._sources = SnapshotSources(
            unit_id=unit.unit_id,
            model=unit.model,
            groups=groups,
            bus_stale_after_s=config.bus.stale_after_s,
            clock=self._clock,
            hub=hub,
            boards=self._boards,
            channels=self._channels,
            meter=self._meter,
            breaker=self._breaker,
            mains=self._mains,
        )
        self._version = 0
        self._snapshot: UnitSnapshot | None = None
        self._changed: asyncio.Event | None = None

    # -- time ------------------------------------------------------------------------------

    def now(self) -> float:
        return self._clock.now()

    def wall(self, at: float | None) -> float | None:
        """Wall-clock time of a ``clock`` time."""
        return self._clock.wall(at)

    # -- listeners and changes -------------------------------------------------------------

    @property
    def version(self) -> int:
        return self._version

    def add_event_listener(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback(event)`` for every event; returns the function that removes it.
        Callbacks run on the event loop inside the update: keep them short."""
        return self._hub.add_event_listener(callback)

    def add_sample_listener(self, callback: Callable[[Sample], None]) -> Callable[[], None]:
        """Every group report and meter reading as it arrives (the black box uses this)."""
        return self._hub.add_sample_listener(callback)

    def event_queue(self, maxsize: int = 1000) -> EventQueue:
        """A bounded queue of the events from now on; ``close()`` it (or use ``with``)."""
        return self._hub.event_queue(maxsize)

    async def wait_changed(self, since_version: int, timeout: float | None = None) -> int:
        """Wait until the state is newer than ``since_version``; returns the new version
        (or the same one after ``timeout``)."""
        if self._version != since_version:
            return self._version
        if self._changed is None:
            self._changed = asyncio.Event()
        changed = self._changed
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation that
        # arrives as the event is set, and with hundreds of changes a second that happens:
        # the service then never stopped (its live view kept running).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await changed.wait()
        return self._version

    def _touch(self) -> None:
        self._version += 1
        self._snapshot = None
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    # -- user settings ---------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._settings.name

    def restore_settings(
        self,
        *,
        unit_name: str | None = None,
        labels: Mapping[str, str] | None = None,
        supervision: Mapping[str, SupervisionSettings] | None = None,
    ) -> None:
        """Settings loaded from storage at start-up: applied without events. Entries for
        channels this model does not have are ignored (a unit re-configured 72 -> 48)."""
        self._settings.restore(self.now(), unit_name, labels, supervision)
        self._touch()

    def set_unit_name(self, name: str) -> str:
        """Rename the unit (pane B, pen icon). ValueError for an invalid name."""
        clean, changed = self._settings.set_unit_name(name, self.now())
        if changed:
            self._touch()
        return clean

    def set_channel_label(self, cid: str, label: str) -> str:
        """Label a channel (R11). ValueError for an unknown channel or an invalid label."""
        clean, changed = self._settings.set_channel_label(cid, label, self.now())
        if changed:
            self._touch()
        return clean

    def supervision_defaults(self) -> SupervisionSettings:
        return self._settings.supervision_defaults()

    def supervision_of(self, cid: str) -> SupervisionSettings:
        return self._settings.supervision_of(cid)

    def set_supervision(self, cid: str, settings: SupervisionSettings) -> SupervisionSettings:
        """Set a channel's supervision (R12, eye icon). ValueError if out of range."""
        ch = self._channels.get(cid)
        now = self.now()
        result, changed = self._settings.set_supervision(
            ch, settings, now, self._live_current(ch, now)
        )
        if changed:
            self._touch()
        return result

    # -- boards ----------------------------------------------------------------------------

    def board_online(
        self,
        address: int,
        at: float,
        *,
        board_type: int | None = None,
        uid: bytes | None = None,
        group: str = "",
    ) -> None:
        """The bus master heard from a board (first time, or back after being offline)."""
        self._boards.online(address, at, board_type, uid, group)
        self._touch()

    def board_info(self, address: int, info: Info, at: float) -> None:
        """INFO from a board: firmware, uid, group, config digest and flags."""
        self._boards.info(address, info, at)
        self._touch()

    def board_offline(self, address: int, at: float, reason: str = "no answer") -> None:
        news, group = self._boards.offline(address, at, reason)
        if group is not None:
            self._channels.group_offline(group, at)
        if news:
            self._touch()

    def update_link(self, address: int, stats: LinkStats) -> None:
        """Link counters from the bus master (no event: the snapshot shows them)."""
        if self._boards.update_link(address, stats):
            self._touch()

    # -- group reports ---------------------------------------------------------------------

    def apply_report(self, address: int, report: Report, received_at: float) -> bool:
        """A compact REPORT. False when the board has no group yet (before its INFO)."""
        board = self._boards.report_source(address, received_at)
        if board is None:
            return False
        board.selected = report.selected + 1 if report.selected >= 0 else None
        self._channels.apply_report(board.group, report, received_at)
        self._after_group_update(board.group, received_at)
        return True

    def apply_telemetry(self, address: int, telemetry: Telemetry, received_at: float) -> bool:
        """A full TELEMETRY: currents, states, crest factors, time to trip, board health."""
        board = self._boards.report_source(address, received_at)
        if board is None:
            return False
        self._boards.telemetry(board, telemetry, received_at)
        self._channels.apply_telemetry(board.group, telemetry, received_at)
        self._after_group_update(board.group, received_at)
        return True

    def _after_group_update(self, group: str, at: float) -> None:
        self._hub.sample(self._channels.sample(group, self._clock.wall_of(at)))
        self._touch()

    # -- mains -----------------------------------------------------------------------------

    def apply_meter(self, readings: Mapping[str, float], received_at: float) -> None:
        """One successful meter read (names from the meter profile). Non-finite values are
        treated as missing; quantities the read did not include keep their own age."""
        if not self.config.meter.enabled:
            return
        clean = self._meter.apply(readings, received_at)
        self._breaker.feed(clean, received_at)
        wall = self._clock.wall_of(received_at)
        self._hub.sample(MeterSample(wall, MappingProxyType(dict(clean))))
        self._touch()

    def meter_error(self, at: float, reason: str, *, offline: bool = False) -> None:
        """A failed meter read. ``offline`` True: the reader knows the meter is gone (port
        lost, several timeouts) and the values must not wait for the stale limit."""
        self._meter.failed(at, reason, offline)
        self._touch()

    def meter_value(self, name: str) -> float | None:
        """A live meter value (None when stale or missing): e.g. the bus master's SYNC
        frequency."""
        return self._meter.value(name, self.now())

    def apply_status(self, address: int, status: Status, received_at: float) -> None:
        """STATUS from the mains status node: contacts, latched cause, temperature."""
        self._boards.status(address, status, received_at)
        self._mains.apply_status(status, received_at)
        self._touch()

    # -- time passing and snapshots --------------------------------------------------------

    def tick(self, now: float | None = None) -> None:
        """Re-judge what depends on time alone (meter staleness). Call about once a
        second; ``snapshot()`` calls it too, so a snapshot never shows stale data as live."""
        now = self.now() if now is None else now
        if self._meter.refresh(now):
            self._touch()

    def snapshot(self, now: float | None = None) -> UnitSnapshot:
        """The whole unit, immutable. Rebuilt only after a change (or when time alone made
        data stale)."""
        now = self.now() if now is None else now
        self.tick(now)
        if self._snapshot is not None and not self._freshness_moved(self._snapshot, now):
            return self._snapshot
        snapshot = build_snapshot(self._sources, self._settings.name, self._version, now)
        self._snapshot = snapshot
        return snapshot

    def _channel_freshness(self, ch: Channel, now: float) -> Freshness:
        online = group_board_online(self._sources, ch.group)
        return channel_freshness(ch, online, self.config.bus.stale_after_s, now)

    def _live_current(self, ch: Channel, now: float) -> float | None:
        return ch.current if self._channel_freshness(ch, now) is Freshness.LIVE else None

    def _freshness_moved(self, snapshot: UnitSnapshot, now: float) -> bool:
        for group in snapshot.groups:
            for cs in group.channels:
                if cs.freshness is Freshness.LIVE:
                    ch = self._channels.by_id(cs.id)
                    if self._channel_freshness(ch, now) is not Freshness.LIVE:
                        return True
        for reading in snapshot.meter.readings:
            if reading.freshness is Freshness.LIVE:
                entry = self._meter.values.get(reading.name)
                if entry and self._meter.reading_freshness(entry[1], now) is not Freshness.LIVE:
                    return True
        return False
