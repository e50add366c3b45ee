"""Simulated Eastron SDM630 main meter: a real pymodbus RTU server on its own pseudo-terminal.

Layers (each usable alone):

* ``RegisterMap`` / ``load_register_map`` — the SDM630 register map from
  ``host/meter_maps/sdm630.toml``, read by the host meter reader's parser (``host.meter_map``).
* ``Load``, ``MeterModel`` — the electrical model, no I/O: per-phase loads in, readings out.
  Phase current is the RMS of the phasor sum of the loads' fundamentals and harmonics; neutral
  current is the phasor sum of the three phases per harmonic order (fundamentals cancel when
  balanced, triplen harmonics add); energy integrates with time; demand is a sliding-block
  average like the SDM630's; ``power_loss()`` resets energy and demand.
* ``MeterSim`` — serves the model over Modbus RTU (FC04 input registers, FC03 holding) with
  pymodbus' serial server.  The meter link is a two-endpoint ``VirtualBus`` at the meter's baud
  rate, so bytes take their real time on the wire (9600 baud: ~1 ms per byte); the meter
  answers after ``turnaround`` seconds (a few ms, like a real meter's processing time).
  Clients open ``MeterSim.port`` (a pty slave path) with pyserial/pymodbus as a serial port.
  ``offline = True`` unplugs the meter from its link: requests go unanswered, clients time out.
  ``link.set_faults(ber=…)`` corrupts bytes on the meter line; like a real RTU slave the meter
  drops a half-received frame after a silence, so it recovers with the next request.  Requests
  for another device id get no answer; reads of more than 80 registers (the SDM630 limit) or
  outside 0x0000-0x017F get a Modbus exception.

Run as a process::

    python -m tools.virtual.metersim --baud 9600 --device-id 1 --load L1:16:0.95:0.3 \\
        --load L2:10 [--demand-period 60] [--control /tmp/meter.ctl]

prints ``{"pid", "port", "baud", "device_id", "control"}`` as one JSON line and runs until
SIGINT/SIGTERM.  The control socket takes JSON lines (see ``MeterSim.handle_control``).
"""

from __future__ import annotations

import argparse
import asyncio
import cmath
import logging
import math
import os
import random
import struct
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator.simcore import SimCore

from host.meter_map import MAPS_DIR, MeterProfile, MeterProfileError, MeterRegister, load_meter_map
from tools.virtual.vbus import VirtualBus, serve_until_signal

_LOG = logging.getLogger(__name__)

SDM630_MAP = MAPS_DIR / "sdm630.toml"

# Input registers served: 0x0000-0x017F (gaps read 0.0); anything else is an illegal address.
_INPUT_BLOCK = 0x180
_HOLDING_BLOCK = 0x20
_PHASES = 3
_KWH = 3.6e6  # joules per kWh (and VAr·s per kVArh)


class MeterSimError(Exception):
    """Bad meter map, load or simulator setting."""


# ---------------------------------------------------------------------- register map

# The map is the meter reader's (host.meter_map): the simulator serves what the reader reads.
RegisterMap = MeterProfile
RegisterSpec = MeterRegister


def load_register_map(path: str | os.PathLike[str] = SDM630_MAP) -> RegisterMap:
    """Load and validate a meter map (TOML: ``[meter]``, ``[[input]]``, ``[[holding]]``)."""
    try:
        return load_meter_map(path)
    except (OSError, MeterProfileError) as exc:
        raise MeterSimError(str(exc)) from exc


# ---------------------------------------------------------------------- electrical model


@dataclass(frozen=True)
class Load:
    """One load on one phase.

    ``current``: true RMS current in A (fundamental and harmonics).  ``pf``: displacement power
    factor of the fundamental (cos φ1), lagging unless ``leading``.  Harmonic content as
    amplitude fractions of the fundamental: ``h3`` for the 3rd harmonic (LED drivers and
    phase-cut dimmers: 0.3-0.9), ``harmonics`` for other orders, e.g. ``((5, 0.2), (7, 0.1))``.
    Harmonics are taken in phase with the same harmonic of the voltage (rectifier-like loads),
    so those of loads on one phase add arithmetically.
    """

    current: float
    pf: float = 1.0
    leading: bool = False
    h3: float = 0.0
    harmonics: tuple[tuple[int, float], ...] = ()

    def __post_init__(self) -> None:
        if self.current < 0:
            raise MeterSimError(f"negative load current {self.current}")
        if not 0.0 < self.pf <= 1.0:
            raise MeterSimError(f"power factor must be in (0, 1], got {self.pf}")
        orders = [order for order, _ in self.harmonics]
        if any(order < 2 for order in orders) or len(set(orders)) != len(orders):
            raise MeterSimError(f"bad harmonic orders {orders}")
        if self.h3 and 3 in orders:
            raise MeterSimError("give the 3rd harmonic either as h3 or in harmonics")
        if self.h3 < 0 or any(fraction < 0 for _, fraction in self.harmonics):
            raise MeterSimError("harmonic fractions must be >= 0")

    @classmethod
    def from_angle(cls, current: float, angle_deg: float, **kwargs: Any) -> Load:
        """A load whose fundamental lags the voltage by ``angle_deg`` (negative: leads)."""
        pf = math.cos(math.radians(angle_deg))
        return cls(current, pf=pf, leading=angle_deg < 0, **kwargs)

    def spectrum(self) -> dict[int, complex]:
        """Current phasors by harmonic order, relative to the same order of the phase voltage."""
        fractions = dict(self.harmonics)
        if self.h3:
            fractions[3] = self.h3
        fundamental = self.current / math.sqrt(1.0 + sum(f * f for f in fractions.values()))
        phi = math.acos(self.pf) * (1.0 if self.leading else -1.0)
        result = {1: cmath.rect(fundamental, phi)}
        for order, fraction in fractions.items():
            result[order] = complex(fundamental * fraction, 0.0)
        return result


def phase_spectrum(loads: Sequence[Load]) -> dict[int, complex]:
    """Phasor sum, per harmonic order, of the loads on one phase."""
    total: dict[int, complex] = {1: 0j}
    for load in loads:
        for order, phasor in load.spectrum().items():
            total[order] = total.get(order, 0j) + phasor
    return total


def rms_of(spectrum: Mapping[int, complex]) -> float:
    return math.sqrt(sum(abs(phasor) ** 2 for phasor in spectrum.values()))


def neutral_current(spectra: Sequence[Mapping[int, complex]]) -> float:
    """RMS neutral current of a 3-phase 4-wire system from the three phases' spectra.

    Phase p sits at -120°·p, so its harmonic h at -120°·p·h: fundamentals of a balanced load
    cancel, and the 3rd, 9th, … harmonics of all phases are in phase and add.
    """
    orders = set().union(*(spectrum.keys() for spectrum in spectra))
    total_sq = 0.0
    for order in orders:
        phasor = sum(
            (
                spectrum.get(order, 0j) * cmath.rect(1.0, -2.0 * math.pi * p * order / _PHASES)
                for p, spectrum in enumerate(spectra)
            ),
            start=0j,
        )
        total_sq += abs(phasor) ** 2
    return math.sqrt(total_sq)


@dataclass(frozen=True)
class _Instant:
    """Instantaneous electrical state (per phase tuples are L1, L2, L3)."""

    voltage: tuple[float, float, float]
    current: tuple[float, float, float]
    power: tuple[float, float, float]
    apparent: tuple[float, float, float]
    reactive: tuple[float, float, float]
    line_voltage: tuple[float, float, float]  # L1-L2, L2-L3, L3-L1
    neutral: float
    frequency: float

    def demand_inputs(self) -> tuple[float, ...]:
        """Quantities averaged for demand, in ``_DEMAND_NAMES`` order."""
        return (sum(self.power), sum(self.apparent), self.neutral, *self.current)


_DEMAND_NAMES = (
    "total_power_demand",
    "total_va_demand",
    "neutral_current_demand",
    "l1_current_demand",
    "l2_current_demand",
    "l3_current_demand",
)


@dataclass(frozen=True)
class _Wobble:
    """Slow, smooth variation: a sum of sines with fixed random phases (deterministic per seed)."""

    terms: tuple[tuple[float, float, float], ...]  # (amplitude, period s, phase rad)

    def at(self, t: float) -> float:
        return sum(a * math.sin(2.0 * math.pi * t / period + ph) for a, period, ph in self.terms)

    @classmethod
    def make(cls, rng: random.Random, spec: Sequence[tuple[float, float]]) -> _Wobble:
        return cls(tuple((a, period, rng.uniform(0, 2 * math.pi)) for a, period in spec))


@dataclass
class _DemandState:
    """Sliding-block demand: the period is cut into blocks; at each block end the demand is
    the mean of the last ``blocks`` block averages (valid once a whole period has passed)."""

    block_start: float
    integrals: list[float] = field(default_factory=lambda: [0.0] * len(_DEMAND_NAMES))
    history: deque[tuple[float, ...]] = field(default_factory=deque)
    demand: tuple[float, ...] = (0.0,) * len(_DEMAND_NAMES)
    maximum: tuple[float, ...] = (0.0,) * len(_DEMAND_NAMES)


class MeterModel:
    """The electrical model behind the simulated meter.

    ``demand_period`` (s) and ``demand_slide`` (s, default ``demand_period / 60``, as the
    SDM630's 60 min period with 1 min slide) set the demand window; the real meter's default
    period is 60 min, the default here is 60 s so a simulated show sees demand move.  Voltage
    and frequency wander slowly around ``nominal_voltage`` / ``nominal_frequency``; a phase's
    voltage drops by ``source_impedance`` times its current.  ``clock`` (monotonic seconds) can be
    replaced to test without waiting.
    """

    def __init__(
        self,
        *,
        nominal_voltage: float = 230.0,
        nominal_frequency: float = 50.0,
        source_impedance: float = 0.02,
        demand_period: float = 60.0,
        demand_slide: float | None = None,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        slide = demand_period / 60.0 if demand_slide is None else demand_slide
        if demand_period <= 0 or slide <= 0 or slide > demand_period:
            raise MeterSimError("need 0 < demand_slide <= demand_period")
        self.nominal_voltage = nominal_voltage
        self.nominal_frequency = nominal_frequency
        self.source_impedance = source_impedance
        self.demand_period = demand_period
        self.demand_slide = slide
        self._blocks = max(1, round(demand_period / slide))
        self._clock = clock
        rng = random.Random(seed)
        # ±~1.5 % of nominal over tens of seconds to minutes; each phase its own part.
        self._grid_wobble = _Wobble.make(rng, [(0.008, 97.0), (0.003, 23.0)])
        self._phase_wobble = tuple(
            _Wobble.make(rng, [(0.004, 41.0 + 7 * p), (0.002, 5.3 + p)]) for p in range(_PHASES)
        )
        self._angle_wobble = tuple(_Wobble.make(rng, [(0.2, 37.0 + 5 * p)]) for p in range(_PHASES))
        self._freq_wobble = _Wobble.make(rng, [(0.015, 61.0), (0.005, 7.7)])
        self._t0 = clock()
        self._t = self._t0
        self._spectra: tuple[dict[int, complex], ...] = ({1: 0j}, {1: 0j}, {1: 0j})
        self._energy = [0.0, 0.0, 0.0, 0.0]  # import kWh, export kWh, import kVArh, export kVArh
        self._demand = _DemandState(block_start=self._t)

    # ---------------------------------------------------------------- inputs

    def set_phase_loads(
        self, l1: Sequence[Load] = (), l2: Sequence[Load] = (), l3: Sequence[Load] = ()
    ) -> None:
        """Replace the loads on each phase (the scenario calls this whenever loads change)."""
        self.advance()
        self._spectra = (phase_spectrum(l1), phase_spectrum(l2), phase_spectrum(l3))

    def power_loss(self) -> None:
        """The unit lost power: the meter restarts with energy, demand and max demand at 0."""
        self.advance()
        self._energy = [0.0, 0.0, 0.0, 0.0]
        self._demand = _DemandState(block_start=self._t)

    # ---------------------------------------------------------------- time

    def advance(self) -> None:
        """Integrate energy and demand up to now (values are held over each step)."""
        now = self._clock()
        if now <= self._t:
            return
        inst = self._instant(self._t)
        dt = now - self._t
        p_total, q_total = sum(inst.power), sum(inst.reactive)
        self._energy[0 if p_total >= 0 else 1] += abs(p_total) * dt / _KWH
        self._energy[2 if q_total >= 0 else 3] += abs(q_total) * dt / _KWH
        self._advance_demand(inst.demand_inputs(), now)
        self._t = now

    def _advance_demand(self, values: tuple[float, ...], now: float) -> None:
        state = self._demand
        slide = self.demand_slide
        t = self._t
        while t < now:
            block_end = state.block_start + slide
            if t == state.block_start and now - t > (self._blocks + 1) * slide:
                # Long quiet gap: whole blocks of one value; only the last period's worth count.
                skip = int((now - t) / slide) - self._blocks
                state.block_start += skip * slide
                t = state.block_start
                continue
            step_end = min(now, block_end)
            for i, value in enumerate(values):
                state.integrals[i] += value * (step_end - t)
            t = step_end
            if t >= block_end:
                state.history.append(tuple(x / slide for x in state.integrals))
                if len(state.history) > self._blocks:
                    state.history.popleft()
                state.integrals = [0.0] * len(values)
                state.block_start = block_end
                if len(state.history) == self._blocks:
                    state.demand = tuple(
                        sum(block[i] for block in state.history) / self._blocks
                        for i in range(len(values))
                    )
                    state.maximum = tuple(map(max, state.maximum, state.demand))

    def _instant(self, t: float) -> _Instant:
        age = t - self._t0
        grid = self._grid_wobble.at(age)
        currents = tuple(rms_of(spectrum) for spectrum in self._spectra)
        volts = tuple(
            self.nominal_voltage * (1.0 + grid + self._phase_wobble[p].at(age))
            - self.source_impedance * currents[p]
            for p in range(_PHASES)
        )
        phasors = [
            cmath.rect(volts[p], math.radians(-120.0 * p + self._angle_wobble[p].at(age)))
            for p in range(_PHASES)
        ]
        fundamentals = [spectrum[1] for spectrum in self._spectra]
        return _Instant(
            voltage=(volts[0], volts[1], volts[2]),
            current=(currents[0], currents[1], currents[2]),
            power=_triple(volts[p] * fundamentals[p].real for p in range(_PHASES)),
            apparent=_triple(volts[p] * currents[p] for p in range(_PHASES)),
            reactive=_triple(-volts[p] * fundamentals[p].imag for p in range(_PHASES)),
            line_voltage=_triple(abs(phasors[p] - phasors[(p + 1) % 3]) for p in range(_PHASES)),
            neutral=neutral_current(self._spectra),
            frequency=self.nominal_frequency * (1.0 + self._freq_wobble.at(age) / 50.0),
        )

    # ---------------------------------------------------------------- outputs

    def readings(self) -> dict[str, float]:
        """Every quantity of the SDM630 map, by register name, as of now."""
        self.advance()
        inst = self._instant(self._t)
        values: dict[str, float] = {}
        for p in range(_PHASES):
            n = p + 1
            values[f"l{n}_voltage"] = inst.voltage[p]
            values[f"l{n}_current"] = inst.current[p]
            values[f"l{n}_power"] = inst.power[p]
            values[f"l{n}_apparent_power"] = inst.apparent[p]
            values[f"l{n}_reactive_power"] = inst.reactive[p]
            values[f"l{n}_power_factor"] = _power_factor(inst.power[p], inst.apparent[p])
        values["l1_l2_voltage"], values["l2_l3_voltage"], values["l3_l1_voltage"] = (
            inst.line_voltage
        )
        values["average_voltage_ln"] = sum(inst.voltage) / 3
        values["average_voltage_ll"] = sum(inst.line_voltage) / 3
        values["average_current"] = sum(inst.current) / 3
        values["sum_current"] = sum(inst.current)
        values["neutral_current"] = inst.neutral
        values["total_power"] = sum(inst.power)
        values["total_apparent_power"] = sum(inst.apparent)
        values["total_reactive_power"] = sum(inst.reactive)
        values["total_power_factor"] = _power_factor(sum(inst.power), sum(inst.apparent))
        values["frequency"] = inst.frequency
        imp, exp, imp_r, exp_r = self._energy
        values["import_energy"], values["export_energy"] = imp, exp
        values["import_reactive_energy"], values["export_reactive_energy"] = imp_r, exp_r
        values["total_energy"] = imp + exp
        values["total_reactive_energy"] = imp_r + exp_r
        for name, demand, maximum in zip(
            _DEMAND_NAMES, self._demand.demand, self._demand.maximum, strict=True
        ):
            values[name] = demand
            values[f"max_{name}"] = maximum
        values["demand_period"] = self.demand_period / 60.0
        values["system_type"] = 3.0
        return values


def _triple(values: Any) -> tuple[float, float, float]:
    a, b, c = values
    return (a, b, c)


def _power_factor(power: float, apparent: float) -> float:
    # An idle meter shows 1.000, as the SDM630 does with no current.
    return power / apparent if apparent > 1e-9 else 1.0


def _registers(value: float) -> tuple[int, int]:
    high, low = struct.unpack(">HH", struct.pack(">f", value))
    return high, low


# ---------------------------------------------------------------------- Modbus server


class _OneDeviceCore(SimCore):
    """pymodbus' SimCore answers unknown device ids from device 0 or fails; a meter on RS-485
    stays silent instead (with ``ignore_missing_devices`` the server then sends nothing)."""

    def __init__(self, device: SimDevice) -> None:
        super().__init__(device)
        self._device_id = device.id

    async def async_getValues(
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        if device_id != self._device_id:
            raise NoSuchIdException(f"device {device_id}")
        return await super().async_getValues(device_id, func_code, address, count)

    async def async_setValues(
        self, device_id: int, func_code: int, address: int, values: list[int] | list[bool]
    ) -> ExcCodes | None:
        if device_id != self._device_id:
            raise NoSuchIdException(f"device {device_id}")
        return await super().async_setValues(device_id, func_code, address, values)


class _ResyncingRequestHandler(ServerRequestHandler):
    """An RTU slave drops a half-received frame after a silence on the line (t3.5), so one
    garbled request does not swallow the next.  pymodbus frames by length only; this restores
    the rule with a silence long enough (``RESYNC_SILENCE``) not to be fooled by the event
    loop's own latency, yet far shorter than any master's response timeout."""

    RESYNC_SILENCE = 0.05
    _last_rx = 0.0

    def datagram_received(self, data: bytes, addr: tuple[Any, ...] | None) -> None:
        now = time.monotonic()
        if now - self._last_rx > self.RESYNC_SILENCE:
            self.recv_buffer = b""
        self._last_rx = now
        super().datagram_received(data, addr)


class _MeterServer(ModbusSerialServer):
    def callback_new_connection(self) -> ServerRequestHandler:
        return _ResyncingRequestHandler(self, self.trace_packet, self.trace_pdu, self.trace_connect)


class MeterSim:
    """A simulated SDM630 on a pseudo-terminal: ``await start()``, then open ``port``."""

    def __init__(
        self,
        model: MeterModel | None = None,
        *,
        baud: int = 9600,
        device_id: int = 1,
        turnaround: float = 0.005,
        register_map: RegisterMap | None = None,
        bits_per_char: int = 10,
    ) -> None:
        self.model = model or MeterModel()
        self.register_map = register_map or load_register_map()
        self.baud = baud
        self.device_id = device_id
        self.turnaround = turnaround
        known = self.model.readings()
        missing = [
            spec.name
            for spec in self.register_map.input + self.register_map.holding
            if spec.name not in known
        ]
        if missing:
            raise MeterSimError(f"the model cannot compute {missing}")
        self._link = VirtualBus(baud, bits_per_char=bits_per_char, serve_socket=False)
        self._meter_path = self._link.add_pty_endpoint("meter")
        self._client_path = self._link.add_pty_endpoint("client")
        self._server: _MeterServer | None = None
        self._offline = False
        self._outage: asyncio.TimerHandle | None = None

    @property
    def port(self) -> str:
        """The serial device a Modbus client opens (a pty slave path)."""
        return self._client_path

    @property
    def link(self) -> VirtualBus:
        """The meter's own RS-485 link, for fault injection (``link.set_faults(ber=…)``)."""
        return self._link

    async def start(self) -> None:
        await self._link.start()
        device = SimDevice(
            id=self.device_id,
            simdata=(
                [SimData(0, values=[False] * 16, datatype=DataType.BITS)],
                [SimData(0, values=[False] * 16, datatype=DataType.BITS)],
                [SimData(0, values=[0] * _HOLDING_BLOCK, datatype=DataType.REGISTERS)],
                [SimData(0, values=[0] * _INPUT_BLOCK, datatype=DataType.REGISTERS)],
            ),
            action=self._on_request,
        )
        server = _MeterServer(
            device,
            framer=FramerType.RTU,
            port=self._meter_path,
            baudrate=self.baud,
            ignore_missing_devices=True,
        )
        server.context = _OneDeviceCore(device)
        await server.serve_forever(background=True)
        self._server = server

    async def stop(self) -> None:
        if self._outage is not None:
            self._outage.cancel()
            self._outage = None
        if self._server is not None:
            await self._server.shutdown()
            self._server = None
        await self._link.stop()

    async def __aenter__(self) -> MeterSim:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ---------------------------------------------------------------- runtime control

    def set_phase_loads(
        self, l1: Sequence[Load] = (), l2: Sequence[Load] = (), l3: Sequence[Load] = ()
    ) -> None:
        self.model.set_phase_loads(l1, l2, l3)

    @property
    def offline(self) -> bool:
        return self._offline

    @offline.setter
    def offline(self, value: bool) -> None:
        """An offline meter is cut from its link: it hears nothing and answers nothing."""
        self._offline = value
        if value:
            self._link.unplug("meter")
        else:
            self._link.plug("meter")

    def power_loss(self, outage: float = 0.0) -> None:
        """Reset energy and demand; with ``outage`` > 0 the meter is also silent that long."""
        self.model.power_loss()
        if outage > 0:
            if self._outage is not None:
                self._outage.cancel()
            self.offline = True
            self._outage = asyncio.get_running_loop().call_later(outage, self._end_outage)

    def _end_outage(self) -> None:
        self._outage = None
        self.offline = False

    def handle_control(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """``{"op": "loads", "l1": [{"current": 10, "pf": 0.9, "h3": 0.3}, …], "l2": …}``,
        ``{"op": "offline", "value": true}``, ``{"op": "power_loss", "outage": 0}``,
        ``{"op": "readings"}``."""
        op = request.get("op")
        try:
            if op == "loads":
                phases = [
                    [_load_from_json(item) for item in request.get(key, [])]
                    for key in ("l1", "l2", "l3")
                ]
                self.set_phase_loads(*phases)
            elif op == "offline":
                self.offline = bool(request.get("value", True))
            elif op == "power_loss":
                self.power_loss(float(request.get("outage", 0.0)))
            elif op == "readings":
                return {"ok": True, "readings": self.model.readings()}
            else:
                return {"ok": False, "error": f"unknown op {op!r}"}
        except (KeyError, TypeError, ValueError, MeterSimError) as exc:
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        return {"ok": True}

    # ---------------------------------------------------------------- Modbus

    async def _on_request(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus calls this before answering: refresh the registers from the model, then
        take the meter's processing time."""
        if function_code not in (3, 4):
            return ExcCodes.ILLEGAL_FUNCTION
        if count > self.register_map.max_registers_per_request:
            return ExcCodes.ILLEGAL_VALUE
        specs = self.register_map.input if function_code == 4 else self.register_map.holding
        values = self.model.readings()
        for spec in specs:
            offset = spec.address - start_address
            registers[offset], registers[offset + 1] = _registers(values[spec.name])
        if self.turnaround > 0:
            await asyncio.sleep(self.turnaround)
        return None


def _load_from_json(item: Mapping[str, Any]) -> Load:
    return Load(
        current=float(item["current"]),
        pf=float(item.get("pf", 1.0)),
        leading=bool(item.get("leading", False)),
        h3=float(item.get("h3", 0.0)),
        harmonics=tuple((int(order), float(f)) for order, f in item.get("harmonics", [])),
    )


# ---------------------------------------------------------------------- process entry point


def _parse_load(spec: str) -> tuple[int, Load]:
    """``L1:16`` / ``L2:10:0.9`` / ``L3:8:0.95:0.6`` (phase, amps, pf, 3rd-harmonic fraction)."""
    parts = spec.split(":")
    if not 2 <= len(parts) <= 4 or parts[0].upper() not in ("L1", "L2", "L3"):
        raise argparse.ArgumentTypeError(f"bad load {spec!r}: want Ln:amps[:pf[:h3]]")
    try:
        numbers = [float(part) for part in parts[1:]] + [1.0, 0.0][len(parts) - 2 :]
        load = Load(numbers[0], pf=numbers[1], h3=numbers[2])
    except (ValueError, MeterSimError) as exc:
        raise argparse.ArgumentTypeError(f"bad load {spec!r}: {exc}") from exc
    return int(parts[0][1]) - 1, load


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.virtual.metersim", description="Simulated SDM630 meter on a pty."
    )
    parser.add_argument("--baud", type=int, default=9600, choices=[2400, 4800, 9600, 19200, 38400])
    parser.add_argument("--device-id", type=int, default=1)
    parser.add_argument("--turnaround", type=float, default=0.005, help="seconds")
    parser.add_argument("--demand-period", type=float, default=60.0, help="seconds")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--load", action="append", default=[], type=_parse_load)
    parser.add_argument("--control", help="UNIX socket for JSON-lines runtime control")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


async def _amain(args: argparse.Namespace) -> int:
    model = MeterModel(demand_period=args.demand_period, seed=args.seed)
    phases: list[list[Load]] = [[], [], []]
    for phase, load in args.load:
        phases[phase].append(load)
    model.set_phase_loads(*phases)
    meter = MeterSim(model, baud=args.baud, device_id=args.device_id, turnaround=args.turnaround)
    return await serve_until_signal(
        meter,
        args.control,
        lambda: {
            "pid": os.getpid(),
            "port": meter.port,
            "baud": meter.baud,
            "device_id": meter.device_id,
            "control": args.control,
        },
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    return asyncio.run(_amain(args))


if __name__ == "__main__":
    raise SystemExit(main())
