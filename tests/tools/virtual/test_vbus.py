"""The virtual RS-485 bus, driven through real pseudo-terminals (pyserial) and UNIX sockets."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial

from tests.mpy import micropython_command
from tools.virtual.vbus import HELLO_PREFIX, VirtualBus, control_request

REPO_ROOT = Path(__file__).resolve().parents[3]


# --------------------------------------------------------------------------- helpers


def _read_timed(port: serial.Serial, count: int, timeout: float) -> list[tuple[float, bytes]]:
    """Read ``count`` bytes (blocking, in a worker thread), stamping each read."""
    reads: list[tuple[float, bytes]] = []
    got = 0
    deadline = time.monotonic() + timeout
    while got < count and time.monotonic() < deadline:
        data = port.read(max(1, min(port.in_waiting, count - got)))
        if data:
            reads.append((time.monotonic(), data))
            got += len(data)
        elif got:
            break  # a quiet line for one port timeout: the transfer is over
    return reads


def _arrival_rate(reads: list[tuple[float, bytes]]) -> float:
    """Bytes per second: least-squares slope of cumulative bytes against arrival time."""
    times: list[float] = []
    totals: list[int] = []
    total = 0
    for stamp, data in reads:
        total += len(data)
        times.append(stamp)
        totals.append(total)
    mean_t = sum(times) / len(times)
    mean_n = sum(totals) / len(totals)
    cov = sum((t - mean_t) * (n - mean_n) for t, n in zip(times, totals, strict=True))
    var = sum((t - mean_t) ** 2 for t in times)
    return cov / var


def _open(path: str, timeout: float = 0.2) -> serial.Serial:
    return serial.Serial(path, baudrate=115200, timeout=timeout)


async def _socket_endpoint(
    bus: VirtualBus, name: str | None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_unix_connection(bus.socket_path)
    if name is not None:
        writer.write(HELLO_PREFIX + name.encode() + b"\n")
        await writer.drain()
        endpoint = name.split()[0]  # "name flag ...": the flags are not part of the name
        for _ in range(100):  # the bus renames the endpoint once it has read the hello
            if endpoint in bus.endpoint_names():
                break
            await asyncio.sleep(0.01)
        assert endpoint in bus.endpoint_names()
    return reader, writer


async def _read_for(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """Everything the socket receives within ``seconds``."""
    got = bytearray()
    deadline = asyncio.get_running_loop().time() + seconds
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        try:
            chunk = await asyncio.wait_for(reader.read(4096), left)
        except TimeoutError:
            break
        if not chunk:
            break
        got += chunk
    return bytes(got)


# --------------------------------------------------------------------------- (a) timing


# Over ~0.7 s each, so a few ms of scheduling noise at either end stays well inside 5 %.
@pytest.mark.parametrize(("baud", "count"), [(115200, 8192), (1_000_000, 65536)])
async def test_byte_timing_matches_baud_rate(baud: int, count: int) -> None:
    async with VirtualBus(baud) as bus:
        sender = _open(bus.add_pty_endpoint("master"))
        receiver = _open(bus.add_pty_endpoint("board"), timeout=0.5)
        payload = random.Random(1).randbytes(count)
        reading = asyncio.create_task(asyncio.to_thread(_read_timed, receiver, count, 15.0))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await asyncio.to_thread(sender.write, payload)
        reads = await reading
        sender.close()
        receiver.close()

    assert b"".join(data for _, data in reads) == payload
    wire_rate = baud / 10  # 8N1: 10 bits per byte
    rate = _arrival_rate(reads)
    elapsed = reads[-1][0] - started
    print(f"{baud} baud: {rate:.0f} B/s ({rate / wire_rate:.4f} of wire), {elapsed:.4f} s total")
    assert rate == pytest.approx(wire_rate, rel=0.05)
    # Never faster than the wire: the whole transfer takes at least count byte-times.
    assert elapsed >= 0.95 * count / wire_rate


# --------------------------------------------------------------------------- (b) collisions


async def test_simultaneous_senders_collide_and_are_garbled() -> None:
    frame_a = bytes(range(0x40, 0x60))  # 32 bytes: 33 ms at 9600 baud
    frame_b = bytes(range(0xA0, 0xC0))
    async with VirtualBus(9600, seed=7) as bus:
        master = _open(bus.add_pty_endpoint("master"))
        monitor = _open(bus.add_pty_endpoint("monitor", listen_only=True), timeout=0.3)
        board_reader, board_writer = await _socket_endpoint(bus, "board-b")

        # Both start within the same millisecond: a collision.
        master.write(frame_a)
        board_writer.write(frame_b)
        await board_writer.drain()
        seen_by_monitor = await asyncio.to_thread(monitor.read, 64)
        seen_by_master = await asyncio.to_thread(master.read, 32)
        seen_by_board = await _read_for(board_reader, 0.3)
        stats = bus.stats()

        assert len(seen_by_monitor) == 64  # every byte that was on the line, none clean
        for frame in (frame_a, frame_b):
            assert frame not in seen_by_monitor
        assert seen_by_master != frame_b and len(seen_by_master) == 32
        assert seen_by_board != frame_a and len(seen_by_board) == 32
        assert stats.collisions >= 1
        assert stats.collided_bytes >= 56  # the frames overlap almost completely
        garbled = sum(a != b for a, b in zip(seen_by_master, frame_b, strict=True))
        assert garbled >= 24

        # The same frame alone on the line arrives intact.
        master.write(frame_a)
        assert await asyncio.to_thread(monitor.read, 32) == frame_a
        assert await _read_for(board_reader, 0.1) == frame_a
        board_writer.close()
        master.close()
        monitor.close()


def _record(data: bytes, at_us: int) -> bytes:
    return len(data).to_bytes(2, "little") + at_us.to_bytes(8, "little") + data


async def _records(reader: asyncio.StreamReader, count: int) -> list[tuple[int, bytes]]:
    out = []
    for _ in range(count):
        head = await asyncio.wait_for(reader.readexactly(10), 5)
        body = await reader.readexactly(int.from_bytes(head[:2], "little"))
        out.append((int.from_bytes(head[2:], "little"), body))
    return out


async def test_timed_endpoints_get_line_time_stamps_and_start_frames_on_time() -> None:
    # Two boards as timed endpoints: frames handed over early start exactly at their line
    # time, back to back without a collision, and every run of bytes arrives stamped with
    # the line time its last byte ended.
    byte_us = 10 * 1e6 / 115200
    async with VirtualBus(115200, seed=3) as bus:
        master = _open(bus.add_pty_endpoint("master"), timeout=0.5)
        a_reader, a_writer = await _socket_endpoint(bus, "a timed")
        b_reader, b_writer = await _socket_endpoint(bus, "b timed")
        assert {"a", "b"} <= set(bus.endpoint_names())
        frame_a, frame_b = bytes(range(1, 33)), bytes(range(101, 133))
        start_us = round(asyncio.get_running_loop().time() * 1e6) + 30_000
        b_start = start_us + round(32 * byte_us)  # right behind a's last stop bit
        b_writer.write(_record(frame_b, b_start))  # handed over first, goes out second
        a_writer.write(_record(frame_a, start_us))
        await asyncio.gather(a_writer.drain(), b_writer.drain())
        assert await asyncio.to_thread(master.read, 64) == frame_a + frame_b
        got = bytearray()
        end_a = 0
        while len(got) < 32:
            end_a, part = (await _records(b_reader, 1))[0]
            got += part
        assert bytes(got) == frame_a
        assert abs(end_a - (start_us + 32 * byte_us)) <= 1
        got_b = bytearray()
        end_b = 0
        while len(got_b) < 32:
            end_b, part = (await _records(a_reader, 1))[0]
            got_b += part
        assert bytes(got_b) == frame_b and abs(end_b - (b_start + 32 * byte_us)) <= 1
        assert bus.stats().collisions == 0

        # A start inside another board's frame is a collision, as on a real line.
        start_us = round(asyncio.get_running_loop().time() * 1e6) + 30_000
        a_writer.write(_record(frame_a, start_us))
        b_writer.write(_record(frame_b, start_us + round(16 * byte_us)))
        await asyncio.gather(a_writer.drain(), b_writer.drain())
        seen = await asyncio.to_thread(master.read, 64)
        assert frame_a not in seen and frame_b not in seen
        assert bus.stats().collisions == 1
        for writer in (a_writer, b_writer):
            writer.close()
        master.close()


async def test_a_timed_board_joining_a_busy_line_gets_only_records() -> None:
    # A board that connects while the line is busy must not get raw bytes before the bus
    # has read its hello: it would take them for record heads and never find its footing.
    # However late the hello is (a loaded machine deschedules a board after its connect()).
    async with VirtualBus(115200) as bus:
        master = _open(bus.add_pty_endpoint("master"))
        stop = asyncio.Event()

        async def chatter() -> None:
            while not stop.is_set():
                master.write(bytes(range(1, 64)))
                await asyncio.sleep(0.002)

        task = asyncio.create_task(chatter())
        reader, writer = await asyncio.open_unix_connection(bus.socket_path)
        await asyncio.sleep(0.5)  # the line keeps going before the hello
        writer.write(HELLO_PREFIX + b"late timed\n")
        await writer.drain()
        now_us = round(asyncio.get_running_loop().time() * 1e6)
        for end_us, data in await _records(reader, 20):
            assert 0 < len(data) <= 4096 and abs(end_us - now_us) < 5_000_000
            assert set(data) <= set(range(1, 64))
        stop.set()
        await task
        writer.close()
        master.close()


async def test_noise_burst_garbles_a_frame_on_the_line() -> None:
    frame = bytes(range(32))
    async with VirtualBus(115200, seed=3) as bus:
        master = _open(bus.add_pty_endpoint("master"))
        monitor = _open(bus.add_pty_endpoint("monitor"), timeout=0.2)
        noise = bus.noise_burst(0.01)  # ~115 random bytes
        master.write(frame)
        await asyncio.sleep(0.05)
        seen = await asyncio.to_thread(monitor.read, 4096)
        stats = bus.stats()
        assert stats.noise_bytes == noise
        assert len(seen) == noise + len(frame)
        assert frame not in seen
        assert stats.collided_bytes >= len(frame)
        master.close()
        monitor.close()


# --------------------------------------------------------------------------- (c) faults


async def test_bit_error_rate_corrupts_bytes_at_the_configured_rate() -> None:
    ber = 1e-4
    count = 200_000  # 2 s at 1 Mbaud; 160 bit errors expected
    async with VirtualBus(1_000_000, seed=1234) as bus:
        bus.set_faults(ber=ber)
        sender = _open(bus.add_pty_endpoint("master"))
        receiver = _open(bus.add_pty_endpoint("board"), timeout=0.5)
        payload = random.Random(2).randbytes(count)
        reading = asyncio.create_task(asyncio.to_thread(_read_timed, receiver, count, 15.0))
        await asyncio.sleep(0.05)
        await asyncio.to_thread(sender.write, payload)
        received = b"".join(data for _, data in await reading)
        stats = bus.stats()
        sender.close()
        receiver.close()

    assert len(received) == count  # bit errors never add or remove bytes
    flipped_bits = sum((a ^ b).bit_count() for a, b in zip(payload, received, strict=True))
    corrupted = sum(a != b for a, b in zip(payload, received, strict=True))
    expected_bits = ber * 8 * count
    print(f"bit errors {flipped_bits} (expected {expected_bits:.0f}), bytes {corrupted}")
    assert flipped_bits == stats.bit_errors
    assert corrupted == stats.corrupted_bytes
    # Poisson: sigma = sqrt(160) = 12.6, so +-40 % is about 5 sigma.
    assert 0.6 * expected_bits <= flipped_bits <= 1.4 * expected_bits
    assert corrupted == pytest.approx(count * (1 - (1 - ber) ** 8), rel=0.4)


async def test_dropped_bytes_at_the_configured_rate() -> None:
    count = 20_000
    async with VirtualBus(1_000_000, seed=99) as bus:
        bus.set_faults(drop=0.01)
        sender = _open(bus.add_pty_endpoint("master"))
        receiver = _open(bus.add_pty_endpoint("board"), timeout=0.3)
        reading = asyncio.create_task(asyncio.to_thread(_read_timed, receiver, count, 2.0))
        await asyncio.sleep(0.05)
        await asyncio.to_thread(sender.write, bytes(count))
        received = b"".join(data for _, data in await reading)
        stats = bus.stats()
        sender.close()
        receiver.close()
    assert len(received) == count - stats.dropped_bytes
    assert stats.dropped_bytes == pytest.approx(0.01 * count, rel=0.4)


# --------------------------------------------------------------------------- (d) unplug


async def test_unplugged_endpoint_neither_sends_nor_receives() -> None:
    async with VirtualBus(115200) as bus:
        master = _open(bus.add_pty_endpoint("master"), timeout=0.2)
        board_reader, board_writer = await _socket_endpoint(bus, "board-b")

        bus.unplug("board-b")
        master.write(b"to the board")
        assert await _read_for(board_reader, 0.2) == b""
        board_writer.write(b"from the board")
        await board_writer.drain()
        assert await asyncio.to_thread(master.read, 64) == b""
        board = {ep.name: ep for ep in bus.stats().endpoints}["board-b"]
        assert not board.plugged
        assert board.discarded_bytes == len(b"from the board")
        assert board.rx_bytes == 0

        bus.plug("board-b")
        master.write(b"hello again")
        assert await _read_for(board_reader, 0.2) == b"hello again"
        board_writer.write(b"reply")
        await board_writer.drain()
        assert await asyncio.to_thread(master.read, 5) == b"reply"
        board_writer.close()
        master.close()


async def test_unplug_cuts_a_frame_in_flight_and_state_is_kept_by_name() -> None:
    async with VirtualBus(9600) as bus:
        master = _open(bus.add_pty_endpoint("master"), timeout=0.3)
        board_reader, board_writer = await _socket_endpoint(bus, "board-c")
        board_writer.write(bytes(100))  # 104 ms on the line
        await board_writer.drain()
        await asyncio.sleep(0.03)
        bus.unplug("board-c")
        got = await asyncio.to_thread(master.read, 100)
        assert 10 <= len(got) < 60

        # A board that reconnects under the same name is still unplugged.
        board_writer.close()
        board_reader, board_writer = await _socket_endpoint(bus, "board-c")
        master.write(b"x")
        assert await _read_for(board_reader, 0.1) == b""
        bus.plug("board-c")
        master.write(b"y")
        assert await _read_for(board_reader, 0.1) == b"y"
        board_writer.close()
        master.close()


async def test_socket_without_hello_gets_an_automatic_name_and_echo_flag() -> None:
    async with VirtualBus(115200) as bus:
        master = _open(bus.add_pty_endpoint("master", echo=True), timeout=0.2)
        reader, writer = await _socket_endpoint(bus, None)
        writer.write(b"raw bytes")
        await writer.drain()
        assert await asyncio.to_thread(master.read, 9) == b"raw bytes"
        assert any(name.startswith("sock") for name in bus.endpoint_names())
        master.write(b"echo")  # the master's transceiver hears itself
        assert await asyncio.to_thread(master.read, 4) == b"echo"
        assert await _read_for(reader, 0.1) == b"echo"
        writer.close()
        master.close()


# --------------------------------------------------------------------------- MicroPython board

MPY_BOARD = """
import socket, select, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(struct.pack("<H", socket.AF_UNIX) + sys.argv[1].encode() + b"\\0")
s.send(b"@vbus group-a\\n")
poller = select.poll()
poller.register(s, select.POLLIN)
got = b""
while len(got) < 4 and poller.poll(3000):
    got += s.recv(64)
s.send(b"pong:" + got)
s.close()
"""


async def test_micropython_board_talks_over_the_socket(tmp_path: Path) -> None:
    script = tmp_path / "board.py"
    script.write_text(MPY_BOARD)
    async with VirtualBus(115200) as bus:
        master = _open(bus.add_pty_endpoint("master"), timeout=2.0)
        board = await asyncio.create_subprocess_exec(
            micropython_command(), str(script), bus.socket_path
        )
        try:
            for _ in range(200):
                if "group-a" in bus.endpoint_names():
                    break
                await asyncio.sleep(0.01)
            assert "group-a" in bus.endpoint_names()
            master.write(b"ping")
            # The board exits right after writing: what it wrote still goes out.
            assert await asyncio.to_thread(master.read, 9) == b"pong:ping"
            assert await asyncio.wait_for(board.wait(), 5) == 0
        finally:
            if board.returncode is None:
                board.kill()
                await board.wait()
        master.close()


# --------------------------------------------------------------------------- (e) process


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_process_exits_cleanly_on_signal(sig: signal.Signals, tmp_path: Path) -> None:
    socket_path = tmp_path / "bus.sock"
    control_path = tmp_path / "bus.ctl"
    command = [sys.executable, "-m", "tools.virtual.vbus", "--baud", "115200"]
    command += ["--pty", "master", "--pty", "monitor,listen"]
    command += ["--socket", str(socket_path), "--control", str(control_path)]
    proc = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 10)
        info = json.loads(line)
        assert info["pid"] == proc.pid
        assert set(info["pty"]) == {"master", "monitor"}
        assert socket_path.exists()

        # The process is alive and working: a byte from the master reaches a board.
        reader, writer = await asyncio.open_unix_connection(str(socket_path))
        writer.write(HELLO_PREFIX + b"board\n")
        await writer.drain()
        master = _open(info["pty"]["master"])
        master.write(b"ping")
        assert await _read_for(reader, 0.3) == b"ping"
        reply = await control_request(str(control_path), {"op": "stats"})
        assert reply["ok"] and reply["stats"]["line_bytes"] == 4
        writer.close()
        master.close()

        proc.send_signal(sig)
        assert await asyncio.to_thread(proc.wait, 10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with pytest.raises(ProcessLookupError):
        os.kill(proc.pid, 0)
    assert not Path(f"/proc/{proc.pid}").exists()
    assert not socket_path.exists()
    assert not control_path.exists()
    for path in info["pty"].values():
        assert not Path(path).exists()  # the pty pairs are closed
