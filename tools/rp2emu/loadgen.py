"""ADC codes for an emulated group board, from the sim board's own load model.

Runs on the MicroPython unix port (``micropython tools/rp2emu/loadgen.py [seed] [mains_hz]``
with MICROPYPATH at the repository): ``firmware.loadsim.LoadSim`` makes the codes, exactly
as for a board on the ``sim`` board module, so an emulated RP2040 and a unix-port board fed
the same load description read the same currents. The emulator's MCP3208 models answer
each conversion with the code of its channel at the sample instant it falls in.

stdin, one command a line:

    F <count>        write the next <count> sample instants to stdout: 13 little-endian u16
                     per instant (CT1..CT12, VREF), rms.SAMPLE_US apart
    L <json>         a load change, the sim panel's ``load`` object
                     ({"ch": 1..12, "kind": ..., "amps": ...} or {"mains_hz": ...})

Errors in an L line are written to stderr as one line each; nothing else goes to stdout.
"""

import json
import sys
from array import array

from firmware import rms
from firmware.app import GroupBoardApp
from firmware.loadsim import LoadSim

_MAX_COUNT = 4096


class _Loads:
    """What ``GroupBoardApp.on_load`` needs: the load simulator (one translation of the
    panel's load messages, shared with the sim board)."""

    def __init__(self, sim):
        self.loadsim = sim


def main():
    seed = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    mains_hz = float(sys.argv[2]) if len(sys.argv) > 2 else 50.0
    sim = LoadSim(mains_mhz=int(mains_hz * 1000), seed=seed)
    loads = _Loads(sim)
    buf = array("H", bytes(2 * rms.STRIDE * _MAX_COUNT))
    out = sys.stdout.buffer
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        cmd = line[:1]
        if cmd == "F":
            count = int(line[2:])
            if not 0 < count <= _MAX_COUNT:
                sys.stderr.write(f"loadgen: count 1..{_MAX_COUNT}\n")
                return
            sim.fill(buf, 0, count)
            out.write(memoryview(buf)[: rms.STRIDE * count])
            out.flush()
        elif cmd == "L":
            try:
                GroupBoardApp.on_load(loads, json.loads(line[2:]))  # pyright: ignore[reportArgumentType]
            except (ValueError, KeyError, TypeError) as exc:
                sys.stderr.write(f"loadgen: bad load {line[2:].strip()}: {exc}\n")
        else:
            sys.stderr.write(f"loadgen: unknown command {line[:20]!r}\n")


main()
