"""Hardware watchdog, started on demand (an RP2040 WDT cannot be stopped once running).

The board builds a :class:`Watchdog` without starting it; the application calls
:meth:`Watchdog.start` once its main loop is up and :meth:`Watchdog.feed` from that loop.
The sim board provides the same interface (``firmware.drivers.sim.watchdog.SimWatchdog``).
"""

from micropython import const

MAX_TIMEOUT_MS = const(8388)  # RP2040 limit


class Watchdog:
    """``machine.WDT`` behind ``start(timeout_ms)`` / ``feed()``."""

    def __init__(self):
        self._wdt = None
        self.timeout_ms = 0
        self.feeds = 0

    @property
    def started(self):
        return self._wdt is not None

    def start(self, timeout_ms=5000):
        """Start the watchdog (idempotent): the board resets if not fed within timeout_ms."""
        if self._wdt is not None:
            return
        from machine import WDT

        timeout_ms = min(timeout_ms, MAX_TIMEOUT_MS)
        self._wdt = WDT(timeout=timeout_ms)
        self.timeout_ms = timeout_ms

    def caused_reset(self):
        """True if the last reset of the chip was this watchdog's."""
        import machine

        reset_cause = getattr(machine, "reset_cause", None)
        wdt_reset = getattr(machine, "WDT_RESET", None)
        return reset_cause is not None and wdt_reset is not None and reset_cause() == wdt_reset

    def feed(self):
        wdt = self._wdt
        if wdt is not None:
            wdt.feed()
            self.feeds += 1

    def hand_over_to_repl(self, period_ms=1000):
        """After Ctrl-C: keep feeding from a timer so the REPL, the debug functions and
        flashing (mpremote) work; the engineer at the REPL now answers for the board. A
        soft reset starts the firmware, and the normal watchdog, again."""
        if self._wdt is None:
            return
        from machine import Timer

        self._timer = Timer(
            -1, mode=Timer.PERIODIC, period=period_ms, callback=lambda _t: self.feed()
        )
