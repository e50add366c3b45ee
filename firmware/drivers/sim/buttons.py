"""The monitor buttons' contacts, pressed from the sim panel (``firmware.drivers.buttons``
scans them as it scans the board's pins)."""

from time import ticks_add, ticks_diff, ticks_ms


class SimButtonPin:
    """An active-low button contact pressed from the panel (held down until a deadline)."""

    def __init__(self):
        self.down = False
        self._release_ms = 0
        self._timed = False

    def press(self, hold_ms):
        self._release_ms = ticks_add(ticks_ms(), hold_ms)
        self._timed = True

    def value(self, v=None):
        if self.down:
            return 0
        if self._timed:
            if ticks_diff(self._release_ms, ticks_ms()) > 0:
                return 0
            self._timed = False
        return 1
