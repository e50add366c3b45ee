"""The bus monitor: live decoding on a real pseudo-terminal, captures, and exact replay of a
recording with injected corruption (bit flips, truncations, garbage between frames)."""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import socket
import threading
import time
from pathlib import Path

import pytest

from protocol.messages import decode
from tools.field import busmon
from tools.field.busmon import BadFrame, BusStats, CaptureWriter, DecodedFrame, decode_stream

VECTORS = json.loads((Path(__file__).resolve().parents[3] / "protocol/vectors.json").read_text())
GOOD = [bytes.fromhex(v["wire"]) for v in VECTORS["good"]]
BAD = [(bytes.fromhex(v["wire"]), v["error"]) for v in VECTORS["bad"]]


def _flip_one_bit(wire: bytes, rng: random.Random) -> bytes:
    """Invert one bit inside the stuffed frame, never making or removing a 0x00."""
    while True:
        pos = rng.randrange(0, len(wire) - 1)  # never the delimiter
        bit = 1 << rng.randrange(8)
        if wire[pos] ^ bit:
            return wire[:pos] + bytes([wire[pos] ^ bit]) + wire[pos + 1 :]


def _build_stream(seed: int) -> tuple[bytes, list[bytes], int, list[str]]:
    """Good frames interleaved with corruption; returns (stream, good wires, bad count,
    expected error names of the vector cases, in order, '' for 'any error')."""
    rng = random.Random(seed)
    stream = bytearray()
    good: list[bytes] = []
    expected_bad: list[str] = []
    for round_ in range(3):
        for wire in GOOD:
            stream += wire
            good.append(wire)
            action = rng.randrange(5)
            victim = rng.choice(GOOD)
            if action == 0:  # a bit flipped on the line
                stream += _flip_one_bit(victim, rng)
                expected_bad.append("")
            elif action == 1:  # a frame cut short (receiver saw the next delimiter)
                cut = rng.randrange(1, len(victim) - 1)
                stream += victim[: len(victim) - 1 - cut] + b"\x00"
                expected_bad.append("")
            elif action == 2:  # noise between frames, flushed by the next sender's 0x00
                noise = bytes(rng.randrange(1, 256) for _ in range(rng.randrange(1, 40)))
                stream += noise + b"\x00"
                expected_bad.append("")
            elif action == 3:  # idle padding: empty frames are legal and invisible
                stream += b"\x00" * rng.randrange(1, 4)
        if round_ == 1:
            for wire, error in BAD:
                stream += wire
                expected_bad.append(error)
    return bytes(stream), good, len(expected_bad), expected_bad


def _chunks(stream: bytes, seed: int, t0: float = 1_700_000_000.0) -> list[tuple[float, bytes]]:
    rng = random.Random(seed)
    out = []
    i = 0
    t = t0
    while i < len(stream):
        n = rng.randrange(1, 64)
        out.append((t, stream[i : i + n]))
        i += n
        t += rng.uniform(0.0005, 0.01)
    return out


def _write_capture(path: Path, chunks: list[tuple[float, bytes]]) -> None:
    with CaptureWriter(path, "/dev/test", 115200) as capture:
        for t, data in chunks:
            capture.write(t, data)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_replay_decodes_every_good_frame_and_reports_every_bad_one(
    tmp_path: Path, seed: int
) -> None:
    stream, good, bad_count, expected_bad = _build_stream(seed)
    chunks = _chunks(stream, seed)
    path = tmp_path / "capture.jsonl"
    _write_capture(path, chunks)

    # The recording holds exactly the bytes and times that were read.
    replayed = list(busmon.read_capture(path))
    assert [d for _, d in replayed] == [d for _, d in chunks]
    assert [round(t, 6) for t, _ in replayed] == [round(t, 6) for t, _ in chunks]

    items = list(decode_stream(replayed))
    frames = [i for i in items if isinstance(i, DecodedFrame)]
    bads = [i for i in items if isinstance(i, BadFrame)]
    assert len(frames) == len(good)
    assert len(bads) == bad_count
    assert [f.message for f in frames] == [decode(w) for w in good]
    assert [f.wire for f in frames] == good
    # The golden bad vectors are classified exactly as the protocol says.
    for bad, name in zip(bads, expected_bad, strict=True):
        if name:
            assert bad.error == name, (bad, name)
    # Times: a frame is stamped with the chunk that brought its delimiter, in recorded order.
    chunk_times = {round(t, 6) for t, _ in chunks}
    assert all(round(i.t, 6) in chunk_times for i in items)
    assert [i.t for i in items] == sorted(i.t for i in items)
    assert all(i.t_start <= i.t for i in items)

    stats = BusStats()
    for item in items:
        stats.add(item)
    assert stats.frames == len(good)
    assert stats.bad == bad_count
    assert sum(b.frames for b in stats.boards.values()) == len(good)


def test_cli_replay_prints_one_line_per_frame_and_statistics(tmp_path: Path) -> None:
    stream, good, bad_count, _ = _build_stream(7)
    path = tmp_path / "capture.jsonl"
    _write_capture(path, _chunks(stream, 7))
    out = io.StringIO()
    parser = argparse.ArgumentParser()
    busmon.add_arguments(parser)
    assert busmon.run(parser.parse_args(["--replay", str(path)]), out=out) == 0
    lines = out.getvalue().splitlines()
    frame_lines = [line for line in lines if "→" in line and " BAD " not in line]
    bad_lines = [line for line in lines if " BAD " in line]
    assert len(frame_lines) == len(good)
    assert len(bad_lines) == bad_count
    assert not any("\x1b[" in line for line in lines)  # not a terminal: no colours
    summary = next(line for line in lines if line.startswith("-- bus:"))
    assert f"{len(good)} frames, {bad_count} bad" in summary
    assert any(line.strip().startswith("bad frames:") for line in lines)


def test_bad_frames_with_a_good_crc_are_charged_to_their_sender() -> None:
    by_name = {v["name"]: bytes.fromhex(v["wire"]) for v in VECTORS["bad"]}
    wire = by_name["version_2"]
    items = list(decode_stream([(1.0, GOOD[0] + wire + by_name["crc_bit_flip"])]))
    assert isinstance(items[0], DecodedFrame)
    version_bad, crc_bad = items[1], items[2]
    assert isinstance(version_bad, BadFrame) and isinstance(crc_bad, BadFrame)
    assert version_bad.error == "VersionError" and version_bad.src is not None
    assert crc_bad.error == "CrcError" and crc_bad.src is None
    stats = BusStats()
    for item in items:
        stats.add(item)
    assert stats.boards[version_bad.src].errors == 1
    assert stats.unattributed == 1
    text = busmon.render(version_bad, colour=True)
    assert "\x1b[1;31m" in text and "VERSION" in text


def test_incomplete_frame_at_the_end_of_a_recording() -> None:
    items = list(decode_stream([(1.0, GOOD[0]), (2.0, GOOD[1][:5])]))
    assert isinstance(items[0], DecodedFrame)
    assert isinstance(items[1], BadFrame) and items[1].error == "Incomplete"
    assert items[1].length == 5


def test_live_monitor_on_a_pseudo_terminal_records_a_replayable_capture(tmp_path: Path) -> None:
    master, slave = os.openpty()
    port = os.ttyname(slave)
    capture = tmp_path / "live.jsonl"
    out = io.StringIO()
    parser = argparse.ArgumentParser()
    busmon.add_arguments(parser)
    args = parser.parse_args([port, "--capture", str(capture), "--duration", "2.5"])
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(busmon.run(args, out=out)))
    thread.start()
    try:
        time.sleep(0.5)  # the monitor opens the port
        stream, good, bad_count, _ = _build_stream(11)
        for i in range(0, len(stream), 97):
            os.write(master, stream[i : i + 97])
            time.sleep(0.01)
        thread.join(timeout=20)
    finally:
        os.close(master)
        os.close(slave)
    assert result == [0]
    live_lines = [line for line in out.getvalue().splitlines() if "→" in line]
    assert len([x for x in live_lines if " BAD " not in x]) == len(good)
    assert len([x for x in live_lines if " BAD " in x]) == bad_count

    header = busmon.read_capture_header(capture)
    assert header["port"] == port and header["baud"] == 115200
    replayed = list(decode_stream(busmon.read_capture(capture)))
    assert [i.message for i in replayed if isinstance(i, DecodedFrame)] == [decode(w) for w in good]
    assert sum(isinstance(i, BadFrame) for i in replayed) == bad_count
    # Replay renders the same lines as the live run (same recorded times).
    assert [busmon.render(i) for i in replayed] == live_lines


def test_listen_only_connection_to_the_virtual_bus_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "bus.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    hello: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            hello.append(conn.recv(64))
            conn.sendall(b"".join(GOOD[:5]))
            time.sleep(0.3)

    thread = threading.Thread(target=serve)
    thread.start()
    source = busmon.open_source("unix:" + path, 115200)
    try:
        items: list[busmon.Decoded] = []
        for item in decode_stream(busmon.live_chunks(source, duration=2.0)):
            items.append(item)
            if len(items) == 5:
                break
    finally:
        source.close()
        thread.join()
        server.close()
    assert hello == [b"@vbus busmon listen\n"]
    assert [i.message for i in items if isinstance(i, DecodedFrame)] == [
        decode(w) for w in GOOD[:5]
    ]


def test_replay_rejects_a_file_that_is_not_a_capture(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text("hello\n")
    assert busmon.main(["--replay", str(path)]) == 1
