"""Bus master through the real stack: pyserial on the virtual bus's pty, the virtual bus with
real byte timing, and group boards running the real firmware on MicroPython."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from host.busmaster import BusMaster, CycleSettings
from host.transport import SerialTransport
from tests.busrecorder import Recorder
from tools.vboard import VirtualBoard
from tools.vbus import VirtualBus


async def until(predicate, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"timed out: {what}")
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_discovery_reports_and_unplug(tmp_path: Path) -> None:
    async with VirtualBus(115200, socket_path=str(tmp_path / "bus.sock")) as bus:
        port = bus.add_pty_endpoint("master")
        boards = [
            VirtualBoard(g, bus_socket=bus.socket_path, workdir=tmp_path, group=g) for g in "ABC"
        ]
        for board in boards:
            await board.start()
        recorder = Recorder()
        transport = SerialTransport(port, 115200)
        master = BusMaster(transport.write, recorder, CycleSettings(guard_us=2500))
        transport.on_data = master.feed
        await transport.open()
        task = asyncio.create_task(master.run())
        try:
            await until(lambda: len(recorder.infos) == 3, 15, "three boards discovered")
            groups = sorted(info.group for info in recorder.infos.values())
            assert groups == ["A", "B", "C"]
            assert sorted(master.boards) == [1, 2, 3]

            await boards[1].set_load(5, "resistive", 12.0)
            by_group = {info.group: addr for addr, info in recorder.infos.items()}
            b = by_group["B"]

            def b_reads_12a() -> bool:
                rows = recorder.reports.get(b)
                return bool(rows) and abs(rows[-1][1].centiamps[4] - 1200) <= 12

            await until(b_reads_12a, 5, "board B channel 5 reads 12 A in its REPORT")

            def b_telemetry_12a() -> bool:
                rows = recorder.telemetries.get(b)
                return bool(rows) and abs(rows[-1][1].centiamps[4] - 1200) <= 12

            await until(b_telemetry_12a, 5, "TELEMETRY in the detail slot shows 12 A")

            # Unplug board A: offline within 1 s, others keep reporting; back after replug.
            a = by_group["A"]
            c = by_group["C"]
            bus.unplug(boards[0].uid)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            await until(lambda: a in recorder.offline, 2, "A offline")
            assert loop.time() - t0 <= 1.0
            before = len(recorder.reports[c])
            await asyncio.sleep(0.5)
            assert len(recorder.reports[c]) > before + 5
            bus.plug(boards[0].uid)
            t1 = loop.time()
            await until(lambda: recorder.online.count(a) >= 2, 2, "A online again")
            assert loop.time() - t1 <= 1.0
        finally:
            master.stop()
            task.cancel()
            await transport.close()
            for board in boards:
                await board.stop()
