"""The RS-485 UART of the sim board: a UNIX-domain stream socket to the virtual bus.

The board connects as a client, as a ``timed`` endpoint: the bus stamps what it delivers with
the line time its last byte ended, and :meth:`SimUart.write_at` starts a frame at a given line
time - the sim's counterparts of the RP2040's RX-idle interrupt timestamp and timer-started
transmit, see ``firmware/drivers/rs485.py``. Non-blocking, ``readinto`` returns None when
empty like ``machine.UART``; ``txdone()`` stays False for the frame's wire time at the
configured baud rate, so :class:`~firmware.drivers.rs485.Rs485` holds DE exactly as long as
on the board. ``select.poll`` / ``asyncio.StreamReader`` wait on the socket itself (``ioctl``
hands out its file descriptor).
"""

import errno
import io
import select
import socket
from time import sleep_ms, sleep_us, ticks_add, ticks_diff, ticks_ms, ticks_us

from micropython import const

from firmware.drivers.sim.unixport import AF_UNIX, SOCK_STREAM, unix_address
from protocol.consts import BITS_PER_CHAR, BUS_BAUD

_MP_STREAM_POLL = const(3)
_MP_STREAM_GET_FILENO = const(10)
_POLLIN = const(0x0001)
_POLLOUT = const(0x0004)
_RECORD_HEAD = const(10)  # timed bus records: u16 length, u64 time in µs
# ticks_us() on the unix port is CLOCK_MONOTONIC µs modulo the ticks period: 2**62 on a 64-bit
# port (the same number in practice), 2**30 on a 32-bit port (it wraps every 17.9 min).
_TICKS_MASK = ticks_add(0, -1)  # pyright: ignore[reportArgumentType]  # period - 1
_TICKS_MASK_8 = _TICKS_MASK >> 8


class SimBusError(Exception):
    """The virtual bus socket is unreachable or was closed."""


class SimUart(io.IOBase):
    """The RS-485 UART as a client of the virtual bus's UNIX-domain stream socket.

    ``path`` None gives a detached UART (writes are counted and dropped, nothing arrives).
    ``name`` is announced to the bus (``@vbus <name> timed``) so the bus can unplug this
    board by name, as a person pulls one board's connector. A named UART is a timed
    endpoint (records ``u16 length, u64 time_us, data`` both ways, see ``tools/virtual/vbus.py``):
    :attr:`rx_end_us` is the ``ticks_us`` at which the last byte :meth:`readinto` returned
    ended on the line, and :meth:`write_at` starts a frame at a chosen ``ticks_us``.
    An unnamed UART is a raw endpoint that receives only once it has written a byte.

    The records carry CLOCK_MONOTONIC µs, ``ticks_us`` is the same clock modulo the ticks
    period (which wraps every 17.9 min on a 32-bit port): a received time becomes ticks by
    its low bits (no big-int arithmetic); a ticks time to send becomes monotonic µs from the
    newest received record, kept as an anchor (its u64 time and its ticks), as
    ``anchor + ticks_diff(at, anchor ticks)``. Before any record arrived there is no anchor
    and a timed write starts at once.
    """

    def __init__(
        self,
        path=None,
        *,
        baud=BUS_BAUD,
        bits_per_char=BITS_PER_CHAR,
        connect_timeout_ms=10000,
        name=None,
    ):
        self.path = path
        self.name = name
        self.baud = baud
        self._bits = bits_per_char
        self._char_ns = (bits_per_char * 1_000_000_000 + baud // 2) // baud
        self.timed = bool(name)
        self._sock = None
        self._poller = select.poll()
        self._tx_end_us = ticks_us()
        self.tx_bytes = 0
        self.rx_bytes = 0
        self.rx_end_us = ticks_us()
        # Timed records: what the socket gave and the demultiplexer has not handed out yet.
        self._raw = bytearray(1024)
        self._raw_pos = 0
        self._raw_len = 0
        self._head = bytearray(_RECORD_HEAD)
        self._head_n = 0
        self._head_tx = bytearray(_RECORD_HEAD)
        self._rec_left = 0  # data bytes of the current record not yet handed out
        self._rec_end_us = 0  # ticks_us of the current record's end
        self._anchor = bytearray(8)  # u64 line time of the newest record received, LE
        self._anchor_ticks = 0  # the same time in ticks_us
        self._anchored = False
        if path:
            self._connect(path, connect_timeout_ms)

    def _connect(self, path, timeout_ms):
        start = ticks_ms()
        address = unix_address(path)
        while True:
            sock = socket.socket(AF_UNIX, SOCK_STREAM)
            try:
                sock.connect(address)
                break
            except OSError as exc:
                sock.close()
                if ticks_diff(ticks_ms(), start) >= timeout_ms:
                    raise SimBusError("virtual bus not reachable at " + path) from exc
                sleep_ms(50)
        if self.name:
            sock.write(b"@vbus " + self.name.encode() + (b" timed\n" if self.timed else b"\n"))
        sock.setblocking(False)
        self._sock = sock
        self._poller.register(sock, select.POLLIN)

    def fileno(self):
        return self._sock.fileno() if self._sock is not None else -1

    def any(self):
        """1 when bytes are waiting, else 0 (allowed by ``machine.UART.any()``'s contract)."""
        if self._sock is None:
            return 0
        if self._raw_pos < self._raw_len and (self._rec_left or not self.timed):
            return 1
        for _, event in self._poller.ipoll(0):
            if event & (select.POLLIN | select.POLLHUP | select.POLLERR):
                return 1
        return 0

    def _sock_readinto(self, buf):
        sock = self._sock
        if sock is None:
            return None
        try:
            n = sock.readinto(buf)
        except OSError as exc:
            if exc.errno == errno.EAGAIN:
                return None
            raise SimBusError("virtual bus read failed") from exc
        if n is None:
            return None
        if n == 0:
            self.close()
            raise SimBusError("virtual bus closed the connection")
        return n

    def readinto(self, buf, nbytes=None):
        """Read what is waiting (up to ``nbytes``/``len(buf)``); None if nothing.

        Timed: at most one record (bytes that followed each other on the line), so
        :attr:`rx_end_us` is the end of the last byte returned.
        """
        if self._sock is None:
            return None
        limit = len(buf) if nbytes is None or nbytes > len(buf) else nbytes
        if not self.timed:
            if limit < len(buf):
                buf = memoryview(buf)[:limit]
            n = self._sock_readinto(buf)
            if n:
                self.rx_bytes += n
                self.rx_end_us = ticks_us()
            return n
        got = 0
        raw = self._raw
        head = self._head
        while got < limit:
            if self._raw_pos >= self._raw_len:
                if self._sock is None:
                    break
                n = self._sock_readinto(raw)
                if not n:
                    break
                self._raw_pos = 0
                self._raw_len = n
            pos = self._raw_pos
            if self._rec_left == 0:
                # Record head: u16 length, u64 line time of the record's last byte (µs).
                head[self._head_n] = raw[pos]
                self._raw_pos = pos + 1
                self._head_n += 1
                if self._head_n == _RECORD_HEAD:
                    self._head_n = 0
                    self._rec_left = head[0] | head[1] << 8
                    # ticks = the time's low bits (masked before each shift: no big int)
                    t = 0
                    anchor = self._anchor
                    for k in range(9, 1, -1):
                        t = (t & _TICKS_MASK_8) << 8 | head[k]
                        anchor[k - 2] = head[k]
                    self._rec_end_us = t
                    self._anchor_ticks = t
                    self._anchored = True
                continue
            take = self._raw_len - pos
            if take > self._rec_left:
                take = self._rec_left
            if take > limit - got:
                take = limit - got
            for k in range(take):
                buf[got + k] = raw[pos + k]
            got += take
            self._raw_pos = pos + take
            self._rec_left -= take
            late_us = (self._rec_left * self._char_ns) // 1000
            self.rx_end_us = ticks_add(self._rec_end_us, -late_us)  # pyright: ignore[reportArgumentType]
            if self._rec_left == 0:
                break  # one run of back-to-back bytes per read: rx_end_us is exact for it
        if not got:
            return None
        self.rx_bytes += got
        return got

    def read(self, nbytes=-1):
        buf = bytearray(nbytes if nbytes > 0 else 512)
        n = self.readinto(buf)
        if not n:
            return None
        return bytes(buf[:n])

    def write(self, buf):
        """Queue ``buf`` for the wire at once; the UART counts as busy for its wire time."""
        return self.write_at(buf, 0)

    def write_at(self, buf, at_us):
        """Queue ``buf`` to start on the line at ``ticks_us`` ``at_us`` (0: at once, behind
        what is still going out)."""
        n = len(buf)
        now = ticks_us()
        start = self._tx_end_us if ticks_diff(self._tx_end_us, now) > 0 else now
        if at_us and ticks_diff(at_us, start) > 0:
            start = at_us
        self._tx_end_us = ticks_add(start, (n * self._char_ns + 999) // 1000)
        self.tx_bytes += n
        sock = self._sock
        if sock is None:
            return n
        if self.timed:
            head = self._head_tx
            head[0] = n & 0xFF
            head[1] = n >> 8
            t = self.line_time_us(at_us) if at_us else 0
            for k in range(2, _RECORD_HEAD):
                head[k] = t & 0xFF
                t >>= 8
            self._send_all(head)
        self._send_all(buf)
        return n

    def line_time_us(self, at_us):
        """The bus's line time (CLOCK_MONOTONIC µs) of ``ticks_us`` ``at_us``, anchored on
        the newest received record (valid within half a ticks period of it: 8.9 min on a
        32-bit port); 0 (at once) without one."""
        if not self._anchored:
            return 0
        t = int.from_bytes(self._anchor, "little") + ticks_diff(at_us, self._anchor_ticks)
        return t if t > 0 else 0

    def _send_all(self, buf):
        sock = self._sock
        if sock is None:
            return
        n = len(buf)
        mv = memoryview(buf)
        sent = 0
        deadline = ticks_add(ticks_ms(), 1000)
        while sent < n:
            try:
                k = sock.write(mv[sent:])
            except OSError as exc:
                if exc.errno != errno.EAGAIN:
                    raise SimBusError("virtual bus write failed") from exc
                k = None
            if k:
                sent += k
            elif ticks_diff(deadline, ticks_ms()) <= 0:
                raise SimBusError("virtual bus not reading")
            else:
                sleep_ms(1)

    def txdone(self):
        """True once the last written character would have left the shift register."""
        return ticks_diff(ticks_us(), self._tx_end_us) >= 0

    def flush(self):
        """Block until :meth:`txdone`."""
        while True:
            left = ticks_diff(self._tx_end_us, ticks_us())
            if left <= 0:
                return
            sleep_us(left if left < 1000 else 1000)

    def ioctl(self, req, arg):
        if req == _MP_STREAM_GET_FILENO:
            return self.fileno()
        if req == _MP_STREAM_POLL:
            ready = 0
            if arg & _POLLIN and self.any():
                ready |= _POLLIN
            if arg & _POLLOUT:
                ready |= _POLLOUT
            return ready
        return -1

    def close(self):
        sock = self._sock
        if sock is not None:
            self._sock = None
            try:
                self._poller.unregister(sock)
            except (OSError, KeyError):
                pass
            sock.close()
