"""WS2812 RGB LEDs under the 12 monitor buttons.

:class:`Ws2812` keeps one preallocated ``array('I')`` word per LED in the order the LEDs
expect on the wire, GRB, as ``g << 16 | r << 8 | b`` (24 bits, so every value stays a small
int on the RP2040). Setting colours and writing a frame allocate nothing. The *output* is any
object with ``write(words)``:

- :class:`PioOutput` on the RP2040: a PIO state machine (800 kHz WS2812 timing, T0H 0.375 us,
  T1H 0.75 us, bit 1.25 us at 8 MHz PIO clock) fed with ``sm.put(words, 8)``, which shifts each
  word left by 8 so its 24 colour bits leave MSB first. 12 LEDs take 0.36 ms on the wire; the
  TX FIFO absorbs 4 words so the call returns after ~0.2 ms.
- the sim panel on the unix port (it decodes the same words back to ``[r, g, b]``).

``brightness`` (0..255) scales every colour as it is set (integer maths).
"""

from array import array

from micropython import const

_PIO_FREQ = const(8_000_000)  # 10 PIO cycles per WS2812 bit = 1.25 us
_T1 = const(2)  # cycles of the bit's fixed high part
_T2 = const(5)  # cycles of the data part (high for 1, low for 0)
_T3 = const(3)  # cycles of the fixed low part

try:
    from typing import TYPE_CHECKING
except ImportError:
    TYPE_CHECKING = False

if TYPE_CHECKING:
    from rp2.asm_pio import jmp, label, nop, not_x, out, wrap, wrap_target, x


def pack(r, g, b):
    """One LED word in wire order (GRB) for 8-bit ``r``, ``g``, ``b``."""
    return (g & 0xFF) << 16 | (r & 0xFF) << 8 | (b & 0xFF)


def unpack(word):
    """``(r, g, b)`` of a word made by :func:`pack` (allocates: for tests and the sim)."""
    return (word >> 8) & 0xFF, (word >> 16) & 0xFF, word & 0xFF


class Ws2812:
    """``n`` LEDs: :meth:`set` / :meth:`fill` then :meth:`write` one frame."""

    def __init__(self, output, n=12, *, brightness=255):
        self._out = output
        self.n = n
        self.words = array("I", bytes(4 * n))
        self.brightness = brightness

    def __len__(self):
        return self.n

    def set(self, index, r, g, b):
        """Set LED ``index`` (0-based) to 8-bit ``r``, ``g``, ``b`` (scaled by brightness)."""
        k = self.brightness
        if k < 255:
            r = r * k // 255
            g = g * k // 255
            b = b * k // 255
        self.words[index] = (g & 0xFF) << 16 | (r & 0xFF) << 8 | (b & 0xFF)

    def set_word(self, index, word):
        """Set LED ``index`` from a word made by :func:`pack` (not scaled)."""
        self.words[index] = word

    def get(self, index):
        """Wire word of LED ``index``."""
        return self.words[index]

    def fill(self, r, g, b):
        """Set every LED to the same colour."""
        for i in range(self.n):
            self.set(i, r, g, b)

    def write(self):
        """Send the frame to the LEDs."""
        self._out.write(self.words)


def _ws2812_pio():
    wrap_target()
    label("bit")
    out(x, 1).side(0)[_T3 - 1]
    jmp(not_x, "zero").side(1)[_T1 - 1]
    jmp("bit").side(1)[_T2 - 1]
    label("zero")
    nop().side(0)[_T2 - 1]
    wrap()


class PioOutput:
    """WS2812 output through RP2040 PIO state machine ``sm_id`` on GPIO ``pin``."""

    def __init__(self, pin, sm_id=4):
        import rp2
        from machine import Pin

        program = rp2.asm_pio(
            sideset_init=rp2.PIO.OUT_LOW,
            out_shiftdir=rp2.PIO.SHIFT_LEFT,
            autopull=True,
            pull_thresh=24,
        )(_ws2812_pio)
        self._sm = rp2.StateMachine(sm_id, program, freq=_PIO_FREQ, sideset_base=Pin(pin))
        self._sm.active(1)

    def write(self, words):
        self._sm.put(words, 8)
