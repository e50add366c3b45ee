"""The sim board's watchdog: ends the process when not fed in time, as a WDT resets the board
(the interface of ``firmware.drivers.watchdog``)."""

import os
from time import sleep_ms, ticks_diff, ticks_ms


class SimWatchdog:
    """Watchdog stand-in that resets the sim board as the RP2040's ``machine.WDT`` would.

    The WDT is hardware: it keeps counting whatever the firmware's event loop does, so
    :meth:`start` launches a thread that checks every 50 ms. If :meth:`feed` was not called
    within ``timeout_ms`` it prints ``smartPDU: WATCHDOG RESET ...`` and ends the process with
    SIGKILL (after a reset nothing of the firmware runs: no ``finally``, no cleanup). A
    supervisor (``tools.usbboard``) then starts the board again as a power-on would. Tests read
    the message and the exit status (-9). :meth:`hand_over_to_repl` (Ctrl-C) stops the check,
    as the board's timer then feeds. ``reset=False`` only records expiry (:meth:`expired`).
    ``marker``: a file written before the reset, so the next start's :meth:`caused_reset`
    knows (the RP2040 keeps the reset cause in a register).
    """

    CHECK_MS = 50

    def __init__(self, reset=True, marker=None):
        self.marker = marker
        self.timeout_ms = 0
        self.feeds = 0
        self.started = False
        self.reset = reset
        self._stopped = False
        self._fed_ms = ticks_ms()

    def start(self, timeout_ms=5000):
        if self.started:
            return
        self.started = True
        self.timeout_ms = timeout_ms
        self._fed_ms = ticks_ms()
        if self.reset:
            import _thread

            _thread.start_new_thread(self._watch, ())

    def feed(self):
        self._fed_ms = ticks_ms()
        self.feeds += 1

    def caused_reset(self):
        """True (once) if the previous run of this board ended in a watchdog reset."""
        if self.marker is None:
            return False
        try:
            os.remove(self.marker)
        except OSError:
            return False
        return True

    def hand_over_to_repl(self, period_ms=1000):
        self._stopped = True  # the engineer at the REPL now answers for the board

    def expired(self):
        """True if started and not fed within the timeout (what a real WDT would reset on)."""
        return (
            self.started
            and not self._stopped
            and ticks_diff(ticks_ms(), self._fed_ms) > self.timeout_ms
        )

    def _watch(self):
        while not self._stopped:
            sleep_ms(self.CHECK_MS)
            if self.expired():
                print(
                    "smartPDU: WATCHDOG RESET: not fed for %d ms (timeout %d ms, %d feeds)"
                    % (ticks_diff(ticks_ms(), self._fed_ms), self.timeout_ms, self.feeds)
                )
                if self.marker is not None:
                    try:
                        with open(self.marker, "w") as f:
                            f.write("watchdog\n")
                    except OSError:
                        pass
                # The unix port has no os.kill/_exit; the shell's parent is this process.
                os.system("kill -KILL $PPID")
                return
