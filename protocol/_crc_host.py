"""CRC-32 on CPython (the aggregator), computed by crcmod (IEEE 802.3, reflected, as zlib)."""

from __future__ import annotations

import crcmod.predefined

_crc32 = crcmod.predefined.mkPredefinedCrcFun("crc-32")


def crc32(data: bytes | bytearray | memoryview) -> int:
    """CRC-32 of ``data``."""
    return _crc32(bytes(data))


def crc32_put(raw: bytearray, n: int) -> None:
    """Write the CRC-32 of ``raw[:n]`` little-endian into ``raw[n:n + 4]``."""
    value = _crc32(bytes(raw[:n]))
    raw[n] = value & 0xFF
    raw[n + 1] = (value >> 8) & 0xFF
    raw[n + 2] = (value >> 16) & 0xFF
    raw[n + 3] = (value >> 24) & 0xFF


def crc32_check(raw: bytearray | bytes | memoryview, n: int) -> bool:
    """True when the last 4 bytes of ``raw[:n]`` are the CRC-32 of the bytes before them."""
    value = _crc32(bytes(raw[: n - 4]))
    stored = raw[n - 4] | raw[n - 3] << 8 | raw[n - 2] << 16 | raw[n - 1] << 24
    return value == stored
