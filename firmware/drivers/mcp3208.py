"""Acquisition from two MCP3208 12-bit SPI ADCs on the RP2040: PIO + DMA, no CPU per sample.

Output contract (the RMS engine's): blocks of ``samples_per_block`` sample instants, each an
``array('H')`` of ``13 * samples_per_block`` values, channel-interleaved, 13 values per
instant in the order CT1..CT12 then VREF (the AC voltage reference used for cycle sync).
Values are 12-bit codes 0..4095; a value above 4095 means the ADC's null bit read 1, i.e.
the chip is missing or the bus is broken.

Wiring (one shared SPI bus, two chip selects):

    SCLK, DIN (MOSI), DOUT (MISO, both chips' outputs joined: DOUT is Hi-Z while CS is high)
    CS_A on GPIO ``cs_a``, CS_B on GPIO ``cs_a + 1`` (the PIO drives them as one 2-pin group)
    ADC A  CH0..CH7  = CT1..CT8
    ADC B  CH0..CH3  = CT9..CT12,  CH4 = VREF,  CH5..CH7 spare (see :meth:`read_raw`)

How it reaches the rate
-----------------------
Target: 13 channels x 3200 samples/s (64 per 50 Hz cycle) = 41.6 ksps in total
(``sample_period_ns`` sets the exact period).

MCP3208 frame (datasheet, single-ended): with CS low the master clocks in the start bit,
SGL/DIFF=1 and D2..D0 on rising SCLK edges 1-5; edge 6 ends the sample-and-hold (1.5 clocks
of acquisition); the chip then shifts a null bit and B11..B0 out on falling edges, read on
rising edges 7..19. So a conversion needs 19 clocks, not the 24 of three byte-aligned
``write_readinto`` bytes, plus CS high for t_CSH >= 500 ns between conversions. Max SCLK is
2 MHz at VDD = 5 V and 1 MHz at 2.7 V; the chips run at 3.3 V (DOUT drives the RP2040
directly, which is not 5 V tolerant), so the design budget is 1 MHz.

At 1 MHz: 19 us + CS high ~ 20 us per conversion = 50 ksps max on one bus, so 41.6 ksps is
83 % of the bus. Bit time alone is ~20 us per sample, and one Python ``spi.write_readinto``
per sample adds tens of microseconds of interpreter time (call, CS toggling, unpacking) at
24 us per sample budget: the CPU could not keep up, let alone compute RMS. A PIO state
machine clocks the frames with exact timing and DMA moves the results to RAM without the CPU.

The PIO program (:func:`_mcp3208_pio`) runs the whole 13-conversion schedule by itself: ADC A
CH0..CH7 then ADC B CH0..CH4, channel numbers counted down in Y and sent as ``~Y``
(so ``1 1 D2 D1 D0`` come out of the top of OSR), bit counts kept by the OSR shift counter
(``jmp(not_osre)``), one ``push(block)`` per conversion (a 13-bit value: null bit + B11..B0).
Each SCLK half period is ``_H`` = 4 PIO cycles; every conversion is exactly 162 cycles and a
sample instant is exactly :data:`CYCLES_PER_SAMPLE` = 2109 cycles, so the sample period sets
the PIO clock: at 3200 Hz it is 3200 x 2109 = 6.7488 MHz (divider ~18.52 from 125 MHz; the
8-bit fractional divider keeps the rate within 0.01 %), giving SCLK = 843.6 kHz, a 24.0 us
conversion, 1.78 us of sample time, 593 ns SCLK high/low, >= 889 ns CS high. The boards use
the RMS engine's period, ``firmware.rms.SAMPLE_US`` = 312 us (3205.1 Hz: PIO 6.760 MHz,
SCLK 845 kHz). Achievable maximum with this program at the 1 MHz limit: 8 MHz PIO clock ->
3793 samples/s per channel, 49.3 ksps in total (7586 samples/s at 2 MHz / 5 V).

DMA: a data channel reads the state machine's RX FIFO (16-bit reads, DREQ = PIO RX) into
one of a ring of ``depth`` ``array('H')`` buffers (2: ping-pong; the group board uses 4),
then chains to a control channel that writes the next buffer's address (from a ring-wrapped
table of ``depth`` words) into the data channel's ``WRITE_ADDR`` trigger alias: the buffers
rotate in hardware with no CPU help, so a late interrupt (flash erase, GC) can never make
the DMA write outside them. The data channel's completion raises a hard IRQ whose handler
only records which buffer is complete, the time, and sets a ``ThreadSafeFlag``. The
consumer takes the blocks in order; it may fall ``depth - 1`` blocks behind (a busy moment
on the core: 60 ms at depth 4 and 64 samples per block) before one is lost, and has one
block duration to finish with the block it took.
The RX FIFO is joined (8 deep) and the push blocks, so no value can be lost and the
13-value interleave can never slip.

On the unix port this module imports (the rp2/machine imports are inside the methods that
need them); :class:`Mcp3208BitBang` and the frame helpers are plain logic.
"""

import asyncio
from array import array
from time import sleep_us, ticks_diff, ticks_ms

from micropython import const

CHANNELS = const(13)  # CT1..CT12, VREF
VREF_INDEX = const(12)
SAMPLE_RATE = const(3200)  # default rate per channel, samples/s
SAMPLE_PERIOD_NS = const(312_500)  # default sample period (1 / SAMPLE_RATE)
MIN_PERIOD_NS = const(263_625)  # CYCLES_PER_SAMPLE / 8 MHz: SCLK at the 1 MHz limit
CYCLES_PER_CONVERSION = const(162)
CYCLES_PER_SAMPLE = const(2109)  # 3 + 13 * 162 PIO cycles per sample instant
PIO_FREQ = const(6_748_800)  # at the default period: SAMPLE_RATE * CYCLES_PER_SAMPLE
SCLK_HZ = const(843_600)  # at the default period: PIO_FREQ / (2 * _H)
MAX_CODE = const(4095)
_H = const(4)  # PIO cycles per SCLK half period

_ADC_A_CHANNELS = const(8)  # logical channels 0..7 on ADC A, 8..12 on ADC B
_DREQ_PIO0_RX0 = const(4)
_DREQ_PIO1_RX0 = const(12)
_TREQ_PERMANENT = const(0x3F)
_PIO0_RXF0 = const(0x50200020)
_PIO1_RXF0 = const(0x50300020)
_DMA_BASE = const(0x50000000)
_DMA_CH_STRIDE = const(0x40)
_DMA_AL2_WRITE_ADDR_TRIG = const(0x2C)
_SEQ_MASK = const(0x3FFFFFFF)

try:
    from typing import TYPE_CHECKING
except ImportError:
    TYPE_CHECKING = False

if TYPE_CHECKING:
    from rp2.asm_pio import (
        block,
        in_,
        invert,
        jmp,
        label,
        mov,
        not_osre,
        null,
        osr,
        out,
        pins,
        push,
        set,
        wrap,
        wrap_target,
        x,
        x_dec,
        y,
        y_dec,
    )


class Mcp3208Error(Exception):
    """ADC stream misconfigured, not running, or not answering."""


def channel_address(index):
    """``(adc, channel)`` of logical channel ``index`` (0..12): adc 0 = A, 1 = B."""
    if index < _ADC_A_CHANNELS:
        return 0, index
    return 1, index - _ADC_A_CHANNELS


def pio_freq(period_ns):
    """PIO clock (Hz) that makes one sample instant last ``period_ns``."""
    return (CYCLES_PER_SAMPLE * 1_000_000_000 + period_ns // 2) // period_ns


def command_bits(channel):
    """The 5 command bits (start, SGL/DIFF=1, D2, D1, D0) for a single-ended ``channel``."""
    return 0b11000 | (channel & 7)


def _mcp3208_pio():
    # One sample instant: 8 conversions on ADC A, then 5 on ADC B. Side-set = SCLK.
    # set pins: bit 0 = CS_A, bit 1 = CS_B (active low).
    wrap_target()
    set(y, 7).side(0)
    label("a_conv")
    mov(osr, invert(y)).side(0)  # OSR = ~Y: bits 4..0 = 1 1 D2 D1 D0, shift count = 0
    set(pins, 0b10).side(0)  # CS_A low
    out(null, 27).side(0)[_H - 2]  # drop 27 bits: 5 command bits left, count = 27
    label("a_cmd")
    out(pins, 1).side(0)[_H - 1]  # DIN = next command bit while SCLK is low
    jmp(not_osre, "a_cmd").side(1)[_H - 1]  # rising edge: the chip latches DIN
    mov(osr, null).side(0)[_H - 1]  # clock 6: end of sample-and-hold
    out(null, 19).side(1)[_H - 1]  # count = 19: 13 bits to read
    label("a_bit")
    out(null, 1).side(0)[_H - 1]  # falling edge: chip shifts out null bit, B11..B0
    in_(pins, 1).side(1)[_H - 2]  # rising edge: sample DOUT
    jmp(not_osre, "a_bit").side(1)
    set(pins, 0b11).side(0)[1]  # CS high
    push(block).side(0)
    jmp(y_dec, "a_conv").side(0)[1]
    set(x, 4).side(0)
    set(y, 7).side(0)
    label("b_conv")
    mov(osr, invert(y)).side(0)
    set(pins, 0b01).side(0)  # CS_B low
    out(null, 27).side(0)[_H - 2]
    label("b_cmd")
    out(pins, 1).side(0)[_H - 1]
    jmp(not_osre, "b_cmd").side(1)[_H - 1]
    mov(osr, null).side(0)[_H - 1]
    out(null, 19).side(1)[_H - 1]
    label("b_bit")
    out(null, 1).side(0)[_H - 1]
    in_(pins, 1).side(1)[_H - 2]
    jmp(not_osre, "b_bit").side(1)
    set(pins, 0b11).side(0)[1]
    push(block).side(0)
    jmp(y_dec, "b_next").side(0)  # only decrements Y (both paths continue below)
    label("b_next")
    jmp(x_dec, "b_conv").side(0)
    wrap()


_program = None


def assemble():
    """The assembled PIO program, built once (needs ``rp2``: the board or a test fake)."""
    global _program
    if _program is not None:
        return _program
    import rp2

    pio = rp2.PIO
    program = rp2.asm_pio(
        set_init=[pio.OUT_HIGH, pio.OUT_HIGH],
        out_init=pio.OUT_LOW,
        sideset_init=pio.OUT_LOW,
        in_shiftdir=pio.SHIFT_LEFT,
        out_shiftdir=pio.SHIFT_LEFT,
        fifo_join=pio.JOIN_RX,
    )(_mcp3208_pio)
    _program = program
    return program


class Mcp3208BitBang:
    """One conversion at a time over plain GPIOs (debug / spare channels; ~1 ms each).

    ``cs``: sequence of two chip-select pins (A, B); ``sclk``, ``din`` outputs, ``dout`` input.
    Uses the same 19-clock frame as the PIO program.
    """

    def __init__(self, cs, sclk, din, dout, *, half_period_us=2):
        self._cs = cs
        self._sclk = sclk
        self._din = din
        self._dout = dout
        self._half = half_period_us
        for pin in cs:
            pin.value(1)
        sclk.value(0)

    def read(self, adc, channel):
        """Code 0..4095 of ``channel`` (0..7) on ``adc`` (0 = A, 1 = B); raises if no ADC."""
        cs = self._cs[adc]
        sclk = self._sclk
        din = self._din
        dout = self._dout
        half = self._half
        cmd = command_bits(channel)
        cs.value(0)
        sleep_us(half)
        for i in range(4, -1, -1):
            din.value((cmd >> i) & 1)
            sleep_us(half)
            sclk.value(1)
            sleep_us(half)
            sclk.value(0)
        sleep_us(half)
        sclk.value(1)  # clock 6: end of sample-and-hold
        sleep_us(half)
        value = 0
        for _ in range(13):  # null bit + B11..B0
            sclk.value(0)
            sleep_us(half)
            sclk.value(1)
            value = (value << 1) | dout.value()
            sleep_us(half)
        sclk.value(0)
        cs.value(1)
        if value > MAX_CODE:
            raise Mcp3208Error("MCP3208 null bit not 0: ADC missing?")
        return value


class Mcp3208Stream:
    """13-channel continuous acquisition (see module doc). GPIO numbers as ints.

    ``cs_a``: CS of ADC A; CS of ADC B must be GPIO ``cs_a + 1``. ``sm_id``: PIO state
    machine 0..7 (the program takes 30 of a PIO block's 32 instructions, so keep other
    programs on the other PIO block). ``samples_per_block``: sample instants per block.
    ``sample_period_ns``: time between sample instants (default 312 500 ns = 3200 Hz; at
    least :data:`MIN_PERIOD_NS`, where SCLK reaches 1 MHz).
    """

    def __init__(
        self,
        *,
        sclk,
        din,
        dout,
        cs_a,
        sm_id=0,
        samples_per_block=64,
        sample_period_ns=SAMPLE_PERIOD_NS,
        depth=2,
    ):
        if sample_period_ns < MIN_PERIOD_NS:
            raise ValueError("sample period too short for a 1 MHz SCLK")
        if depth not in (2, 4, 8):
            raise ValueError("depth 2, 4 or 8 (the DMA address ring wraps at a power of 2)")
        self.sclk = sclk
        self.din = din
        self.dout = dout
        self.cs_a = cs_a
        self.sm_id = sm_id
        self.samples_per_block = samples_per_block
        self.sample_period_ns = sample_period_ns
        self.sample_rate = (1_000_000_000 + sample_period_ns // 2) // sample_period_ns
        self.channels = CHANNELS
        n = samples_per_block * CHANNELS
        self._n = n
        self._nbytes = 2 * n
        self._depth = depth
        self._halves = tuple(array("H", bytes(2 * n)) for _ in range(depth))
        self._addrs = [0] * depth  # buffer addresses, for the IRQ (full width: host tests)
        self._table = array("I", bytes(8 * depth))  # depth addresses, placed aligned
        self._table_offset = 0
        self._done = bytearray(depth)  # buffer completed as block number k, at k % depth
        bits = 2
        while 1 << bits < 4 * depth:
            bits += 1
        self._ring_bits = bits  # log2 of the address table's size in bytes
        self._period_ms = (samples_per_block * sample_period_ns + 500_000) // 1_000_000
        self.flag = asyncio.ThreadSafeFlag()
        self._sm = None
        self._data = None
        self._ctrl = None
        self._seq = 0  # blocks completed (IRQ side), wraps at 2**30
        self._taken = 0  # blocks handed out (consumer side)
        self._ready = 0  # index of the buffer completed last
        self._irq_ms = 0
        self.blocks = 0
        self.overruns = 0  # blocks the consumer never took
        self.most_behind = 0  # most blocks ever waiting at a poll (ring depth - 1 is safe)
        self.behind = 0  # the same since the reader last set it to 0 (the console's errors)
        self.missed_irqs = 0  # completions seen late (flash erase, long IRQ lock)
        self.running = False

    # -- IRQ side (hard IRQ: no allocation) ---------------------------------------------

    def _on_block(self, dma):
        # The data channel has already been re-pointed at the next buffer by the control
        # channel, so the one before the buffer being written is the one just completed.
        write = dma.write
        addrs = self._addrs
        nbytes = self._nbytes
        depth = self._depth
        i = 0
        while i < depth - 1 and not 0 <= write - addrs[i] < nbytes:
            i += 1
        half = i - 1 if i else depth - 1
        now = ticks_ms()
        if self._seq:
            late = ticks_diff(now, self._irq_ms) - self._period_ms
            if late > self._period_ms // 2:
                self.missed_irqs += (late + self._period_ms // 2) // self._period_ms
        self._irq_ms = now
        self._ready = half
        seq = (self._seq + 1) & _SEQ_MASK
        self._done[seq % depth] = half
        self._seq = seq
        self.flag.set()

    # -- control --------------------------------------------------------------------------

    def start(self):
        """Start continuous acquisition (PIO program, DMA channels, IRQ)."""
        if self.running:
            return
        import rp2
        import uctypes
        from machine import Pin

        depth = self._depth
        half0 = self._halves[0]
        addrs = self._addrs
        for i in range(depth):
            addrs[i] = uctypes.addressof(self._halves[i])
        table = self._table
        ring_bytes = 4 * depth
        # The ring wraps the read address at ring_bytes: the table must be aligned to it.
        off = (-uctypes.addressof(table) % ring_bytes) // 4
        self._table_offset = off
        # The control channel loads buffer 1, 2, .., 0, 1, ... (buffer 0 is the first).
        for i in range(depth):
            table[off + i] = addrs[(i + 1) % depth]
        table_addr = uctypes.addressof(table) + 4 * off

        sm_id = self.sm_id
        pio_block = sm_id >> 2
        sm_in_block = sm_id & 3
        rxf = (_PIO1_RXF0 if pio_block else _PIO0_RXF0) + 4 * sm_in_block
        dreq = (_DREQ_PIO1_RX0 if pio_block else _DREQ_PIO0_RX0) + sm_in_block

        sm = rp2.StateMachine(
            sm_id,
            assemble(),
            freq=pio_freq(self.sample_period_ns),
            sideset_base=Pin(self.sclk),
            out_base=Pin(self.din),
            set_base=Pin(self.cs_a),
            in_base=Pin(self.dout),
        )
        self._sm = sm
        data = rp2.DMA()
        ctrl = rp2.DMA()
        self._data = data
        self._ctrl = ctrl
        data_channel = data.channel  # pyright: ignore[reportAttributeAccessIssue]
        ctrl_channel = ctrl.channel  # pyright: ignore[reportAttributeAccessIssue]
        ctrl.config(
            read=table_addr,
            write=_DMA_BASE + _DMA_CH_STRIDE * data_channel + _DMA_AL2_WRITE_ADDR_TRIG,
            count=1,
            ctrl=ctrl.pack_ctrl(
                size=2,
                inc_read=True,
                inc_write=False,
                ring_size=self._ring_bits,
                ring_sel=False,
                treq_sel=_TREQ_PERMANENT,
                irq_quiet=True,
            ),
        )
        data.irq(handler=self._on_block, hard=True)
        data.config(
            read=rxf,
            write=half0,
            count=self._n,
            ctrl=data.pack_ctrl(
                size=1,
                inc_read=False,
                inc_write=True,
                treq_sel=dreq,
                chain_to=ctrl_channel,
                irq_quiet=False,
            ),
            trigger=True,
        )
        self._seq = 0
        self._taken = 0
        self.running = True
        sm.active(1)

    def stop(self):
        """Stop acquisition and release the DMA channels (the PIO state machine is halted)."""
        if not self.running:
            return
        self.running = False
        sm = self._sm
        if sm is not None:
            sm.active(0)
        for dma in (self._data, self._ctrl):
            if dma is not None:
                dma.irq(handler=None)
                dma.active(0)
                dma.close()
        self._data = None
        self._ctrl = None
        self._sm = None

    # -- consumer -------------------------------------------------------------------------

    def poll(self):
        """The next completed block (``array('H')``) if one is waiting, else None.

        Blocks come in order; when the consumer has fallen ``depth`` blocks behind, the
        overwritten ones are counted in :attr:`overruns` and it goes on with the newest.
        """
        seq = self._seq
        taken = self._taken
        if seq == taken:
            return None
        lag = (seq - taken) & _SEQ_MASK
        if lag > self.behind:
            self.behind = lag
            if lag > self.most_behind:
                self.most_behind = lag
        depth = self._depth
        if lag >= depth:
            # The oldest ones are overwritten: go on with those the ring still holds.
            lost = lag - (depth - 1)
            self.overruns += lost
            taken = (taken + lost) & _SEQ_MASK
        taken = (taken + 1) & _SEQ_MASK
        self._taken = taken
        self.blocks += 1
        return self._halves[self._done[taken % depth]]

    async def block(self):
        """Wait for and return the next completed block (valid for one block period)."""
        while True:
            buf = self.poll()
            if buf is not None:
                return buf
            if not self.running:
                raise Mcp3208Error("acquisition not started")
            await self.flag.wait()

    def read_channel(self, index):
        """Latest code of logical channel ``index`` (0..11 = CT1..CT12, 12 = VREF).

        While streaming: the last instant of the newest block. Otherwise a slow bit-banged
        conversion (the pins are taken back by :meth:`start`).
        """
        if not 0 <= index < CHANNELS:
            raise ValueError("channel 0..12")
        if self.running:
            if self._seq == 0:
                raise Mcp3208Error("no block yet")
            buf = self._halves[self._ready]
            return buf[self._n - CHANNELS + index]
        adc, channel = channel_address(index)
        return self.read_raw(adc, channel)

    def read_raw(self, adc, channel):
        """Slow one-off conversion of any ``channel`` 0..7 on ``adc`` 0/1 (not while streaming)."""
        if self.running:
            raise Mcp3208Error("stop() the stream first")
        from machine import Pin

        bus = Mcp3208BitBang(
            (Pin(self.cs_a, Pin.OUT, value=1), Pin(self.cs_a + 1, Pin.OUT, value=1)),
            Pin(self.sclk, Pin.OUT, value=0),
            Pin(self.din, Pin.OUT, value=0),
            Pin(self.dout, Pin.IN),
        )
        return bus.read(adc, channel)
