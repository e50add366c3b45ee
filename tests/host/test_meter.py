"""Meter reader through the real stack: pymodbus client -> pty -> simulated SDM630 (pymodbus
server) with real byte timing; freshness goes stale/offline when the meter stops answering."""

from __future__ import annotations

import asyncio

import pytest

from host.meter import Freshness, MeterReader, MeterReadings, load_profile
from tools.virtual.metersim import Load, MeterModel, MeterSim


def test_profile_blocks_cover_every_register() -> None:
    profile = load_profile("sdm630")
    covered = {r.name for _, _, regs in profile.blocks() for r in regs}
    assert covered == {r.name for r in profile.registers}
    for _, count, _ in profile.blocks():
        assert count <= profile.max_registers_per_request


def test_unknown_profile_is_named() -> None:
    from host.meter import MeterProfileError

    with pytest.raises(MeterProfileError, match=r"meter.profile 'sdm999': no such profile"):
        load_profile("sdm999")


async def test_reads_live_values_then_marks_stale_and_offline() -> None:
    model = MeterModel(seed=1, demand_period=2.0)
    model.set_phase_loads([Load(20.0, pf=0.95)], [Load(10.0)], [Load(5.0, h3=0.3)])
    readings: list[MeterReadings] = []
    changes: list[Freshness] = []
    async with MeterSim(model, baud=38400) as meter:
        reader = MeterReader(
            meter.port,
            baud=38400,
            poll_s=0.2,
            stale_after_s=0.6,
            offline_after_s=1.2,
            timeout_s=0.3,
            on_readings=readings.append,
            on_freshness=changes.append,
        )
        task = asyncio.create_task(reader.run())
        try:
            for _ in range(100):
                if readings:
                    break
                await asyncio.sleep(0.05)
            assert readings, "no reading from the meter"
            values = readings[-1].values
            assert values["l1_current"] == pytest.approx(20.0, rel=0.02)
            assert values["l2_current"] == pytest.approx(10.0, rel=0.02)
            assert 200 < values["l1_voltage"] < 260
            assert 49.5 < values["frequency"] < 50.5
            assert values["neutral_current"] > 1.0  # 3rd harmonic of L3 adds in N
            assert reader.freshness is Freshness.LIVE
            meter.offline = True
            for _ in range(60):
                if Freshness.OFFLINE in changes:
                    break
                await asyncio.sleep(0.1)
            assert changes[-2:] == [Freshness.STALE, Freshness.OFFLINE]
            meter.offline = False
            for _ in range(80):
                if reader.freshness is Freshness.LIVE:
                    break
                await asyncio.sleep(0.1)
            assert reader.freshness is Freshness.LIVE
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


async def test_a_short_answer_loses_that_read_not_the_reader() -> None:
    # A frame whose CRC passed but which carries fewer registers than asked for (seen once
    # under load): before, decode_float32 raised IndexError and ended the meter task.
    class ShortAnswer:
        registers = [0x4366, 0x0000]  # two registers where a block of many was asked for

        def isError(self) -> bool:  # pymodbus's name
            return False

    class Client:
        async def read_input_registers(self, start: int, count: int, device_id: int) -> object:
            return ShortAnswer()

    reader = MeterReader("/dev/null", baud=9600)
    reader._client = Client()  # type: ignore[assignment]  # pyright: ignore[reportPrivateUsage]
    assert await reader.read_once() is None
