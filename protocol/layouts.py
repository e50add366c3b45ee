"""Byte layouts of every payload, and allocation-free packers for the board's hot path.

All multi-byte fields are little-endian. Offsets are relative to the payload start
(``HEADER_LEN`` in the raw frame). PROTOCOL.md documents the same tables for humans; the
golden vectors pin both.
"""

from protocol.consts import (
    CHANNELS,
    REPORT_MAX_CENTIAMPS,
    REPORT_OVER_RANGE,
    ST_SERIOUS,
    ST_SLIGHT,
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

# Fixed payload sizes.
POLL_LEN = 1  # u8 requested type
# SYNC: u16 cycle, u16 freq 0.01 Hz, u16 slot_us, u8 first, u32 slot mask, u8 detail,
# u8 rounds, u16 lead_us
SYNC_LEN = 15
SYNC_SLOT_US = 4
SYNC_FIRST = 6
SYNC_MASK = 7  # offset of the u32 slot mask
SYNC_DETAIL = 11
SYNC_ROUNDS = 12
SYNC_LEAD = 13
# REPORT: 12 x 12-bit current code, two per 3 bytes (even channel in the low 12 bits), then
# 12 x 2-bit alarm, four per byte (channel 4k in bits 0-1), then the panel byte: bits 0-3 the
# selected channel (blue button, shown on the LOAD CURRENT display), 0x0F none; bits 4-7
# reserved (sent 0, ignored).
REPORT_LEN = 22
REPORT_ALARMS = 18
REPORT_PANEL = 21
REPORT_NO_SELECTION = 0x0F  # panel nibble: no button selected (12..14 read the same)
REPORT_FINE_CODES = 2048  # codes 0..2047: 10 mA steps (0..20.47 A)
REPORT_COARSE_STEP = 5  # codes 2048..4094: 50 mA steps from 20.48 A to 122.78 A
REPORT_CODE_OVER = 4095
TELEMETRY_FIXED_LEN = 53
TELEMETRY_OVERLOAD_LEN = 3  # per overloaded channel: u8 channel, u16 time-to-trip 0.1 s
STATUS_LEN = 14
INFO_LEN = 20
CONFIG_HEAD_LEN = 2  # u8 key, u8 index
CONFIG_MAX_LEN = 103  # head + curve (1 + 10 x 10)
IDENTIFY_LEN = 1
DISCOVER_LEN = 16
DISCOVER_REPLY_LEN = 10
MUTE_LEN = 9
ASSIGN_LEN = 10
ACK_LEN = 1
NAK_LEN = 2

# TELEMETRY offsets.
TM_FLAGS = 0
TM_CURRENTS = 1  # 12 x u16, 10 mA units, 0xFFFF = invalid
TM_STATES = 25  # 6 bytes, one nibble per channel (even channel low nibble): state | clip bit
TM_CREST = 31  # 12 x u8, crest factor in 0.1 units (0 = no load)
TM_UPTIME = 43  # u32 s
TM_RX_ERRORS = 47  # u16, saturating
TM_WINDOWS = 49  # u16, wrapping
TM_FREQ = 51  # u16 0.01 Hz
TM_OVERLOADS = 53


def _lengths():
    low = bytearray(b"\xff" * 256)
    high = bytearray(256)
    for mtype, lo, hi in (
        (T_POLL, POLL_LEN, POLL_LEN),
        (T_SYNC, SYNC_LEN, SYNC_LEN),
        (T_REPORT, REPORT_LEN, REPORT_LEN),
        (
            T_TELEMETRY,
            TELEMETRY_FIXED_LEN,
            TELEMETRY_FIXED_LEN + CHANNELS * TELEMETRY_OVERLOAD_LEN,
        ),
        (T_STATUS, STATUS_LEN, STATUS_LEN),
        (T_GET_INFO, 0, 0),
        (T_INFO, INFO_LEN, INFO_LEN),
        (T_CONFIG_GET, CONFIG_HEAD_LEN, CONFIG_HEAD_LEN),
        (T_CONFIG_VALUE, CONFIG_HEAD_LEN + 1, CONFIG_MAX_LEN),
        (T_CONFIG_SET, CONFIG_HEAD_LEN + 1, CONFIG_MAX_LEN),
        (T_IDENTIFY, IDENTIFY_LEN, IDENTIFY_LEN),
        (T_DISCOVER, DISCOVER_LEN, DISCOVER_LEN),
        (T_DISCOVER_REPLY, DISCOVER_REPLY_LEN, DISCOVER_REPLY_LEN),
        (T_MUTE, MUTE_LEN, MUTE_LEN),
        (T_ASSIGN, ASSIGN_LEN, ASSIGN_LEN),
        (T_ACK, ACK_LEN, ACK_LEN),
        (T_NAK, NAK_LEN, NAK_LEN),
    ):
        low[mtype] = lo
        high[mtype] = hi
    return bytes(low), bytes(high)


# PAYLOAD_MIN[type] == 0xFF marks an unknown type.
PAYLOAD_MIN, PAYLOAD_MAX = _lengths()


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
    bit = address - buf[off + 6]
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
