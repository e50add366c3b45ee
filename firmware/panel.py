"""Front panel logic of one output group: the 12 monitor buttons' RGB LEDs and the group's
LOAD CURRENT display (manual, "Main output monitor buttons").

- off: no load; green: load within the rating; red slow flash (1 Hz): slight overload;
  red rapid flash (4 Hz): serious overload; blue: the selected output, whose current the
  LOAD CURRENT display shows.
- TRIPPED (current collapsed right after an overload) is shown steady dim red so the crew can
  find the output whose RCBO tripped; the manual leaves this case open.
- A press selects an output; pressing it again, or 60 s without a press, deselects it.
  With nothing selected the display shows an idle pattern with the group letter.
- Identify (from the aggregator) blinks every LED white at 2 Hz; boot runs a lamp test.

Pure logic over driver objects with ``leds.set(i, r, g, b)``, ``leds.write()`` and
``display.show(text)``, so it runs unchanged on the sim board.
"""

import time

from micropython import const

from protocol.consts import CHANNELS, ST_OFF, ST_OK, ST_SERIOUS, ST_SLIGHT, ST_TRIPPED

_SELECT_TIMEOUT_MS = const(60_000)
_SLOW_HALF_MS = const(500)  # 1 Hz
_FAST_HALF_MS = const(125)  # 4 Hz
_IDENTIFY_HALF_MS = const(250)  # 2 Hz
_DISPLAY_EVERY_MS = const(250)  # LOAD CURRENT refresh: readable, not flickering
_LEVEL = const(160)  # LED brightness (of 255): bright on stage, not blinding

# Colours (r, g, b) by meaning.
OFF = (0, 0, 0)
GREEN = (0, _LEVEL, 0)
RED = (_LEVEL, 0, 0)
DIM_RED = (_LEVEL // 4, 0, 0)
BLUE = (0, 0, _LEVEL)
WHITE = (_LEVEL, _LEVEL, _LEVEL)


def format_current(centiamps: int) -> str:
    """LOAD CURRENT text for 4 digits: '0.35', ' 7.3', '12.4', ' 123', ' OL '."""
    if centiamps == 0xFFFF or centiamps >= 999_95:
        return " OL "
    if centiamps < 100:
        return "0.%02d" % centiamps
    if centiamps < 995:
        tenths = (centiamps + 5) // 10
        return " %d.%d" % (tenths // 10, tenths % 10)
    if centiamps < 9995:
        tenths = (centiamps + 5) // 10
        return "%d.%d" % (tenths // 10, tenths % 10)
    return "%4d" % ((centiamps + 50) // 100)


def idle_text(group: str) -> str:
    return " -" + (group or "-") + "-"


class FrontPanel:
    def __init__(self, leds, display, group: str = "") -> None:
        self.leds = leds
        self.display = display
        self.group = group
        self.selected = -1
        self._last_press_ms = 0
        self._identify_until_ms = 0
        self._identify = False
        self._shown: list = [OFF] * CHANNELS  # what each LED shows now (to write only changes)
        self._text = ""
        self._text_ms = 0

    # -- inputs --------------------------------------------------------------------------
    def press(self, channel: int, now_ms) -> None:
        """A monitor button was pressed (channel 0..11)."""
        if channel == self.selected:
            self.selected = -1
        else:
            self.selected = channel
        self._last_press_ms = now_ms
        self._text_ms = time.ticks_add(now_ms, -_DISPLAY_EVERY_MS)  # show the new choice at once

    def identify(self, seconds: int, now_ms) -> None:
        self._identify = seconds > 0
        self._identify_until_ms = time.ticks_add(now_ms, seconds * 1000)

    @property
    def identifying(self) -> bool:
        return self._identify

    # -- outputs -------------------------------------------------------------------------
    def colour(self, channel: int, state: int, now_ms):
        """The colour a button shows now for ``state`` (flash phases from ``now_ms``)."""
        if self._identify:
            return WHITE if (now_ms // _IDENTIFY_HALF_MS) & 1 else OFF
        if channel == self.selected:
            return BLUE
        s = state & 0x07
        if s == ST_OK:
            return GREEN
        if s == ST_SLIGHT:
            return RED if (now_ms // _SLOW_HALF_MS) & 1 == 0 else OFF
        if s == ST_SERIOUS:
            return RED if (now_ms // _FAST_HALF_MS) & 1 == 0 else OFF
        if s == ST_TRIPPED:
            return DIM_RED
        return OFF

    def render(self, states, centiamps, now_ms) -> None:
        """Update LEDs and display from the latest channel states and currents."""
        if self._identify and time.ticks_diff(now_ms, self._identify_until_ms) >= 0:
            self._identify = False
        if self.selected >= 0 and (
            time.ticks_diff(now_ms, self._last_press_ms) >= _SELECT_TIMEOUT_MS
        ):
            self.selected = -1
        changed = False
        shown = self._shown
        for ch in range(CHANNELS):
            c = self.colour(ch, states[ch], now_ms)
            if c is not shown[ch]:
                shown[ch] = c
                self.leds.set(ch, c[0], c[1], c[2])
                changed = True
        if changed:
            self.leds.write()
        if time.ticks_diff(now_ms, self._text_ms) >= _DISPLAY_EVERY_MS:
            self._text_ms = now_ms
            if self._identify:
                text = "8888" if (now_ms // _IDENTIFY_HALF_MS) & 1 else "    "
            elif self.selected >= 0:
                text = format_current(centiamps[self.selected])
            else:
                text = idle_text(self.group)
            if text != self._text:
                self._text = text
                self.display.show(text)

    def lamp_test(self, sleep_ms=time.sleep_ms) -> None:
        """Boot lamp test: every LED red, green, blue, then all display segments."""
        for colour in (RED, GREEN, BLUE):
            for ch in range(CHANNELS):
                self.leds.set(ch, colour[0], colour[1], colour[2])
            self.leds.write()
            sleep_ms(300)
        self.display.show("8.8.8.8.")
        sleep_ms(500)
        for ch in range(CHANNELS):
            self.leds.set(ch, 0, 0, 0)
            self._shown[ch] = OFF
        self.leds.write()
        self._text = ""


__all__ = ["ST_OFF", "FrontPanel", "format_current", "idle_text"]
