"""smartPDU RS-485 wire protocol, shared unchanged by the group boards (MicroPython) and the
aggregator (CPython). See PROTOCOL.md beside this file for byte layouts and timing.

Modules:
- ``consts``   version, addresses, message types, NAK codes, channel states, config keys
- ``errors``   the FrameError family: every way a frame can be bad
- ``crc``      CRC-32 (binascii/viper on MicroPython, crcmod on CPython)
- ``framing``  COBS framing, zero-allocation FrameWriter/FrameReader
- ``messages`` message classes, ``encode(message) -> bytes``, ``decode(bytes) -> message``
"""
