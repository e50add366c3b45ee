"""The byte layout of every payload, declared once.

Each message's payload is one table: ``(name, code, low, high[, also])`` per field in wire
order. ``python -m protocol.gen`` derives from them everything else that states a layout: the
offsets, lengths and payload limits in ``layouts.py``, the compact field specs in each message
class (``cycle``, ``admin``, ``discovery``: the generic packing, unpacking and range checks of
``protocol.schema`` read them) and the payload tables of PROTOCOL.md; a test fails when any
of them is out of date. The host and the generator import this module, a board does not.

``code`` says how the field sits on the wire (all multi-byte values little-endian):

- ``B`` ``H`` ``I`` ``h``: one struct value; ``3B``, ``12H``: that many of them (a sequence);
- ``8s``: 8 raw bytes; ``c``: one ASCII letter, 0 for none (``""``); ``?``: a 0/1 flag;
- ``12u12``: 12 unsigned values of 12 bits packed low bit first (value 0 in the low bits of
  byte 0), ``12u2`` and ``12u4`` likewise, ``u4``: one 4-bit value in a byte;
- ``A-N*X`` (a variable tail, last field): ``A`` to ``N`` entries of the struct format ``X``.

``low..high`` is the range of a value (every element of a sequence); ``also`` one more value
allowed outside it. Checks that span fields live in the message class (``check``).
"""

import struct

from protocol.consts import (
    ADDR_FIRST_BOARD,
    ADDR_LAST_BOARD,
    BOARD_MAINS_STATUS_SIM,
    BOARD_PICO_MCP3208,
    CAUSE_UNKNOWN,
    CHANNELS,
    E_BAD_VERSION,
    E_NOT_SUPPORTED,
    GROUP_LETTERS,
    REPORT_OVER_RANGE,
    ST_OFF,
    ST_TRIPPED,
    T_ACK,
    T_ASSIGN,
    T_CONFIG_GET,
    T_CONFIG_SET,
    T_CONFIG_VALUE,
    T_DISCOVER,
    T_DISCOVER_REPLY,
    T_GET_INFO,
    T_IDENTIFY,
    T_INFO,
    T_MUTE,
    T_NAK,
    T_POLL,
    T_REPORT,
    T_STATUS,
    T_SYNC,
    T_TELEMETRY,
)

_U8 = 0xFF
_U16 = 0xFFFF
_U32 = 0xFFFFFFFF
_CH = str(CHANNELS)  # per-channel sequences: one value per channel
_GROUP_FIRST = ord(GROUP_LETTERS[0])  # group letters travel as ASCII, 0 for none
_GROUP_LAST = ord(GROUP_LETTERS[-1])

POLL = (("want", "B", T_REPORT, T_STATUS),)
SYNC = (
    ("cycle", "H", 0, _U16),
    ("freq_centihz", "H", 4000, 7000, 0),
    ("slot_us", "H", 1, _U16),
    ("first_addr", "B", ADDR_FIRST_BOARD, ADDR_LAST_BOARD),
    ("slot_mask", "I", 0, _U32),
    ("detail_addr", "B", 0, ADDR_LAST_BOARD),
    ("rounds", "B", 1, _U8),
    ("lead_us", "H", 0, _U16),
)
REPORT = (
    ("centiamps", _CH + "u12", 0, REPORT_OVER_RANGE, 0xFFFF),
    ("alarms", _CH + "u2", 0, 3),
    ("selected", "u4", -1, CHANNELS - 1),
)
TELEMETRY = (
    ("flags", "B", 0, _U8),
    ("centiamps", _CH + "H", 0, _U16),
    ("states", _CH + "u4", ST_OFF, ST_TRIPPED),
    ("crest_x10", _CH + "B", 0, _U8),
    ("uptime_s", "I", 0, _U32),
    ("rx_errors", "H", 0, _U16),
    ("windows", "H", 0, _U16),
    ("freq_centihz", "H", 0, _U16),
    ("time_to_trip_ds", "0-" + _CH + "*BH", 0, _U16),
)
STATUS = (
    ("inputs", "B", 0, 0x1F),
    ("cause", "B", 0, CAUSE_UNKNOWN),
    ("temp_decidegc", "h", -32768, 32767),
    ("uptime_s", "I", 0, _U32),
    ("rx_errors", "H", 0, _U16),
    ("trip_count", "H", 0, _U16),
    ("since_trip_s", "H", 0, _U16),
)
GET_INFO = ()
INFO = (
    ("fw_version", "3B", 0, _U8),
    ("protocol_version", "B", 0, _U8),
    ("board_type", "B", BOARD_PICO_MCP3208, BOARD_MAINS_STATUS_SIM),
    ("uid", "8s", 0, 0),
    ("group", "c", _GROUP_FIRST, _GROUP_LAST),
    ("channels", "B", 0, CHANNELS),
    ("config_digest", "I", 0, _U32),
    ("flags", "B", 0, _U8),
)
CONFIG_GET = (("key", "B", 0, _U8), ("index", "B", 0, _U8))
CONFIG_VALUE = (("key", "B", 0, _U8), ("index", "B", 0, _U8), ("value", "1-101*B", 0, _U8))
IDENTIFY = (("seconds", "B", 0, _U8),)
DISCOVER = (("uid_lo", "8s", 0, 0), ("uid_hi", "8s", 0, 0))
DISCOVER_REPLY = (
    ("uid", "8s", 0, 0),
    ("address", "B", 0, _U8),
    ("board_type", "B", BOARD_PICO_MCP3208, BOARD_MAINS_STATUS_SIM),
)
MUTE = (("uid", "8s", 0, 0), ("mute", "?", 0, 1))
ASSIGN = (
    ("uid", "8s", 0, 0),
    ("address", "B", ADDR_FIRST_BOARD, ADDR_LAST_BOARD),
    ("group", "c", _GROUP_FIRST, _GROUP_LAST),
)
ACK = (("acked_type", "B", 0, _U8),)
NAK = (("rejected_type", "B", 0, _U8), ("error", "B", E_BAD_VERSION, E_NOT_SUPPORTED))

# Every payload by message type (CONFIG_SET carries a CONFIG_VALUE).
LAYOUTS = (
    (T_POLL, POLL),
    (T_SYNC, SYNC),
    (T_REPORT, REPORT),
    (T_TELEMETRY, TELEMETRY),
    (T_STATUS, STATUS),
    (T_GET_INFO, GET_INFO),
    (T_INFO, INFO),
    (T_CONFIG_GET, CONFIG_GET),
    (T_CONFIG_VALUE, CONFIG_VALUE),
    (T_CONFIG_SET, CONFIG_VALUE),
    (T_IDENTIFY, IDENTIFY),
    (T_DISCOVER, DISCOVER),
    (T_DISCOVER_REPLY, DISCOVER_REPLY),
    (T_MUTE, MUTE),
    (T_ASSIGN, ASSIGN),
    (T_ACK, ACK),
    (T_NAK, NAK),
)


def count_of(code: str) -> int:
    """Values in a field (1 for a scalar, N for ``N...``; bytes of ``Ns`` count as one)."""
    n = 0
    for ch in code:
        if "0" <= ch <= "9":
            n = n * 10 + ord(ch) - 48
        else:
            break
    return n if n and code[-1] != "s" else 1


def tail_of(code: str):
    """(fewest entries, most entries, struct format of one entry) of an ``A-N*X`` tail, or
    None for a fixed-size field."""
    star = code.find("*")
    if star < 0:
        return None
    dash = code.find("-")
    return int(code[:dash]), int(code[dash + 1 : star]), entry_format(code)


def entry_format(code: str) -> str:
    """The struct format of one entry of an ``A-N*X`` tail ("" for a fixed-size field)."""
    star = code.find("*")
    return "<" + code[star + 1 :] if star >= 0 else ""


def size_of(code: str) -> int:
    """Bytes of a fixed-size field (0 for a variable tail)."""
    if "*" in code:
        return 0
    bits = code.find("u")
    if bits >= 0:
        return (max(1, count_of(code)) * int(code[bits + 1 :]) + 7) // 8
    if code == "c" or code == "?":
        return 1
    return struct.calcsize("<" + code)


def offset_of(layout, name: str) -> int:
    """Byte offset of field ``name`` in a payload of ``layout``."""
    off = 0
    for field in layout:
        if field[0] == name:
            return off
        off += size_of(field[1])
    raise KeyError(name)


def struct_format(layout) -> str:
    """The struct format of a payload's fixed part: ``c`` and ``?`` as one u8, packed bit
    fields as their bytes (one u8 each); the variable tail left out."""
    parts = ["<"]
    for field in layout:
        code = field[1]
        if "*" in code:
            break
        if "u" in code:
            code = str(size_of(code)) + "B"
        elif code == "c" or code == "?":
            code = "B"
        parts.append(code)
    return "".join(parts)


def fixed_len(layout) -> int:
    """Bytes of the fixed part of a payload of ``layout``."""
    n = 0
    for field in layout:
        n += size_of(field[1])
    return n


def _lengths():
    low = bytearray(b"\xff" * 256)
    high = bytearray(256)
    for mtype, layout in LAYOUTS:
        lo = hi = fixed_len(layout)
        if layout:
            tail = tail_of(layout[-1][1])
            if tail is not None:
                entry = struct.calcsize(tail[2])
                lo += tail[0] * entry
                hi += tail[1] * entry
        low[mtype] = lo
        high[mtype] = hi
    return bytes(low), bytes(high)


def payload_limits(layout) -> tuple:
    """(fewest, most) payload bytes of ``layout``."""
    lo = hi = fixed_len(layout)
    if layout:
        tail = tail_of(layout[-1][1])
        if tail is not None:
            entry = struct.calcsize(tail[2])
            lo += tail[0] * entry
            hi += tail[1] * entry
    return lo, hi
