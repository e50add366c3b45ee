"""The supervisor and the watchdog of the running firmware (``firmware/app.py``), on the unix
port with the sim board: faults are injected with the debug console's ``fault`` command
(``firmware/debug.py``), which replaces one driver method on its instance, so the tasks' own
code is what runs. Everything is checked through what a person or the aggregator sees: the
console log, the ``errors`` counters, the TELEMETRY flags and readings on the bus, the front
panel.

- A task that raises is logged (traceback + ``smartPDU: task X crashed (n), restarting``),
  counted, flagged (``F_TASK_RESTARTED``) and restarted; sampling, the bus and the panel go
  on and the watchdog keeps being fed.
- A task that stops making progress stops the feeding; the sim watchdog then resets the board
  (the process ends with SIGKILL after ``smartPDU: WATCHDOG RESET``), as an RP2040's would;
  started again, the board reports ``F_WATCHDOG_RESET``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import signal
from pathlib import Path

import pytest

from protocol import consts as C
from protocol.errors import FrameError
from protocol.framing import FrameReader
from protocol.messages import Assign, Message, Poll, Telemetry, encode, message_from_reader
from tools.virtual.vboard import VirtualBoard, led_colour_name
from tools.virtual.vbus import VirtualBus

ADDRESS = 7
WDT_TIMEOUT_S = 5.0  # firmware/app.py _WDT_TIMEOUT_MS
STALL_S = 2.0  # _TASK_STALL_MS


class Master:
    """The aggregator's side of the virtual bus: a plain endpoint that asks and waits."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.answers: list[Message] = []
        self._seq = 10
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.open_unix_connection(self.path)
        self._writer.write(b"@vbus master\n")
        self._task = asyncio.create_task(self._receive())

    async def _receive(self) -> None:
        assert self._reader is not None
        frames = FrameReader()
        while data := await self._reader.read(4096):
            i = 0
            while i < len(data):
                i = frames.feed(data, i, len(data))
                if frames.ready:
                    with contextlib.suppress(FrameError):
                        frames.decode()
                        self.answers.append(message_from_reader(frames))

    async def ask(self, message: Message, timeout: float = 2.0) -> Message:
        assert self._writer is not None
        self._seq = self._seq % 250 + 10
        message.seq = self._seq
        self._writer.write(b"\x00" + encode(message))
        await self._writer.drain()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            for answer in self.answers:
                if answer.seq == message.seq:
                    self.answers.remove(answer)
                    return answer
            await asyncio.sleep(0.005)
        pytest.fail(f"no answer to {message.NAME} seq {message.seq}")

    async def telemetry(self) -> Telemetry:
        answer = await self.ask(Poll(C.T_TELEMETRY, dst=ADDRESS))
        assert isinstance(answer, Telemetry), answer
        return answer

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._writer is not None:
            self._writer.close()


async def command(board: VirtualBoard, line: str, expect: str, timeout: float = 3.0) -> str:
    """Type ``line`` on the console; return the output once ``expect`` (a regex) shows."""
    board.log.clear()
    await board.console(line)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        text = "\n".join(board.log)
        if re.search(expect, text):
            await asyncio.sleep(0.05)  # the rest of a multi-line answer
            return "\n".join(board.log)
        await asyncio.sleep(0.02)
    pytest.fail(f"{line!r}: no {expect!r} in console output:\n" + "\n".join(board.log))


async def wait_log(board: VirtualBoard, pattern: str, timeout: float) -> str:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        for text in board.log:
            if re.search(pattern, text):
                return text
        await asyncio.sleep(0.02)
    pytest.fail(f"{pattern!r} never appeared; console:\n" + "\n".join(board.log[-20:]))


async def wait_panel(board: VirtualBoard, predicate, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (board.state.leds and predicate(board.state)):  # leds: a state line came
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for {what}; panel: {board.state.raw}")
        await asyncio.sleep(0.02)


def counters(errors_output: str) -> dict[str, int]:
    """``errors`` console output -> {"sample": crashes, ..., "feeds": watchdog feeds}."""
    found = {m[1]: int(m[2]) for m in re.finditer(r"task (\w+)\s+crashes (\d+)", errors_output)}
    feeds = re.search(r"watchdog: feeds (\d+)", errors_output)
    assert feeds is not None, errors_output
    found["feeds"] = int(feeds[1])
    return found


async def started_board(tmp_path: Path, bus: VirtualBus, master: Master) -> VirtualBoard:
    board = VirtualBoard("A", bus_socket=bus.socket_path, workdir=tmp_path, uid="sup-A")
    await board.start()
    await master.connect()
    uid = hashlib.sha256(b"sup-A").digest()[:8]
    assert (await master.ask(Assign(uid, ADDRESS))).NAME == "Ack"
    return board


@pytest.mark.slow
async def test_crashing_tasks_are_logged_counted_and_restarted(tmp_path: Path) -> None:
    async with VirtualBus(115200, socket_path=tmp_path / "bus.sock") as bus:
        master = Master(bus.socket_path)
        board = await started_board(tmp_path, bus, master)
        try:
            await board.set_load(2, "resistive", 5.0)
            await wait_panel(board, lambda s: led_colour_name(s.leds[1]) == "green", 5, "green")
            before = counters(await command(board, "errors", r"watchdog: feeds"))
            assert before["sample"] == before["bus"] == before["panel"] == 0
            assert not (await master.telemetry()).flags & C.F_TASK_RESTARTED

            # The sample task's ADC read raises once.
            await board.console("fault sample")
            await wait_log(board, r"InjectedFault: injected fault in sample", 3)
            await wait_log(board, r"smartPDU: task sample crashed \(1\), restarting", 3)
            # It measures again: a new load shows on the bus and on the panel.
            windows = (await master.telemetry()).windows
            await board.set_load(2, "resistive", 9.0)
            await asyncio.sleep(1.0)
            tm = await master.telemetry()
            assert tm.flags & C.F_TASK_RESTARTED
            assert (tm.windows - windows) % 65536 >= 3  # windows of 200 ms: sampling goes on
            assert tm.centiamps[1] == pytest.approx(900, abs=15)
            await board.press(2)
            await wait_panel(board, lambda s: s.display.strip() in ("8.9", "9.0", "9.1"), 3, "9 A")

            # The bus and panel tasks crash once each and come back.
            await board.console("fault bus")
            await wait_log(board, r"smartPDU: task bus crashed \(1\), restarting", 3)
            await board.console("fault panel")
            await wait_log(board, r"smartPDU: task panel crashed \(1\), restarting", 3)
            assert (await master.telemetry()).centiamps[1] == pytest.approx(900, abs=15)
            await asyncio.sleep(0.5)  # a press within the 200 ms restart pause goes unseen
            await board.press(2)  # deselect: the panel task reads buttons again
            await wait_panel(board, lambda s: led_colour_name(s.leds[1]) == "green", 3, "green")

            after = counters(await command(board, "errors", r"watchdog: feeds"))
            assert (after["sample"], after["bus"], after["panel"]) == (1, 1, 1)
            assert "last error: panel: InjectedFault" in "\n".join(board.log)
            await asyncio.sleep(1.2)  # the watchdog is fed every 500 ms all along
            later = counters(await command(board, "errors", r"watchdog: feeds"))
            assert later["feeds"] >= after["feeds"] + 2 > before["feeds"] + 2
            assert board.process is not None and board.process.returncode is None
        finally:
            await master.close()
            await board.stop()


@pytest.mark.slow
async def test_a_stalled_task_starves_the_watchdog_which_resets_the_board(tmp_path: Path) -> None:
    async with VirtualBus(115200, socket_path=tmp_path / "bus.sock") as bus:
        master = Master(bus.socket_path)
        board = await started_board(tmp_path, bus, master)
        try:
            feeds = counters(await command(board, "errors", r"watchdog: feeds"))["feeds"]
            assert feeds > 0
            # The ADC stops delivering: the sample task waits forever, the rest runs on.
            loop = asyncio.get_running_loop()
            await command(board, "fault sample stall", r"fault armed: sample stall")
            armed = loop.time()
            await wait_log(board, r"smartPDU: task sample stalled: watchdog no longer fed", 4)
            stalled = loop.time()
            assert STALL_S - 0.6 <= stalled - armed <= STALL_S + 1.5
            # Still answering on the bus and the console, but no longer feeding.
            windows = (await master.telemetry()).windows
            fed = counters(await command(board, "errors", r"watchdog: feeds"))["feeds"]
            await asyncio.sleep(1.0)
            assert (await master.telemetry()).windows == windows  # nothing measured
            assert counters(await command(board, "errors", r"watchdog: feeds"))["feeds"] == fed
            # The watchdog resets the board WDT_TIMEOUT_S after the last feed.
            await wait_log(board, r"smartPDU: WATCHDOG RESET: not fed for 5\d\d\d ms", 6)
            assert board.process is not None
            assert await asyncio.wait_for(board.process.wait(), 3) == -signal.SIGKILL
            # Lower bound from the arming (a late console line only delays `stalled`, which
            # would shorten the interval seen here); the board's own "5xxx ms" is checked above
            reset_at = loop.time()
            assert reset_at - armed >= STALL_S - 0.6 + WDT_TIMEOUT_S - 0.5
            assert reset_at - stalled <= WDT_TIMEOUT_S + 2.5
            await board.stop()

            # Powered up again (same flash), it says why it restarted, on the console and in
            # TELEMETRY, until its next reset; and it measures again.
            board = VirtualBoard("A", bus_socket=bus.socket_path, workdir=tmp_path, uid="sup-A")
            await board.start()
            assert "smartPDU: the watchdog reset the board" in board.log
            await asyncio.sleep(0.5)
            tm = await master.telemetry()
            assert tm.flags & C.F_WATCHDOG_RESET and not tm.flags & C.F_TASK_RESTARTED
            await asyncio.sleep(0.5)
            assert (await master.telemetry()).windows > tm.windows
            await board.stop()
            board = VirtualBoard("A", bus_socket=bus.socket_path, workdir=tmp_path, uid="sup-A")
            await board.start()
            await asyncio.sleep(0.3)
            assert not (await master.telemetry()).flags & C.F_WATCHDOG_RESET
        finally:
            await master.close()
            await board.stop()


@pytest.mark.slow
async def test_a_task_spinning_without_yielding_gets_the_board_reset(tmp_path: Path) -> None:
    # Everything stops (the console too): only the watchdog, hardware, still acts.
    async with VirtualBoard("A", bus_socket=None, workdir=tmp_path) as board:
        await command(board, "errors", r"watchdog: feeds")
        loop = asyncio.get_running_loop()
        await board.console("fault panel spin")
        await wait_log(board, r"fault armed: panel spin", 3)
        spinning = loop.time()
        await wait_log(board, r"smartPDU: WATCHDOG RESET", WDT_TIMEOUT_S + 3)
        assert board.process is not None
        assert await asyncio.wait_for(board.process.wait(), 3) == -signal.SIGKILL
        assert loop.time() - spinning <= WDT_TIMEOUT_S + 2.5
