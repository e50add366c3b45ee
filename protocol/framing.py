"""COBS framing with CRC-32, and the zero-allocation frame writer/reader.

Wire form of one frame: ``COBS(header + payload + crc32_le) + 0x00``. The 0x00 delimiter
never occurs inside a stuffed frame, so a receiver that loses sync (noise, a board unplugged
mid-frame, a board starting to listen mid-frame) gets one bad frame, rejected by COBS or CRC
checks, and starts clean at the next 0x00.

FrameWriter and FrameReader work on buffers allocated once in ``__init__``; sealing a frame
and checking one allocate nothing, good or bad (proven by MicroPython heap_lock tests).
``FrameReader.check`` reports a bad frame as -1 with the reason in ``error`` (one of the
protocol's preallocated FrameError instances); ``decode`` raises a fresh copy of it. Never
raise a shared instance again and again on MicroPython: each raise appends a traceback entry
to it (while the heap is unlocked), so every bad frame on the bus would leak heap for ever.
"""

from protocol.consts import (
    ADDR_BROADCAST,
    CRC_LEN,
    HEADER_LEN,
    MAX_PAYLOAD,
    MAX_RAW,
    MAX_WIRE,
    MIN_RAW,
    VERSION,
)
from protocol.crc import crc32_check, crc32_put
from protocol.errors import (
    CobsError,
    CrcError,
    FrameError,
    LengthError,
    UnknownTypeError,
    VersionError,
)
from protocol.layouts import PAYLOAD_MAX, PAYLOAD_MIN

_E_COBS = CobsError("bad COBS stuffing")
_E_ZERO = CobsError("zero byte inside a frame")
_E_SHORT = LengthError("frame shorter than header + CRC")
_E_LONG = LengthError("frame longer than the maximum")
_E_PAYLOAD = LengthError("payload length does not fit the message type")
_E_CRC = CrcError("CRC-32 mismatch")
_E_VERSION = VersionError("unsupported protocol version")
_E_TYPE = UnknownTypeError("unknown message type")


def _error(instance: FrameError) -> FrameError:
    # A fresh copy to raise: a shared instance would collect a traceback entry per raise.
    return type(instance)(*instance.args)


def cobs_encode_into(src, n: int, dst) -> int:
    """Stuff ``src[:n]`` into ``dst`` (no delimiter). Returns the stuffed length."""
    code_at = 0
    out = 1
    code = 1
    for i in range(n):
        b = src[i]
        if b:
            dst[out] = b
            out += 1
            code += 1
            if code == 0xFF:
                dst[code_at] = code
                code_at = out
                out += 1
                code = 1
        else:
            dst[code_at] = code
            code_at = out
            out += 1
            code = 1
    dst[code_at] = code
    return out


# cobs_decode_into's failures (negative lengths)
_COBS_BAD = -1
_COBS_ZERO = -2
_COBS_LONG = -3


def cobs_decode_into(src, start: int, end: int, dst) -> int:
    """Unstuff ``src[start:end]`` (no delimiter) into ``dst``. Returns the decoded length,
    or a negative code: -1 bad stuffing, -2 a zero byte inside, -3 longer than ``dst``."""
    limit = len(dst)
    out = 0
    i = start
    while i < end:
        code = src[i]
        if code == 0:
            return _COBS_ZERO
        i += 1
        stop = i + code - 1
        if stop > end:
            return _COBS_BAD
        if out + code > limit + 1:
            return _COBS_LONG
        while i < stop:
            b = src[i]
            if b == 0:
                return _COBS_ZERO
            dst[out] = b
            out += 1
            i += 1
        if code < 0xFF and i < end:
            if out >= limit:
                return _COBS_LONG
            dst[out] = 0
            out += 1
    return out


class FrameWriter:
    """Builds frames in place: write the payload into ``raw`` at ``HEADER_LEN``, then seal.

    ``wire[:seal(...)]`` is the frame to transmit, delimiter included.
    """

    def __init__(self, src: int) -> None:
        self.src = src
        self.raw = bytearray(MAX_RAW)
        self.wire = bytearray(MAX_WIRE)

    def seal(self, dst: int, mtype: int, seq: int, payload_len: int) -> int:
        if payload_len < 0 or payload_len > MAX_PAYLOAD:
            raise _error(_E_LONG)
        raw = self.raw
        raw[0] = VERSION
        raw[1] = dst
        raw[2] = self.src
        raw[3] = mtype
        raw[4] = seq & 0xFF
        n = HEADER_LEN + payload_len
        crc32_put(raw, n)
        n = cobs_encode_into(raw, n + CRC_LEN, self.wire)
        self.wire[n] = 0
        return n + 1


class FrameReader:
    """Collects bytes into frames and validates them.

    Typical loop::

        i = 0
        while i < n:
            i = reader.feed(chunk, i, n)
            if reader.ready:
                try:
                    reader.decode()
                except FrameError:
                    ...  # count it; a NAK needs reader.src/.mtype (valid for Version/Type)
                else:
                    ...  # reader.dst, .src, .mtype, .seq, payload at raw[HEADER_LEN:]

    After ``decode()`` the payload is ``raw[HEADER_LEN:HEADER_LEN + payload_len]``.
    """

    def __init__(self) -> None:
        self._acc = bytearray(MAX_WIRE)
        self._n = 0
        self._overflow = False
        self.ready = False
        self.raw = bytearray(MAX_RAW)
        self.version = 0
        self.dst = 0
        self.src = 0
        self.mtype = 0
        self.seq = 0
        self.payload_len = 0
        self.crc_ok = False  # the last decoded frame passed COBS and CRC (its header is real)
        self.error: FrameError = _E_CRC  # why the last bad frame was rejected
        self.dropped_bytes = 0  # bytes discarded because a frame overflowed MAX_WIRE

    @property
    def partial(self) -> int:
        """Bytes of an unfinished frame collected so far (0 between frames)."""
        return self._n

    def reset(self) -> None:
        """Forget a partial frame (e.g. after a line break or a board unplugged)."""
        self._n = 0
        self._overflow = False
        self.ready = False

    def feed(self, data, start: int, end: int) -> int:
        """Consume ``data[start:end]`` up to the delimiter that ends a non-empty frame.

        Returns the index after the last consumed byte; ``ready`` is True when a complete
        frame waits for ``decode()``.
        """
        acc = self._acc
        n = self._n
        cap = MAX_WIRE - 1
        i = start
        while i < end:
            b = data[i]
            i += 1
            if b == 0:
                if n or self._overflow:
                    self._n = n
                    self.ready = True
                    return i
                continue
            if n < cap:
                acc[n] = b
                n += 1
            else:
                self._overflow = True
                self.dropped_bytes += 1
        self._n = n
        return i

    def check(self) -> int:
        """Validate the frame collected by ``feed``: its message type, or -1 for a bad frame
        (``error`` says why; ``crc_ok`` tells whether its header can be trusted). Allocates
        nothing, good frame or bad: the board's receive path."""
        n = self._n
        overflow = self._overflow
        self.reset()
        self.crc_ok = False
        if overflow:
            self.error = _E_LONG
            return -1
        raw = self.raw
        length = cobs_decode_into(self._acc, 0, n, raw)
        if length < MIN_RAW:
            if length == _COBS_ZERO:
                self.error = _E_ZERO
            elif length == _COBS_LONG:
                self.error = _E_LONG
            else:
                self.error = _E_SHORT if length >= 0 else _E_COBS
            return -1
        if not crc32_check(raw, length):
            self.error = _E_CRC
            return -1
        self.crc_ok = True
        self.version = raw[0]
        self.dst = raw[1]
        self.src = raw[2]
        self.mtype = mtype = raw[3]
        self.seq = raw[4]
        self.payload_len = payload_len = length - HEADER_LEN - CRC_LEN
        if self.version != VERSION:
            self.error = _E_VERSION
            return -1
        low = PAYLOAD_MIN[mtype]
        if low == 0xFF:
            self.error = _E_TYPE
            return -1
        if payload_len < low or payload_len > PAYLOAD_MAX[mtype]:
            self.error = _E_PAYLOAD
            return -1
        return mtype

    def decode(self) -> int:
        """Validate the frame collected by ``feed``; returns its message type or raises the
        FrameError that says what is wrong with it."""
        mtype = self.check()
        if mtype < 0:
            raise _error(self.error)
        return mtype

    def for_me(self, address: int) -> bool:
        """True when the decoded frame is addressed to ``address`` or broadcast."""
        return self.dst == address or self.dst == ADDR_BROADCAST
