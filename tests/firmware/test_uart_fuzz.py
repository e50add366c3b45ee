"""More than 10^4 random and corrupted frames into the running firmware's UART (the sim
board's bus socket): the board keeps sampling, never answers a frame not addressed to it, and
NAKs bad requests addressed to it."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
from pathlib import Path

import pytest

from protocol import consts as C
from protocol.crc import crc32
from protocol.errors import FrameError
from protocol.framing import FrameReader, cobs_encode_into
from protocol.messages import (
    Assign,
    ConfigSet,
    GetInfo,
    Info,
    Message,
    Nak,
    Poll,
    Report,
    Sync,
    Telemetry,
    encode,
    message_from_reader,
)
from tools.virtual.vboard import VirtualBoard

ADDRESS = 9
UID_NAME = "fuzz-A"


def raw_frame(header_and_payload: bytes) -> bytes:
    body = header_and_payload + crc32(header_and_payload).to_bytes(4, "little")
    out = bytearray(len(body) + 2)
    n = cobs_encode_into(body, len(body), out)
    return bytes(out[:n]) + b"\x00"


class Line:
    """The bus side of the board's UART: a UNIX socket the board connects to."""

    def __init__(self) -> None:
        self.reader = FrameReader()
        self.frames: list[Message] = []
        self.bad = 0
        self.stream: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.connected = asyncio.Event()

    async def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hello = await reader.readline()  # "@vbus <name> timed": records both ways
        assert hello.startswith(b"@vbus ") and hello.split()[-1] == b"timed"
        self.stream, self.writer = reader, writer
        self.connected.set()
        with contextlib.suppress(asyncio.IncompleteReadError):
            while True:
                head = await reader.readexactly(10)
                data = await reader.readexactly(int.from_bytes(head[:2], "little"))
                i = 0
                while i < len(data):
                    i = self.reader.feed(data, i, len(data))
                    if self.reader.ready:
                        try:
                            self.reader.decode()
                            self.frames.append(message_from_reader(self.reader))
                        except FrameError:
                            self.bad += 1

    async def send(self, wire: bytes) -> None:
        # One record: length, the line time its last byte ended (now), the bytes.
        assert self.writer is not None
        stamp = time.monotonic_ns() // 1000
        self.writer.write(len(wire).to_bytes(2, "little") + stamp.to_bytes(8, "little") + wire)
        await self.writer.drain()

    async def answer(self, seq: int, timeout: float = 2.0) -> Message:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            for frame in self.frames:
                if frame.seq == seq:
                    self.frames.remove(frame)
                    return frame
            await asyncio.sleep(0.002)
        pytest.fail(f"no answer to seq {seq}; got {self.frames[-3:]}")


def corrupted(wire: bytes, rng: random.Random) -> bytes:
    data = bytearray(wire[:-1])
    kind = rng.randrange(4)
    if kind == 0:
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif kind == 1:
        del data[rng.randrange(1, len(data)) :]
    elif kind == 2:
        data.insert(rng.randrange(len(data) + 1), rng.randrange(1, 256))
    else:
        data = bytearray(rng.randrange(1, 256) for _ in range(rng.randint(1, 60)))
    return bytes(b for b in data if b) + b"\x00"


@pytest.mark.slow
async def test_ten_thousand_frames_into_the_uart(tmp_path: Path) -> None:
    line = Line()
    bus_path = str(tmp_path / "bus.sock")
    server = await asyncio.start_unix_server(line.accept, bus_path)
    board = VirtualBoard("A", bus_socket=bus_path, workdir=tmp_path, group="A", uid=UID_NAME)
    rng = random.Random(20261123)
    try:
        await board.start()
        await asyncio.wait_for(line.connected.wait(), 10)
        await board.set_load(4, "resistive", 6.0)
        uid = hashlib.sha256(UID_NAME.encode()).digest()[:8]
        await line.send(b"\x00" + encode(Assign(uid, ADDRESS, seq=1)))
        assert (await line.answer(1)).NAME == "Ack"

        others = [
            encode(Poll(C.T_TELEMETRY, dst=5, seq=2)),
            encode(GetInfo(dst=7, seq=3)),
            encode(ConfigSet(C.K_RATING, 0, 1000, dst=8, seq=4)),
            encode(Report([100] * 12, [0] * 12, src=3, seq=5)),
            encode(Sync(1, 5000, 4000, 20, 0b111, 0, seq=6)),  # slots for 20..22 only
        ]
        mine = [
            encode(Poll(C.T_REPORT, dst=ADDRESS)),
            encode(GetInfo(dst=ADDRESS)),
        ]
        sent = answered = naks = 0
        seq = 10
        windows_before = None
        while sent < 10_500:
            choice = rng.random()
            if choice < 0.45:
                wire = corrupted(rng.choice(others + mine), rng)
                await line.send(wire)
            elif choice < 0.85:
                await line.send(rng.choice(others))
            else:
                seq = (seq + 1) % 256 or 10
                kind = rng.randrange(5)
                if kind == 0:  # a good request: answered with data
                    await line.send(encode(Poll(C.T_TELEMETRY, dst=ADDRESS, seq=seq)))
                    answer = await line.answer(seq)
                    assert isinstance(answer, Telemetry)
                    if windows_before is None:
                        windows_before = answer.windows
                else:  # bad requests addressed to it, with a valid CRC: NAK with the reason
                    header = bytes([C.VERSION, ADDRESS, C.ADDR_MASTER])
                    wire, code = (
                        (raw_frame(bytes([2, ADDRESS, 0, C.T_GET_INFO, seq])), C.E_BAD_VERSION),
                        (raw_frame(header + bytes([0x66, seq])), C.E_UNKNOWN_TYPE),
                        (raw_frame(header + bytes([C.T_POLL, seq, 1, 2])), C.E_BAD_LENGTH),
                        (
                            raw_frame(header + bytes([C.T_CONFIG_SET, seq, C.K_RATING, 0, 1, 0])),
                            C.E_BAD_VALUE,
                        ),  # a rating of 0.01 A is out of range
                    )[kind - 1]
                    await line.send(wire)
                    answer = await line.answer(seq)
                    assert isinstance(answer, Nak) and answer.error == code, answer
                    naks += 1
                answered += 1
            sent += 1
            if sent % 200 == 0:
                await asyncio.sleep(0.01)  # let the board drain its UART like a real line
        await asyncio.sleep(0.5)
        # Nothing else came back: no answer to frames for other boards or corrupted ones.
        assert line.frames == [], line.frames[:5]
        assert naks > 100 and answered > 400
        # It kept sampling all along: its window counter moved and channel 4 reads 6 A.
        await line.send(encode(Poll(C.T_TELEMETRY, dst=ADDRESS, seq=3)))
        final = await line.answer(3)
        assert isinstance(final, Telemetry)
        assert windows_before is not None and (final.windows - windows_before) % 65536 > 20
        assert final.centiamps[3] == pytest.approx(600, abs=6)
        await line.send(encode(GetInfo(dst=ADDRESS, seq=4)))
        info = await line.answer(4)
        assert isinstance(info, Info) and info.group == "A"
    finally:
        await board.stop()
        server.close()
