"""Behavioural MCP3208 on the fake GPIO bank (tests only).

Follows the datasheet's single-ended frame: with CS low, leading zeros are ignored, the first
1 clocked in on a rising SCLK edge is the start bit, then SGL/DIFF and D2..D0; the rising
edge after D0 ends the sample; from the falling edge of that clock the chip drives DOUT with
a null bit (0) then B11..B0, each changed on a falling edge. DOUT is released (reads 1)
while CS is high. ``trace`` keeps ``(clock(), gpio, level)`` of every change of its pins.
"""

import machine


class Mcp3208Model:
    def __init__(self, name, cs, sclk, din, dout, code, clock=None):
        self.name = name
        self.cs = cs
        self.sclk = sclk
        self.din = din
        self.dout = dout
        self.code = code  # code(channel, n) -> 0..4095, n = conversions of that channel so far
        self.clock = clock
        self.selected = False
        self.started = False
        self.clocks = 0
        self.command = 0
        self.bits = []
        self.counts = [0] * 8
        self.conversions = []  # (channel, code)
        self.errors = []
        self.trace = []
        machine.drivers.append(self)
        machine.levels.setdefault(dout, 1)

    def changed(self, gpio):
        if gpio not in (self.cs, self.sclk, self.din):
            return
        level = machine.levels.get(gpio, 0)
        if self.clock is not None:
            self.trace.append((self.clock(), gpio, level))
        if gpio == self.cs:
            if level == 0:
                self.selected = True
                self.started = False
                self.clocks = 0
                self.command = 0
                self.bits = []
            else:
                if self.selected and self.started and self.clocks < 19:
                    self.errors.append(f"frame cut after {self.clocks} clocks")
                self.selected = False
                machine.levels[self.dout] = 1
            return
        if not self.selected or gpio != self.sclk:
            return
        if level == 1:
            din = machine.levels.get(self.din, 0)
            if not self.started:
                if din:
                    self.started = True
                    self.clocks = 1
                return
            self.clocks += 1
            if self.clocks <= 5:
                self.command = (self.command << 1) | din
            if self.clocks == 6:
                if not self.command & 0b1000:
                    self.errors.append("differential mode requested")
                channel = self.command & 7
                value = self.code(channel, self.counts[channel]) & 0xFFF
                self.counts[channel] += 1
                self.conversions.append((channel, value))
                self.bits = [0] + [(value >> i) & 1 for i in range(11, -1, -1)]
        elif self.started and self.clocks >= 6:
            machine.levels[self.dout] = self.bits.pop(0) if self.bits else 0
