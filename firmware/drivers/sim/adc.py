"""The sim board's ADC: the acquisition interface of
:class:`~firmware.drivers.mcp3208.Mcp3208Stream` (``start``/``stop``/``poll``/``block``/
``read_channel``) fed by a generator object with ``fill(buf, start, count)``
(``firmware.loadsim.LoadSim``) at the real sample rate."""

import asyncio
from array import array
from time import ticks_add, ticks_diff, ticks_us

from micropython import const

_MIDSCALE = const(2048)
_MAX_CATCH_UP = const(8)  # blocks the sim ADC generates in one go before it resyncs


class SimAdc:
    """Simulated acquisition with the :class:`~firmware.drivers.mcp3208.Mcp3208Stream` API.

    ``generator``: object with ``fill(buf, start, count)`` writing ``count`` interleaved
    instants of ``channels`` values into ``buf`` (an ``array('H')``) from instant ``start``
    on (``firmware.loadsim.LoadSim``); None fills mid-scale (no current). Blocks become due
    by the wall clock, one instant every ``sample_period_ns``.
    """

    def __init__(
        self, generator=None, *, samples_per_block=64, sample_period_ns=312_500, channels=13
    ):
        self.generator = generator
        self.samples_per_block = samples_per_block
        self.sample_period_ns = sample_period_ns
        self.sample_rate = (1_000_000_000 + sample_period_ns // 2) // sample_period_ns
        self.channels = channels
        n = samples_per_block * channels
        self._n = n
        self._halves = (array("H", bytes(2 * n)), array("H", bytes(2 * n)))
        self._period_num = samples_per_block * sample_period_ns  # block period = num / 1000 us
        self._frac = 0
        self._next_us = ticks_us()
        self._fill = 0  # half the next block goes into
        self._ready = -1  # half holding the newest undelivered block
        self._last = -1  # half holding the newest produced block
        self.flag = asyncio.ThreadSafeFlag()
        self.blocks = 0  # blocks produced
        self.delivered = 0
        self.overruns = 0
        self.running = False

    def start(self):
        if self.running:
            return
        self.running = True
        self._frac = 0
        self._next_us = ticks_us()
        self._advance()

    def stop(self):
        self.running = False

    def _advance(self):
        whole, self._frac = divmod(self._frac + self._period_num, 1000)
        self._next_us = ticks_add(self._next_us, whole)

    def _produce(self):
        buf = self._halves[self._fill]
        generator = self.generator
        if generator is None:
            for i in range(self._n):
                buf[i] = _MIDSCALE
        else:
            generator.fill(buf, 0, self.samples_per_block)
        if self._ready >= 0:
            self.overruns += 1  # the previous block was never taken
        self._ready = self._fill
        self._last = self._fill
        self._fill ^= 1
        self.blocks += 1

    def _due(self):
        made = 0
        while ticks_diff(ticks_us(), self._next_us) >= 0:
            if made >= _MAX_CATCH_UP:
                # Far behind (process stopped?): skip ahead instead of generating backlog.
                self._next_us = ticks_us()
                self._frac = 0
                self._advance()
                break
            self._produce()
            self._advance()
            made += 1
        return made

    def poll(self):
        """The newest completed block (``array('H')``) if one is waiting, else None."""
        if not self.running:
            return None
        self._due()
        ready = self._ready
        if ready < 0:
            return None
        self._ready = -1
        self.delivered += 1
        return self._halves[ready]

    async def block(self):
        """Wait for and return the next block (due by the wall clock)."""
        if not self.running:
            raise ValueError("acquisition not started")
        while True:
            buf = self.poll()
            if buf is not None:
                return buf
            wait_us = ticks_diff(self._next_us, ticks_us())
            await asyncio.sleep_ms(wait_us // 1000 + 1 if wait_us > 0 else 0)

    def read_channel(self, index):
        """Latest value of logical channel ``index`` (0..channels-1)."""
        if not 0 <= index < self.channels:
            raise ValueError("channel out of range")
        if self._last < 0:
            return _MIDSCALE
        return self._halves[self._last][self._n - self.channels + index]
