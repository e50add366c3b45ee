"""Debounced digital inputs and the 12 monitor buttons (poll-based, no allocation per poll).

Hardware access is one call per input: ``pin.value()`` on whatever objects the board hands in
(``machine.Pin`` on the Pico, virtual pins on the sim board), so the logic runs unchanged on
the unix port. Call :meth:`DebouncedInputs.poll` every few milliseconds (5-10 ms) with
``time.ticks_ms()``; events land in a preallocated ring and are taken with :meth:`pop`.

An event is one int: ``kind | index`` with ``index`` 0-based (button 1 is index 0) and
``kind`` one of :data:`ACTIVE` (= :data:`PRESS`), :data:`INACTIVE` (= :data:`RELEASE`) or
:data:`LONG`. The timestamp (ms, the ``ticks_ms`` value at which the change *began*) of the
last popped event is in :attr:`DebouncedInputs.event_ms`.

Debounce rule: a new level is accepted once the raw level has differed from the stable level
on every poll for at least ``debounce_ms``; any bounce back to the stable level restarts the
wait. All timestamps are ``ticks_ms`` values compared with ``ticks_diff`` (wrap-safe).
"""

from array import array
from time import ticks_diff

from micropython import const

ACTIVE = const(0x100)
INACTIVE = const(0x200)
LONG = const(0x300)
PRESS = const(0x100)
RELEASE = const(0x200)
KIND_MASK = const(0x300)
INDEX_MASK = const(0xFF)
NO_EVENT = const(-1)


def event_index(event):
    """0-based input index of an event returned by :meth:`DebouncedInputs.pop`."""
    return event & INDEX_MASK


def event_kind(event):
    """:data:`ACTIVE`/:data:`PRESS`, :data:`INACTIVE`/:data:`RELEASE` or :data:`LONG`."""
    return event & KIND_MASK


class DebouncedInputs:
    """N debounced level inputs with an event ring.

    ``pins``: sequence of objects with ``value() -> 0/1``. ``active_low``: the input is active
    when the pin reads 0 (contacts to ground with pull-ups, opto-couplers). ``queue``: ring
    capacity; when full, new events are dropped and counted in :attr:`dropped`.
    """

    def __init__(self, pins, *, active_low=True, debounce_ms=20, queue=16):
        n = len(pins)
        if n == 0 or n > INDEX_MASK:
            raise ValueError("1..255 inputs")
        self._pins = pins
        self._n = n
        self._invert = 1 if active_low else 0
        self.debounce_ms = debounce_ms
        self._stable = bytearray(n)  # debounced level, 1 = active
        self._pending = bytearray(n)  # 1 while the raw level differs from the stable one
        self._since = array("i", bytes(4 * n))  # ticks_ms when the difference began
        self._changed_ms = array("i", bytes(4 * n))  # ticks_ms of the last accepted change
        self._ev = array("H", bytes(2 * queue))
        self._ev_ms = array("i", bytes(4 * queue))
        self._qlen = queue
        self._head = 0  # next slot to write
        self._count = 0
        self.dropped = 0
        self.event_ms = 0
        self._primed = False

    def __len__(self):
        return self._n

    def _push(self, event, ms):
        if self._count >= self._qlen:
            self.dropped += 1
            return
        head = self._head
        self._ev[head] = event
        self._ev_ms[head] = ms
        head += 1
        self._head = 0 if head >= self._qlen else head
        self._count += 1

    def pop(self):
        """Oldest queued event (``kind | index``) or :data:`NO_EVENT` (-1)."""
        if self._count == 0:
            return NO_EVENT
        tail = self._head - self._count
        if tail < 0:
            tail += self._qlen
        self._count -= 1
        self.event_ms = self._ev_ms[tail]
        return self._ev[tail]

    def pending(self):
        """Number of queued events."""
        return self._count

    def clear(self):
        """Drop all queued events."""
        self._count = 0

    def active(self, index):
        """Debounced level of input ``index`` (True = active / pressed)."""
        return self._stable[index] == 1

    def mask(self):
        """Debounced levels as a bitmask (bit i = input i active)."""
        m = 0
        stable = self._stable
        for i in range(self._n):
            if stable[i]:
                m |= 1 << i
        return m

    def changed_ms(self, index):
        """``ticks_ms`` at which input ``index`` last changed (debounced)."""
        return self._changed_ms[index]

    def prime(self, now_ms):
        """Take the current raw levels as the stable state without events (power-up)."""
        pins = self._pins
        inv = self._invert
        for i in range(self._n):
            self._stable[i] = pins[i].value() ^ inv
            self._pending[i] = 0
            self._changed_ms[i] = now_ms
        self._primed = True

    def poll(self, now_ms):
        """Sample every input once; return the number of events queued by this call."""
        if not self._primed:
            self.prime(now_ms)
            return 0
        pins = self._pins
        inv = self._invert
        stable = self._stable
        pending = self._pending
        since = self._since
        wait = self.debounce_ms
        queued = 0
        for i in range(self._n):
            raw = pins[i].value() ^ inv
            if raw == stable[i]:
                pending[i] = 0
                continue
            if not pending[i]:
                pending[i] = 1
                since[i] = now_ms
                if wait > 0:
                    continue
            began = since[i]
            if ticks_diff(now_ms, began) >= wait:
                stable[i] = raw
                pending[i] = 0
                self._changed_ms[i] = began
                self._push((ACTIVE if raw else INACTIVE) | i, began)
                queued += 1
                queued += self._on_change(i, raw, began)
        return queued + self._after_poll(now_ms)

    def _on_change(self, index, level, ms) -> int:  # hook for subclasses
        return 0

    def _after_poll(self, now_ms) -> int:  # hook for subclasses
        return 0


class Buttons(DebouncedInputs):
    """The 12 monitor buttons: PRESS / RELEASE events, plus one LONG event per hold.

    ``long_ms``: hold time after which a :data:`LONG` event is queued once (0 disables).
    """

    def __init__(self, pins, *, active_low=True, debounce_ms=20, long_ms=800, queue=16):
        super().__init__(pins, active_low=active_low, debounce_ms=debounce_ms, queue=queue)
        self.long_ms = long_ms
        self._long_sent = bytearray(len(pins))

    def pressed(self, index):
        """Debounced state of button ``index`` (0-based)."""
        return self._stable[index] == 1

    def _on_change(self, index, level, ms) -> int:
        self._long_sent[index] = 0
        return 0

    def _after_poll(self, now_ms) -> int:
        wait = self.long_ms
        if wait <= 0:
            return 0
        queued = 0
        stable = self._stable
        sent = self._long_sent
        changed = self._changed_ms
        for i in range(self._n):
            if stable[i] and not sent[i] and ticks_diff(now_ms, changed[i]) >= wait:
                sent[i] = 1
                self._push(LONG | i, now_ms)
                queued += 1
        return queued
