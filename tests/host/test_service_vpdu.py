"""The aggregator service through the real stack against a virtual smartPDU 48 (4 boards with
the real firmware, the mains status node, the Modbus meter simulator): the unit model matches
the scenario; Emergency Stop and loss of Neutral are recorded with the right cause and a black
box; a meter that stops answering is shown stale, never live."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from host.config import default_config
from host.service import Service
from host.state import Freshness
from tools.virtual.vpdu import VirtualPdu


async def until(predicate, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"timed out: {what}")
        await asyncio.sleep(0.1)


@pytest.fixture
async def unit(tmp_path: Path) -> AsyncIterator[tuple[VirtualPdu, Service]]:
    pdu = VirtualPdu("rehearsal", tmp_path / "vpdu", timeline=False)
    await pdu.start()
    config = default_config(
        unit={"model": pdu.scenario.model},
        bus={"port": pdu.ports.master, "baud": pdu.baud},
        meter={
            "port": pdu.ports.meter,
            "baud": pdu.meter_baud,
            "poll_s": 0.5,
            "stale_after_s": 2,
            "offline_after_s": 4,
        },
        storage={"var_dir": str(tmp_path), "database": str(tmp_path / "unit.db")},
    )
    service = Service(config)
    task = asyncio.create_task(service.run())
    try:
        await asyncio.wait_for(service.ready.wait(), 30)
        yield pdu, service
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await pdu.stop()


@pytest.mark.slow
async def test_model_matches_scenario_and_trip_causes(
    unit: tuple[VirtualPdu, Service],
) -> None:
    pdu, service = unit
    assert service.parts is not None
    state, storage = service.parts.state, service.parts.storage

    def boards_online() -> bool:
        snap = state.snapshot()
        return all(g.board is not None and g.board.online for g in snap.groups)

    await until(boards_online, 30, "every group board online")

    def mismatches() -> list[str]:
        snap = state.snapshot()
        out = []
        for ch in snap.iter_channels():
            want = pdu.expected_channel_amps(ch.group, ch.number)
            # Audio amplifiers draw with the programme: only their level is known.
            audio = pdu.channel_load(ch.group, ch.number).kind == "audio"
            tolerance = max((0.25 if audio else 0.01) * want, 0.05)
            if ch.current_a is None or abs(ch.current_a - want) > tolerance:
                out.append(f"{ch.id}: {ch.current_a} A, scenario {want:.2f} A")
        return out

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while mismatches() and loop.time() < deadline:
        await asyncio.sleep(0.2)
    assert not mismatches(), "channels off the scenario by more than 1 %"

    def meter_live() -> bool:
        reading = state.snapshot().meter.get("l1_current")
        return reading is not None and reading.freshness is Freshness.LIVE

    await until(meter_live, 20, "meter live")
    snap = state.snapshot()
    for phase in ("L1", "L2", "L3"):
        reading = snap.meter.get(f"{phase.lower()}_current")
        assert reading is not None and reading.value is not None
        assert reading.value == pytest.approx(pdu.expected_phase_amps(phase), rel=0.03)

    # Emergency Stop: the trip is recorded with its cause and a black box.
    await pdu.estop(True)

    async def trip_event(cause: str) -> None:
        for _ in range(100):
            events = await storage.events(50, kinds=["breaker.tripped"])
            for event in events:
                if event.data.get("cause") == cause:
                    box = await storage.black_box(event.id)
                    assert box is not None and box, "trip saved without its black box"
                    return
            await asyncio.sleep(0.2)
        pytest.fail(f"no breaker.tripped event with cause {cause}")

    await trip_event("emergency_stop")
    await pdu.estop(False)
    await asyncio.sleep(2)
    await pdu.neutral_lost(True)
    await trip_event("neutral_lost")
    await pdu.neutral_lost(False)

    # A meter that stops answering: stale, then offline — never shown as live.
    pdu.meter_offline(True)

    def meter_not_live() -> bool:
        reading = state.snapshot().meter.get("l1_current")
        return reading is not None and reading.freshness in (Freshness.STALE, Freshness.OFFLINE)

    await until(meter_not_live, 10, "meter stale")
    pdu.meter_offline(False)
    await until(meter_live, 15, "meter live again")
