"""Protocol demo behind ``make run`` until the virtual PDU lands: a MicroPython process packs
TELEMETRY frames with the board's zero-allocation path and streams them over a pipe; this
process decodes them with the host API and prints them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from protocol.errors import FrameError
from protocol.framing import FrameReader
from protocol.messages import Telemetry, message_from_reader

ROOT = Path(__file__).resolve().parents[2]

BOARD_SCRIPT = r"""
import sys, time, math
from array import array
from protocol import consts as C
from protocol.framing import FrameWriter
from protocol.layouts import pack_telemetry
writer = FrameWriter(1)
amps = array("H", [0] * 12)
states = bytearray(12)
crest = bytearray(12)
ttt = array("H", [0] * 12)
out = sys.stdout.buffer
cycles = int(sys.argv[1])
n = 0
while cycles == 0 or n < cycles:
    for ch in range(12):
        a = int(800 + 700 * math.sin(n / 5 + ch))
        amps[ch] = a
        states[ch] = C.ST_OK if a > 0 else C.ST_OFF
        crest[ch] = 14
    plen = pack_telemetry(writer.raw, C.HEADER_LEN, 0, amps, states, crest, n // 5, 0, n,
                          5000, ttt)
    out.write(memoryview(writer.wire)[: writer.seal(0, C.T_TELEMETRY, n, plen)])
    n += 1
    time.sleep_ms(200)
"""


def main(cycles: int = 0) -> int:
    micropython = Path(sys.executable).parent / "micropython"
    env = dict(os.environ, MICROPYPATH=f"{ROOT}:.frozen")
    proc = subprocess.Popen(
        [str(micropython), "-c", BOARD_SCRIPT, str(cycles)], stdout=subprocess.PIPE, env=env
    )
    assert proc.stdout is not None
    reader = FrameReader()
    print("smartPDU protocol demo: MicroPython board -> TELEMETRY frames -> host (Ctrl-C stops)")
    try:
        while chunk := os.read(proc.stdout.fileno(), 256):
            i = 0
            while i < len(chunk):
                i = reader.feed(chunk, i, len(chunk))
                if not reader.ready:
                    continue
                try:
                    reader.decode()
                    msg = message_from_reader(reader)
                except FrameError as exc:
                    print(f"bad frame: {exc}")
                    continue
                if isinstance(msg, Telemetry):
                    amps = " ".join(f"{c / 100:5.2f}" for c in msg.centiamps)
                    print(f"board {msg.src} window {msg.windows:5d}  A: {amps}", flush=True)
    finally:
        proc.terminate()
        proc.wait()
    return 0
