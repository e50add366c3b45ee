"""Main meter reader: Modbus RTU (pymodbus) on its own serial port.

The register map comes from a profile data file (``host/meter_maps/<profile>.toml``, parsed
by ``host.meter_map``; the SDM630 by default) — the same file the meter simulator serves.
Registers are read in as few FC04 requests as the map allows (contiguous runs, at most the
meter's per-request limit).

Freshness is explicit: every reading carries the time it was measured, and the reader tells
its listener when the meter goes stale (no answer for ``stale_after_s``) and offline (no
answer for ``offline_after_s``) — a stale value is never passed on as live.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from pymodbus.client import AsyncModbusSerialClient
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerType

# The reader's public names: service and tests take the profile from here.
from host.meter_map import MeterProfile, MeterProfileError, load_profile

__all__ = [
    "Freshness",
    "MeterProfile",
    "MeterProfileError",
    "MeterReader",
    "MeterReadings",
    "decode_float32",
    "load_profile",
]

_LOG = logging.getLogger(__name__)


class Freshness(Enum):
    LIVE = "live"
    STALE = "stale"
    OFFLINE = "offline"


@dataclass(frozen=True)
class MeterReadings:
    values: dict[str, float]
    measured_at: float  # loop time of the last successful read
    freshness: Freshness


def decode_float32(registers: list[int], offset: int) -> float:
    """IEEE-754 float32 from two registers, high word first (big-endian words)."""
    raw = struct.pack(">HH", registers[offset], registers[offset + 1])
    return struct.unpack(">f", raw)[0]


class MeterReader:
    """Polls the meter every ``poll_s`` and reports readings and freshness changes."""

    def __init__(
        self,
        port: str,
        *,
        baud: int,
        device_id: int = 1,
        profile: MeterProfile | None = None,
        poll_s: float = 1.0,
        stale_after_s: float = 3.0,
        offline_after_s: float = 10.0,
        timeout_s: float = 0.5,
        on_readings: Callable[[MeterReadings], None] | None = None,
        on_freshness: Callable[[Freshness], None] | None = None,
    ) -> None:
        self.port = port
        self.baud = baud
        self.device_id = device_id
        self.profile = profile or load_profile()
        self.poll_s = poll_s
        self.stale_after_s = stale_after_s
        self.offline_after_s = offline_after_s
        self.timeout_s = timeout_s
        self.on_readings = on_readings
        self.on_freshness = on_freshness
        self.freshness = Freshness.OFFLINE
        self.last: MeterReadings | None = None
        self.reads_ok = 0
        self.reads_failed = 0
        self._client: AsyncModbusSerialClient | None = None
        self._blocks = self.profile.blocks()

    async def read_once(self) -> dict[str, float] | None:
        """One full read of the map; None when the meter did not answer correctly."""
        client = self._client
        if client is None:
            return None
        values: dict[str, float] = {}
        try:
            for start, count, registers in self._blocks:
                result = await client.read_input_registers(
                    start, count=count, device_id=self.device_id
                )
                if result.isError():
                    return None
                regs = list(result.registers)
                if len(regs) < count:
                    # A short answer (a garbled frame whose CRC happened to pass, a meter
                    # that answers a different map): this read is lost, the reader goes on.
                    _LOG.debug("meter answered %d of %d registers at %d", len(regs), count, start)
                    return None
                for reg in registers:
                    value = decode_float32(regs, reg.address - start)
                    if math.isfinite(value):
                        values[reg.name] = value
        except (TimeoutError, ModbusException, OSError) as exc:
            _LOG.debug("meter read failed: %s", exc)
            return None
        return values

    def _set_freshness(self, freshness: Freshness) -> None:
        if freshness is not self.freshness:
            self.freshness = freshness
            _LOG.info("meter %s", freshness.value)
            if self.on_freshness is not None:
                self.on_freshness(freshness)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self._client = AsyncModbusSerialClient(
            self.port,
            framer=FramerType.RTU,
            baudrate=self.baud,
            timeout=self.timeout_s,
            retries=0,
            reconnect_delay=1.0,
            reconnect_delay_max=5.0,
        )
        last_ok = loop.time()
        try:
            while True:
                started = loop.time()
                if not self._client.connected:
                    with contextlib.suppress(Exception):
                        await self._client.connect()
                values = await self.read_once() if self._client.connected else None
                now = loop.time()
                if values is not None:
                    last_ok = now
                    self.reads_ok += 1
                    self._set_freshness(Freshness.LIVE)
                    self.last = MeterReadings(values, now, Freshness.LIVE)
                    if self.on_readings is not None:
                        self.on_readings(self.last)
                else:
                    self.reads_failed += 1
                    silent = now - last_ok
                    if silent >= self.offline_after_s:
                        self._set_freshness(Freshness.OFFLINE)
                    elif silent >= self.stale_after_s:
                        self._set_freshness(Freshness.STALE)
                await asyncio.sleep(max(0.0, self.poll_s - (loop.time() - started)))
        finally:
            self._client.close()
