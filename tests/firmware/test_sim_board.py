"""The sim board's sockets, driven from CPython while the firmware side runs on MicroPython.

A CPython test plays the virtual RS-485 bus (it listens, the board connects) and a panel
client (the board listens, JSON lines); the MicroPython process builds ``boards.sim`` and
runs a small application over the same driver interfaces as on the Pico.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from tests.mpy import (
    REPO_ROOT,
    current_port,
    micropython_command,
    micropython_env,
    run_micropython,
)

GROUP_APP = """
import asyncio, json
from time import ticks_ms, ticks_diff
import boards.sim
from firmware.drivers.buttons import PRESS, event_kind, event_index

class Ramp:
    # waveform generator stand-in with LoadSim's interface: fill(buf, start, count)
    def __init__(self):
        self.samples = 0
        self.calls = 0
    def fill(self, buf, start, count):
        self.calls += 1
        for i in range(start, start + count):
            for ch in range(12):
                buf[13 * i + ch] = 2048 + ch
            buf[13 * i + 12] = (self.samples + i - start) & 0xFFF
        self.samples += count

ramp = Ramp()
board = boards.sim.build(generator=ramp)
board.panel.heartbeat_ms = 200
loads = []
stop = asyncio.Event()
def on_load(msg):
    loads.append(msg)
    if msg == "quit":
        stop.set()
board.panel.on_load = on_load
board.wdt.start(2000)
stats = {"blocks": 0, "first_ms": 0, "last_ms": 0, "continuous": True, "echoed": 0}

async def echo():
    port = board.rs485
    while True:
        n = await port.read()
        stats["echoed"] += n
        stats["rx_end_us"] = port.rx_end_us()
        await port.send(bytes(port.rx_buf[:n]).upper())

async def ui():
    while True:
        board.buttons.poll(ticks_ms())
        e = board.buttons.pop()
        while e != -1:
            if event_kind(e) == PRESS:
                i = event_index(e)
                board.leds.set(i, 0, 0, 255)
                board.leds.write()
                board.display.show("%2d.0" % (i + 1))
            e = board.buttons.pop()
        board.wdt.feed()
        await asyncio.sleep_ms(5)

async def acquire():
    adc = board.adc
    adc.start()
    expect = None
    while True:
        blk = await adc.block()
        now = ticks_ms()
        if not stats["blocks"]:
            stats["first_ms"] = now
        stats["last_ms"] = now
        stats["blocks"] += 1
        first = blk[12]
        if expect is not None and first != expect:
            stats["continuous"] = False
        expect = (blk[len(blk) - 1] + 1) & 0xFFF

async def main():
    for service in board.services:
        asyncio.create_task(service.run())
    for job in (echo(), ui(), acquire()):
        asyncio.create_task(job)
    await stop.wait()
    board.panel.poll()
    print(json.dumps({"loads": loads, "stats": stats, "overruns": board.adc.overruns,
                      "uid": board.uid, "group": board.group, "config": board.config_dir,
                      "tx_frames": board.rs485.tx_frames, "de": board.rs485._de.value()}))

asyncio.run(main())
"""

MAINS_APP = """
import asyncio, json
from time import ticks_ms
import boards.sim
from firmware.drivers.status_inputs import NAMES

board = boards.sim.build()
seen = []
stop = asyncio.Event()
def on_load(msg):
    stop.set()
board.panel.on_load = on_load

async def watch():
    while True:
        board.status.poll(ticks_ms())
        e = board.status.pop()
        while e != -1:
            seen.append(e)
            e = board.status.pop()
        await asyncio.sleep_ms(5)

async def main():
    asyncio.create_task(board.panel.run())
    asyncio.create_task(watch())
    await stop.wait()
    print(json.dumps({"role": board.role, "events": seen, "estop": board.status.estop(),
                      "temp": board.temperature.read_c10(), "adc": board.adc is None}))

asyncio.run(main())
"""


class Lines:
    """JSON lines from a socket, with a deadline."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def next(self, timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no line from the panel")
            self.sock.settimeout(left)
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("panel closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def wait_for(self, test: Callable[[dict[str, Any]], bool], timeout: float = 5.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            obj = self.next(max(0.01, deadline - time.monotonic()))
            if test(obj):
                return obj

    def send(self, obj: dict[str, Any]) -> None:
        self.sock.sendall(json.dumps(obj).encode() + b"\n")


def connect_when_ready(path: Path, proc: subprocess.Popen, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(path))
            return sock
        except OSError:
            sock.close()
            if proc.poll() is not None or time.monotonic() > deadline:
                out, err = proc.communicate()
                pytest.fail(f"panel socket never came up\n{out}\n{err}")
            time.sleep(0.05)


@contextmanager
def sim_board(
    tmp_path: Path, app: str, env: dict[str, str], bus: bool = True
) -> Iterator[tuple[subprocess.Popen, socket.socket | None, Lines]]:
    script = tmp_path / "app.py"
    script.write_text(app)
    # AF_UNIX paths are limited to ~108 bytes: keep them short.
    sock_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"spdu-{os.getpid()}-{tmp_path.name[-12:]}"
    sock_dir.mkdir(exist_ok=True)
    bus_path = sock_dir / "bus"
    panel_path = sock_dir / "panel"
    full_env = micropython_env()
    full_env.update(env)
    full_env["SMARTPDU_PANEL"] = str(panel_path)
    full_env["SMARTPDU_CONFIG_DIR"] = str(tmp_path / "flash")
    server = None
    if bus:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(bus_path))
        server.listen(1)
        full_env["SMARTPDU_BUS"] = str(bus_path)
    proc = subprocess.Popen(
        [micropython_command(), str(script)],
        cwd=REPO_ROOT,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    bus_conn = None
    panel = None
    try:
        if server is not None:
            server.settimeout(10)
            bus_conn, _ = server.accept()
        panel = connect_when_ready(panel_path, proc)
        yield proc, bus_conn, Lines(panel)
    finally:
        for s in (panel, bus_conn, server):
            if s is not None:
                s.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for p in (bus_path, panel_path):
            with suppress(FileNotFoundError):
                p.unlink()
        with suppress(OSError):
            sock_dir.rmdir()


def finish(proc: subprocess.Popen) -> dict[str, Any]:
    out, err = proc.communicate(timeout=10)
    if proc.returncode != 0 or "Traceback" in err:
        pytest.fail(f"MicroPython exited {proc.returncode}\n{out}\n{err}")
    return json.loads(out.strip().splitlines()[-1])


def test_group_board_panel_bus_adc_and_load_messages(tmp_path: Path) -> None:
    env = {"SMARTPDU_GROUP": "B", "SMARTPDU_BAUD": "115200"}
    with sim_board(tmp_path, GROUP_APP, env) as (proc, bus, panel):
        assert bus is not None
        state = panel.next()
        assert state["uid"] == "sim-B" and state["group"] == "B"
        assert state["leds"] == [[0, 0, 0]] * 12
        assert state["display"] == "" and state["pressed"] == []

        # a click on monitor button 3: firmware lights LED 3 blue and shows " 3.0"
        panel.send({"press": 3})
        state = panel.wait_for(lambda s: "leds" in s and s["leds"][2] == [0, 0, 255])
        if state["display"] != " 3.0":
            state = panel.wait_for(lambda s: s.get("display") == " 3.0")
        assert state["segments"] == [0x00, 0x00, 0x4F | 0x80, 0x3F]
        assert [led for i, led in enumerate(state["leds"]) if i != 2] == [[0, 0, 0]] * 11

        # bytes on the virtual bus reach the firmware and its reply comes back; the board
        # names itself to the bus first and speaks timed records (u16 length, u64 µs, data)
        bus.settimeout(5)
        stamp = time.monotonic_ns() // 1000
        bus.sendall((9).to_bytes(2, "little") + stamp.to_bytes(8, "little") + b"hello bus")
        reply = b""
        hello = b"@vbus sim-B timed\n"
        while len(reply) < len(hello) + 10 + 9:
            reply += bus.recv(64)
        assert reply == hello + (9).to_bytes(2, "little") + bytes(8) + b"HELLO BUS"

        # heartbeat carries the watchdog feed count
        beat = panel.wait_for(lambda s: "hb" in s and s["wdt"] > 0, timeout=3)
        assert beat["wdt"] > 0

        panel.send({"bogus": True})
        assert "error" in panel.wait_for(lambda s: "error" in s)
        panel.send({"press": 13})
        assert "error" in panel.wait_for(lambda s: "error" in s)
        panel.send({"get": "state"})
        assert panel.wait_for(lambda s: "leds" in s)["uid"] == "sim-B"

        time.sleep(0.6)  # let the sim ADC run for a while
        panel.send({"load": {"channel": 4, "amps": 7.5, "kind": "dimmer"}})
        panel.send({"load": "quit"})
        result = finish(proc)

    assert result["loads"] == [{"channel": 4, "amps": 7.5, "kind": "dimmer"}, "quit"]
    assert result["uid"] == "sim-B" and result["group"] == "B"
    assert result["config"] == str(tmp_path / "flash") and (tmp_path / "flash").is_dir()
    assert result["tx_frames"] >= 1 and result["de"] == 0
    stats = result["stats"]
    assert stats["echoed"] == 9
    # the bus's line time of the last byte, as delivered, in ticks (which wrap at 2**30 µs
    # on a 32-bit port)
    assert stats["rx_end_us"] == stamp % (1 << (30 if current_port() == "32" else 62))
    assert stats["continuous"] is True  # every sample delivered, in order
    # real-time pacing: 64 samples per block, one every 312 us = one block per 19.968 ms
    elapsed = stats["last_ms"] - stats["first_ms"]
    assert stats["blocks"] >= 20
    assert abs(elapsed - 19.968 * (stats["blocks"] - 1)) <= 60
    assert result["overruns"] == 0


def test_mains_board_status_inputs_from_panel(tmp_path: Path) -> None:
    env = {"SMARTPDU_ROLE": "mains"}
    with sim_board(tmp_path, MAINS_APP, env, bus=False) as (proc, _, panel):
        state = panel.next()
        assert state["uid"] == "sim-mains"
        assert state["inputs"] == {"breaker": 0, "alarm": 0, "estop": 0, "neutral": 0}
        panel.send({"input": "breaker", "value": 1})
        panel.send({"input": "estop", "value": 1})
        panel.send({"temperature": 41.5})
        state = panel.wait_for(
            lambda s: s.get("inputs", {}).get("estop") == 1 and s.get("temperature") == 41.5
        )
        assert state["inputs"]["breaker"] == 1
        panel.send({"input": "nonsense", "value": 1})
        assert "error" in panel.wait_for(lambda s: "error" in s)
        time.sleep(0.2)
        panel.send({"load": "quit"})
        result = finish(proc)
    assert result["role"] == "mains" and result["adc"] is True
    assert result["estop"] is True
    assert result["temp"] == 415
    assert len(result["events"]) == 2  # breaker closed, E-stop pressed


def test_sim_settings_and_detached_uart(tmp_path: Path) -> None:
    out = run_micropython(
        f"""
import json, os
import boards.sim as sim
os.putenv("SMARTPDU_GROUP", "C")
os.putenv("SMARTPDU_CONFIG_DIR", {str(tmp_path / "flash")!r})
"""
        + """
a = sim.settings([])
b = sim.settings(["--uid", "abc", "--role", "mains", "--ignored", "x", "--baud", "57600"])
c = sim.settings([], group="D")
board = sim.build([])
board.rs485.write(b"nobody listens")
print(json.dumps({"a": a, "b": b, "c": c, "sent": board.uart.tx_bytes,
                  "any": board.uart.any(), "read": board.rs485.poll()}))
"""
    )
    result = json.loads(out.strip().splitlines()[-1])
    a, b, c = result["a"], result["b"], result["c"]
    assert a["group"] == "C" and a["uid"] == "sim-C" and a["role"] == "group"
    assert a["bus"] is None and a["panel"] is None and a["baud"] == 115200
    assert b["uid"] == "abc" and b["role"] == "mains" and b["baud"] == 57600
    assert c["group"] == "D" and c["uid"] == "sim-D"
    assert (tmp_path / "flash").is_dir()
    assert result["sent"] == 14 and result["any"] == 0 and result["read"] == 0


def test_sim_adc_drives_loadsim() -> None:
    out = run_micropython(
        """
import json, time
from firmware.loadsim import LoadSim
from firmware.drivers.sim.adc import SimAdc
import boards.sim
adc = SimAdc(LoadSim(), samples_per_block=64, sample_period_ns=boards.sim.SAMPLE_PERIOD_NS)
adc.start()
time.sleep_ms(60)
blk = adc.poll()
print(json.dumps({"n": len(blk), "lo": min(blk), "hi": max(blk), "made": adc.blocks}))
"""
    )
    result = json.loads(out.strip().splitlines()[-1])
    assert result["n"] == 64 * 13
    assert 0 <= result["lo"] <= result["hi"] <= 4095
    assert result["made"] >= 2


def test_sim_uart_reports_unreachable_bus(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match="SimBusError"):
        run_micropython(
            f"""
from firmware.drivers.sim.uart import SimUart
SimUart({str(tmp_path / "nobus")!r}, connect_timeout_ms=200)
"""
        )


def test_panel_state_line_is_the_state_as_json_and_allocates_nothing() -> None:
    out = run_micropython(
        """
import gc, json
from firmware.drivers.sim.panel import SimPanel
from firmware.drivers.status_inputs import NAMES, SimTemperature
group = SimPanel(None, uid="sim-A", group="A")
group.leds[3] = (160 << 8) | (20 << 16) | 7
group.set_display(bytearray([1, 2, 3, 250]), 4, True, " 7.3")
group.button_pins[4].down = True
group.button_pins[11].down = True
mains = SimPanel(None, uid='sim-"x', group="", n_leds=0, n_buttons=0, inputs=NAMES)
mains.temperature = SimTemperature(-15)
mains.input_pins[1].value(0)


def made_by(panel):  # locals only: a new global would grow the module's dict
    gc.collect()
    gc.disable()
    before = gc.mem_alloc()
    k = 0
    while k < 20:  # (a range() would allocate its iterator)
        panel.state_line()
        panel.heartbeat_line(123456)
        k += 1
    made = gc.mem_alloc() - before
    gc.enable()
    return made


lines = []
for panel in (group, mains):
    n = panel.state_line()
    lines.append([json.loads(bytes(panel._line[:n])), panel.state()])
    lines.append(made_by(panel))
n = mains.heartbeat_line(987654)
lines.append(json.loads(bytes(mains._line[:n])))
print(json.dumps(lines))
"""
    )
    (g_line, g_state), g_made, (m_line, m_state), m_made, beat = json.loads(
        out.strip().splitlines()[-1]
    )
    assert g_line == g_state and m_line == m_state
    assert g_line["leds"][3] == [160, 20, 7] and g_line["pressed"] == [5, 12]
    assert m_line["temperature"] == -1.5 and m_line["inputs"]["alarm"] == 1
    assert g_made == 0 and m_made == 0
    assert beat == {"hb": 987654, "wdt": 0}
