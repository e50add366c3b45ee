"""The RS-485 slave's protocol logic on MicroPython, fed frames directly (the real-stack
test through the virtual bus lives with the virtual PDU)."""

from __future__ import annotations

from pathlib import Path

from tests.mpy import run_micropython

PRELUDE = r"""
import os, sys, time
from array import array
from protocol import consts as C
from protocol.messages import *
from firmware.config import BoardConfig, ConfigStore
from firmware.slave import BusSlave

class Meas:
    def __init__(self):
        self.centiamps = array("H", [0, 735, 1600, 2400] + [0] * 8)
        self.states = bytearray([0, 1, 2, 3] + [0] * 8)
        self.crest_x10 = bytearray([0, 14, 14, 14] + [0] * 8)
        self.ttt_ds = array("H", [0, 0, 900, 40] + [0] * 8)
        self.windows = 7
        self.freq_centihz = 5000
        self.flags = 0

d = sys.argv[1]
store = ConfigStore(d)
cfg = store.load()
cfg.address = 3
cfg.group = "B"
uid = b"\x10\x20\x30\x40\x50\x60\x70\x80"
slave = BusSlave(uid, C.BOARD_SIM, cfg, store, measurements=Meas())

def exchange(msg, later_us=100000):
    wire = encode(msg) if not isinstance(msg, (bytes, bytearray)) else msg
    now = time.ticks_us()
    slave.receive(wire, len(wire), now)
    out = slave.due(time.ticks_add(now, later_us))
    return None if out is None else decode(bytes(out))
"""


def run(body: str, directory: Path) -> list[str]:
    return run_micropython(PRELUDE + body, args=[str(directory)]).split("\n")


def test_poll_telemetry_and_report(tmp_path: Path) -> None:
    out = run(
        r"""
t = exchange(Poll(C.T_TELEMETRY, dst=3, seq=5))
print(t.NAME, t.src, t.seq, t.centiamps[1], t.states[3], t.time_to_trip_ds)
r = exchange(Poll(C.T_REPORT, dst=3, seq=6))
print(r.NAME, r.centiamps[2], r.alarms[2], r.alarms[3])
print(exchange(Poll(C.T_REPORT, dst=4, seq=7)))
""",
        tmp_path,
    )
    assert out[0].startswith("Telemetry 3 5 735 3 ")
    assert "{2: 900, 3: 40}" in out[0] or "{3: 40, 2: 900}" in out[0]
    assert out[1] == "Report 1600 1 2"
    assert out[2] == "None"  # addressed to another board: never answered


def test_sync_schedules_slot(tmp_path: Path) -> None:
    out = run(
        r"""
wire = encode(Sync(1, 5012, 4000, 1, 0b1111_0111, 4, seq=9))
now = time.ticks_us()
slave.receive(wire, len(wire), now)
print(slave.due(time.ticks_add(now, 7999)) is None)  # slot 2: addresses 1, 2 before it
r = decode(bytes(slave.due(time.ticks_add(now, 8000))))
print(r.NAME, r.seq, slave.sync_freq_centihz)
wire = encode(Sync(2, 5000, 4000, 1, 0b1111_1011, 3, seq=10))
slave.receive(wire, len(wire), now)
print(slave.due(time.ticks_add(now, 27999)))  # detail after the 7 REPORT slots
print(decode(bytes(slave.due(time.ticks_add(now, 28000)))).NAME)
""",
        tmp_path,
    )
    assert out[:4] == ["True", "Report 9 5012", "None", "Telemetry"]


def test_superframe_rounds_detail_and_late_slot(tmp_path: Path) -> None:
    # 3 rounds of 4 slots (addresses 1, 2, 3, 5), slot 2500 µs, lead 3000 µs; this board
    # (address 3, slot index 2) is also the detail board.
    out = run(
        r"""
wire = encode(Sync(7, 0, 2500, 1, 0b1_0111, 3, 3, 3000, seq=11))
end = time.ticks_us()
slave.receive(wire, len(wire), end)
starts = []
for k in range(8):
    out = slave.due(end, 200_000)
    if out is None:
        break
    starts.append((decode(bytes(out)).NAME, time.ticks_diff(slave.tx_at_us, end)))
print(starts)
# Frames are handed over early: not before `ahead` of the start.
slave.receive(wire, len(wire), end)
print(slave.due(end, 7999) is None, slave.due(end, 8000) is not None)
# A slot whose start has passed is skipped and counted; the next round still goes out.
slave.receive(wire, len(wire), end)
print(slave.due(time.ticks_add(end, 8001)), slave.counters.late_slots)
print(decode(bytes(slave.due(end, 20000))).NAME, time.ticks_diff(slave.tx_at_us, end))
""",
        tmp_path,
    )
    rounds = [("Report", 3000 + 2500 * (4 * r + 2)) for r in range(3)]
    assert out[0] == repr([*rounds, ("Telemetry", 3000 + 2500 * 12)])
    assert out[1] == "True True"
    assert out[2] == "None 1"
    assert out[3] == "Report 18000"


def test_button_press_shows_in_the_encoded_report(tmp_path: Path) -> None:
    # The real FrontPanel on fake LEDs and display: a press selects channel 2 (index 1),
    # every REPORT slot (and a polled REPORT) then carries it, a second press clears it,
    # and the slot path with a selection allocates nothing.
    out = run(
        r"""
import micropython
from firmware.panel import FrontPanel, BLUE

class Leds:
    def __init__(self):
        self.c = [(0, 0, 0)] * 12
    def set(self, i, r, g, b):
        self.c[i] = (r, g, b)
    def write(self):
        pass

class Display:
    text = ""
    def show(self, text):
        self.text = text

leds, display = Leds(), Display()
panel = FrontPanel(leds, display, "B")
board = BusSlave(uid, C.BOARD_SIM, cfg, store, measurements=slave.measurements, panel=panel)
sync = encode(Sync(1, 5000, 3000, 1, 0b111, 0, 2, 3000, seq=4))

def slots():
    end = time.ticks_us()
    board.receive(sync, len(sync), end)
    got = []
    while True:
        frame = board.due(end, 100_000)
        if frame is None:
            return got
        got.append(frame)

print([decode(bytes(f)).selected for f in slots()])
now = time.ticks_ms()
panel.press(1, now)
m = slave.measurements
panel.render(m.states, m.centiamps, now)
print(leds.c[1] == BLUE, display.text)
print([decode(bytes(f)).selected for f in slots()])
polled = encode(Poll(C.T_REPORT, dst=3, seq=8))
t = time.ticks_us()
board.receive(polled, len(polled), t)
r = decode(bytes(board.due(time.ticks_add(t, 100_000))))
print(r.NAME, r.seq, r.selected, r.centiamps[1])
panel.press(11, now)
print(decode(bytes(slots()[0])).selected)
panel.press(11, now)
print(decode(bytes(slots()[0])).selected)

# Allocation-free: SYNC in, both REPORT slots out, a press in between.
panel.press(7, now)
slots()
end = time.ticks_us()
seen = bytearray(2)
at = 1 + C.HEADER_LEN + 21  # the panel byte in the wire frame (COBS code byte first)
f2 = None
micropython.heap_lock()
try:
    for k in range(50):
        board.receive(sync, len(sync), end)
        seen[0] = board.due(end, 100_000)[at]
        panel.press(2 if k & 1 else 9, now)
        f2 = board.due(end, 100_000)
        seen[1] = f2[at]
finally:
    micropython.heap_unlock()
print("locked", seen[0], seen[1], decode(bytes(f2)).selected)
""",
        tmp_path,
    )
    assert out[0] == "[-1, -1]"
    assert out[1] == "True  7.4"
    assert out[2] == "[1, 1]"
    assert out[3] == "Report 8 1 735"
    assert out[4] == "11"
    assert out[5] == "-1"
    # Last round of the locked loop (k = 49): slot 1 still had channel 9 (k = 48), slot 2
    # went out after the press of channel 2.
    assert out[6] == "locked 9 2 2"


def test_info_config_identify_and_naks(tmp_path: Path) -> None:
    out = run(
        r"""
i = exchange(GetInfo(dst=3, seq=1))
print(i.NAME, i.group, i.channels, i.uid == uid, i.config_digest == cfg.digest())
print(exchange(ConfigSet(C.K_CAL_GAIN, 2, 1002000, dst=3, seq=2)).NAME)
v = exchange(ConfigGet(C.K_CAL_GAIN, 2, dst=3, seq=3))
print(v.NAME, v.value, store.load().cal_gain_ppm[2])
n = exchange(ConfigGet(0x63, 0, dst=3, seq=4))
print(n.NAME, n.error)
bad = bytearray(encode(Poll(C.T_REPORT, dst=3)))
# A version-2 frame with a valid CRC: NAK 1.
from protocol.crc import crc32
raw = bytearray([2, 3, 0, 1, 8, 0x10])
raw += crc32(raw).to_bytes(4, "little")
from protocol.framing import cobs_encode_into
out = bytearray(20)
k = cobs_encode_into(raw, len(raw), out)
n = exchange(bytes(out[:k]) + b"\x00")
print(n.NAME, n.error)
seen = []
slave.on_identify = seen.append
print(exchange(Identify(5, dst=3, seq=8)).NAME, seen)
print(exchange(bad[:-4] + b"\x00"), slave.counters.rx_errors)
""",
        tmp_path,
    )
    assert out[0] == "Info B 12 True True"
    assert out[1] == "Ack"
    assert out[2] == "ConfigValue 1002000 1002000"
    assert out[3] == "Nak 5"
    assert out[4] == "Nak 1"
    assert out[5] == "Ack [5]"
    assert out[6] == "None 1"


def test_info_answer_is_the_encoded_info_and_follows_the_config(tmp_path: Path) -> None:
    # The INFO is packed from a kept digest: byte for byte what encode(Info(...)) gives,
    # after a change through the bus, one made beside the slave (the debug console sets the
    # config directly) and a flags change, each with the request's seq.
    out = run(
        r"""
def expected(seq):
    flags = slave.measurements.flags | (C.F_CONFIG_DEFAULTS if store.fallback else 0)
    return encode(Info(FW_VERSION, C.VERSION, C.BOARD_SIM, uid, cfg.group, C.CHANNELS,
                       cfg.digest(), flags, src=cfg.address, seq=seq))
def answer(seq):
    wire = encode(GetInfo(dst=cfg.address, seq=seq))
    now = time.ticks_us()
    slave.receive(wire, len(wire), now)
    return bytes(slave.due(time.ticks_add(now, 100000)))
from firmware.slave import FW_VERSION
print(answer(1) == expected(1), answer(2) == expected(2))
exchange(ConfigSet(C.K_RATING, 0, 1000, dst=3, seq=3))
print(answer(4) == expected(4))
cfg.set(C.K_CAL_GAIN, 5, 998000)          # beside the slave, as the console's `cal` does
cfg.set(C.K_GROUP, 0, "D")
slave.measurements.flags = C.F_CLIPPING
print(answer(5) == expected(5), decode(answer(6)).group)
""",
        tmp_path,
    )
    assert out[:3] == ["True True", "True", "True D"]


def test_discovery_and_assign(tmp_path: Path) -> None:
    out = run(
        r"""
cfg.address = C.ADDR_UNASSIGNED
r = exchange(Discover(seq=1))
print(r.NAME, r.address, r.src)
print(exchange(Discover(b"\x00" * 8, b"\x0f" + b"\xff" * 7, seq=2)))
a = exchange(Assign(uid, 9, "C", seq=3))
print(a.NAME, a.src, store.load().address, store.load().group)
print(exchange(Mute(uid, True, seq=4)).NAME)
print(exchange(Discover(seq=5)))
exchange(Mute(b"\xff" * 8, False, seq=6))
print(exchange(Discover(seq=7)).NAME)
""",
        tmp_path,
    )
    assert out[0] == "DiscoverReply 254 254"
    assert out[1] == "None"  # uid outside the branch
    assert out[2] == "Ack 9 9 C"
    assert out[3] == "Ack"
    assert out[4] == "None"  # muted
    assert out[5] == "DiscoverReply"
