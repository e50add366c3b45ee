"""A settable pin for drivers that take a ``machine.Pin`` (the RS-485 DE line, status inputs)."""


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
