"""Front panel logic on MicroPython: colours, flash rates, selection, display text."""

from __future__ import annotations

from tests.mpy import run_micropython

SCRIPT = r"""
from firmware.panel import FrontPanel, format_current, GREEN, RED, BLUE, OFF, DIM_RED
from array import array

class Leds:
    def __init__(self):
        self.c = [(0, 0, 0)] * 12
        self.writes = 0
    def set(self, i, r, g, b):
        self.c[i] = (r, g, b)
    def write(self):
        self.writes += 1

class Display:
    def __init__(self):
        self.text = ""
    def show(self, text):
        self.text = text

leds, disp = Leds(), Display()
p = FrontPanel(leds, disp, "C")
states = bytearray([0, 1, 2, 3, 4] + [0] * 7)
amps = array("H", [0, 732, 1700, 2400, 0] + [0] * 7)

def flashes(ch, t0, t1, step=5):
    # Count on/off transitions of channel ch between t0 and t1 ms.
    last = None
    n = 0
    for t in range(t0, t1 + 1, step):
        p.render(states, amps, t)
        on = leds.c[ch] != (0, 0, 0)
        if last is not None and on != last:
            n += 1
        last = on
    return n

p.render(states, amps, 1000)
print("colours", leds.c[0] == OFF, leds.c[1] == GREEN, leds.c[4] == DIM_RED, disp.text)
print("slow", flashes(2, 1000, 5000), "fast", flashes(3, 1000, 5000))
p.press(1, 6000)
p.render(states, amps, 6000)
print("selected", leds.c[1] == BLUE, disp.text)
p.press(3, 7000)
p.render(states, amps, 7000)
print("other", leds.c[1] == GREEN, leds.c[3] == BLUE, disp.text)
p.render(states, amps, 7000 + 60000)
print("timeout", p.selected, disp.text)
p.press(2, 70000); p.press(2, 70500); p.render(states, amps, 70500)
print("again", p.selected, disp.text)
p.identify(2, 80000)
print("identify", flashes(1, 80000, 81999), p.identifying)
p.render(states, amps, 82100)
print("after", p.identifying, leds.c[1] == GREEN)
"""


def test_panel_colours_flash_rates_selection() -> None:
    lines = run_micropython(SCRIPT).split("\n")
    assert lines[0] == "colours True True True  -C-"
    # 4 s of 1 Hz flashing = 8 transitions; 4 Hz = 32.
    assert lines[1] == "slow 8 fast 32"
    assert lines[2] == "selected True  7.3"
    assert lines[3] == "other True True 24.0"
    assert lines[4] == "timeout -1  -C-"
    assert lines[5] == "again -1  -C-"
    assert lines[6] == "identify 7 True"  # 2 Hz for 2 s
    assert lines[7] == "after False True"
