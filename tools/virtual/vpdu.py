"""Virtual smartPDU: the bus, one virtual board per group, the mains status node and the meter,
driven by a scenario (``tools/virtual/scenario.py``).

Pieces (all real: the aggregator cannot tell them from hardware):

* ``VirtualBus`` (in this process): the RS-485 line at ``baud`` with real byte timing.  Two
  pseudo-terminal endpoints: ``master`` for the aggregator and ``monitor`` (listen-only) for a
  bus monitor.  Boards connect to its UNIX socket.
* One ``VirtualBoard`` per group (a MicroPython process running ``firmware/app.py``), started
  unassigned: the aggregator's discovery gives them addresses.  Each is in its own session
  (process group); ``stop()`` kills them all, also when ``start()`` fails half way; an
  ``atexit`` hook kills any still registered if the interpreter exits without ``stop()``,
  and a small reaper process kills them if this process is killed outright (SIGKILL).
* The mains status node (role ``mains``): breaker contacts, Emergency Stop, loss of Neutral.
* ``MeterSim`` (in this process): the SDM630 on its own pty at ``meter_baud``.

``PduState`` is the electrical state the scenario drives, without I/O: which load each
output feeds, tripped RCBOs, the main breaker, auxiliary loads.  Each output's load goes to
its board (``set_load``: the board synthesises the waveform and measures it) and, as a
``metersim.Load`` of the same RMS, power factor and harmonics, to the meter on that output's
phase, so the meter's phase current is the phasor sum of the outputs' currents plus the
auxiliary loads (and the neutral current follows from the meter model).  A motor's inrush is
followed on the meter too.

Python API::

    pdu = VirtualPdu(load_scenario("rehearsal"), workdir, speed=1.0)
    await pdu.start()
    pdu.ports.master, pdu.ports.monitor, pdu.ports.meter
    pdu.expected_channel_amps("B", 4); pdu.expected_phase_amps("L2")
    await pdu.estop(True); await pdu.power_loss(3.0); await pdu.set_channel("A", 1, "led", 5.0)
    await pdu.stop()

Command line (``smartpdu sim``; until wired, ``python -m tools.virtual.vpdu``)::

    smartpdu sim [--scenario rehearsal] [--speed 1] [--workdir DIR] [--baud 115200]
                 [--meter-baud 9600] [--duration S] [--list]

prints one JSON line ``{"master", "monitor", "meter", "baud", "meter_baud", "scenario",
"model", "groups", "pid", "pids"}`` on stdout, a summary and the show's log on stderr, and
runs until Ctrl-C or SIGTERM (or ``--duration``), then stops everything and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import dataclasses
import json
import logging
import math
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tools.virtual.metersim import Load, MeterModel, MeterSim, neutral_current, phase_spectrum, rms_of
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
    PowerLoss,
    ResetBreaker,
    Scenario,
    ScenarioClock,
    ScenarioError,
    SetAux,
    SetLoad,
    Trip,
    apply_level,
    format_time,
    load_scenario,
    scenario_names,
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


# ---------------------------------------------------------------------- stray-process guard

_LIVE_PGIDS: set[int] = set()


def _kill_stray_boards() -> None:
    # Last resort when the interpreter exits without stop(): no MicroPython process survives.
    for pgid in list(_LIVE_PGIDS):
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)
    _LIVE_PGIDS.clear()


atexit.register(_kill_stray_boards)

# The reaper outlives a SIGKILLed virtual PDU just long enough to kill its boards: it reads
# "+pgid" / "-pgid" lines, and when its stdin closes (our process ended, however it ended)
# it kills the process groups still registered.  Its own session: no terminal signal.
_REAPER_SCRIPT = """
import os, signal, sys
for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
    signal.signal(sig, signal.SIG_IGN)
live = set()
for line in sys.stdin:
    if line[:1] in "+-" and line[1:].strip().isdigit():
        (live.add if line[0] == "+" else live.discard)(int(line[1:]))
for pgid in live:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
"""


class _Reaper:
    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-c", _REAPER_SCRIPT],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self._process.pid

    def _tell(self, line: str) -> None:
        stdin = self._process.stdin
        if stdin is not None and not stdin.closed:
            with contextlib.suppress(OSError):
                stdin.write(line.encode())
                stdin.flush()

    def add(self, pgid: int) -> None:
        self._tell(f"+{pgid}\n")

    def discard(self, pgid: int) -> None:
        self._tell(f"-{pgid}\n")

    async def close(self) -> None:
        """Every board is stopped: let the reaper exit."""
        stdin = self._process.stdin
        if stdin is not None:
            with contextlib.suppress(OSError):
                stdin.close()
        for _ in range(100):
            if self._process.poll() is not None:
                return
            await asyncio.sleep(0.02)
        self._process.kill()
        self._process.wait()


# ---------------------------------------------------------------------- electrical state


class PduState:
    """What flows where, as the scenario has set it (no I/O; ``VirtualPdu`` acts on it)."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.mains_hz = float(scenario.mains_hz)
        self.loads: dict[ChannelId, LoadSpec] = dict(scenario.loads)
        self.saved: dict[ChannelId, LoadSpec] = {}  # the load before an overload
        self.tripped: set[ChannelId] = set()  # output RCBOs that are open
        self.aux: dict[str, LoadSpec] = {name: a.load for name, a in scenario.aux.items()}
        self.aux_phases: dict[str, tuple[str, ...]] = {
            name: a.phases for name, a in scenario.aux.items()
        }
        self.estop = False
        self.neutral_lost = False
        self.powered = True
        self.unplugged: set[str] = set()
        self.meter_offline = False
        self.ber = 0.0
        self.motor_started: dict[ChannelId, float] = {}  # monotonic time of the last start
        self._steady: tuple[tuple[object, ...], tuple[list[Load], list[Load], list[Load]]] | None
        self._steady = None

    @property
    def mains_on(self) -> bool:
        """The master MCCB is closed and the unit has power."""
        return self.powered and not self.estop and not self.neutral_lost

    def effective(self, channel: ChannelId) -> LoadSpec:
        """The load actually drawing current from ``channel`` now."""
        if not self.mains_on or channel in self.tripped:
            return LoadSpec()
        return self.loads[channel]

    def effective_all(self) -> dict[ChannelId, LoadSpec]:
        return {channel: self.effective(channel) for channel in self.loads}

    def expected_channel_amps(self, channel: ChannelId) -> float:
        """Steady RMS the output's board should read (motors: running current)."""
        return self.effective(channel).rms(self.mains_hz)

    def phase_loads(self, now: float | None = None) -> tuple[list[Load], list[Load], list[Load]]:
        """The meter's loads per phase; with ``now``, motors starting draw their inrush."""
        key = self._key()
        if now is None and self._steady is not None and self._steady[0] == key:
            return self._steady[1]
        per_phase: dict[str, list[Load]] = {p: [] for p in PHASES}
        for channel, spec in self.effective_all().items():
            scale = 1.0
            started = self.motor_started.get(channel)
            if now is not None and spec.kind == "motor" and started is not None:
                age_ms = (now - started) * 1000.0
                scale = 1.0 + (spec.inrush - 1.0) * math.exp(-3.0 * age_ms / spec.inrush_ms)
            load = spec.meter_load(self.mains_hz, scale)
            if load is not None:
                per_phase[self.scenario.phases[channel]].append(load)
        if self.mains_on:
            for name, spec in self.aux.items():
                load = spec.meter_load(self.mains_hz)
                if load is not None:
                    for phase in self.aux_phases[name]:
                        per_phase[phase].append(load)
        result = (per_phase["L1"], per_phase["L2"], per_phase["L3"])
        if now is None:
            self._steady = (key, result)
        return result

    def _key(self) -> tuple[object, ...]:
        # Everything the steady phase loads depend on (loads are frozen, so hashable).
        return (
            tuple(self.loads.values()),
            frozenset(self.tripped),
            tuple(self.aux.items()),
            self.mains_on,
        )

    def expected_phase_amps(self, phase: str) -> float:
        """The meter's steady reading of ``phase``: RMS of the phasor sum of its loads."""
        return rms_of(phase_spectrum(self.phase_loads()[PHASES.index(phase)]))

    def expected_neutral_amps(self) -> float:
        return neutral_current([phase_spectrum(loads) for loads in self.phase_loads()])

    def channel_sum_amps(self, phase: str) -> float:
        """Arithmetic sum of the outputs' RMS currents on ``phase`` (what boards add up)."""
        return sum(
            self.expected_channel_amps(channel)
            for channel, p in self.scenario.phases.items()
            if p == phase
        )

    def aux_amps(self, phase: str) -> float:
        if not self.mains_on:
            return 0.0
        return sum(
            spec.rms(self.mains_hz)
            for name, spec in self.aux.items()
            if phase in self.aux_phases[name]
        )

    def apply(self, action: Action, now: float) -> set[ChannelId]:
        """Apply a load action; returns the outputs whose flowing load changed."""
        before = self.effective_all()
        if isinstance(action, SetLoad):
            for channel in action.channels:
                self.loads[channel] = action.load
                self.saved.pop(channel, None)
        elif isinstance(action, SetAux):
            self.aux[action.output] = action.load
            self.aux_phases.setdefault(action.output, self.scenario.aux[action.output].phases)
        elif isinstance(action, Overload):
            current = self.loads[action.channel]
            self.saved.setdefault(action.channel, current)
            base = current if action.kind is None else LoadSpec(action.kind, 1.0)
            if action.kind == "dimmer":
                base = apply_level(base, level=100.0)
            self.loads[action.channel] = base.with_rms(action.amps, self.mains_hz)
        elif isinstance(action, EndOverload):
            if action.channel in self.saved:
                self.loads[action.channel] = self.saved.pop(action.channel)
        elif isinstance(action, Trip):
            self.tripped.add(action.channel)
        elif isinstance(action, ResetBreaker):
            self.tripped.discard(action.channel)
            if action.channel in self.saved:  # the extra load was unplugged before the reset
                self.loads[action.channel] = self.saved.pop(action.channel)
        elif isinstance(action, Estop):
            self.estop = action.active
        elif isinstance(action, NeutralLost):
            self.neutral_lost = action.active
        elif isinstance(action, MeterOffline):
            self.meter_offline = action.active
        elif isinstance(action, BusErrors):
            self.ber = action.ber
        elif isinstance(action, BoardPlug):
            if action.plugged:
                self.unplugged.discard(action.group)
            else:
                self.unplugged.add(action.group)
        elif isinstance(action, PowerLoss):
            pass  # sequenced by VirtualPdu.power_loss (powered goes False, then True)
        after = self.effective_all()
        changed = {channel for channel in after if after[channel] != before[channel]}
        for channel in changed:
            if after[channel].kind == "motor" and not after[channel].is_off:
                self.motor_started[channel] = now
        return changed

    def reset_show(self, now: float) -> set[ChannelId]:
        """Back to the scenario's t = 0 loads (a looping show starts again)."""
        before = self.effective_all()
        self.loads = dict(self.scenario.loads)
        self.saved.clear()
        self.tripped.clear()
        self.aux = {name: a.load for name, a in self.scenario.aux.items()}
        after = self.effective_all()
        changed = {channel for channel in after if after[channel] != before[channel]}
        for channel in changed:
            if after[channel].kind == "motor":
                self.motor_started[channel] = now
        return changed


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
        baud: int = 115200,
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
        self._reaper: _Reaper | None = None
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
        self._reaper = _Reaper()
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
                _LIVE_PGIDS.add(board.pid)
                if self._reaper is not None:
                    self._reaper.add(board.pid)

    async def _kill_boards(self) -> None:
        boards = self._all_boards()
        self._boards_up = False
        await asyncio.gather(*(board.stop() for board in boards), return_exceptions=True)
        for board in boards:
            process = board.process
            if board.pid is not None and (process is None or process.returncode is not None):
                _LIVE_PGIDS.discard(board.pid)
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


# ---------------------------------------------------------------------- command line


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smartpdu sim",
        description="Run a virtual smartPDU: virtual boards on a virtual RS-485 bus and a "
        "simulated meter, playing a load scenario. Prints the serial ports as JSON.",
    )
    parser.add_argument(
        "--scenario",
        default="rehearsal",
        help="scenario name (tools/virtual/scenarios/NAME.toml) or path to a .toml file",
    )
    parser.add_argument("--speed", type=float, default=1.0, help="time line speed factor")
    parser.add_argument("--workdir", help="sockets and board flash (default: a temp dir)")
    parser.add_argument("--baud", type=int, default=115200, help="RS-485 bus baud rate")
    parser.add_argument(
        "--meter-baud", type=int, default=9600, choices=[2400, 4800, 9600, 19200, 38400]
    )
    parser.add_argument("--unit-id", default="sim", help="prefix of the boards' unique ids")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--list", action="store_true", help="list the shipped scenarios")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("-q", "--quiet", action="store_true", help="no show log on stderr")
    return parser


async def _run(args: argparse.Namespace, scenario: Scenario) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in _STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    pdu = VirtualPdu(
        scenario,
        args.workdir,
        baud=args.baud,
        meter_baud=args.meter_baud,
        speed=args.speed,
        unit_id=args.unit_id,
    )
    try:
        starting = asyncio.create_task(pdu.start())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()  # a signal during boot: stop() below cleans up
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            return 0
        stopping.cancel()
        starting.result()
        info = {
            **dataclasses.asdict(pdu.ports),
            "baud": pdu.baud,
            "meter_baud": pdu.meter_baud,
            "meter_device_id": pdu.meter.device_id,
            "scenario": scenario.name,
            "model": scenario.model,
            "groups": scenario.groups,
            "pid": os.getpid(),
            "pids": pdu.pids(),
        }
        sys.stdout.write(json.dumps(info) + "\n")
        sys.stdout.flush()
        print(pdu.summary(), file=sys.stderr, flush=True)
        if args.duration is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), args.duration)
        else:
            await stop.wait()
        return 0
    finally:
        await pdu.stop()
        for sig in _STOP_SIGNALS:
            loop.remove_signal_handler(sig)


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    if args.list:
        for name in scenario_names():
            print(name)
        return 0
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # meter timeouts are expected
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(f"smartpdu sim: {exc}", file=sys.stderr)
        return 2
    if not args.speed > 0:
        print("smartpdu sim: --speed must be > 0", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(args, scenario))
    except (VirtualPduError, VirtualBoardError) as exc:
        print(f"smartpdu sim: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
