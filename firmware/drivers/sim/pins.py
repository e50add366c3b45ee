"""The sim board's contacts: :class:`SimPin`, a settable pin for drivers that take a
``machine.Pin`` (the RS-485 DE line, status inputs), and :class:`SimButtonPin`, a monitor
button pressed from the panel (``firmware.drivers.buttons`` scans them as the board's pins)."""

from time import ticks_add, ticks_diff, ticks_ms


class SimPin:
    """A settable pin: ``value()`` / ``value(v)``, like ``machine.Pin`` for drivers."""

    def __init__(self, value=0):
        self._value = value
        self.changes = 0

    def value(self, v=None):
        if v is None:
            return self._value
        v = 1 if v else 0
        if v != self._value:
            self._value = v
            self.changes += 1
        return None

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


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
