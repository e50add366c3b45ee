"""The virtual bus's transceivers: a pseudo-terminal endpoint (the aggregator's serial port,
a monitor) and a UNIX-socket endpoint (a virtual board's UART, raw or with timed records),
their counters, and the line's fault settings (see ``tools.virtual.vbus``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import tty
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from tools.virtual.vbus import VirtualBus


# The bus's logger: endpoints log as part of it.
_LOG = logging.getLogger("tools.virtual.vbus")

# More than this many bytes waiting for the line: stop reading the endpoint (a full UART FIFO);
# read again below the low mark.  The marks grow with the baud rate so at least TX_SLACK_S of
# line time stays queued: a briefly descheduled bus process must not leave the line idle.
TX_HIGH_WATER = 4096
TX_LOW_WATER = 1024
TX_SLACK_S = 0.05
# A socket reader that falls this far behind loses bytes, as a UART RX overrun would.
_SOCKET_RX_LIMIT = 256 * 1024
_READ_SIZE = 65536

HELLO_PREFIX = b"@vbus "
_HELLO_MAX = 80
_RECORD_HEAD = 10  # timed sockets: u16 length + u64 time in µs
LATE_READ_S = 0.05  # a timed start read later than this is sent at once instead
_HELD_PARTS = 256  # line data held for a socket whose hello is not read yet (newest kept)
NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,32}\Z")


class VirtualBusError(Exception):
    """Misuse of the virtual bus (duplicate names, bad settings)."""


@dataclass(frozen=True)
class Faults:
    """Line faults.  ``ber``: probability that one data bit is inverted; ``drop``: probability
    that a byte is lost on the line (no receiver gets it)."""

    ber: float = 0.0
    drop: float = 0.0

    def __post_init__(self) -> None:
        for name in ("ber", "drop"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise VirtualBusError(f"{name} must be within [0, 1], got {value}")


@dataclass(frozen=True)
class EndpointStats:
    """One endpoint's view; bytes are counted where they enter or leave the bus."""

    name: str
    kind: Literal["pty", "socket"]
    path: str | None
    plugged: bool
    echo: bool
    listen_only: bool
    timed: bool
    tx_bytes: int  # written by the endpoint and put on the line
    rx_bytes: int  # handed to the endpoint
    discarded_bytes: int  # written while unplugged or listen-only: never reached the line
    overrun_bytes: int  # lost because the endpoint did not read fast enough


@dataclass(frozen=True)
class BusStats:
    """Line counters since ``start()``."""

    baud: int
    bits_per_char: int
    line_bytes: int  # bytes that occupied the line (including noise)
    collisions: int  # pairs of overlapping transmissions
    collided_bytes: int  # bytes garbled by collisions
    bit_errors: int  # bits inverted by the bit-error rate
    corrupted_bytes: int  # bytes with at least one inverted bit
    dropped_bytes: int  # bytes lost on the line
    noise_bytes: int  # random bytes injected by noise bursts
    endpoints: tuple[EndpointStats, ...]


class Endpoint:
    """A transceiver on the bus.  Subclasses move bytes to and from the outside world."""

    kind: Literal["pty", "socket"]

    def __init__(self, bus: VirtualBus, name: str, *, echo: bool, listen_only: bool) -> None:
        self.bus = bus
        self.name = name
        self.echo = echo
        self.listen_only = listen_only
        self.timed = False
        self.closed = False
        self.tx_free_at = 0.0  # when this transmitter finishes its last scheduled byte
        self.backlog = 0  # bytes scheduled but not yet fully on the line
        self.tx_bytes = 0
        self.rx_bytes = 0
        self.discarded_bytes = 0
        self.overrun_bytes = 0

    @property
    def path(self) -> str | None:
        return None

    def deliver(self, parts: list[tuple[bytes, float]]) -> None:
        """Hand over line data: runs of bytes, each with the time its last byte ended."""
        raise NotImplementedError

    def pause_reading(self) -> None:
        raise NotImplementedError

    def resume_reading(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def snapshot(self) -> EndpointStats:
        return EndpointStats(
            name=self.name,
            kind=self.kind,
            path=self.path,
            plugged=self.bus.is_plugged(self.name),
            echo=self.echo,
            listen_only=self.listen_only,
            timed=self.timed,
            tx_bytes=self.tx_bytes,
            rx_bytes=self.rx_bytes,
            discarded_bytes=self.discarded_bytes,
            overrun_bytes=self.overrun_bytes,
        )


class PtyEndpoint(Endpoint):
    kind = "pty"

    def __init__(self, bus: VirtualBus, name: str, *, echo: bool, listen_only: bool) -> None:
        super().__init__(bus, name, echo=echo, listen_only=listen_only)
        self.master_fd, self.slave_fd = os.openpty()
        # Raw on both sides: no echo, no line editing, no CR/LF translation, 8-bit clean.
        tty.setraw(self.slave_fd)
        tty.setraw(self.master_fd)
        os.set_blocking(self.master_fd, False)
        # We keep our slave fd open so the master never sees a hang-up when the program using
        # the port closes and reopens it; we never read it, so all input goes to that program.
        self._path = os.ttyname(self.slave_fd)
        self._reading = False

    @property
    def path(self) -> str:
        return self._path

    def attach(self) -> None:
        self.resume_reading()

    def _on_readable(self) -> None:
        try:
            data = os.read(self.master_fd, _READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # EIO: nobody on the slave side (cannot happen while we hold it)
            return
        if data:
            self.bus._on_tx(self, data)

    def deliver(self, parts: list[tuple[bytes, float]]) -> None:
        data = b"".join(part for part, _ in parts)
        try:
            written = os.write(self.master_fd, data)
        except (BlockingIOError, InterruptedError):
            written = 0
        except OSError:
            written = 0
        self.rx_bytes += written
        self.overrun_bytes += len(data) - written

    def pause_reading(self) -> None:
        if self._reading:
            self.bus.loop.remove_reader(self.master_fd)
            self._reading = False

    def resume_reading(self) -> None:
        if not self._reading and not self.closed:
            self.bus.loop.add_reader(self.master_fd, self._on_readable)
            self._reading = True

    def close(self) -> None:
        if self.closed:
            return
        with contextlib.suppress(Exception):
            self.pause_reading()
        self.closed = True
        for fd in (self.master_fd, self.slave_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


class SocketEndpoint(Endpoint, asyncio.Protocol):
    kind = "socket"

    def __init__(self, bus: VirtualBus, name: str) -> None:
        super().__init__(bus, name, echo=False, listen_only=False)
        self.transport: asyncio.Transport | None = None
        # Until we know whether the connection starts with a hello, hold its bytes back.
        self._hello: bytearray | None = bytearray()
        self._records = bytearray()  # timed: bytes of an incomplete record
        self._held: list[tuple[bytes, float]] = []  # line data before the hello was read

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.bus._register(self)

    def data_received(self, data: bytes) -> None:
        if self._hello is None:
            if self.timed:
                self._timed_received(data)
            else:
                self.bus._on_tx(self, data)
            return
        self._hello += data
        held = bytes(self._hello)
        head = held[: len(HELLO_PREFIX)]
        if not HELLO_PREFIX.startswith(head):
            self._hello = None  # plain line data from the first byte
            self._flush_held()
            self.bus._on_tx(self, held)
            return
        end = held.find(b"\n")
        if end < 0:
            if len(held) > _HELLO_MAX:
                self._reject("hello line too long")
            return
        self._hello = None
        words = held[len(HELLO_PREFIX) : end].decode("ascii", "replace").split()
        if not words or not NAME_RE.match(words[0]):
            self._reject(f"bad hello {held[:end]!r}")
            return
        flags = set(words[1:])
        self.echo = "echo" in flags
        self.listen_only = "listen" in flags
        self.timed = "timed" in flags
        self.bus._rename(self, words[0])
        self._flush_held()
        if len(held) > end + 1 and not self.closed:
            self.data_received(held[end + 1 :])

    def _flush_held(self) -> None:
        if self._held and not self.closed:
            self.deliver([])

    def _timed_received(self, data: bytes) -> None:
        records = self._records
        records += data
        pos = 0
        while len(records) - pos >= _RECORD_HEAD:
            length = int.from_bytes(records[pos : pos + 2], "little")
            if len(records) - pos < _RECORD_HEAD + length:
                break
            at_us = int.from_bytes(records[pos + 2 : pos + _RECORD_HEAD], "little")
            body = bytes(records[pos + _RECORD_HEAD : pos + _RECORD_HEAD + length])
            pos += _RECORD_HEAD + length
            self.bus._on_tx(self, body, at=at_us / 1e6 if at_us else 0.0)
            if self.closed:
                return
        del records[:pos]

    def _reject(self, why: str) -> None:
        _LOG.warning("vbus: closing socket endpoint %s: %s", self.name, why)
        self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.bus._unregister(self)

    def deliver(self, parts: list[tuple[bytes, float]]) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self._hello is not None:
            # Not yet known whether this endpoint wants raw bytes or timed records: hold the
            # data until its first byte says. Never guessed from a silence: a board descheduled
            # between connect() and its hello would get raw bytes it takes for record heads.
            self._held.extend(parts)
            del self._held[:-_HELD_PARTS]
            return
        if self._held:
            parts, self._held = [*self._held, *parts], []
        size = sum(len(part) for part, _ in parts)
        if transport.get_write_buffer_size() > _SOCKET_RX_LIMIT:
            self.overrun_bytes += size
            return
        if self.timed:
            # One record per run of back-to-back bytes, so every record's time is exact.
            transport.write(
                b"".join(
                    len(part).to_bytes(2, "little") + round(end * 1e6).to_bytes(8, "little") + part
                    for part, end in parts
                )
            )
        else:
            transport.write(b"".join(part for part, _ in parts))
        self.rx_bytes += size

    def pause_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.closed = True
        self.bus._unregister(self)


@dataclass(eq=False)
class Segment:
    """Bytes one transmitter puts on the line back to back, from ``start`` to ``end``."""

    source: Endpoint | None  # None: a noise burst
    start: float
    end: float
    data: bytearray
    sent: int = 0  # bytes already delivered
    garbled: bytearray | None = None  # 1 per byte already garbled by a collision
