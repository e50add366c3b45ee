"""The byte layout of every payload, declared once, and the board's allocation-free packers.

Each message's payload is one table: ``(name, code, low, high[, also])`` per field in wire
order. Offsets, sizes, the payload length limits, the message classes' packing, unpacking
and range checks (``protocol.schema``) and the layout tables of PROTOCOL.md
(``python -m protocol.gen_doc``) all come from these tables.

``code`` says how the field sits on the wire (all multi-byte values little-endian):

- ``B`` ``H`` ``I`` ``h``: one struct value; ``3B``, ``12H``: that many of them (a sequence);
- ``8s``: 8 raw bytes; ``c``: one ASCII letter, 0 for none (``""``); ``?``: a 0/1 flag;
- ``12u12``: 12 unsigned values of 12 bits packed low bit first (value 0 in the low bits of
  byte 0), ``12u2`` and ``12u4`` likewise, ``u4``: one 4-bit value in a byte;
- ``A-N*X`` (a variable tail, last field): ``A`` to ``N`` entries of the struct format ``X``.

``low..high`` is the range of a value (every element of a sequence); ``also`` one more value
allowed outside it. Checks that span fields live in the message class (``check``).
"""

try:
    from micropython import const  # pyright: ignore[reportMissingImports, reportAssignmentType]
except ImportError:  # CPython (the aggregator)

    def const(expr: int) -> int:
        return expr


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
    REPORT_MAX_CENTIAMPS,
    REPORT_OVER_RANGE,
    ST_OFF,
    ST_SERIOUS,
    ST_SLIGHT,
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

_U8 = const(0xFF)
_U16 = const(0xFFFF)
_U32 = 0xFFFFFFFF  # not a const(): a big int on a 32-bit port, made once
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
    ("centiamps", "12u12", 0, REPORT_OVER_RANGE, 0xFFFF),
    ("alarms", "12u2", 0, 3),
    ("selected", "u4", -1, CHANNELS - 1),
)
TELEMETRY = (
    ("flags", "B", 0, _U8),
    ("centiamps", "12H", 0, _U16),
    ("states", "12u4", ST_OFF, ST_TRIPPED),
    ("crest_x10", "12B", 0, _U8),
    ("uptime_s", "I", 0, _U32),
    ("rx_errors", "H", 0, _U16),
    ("windows", "H", 0, _U16),
    ("freq_centihz", "H", 0, _U16),
    ("time_to_trip_ds", "0-12*BH", 0, _U16),
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


# PAYLOAD_MIN[type] == 0xFF marks an unknown type.
PAYLOAD_MIN, PAYLOAD_MAX = _lengths()

# Lengths and offsets the board's hot path and the host use, from the tables above.
POLL_LEN = fixed_len(POLL)
SYNC_LEN = fixed_len(SYNC)
SYNC_FREQ = offset_of(SYNC, "freq_centihz")
SYNC_SLOT_US = offset_of(SYNC, "slot_us")
SYNC_FIRST = offset_of(SYNC, "first_addr")
SYNC_MASK = offset_of(SYNC, "slot_mask")
SYNC_DETAIL = offset_of(SYNC, "detail_addr")
SYNC_ROUNDS = offset_of(SYNC, "rounds")
SYNC_LEAD = offset_of(SYNC, "lead_us")
REPORT_LEN = fixed_len(REPORT)
REPORT_ALARMS = offset_of(REPORT, "alarms")
REPORT_PANEL = offset_of(REPORT, "selected")
REPORT_NO_SELECTION = const(0x0F)  # panel nibble: no button selected (12..14 read the same)
REPORT_FINE_CODES = const(2048)  # codes 0..2047: 10 mA steps (0..20.47 A)
REPORT_COARSE_STEP = const(5)  # codes 2048..4094: 50 mA steps from 20.48 A to 122.78 A
REPORT_CODE_OVER = const(4095)
TELEMETRY_FIXED_LEN = fixed_len(TELEMETRY)
TELEMETRY_OVERLOAD_LEN = const(3)  # per overloaded channel: u8 channel, u16 time-to-trip 0.1 s
TM_FLAGS = offset_of(TELEMETRY, "flags")
TM_CURRENTS = offset_of(TELEMETRY, "centiamps")
TM_STATES = offset_of(TELEMETRY, "states")
TM_CREST = offset_of(TELEMETRY, "crest_x10")
TM_UPTIME = offset_of(TELEMETRY, "uptime_s")
TM_RX_ERRORS = offset_of(TELEMETRY, "rx_errors")
TM_WINDOWS = offset_of(TELEMETRY, "windows")
TM_FREQ = offset_of(TELEMETRY, "freq_centihz")
TM_OVERLOADS = offset_of(TELEMETRY, "time_to_trip_ds")
STATUS_LEN = fixed_len(STATUS)
STATUS_FORMAT = struct_format(STATUS)
INFO_LEN = fixed_len(INFO)
CONFIG_HEAD_LEN = fixed_len(CONFIG_GET)
CONFIG_MAX_LEN = PAYLOAD_MAX[T_CONFIG_VALUE]
IDENTIFY_LEN = fixed_len(IDENTIFY)
DISCOVER_LEN = fixed_len(DISCOVER)
DISCOVER_REPLY_LEN = fixed_len(DISCOVER_REPLY)
MUTE_LEN = fixed_len(MUTE)
ASSIGN_LEN = fixed_len(ASSIGN)
ACK_LEN = fixed_len(ACK)
NAK_LEN = fixed_len(NAK)


def put_u16(buf, off: int, value: int) -> None:
    buf[off] = value & 0xFF
    buf[off + 1] = (value >> 8) & 0xFF


def put_u32(buf, off: int, value: int) -> None:
    # Callers keep value < 2**30 on the board so it stays a small int on 32-bit ports.
    buf[off] = value & 0xFF
    buf[off + 1] = (value >> 8) & 0xFF
    buf[off + 2] = (value >> 16) & 0xFF
    buf[off + 3] = (value >> 24) & 0xFF


def get_u16(buf, off: int) -> int:
    return buf[off] | buf[off + 1] << 8


def report_code(centiamps: int) -> int:
    """12-bit REPORT code of a current in 10 mA (finer below 20.48 A, see REPORT_LEN)."""
    if centiamps < REPORT_FINE_CODES:
        return centiamps if centiamps > 0 else 0
    if centiamps > REPORT_MAX_CENTIAMPS:
        return REPORT_CODE_OVER
    return REPORT_FINE_CODES + (centiamps - REPORT_FINE_CODES + 2) // REPORT_COARSE_STEP


def report_centiamps(code: int) -> int:
    """Current in 10 mA of a 12-bit REPORT code; REPORT_OVER_RANGE for the over-range code."""
    if code < REPORT_FINE_CODES:
        return code
    if code >= REPORT_CODE_OVER:
        return REPORT_OVER_RANGE
    return REPORT_FINE_CODES + (code - REPORT_FINE_CODES) * REPORT_COARSE_STEP


def sync_slot(buf, off: int, address: int) -> int:
    """Slot index of ``address`` in the SYNC payload at ``buf[off:]``, or -1 if it has none.

    Works byte by byte so the 32-bit mask never becomes a big int on a 32-bit port.
    """
    bit = address - buf[off + SYNC_FIRST]
    if bit < 0 or bit > 31:
        return -1
    m = off + SYNC_MASK
    if not buf[m + (bit >> 3)] & (1 << (bit & 7)):
        return -1
    slot = 0
    for k in range(bit):
        if buf[m + (k >> 3)] & (1 << (k & 7)):
            slot += 1
    return slot


def sync_slot_count(buf, off: int) -> int:
    """Number of REPORT slots announced by the SYNC payload at ``buf[off:]``."""
    count = 0
    m = off + SYNC_MASK
    for k in range(32):
        if buf[m + (k >> 3)] & (1 << (k & 7)):
            count += 1
    return count


def pack_telemetry(
    buf,
    off: int,
    flags: int,
    centiamps,
    states,
    crest_x10,
    uptime_s: int,
    rx_errors: int,
    windows: int,
    freq_centihz: int,
    ttt_ds,
) -> int:
    """Write a TELEMETRY payload at ``buf[off:]`` without allocating; returns its length.

    ``centiamps`` (12 x 10 mA), ``states`` (12 x state | STATE_CLIP), ``crest_x10`` (12 x u8)
    and ``ttt_ds`` (12 x time to trip, 0.1 s) are the firmware's preallocated arrays. One
    overload entry follows the fixed part for each SLIGHT or SERIOUS channel.
    """
    buf[off + TM_FLAGS] = flags
    o = off + TM_CURRENTS
    for ch in range(CHANNELS):
        v = centiamps[ch]
        buf[o] = v & 0xFF
        buf[o + 1] = (v >> 8) & 0xFF
        o += 2
    o = off + TM_STATES
    for k in range(0, CHANNELS, 2):
        buf[o] = (states[k] & 0x0F) | (states[k + 1] & 0x0F) << 4
        o += 1
    o = off + TM_CREST
    for ch in range(CHANNELS):
        buf[o] = crest_x10[ch]
        o += 1
    put_u32(buf, off + TM_UPTIME, uptime_s)
    put_u16(buf, off + TM_RX_ERRORS, rx_errors if rx_errors < 0xFFFF else 0xFFFF)
    put_u16(buf, off + TM_WINDOWS, windows & 0xFFFF)
    put_u16(buf, off + TM_FREQ, freq_centihz)
    n = TM_OVERLOADS
    for ch in range(CHANNELS):
        s = states[ch] & 0x07
        if s == ST_SLIGHT or s == ST_SERIOUS:
            buf[off + n] = ch
            put_u16(buf, off + n + 1, ttt_ds[ch])
            n += TELEMETRY_OVERLOAD_LEN
    return n


def pack_status(
    buf,
    off: int,
    inputs: int,
    cause: int,
    temp_decidegc: int,
    uptime_s: int,
    rx_errors: int,
    trip_count: int,
    since_trip_s: int,
) -> int:
    """Write a STATUS payload at ``buf[off:]`` without allocating; returns its length."""
    struct.pack_into(STATUS_FORMAT, buf, off, inputs, cause, temp_decidegc, uptime_s,
                     rx_errors, trip_count, since_trip_s)  # fmt: skip
    return STATUS_LEN


# State -> REPORT alarm code (OFF and OK both map to 0: the current tells them apart).
_ALARM_OF_STATE = b"\x00\x00\x01\x02\x03\x00\x00\x00"


def pack_report(buf, off: int, centiamps, states, selected: int) -> int:
    """Write a REPORT payload at ``buf[off:]`` without allocating; returns its length.

    ``centiamps`` may hold CENTIAMPS_INVALID (0xFFFF): it goes out as the over-range code.
    ``selected`` is the front panel's selected channel (0..11) or -1 for none.
    """
    o = off
    for ch in range(0, CHANNELS, 2):
        a = report_code(centiamps[ch])
        b = report_code(centiamps[ch + 1])
        buf[o] = a & 0xFF
        buf[o + 1] = (a >> 8) | (b & 0x0F) << 4
        buf[o + 2] = b >> 4
        o += 3
    alarm_of = _ALARM_OF_STATE
    o = off + REPORT_ALARMS
    for k in range(0, CHANNELS, 4):
        buf[o] = (
            alarm_of[states[k] & 0x07]
            | alarm_of[states[k + 1] & 0x07] << 2
            | alarm_of[states[k + 2] & 0x07] << 4
            | alarm_of[states[k + 3] & 0x07] << 6
        )
        o += 1
    buf[off + REPORT_PANEL] = selected if 0 <= selected < CHANNELS else REPORT_NO_SELECTION
    return REPORT_LEN


def unpack_report(buf, off: int, centiamps, alarms) -> int:
    """Read a REPORT payload into ``centiamps`` (10 mA) and ``alarms`` (12 each); returns
    the selected channel (0..11) or -1 for none."""
    o = off
    for ch in range(0, CHANNELS, 2):
        centiamps[ch] = report_centiamps(buf[o] | (buf[o + 1] & 0x0F) << 8)
        centiamps[ch + 1] = report_centiamps(buf[o + 1] >> 4 | buf[o + 2] << 4)
        o += 3
    for ch in range(CHANNELS):
        alarms[ch] = buf[off + REPORT_ALARMS + (ch >> 2)] >> (2 * (ch & 3)) & 3
    selected = buf[off + REPORT_PANEL] & 0x0F
    return selected if selected < CHANNELS else -1
