"""smartPDU RS-485 wire protocol, shared unchanged by the group boards (MicroPython) and the
aggregator (CPython). See PROTOCOL.md beside this file for byte layouts and timing.

Modules:
- ``consts``   version, addresses, message types, NAK codes, channel states, config keys
- ``errors``   the FrameError family: every way a frame can be bad
- ``crc``      CRC-32 (binascii/viper on MicroPython, crcmod on CPython)
- ``framing``  COBS framing, zero-allocation FrameWriter/FrameReader
- ``tables``   every payload's layout, declared once (host and generator only)
- ``gen``      ``python -m protocol.gen``: writes the generated parts below and PROTOCOL.md
- ``layouts``  generated offsets and lengths; the board's allocation-free packers
- ``schema``   the generic Message (pack, unpack, checks from the generated specs), encode/decode
- ``cycle`` ``admin`` ``discovery``  the message families (a board imports admin, discovery)
- ``messages`` every message class for the host, ``encode`` and ``decode``
"""
