"""CRC-32 for frames: one name, the right implementation for the runtime."""

try:
    from protocol._crc_mpy import crc32, crc32_check, crc32_put
except ImportError:  # CPython: no micropython module
    from protocol._crc_host import crc32, crc32_check, crc32_put

__all__ = ["crc32", "crc32_check", "crc32_put"]
