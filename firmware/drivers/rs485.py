"""RS-485 half-duplex port: a UART plus the transceiver's driver-enable (DE) pin.

The board is a bus slave behind a MAX3485 whose DE and /RE are tied together, so the
receiver is off while we drive the bus (set ``echo=True`` if /RE is tied low and the port
hears its own frames: they are then read back, checked and dropped).

Transmit (:meth:`Rs485.write`, blocking, or :meth:`Rs485.send`, async): DE high, the frame
into the UART, wait until the last stop bit has left the shift register (``uart.flush()``
/ ``uart.txdone()``; on the rp2 port these wait for the UART BUSY flag since MicroPython
1.24), then DE low. ``send`` sleeps through most of the frame's wire time and only spins on
``txdone()`` for the last character, so other tasks run meanwhile and DE is released within
a few tens of microseconds of the stop bit.

Receive: the UART's own IRQ-fed ring (``rxbuf`` when the board built it) holds incoming
bytes; :meth:`Rs485.read` / :meth:`Rs485.poll` copy what is there into the preallocated
:attr:`Rs485.rx_buf` and return the count (the bytes are ``rx_buf[0:n]``).
:meth:`Rs485.read` waits through ``asyncio.StreamReader`` over the UART (any object that
``select.poll`` can wait on: ``machine.UART`` or the sim UART).

Timed slots (TDMA after a SYNC): :meth:`Rs485.rx_end_us` tells when the last received byte
ended on the line and :meth:`Rs485.send_at` starts a frame at a given ``ticks_us``. On the
RP2040 the first comes from the UART's receive-timeout interrupt (:class:`RxIdleStamp`: the
PL011 raises it 32 bit times after the last character, so the byte ended a known, baud-fixed
time before the stamp). It is raised only while the FIFO holds data, and the rp2 port's
``UART.any()``/``readinto`` empty the FIFO themselves: a poll within those 32 bit times of a
frame's end left the stamp of an earlier frame (on the emulated chip a third of the SYNCs,
whose slots all fell in the past). So with an :class:`RxIdleStamp` the bytes are read
through it, only up to the last idle point, and each chunk comes with its own end time.
The second, with :class:`TimedTx` (one-shot hardware alarms, hard IRQs): up to four frames
wait armed, each in its own buffer; a start alarm raises DE and writes its frame into the
UART, the end alarm (armed for the frame's wire time) waits out the last stop bit and drops
DE; ``send_at`` returns once the frame is armed, so the task hands over the next slots ahead
(``tx_lead_us``, four REPORT slots) and a task held off the core that long (a mains cycle's
close in the sample task, the panel) costs no slot; no core time is spent spinning (start
jitter: the alarm's interrupt latency and a higher priority interrupt, tens of µs; never
early). Without it (a board without timers), ``send_at`` sleeps until ~1 ms before the start,
then spins on ``ticks_us``. On the sim board the virtual bus stamps and times the bytes
itself (``SimUart.write_at``). The figures on a chip are to be measured with a logic
analyser; the slot guard absorbs them.

Overruns are counted in :attr:`Rs485.overruns`: the UART ring found full (bytes were being
dropped by the port) plus, when the board passes ``line_errors`` (e.g.
:class:`Rp2UartErrors`), hardware overrun flags.
"""

import asyncio
from time import sleep_us, ticks_add, ticks_diff, ticks_us

from micropython import const

from protocol.consts import BITS_PER_CHAR, BUS_BAUD, MAX_WIRE

_SPIN_US = const(300)  # time left on the wire when send() stops sleeping and starts spinning
_WAKE_US = const(1000)  # send_at: stop sleeping this long before the start and spin
_RX_IDLE_BITS = const(32)  # PL011 receive timeout: 32 bit times after the last character
_END_MARGIN_US = const(20)  # TimedTx: the end alarm this long after the last stop bit is due
_DONE_SPIN_US = const(400)  # TimedTx: longest wait in the end IRQ for the UART to finish
_MIN_DELAY_US = const(20)  # TimedTx: shortest alarm delay (a start due sooner goes now)
_TX_DEPTH = const(4)  # TimedTx: frames armed at once (a REPORT slot is ~3 ms at 115200)
_TX_LEAD_US = const(12000)  # Rs485.tx_lead_us with TimedTx: _TX_DEPTH REPORT slots
# TimedTx: the longest cycle frame on the wire, TELEMETRY with all 12 channels overloaded
# (53 + 12 x 3 payload + 5 header + 4 CRC, COBS code byte and delimiter: 100)
_CYCLE_WIRE = const(104)
_MARKS = const(16)  # RxIdleStamp: idle points kept for the task (a power of two)


class Rs485Error(Exception):
    """Transmit could not complete (UART never reported done, or echo mismatch)."""


class Rs485:
    """Half-duplex RS-485 port.

    ``uart``: ``machine.UART`` (or the sim UART) with ``write``, ``readinto`` (non-blocking:
    returns None when empty), ``any``, ``flush``, ``txdone``. ``de``: output pin, 1 = drive.
    ``baud``/``bits_per_char`` give the wire time. ``rx_size``: size of :attr:`rx_buf`.
    ``ring_size``: the UART's receive ring (``rxbuf``) size, to detect it running full.
    ``line_errors``: optional object with ``overruns() -> int`` (new overrun events).
    """

    def __init__(
        self,
        uart,
        de,
        *,
        baud=BUS_BAUD,
        bits_per_char=BITS_PER_CHAR,
        rx_size=256,
        ring_size=0,
        line_errors=None,
        echo=False,
        tx_timeout_ms=200,
        rx_stamp=None,
        timed_tx=None,
    ):
        self.uart = uart
        # With an RxIdleStamp the bytes come through it (it reads the UART itself).
        self._rx_stamp = rx_stamp
        if rx_stamp is not None and ring_size and not rx_stamp.ring_size:
            rx_stamp.ring_size = ring_size
        self._ring_full_seen = 0
        self._timed_tx = timed_tx
        # A UART that starts a frame at a given time itself (the sim) takes frames early.
        self._timed_uart = hasattr(uart, "write_at")
        # Frames are handed over this early: the sim takes them well ahead; with hardware-
        # timed starts, as many REPORT slots as TimedTx holds armed, so a task held off the
        # core for up to ~this long loses no slot.
        if self._timed_uart:
            self.tx_lead_us = 20000
        elif timed_tx is not None:
            self.tx_lead_us = _TX_LEAD_US
        else:
            self.tx_lead_us = _WAKE_US + 2000
        self._de = de
        self.baud = baud
        # one character on the wire in ns (kept small so wire times stay small ints)
        self._char_ns = (bits_per_char * 1_000_000_000 + baud // 2) // baud
        self.rx_buf = bytearray(rx_size)
        self._ring_size = ring_size
        self._line_errors = line_errors
        self._echo = echo
        self._echo_buf = bytearray(rx_size if echo else 0)
        self._tx_timeout_us = tx_timeout_ms * 1000
        self._reader = None
        self._tx_lock = asyncio.Lock()
        self.overruns = 0
        self.tx_frames = 0
        self.tx_bytes = 0
        self.rx_bytes = 0
        self.echo_errors = 0
        self.last_tx_end_us = ticks_us()
        de.value(0)

    def wire_time_us(self, nbytes):
        """Time ``nbytes`` characters take on the wire at the configured baud rate."""
        return (nbytes * self._char_ns + 999) // 1000

    # -- receive -----------------------------------------------------------------------

    def any(self):
        """Bytes waiting in the UART (may be 1 for "some" on ports that cannot count)."""
        return self.uart.any()

    def _check_overrun(self):
        stamp = self._rx_stamp
        if stamp is not None:
            # (UART.any() would empty the FIFO and suppress the idle interrupt)
            full = stamp.ring_full
            if full != self._ring_full_seen:
                self.overruns += full - self._ring_full_seen
                self._ring_full_seen = full
        else:
            ring = self._ring_size
            if ring and self.uart.any() >= ring:
                self.overruns += 1
        errors = self._line_errors
        if errors is not None:
            self.overruns += errors.overruns()

    def readinto(self, buf):
        """Copy waiting bytes into ``buf``; return the count (0 if none). Never blocks."""
        self._check_overrun()
        stamp = self._rx_stamp
        n = self.uart.readinto(buf) if stamp is None else stamp.read(buf)
        if not n:
            return 0
        self.rx_bytes += n
        return n

    def poll(self):
        """Copy waiting bytes into :attr:`rx_buf`; return the count (0 if none)."""
        return self.readinto(self.rx_buf)

    def rx_end_us(self):
        """``ticks_us`` at which the last byte read so far ended on the line (best known)."""
        if self._timed_uart:
            return self.uart.rx_end_us
        stamp = self._rx_stamp
        if stamp is not None:
            return stamp.end_us()
        return ticks_us()

    async def read(self):
        """Wait for at least one byte, copy what is waiting into :attr:`rx_buf`; return n."""
        while True:
            n = self.poll()
            if n:
                return n
            reader = self._reader
            if reader is None:
                reader = self._reader = asyncio.StreamReader(self.uart)
            # Waits until the UART is readable, then reads (non-blocking) into rx_buf.
            self._check_overrun()
            n = await reader.readinto(self.rx_buf)
            if n:
                self.rx_bytes += n
                return n

    # -- transmit ----------------------------------------------------------------------

    def _begin(self, buf):
        self._de.value(1)
        self.uart.write(buf)
        self.tx_bytes += len(buf)

    def _end(self, nbytes):
        self._de.value(0)
        self.last_tx_end_us = ticks_us()
        self.tx_frames += 1
        if self._echo:
            self._drop_echo(nbytes)

    def _spin_until_done(self, deadline):
        uart = self.uart
        while not uart.txdone():
            if ticks_diff(ticks_us(), deadline) > 0:
                self._de.value(0)
                raise Rs485Error("UART transmit did not complete")

    def write(self, buf):
        """Blocking transmit of ``buf``: returns after DE has been released."""
        start = ticks_us()
        self._begin(buf)
        self.uart.flush()
        self._spin_until_done(ticks_add(start, self._tx_timeout_us + self.wire_time_us(len(buf))))
        self._end(len(buf))

    async def send(self, buf):
        """Transmit ``buf``, yielding to other tasks for most of the frame's wire time.

        Concurrent senders are serialised (one frame on the wire at a time).
        """
        async with self._tx_lock:
            await self._send(buf)

    async def _send(self, buf):
        start = ticks_us()
        n = len(buf)
        wire = self.wire_time_us(n)
        self._begin(buf)
        nap = wire - _SPIN_US
        if nap >= 1000:
            await asyncio.sleep_ms(nap // 1000)
        self._spin_until_done(ticks_add(start, self._tx_timeout_us + wire))
        self._end(n)

    async def send_at(self, buf, at_us):
        """Transmit ``buf`` starting at ``ticks_us`` ``at_us`` (at once if that has passed)."""
        async with self._tx_lock:
            n = len(buf)
            if self._timed_uart:
                # The sim UART starts and ends the frame on the line itself (the virtual
                # bus times it): hand it over and go on receiving meanwhile.
                self.uart.write_at(buf, at_us)
                self.tx_bytes += n
                self.tx_frames += 1
                return
            timed = self._timed_tx
            if timed is not None:
                # Hardware-timed: wait only for the start (the frame is then in the UART's
                # buffer; the caller may build the next one meanwhile).
                await timed.send_at(buf, at_us, self.wire_time_us(n))
                self.tx_bytes += n
                self.tx_frames += 1
                self.last_tx_end_us = ticks_add(at_us, self.wire_time_us(n))
                return
            wait = ticks_diff(at_us, ticks_us())
            if wait > _WAKE_US + 1000:
                await asyncio.sleep_ms((wait - _WAKE_US) // 1000)
            while ticks_diff(at_us, ticks_us()) > 0:
                pass  # spin to the slot start: sleep_ms is too coarse for a TDMA slot
            await self._send(buf)

    def _drop_echo(self, nbytes):
        # Our own frame comes back through the receiver: read it and check it.
        buf = self._echo_buf
        if nbytes > len(buf):
            nbytes = len(buf)
        got = 0
        deadline = ticks_add(ticks_us(), self.wire_time_us(2) + 2000)
        mv = memoryview(buf)
        while got < nbytes and ticks_diff(deadline, ticks_us()) > 0:
            n = self.uart.readinto(mv[got:nbytes])
            if n:
                got += n
            else:
                sleep_us(50)
        if got != nbytes:
            self.echo_errors += 1


class TimedTx:
    """Frames started at their ``ticks_us`` times by hardware alarms, DE dropped by another.

    ``start_timer``/``end_timer``: two ``machine.Timer`` (one-shot, µs ticks, hard IRQ);
    ``uart`` with ``write`` and ``txdone``; ``de`` the driver-enable pin. Up to ``depth``
    frames wait armed at once, each in its own buffer with its own start alarm (the first
    is ``start_timer``, the others more of its class): :meth:`send_at` copies the frame,
    arms its alarm and returns at once while a buffer is free, else waits for the next
    start. So the task can hand over the next slots' frames ahead, and a task held off the
    core for a while (a mains cycle's close in the sample task) costs no slot as long as
    the frames armed reach past it. A start raises DE, writes its frame into the UART and
    arms the end alarm for the frame's wire time; the end waits out the last stop bit and
    drops DE (a start that comes before the previous end re-arms it: DE stays up through
    both). The handlers are bound once and allocate nothing (they run as hard interrupts);
    a view per buffer and frame length is made once, outside them.
    """

    def __init__(self, start_timer, end_timer, uart, de, depth=_TX_DEPTH, size=MAX_WIRE):
        import asyncio

        timers = [start_timer]
        for _ in range(depth - 1):
            timers.append(type(start_timer)())
        self._timers = timers
        self._end_timer = end_timer
        self._uart = uart
        self._de = de
        self.depth = depth
        # one buffer for any frame, the others for the cycle's frames (REPORT, TELEMETRY,
        # STATUS): 3 x 148 bytes less of the 64 KB heap (a longer frame waits for the first)
        self._bufs = [bytearray(size if i == 0 else _CYCLE_WIRE) for i in range(depth)]
        self._views = [{} for _ in range(depth)]  # per buffer: frame length -> memoryview
        self._out: list = [None] * depth  # the view each armed start writes
        self._wire_us = [0] * depth
        self._busy = bytearray(depth)  # 1 from arming to start (set by the task, cleared by IRQ)
        self._started = asyncio.ThreadSafeFlag()
        self.late_starts = 0  # alarms armed for a start already past
        self.slow_ends = 0  # the UART still busy after _DONE_SPIN_US at the end alarm
        self.full_waits = 0  # send_at found every buffer armed and waited for a start
        # bound once: creating them in the IRQ would allocate
        self._on_start = [self._starter(i) for i in range(depth)]
        self._on_end = self._end

    def _starter(self, i):
        def start(timer):
            self._start(i)

        return start

    def _start(self, i):
        self._de.value(1)
        self._uart.write(self._out[i])
        self._busy[i] = 0
        self._end_timer.init(
            mode=0, period=self._wire_us[i] + _END_MARGIN_US, tick_hz=1_000_000,
            callback=self._on_end, hard=True,
        )  # fmt: skip
        self._started.set()

    def _end(self, timer):
        uart = self._uart
        deadline = ticks_add(ticks_us(), _DONE_SPIN_US)
        while not uart.txdone():
            if ticks_diff(ticks_us(), deadline) > 0:
                self.slow_ends += 1
                break
        self._de.value(0)

    def pending(self):
        """Frames armed and not yet started."""
        busy = self._busy
        n = 0
        for i in range(self.depth):
            n += busy[i]
        return n

    def arm(self, buf, at_us, wire_us):
        """Copy ``buf`` into a free buffer and arm its start for ``ticks_us`` ``at_us`` (at
        once if that has passed); False when every buffer is armed. Allocates nothing once
        a view for the frame's length exists in that buffer."""
        busy = self._busy
        n = len(buf)
        # the small buffers first, so the full-size one stays free for a rare long answer
        i = self.depth - 1 if n <= _CYCLE_WIRE else 0
        while i >= 0 and busy[i]:
            i -= 1
        if i < 0:
            return False
        own = self._bufs[i]
        own[0:n] = buf  # (a slice store: no allocation on MicroPython >= 1.23)
        views = self._views[i]
        view = views.get(n)
        if view is None:
            view = views[n] = memoryview(own)[:n]
        self._out[i] = view
        self._wire_us[i] = wire_us
        delay = ticks_diff(at_us, ticks_us())
        if delay < _MIN_DELAY_US:
            # Started at once: an answer due "now" (INFO, ACK, a discovery reply), or a slot
            # the task came late for (counted; BusSlave skips a slot already begun).
            delay = _MIN_DELAY_US
            self.late_starts += 1
        busy[i] = 1
        self._timers[i].init(
            mode=0, period=delay, tick_hz=1_000_000, callback=self._on_start[i], hard=True
        )  # mode 0: ONE_SHOT on the rp2 port
        return True

    async def send_at(self, buf, at_us, wire_us):
        """:meth:`arm`, waiting for a start first while every buffer is armed."""
        while not self.arm(buf, at_us, wire_us):
            self.full_waits += 1
            await self._started.wait()


class RxIdleStamp:
    """Received bytes with the line time their burst ended, from the RX-idle (receive
    timeout) IRQ.

    ``uart.irq(UART.IRQ_RXIDLE)`` fires when the line has been idle for 32 bit times after a
    character, so the burst's last byte ended a known, baud-fixed time before the interrupt.
    The PL011 raises it only while its FIFO holds data: a task that empties the FIFO itself
    (``UART.any()`` and a ``readinto`` that finds the ring empty do, on the rp2 port) within
    those 32 bit times of a frame's end suppresses it, and the stamp then still belongs to an
    earlier frame (a SYNC timed from it puts every slot in the past). So the bytes are read
    here, never beyond the last idle point: the hard handler stores ``ticks_us()`` and the
    count of bytes received so far (the task's count plus what waits in the UART's ring) in
    a small ring of records; :meth:`read` copies the bytes of the oldest record not yet read,
    no more than the ring holds (so it never touches the FIFO), and :meth:`end_us` says when
    the last of them ended on the line. The handler allocates nothing: small ints in
    preallocated lists, counts kept modulo 2**16. Used by :meth:`Rs485.poll` and
    :meth:`Rs485.rx_end_us` to time TDMA slots from the end of a SYNC.
    """

    def __init__(self, uart, baud, trigger, ring_size=0):
        import machine

        self._uart = uart
        self._disable_irq = machine.disable_irq
        self._enable_irq = machine.enable_irq
        self._idle_us = (_RX_IDLE_BITS * 1_000_000 + baud // 2) // baud
        self._char_ns = (BITS_PER_CHAR * 1_000_000_000 + baud // 2) // baud
        self.ring_size = ring_size  # the UART's rxbuf: a ring found this full lost bytes
        # Lists, not arrays: storing a small int in one allocates nothing, and an array
        # would truncate 64-bit ticks on the unix port.
        self._t = [ticks_us()] * _MARKS  # ticks_us of each idle interrupt
        self._total = [0] * _MARKS  # bytes received up to it (mod 2**16)
        self._head = [0]  # records written (mod 256, by the handler)
        self._tail = 0  # records read (mod 256, by the task)
        self._read = [0]  # bytes the task has taken from the UART (mod 2**16)
        self._end = ticks_us()
        self._read_any = False
        self.ring_full = 0  # idle interrupts that found the UART's ring full (bytes lost)
        self.marks_lost = 0  # records overwritten before the task read them
        self._handler = self._on_idle  # bound once: creating it in the IRQ would allocate
        uart.irq(handler=self._handler, trigger=trigger, hard=True)

    def _on_idle(self, uart):
        now = ticks_us()
        waiting = uart.any()  # (the FIFO was just emptied into the ring by the port's IRQ)
        if self.ring_size and waiting >= self.ring_size:
            self.ring_full += 1
        j = self._head[0]
        k = j & (_MARKS - 1)
        self._t[k] = now
        self._total[k] = (self._read[0] + waiting) & 0xFFFF
        self._head[0] = (j + 1) & 0xFF

    def read(self, buf):
        """Copy bytes of the oldest idle-ended burst not yet read into ``buf`` (at most its
        length); return the count, 0 if none. Never blocks, never empties the UART FIFO."""
        while True:
            tail = self._tail
            head = self._head[0]
            if tail == head:
                return 0
            behind = (head - tail) & 0xFF
            if behind > _MARKS:
                # The task fell more than _MARKS bursts behind: the oldest records are gone;
                # their bytes are read with the oldest record left (their ends come out late).
                self.marks_lost += behind - _MARKS
                tail = self._tail = (head - _MARKS) & 0xFF
            k = tail & (_MARKS - 1)
            want = (self._total[k] - self._read[0]) & 0xFFFF
            if want:
                break
            self._tail = (tail + 1) & 0xFF  # nothing new up to this idle point
        take = len(buf)
        if want < take:
            take = want
        # With interrupts off, so the handler never counts bytes that have left the ring
        # but are not yet in self._read (a few µs: the bytes are in the ring already).
        state = self._disable_irq()
        n = self._uart.readinto(buf, take) or 0
        self._read[0] = (self._read[0] + n) & 0xFFFF
        self._enable_irq(state)
        left = want - n
        if not left:
            self._tail = (tail + 1) & 0xFF
        self._end = ticks_add(self._t[k], -(self._idle_us + (left * self._char_ns) // 1000))
        self._read_any = True
        return n

    def end_us(self):
        """When the last byte :meth:`read` returned ended on the line (before any read: the
        last idle interrupt's burst)."""
        if self._read_any:
            return self._end
        j = (self._head[0] - 1) & (_MARKS - 1)
        return ticks_add(self._t[j], -self._idle_us)


class Rp2UartErrors:
    """RP2040 UART line-error flags (PL011 UARTRSR): counts overrun (OE) events and clears.

    Reading UARTRSR does not disturb MicroPython's UART driver; writing it clears the flags.
    One call counts at most one event per flag, so poll it at least once per frame.
    """

    def __init__(self, uart_id):
        from machine import mem32

        self._mem = mem32
        self._rsr = 0x40034004 if uart_id == 0 else 0x40038004
        self.framing = 0
        self.breaks = 0

    def overruns(self):
        flags = self._mem[self._rsr] & 0xF
        if not flags:
            return 0
        self._mem[self._rsr] = 0
        if flags & 0x1:
            self.framing += 1
        if flags & 0x4:
            self.breaks += 1
        return 1 if flags & 0x8 else 0
