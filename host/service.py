"""The aggregator service: one asyncio process that owns the bus, the meter, the unit state,
the database and the web server.

Layers, bottom up: ``transport`` (serial port) → ``busmaster`` (protocol, scheduling) and
``meter`` (Modbus) → ``state.UnitState`` → ``storage`` → web. Monitoring never controls power
(R7): nothing here can switch or trip anything, and if this process dies the PDU's power
distribution does not notice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from host.busmaster import BusMaster, CycleSettings
from host.config import ServiceConfig
from host.export.mqtt import MqttExporter
from host.export.targets import SiteTargets
from host.frontpanel import FrontPanel, Health, web_serving
from host.meter import Freshness, MeterReader, MeterReadings, load_profile
from host.peers.directory import PeerDirectory
from host.peers.envelope import LocalStatus
from host.peers.settings import PeerSettings
from host.sdnotify import SystemdNotifier
from host.state import StateBusListener, UnitState
from host.storage.recorder import Recorder
from host.storage.store import Storage
from host.transport import DriverEnable, SerialTransport

_LOG = logging.getLogger(__name__)


class PanelLink(Protocol):
    """A board's front panel the web UI can show and press (virtual boards only)."""

    @property
    def state(self) -> Any: ...

    async def press(self, button: int, hold_ms: int = 120) -> None: ...


@dataclass
class ServiceParts:
    """What the web layer and tests can reach inside a running service."""

    config: ServiceConfig
    state: UnitState
    storage: Storage
    master: BusMaster
    transport: SerialTransport
    meter: MeterReader | None
    panels: Mapping[str, PanelLink] = field(default_factory=dict)
    peers: PeerDirectory | None = None
    mqtt: MqttExporter | None = None
    frontpanel: FrontPanel | None = None


WebStarter = Callable[[ServiceParts], Awaitable[Callable[[], Awaitable[None]]]]


class Service:
    """Runs every part; ``await run()`` until cancelled, then shuts down in order."""

    def __init__(
        self,
        config: ServiceConfig,
        *,
        panels: Mapping[str, PanelLink] | None = None,
        web: WebStarter | None = None,
        notifier: SystemdNotifier | None = None,
    ) -> None:
        self.config = config
        self.panels = dict(panels or {})
        self.web = web
        self.notifier = notifier if notifier is not None else SystemdNotifier()
        self.parts: ServiceParts | None = None
        self.ready = asyncio.Event()
        self.stop_web: Callable[[], Awaitable[None]] | None = None  # the running web server
        self.web_restarts = 0
        self._web_lock = asyncio.Lock()
        self._web_restarting = False

    def _meter_frequency(self, state: UnitState) -> Callable[[], int]:
        def freq_centihz() -> int:
            value = state.meter_value("frequency")
            if value is None or not 40.0 <= value <= 70.0:
                return 0
            return round(value * 100)

        return freq_centihz

    def _peer_directory(self, state: UnitState, storage: Storage) -> PeerDirectory:
        cfg = self.config

        def local() -> LocalStatus:
            from host.web.view import unit_summary

            return LocalStatus.from_row(unit_summary(state.snapshot(), number=None, url=""))

        open_host = cfg.web.host in ("0.0.0.0", "", "::")
        return PeerDirectory(
            cfg.unit.unit_id,
            site_key=cfg.peers.site_key,
            web_port=cfg.web.port,
            local=local,
            numbering=storage,
            settings=PeerSettings.from_config(cfg.peers),
            addresses=None if open_host else [cfg.web.host],
            data_dir=cfg.storage.var_dir,  # the unit's key pair and trust set
        )

    async def run(self) -> None:
        cfg = self.config
        if cfg.bus.port is None:
            raise ValueError("bus.port is not set")
        storage = await Storage.open(cfg.storage.database, cfg.history)
        state = UnitState(cfg)
        saved = await storage.load_settings()
        state.restore_settings(
            unit_name=saved.unit_name, labels=saved.labels, supervision=saved.supervision
        )
        transport = SerialTransport(
            cfg.bus.port, cfg.bus.baud, driver_enable=DriverEnable(cfg.bus.rs485)
        )
        master = BusMaster(
            transport.write,
            StateBusListener(state),
            CycleSettings(
                baud=cfg.bus.baud,
                guard_us=cfg.bus.slot_guard_us,
                rounds=cfg.bus.rounds_per_sync,
                offline_after_s=cfg.bus.offline_after_s,
                discover_every_s=cfg.bus.discovery_interval_s,
                expected_fw=cfg.bus.expected_firmware,
                rating_ca=round(cfg.channels.rating_a * 100),
                curve=(),  # boards keep their own breaker curve (set at flashing)
            ),
            freq_centihz=self._meter_frequency(state),
        )
        transport.on_data = master.feed
        meter: MeterReader | None = None
        if cfg.meter.enabled and cfg.meter.port is not None:
            meter = MeterReader(
                cfg.meter.port,
                baud=cfg.meter.baud,
                device_id=cfg.meter.device_id,
                profile=load_profile(cfg.meter.profile),
                poll_s=cfg.meter.poll_s,
                stale_after_s=cfg.meter.stale_after_s,
                offline_after_s=cfg.meter.offline_after_s,
                timeout_s=cfg.meter.timeout_s,
                on_readings=lambda r: _apply_meter(state, r),
                on_freshness=lambda f: _meter_freshness(state, f),
            )
        peers = None
        if cfg.peers.enabled and self.web is not None:
            peers = self._peer_directory(state, storage)
        parts = ServiceParts(cfg, state, storage, master, transport, meter, self.panels, peers)
        self.parts = parts
        await transport.open()
        recorder = Recorder(state, storage, black_box_s=cfg.history.black_box_s)
        tasks = [
            asyncio.create_task(master.run(), name="bus-master"),
            asyncio.create_task(storage.run(), name="storage"),
            asyncio.create_task(recorder.run(), name="recorder"),
            asyncio.create_task(_tick(state), name="state-tick"),
        ]
        if meter is not None:
            tasks.append(asyncio.create_task(meter.run(), name="meter"))
        if cfg.mqtt.enabled:
            parts.mqtt = MqttExporter(state, cfg.mqtt)
            tasks.append(asyncio.create_task(parts.mqtt.run(), name="mqtt-export"))
        try:
            await self._serve(parts, tasks)
        finally:
            master.stop()
            self.notifier.stopping()
            if parts.frontpanel is not None:
                parts.frontpanel.close()
            await self._stop_web()
            await _stop_tasks(tasks)
            await transport.close()
            await storage.close()
            self.notifier.close()

    async def _serve(self, parts: ServiceParts, tasks: list[asyncio.Task[Any]]) -> None:
        """Start the web server and the front panel, then wait for a part to fail."""
        if self.web is not None:
            self.stop_web = await self.web(parts)
        if parts.peers is not None:
            parts.peers.web_port = int(getattr(self.stop_web, "port", parts.config.web.port))
            tasks.append(asyncio.create_task(_keep_peers(parts.peers), name="peers"))
        prometheus = parts.config.prometheus
        if self.stop_web is not None and prometheus.enabled and prometheus.file_sd is not None:
            tasks.append(_file_sd_task(parts, int(getattr(self.stop_web, "port", 0))))
        panel = self._front_panel(parts, tasks)
        tasks.append(asyncio.create_task(panel.run(), name="frontpanel"))
        self.ready.set()
        self.notifier.ready("monitoring")
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()  # a part that failed ends the service (systemd restarts it)

    def _front_panel(self, parts: ServiceParts, tasks: list[asyncio.Task[Any]]) -> FrontPanel:
        """RUN/DATA TX/RESET (R13) and the health the heartbeat and the watchdog follow:
        the bus master and the meter alive and making progress, the web server listening."""
        now = asyncio.get_running_loop().time()
        health = Health(parts.config.frontpanel.stall_after_s)
        master, meter = parts.master, parts.meter
        for task in tasks:
            if task.get_name() == "bus-master":
                health.watch_task(task, lambda: master.superframes, now=now)
            elif task.get_name() == "meter" and meter is not None:
                health.watch_task(task, lambda: meter.reads_ok + meter.reads_failed, now=now)
        if self.web is not None:
            health.watch("web", lambda: self._web_restarting or web_serving(self.stop_web), now=now)
        panel = FrontPanel(parts.config.frontpanel, health, notifier=self.notifier)
        panel.on_reset = self.restart_web
        panel.start()
        parts.frontpanel = panel
        self._attach_front_panel()
        return panel

    def _attach_front_panel(self) -> None:
        panel = self.parts.frontpanel if self.parts is not None else None
        app = getattr(self.stop_web, "app", None)
        if panel is not None and app is not None:
            from host.web.frontpanel_routes import attach

            attach(app, panel)

    async def _stop_web(self) -> None:
        stop, self.stop_web = self.stop_web, None
        if stop is not None:
            with contextlib.suppress(Exception):
                await stop()

    async def restart_web(self) -> None:
        """RESET: the web server stops and starts again; the bus, the meter, the recording
        and the unit state go on (sessions end: the admin logs in again)."""
        if self.web is None or self.parts is None:
            return
        async with self._web_lock:
            self._web_restarting = True
            try:
                await self._stop_web()
                self.stop_web = await self.web(self.parts)
                self._attach_front_panel()
                self.web_restarts += 1
                _LOG.warning("web server restarted (RESET)")
            finally:
                self._web_restarting = False


async def _stop_tasks(tasks: list[asyncio.Task[Any]], timeout_s: float = 10.0) -> None:
    """Cancel ``tasks`` and wait until they have ended, cancelling again any that swallowed
    the cancellation: Python 3.11's ``asyncio.wait_for`` (inside pymodbus) returns the
    answer instead of raising when an answer and the cancellation arrive in the same loop
    turn, and the meter task then went on polling, so the service never stopped (SIGTERM
    hung until systemd's SIGKILL)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    pending = set(tasks)
    while True:
        pending = {task for task in pending if not task.done()}
        if not pending:
            break
        if loop.time() >= deadline:
            names = ", ".join(sorted(task.get_name() for task in pending))
            _LOG.error("%s did not stop within %.0f s; leaving them", names, timeout_s)
            break
        for task in pending:
            task.cancel()
        # Cancelled again meanwhile (a second Ctrl-C): the parts are stopped all the same.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait(pending, timeout=0.5)
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: a part's failure was already raised or logged


def _apply_meter(state: UnitState, readings: MeterReadings) -> None:
    state.apply_meter(readings.values, readings.measured_at)


def _meter_freshness(state: UnitState, freshness: Freshness) -> None:
    if freshness is Freshness.LIVE:
        return
    state.meter_error(
        state.now(), f"meter {freshness.value}", offline=freshness is Freshness.OFFLINE
    )


def _file_sd_task(parts: ServiceParts, web_port: int) -> asyncio.Task[None]:
    """The Prometheus target list (this unit and its peers) kept in export.prometheus.file_sd."""
    cfg = parts.config
    assert cfg.prometheus.file_sd is not None
    targets = SiteTargets(
        cfg.unit.unit_id,
        lambda: parts.state.snapshot().name,
        web_host=cfg.web.host,
        web_port=lambda: web_port or cfg.web.port,
        peers=parts.peers,
    )
    return asyncio.create_task(targets.keep_file(cfg.prometheus.file_sd), name="prometheus-sd")


async def _keep_peers(peers: PeerDirectory) -> None:
    # The LAN view is a convenience: a network without multicast must not stop monitoring.
    while True:
        try:
            await peers.run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            _LOG.exception("peer discovery failed; retrying in 30 s")
            await asyncio.sleep(30)


async def _tick(state: UnitState) -> None:
    # Staleness and dwell timers move on even when nothing arrives.
    while True:
        state.tick()
        await asyncio.sleep(0.25)
