"""``VirtualPdu``: the virtual smartPDU's orchestrator (see ``tools.virtual.vpdu``): the bus,
the boards, the meter and the mains status node, driven by a scenario's time line."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import stat
import tempfile
import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from pathlib import Path

from protocol.consts import BUS_BAUD
from tools.virtual.metersim import (
    MeterModel,
    MeterSim,
)
from tools.virtual.pdu_state import PduState
from tools.virtual.reaper import LIVE_PGIDS, Reaper
from tools.virtual.scenario import (
    DIMMER_RISE_US,
    KINDS,
    MOTOR_INRUSH,
    MOTOR_INRUSH_MS,
    PHASES,
    Action,
    BoardPlug,
    BusErrors,
    ChannelId,
    EndOverload,
    Estop,
    LoadSpec,
    MeterOffline,
    NeutralLost,
    Overload,
    ResetBreaker,
    Scenario,
    ScenarioClock,
    SetAux,
    SetLoad,
    Trip,
    apply_level,
    format_time,
    load_scenario,
)
from tools.virtual.vboard import VirtualBoard, VirtualBoardError
from tools.virtual.vbus import VirtualBus

_LOG = logging.getLogger(__name__)

_CAUSE_LEAD_S = 0.08  # the cause contact closes before the MCCB's alarm contact (30 ms debounce)
_INRUSH_TICK_S = 0.05  # meter updates while a motor starts
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes
# Ctrl-C, kill, and a closed terminal: the boards (own sessions) get none of them, so this
# process must stop them.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class VirtualPduError(Exception):
    """The virtual PDU could not start or was misused."""


# ---------------------------------------------------------------------- the orchestrator


@dataclass(frozen=True)
class PduPorts:
    """Serial devices to point an aggregator at."""

    master: str  # the RS-485 bus, read/write (the aggregator's bus port)
    monitor: str  # the same bus, listen-only (a bus monitor)
    meter: str  # the meter's Modbus RTU line


class VirtualPdu:
    """A whole simulated smartPDU (see the module doc).

    ``workdir`` holds the bus socket, the panel sockets and each board's "flash" (so a board
    keeps its bus address across power losses, like a real one); None = a temporary
    directory removed by ``stop()``.  ``speed`` runs the scenario's time line faster than
    real time (the physics stays real time).  ``timeline=False`` starts the scenario's t = 0
    loads and leaves the rest to the caller.  ``unit_id`` prefixes the boards' unique ids
    (several virtual PDUs on one LAN need different ones).
    """

    def __init__(
        self,
        scenario: Scenario | str | Path,
        workdir: str | Path | None = None,
        *,
        baud: int = BUS_BAUD,
        meter_baud: int = 9600,
        speed: float = 1.0,
        timeline: bool = True,
        unit_id: str = "sim",
        bus_seed: int | None = None,
        boot_timeout: float = 30.0,
        rp2_groups: Iterable[str] = (),
    ) -> None:
        self.scenario = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        self._own_workdir = workdir is None
        # Our own temporary directory is made by start() (nothing to clean up before).
        self.workdir = (
            Path(workdir)
            if workdir is not None
            else Path(tempfile.gettempdir()) / f"vpdu-{os.getpid()}-{id(self):x}"
        )
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,26}", unit_id):
            raise VirtualPduError(f"unit_id {unit_id!r}: 1-26 letters, digits, '_', '.', '-'")
        self.baud = baud
        self.meter_baud = meter_baud
        self.clock = ScenarioClock(speed)
        self.run_timeline = timeline
        self.unit_id = unit_id
        self.bus_seed = bus_seed
        self.boot_timeout = boot_timeout
        # Groups whose board is the production image on an emulated RP2040 (tools.rp2emu).
        self.rp2_groups = frozenset(g.upper() for g in rp2_groups)
        self.state = PduState(self.scenario)
        self.boards: dict[str, VirtualBoard] = {}  # by group letter
        self.mains: VirtualBoard | None = None
        self._bus: VirtualBus | None = None
        self._meter: MeterSim | None = None
        self._ports: PduPorts | None = None
        self._sent: dict[ChannelId, tuple[str, float, tuple[tuple[str, float], ...]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._power_task: asyncio.Task[None] | None = None
        self._inrush_wake = asyncio.Event()
        self._boards_up = False
        self._started = False
        self._stopped = False
        self._lock = asyncio.Lock()  # one change of the boards' state at a time
        self._reaper: Reaper | None = None
        self.loops = 0  # completed passes of a looping time line
        self.log: list[str] = []  # the show's log (also on logging at INFO)

    # ------------------------------------------------------------------ properties

    @property
    def bus(self) -> VirtualBus:
        if self._bus is None:
            raise VirtualPduError("not started")
        return self._bus

    @property
    def meter(self) -> MeterSim:
        if self._meter is None:
            raise VirtualPduError("not started")
        return self._meter

    @property
    def ports(self) -> PduPorts:
        if self._ports is None:
            raise VirtualPduError("not started")
        return self._ports

    @property
    def groups(self) -> str:
        return self.scenario.groups

    @property
    def scenario_time(self) -> float:
        return self.clock.now()

    def pids(self) -> dict[str, int]:
        """PIDs of the board processes by group letter (and ``mains``); each leads its own
        process group."""
        found: dict[str, int] = {}
        for name, board in [*self.boards.items(), ("mains", self.mains)]:
            if board is not None and board.pid is not None:
                found[name] = board.pid
        return found

    def board_uid(self, group: str) -> str:
        return f"{self.unit_id}-{group}"

    # ------------------------------------------------------------------ expected values

    def _channel(self, group: str, channel: int) -> ChannelId:
        cid = ChannelId(group.upper(), channel)
        if cid not in self.state.loads:
            raise VirtualPduError(f"no output {cid} on a smartPDU {self.scenario.model}")
        return cid

    def expected_channel_amps(self, group: str, channel: int) -> float:
        """What output ``group``/``channel`` (1..12) should read, steady state, A RMS."""
        return self.state.expected_channel_amps(self._channel(group, channel))

    def expected_phase_amps(self, phase: str) -> float:
        """What the meter should read on ``phase`` (``L1``..``L3``), steady state."""
        if phase not in PHASES:
            raise VirtualPduError(f"phase must be one of {PHASES}")
        return self.state.expected_phase_amps(phase)

    def expected_neutral_amps(self) -> float:
        return self.state.expected_neutral_amps()

    def phase_of(self, group: str, channel: int) -> str:
        return self.scenario.phases[self._channel(group, channel)]

    def channel_load(self, group: str, channel: int) -> LoadSpec:
        """The load flowing from the output now (off when tripped or the mains is off)."""
        return self.state.effective(self._channel(group, channel))

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        if self._started:
            raise VirtualPduError("already started")
        self._started = True
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._reaper = Reaper()
        socket_path = self.workdir / "bus.sock"
        longest = self.workdir / "mains.panel"
        if len(str(socket_path)) > _SOCKET_PATH_MAX or len(str(longest)) > _SOCKET_PATH_MAX:
            raise VirtualPduError(f"workdir path too long for UNIX sockets: {self.workdir}")
        bus = VirtualBus(self.baud, socket_path=socket_path, seed=self.bus_seed)
        self._bus = bus
        master = bus.add_pty_endpoint("master")
        monitor = bus.add_pty_endpoint("monitor", listen_only=True)
        await bus.start()
        model = MeterModel(nominal_frequency=float(self.scenario.mains_hz), seed=self.scenario.seed)
        self._meter = MeterSim(model, baud=self.meter_baud)
        await self._meter.start()
        self._ports = PduPorts(master, monitor, self._meter.port)
        await self._power_up()
        self.clock.start(0.0)
        self._tasks.append(asyncio.create_task(self._follow_inrush(), name="vpdu-inrush"))
        if self.run_timeline:
            self._tasks.append(asyncio.create_task(self._run_timeline(), name="vpdu-timeline"))

    def _new_boards(self) -> list[VirtualBoard]:
        bus = self.bus
        unknown = self.rp2_groups - set(self.groups)
        if unknown:
            raise VirtualPduError(
                f"no group {', '.join(sorted(unknown))} on a smartPDU {self.scenario.model}"
            )
        self.boards = {g: self._new_group_board(g) for g in self.groups}
        self.mains = VirtualBoard(
            "mains",
            bus_socket=bus.socket_path,
            workdir=self.workdir,
            role="mains",
            uid=self.board_uid("mains"),
            baud=self.baud,
        )
        return [*self.boards.values(), self.mains]

    def _new_group_board(self, group: str) -> VirtualBoard:
        if group in self.rp2_groups:
            from tools.rp2emu.vboard import Rp2VirtualBoard

            # Same interface; typed as the unix-port board the rest of this module drives.
            return Rp2VirtualBoard(  # type: ignore[return-value]
                f"board-{group}",
                bus_socket=self.bus.socket_path,
                workdir=self.workdir,
                group=group,
                uid=self.board_uid(group),
                baud=self.baud,
            )
        return VirtualBoard(
            f"board-{group}",
            bus_socket=self.bus.socket_path,
            workdir=self.workdir,
            group=group,
            uid=self.board_uid(group),
            baud=self.baud,
        )

    def _all_boards(self) -> list[VirtualBoard]:
        return [*self.boards.values(), *([self.mains] if self.mains is not None else [])]

    async def _power_up(self) -> None:
        """Start every board (as at power-on) and give them their loads and inputs."""
        boards = self._new_boards()
        results = await asyncio.gather(
            *(self._start_board(board) for board in boards), return_exceptions=True
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise VirtualPduError(f"boards failed to start: {failed[0]}") from failed[0]
        for group in self.state.unplugged:
            self.bus.unplug(self.board_uid(group))
        self._boards_up = True
        self._sent.clear()
        async with self._lock:
            if self.scenario.mains_hz != 50:
                for board in self.boards.values():
                    await self._send(
                        board, board.send({"load": {"mains_hz": self.scenario.mains_hz}})
                    )
            await self._sync_outputs(set(self.state.loads))
            await self._sync_mains_inputs()

    async def _start_board(self, board: VirtualBoard) -> None:
        try:
            # An emulated RP2040 boots (and is flashed, the first time) far slower.
            rp2 = board.role == "group" and board.group in self.rp2_groups
            await board.start(timeout=self.boot_timeout * (10 if rp2 else 1))
        finally:
            if board.pid is not None:
                LIVE_PGIDS.add(board.pid)
                if self._reaper is not None:
                    self._reaper.add(board.pid)

    async def _kill_boards(self) -> None:
        boards = self._all_boards()
        self._boards_up = False
        await asyncio.gather(*(board.stop() for board in boards), return_exceptions=True)
        for board in boards:
            process = board.process
            if board.pid is not None and (process is None or process.returncode is not None):
                LIVE_PGIDS.discard(board.pid)
                if self._reaper is not None:
                    self._reaper.discard(board.pid)
            # A killed board leaves its panel socket file behind.
            with contextlib.suppress(OSError):
                if stat.S_ISSOCK(os.lstat(board.panel_path).st_mode):
                    os.unlink(board.panel_path)

    async def stop(self) -> None:
        """Stop the show, every board process, the meter and the bus (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        tasks = [*self._tasks, *([self._power_task] if self._power_task else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        try:
            await self._kill_boards()
        finally:
            if self._meter is not None:
                with contextlib.suppress(Exception):
                    await self._meter.stop()
            if self._bus is not None:
                with contextlib.suppress(Exception):
                    await self._bus.stop()
            if self._reaper is not None:
                await self._reaper.close()
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    async def __aenter__(self) -> VirtualPdu:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ driving the boards

    async def _send(self, board: VirtualBoard, message: Awaitable[None]) -> None:
        """Await a panel message; a board that is down or restarting just misses it."""
        try:
            await message
        except (OSError, VirtualBoardError) as exc:
            _LOG.debug("%s: panel message lost: %s", board.name, exc)

    async def _sync_outputs(self, channels: set[ChannelId]) -> None:
        """Send changed loads to the boards and refresh the meter."""
        if self._boards_up:
            for channel in sorted(channels):
                kind, amps, options = self.state.effective(channel).board_command(
                    self.state.mains_hz
                )
                command = (kind, amps, tuple(sorted(options.items())))
                if self._sent.get(channel) == command:
                    continue
                self._sent[channel] = command
                board = self.boards[channel.group]
                await self._send(board, board.set_load(channel.number, kind, amps, **options))
        self._update_meter()

    def _update_meter(self) -> None:
        if self._meter is None:
            return
        now = time.monotonic()
        self._meter.set_phase_loads(*self.state.phase_loads(now))
        if self._motors_starting(now):
            self._inrush_wake.set()

    def _motors_starting(self, now: float) -> bool:
        for channel, started in self.state.motor_started.items():
            spec = self.state.effective(channel)
            if spec.kind == "motor" and (now - started) * 1000.0 < 2.0 * spec.inrush_ms:
                return True
        return False

    async def _sync_mains_inputs(self) -> None:
        """The mains node's contacts from the state: cause contacts first, then the MCCB."""
        mains = self.mains
        if mains is None or not self._boards_up:
            return
        state = self.state
        await self._send(mains, mains.set_input("estop", state.estop))
        await self._send(mains, mains.set_input("neutral", state.neutral_lost))
        if not state.mains_on:
            await asyncio.sleep(_CAUSE_LEAD_S)
        await self._send(mains, mains.set_input("alarm", not state.mains_on))
        await self._send(mains, mains.set_input("breaker", state.mains_on))

    async def _apply_loads(self, action: Action) -> None:
        async with self._lock:
            changed = self.state.apply(action, time.monotonic())
            await self._sync_outputs(changed)

    async def _follow_inrush(self) -> None:
        # Keep the meter's motor currents on the inrush curve while a motor starts.
        while True:
            await self._inrush_wake.wait()
            self._inrush_wake.clear()
            while True:
                now = time.monotonic()
                if self._meter is not None:
                    self._meter.set_phase_loads(*self.state.phase_loads(now))
                if not self._motors_starting(now):
                    break
                await asyncio.sleep(_INRUSH_TICK_S)

    # ------------------------------------------------------------------ controls

    async def set_channel(
        self,
        group: str,
        channel: int,
        kind: str,
        amps: float,
        *,
        level: float | None = None,
        **options: float,
    ) -> None:
        """Plug a load into an output (``amps`` and options as in a scenario: a dimmer's
        ``amps`` is the lamp at full, ``level`` or ``angle`` dim it)."""
        allowed = {"angle", "rise_us", "inrush", "inrush_ms"}
        unknown = set(options) - allowed
        if unknown:
            raise VirtualPduError(f"unknown load options {sorted(unknown)}; use {sorted(allowed)}")
        angle = options.pop("angle", None)
        if angle is not None and kind != "dimmer":
            raise VirtualPduError("only a dimmer has a firing angle")
        spec = LoadSpec(
            kind,
            float(amps),
            rise_us=options.get("rise_us", DIMMER_RISE_US),
            inrush=options.get("inrush", MOTOR_INRUSH),
            inrush_ms=options.get("inrush_ms", MOTOR_INRUSH_MS),
        )
        if kind not in KINDS:
            raise VirtualPduError(f"kind must be one of {KINDS}")
        spec = apply_level(spec, level=level, angle=angle)
        await self._apply_loads(SetLoad((self._channel(group, channel),), spec))

    async def set_aux(self, output: str, kind: str, amps: float) -> None:
        if output not in self.scenario.aux:
            raise VirtualPduError(f"{output} is not wired in this scenario's [[aux]]")
        await self._apply_loads(SetAux(output, LoadSpec(kind, float(amps))))

    async def overload(self, group: str, channel: int, amps: float) -> None:
        await self._apply_loads(Overload(self._channel(group, channel), amps))

    async def trip(self, group: str, channel: int) -> None:
        """The output's RCBO trips (its current collapses to 0)."""
        await self._apply_loads(Trip(self._channel(group, channel)))

    async def reset_breaker(self, group: str, channel: int) -> None:
        await self._apply_loads(ResetBreaker(self._channel(group, channel)))

    async def estop(self, active: bool) -> None:
        """Emergency Stop pressed (the MCCB trips: every output and aux load 0) or reset
        (button released and the MCCB closed again)."""
        await self._main_breaker(Estop(active))

    async def neutral_lost(self, active: bool) -> None:
        """Loss of Neutral: the protection relay trips the MCCB; or restored and reset."""
        await self._main_breaker(NeutralLost(active))

    async def _main_breaker(self, action: Estop | NeutralLost) -> None:
        async with self._lock:
            changed = self.state.apply(action, time.monotonic())
            # Contacts first (cause, then the MCCB), then the outputs' currents follow.
            await self._sync_mains_inputs()
            await self._sync_outputs(changed)

    def unplug_board(self, group: str) -> None:
        """Pull a board's bus connector (it keeps running and measuring)."""
        self.state.apply(BoardPlug(self._group(group), False), time.monotonic())
        self.bus.unplug(self.board_uid(self._group(group)))

    def plug_board(self, group: str) -> None:
        self.state.apply(BoardPlug(self._group(group), True), time.monotonic())
        self.bus.plug(self.board_uid(self._group(group)))

    def _group(self, group: str) -> str:
        g = group.upper()
        if g not in self.groups and g != "MAINS":
            raise VirtualPduError(f"no group {group!r} on a smartPDU {self.scenario.model}")
        return g if g != "MAINS" else "mains"

    def meter_offline(self, offline: bool) -> None:
        """The meter stops answering (cable cut) or comes back."""
        self.state.apply(MeterOffline(offline), time.monotonic())
        self.meter.offline = offline

    def bus_errors(self, ber: float) -> None:
        """Bit-error rate on the RS-485 line."""
        self.state.apply(BusErrors(ber), time.monotonic())
        self.bus.set_faults(ber=ber)

    async def power_loss(self, outage_s: float) -> None:
        """The unit loses power for ``outage_s`` real seconds: the board processes die and
        restart (booting as after power-on), the meter is silent and restarts with its energy
        and demand at 0.  Returns when everything is back."""
        if not self._boards_up:
            raise VirtualPduError("power loss while the boards are already down")
        meter = self.meter
        self.state.powered = False
        meter.power_loss(outage_s)  # energy reset, silent for the outage
        async with self._lock:
            self._update_meter()
            await self._kill_boards()
        await asyncio.sleep(outage_s)
        self.state.powered = True
        # Motors restart with inrush when power returns.
        now = time.monotonic()
        for channel, spec in self.state.effective_all().items():
            if spec.kind == "motor":
                self.state.motor_started[channel] = now
        await self._power_up()
        self._note(f"power back after {outage_s:.1f} s; boards restarted: {self.pids()}")

    # ------------------------------------------------------------------ the time line

    def _note(self, text: str) -> None:
        line = f"[{format_time(self.clock.now())}] {text}"
        self.log.append(line)
        del self.log[:-500]
        _LOG.info("%s", line)

    async def _run_timeline(self) -> None:
        scenario = self.scenario
        base = 0.0
        while True:
            for step in scenario.timeline:
                await self.clock.sleep_until(base + step.at)
                if step.note:
                    self._note(step.note)
                try:
                    await self.apply(step.action)
                except Exception:
                    # A fault in one cue must not end the show.
                    _LOG.exception("scenario step %s failed", step)
            if not scenario.loop or scenario.length is None:
                self._note("end of the time line: loads stay as they are")
                return
            base += scenario.length
            await self.clock.sleep_until(base)
            self.loops += 1
            self._note(f"loop {self.loops}: the show starts again")
            await self._restart_show()

    async def _restart_show(self) -> None:
        state = self.state
        if state.estop:
            await self.estop(False)
        if state.neutral_lost:
            await self.neutral_lost(False)
        for group in list(state.unplugged):
            self.plug_board(group)
        if state.meter_offline:
            self.meter_offline(False)
        if state.ber:
            self.bus_errors(0.0)
        async with self._lock:
            changed = state.reset_show(time.monotonic())
            await self._sync_outputs(changed)

    async def apply(self, action: Action) -> None:
        """Play one primitive scenario action now."""
        if isinstance(action, SetLoad | SetAux | Overload | EndOverload | Trip | ResetBreaker):
            await self._apply_loads(action)
        elif isinstance(action, Estop):
            await self.estop(action.active)
        elif isinstance(action, NeutralLost):
            await self.neutral_lost(action.active)
        elif isinstance(action, BoardPlug):
            if action.plugged:
                self.plug_board(action.group)
            else:
                self.unplug_board(action.group)
        elif isinstance(action, MeterOffline):
            self.meter_offline(action.active)
        elif isinstance(action, BusErrors):
            self.bus_errors(action.ber)
        else:
            if self._power_task is not None and not self._power_task.done():
                _LOG.warning("power loss while the power is already off: ignored")
                return
            # The outage runs beside the time line (cues keep changing the state meanwhile).
            outage = self.clock.real_seconds(action.outage)
            self._power_task = asyncio.create_task(self._power_cut(outage), name="vpdu-power")

    async def _power_cut(self, outage: float) -> None:
        try:
            await self.power_loss(outage)
        except (VirtualPduError, VirtualBoardError, OSError):
            _LOG.exception("power loss sequence failed")

    # ------------------------------------------------------------------ summary

    def summary(self) -> str:
        scenario = self.scenario
        lines = [
            f"virtual smartPDU {scenario.model} - scenario '{scenario.name}'"
            + (f": {scenario.description}" if scenario.description else ""),
            f"  groups {', '.join(self.groups)} + mains status node; meter SDM630; "
            f"MCCB In = {scenario.main_breaker_in} A; mains {scenario.mains_hz} Hz",
            f"  RS-485 bus   {self.ports.master}  ({self.baud} baud 8N1; boards unassigned "
            "until the aggregator discovers them)",
            f"  bus monitor  {self.ports.monitor}  (listen-only)",
            f"  meter        {self.ports.meter}  (Modbus RTU {self.meter_baud} baud, device 1)",
            f"  time line    {scenario.events} events, "
            + (
                f"looping every {format_time(scenario.length)}"
                if scenario.loop and scenario.length
                else f"ending at {format_time(scenario.end)}"
            )
            + (f", speed x{self.clock.speed:g}" if self.clock.speed != 1 else ""),
            "  now: "
            + ", ".join(f"{p} {self.expected_phase_amps(p):.1f} A" for p in PHASES)
            + f", N {self.expected_neutral_amps():.1f} A",
            f"  workdir      {self.workdir}",
        ]
        return "\n".join(lines)
