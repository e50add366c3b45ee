"""CRC-32 on MicroPython (the group boards).

``crc32`` is the native ``binascii.crc32`` (convenience path). The frame path uses a viper
table kernel instead because on a 32-bit port a CRC value >= 2**30 returned to Python is a
heap-allocated big int; ``crc32_put``/``crc32_check`` keep the value inside viper machine words
and only write bytes / return 0 or 1, so sealing or checking a frame allocates nothing. Both
are checked against each other and against crcmod on the golden vectors.
"""

from array import array
from binascii import crc32 as _native_crc32

import micropython

_POLY_HI = micropython.const(0xEDB8)
_POLY_LO = micropython.const(0x8320)


def _make_table():
    table = array("I", bytes(1024))
    poly = _POLY_HI << 16 | _POLY_LO
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table[i] = c
    return table


_TABLE = _make_table()


def crc32(data):
    """CRC-32 of ``data`` (IEEE 802.3, as zlib and crcmod's crc-32)."""
    return _native_crc32(data)


@micropython.viper
def _crc_into(buf: ptr8, n: int, table: ptr32, out: ptr8):
    mask = uint(0xFFFF) << 16 | uint(0xFFFF)
    crc = mask
    i = 0
    while i < n:
        crc = (uint(table[(crc ^ uint(buf[i])) & 0xFF]) ^ (crc >> 8)) & mask
        i += 1
    crc = crc ^ mask
    out[0] = crc & 0xFF
    out[1] = (crc >> 8) & 0xFF
    out[2] = (crc >> 16) & 0xFF
    out[3] = (crc >> 24) & 0xFF


_scratch = bytearray(4)


def crc32_put(raw, n):
    """Write the CRC-32 of ``raw[:n]`` little-endian into ``raw[n:n + 4]`` (no allocation)."""
    s = _scratch
    _crc_into(raw, n, _TABLE, s)  # pyright: ignore[reportArgumentType]
    raw[n] = s[0]
    raw[n + 1] = s[1]
    raw[n + 2] = s[2]
    raw[n + 3] = s[3]


def crc32_check(raw, n):
    """True when the last 4 bytes of ``raw[:n]`` are the CRC-32 of the bytes before them."""
    s = _scratch
    _crc_into(raw, n - 4, _TABLE, s)  # pyright: ignore[reportArgumentType]
    return s[0] == raw[n - 4] and s[1] == raw[n - 3] and s[2] == raw[n - 2] and s[3] == raw[n - 1]
