"""On MicroPython: the board's frame path allocates nothing, and the decoder survives a
corpus of corrupted frames raising nothing but the protocol's FrameError."""

from __future__ import annotations

from tests.mpy import run_micropython

ZERO_ALLOC = r"""
import micropython
from array import array
from protocol import consts as C
from protocol.framing import FrameReader, FrameWriter
from protocol.layouts import pack_report, pack_telemetry
from protocol.errors import FrameError
from protocol.messages import Poll, Sync, encode

writer = FrameWriter(3)
reader = FrameReader()
centiamps = array("H", [0, 735, 1600, 2400, 5, 0, 0, 99, 1200, 0, 16383, 4095])
states = bytearray([0, 1, 2, 3, 1, 0, 4, 1, 1, 0, 1 | C.STATE_CLIP, 1])
crest = bytearray([0, 14, 14, 30, 14, 0, 0, 14, 14, 0, 14, 14])
ttt = array("H", [0, 0, 1200, 35, 0, 0, 0, 0, 0, 0, 0, 0])
poll = encode(Poll(C.T_TELEMETRY, dst=3, seq=9))
sync = encode(Sync(77, 5000, 3300, 1, 0xF7, 4))
foreign = encode(Poll(C.T_REPORT, dst=4, seq=1))
stream = bytearray(b"\x00" + sync + foreign + poll)
bad = bytearray(poll)
bad[2] ^= 1
bad_stream = bytearray(bad)

def hot_path():
    handled = 0
    i = 0
    n = len(stream)
    while i < n:
        i = reader.feed(stream, i, n)
        if reader.ready:
            mtype = reader.decode()
            if not reader.for_me(3):
                continue
            handled += 1
            if mtype == C.T_POLL:
                p = C.HEADER_LEN + pack_telemetry(
                    writer.raw, C.HEADER_LEN, 0, centiamps, states, crest,
                    86400, 2, 1234, 5000, ttt)
                writer.seal(C.ADDR_MASTER, C.T_TELEMETRY, reader.seq, p - C.HEADER_LEN)
                pl = pack_report(writer.raw, C.HEADER_LEN, centiamps, states, 7)
                writer.seal(C.ADDR_MASTER, C.T_REPORT, reader.seq, pl)
    # A corrupted frame is rejected by check() (the board's path), also without allocating.
    i = 0
    n = len(bad_stream)
    while i < n:
        i = reader.feed(bad_stream, i, n)
        if reader.ready and reader.check() < 0 and isinstance(reader.error, FrameError):
            handled += 100
    return handled

hot_path()  # warm up: first calls may intern or cache
micropython.heap_lock()
try:
    for _ in range(50):
        result = hot_path()
finally:
    micropython.heap_unlock()
print("handled", result)
"""


def test_frame_hot_path_allocates_nothing() -> None:
    out = run_micropython(ZERO_ALLOC)
    # sync (broadcast) + our poll handled, foreign poll skipped, one corrupt frame rejected.
    assert out.split() == ["handled", "102"]


CORRUPTION_CORPUS = r"""
import random
from protocol.errors import FrameError
from protocol.framing import FrameReader
from protocol.messages import encode, message_from_reader
from protocol.vectors import load, message_from_vector

random.seed(424242)
frames = [encode(message_from_vector(v)) for v in load("protocol/vectors.json")["good"]]
reader = FrameReader()
rejected = accepted_same = accepted_corrupt = other = 0
N = 12000
for k in range(N):
    wire = frames[random.getrandbits(16) % len(frames)]
    data = bytearray(wire[:-1])
    kind = k % 5
    if kind == 0:
        for _ in range(1 + random.getrandbits(2)):
            data[random.getrandbits(16) % len(data)] ^= 1 << random.getrandbits(3)
    elif kind == 1:
        data = data[: 1 + random.getrandbits(16) % (len(data) - 1)]
    elif kind == 2:
        p = random.getrandbits(16) % (len(data) + 1)
        data = data[:p] + bytearray([random.getrandbits(8)]) + data[p:]
    elif kind == 3:
        p = random.getrandbits(16) % len(data)
        data = data[:p] + data[p + 1:]
    else:
        data = bytearray(random.getrandbits(8) for _ in range(1 + random.getrandbits(8)))
    data.append(0)
    i = 0
    while i < len(data):
        i = reader.feed(data, i, len(data))
        if reader.ready:
            try:
                reader.decode()
                m = message_from_reader(reader)
            except FrameError:
                rejected += 1
                continue
            except Exception as exc:
                other += 1
                print("unexpected", repr(exc))
                continue
            if encode(m) == wire:
                accepted_same += 1
            else:
                accepted_corrupt += 1
print("frames", N, "rejected", rejected, "same", accepted_same,
      "corrupt", accepted_corrupt, "other", other)
"""


def test_micropython_decoder_survives_corrupted_corpus() -> None:
    out = run_micropython(CORRUPTION_CORPUS, timeout=300)
    words = out.split()
    figures = dict(zip(words[0::2], (int(w) for w in words[1::2]), strict=True))
    assert figures["frames"] >= 10_000
    assert figures["other"] == 0
    assert figures["corrupt"] == 0
    assert figures["rejected"] > 9_000


STATUS_ZERO_ALLOC = r"""
import micropython
from protocol import consts as C
from protocol.layouts import pack_status
from protocol.framing import FrameWriter

writer = FrameWriter(5)

def answer():
    n = pack_status(writer.raw, C.HEADER_LEN, 0x05, 1, -120, 86400, 3, 2, 65535)
    return writer.seal(C.ADDR_MASTER, C.T_STATUS, 9, n)

length = answer()
micropython.heap_lock()
try:
    for _ in range(50):
        length = answer()
finally:
    micropython.heap_unlock()
print("status", length)
"""


def test_status_packer_allocates_nothing() -> None:
    # The mains status node's answer: STATUS packed from the generated format, then sealed.
    out = run_micropython(STATUS_ZERO_ALLOC)
    assert out.split() == ["status", "25"]  # COBS code, header 5, payload 14, CRC 4, 0x00
