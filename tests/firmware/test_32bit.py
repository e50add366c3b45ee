"""The firmware on a 32-bit MicroPython, where ``ticks_us`` wraps every 2**30 µs (17.9 min).

Listed in ``tests/conftest.py``'s ``BOTH_PORTS``: each test runs on the 64-bit unix port and
on the 32-bit build of ``make firmware`` (``build/rp2/out/micropython-32``).

- The sim UART's timed records carry CLOCK_MONOTONIC µs (``tools/virtual/vbus.py``), the firmware
  works in ``ticks_us``: received times become ticks by their low bits and times to send
  become line times from the newest received record. Checked with line times chosen next to
  a ticks wrap, whatever the machine's uptime.
- The mains status node's trip cause (E-stop within 500 ms of the trip) across a wrap of
  ``ticks_ms`` and half a ticks period after boot (2**29 ms = 6.2 days on the chip).
- A sim board running the real firmware answers a real bus master over the virtual bus:
  discovered, then REPORTs in its slots of every superframe (timed from the SYNC's end).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from host.busmaster import BusMaster, CycleSettings
from host.transport import SerialTransport
from tests.busrecorder import Recorder
from tests.mpy import (
    REPO_ROOT,
    current_port,
    micropython_command,
    micropython_env,
    run_micropython,
)
from tools.virtual.vboard import VirtualBoard
from tools.virtual.vbus import VirtualBus

TICKS_PERIOD = {"32": 1 << 30, "64": 1 << 62}
CHAR_US_115200 = 86_806 / 1000  # 10 bits at 115200 baud

UART_APP = """
import json, sys
from time import sleep_ms, ticks_add, ticks_diff
from firmware.drivers.sim.uart import SimUart

uart = SimUart(sys.argv[1], name="t32")
buf = bytearray(16)
got = []
while len(got) < 2:
    n = uart.readinto(buf, 4 if not got else None)
    if n:
        got.append((bytes(buf[:n]).decode(), uart.rx_end_us))
    else:
        sleep_ms(1)
(first, first_end), (rest, end) = got
# one frame 1 ms after the record's end, one 100 µs after the end of its first 4 bytes
uart.write_at(b"after", ticks_add(end, 1000))
uart.write_at(b"early", ticks_add(first_end, 100))
print(json.dumps({"text": first + rest, "first_end": first_end, "end": end,
                  "mask": ticks_add(0, -1), "rx_span": ticks_diff(end, first_end)}))
"""


def _records(conn: socket.socket, count: int) -> list[tuple[int, bytes]]:
    data = b""
    out: list[tuple[int, bytes]] = []
    conn.settimeout(10)
    while len(out) < count:
        while len(data) >= 10 and len(data) >= 10 + int.from_bytes(data[:2], "little"):
            n = int.from_bytes(data[:2], "little")
            out.append((int.from_bytes(data[2:10], "little"), data[10 : 10 + n]))
            data = data[10 + n :]
        if len(out) < count:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
    return out


@pytest.mark.parametrize("low", [200, (1 << 30) - 300], ids=["after-wrap", "before-wrap"])
def test_timed_records_convert_across_the_ticks_wrap(tmp_path: Path, low: int) -> None:
    period = TICKS_PERIOD[current_port()]
    # A line time far above 2**30 µs whose low 30 bits sit next to a wrap of 32-bit ticks.
    stamp = (7 << 30) + low
    sock_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"spdu32-{os.getpid()}-{low}.sock"
    sock_path.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    server.listen(1)
    script = tmp_path / "uart.py"
    script.write_text(UART_APP)
    proc = subprocess.Popen(
        [micropython_command(), str(script), str(sock_path)],
        cwd=REPO_ROOT,
        env=micropython_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        server.settimeout(10)
        conn, _ = server.accept()
        hello = b""
        while not hello.endswith(b"\n"):
            hello += conn.recv(1)
        assert hello == b"@vbus t32 timed\n"
        payload = b"hello bus"
        conn.sendall(len(payload).to_bytes(2, "little") + stamp.to_bytes(8, "little") + payload)
        sent = _records(conn, 2)
        out, err = proc.communicate(timeout=10)
        conn.close()
    finally:
        server.close()
        sock_path.unlink(missing_ok=True)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and "Traceback" not in err, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["mask"] == period - 1
    assert result["text"] == "hello bus"
    # received: the line time's low bits; the first 4 bytes ended 5 characters earlier
    late = int(5 * CHAR_US_115200)
    assert result["end"] == stamp % period
    assert result["first_end"] == (stamp - late) % period
    assert result["rx_span"] == late
    # sent: back to monotonic µs, across the wrap where there is one
    assert sent == [(stamp + 1000, b"after"), (stamp - late + 100, b"early")]


async def _until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out: {what}")
        await asyncio.sleep(0.05)


async def test_sim_board_answers_the_bus(tmp_path: Path) -> None:
    # Two group boards running the real firmware (firmware.app, sim board) on this port, the
    # host's bus master on the virtual bus's pty: both are discovered and send a REPORT in
    # each round of every superframe, in slots timed from the SYNC's line end.
    async with VirtualBus(115200, socket_path=str(tmp_path / "bus.sock")) as bus:
        port = bus.add_pty_endpoint("master")
        boards = [
            VirtualBoard(g, bus_socket=bus.socket_path, workdir=tmp_path, group=g) for g in "AB"
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
            await _until(lambda: len(recorder.infos) == 2, 15, "both boards discovered")
            assert sorted(info.group for info in recorder.infos.values()) == ["A", "B"]
            start = {a: len(recorder.reports.get(a, [])) for a in recorder.infos}
            await asyncio.sleep(2.0)
            got = {a: len(recorder.reports.get(a, [])) - start[a] for a in recorder.infos}
            # 12 rounds per superframe of two boards: well over 100 REPORTs each in 2 s
            assert min(got.values()) >= 100, (got, [b.log[-5:] for b in boards])
            assert not recorder.offline
        finally:
            master.stop()
            task.cancel()
            await transport.close()
            for board in boards:
                await board.stop()


CAUSE_APP = """
import json, sys
from time import ticks_add
import boards.sim
from firmware.app import StatusNodeApp
from protocol import consts as C

class Contacts:  # the status inputs, set by the script
    def __init__(self):
        self.levels = {"estop": False, "tripped": False}
    def poll(self, now):
        pass
    def pop(self):
        return -1
    def breaker_closed(self):
        return not self.levels["tripped"]
    def tripped(self):
        return self.levels["tripped"]
    def estop(self):
        return self.levels["estop"]
    def neutral_lost(self):
        return False

board = boards.sim.build([], role="mains", config=sys.argv[1])
app = StatusNodeApp(board)
contacts = board.status = Contacts()
causes = []

def trip_at(now):
    contacts.levels["tripped"] = True
    app._sample_inputs(now)
    causes.append(app.cause)
    contacts.levels["tripped"] = False
    app._sample_inputs(ticks_add(now, 5))

half = (ticks_add(0, -1) + 1) // 2
# 1. no E-stop ever, a trip half a ticks period after boot: overload
trip_at(half - 1000)
# 2. E-stop pressed 5 ms before the wrap, released; trip 300 ms later, across the wrap
t = ticks_add(0, -5)
contacts.levels["estop"] = True
app._sample_inputs(t)
contacts.levels["estop"] = False
for k in range(1, 60):  # sampled every 5 ms
    app._sample_inputs(ticks_add(t, 5 * k))
trip_at(ticks_add(t, 300))
# 3. the same E-stop, a trip 2 s after it: overload
for k in range(61, 400):
    app._sample_inputs(ticks_add(t, 5 * k))
trip_at(ticks_add(t, 2000))
print(json.dumps({"causes": causes, "names": [C.CAUSE_OVERLOAD, C.CAUSE_ESTOP]}))
"""


def test_status_node_trip_cause_survives_the_ticks_wrap(tmp_path: Path) -> None:
    out = json.loads(
        run_micropython(CAUSE_APP, args=[str(tmp_path / "flash")]).strip().splitlines()[-1]
    )
    overload, estop = out["names"]
    assert out["causes"] == [overload, estop, overload]


UPTIME_APP = """
import json, sys, time
import boards.sim
import firmware.slave
from firmware.app import StatusNodeApp

class Clock:  # ticks_ms set by the script; the rest from the real time module
    ms = time.ticks_add(0, -3_600_000)  # one hour before a ticks_ms wrap
    def ticks_ms(self):
        return self.ms
    def __getattr__(self, name):
        return getattr(time, name)

clock = Clock()
firmware.slave.time = clock
board = boards.sim.build([], role="mains", config=sys.argv[1])
app = StatusNodeApp(board)
app.trip_count = 1
app.trip_s = app.slave.uptime_s()
buf = bytearray(16)
for hour in range(13 * 24):  # 13 days: past two wraps of 32-bit ticks_ms (12.4 days each)
    clock.ms = time.ticks_add(clock.ms, 3_600_000)
    app.slave.uptime_s()
app.pack(buf, 0)
import struct
print(json.dumps({"uptime": app.slave.uptime_s(), "packed": struct.unpack_from("<I", buf, 4)[0],
                  "since": struct.unpack_from("<H", buf, 12)[0]}))
"""


def test_uptime_counts_on_past_the_ticks_wrap(tmp_path: Path) -> None:
    out = run_micropython(UPTIME_APP, args=[str(tmp_path / "flash")])
    result = json.loads(out.strip().splitlines()[-1])
    days13 = 13 * 24 * 3600
    assert result == {"uptime": days13, "packed": days13, "since": 0xFFFF}
