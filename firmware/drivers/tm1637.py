"""TM1637 4-digit 7-segment display (the group's LOAD CURRENT display).

Two layers, so the logic runs on the unix port:

- :class:`Display` turns text such as ``" 7.3"``, ``"12.4"``, ``"0.35"`` or ``"-A- "`` into four
  segment bytes through a precomputed table, keeps brightness / on-off, and writes to its
  *wire* only when something changed. A ``"."`` lights the decimal point of the digit before
  it, so ``"12.4"`` takes three digit cells; text shorter than four cells is right-aligned
  (``"7.3"`` shows as ``"  7.3"``), longer text is cut after four cells. The module must
  have one decimal point per digit (segment bit 7); colon-only modules light the colon for
  the point of digit 2.
- :class:`Tm1637Wire` bit-bangs the TM1637 two-wire protocol per the datasheet: START (DIO
  falls while CLK is high), bytes LSB first with DIO changed while CLK is low, the chip's ACK
  (DIO pulled low) read on the 9th clock, STOP (DIO rises while CLK is high). One refresh
  is three transactions: data command ``0x40`` (write, auto-increment), address command
  ``0xC0`` followed by the four segment bytes, display control ``0x88 | brightness`` (or
  ``0x80`` = off). ``clk`` is an output, ``dio`` an open-drain pin with pull-up
  (``value(1)`` releases the line, ``value()`` reads it).

Segment bits: a=0x01 b=0x02 c=0x04 d=0x08 e=0x10 f=0x20 g=0x40 dp=0x80. ``show()`` allocates
nothing when given ``bytes``; ``str`` input is fine outside hot paths.
"""

from time import sleep_us

from micropython import const

DIGITS = const(4)
_CMD_DATA_AUTO = const(0x40)
_CMD_ADDRESS = const(0xC0)
_CMD_DISPLAY = const(0x80)
_DISPLAY_ON = const(0x08)
_DP = const(0x80)
_DOT = const(0x2E)  # "."
_COMMA = const(0x2C)  # ","
_FIRST = const(0x20)  # table starts at " "

# Segment patterns for ASCII 0x20..0x7F; unknown characters are blank.
SEGMENTS = (
    b"\x00\x86\x22\x76\x6d\x52\x7f\x20\x39\x0f\x63\x46\x80\x40\x80\x52"
    b"\x3f\x06\x5b\x4f\x66\x6d\x7d\x07\x7f\x6f\x00\x00\x58\x48\x4c\x53"
    b"\x7b\x77\x7c\x39\x5e\x79\x71\x3d\x76\x30\x1e\x75\x38\x37\x54\x3f"
    b"\x73\x67\x50\x6d\x78\x3e\x1c\x2a\x76\x6e\x5b\x39\x64\x0f\x23\x08"
    b"\x02\x5f\x7c\x58\x5e\x7b\x71\x6f\x74\x10\x0e\x75\x30\x37\x54\x5c"
    b"\x73\x67\x50\x6d\x78\x1c\x1c\x2a\x76\x6e\x5b\x39\x30\x0f\x01\x00"
)


def segment(code):
    """Segment byte for one character code (an int); 0 for anything not in the table."""
    code -= _FIRST
    if 0 <= code < 96:
        return SEGMENTS[code]
    return 0


def encode(text, out):
    """Encode ``text`` (str or bytes) into ``out`` (bytearray of 4): right-aligned cells.

    Returns the number of cells the text used (at most 4; extra cells are dropped).
    """
    n = 0
    cells = out
    for i in range(DIGITS):
        cells[i] = 0
    is_str = isinstance(text, str)
    for i in range(len(text)):
        code = ord(text[i]) if is_str else text[i]
        if code == _DOT or code == _COMMA:
            if n > 0 and not cells[n - 1] & _DP:
                cells[n - 1] |= _DP
                continue
            if n >= DIGITS:
                break
            cells[n] = _DP
            n += 1
            continue
        if n >= DIGITS:
            break
        cells[n] = segment(code)
        n += 1
    shift = DIGITS - n
    if shift:
        for i in range(DIGITS - 1, -1, -1):
            cells[i] = cells[i - shift] if i >= shift else 0
    return n


class Tm1637Wire:
    """Bit-banged TM1637 transport on two pins (``clk`` output, ``dio`` open-drain)."""

    def __init__(self, clk, dio, *, delay_us=10):
        self._clk = clk
        self._dio = dio
        self._delay = delay_us
        self.nacks = 0
        clk.value(1)
        dio.value(1)

    def _start(self):
        self._dio.value(1)
        self._clk.value(1)
        sleep_us(self._delay)
        self._dio.value(0)
        sleep_us(self._delay)

    def _stop(self):
        self._clk.value(0)
        sleep_us(self._delay)
        self._dio.value(0)
        sleep_us(self._delay)
        self._clk.value(1)
        sleep_us(self._delay)
        self._dio.value(1)
        sleep_us(self._delay)

    def _byte(self, b):
        clk = self._clk
        dio = self._dio
        delay = self._delay
        for _ in range(8):
            clk.value(0)
            dio.value(b & 1)
            sleep_us(delay)
            clk.value(1)
            sleep_us(delay)
            b >>= 1
        # ACK: the chip pulls DIO low from the 8th falling edge to the end of the 9th clock.
        clk.value(0)
        dio.value(1)
        sleep_us(delay)
        clk.value(1)
        sleep_us(delay)
        ack = dio.value() == 0
        clk.value(0)
        if not ack:
            self.nacks += 1
        return ack

    def write(self, segments, level, on, text=None):
        """Send four segment bytes and the display control; False if any byte was not ACKed."""
        ok = True
        self._start()
        ok &= self._byte(_CMD_DATA_AUTO)
        self._stop()
        self._start()
        ok &= self._byte(_CMD_ADDRESS)
        for i in range(DIGITS):
            ok &= self._byte(segments[i])
        self._stop()
        self._start()
        ok &= self._byte(_CMD_DISPLAY | (_DISPLAY_ON | level if on else 0))
        self._stop()
        return ok


class Display:
    """The LOAD CURRENT display: text, brightness 0..7, on/off; refreshes only on change.

    ``wire``: an object with ``write(segments, level, on, text) -> bool`` (:class:`Tm1637Wire`
    on the board, the sim panel's display on the unix port).
    """

    def __init__(self, wire, *, level=4):
        self._wire = wire
        self.segments = bytearray(DIGITS)
        self._sent = bytearray(DIGITS)
        self.text = ""
        self.level = level & 7
        self.on = True
        self.errors = 0
        self._dirty = True

    def show(self, text):
        """Show ``text`` (see module doc for the layout rules) and refresh if it changed."""
        if text == self.text and not self._dirty:
            return
        self.text = text
        encode(text, self.segments)
        self._refresh()

    def show_segments(self, raw):
        """Show four raw segment bytes (bit 7 = decimal point)."""
        for i in range(DIGITS):
            self.segments[i] = raw[i]
        self.text = ""
        self._refresh()

    def brightness(self, level):
        """Set brightness 0 (dimmest) .. 7 (brightest)."""
        level &= 7
        if level != self.level:
            self.level = level
            self._dirty = True
            self._refresh()

    def power(self, on):
        """Switch the display on (True) or blank it (False)."""
        on = bool(on)
        if on != self.on:
            self.on = on
            self._dirty = True
            self._refresh()

    def _refresh(self):
        segs = self.segments
        sent = self._sent
        if not self._dirty:
            same = True
            for i in range(DIGITS):
                if segs[i] != sent[i]:
                    same = False
                    break
            if same:
                return
        if not self._wire.write(segs, self.level, self.on, self.text):
            self.errors += 1
            self._dirty = True  # try again on the next show()
            return
        for i in range(DIGITS):
            sent[i] = segs[i]
        self._dirty = False
