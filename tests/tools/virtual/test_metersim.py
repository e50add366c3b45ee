"""The simulated SDM630: its model on its own, then read over Modbus RTU through a real pty."""

from __future__ import annotations

import asyncio
import cmath
import json
import math
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusSerialClient
from pymodbus.exceptions import ModbusIOException

from tools.virtual.metersim import Load, MeterModel, MeterSim, RegisterMap, load_register_map
from tools.virtual.vbus import control_request

REPO_ROOT = Path(__file__).resolve().parents[3]
SQRT3 = math.sqrt(3.0)

# The addresses the issue asks for (SDM630 input registers, 0-based protocol addresses).
REQUIRED_ADDRESSES = {
    "l1_voltage": 0x00,
    "l2_voltage": 0x02,
    "l3_voltage": 0x04,
    "l1_current": 0x06,
    "l2_current": 0x08,
    "l3_current": 0x0A,
    "l1_power": 0x0C,
    "l2_power": 0x0E,
    "l3_power": 0x10,
    "l1_apparent_power": 0x12,
    "l2_apparent_power": 0x14,
    "l3_apparent_power": 0x16,
    "l1_reactive_power": 0x18,
    "l2_reactive_power": 0x1A,
    "l3_reactive_power": 0x1C,
    "l1_power_factor": 0x1E,
    "l2_power_factor": 0x20,
    "l3_power_factor": 0x22,
    "total_power": 0x34,
    "total_apparent_power": 0x38,
    "total_reactive_power": 0x3C,
    "total_power_factor": 0x3E,
    "frequency": 0x46,
    "import_energy": 0x48,
    "import_reactive_energy": 0x4C,
    "total_power_demand": 0x54,
    "max_total_power_demand": 0x56,
    "total_va_demand": 0x64,
    "max_total_va_demand": 0x66,
    "neutral_current_demand": 0x68,
    "max_neutral_current_demand": 0x6A,
    "l1_l2_voltage": 0xC8,
    "l2_l3_voltage": 0xCA,
    "l3_l1_voltage": 0xCC,
    "neutral_current": 0xE0,
    "l1_current_demand": 0x102,
    "l2_current_demand": 0x104,
    "l3_current_demand": 0x106,
    "max_l1_current_demand": 0x108,
    "max_l2_current_demand": 0x10A,
    "max_l3_current_demand": 0x10C,
}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fundamental(current: float, pf: float, *, leading: bool = False, h3: float = 0.0) -> complex:
    """Independent re-derivation: the fundamental of a load with 3rd-harmonic fraction h3."""
    magnitude = current / math.sqrt(1 + h3 * h3)
    angle = math.acos(pf) * (1 if leading else -1)
    return cmath.rect(magnitude, angle)


# --------------------------------------------------------------------------- register map


def test_register_map_has_the_sdm630_addresses() -> None:
    register_map = load_register_map()
    by_name = register_map.input_by_name()
    for name, address in REQUIRED_ADDRESSES.items():
        assert by_name[name].address == address, name
    for spec in register_map.input:
        assert spec.register == 30001 + spec.address
        assert spec.unit is not None and spec.description
    assert {spec.name: spec.address for spec in register_map.holding}["demand_period"] == 0x02
    assert register_map.max_registers_per_request == 80
    # The simulator computes every quantity the map lists.
    readings = MeterModel().readings()
    assert {spec.name for spec in register_map.input + register_map.holding} <= set(readings)


# --------------------------------------------------------------------------- the model alone


def test_phase_current_is_the_vector_sum_of_its_loads() -> None:
    model = MeterModel(clock=FakeClock())
    model.set_phase_loads([Load(10.0), Load(6.0, pf=0.8)], [Load(5.0, h3=0.75)], [])
    readings = model.readings()
    # 10 A at 0° + 6 A at -36.9°: |14.8 - 3.6j| = 15.23 A, less than the arithmetic 16 A.
    assert readings["l1_current"] == pytest.approx(abs(10 + cmath.rect(6, -math.acos(0.8))))
    assert readings["l1_current"] < 16.0
    assert readings["l2_current"] == pytest.approx(5.0)  # true RMS including its harmonic
    assert readings["l3_current"] == 0.0
    assert readings["sum_current"] == pytest.approx(readings["l1_current"] + 5.0)


def test_neutral_current_from_phasors_with_triplen_harmonics() -> None:
    model = MeterModel(clock=FakeClock())
    model.set_phase_loads([Load(10.0)], [Load(10.0)], [Load(10.0)])
    assert model.readings()["neutral_current"] == pytest.approx(0.0, abs=1e-9)

    # One phase only: all of it returns through the neutral.
    model.set_phase_loads([Load(10.0, pf=0.9)], [], [])
    assert model.readings()["neutral_current"] == pytest.approx(10.0)

    # Balanced LED drivers: fundamentals cancel, 3rd harmonics add: 3 x I3 > phase current.
    h3 = 0.8
    model.set_phase_loads(*([Load(10.0, h3=h3)] for _ in range(3)))
    i3 = 10.0 / math.sqrt(1 + h3 * h3) * h3
    readings = model.readings()
    assert readings["neutral_current"] == pytest.approx(3 * i3)
    assert readings["neutral_current"] > readings["l1_current"]

    # 5th harmonics are not triplen: balanced, they cancel like the fundamentals.
    model.set_phase_loads(*([Load(10.0, harmonics=((5, 0.5),))] for _ in range(3)))
    assert model.readings()["neutral_current"] == pytest.approx(0.0, abs=1e-9)


def test_power_voltage_and_frequency_are_plausible() -> None:
    clock = FakeClock()
    model = MeterModel(clock=clock, seed=5)
    model.set_phase_loads([Load(10.0, pf=0.8)], [Load(10.0, pf=0.9, leading=True)], [])
    voltages: list[float] = []
    for _ in range(600):  # ten minutes, one reading a second
        clock.now += 1.0
        r = model.readings()
        voltages += [r["l1_voltage"], r["l2_voltage"], r["l3_voltage"]]
        assert 49.9 <= r["frequency"] <= 50.1
        for a, b, pair in ((1, 2, "l1_l2"), (2, 3, "l2_l3"), (3, 1, "l3_l1")):
            mean = (r[f"l{a}_voltage"] + r[f"l{b}_voltage"]) / 2
            assert r[f"{pair}_voltage"] == pytest.approx(SQRT3 * mean, rel=0.01)
        assert r["l1_power"] == pytest.approx(r["l1_voltage"] * 8.0)
        assert r["l1_reactive_power"] == pytest.approx(r["l1_voltage"] * 6.0)  # inductive
        assert r["l2_reactive_power"] < 0  # capacitive
        assert r["l1_power_factor"] == pytest.approx(0.8)
        assert r["total_power_factor"] == pytest.approx(
            r["total_power"] / r["total_apparent_power"]
        )
    assert 220.0 < min(voltages) < max(voltages) < 240.0
    assert max(voltages) - min(voltages) > 1.0  # it does vary


def test_energy_integrates_and_resets_on_power_loss() -> None:
    clock = FakeClock()
    model = MeterModel(clock=clock, source_impedance=0.0)
    model.set_phase_loads([Load(10.0, pf=0.8)], [], [])
    total = 0.0
    for _ in range(3600):
        r = model.readings()
        total += r["total_power"]  # held for the next second
        clock.now += 1.0
    r = model.readings()
    assert r["import_energy"] == pytest.approx(total / 3.6e6, rel=1e-9)
    assert r["import_energy"] == pytest.approx(230 * 8.0 / 1000, rel=0.02)  # ~1.84 kWh
    assert r["import_reactive_energy"] == pytest.approx(230 * 6.0 / 1000, rel=0.02)
    assert r["export_energy"] == 0.0

    model.power_loss()
    r = model.readings()
    assert r["import_energy"] == 0.0
    assert r["import_reactive_energy"] == 0.0
    assert r["max_total_power_demand"] == 0.0


def test_demand_is_a_sliding_block_average_and_max_demand_holds() -> None:
    clock = FakeClock()
    model = MeterModel(clock=clock, demand_period=60.0, demand_slide=10.0)
    model.set_phase_loads([Load(20.0)], [], [])
    clock.now += 50.0
    assert model.readings()["l1_current_demand"] == 0.0  # not valid before a whole period
    clock.now += 10.0
    assert model.readings()["l1_current_demand"] == pytest.approx(20.0)

    model.set_phase_loads([Load(2.0)], [], [])
    clock.now += 30.0  # half the window at 2 A
    r = model.readings()
    assert r["l1_current_demand"] == pytest.approx(11.0)
    assert r["max_l1_current_demand"] == pytest.approx(20.0)
    assert r["neutral_current_demand"] == pytest.approx(11.0)
    clock.now += 5.0  # within a block: demand moves only at block ends
    assert model.readings()["l1_current_demand"] == pytest.approx(11.0)
    clock.now += 3600.0  # a long quiet hour
    r = model.readings()
    assert r["l1_current_demand"] == pytest.approx(2.0)
    assert r["max_l1_current_demand"] == pytest.approx(20.0)
    assert r["total_power_demand"] == pytest.approx(r["total_power"], rel=0.03)


# --------------------------------------------------------------------------- over Modbus RTU


def blocks_of(register_map: RegisterMap) -> list[tuple[int, int]]:
    """Group the map into reads of at most the meter's 80 registers (gaps up to 16)."""
    blocks: list[tuple[int, int]] = []
    for spec in register_map.input:
        if blocks:
            start, count = blocks[-1]
            end = spec.address + 2
            if end - start <= register_map.max_registers_per_request and (
                spec.address - (start + count) <= 16
            ):
                blocks[-1] = (start, end - start)
                continue
        blocks.append((spec.address, 2))
    return blocks


async def read_all(client: AsyncModbusSerialClient, register_map: RegisterMap) -> dict[str, float]:
    registers: dict[int, int] = {}
    for start, count in blocks_of(register_map):
        reply = await client.read_input_registers(start, count=count, device_id=1)
        assert not reply.isError(), reply
        registers.update(zip(range(start, start + count), reply.registers, strict=True))
    values: dict[str, float] = {}
    for spec in register_map.input:
        words = [registers[spec.address], registers[spec.address + 1]]
        value = client.convert_from_registers(words, client.DATATYPE.FLOAT32, word_order="big")
        assert isinstance(value, float)
        values[spec.name] = value
    return values


@pytest.fixture
async def meter() -> AsyncIterator[MeterSim]:
    model = MeterModel(demand_period=0.4, demand_slide=0.1, seed=11)
    async with MeterSim(model, baud=38400) as sim:
        yield sim


@pytest.fixture
async def client(meter: MeterSim) -> AsyncIterator[AsyncModbusSerialClient]:
    modbus = AsyncModbusSerialClient(meter.port, baudrate=38400, timeout=0.5, retries=0)
    assert await modbus.connect()
    yield modbus
    modbus.close()


async def test_client_reads_values_consistent_with_the_loads(
    meter: MeterSim, client: AsyncModbusSerialClient
) -> None:
    register_map = meter.register_map
    led, heater = Load(8.0, pf=0.95, h3=0.6), Load(4.0)
    motor = Load(6.0, pf=0.8)
    psu = Load(5.0, pf=0.98, leading=True, h3=0.4)
    meter.set_phase_loads([led, heater], [motor], [psu])
    r = await read_all(client, register_map)

    # Phase current: RMS of the phasor sum per harmonic order.
    l1_fund = fundamental(8.0, 0.95, h3=0.6) + 4.0
    l1_h3 = 8.0 / math.sqrt(1.36) * 0.6
    l3_fund = fundamental(5.0, 0.98, leading=True, h3=0.4)
    l3_h3 = 5.0 / math.sqrt(1.16) * 0.4
    assert r["l1_current"] == pytest.approx(math.hypot(abs(l1_fund), l1_h3), rel=1e-5)
    assert r["l2_current"] == pytest.approx(6.0, rel=1e-5)
    assert r["l3_current"] == pytest.approx(math.hypot(abs(l3_fund), l3_h3), rel=1e-5)

    # Neutral: fundamentals rotated by -120° per phase; 3rd harmonics all in phase.
    rot = cmath.rect(1, -2 * math.pi / 3)
    n_fund = l1_fund + fundamental(6.0, 0.8) * rot + l3_fund * rot**2
    assert r["neutral_current"] == pytest.approx(math.hypot(abs(n_fund), l1_h3 + l3_h3), rel=1e-5)

    # Powers agree with the voltages read in the same reply.
    for n, fund, current in ((1, l1_fund, r["l1_current"]), (3, l3_fund, r["l3_current"])):
        volts = r[f"l{n}_voltage"]
        assert r[f"l{n}_power"] == pytest.approx(volts * fund.real, rel=1e-5)
        assert r[f"l{n}_reactive_power"] == pytest.approx(-volts * fund.imag, rel=1e-4)
        assert r[f"l{n}_apparent_power"] == pytest.approx(volts * current, rel=1e-5)
        assert r[f"l{n}_power_factor"] == pytest.approx(volts * fund.real / (volts * current))
    assert r["l3_reactive_power"] < 0 < r["l2_reactive_power"]
    total = r["l1_power"] + r["l2_power"] + r["l3_power"]
    assert r["total_power"] == pytest.approx(total, rel=1e-5)
    assert r["total_power_factor"] == pytest.approx(total / r["total_apparent_power"], rel=1e-5)
    for name in ("l1_voltage", "l2_voltage", "l3_voltage"):
        assert 220.0 < r[name] < 240.0
    for name in ("l1_l2_voltage", "l2_l3_voltage", "l3_l1_voltage"):
        assert r[name] == pytest.approx(SQRT3 * r["average_voltage_ln"], rel=0.02)
    assert 49.9 < r["frequency"] < 50.1

    # Demand over the 0.4 s window catches up with the steady load; max demand holds.
    await asyncio.sleep(0.6)
    r = await read_all(client, register_map)
    assert r["l1_current_demand"] == pytest.approx(r["l1_current"], rel=1e-3)
    assert r["neutral_current_demand"] == pytest.approx(r["neutral_current"], rel=1e-3)
    assert r["total_power_demand"] == pytest.approx(r["total_power"], rel=0.02)
    assert r["total_va_demand"] == pytest.approx(r["total_apparent_power"], rel=0.02)
    meter.set_phase_loads([], [motor], [])
    await asyncio.sleep(0.6)
    r = await read_all(client, register_map)
    assert r["l1_current_demand"] == pytest.approx(0.0, abs=1e-6)
    assert r["max_l1_current_demand"] == pytest.approx(math.hypot(abs(l1_fund), l1_h3), rel=1e-3)
    assert r["max_total_power_demand"] > r["total_power_demand"]


async def test_energy_increases_with_time_and_resets_after_power_loss(
    meter: MeterSim, client: AsyncModbusSerialClient
) -> None:
    meter.set_phase_loads([Load(40.0)], [Load(40.0)], [Load(40.0, pf=0.5)])
    first = await read_all(client, meter.register_map)
    started = time.monotonic()
    await asyncio.sleep(1.0)
    second = await read_all(client, meter.register_map)
    elapsed = time.monotonic() - started
    gained = second["import_energy"] - first["import_energy"]
    expected = first["total_power"] * elapsed / 3.6e6
    assert gained == pytest.approx(expected, rel=0.15)
    assert second["import_reactive_energy"] > first["import_reactive_energy"] > 0

    meter.power_loss()
    after = await read_all(client, meter.register_map)
    # Counting restarts from zero: only the few ms since the reset are left.
    assert after["import_energy"] < 0.05 * second["import_energy"]
    assert after["max_total_power_demand"] == 0.0
    await asyncio.sleep(0.2)
    later = await read_all(client, meter.register_map)
    assert later["import_energy"] > after["import_energy"]


async def test_offline_meter_does_not_answer(
    meter: MeterSim, client: AsyncModbusSerialClient
) -> None:
    meter.set_phase_loads([Load(3.0)], [], [])
    meter.offline = True
    with pytest.raises(ModbusIOException):
        await client.read_input_registers(0x06, count=2, device_id=1)
    meter.offline = False
    reply = await client.read_input_registers(0x06, count=2, device_id=1)
    value = client.convert_from_registers(reply.registers, client.DATATYPE.FLOAT32)
    assert value == pytest.approx(3.0)

    # A power loss with an outage: silent for a while, then back with zeroed energy.
    meter.power_loss(outage=0.5)
    with pytest.raises(ModbusIOException):
        await client.read_input_registers(0x48, count=2, device_id=1)
    await asyncio.sleep(0.3)
    reply = await client.read_input_registers(0x48, count=2, device_id=1)
    assert not reply.isError()


async def test_meter_ignores_other_device_ids_and_rejects_long_reads(
    meter: MeterSim, client: AsyncModbusSerialClient
) -> None:
    with pytest.raises(ModbusIOException):  # another meter's address: silence, not an error
        await client.read_input_registers(0x00, count=2, device_id=7)
    reply = await client.read_input_registers(0x00, count=82, device_id=1)
    assert reply.isError()  # the SDM630 serves at most 80 registers per request
    reply = await client.read_input_registers(0x200, count=2, device_id=1)
    assert reply.isError()  # outside the map


async def test_link_timing_is_that_of_the_baud_rate() -> None:
    model = MeterModel()
    async with MeterSim(model, baud=9600, turnaround=0.005) as sim:
        modbus = AsyncModbusSerialClient(sim.port, baudrate=9600, timeout=2, retries=0)
        assert await modbus.connect()
        started = time.monotonic()
        reply = await modbus.read_input_registers(0x00, count=80, device_id=1)
        elapsed = time.monotonic() - started
        modbus.close()
    assert not reply.isError()
    # 8-byte request + 165-byte reply at 10 bits per byte, plus 5 ms turnaround.
    expected = (8 + 5 + 2 * 80) * 10 / 9600 + 0.005
    assert expected * 0.97 <= elapsed <= expected + 0.08


async def test_metersim_process_serves_and_exits_on_sigterm(tmp_path: Path) -> None:
    control = tmp_path / "meter.ctl"
    command = [sys.executable, "-m", "tools.virtual.metersim", "--baud", "38400"]
    command += ["--load", "L2:12.5:0.9", "--control", str(control)]
    proc = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 10))
        modbus = AsyncModbusSerialClient(info["port"], baudrate=38400, timeout=1, retries=0)
        assert await modbus.connect()
        reply = await modbus.read_input_registers(0x08, count=2, device_id=1)
        current = modbus.convert_from_registers(reply.registers, modbus.DATATYPE.FLOAT32)
        assert current == pytest.approx(12.5)
        reply = await modbus.read_input_registers(0x06, count=2, device_id=1)
        assert modbus.convert_from_registers(reply.registers, modbus.DATATYPE.FLOAT32) == 0.0
        modbus.close()
        # Runtime control: the scenario moves the load to L1.
        await control_request(str(control), {"op": "loads", "l1": [{"current": 7.0}]})
        readings = (await control_request(str(control), {"op": "readings"}))["readings"]
        assert readings["l1_current"] == pytest.approx(7.0)
        assert readings["l2_current"] == 0.0
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not control.exists()
    assert not Path(info["port"]).exists()


async def test_bit_errors_on_the_meter_link_break_frames_not_values(
    meter: MeterSim, client: AsyncModbusSerialClient
) -> None:
    meter.set_phase_loads([Load(9.0)], [], [])
    meter.link.set_faults(ber=0.02)  # ~80 % of 10-byte frames hit: CRC catches them
    failures = 0
    for _ in range(4):
        try:
            reply = await client.read_input_registers(0x06, count=2, device_id=1)
        except ModbusIOException:
            failures += 1
            continue
        if reply.isError():
            failures += 1
            continue
        value = client.convert_from_registers(reply.registers, client.DATATYPE.FLOAT32)
        assert value == pytest.approx(9.0)  # whatever gets through is right
    assert failures >= 2
    assert meter.link.stats().bit_errors > 0
    meter.link.set_faults(ber=0.0)
    # pymodbus drops the connection after 3 unanswered requests in a row: open it again.
    client.close()
    assert await client.connect()
    reply = await client.read_input_registers(0x06, count=2, device_id=1)
    assert client.convert_from_registers(reply.registers, client.DATATYPE.FLOAT32) == 9.0
