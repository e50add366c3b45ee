"""Serial transport for the RS-485 bus (and anything else that is a serial port).

pyserial opens the port; reads are event-driven with ``loop.add_reader`` on its file
descriptor, so the asyncio loop never blocks on the line. RS-485 driver-enable:

- ``kernel``: the UART driver toggles RTS itself (``serial.rs485.RS485Settings`` through the
  TIOCSRS485 ioctl) — exact timing, the right choice on a Pi with a capable UART;
- ``rts``: this process raises RTS, writes, waits for the shift register to drain
  (tcdrain, in a worker thread) and drops RTS — for adapters without kernel support;
- ``none``: the transceiver switches direction by itself (auto-direction adapters, the
  virtual bus);
- ``auto``: kernel if the ioctl works, else none.

With a transceiver whose receiver stays enabled while sending (local echo), the master hears
its own frames; callers drop frames whose source is the master's own address.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import termios
from collections.abc import Callable
from enum import Enum

import serial
import serial.rs485


class TransportError(Exception):
    """The port cannot be used; the message says what to do about it."""


class DriverEnable(Enum):
    AUTO = "auto"
    KERNEL = "kernel"
    RTS = "rts"
    NONE = "none"


def open_serial(port: str, baud: int, *, what: str = "bus") -> serial.Serial:
    """Open ``port`` exclusively in raw 8N1, turning OS errors into messages a user can act on."""
    if not os.path.exists(port):
        raise TransportError(f"{what}.port {port}: no such device (is the adapter plugged in?)")
    try:
        return serial.Serial(port, baudrate=baud, timeout=0, write_timeout=None, exclusive=True)
    except serial.SerialException as exc:
        cause = exc.__cause__ or exc.__context__
        code = getattr(cause, "errno", None) or getattr(exc, "errno", None)
        text = str(exc)
        if code == errno.EACCES or "Permission denied" in text:
            raise TransportError(
                f"{what}.port {port}: permission denied (add the service user to the "
                "'dialout' group)"
            ) from None
        if code in (errno.EAGAIN, errno.EBUSY) or "exclusively lock" in text:
            raise TransportError(
                f"{what}.port {port}: in use by another program (only one may own the bus)"
            ) from None
        if code == errno.ENOENT:
            raise TransportError(f"{what}.port {port}: no such device") from None
        raise TransportError(f"{what}.port {port}: cannot open: {text}") from None


class SerialTransport:
    """One serial port, asyncio style: ``on_data(bytes, monotonic_time)`` for what arrives."""

    def __init__(
        self,
        port: str,
        baud: int,
        *,
        driver_enable: DriverEnable = DriverEnable.AUTO,
        on_data: Callable[[bytes, float], None] | None = None,
        what: str = "bus",
        coalesce_s: float = 0.002,
    ) -> None:
        self.port = port
        # While bytes keep coming, read every ``coalesce_s`` on a timer instead of waking for
        # every batch the driver hands over (a busy bus: ~1000 wake-ups a second -> ~500).
        self.coalesce_s = coalesce_s
        self._timer: asyncio.TimerHandle | None = None
        self.baud = baud
        self.requested_mode = driver_enable
        self.mode = DriverEnable.NONE
        self.on_data = on_data
        self.what = what
        self._serial: serial.Serial | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.lost = False  # the port went away (USB adapter unplugged)

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    def byte_time(self) -> float:
        """Seconds one 8N1 character occupies the line."""
        return 10.0 / self.baud

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        ser = open_serial(self.port, self.baud, what=self.what)
        self._serial = ser
        self.mode = self._set_driver_enable(ser)
        self._loop.add_reader(ser.fileno(), self._readable)

    def _set_driver_enable(self, ser: serial.Serial) -> DriverEnable:
        wanted = self.requested_mode
        if wanted in (DriverEnable.AUTO, DriverEnable.KERNEL):
            try:
                ser.rs485_mode = serial.rs485.RS485Settings(
                    rts_level_for_tx=True, rts_level_for_rx=False, loopback=False
                )
                return DriverEnable.KERNEL
            except (ValueError, OSError) as exc:
                if wanted is DriverEnable.KERNEL:
                    raise TransportError(
                        f"{self.what}.port {self.port}: kernel RS-485 mode not supported ({exc}); "
                        f'set {self.what}.rs485 = "rts" or "auto"'
                    ) from None
                return DriverEnable.NONE
        if wanted is DriverEnable.RTS:
            try:
                ser.rts = False
            except (OSError, serial.SerialException) as exc:
                raise TransportError(
                    f"{self.what}.port {self.port}: cannot drive RTS ({exc})"
                ) from None
            return DriverEnable.RTS
        return DriverEnable.NONE

    def _readable(self) -> None:
        if self._read_once() and self.coalesce_s > 0 and self._loop is not None:
            self._stop_reading()
            self._timer = self._loop.call_later(self.coalesce_s, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        ser, loop = self._serial, self._loop
        if ser is None or loop is None or self.lost:
            return
        # Ask first: a tty read with nothing waiting returns b"" (VMIN = 0), which reads as
        # end-of-file (the adapter gone) when it comes from a "readable" wake-up.
        try:
            waiting = ser.in_waiting
        except (OSError, serial.SerialException):
            waiting = 1  # let the read find out what is wrong
        if waiting and self._read_once():
            self._timer = loop.call_later(self.coalesce_s, self._on_timer)
        elif not self.lost:
            loop.add_reader(ser.fileno(), self._readable)  # quiet line: wake on the next byte

    def _read_once(self) -> bool:
        """Read what is waiting and hand it on; True if something came."""
        ser = self._serial
        if ser is None:
            return False
        try:
            data = os.read(ser.fileno(), 4096)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:
            # EOF or error: the adapter is gone. Stop reading; the owner decides what to do.
            self.lost = True
            self._stop_reading()
            return False
        self.bytes_in += len(data)
        if self.on_data is not None:
            assert self._loop is not None
            self.on_data(data, self._loop.time())
        return True

    def _stop_reading(self) -> None:
        if self._serial is not None and self._loop is not None:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(self._serial.fileno())

    async def write(self, data: bytes) -> None:
        """Send ``data``; returns when it has been handed to the UART (RTS mode: sent)."""
        ser = self._serial
        if ser is None:
            raise TransportError(f"{self.what}.port {self.port}: not open")
        self.bytes_out += len(data)
        if self.mode is DriverEnable.RTS:
            assert self._loop is not None
            await self._loop.run_in_executor(None, self._write_rts, ser, data)
            return
        view = memoryview(data)
        while view:
            try:
                n = os.write(ser.fileno(), view)
            except BlockingIOError:
                await asyncio.sleep(self.byte_time() * 8)
                continue
            view = view[n:]

    @staticmethod
    def _write_rts(ser: serial.Serial, data: bytes) -> None:
        ser.rts = True
        try:
            os.write(ser.fileno(), data)
            termios.tcdrain(ser.fileno())  # DE stays on until the last stop bit is out
        finally:
            ser.rts = False

    def discard_input(self) -> None:
        if self._serial is not None:
            with contextlib.suppress(OSError, termios.error):
                termios.tcflush(self._serial.fileno(), termios.TCIFLUSH)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._stop_reading()
        if self._serial is not None:
            with contextlib.suppress(OSError, serial.SerialException):
                self._serial.close()
        self._serial = None
