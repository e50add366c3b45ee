"""The report cycle's messages: POLL, SYNC, REPORT, TELEMETRY and STATUS (the master's side;
a board packs and parses these with ``protocol.layouts`` in its buffers instead)."""

import struct

from protocol import layouts as L
from protocol.consts import (
    ADDR_BROADCAST,
    ADDR_LAST_BOARD,
    ADDR_MASTER,
    CHANNELS,
    ST_SERIOUS,
    ST_SLIGHT,
    STATE_CLIP,
    T_POLL,
    T_REPORT,
    T_STATUS,
    T_SYNC,
    T_TELEMETRY,
)
from protocol.errors import FieldError
from protocol.schema import Message, made, message, split, tail_entries


@message
class Poll(Message):
    """Master asks one board for a message of type ``want`` (REPORT, TELEMETRY or STATUS)."""

    TYPE = T_POLL
    NAME = "Poll"
    LAYOUT = L.POLL
    SRC = ADDR_MASTER
    want: int


def _bit_length(value: int) -> int:
    n = 0
    while value:
        value >>= 1
        n += 1
    return n


@message
class Sync(Message):
    """Start of a superframe of ``rounds`` report cycles (TDMA).

    Bit k of ``slot_mask`` gives address ``first_addr + k`` a REPORT slot in every round;
    slots follow in address order, round by round, the first starting ``lead_us`` after the
    end of this frame. Board ``detail_addr`` sends a TELEMETRY after the last round.
    """

    TYPE = T_SYNC
    NAME = "Sync"
    LAYOUT = L.SYNC
    DEFAULTS = {"rounds": 1, "lead_us": 0}
    DST = ADDR_BROADCAST
    SRC = ADDR_MASTER
    cycle: int
    freq_centihz: int
    slot_us: int
    first_addr: int
    slot_mask: int
    detail_addr: int
    rounds: int
    lead_us: int

    def check(self) -> None:
        if self.first_addr + _bit_length(self.slot_mask) - 1 > ADDR_LAST_BOARD:
            raise FieldError("slot_mask reaches past the last board address")

    def slot_addresses(self) -> list:
        return [self.first_addr + k for k in range(32) if self.slot_mask >> k & 1]


@message
class Report(Message):
    """Compact per-cycle currents: a 12-bit current code and a 2-bit alarm per channel, and
    the front panel's selected channel.

    ``centiamps`` are in 10 mA; above 20.47 A the REPORT carries 50 mA steps, so a value
    packs to the nearest step (``layouts.report_code``) and reads back quantised.
    ``selected`` is the channel (0..11) whose button is blue and whose current the group's
    LOAD CURRENT display shows, or -1 when none is selected.
    """

    TYPE = T_REPORT
    NAME = "Report"
    LAYOUT = L.REPORT
    DEFAULTS = {"selected": -1}
    DST = ADDR_MASTER
    VALID_UNPACKED = True  # 12-bit codes decode into range; alarms are 2 bits; selected -1..11
    centiamps: list
    alarms: list
    selected: int

    def pack(self, buf: bytearray, off: int) -> int:
        for ch in range(0, CHANNELS, 2):
            a = L.report_code(self.centiamps[ch])
            b = L.report_code(self.centiamps[ch + 1])
            o = off + 3 * (ch >> 1)
            buf[o] = a & 0xFF
            buf[o + 1] = (a >> 8) | (b & 0x0F) << 4
            buf[o + 2] = b >> 4
        a = self.alarms
        for k in range(CHANNELS // 4):
            buf[off + L.REPORT_ALARMS + k] = (
                a[4 * k] | a[4 * k + 1] << 2 | a[4 * k + 2] << 4 | a[4 * k + 3] << 6
            )
        s = self.selected
        buf[off + L.REPORT_PANEL] = s if s >= 0 else L.REPORT_NO_SELECTION
        return L.REPORT_LEN

    @classmethod
    def unpack(cls, buf, off: int, n: int, dst: int, src: int, seq: int) -> "Report":
        centiamps = [0] * CHANNELS
        alarms = [0] * CHANNELS
        selected = L.unpack_report(buf, off, centiamps, alarms)
        return made(cls, (centiamps, alarms, selected), dst, src, seq)


_OVERLOAD = L.entry_format(L.TELEMETRY[-1][1])  # struct format of one overload entry


@message
class Telemetry(Message):
    """Full report of one group board: currents, states, crest factors, health and the
    time to trip of every overloaded channel.

    The wire's state nibbles hold ``states`` (bits 0-2) and ``clipped`` (bit 3);
    ``time_to_trip_ds`` is {channel: time to trip in 0.1 s}, exactly the SLIGHT and SERIOUS
    channels.
    """

    TYPE = T_TELEMETRY
    NAME = "Telemetry"
    LAYOUT = L.TELEMETRY
    FIELDS = (
        "flags",
        "centiamps",
        "states",
        "clipped",
        "crest_x10",
        "uptime_s",
        "rx_errors",
        "windows",
        "freq_centihz",
        "time_to_trip_ds",
    )
    DST = ADDR_MASTER
    flags: int
    centiamps: list
    states: list
    clipped: list
    crest_x10: list
    uptime_s: int
    rx_errors: int
    windows: int
    freq_centihz: int
    time_to_trip_ds: dict

    def convert(self) -> None:
        super().convert()
        self.clipped = [bool(c) for c in self.clipped]
        self.time_to_trip_ds = {int(k): v for k, v in self.time_to_trip_ds.items()}

    def check(self) -> None:
        if len(self.clipped) != CHANNELS:
            raise FieldError("clipped must have 12 values")
        overloaded = [ch for ch in range(CHANNELS) if self.states[ch] in (ST_SLIGHT, ST_SERIOUS)]
        if sorted(self.time_to_trip_ds) != overloaded:
            raise FieldError("time_to_trip_ds must name exactly the SLIGHT and SERIOUS channels")
        for v in self.time_to_trip_ds.values():
            if not isinstance(v, int) or not 0 <= v <= 0xFFFF:
                raise FieldError("time_to_trip_ds must be 0..65535")

    def pack(self, buf: bytearray, off: int) -> int:
        states = [s | (STATE_CLIP if c else 0) for s, c in zip(self.states, self.clipped)]
        ttt = [self.time_to_trip_ds.get(ch, 0) for ch in range(CHANNELS)]
        return L.pack_telemetry(
            buf,
            off,
            self.flags,
            self.centiamps,
            states,
            self.crest_x10,
            self.uptime_s,
            self.rx_errors,
            self.windows,
            self.freq_centihz,
            ttt,
        )

    @classmethod
    def unpack(cls, buf, off: int, n: int, dst: int, src: int, seq: int) -> "Telemetry":
        entries = tail_entries(cls, n)
        flags, centiamps, packed, crest, uptime, rx_errors, windows, freq, _ = split(
            cls, struct.unpack_from(cls.FORMAT, buf, off)
        )
        states = []
        clipped = []
        for b in packed:
            states.append(b & 0x07)
            states.append(b >> 4 & 0x07)
            clipped.append(b & STATE_CLIP != 0)
            clipped.append(b >> 4 & STATE_CLIP != 0)
        ttt = {}
        o = off + cls.SIZE
        for _ in range(entries):
            ch, ds = struct.unpack_from(_OVERLOAD, buf, o)
            if ch >= CHANNELS or ch in ttt:
                raise FieldError("overload entry channel")
            ttt[ch] = ds
            o += L.TELEMETRY_OVERLOAD_LEN
        msg = made(cls, (flags, centiamps, states, clipped, crest, uptime, rx_errors, windows,
                         freq, ttt), dst, src, seq)  # fmt: skip
        msg.validate()
        return msg


@message
class Status(Message):
    """Mains status node: MCCB contacts, Emergency Stop, loss-of-Neutral, temperature."""

    TYPE = T_STATUS
    NAME = "Status"
    LAYOUT = L.STATUS
    DST = ADDR_MASTER
    inputs: int
    cause: int
    temp_decidegc: int
    uptime_s: int
    rx_errors: int
    trip_count: int
    since_trip_s: int
