"""Protocol benchmark: false accepts under corruption, frame size, decode throughput."""

from __future__ import annotations

import random
import time
from pathlib import Path

from protocol import consts as C
from protocol.errors import FrameError
from protocol.framing import FrameReader
from protocol.messages import Report, Telemetry, decode, encode, message_from_reader
from protocol.vectors import load, message_from_vector

VECTORS = Path(__file__).resolve().parents[2] / "protocol" / "vectors.json"


def corrupt(body: bytearray, rng: random.Random) -> bytearray:
    """Bit flips, truncation, insertion or deletion (body without the delimiter)."""
    data = bytearray(body)
    kind = rng.randrange(4)
    if kind == 0:
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif kind == 1:
        del data[rng.randrange(1, len(data)) :]
    elif kind == 2:
        for _ in range(rng.randint(1, 3)):
            data.insert(rng.randrange(len(data) + 1), rng.randrange(256))
    else:
        for _ in range(rng.randint(1, 3)):
            if len(data) > 1:
                del data[rng.randrange(len(data))]
    return data


def false_accepts(frames: int, seed: int = 1) -> tuple[int, int]:
    """Corrupt ``frames`` valid frames; count corrupted ones the decoder still accepts."""
    rng = random.Random(seed)
    wires = [encode(message_from_vector(v)) for v in load(str(VECTORS))["good"]]
    reader = FrameReader()
    accepted_corrupt = 0
    corrupted = 0
    for _ in range(frames):
        wire = rng.choice(wires)
        data = corrupt(bytearray(wire[:-1]), rng) + b"\x00"
        if data == wire:
            continue
        corrupted += 1
        i = 0
        while i < len(data):
            i = reader.feed(data, i, len(data))
            if not reader.ready:
                continue
            try:
                reader.decode()
                message = message_from_reader(reader)
            except FrameError:
                continue
            if encode(message) != wire:
                accepted_corrupt += 1
    return accepted_corrupt, corrupted


def typical_telemetry() -> Telemetry:
    return Telemetry(
        0,
        [732, 1240, 35, 0, 0, 1600, 999, 1, 1530, 420, 77, 8],
        [1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1],
        [False] * 12,
        [14, 31, 14, 0, 0, 14, 20, 14, 14, 15, 14, 14],
        86_400,
        0,
        4242,
        5000,
        {},
        src=3,
        seq=7,
    )


def decode_rate(seconds: float = 1.0) -> float:
    wire = encode(typical_telemetry())
    count = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(200):
            decode(wire)
        count += 200
    return count / elapsed


def run(frames: int = 1_000_000) -> dict[str, float | int]:
    started = time.perf_counter()
    bad, corrupted = false_accepts(frames)
    return {
        "protocol.false_accepts_per_million": bad * 1_000_000 / max(corrupted, 1),
        "protocol.corrupted_frames_tested": corrupted,
        "protocol.telemetry_frame_bytes": len(encode(typical_telemetry())),
        "protocol.report_frame_bytes": len(encode(Report([0] * 12, [0] * 12))),
        "protocol.max_frame_bytes": C.MAX_WIRE,
        "protocol.decode_frames_per_s": round(decode_rate()),
        "protocol.bench_seconds": round(time.perf_counter() - started, 1),
    }
