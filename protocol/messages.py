"""Message classes and the convenient API: ``encode(message) -> bytes`` and
``decode(bytes) -> message``.

This path allocates (it builds objects) and is meant for the aggregator, tools, tests and
the board's non-hot paths; the board's per-cycle reports use ``layouts.pack_*`` with a
``framing.FrameWriter``. Both share the layouts in ``layouts.py``.
"""

import struct

from protocol import consts as C
from protocol import layouts as L
from protocol.errors import ConfigKeyError, FieldError, LengthError, UnknownTypeError
from protocol.framing import FrameReader, FrameWriter


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise FieldError(what)


def _u8(v: int, what: str) -> None:
    _check(isinstance(v, int) and 0 <= v <= 0xFF, what + " must be 0..255")


def _u16(v: int, what: str) -> None:
    _check(isinstance(v, int) and 0 <= v <= 0xFFFF, what + " must be 0..65535")


def _u32(v: int, what: str) -> None:
    _check(isinstance(v, int) and 0 <= v <= 0xFFFFFFFF, what + " must be 0..2**32-1")


def _board_addr(v: int, what: str) -> None:
    _check(
        isinstance(v, int) and C.ADDR_FIRST_BOARD <= v <= C.ADDR_LAST_BOARD,
        what + " must be a board address 1..239",
    )


def _uid(v: bytes, what: str) -> None:
    _check(isinstance(v, (bytes, bytearray)) and len(v) == C.UID_LEN, what + " must be 8 bytes")


def _group(v: str, what: str) -> None:
    _check(v == "" or (len(v) == 1 and v in C.GROUP_LETTERS), what + " must be A..F or ''")


def _list(v: list, n: int, what: str) -> None:
    _check(len(v) == n, what + " must have " + str(n) + " values")


class Message:
    """Base: header fields plus the payload fields named in FIELDS."""

    TYPE = 0
    NAME = ""
    FIELDS: tuple = ()
    # True when every field ``unpack`` can produce is valid (the host skips validate() on
    # the hundreds of REPORTs a second).
    VALID_UNPACKED = False

    def __init__(self, dst: int, src: int, seq: int) -> None:
        self.dst = dst
        self.src = src
        self.seq = seq

    def fields(self) -> dict:
        return {name: getattr(self, name) for name in self.FIELDS}

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and isinstance(other, Message)
            and (self.dst, self.src, self.seq) == (other.dst, other.src, other.seq)
            and self.fields() == other.fields()
        )

    def __repr__(self) -> str:
        inner = ", ".join(k + "=" + repr(v) for k, v in self.fields().items())
        return "%s(dst=%d, src=%d, seq=%d, %s)" % (self.NAME, self.dst, self.src, self.seq, inner)

    def validate(self) -> None:
        _u8(self.dst, "dst")
        _u8(self.src, "src")
        _u8(self.seq, "seq")

    def pack(self, buf: bytearray, off: int) -> int:
        return 0

    @classmethod
    def unpack(cls, buf, off: int, n: int, dst: int, src: int, seq: int) -> "Message":
        raise NotImplementedError


class Poll(Message):
    """Master asks one board for a message of type ``want`` (REPORT, TELEMETRY or STATUS)."""

    TYPE = C.T_POLL
    NAME = "Poll"
    FIELDS = ("want",)

    def __init__(self, want: int, dst: int = 1, src: int = C.ADDR_MASTER, seq: int = 0) -> None:
        super().__init__(dst, src, seq)
        self.want = want

    def validate(self) -> None:
        super().validate()
        _check(self.want in (C.T_REPORT, C.T_TELEMETRY, C.T_STATUS), "want must be a report type")

    def pack(self, buf: bytearray, off: int) -> int:
        buf[off] = self.want
        return L.POLL_LEN

    @classmethod
    def unpack(cls, buf, off: int, n: int, dst: int, src: int, seq: int) -> "Poll":
        return cls(buf[off], dst, src, seq)


class Sync(Message):
    """Start of a superframe of ``rounds`` report cycles (TDMA).

    Bit k of ``slot_mask`` gives address ``first_addr + k`` a REPORT slot in every round;
    slots follow in address order, round by round, the first starting ``lead_us`` after the
    end of this frame. Board ``detail_addr`` sends a TELEMETRY after the last round.
    """

    TYPE = C.T_SYNC
    NAME = "Sync"
    FIELDS = (
        "cycle",
        "freq_centihz",
        "slot_us",
        "first_addr",
        "slot_mask",
        "detail_addr",
        "rounds",
        "lead_us",
    )

    def __init__(
        self,
        cycle: int,
        freq_centihz: int,
        slot_us: int,
        first_addr: int,
        slot_mask: int,
        detail_addr: int,
        rounds: int = 1,
        lead_us: int = 0,
        dst: int = C.ADDR_BROADCAST,
        src: int = C.ADDR_MASTER,
        seq: int = 0,
    ) -> None:
        super().__init__(dst, src, seq)
        self.cycle = cycle
        self.freq_centihz = freq_centihz
        self.slot_us = slot_us
        self.first_addr = first_addr
        self.slot_mask = slot_mask
        self.detail_addr = detail_addr
        self.rounds = rounds
        self.lead_us = lead_us

    def validate(self) -> None:
        super().validate()
        _u16(self.cycle, "cycle")
        _check(self.freq_centihz == 0 or 4000 <= self.freq_centihz <= 7000, "freq 40..70 Hz")
        _check(isinstance(self.slot_us, int) and 1 <= self.slot_us <= 0xFFFF, "slot_us 1..65535")
        _board_addr(self.first_addr, "first_addr")
        _u32(self.slot_mask, "slot_mask")
        _check(
            self.first_addr + _bit_length(self.slot_mask) - 1 <= C.ADDR_LAST_BOARD,
            "slot_mask reaches past the last board address",
        )
        _check(self.detail_addr == 0 or 1 <= self.detail_addr <= 239, "detail_addr 0..239")
        _check(isinstance(self.rounds, int) and 1 <= self.rounds <= 255, "rounds 1..255")
        _u16(self.lead_us, "lead_us")

    def slot_addresses(self) -> list:
        return [self.first_addr + k for k in range(32) if self.slot_mask >> k & 1]

    def pack(self, buf: bytearray, off: int) -> int:
        struct.pack_into(
            "<HHHBIBBH",
            buf,
            off,
            self.cycle,
            self.freq_centihz,
            self.slot_us,
            self.first_addr,
            self.slot_mask,
            self.detail_addr,
            self.rounds,
            self.lead_us,
        )
        return L.SYNC_LEN

    @classmethod
    def unpack(cls, buf, off: int, n: int, dst: int, src: int, seq: int) -> "Sync":
        v = struct.unpack_from("<HHHBIBBH", buf, off)
        return cls(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], dst, src, seq)


def _bit_length(value: int) -> int:
    n = 0
    while value:
        value >>= 1
        n += 1
    return n


class Report(Message):
    """Compact per-cycle currents: a 12-bit current code and a 2-bit alarm per channel, and
    the front panel's selected channel.

    ``centiamps`` are in 10 mA; above 20.47 A the REPORT carries 50 mA steps, so a value
    packs to the nearest step (``layouts.report_code``) and reads back quantised.
    ``selected`` is the channel (0..11) whose button is blue and whose current the group's
    LOAD CURRENT display shows, or -1 when none is selected.
    """

    TYPE = C.T_REPORT
    NAME = "Report"
    FIELDS = ("centiamps", "alarms", "selected")
    VALID_UNPACKED = True  # 12-bit codes decode into range; alarms are 2 bits; selected -1..11

    def __init__(
        self,
        centiamps: list,
        alarms: list,
        selected: int = -1,
        dst: int = C.ADDR_MASTER,
        src: int = 1,
        seq: int = 0,
    ) -> None:
        super().__init__(dst, src, seq)
        self.centiamps = list(centiamps)
        self.alarms = list(alarms)
        self.selected = selected

    def validate(self) -> None:
        super().validate()
        _list(self.centiamps, C.CHANNELS, "centiamps")
        _list(self.alarms, C.CHANNELS, "alarms")
        for v in self.centiamps:
            _check(
                isinstance(v, int) and (0 <= v <= C.REPORT_OVER_RANGE or v == C.CENTIAMPS_INVALID),
                "centiamps 0..16383 or 0xFFFF",
            )
        for v in self.alarms:
            _check(isinstance(v, int) and 0 <= v <= 3, "alarm 0..3")
        s = self.selected
        _check(isinstance(s, int) and -1 <= s < C.CHANNELS, "selected -1..11")

    def pack(self, buf: bytearray, off: int) -> int:
        for ch in range(0, C.CHANNELS, 2):
            a = L.report_code(self.centiamps[ch])
            b = L.report_code(self.centiamps[ch + 1])
            o = off + 3 * (ch >> 1)
            buf[o] = a & 0xFF
            buf[o + 1] = (a >> 8) | (b & 0x0F) << 4
            buf[o + 2] = b >> 4
        for k in range(3):
            a = self.alarms
            buf[off + L.REPORT_ALARMS + k] = (
                a[4 * k] | a[4 * k + 1] << 2 | a[4 * k + 2] << 4 | a[4 * k + 3] << 6
            )
        s = self.selected
        buf[off + L.REPORT_PANEL] = s if s >= 0 else L.REPORT_NO_SELECTION
        return L.REPORT_LEN

    @classmethod
    def unpack(cls, buf, off: int, n: int, dst: int, src: int, seq: int) -> "Report":
        centiamps = [0] * C.CHANNELS
        alarms = [0] * C.CHANNELS
        selected = L.unpack_report(buf, off, centiamps, alarms)
        return cls(centiamps, alarms, selected, dst, src, seq)


class Telemetry(Message):
    """Full report of one group board: currents, states, crest factors, health and the
    time to trip of every overloaded channel."""

    TYPE = C.T_TELEMETRY
    NAME = "Telemetry"
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

    def __init__(
        self,
        flags: int,
        centiamps: list,
        states: list,
        clipped: list,
        crest_x10: list,
        uptime_s: int,
        rx_errors: int,
        windows: int,
        freq_centihz: int,
        time_to_trip_ds: dict,
        dst: int = C.ADDR_MASTER,
        src: int = 1,
        seq: int = 0,
    ) -> None:
        super().__init__(dst, src, seq)
        self.flags = flags
        self.centiamps = list(centiamps)
        self.states = list(states)
        self.clipped = [bool(c) for c in clipped]
        self.crest_x10 = list(crest_x10)
        self.uptime_s = uptime_s
        self.rx_errors = rx_errors
        self.windows = windows
        self.freq_centihz = freq_centihz
        # {channel: time to trip in 0.1 s}, exactly the SLIGHT and SERIOUS channels.
        self.time_to_trip_ds = {int(k): v for k, v in time_to_trip_ds.items()}

    def validate(self) -> None:
        super().validate()
        _u8(self.flags, "flags")
        for name in ("centiamps", "states", "clipped", "crest_x10"):
            _list(getattr(self, name), C.CHANNELS, name)
        for v in self.centiamps:
            _u16(v, "centiamps")
        for v in self.states:
            _check(isinstance(v, int) and C.ST_OFF <= v <= C.ST_TRIPPED, "state 0..4")
        for v in self.crest_x10:
            _u8(v, "crest_x10")
        _u32(self.uptime_s, "uptime_s")
        _u16(self.rx_errors, "rx_errors")
        _u16(self.windows, "windows")
        _u16(self.freq_centihz, "freq_centihz")
        overloaded = [
            ch for ch in range(C.CHANNELS) if self.states[ch] in (C.ST_SLIGHT, C.ST_SERIOUS)
        ]
        _check(
            sorted(self.time_to_trip_ds) == overloaded,
            "time_to_trip_ds must name exactly the SLIGHT and SERIOUS channels",
        )
        for v in self.time_to_trip_ds.values():
            _u16(v, "time_to_trip_ds")

    def pack(self, buf: bytearray, off: int) -> int:
        states = [s | (C.STATE_CLIP if c else 0) for s, c in zip(self.states, self.clipped)]
        ttt = [self.time_to_trip_ds.get(ch, 0) for ch in range(C.CHANNELS)]
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
        if (n - L.TM_OVERLOADS) % L.TELEMETRY_OVERLOAD_LEN:
            raise LengthError("telemetry overload list is not a whole number of entries")
        centiamps = [L.get_u16(buf, off + L.TM_CURRENTS + 2 * ch) for ch in range(C.CHANNELS)]
        nibbles = []
        for k in range(C.CHANNELS // 2):
            b = buf[off + L.TM_STATES + k]
            nibbles.append(b & 0x0F)
            nibbles.append(b >> 4)
        for v in nibbles:
            _check((v & 0x07) <= C.ST_TRIPPED and not v & 0xF0, "state nibble out of range")
        crest = [buf[off + L.TM_CREST + ch] for ch in range(C.CHANNELS)]
        uptime, rx_errors, windows, freq = struct.unpack_from("<IHHH", buf, off + L.TM_UPTIME)
        ttt = {}
        o = off + L.TM_OVERLOADS
        while o < off + n:
            ch = buf[o]
            _check(ch < C.CHANNELS and ch not in ttt, "overload entry channel")
            ttt[ch] = L.get_u16(buf, o + 1)
            o += L.TELEMETRY_OVERLOAD_LEN
        msg = cls(
            buf[off],
            centiamps,
            [v & 0x07 for v in nibbles],
            [bool(v & C.STATE_CLIP) for v in nibbles],
            crest,
            uptime,
            rx_errors,
            windows,
            freq,
            ttt,
            dst,
            src,
            seq,
        )
        msg.validate()
        return msg


class Status(Message):
    """Mains status node: MCCB contacts, Emergency Stop, loss-of-Neutral, temperature."""

    TYPE = C.T_STATUS
    NAME = "Status"
    FIELDS = (
        "inputs",
        "cause",
        "temp_decidegc",
        "uptime_s",
        "rx_errors",
        "trip_count",
        "since_trip_s",
    )

    def __init__(
        self,
        inputs: int,
        cause: int,
        temp_decidegc: int,
        uptime_s: int,
        rx_errors: int,
        trip_count: int,
        since_trip_s: int,
        dst: int = C.ADDR_MASTER,
        src: int = 1,
        seq: int = 0,
    ) -> None:
        super().__init__(dst, src, seq)
        self.inputs = inputs
        self.cause = cause
        self.temp_decidegc = temp_decidegc
        self.uptime_s = uptime_s
        self.rx_errors = rx_errors
        self.trip_count = trip_count
        self.since_trip_s = since_trip_s

    def validate(self) -> None:
        super().validate()
        _check(isinstance(self.inputs, int) and 0 <= self.inputs <= 0x1F, "inputs 0..31")
        _check(self.cause in (0, 1, 2, 3, 4), "cause 0..4")
        _check(-32768 <= self.temp_decidegc <= 32767, "temp_decidegc is an i16")
        _u32(self.uptime_s, "uptime_s")
        _u16(self.rx_errors, "rx_errors")
        _u16(self.trip_count, "trip_count")
        _u16(self.since_trip_s, "since_trip_s")

    def pack(self, buf: bytearray, off: int) -> int:
        struct.pack_into(
            "<BBhIHHH",
            buf,
            off,
            self.inputs,
            self.cause,
            self.temp_decidegc,
            self.uptime_s,
            self.rx_errors,
            self.trip_count,
            self.since_trip_s,
        )
        return L.STATUS_LEN

    @classmethod
    def unpack(cls, buf, off: int, n: int, dst: int, src: int, seq: int) -> "Status":
        v = struct.unpack_from("<BBhIHHH", buf, off)
        msg = cls(v[0], v[1], v[2], v[3], v[4], v[5], v[6], dst, src, seq)
        msg.validate()
        return msg


class GetInfo(Message):
    TYPE = C.T_GET_INFO
    NAME = "GetInfo"

    def __init__(self, dst: int = 1, src: int = C.ADDR_MASTER, seq: int = 0) -> None:
        super().__init__(dst, src, seq)

    @classmethod
    def unpack(cls, buf, off: int, n: int, dst: int, src: int, seq: int) -> "GetInfo":
        return cls(dst, src, seq)


class Info(Message):
    TYPE = C.T_INFO
    NAME = "Info"
    FIELDS = (
        "fw_version",
        "protocol_version",
        "board_type",
        "uid",
        "group",
        "channels",
        "config_digest",
        "flags",
    )

    def __init__(
        self,
        fw_version: tuple,
        protocol_version: int,
        board_type: int,
        uid: bytes,
        group: str,
        channels: int,
        config_digest: int,
        flags: int,
        dst: int = C.ADDR_MASTER,
        src: int = 1,
        seq: int = 0,
    ) -> None:
        super().__init__(dst, src, seq)
        self.fw_version = tuple(fw_version)
        self.protocol_version = protocol_version
        self.board_type = board_type
        self.uid = bytes(uid)
        self.group = group
        self.channels = channels
        self.config_digest = config_digest
        self.flags = flags

    def validate(self) -> None:
        super().validate()
        _check(len(self.fw_version) == 3, "fw_version is (major, minor, patch)")
        for v in self.fw_version:
            _u8(v, "fw_version")
        _u8(self.protocol_version, "protocol_version")
        _check(1 <= self.board_type <= 4, "board_type 1..4")
        _uid(self.uid, "uid")
        _group(self.group, "group")
        _check(0 <= self.channels <= C.CHANNELS, "channels 0..12")
        _u32(self.config_digest, "config_digest")
        _u8(self.flags, "flags")

    def pack(self, buf: bytearray, off: int) -> int:
        major, minor, patch = self.fw_version
        struct.pack_into("<BBBBB", buf, off, major, minor, patch, self.protocol_version,
                         self.board_type)  # fmt: skip
        buf[off + 5 : off + 13] = self.uid
        buf[off + 13] = ord(self.group) if self.group else 0
        struct.pack_into("<BIB", buf, off + 14, self.channels, self.config_digest, self.flags)
        return L.INFO_LEN

    @classmethod
    def unpack(cls, buf, off: int, n: int, dst: int, src: int, seq: int) -> "Info":
        g = buf[off + 13]
        _check(g == 0 or (0x41 <= g <= 0x46), "group byte")
        channels, digest, flags = struct.unpack_from("<BIB", buf, off + 14)
        msg = cls(
            (buf[off], buf[off + 1], buf[off + 2]),
            buf[off + 3],
            buf[off + 4],
            bytes(buf[off + 5 : off + 13]),
            chr(g) if g else "",
            channels,
            digest,
            flags,
            dst,
            src,
            seq,
        )
        msg.validate()
        return msg


# Config values: key -> (struct format or None for the curve, lowest, highest).
_CONFIG_SCALARS = {
    C.K_GROUP: ("<B", 0x41, 0x46),
    C.K_ADDRESS: ("<B", C.ADDR_FIRST_BOARD, C.ADDR_LAST_BOARD),
    C.K_MAINS_HZ: ("<B", 50, 60),
    C.K_CAL_GAIN: ("<I", 500000, 2000000),
    C.K_RATING: ("<H", 100, 6300),
    C.K_NOISE_FLOOR: ("<H", 0, 2000),
}


def check_config_value(key: int, index: int, value: object) -> None:
    _u8(index, "index")
    if key == C.K_CURVE:
        _check(isinstance(value, list), "curve must be a list of (percent, tmin_ms, tmax_ms)")
        assert isinstance(value, list)
        _check(2 <= len(value) <= C.MAX_CURVE_POINTS, "curve must have 2..10 points")
        last = 0
        for point in value:
            _check(len(point) == 3, "curve point is (percent, tmin_ms, tmax_ms)")
            pct, tmin, tmax = point
            _check(100 <= pct <= 5000 and pct > last, "curve percent 100..5000, increasing")
            _u32(tmin, "tmin_ms")
            _u32(tmax, "tmax_ms")
            _check(tmin <= tmax, "tmin_ms <= tmax_ms")
            last = pct
        return
    spec = _CONFIG_SCALARS.get(key)
    if spec is None:
        raise ConfigKeyError("unknown config key " + str(key))
    if key == C.K_GROUP:
        _check(isinstance(value, str) and len(value) == 1, "group is one letter A..F")
        assert isinstance(value, str)
        _group(value, "group")
        return
    _check(isinstance(value, int) and spec[1] <= value <= spec[2], "config value out of range")
    if key == C.K_MAINS_HZ:
        _check(value in (50, 60), "mains_hz is 50 or 60")
    if key == C.K_CAL_GAIN:
        _check(index < C.CHANNELS, "calibration index is a channel 0..11")


def _pack_config(buf: bytearray, off: int, key: int, index: int, value) -> int:
    buf[off] = key
    buf[off + 1] = index
    o = off + L.CONFIG_HEAD_LEN
    if key == C.K_CURVE:
        buf[o] = len(value)
        o += 1
        for pct, tmin, tmax in value:
            struct.pack_into("<HII", buf, o, pct, tmin, tmax)
            o += 10
        return o - off
    fmt = _CONFIG_SCALARS[key][0]
    struct.pack_into(fmt, buf, o, ord(value) if key == C.K_GROUP else value)
    return L.CONFIG_HEAD_LEN + struct.calcsize(fmt)


def _unpack_config(buf, off: int, n: int) -> tuple:
    key = buf[off]
    index = buf[off + 1]
    o = off + L.CONFIG_HEAD_LEN
    if key == C.K_CURVE:
        count = buf[o]
        if n != L.CONFIG_HEAD_LEN + 1 + 10 * count:
            raise LengthError("curve length does not match its point count")
        points = []
        for k in range(count):
            pct, tmin, tmax = struct.unpack_from("<HII", buf, o + 1 + 10 * k)
            points.append((pct, tmin, tmax))
        value: object = points
    else:
        spec = _CONFIG_SCALARS.get(key)
        if spec is None:
            raise ConfigKeyError("unknown config key " + str(key))
        if n != L.CONFIG_HEAD_LEN + struct.calcsize(spec[0]):
            raise LengthError("config value length does not match its key")
        raw = struct.unpack_from(spec[0], buf, o)[0]
        value = chr(raw) if key == C.K_GROUP and 0x41 <= raw <= 0x46 else raw
    check_config_value(key, index, value)
    return key, index, value


class ConfigGet(Message):
    TYPE = C.T_CONFIG_GET
    NAME = "ConfigGet"
    FIELDS = ("key", "index")

    def __init__(
        self, key: int, index: int = 0, dst: int = 1, src: int = C.ADDR_MASTER, seq: int = 0
    ) -> None:
        super().__init__(dst, src, seq)
        self.key = key
        self.index = index

    def validate(self) -> None:
        super().validate()
        _u8(self.key, "key")
        _u8(self.index, "index")

    def pack(self, buf: bytearray, off: int) -> int:
        buf[off] = self.key
        buf[off + 1] = self.index
        return L.CONFIG_HEAD_LEN

    @classmethod
    def unpack(cls, buf, off: int, n: int, dst: int, src: int, seq: int) -> "ConfigGet":
        return cls(buf[off], buf[off + 1], dst, src, seq)


class ConfigValue(Message):
    """A config value: the answer to CONFIG_GET (and the body of CONFIG_SET)."""

    TYPE = C.T_CONFIG_VALUE
    NAME = "ConfigValue"
    FIELDS = ("key", "index", "value")

    def __init__(
        self, key: int, index: int, value, dst: int = C.ADDR_MASTER, src: int = 1, seq: int = 0
    ) -> None:
        super().__init__(dst, src, seq)
        self.key = key
        self.index = index
        self.value = [tuple(p) for p in value] if isinstance(value, list) else value

    def validate(self) -> None:
        super().validate()
        _u8(self.key, "key")
        check_config_value(self.key, self.index, self.value)

    def pack(self, buf: bytearray, off: int) -> int:
        return _pack_config(buf, off, self.key, self.index, self.value)

    @classmethod
    def unpack(cls, buf, off: int, n: int, dst: int, src: int, seq: int) -> "ConfigValue":
        key, index, value = _unpack_config(buf, off, n)
        return cls(key, index, value, dst, src, seq)


class ConfigSet(ConfigValue):
    TYPE = C.T_CONFIG_SET
    NAME = "ConfigSet"

    def __init__(
        self, key: int, index: int, value, dst: int = 1, src: int = C.ADDR_MASTER, seq: int = 0
    ) -> None:
        super().__init__(key, index, value, dst, src, seq)


class Identify(Message):
    """Blink the board's LEDs for ``seconds`` (0 stops)."""

    TYPE = C.T_IDENTIFY
    NAME = "Identify"
    FIELDS = ("seconds",)

    def __init__(self, seconds: int, dst: int = 1, src: int = C.ADDR_MASTER, seq: int = 0) -> None:
        super().__init__(dst, src, seq)
        self.seconds = seconds

    def validate(self) -> None:
        super().validate()
        _u8(self.seconds, "seconds")

    def pack(self, buf: bytearray, off: int) -> int:
        buf[off] = self.seconds
        return L.IDENTIFY_LEN

    @classmethod
    def unpack(cls, buf, off: int, n: int, dst: int, src: int, seq: int) -> "Identify":
        return cls(buf[off], dst, src, seq)


class Discover(Message):
    """Unmuted boards whose uid lies in [uid_lo, uid_hi] (big-endian) answer DISCOVER_REPLY."""

    TYPE = C.T_DISCOVER
    NAME = "Discover"
    FIELDS = ("uid_lo", "uid_hi")

    def __init__(
        self,
        uid_lo: bytes = b"\x00" * 8,
        uid_hi: bytes = b"\xff" * 8,
        dst: int = C.ADDR_BROADCAST,
        src: int = C.ADDR_MASTER,
        seq: int = 0,
    ) -> None:
        super().__init__(dst, src, seq)
        self.uid_lo = bytes(uid_lo)
        self.uid_hi = bytes(uid_hi)

    def validate(self) -> None:
        super().validate()
        _uid(self.uid_lo, "uid_lo")
        _uid(self.uid_hi, "uid_hi")
        _check(self.uid_lo <= self.uid_hi, "uid_lo <= uid_hi")

    def pack(self, buf: bytearray, off: int) -> int:
        buf[off : off + 8] = self.uid_lo
        buf[off + 8 : off + 16] = self.uid_hi
        return L.DISCOVER_LEN

    @classmethod
    def unpack(cls, buf, off: int, n: int, dst: int, src: int, seq: int) -> "Discover":
        msg = cls(bytes(buf[off : off + 8]), bytes(buf[off + 8 : off + 16]), dst, src, seq)
        msg.validate()
        return msg


class DiscoverReply(Message):
    TYPE = C.T_DISCOVER_REPLY
    NAME = "DiscoverReply"
    FIELDS = ("uid", "address", "board_type")

    def __init__(
        self,
        uid: bytes,
        address: int,
        board_type: int,
        dst: int = C.ADDR_MASTER,
        src: int = C.ADDR_UNASSIGNED,
        seq: int = 0,
    ) -> None:
        super().__init__(dst, src, seq)
        self.uid = bytes(uid)
        self.address = address
        self.board_type = board_type

    def validate(self) -> None:
        super().validate()
        _uid(self.uid, "uid")
        _u8(self.address, "address")
        _check(1 <= self.board_type <= 4, "board_type 1..4")

    def pack(self, buf: bytearray, off: int) -> int:
        buf[off : off + 8] = self.uid
        buf[off + 8] = self.address
        buf[off + 9] = self.board_type
        return L.DISCOVER_REPLY_LEN

    @classmethod
    def unpack(cls, buf, off: int, n: int, dst: int, src: int, seq: int) -> "DiscoverReply":
        msg = cls(bytes(buf[off : off + 8]), buf[off + 8], buf[off + 9], dst, src, seq)
        msg.validate()
        return msg


class Mute(Message):
    """Mute (1) or unmute (0) discovery replies of the board with ``uid``; uid FF.. = all."""

    TYPE = C.T_MUTE
    NAME = "Mute"
    FIELDS = ("uid", "mute")

    def __init__(
        self,
        uid: bytes,
        mute: bool,
        dst: int = C.ADDR_BROADCAST,
        src: int = C.ADDR_MASTER,
        seq: int = 0,
    ) -> None:
        super().__init__(dst, src, seq)
        self.uid = bytes(uid)
        self.mute = bool(mute)

    def validate(self) -> None:
        super().validate()
        _uid(self.uid, "uid")

    def pack(self, buf: bytearray, off: int) -> int:
        buf[off : off + 8] = self.uid
        buf[off + 8] = 1 if self.mute else 0
        return L.MUTE_LEN

    @classmethod
    def unpack(cls, buf, off: int, n: int, dst: int, src: int, seq: int) -> "Mute":
        _check(buf[off + 8] in (0, 1), "mute flag 0 or 1")
        return cls(bytes(buf[off : off + 8]), buf[off + 8] == 1, dst, src, seq)


class Assign(Message):
    """Give the board with ``uid`` an address (and a group, '' = keep); it ACKs from it."""

    TYPE = C.T_ASSIGN
    NAME = "Assign"
    FIELDS = ("uid", "address", "group")

    def __init__(
        self,
        uid: bytes,
        address: int,
        group: str = "",
        dst: int = C.ADDR_BROADCAST,
        src: int = C.ADDR_MASTER,
        seq: int = 0,
    ) -> None:
        super().__init__(dst, src, seq)
        self.uid = bytes(uid)
        self.address = address
        self.group = group

    def validate(self) -> None:
        super().validate()
        _uid(self.uid, "uid")
        _board_addr(self.address, "address")
        _group(self.group, "group")

    def pack(self, buf: bytearray, off: int) -> int:
        buf[off : off + 8] = self.uid
        buf[off + 8] = self.address
        buf[off + 9] = ord(self.group) if self.group else 0
        return L.ASSIGN_LEN

    @classmethod
    def unpack(cls, buf, off: int, n: int, dst: int, src: int, seq: int) -> "Assign":
        g = buf[off + 9]
        _check(g == 0 or 0x41 <= g <= 0x46, "group byte")
        msg = cls(bytes(buf[off : off + 8]), buf[off + 8], chr(g) if g else "", dst, src, seq)
        msg.validate()
        return msg


class Ack(Message):
    TYPE = C.T_ACK
    NAME = "Ack"
    FIELDS = ("acked_type",)

    def __init__(
        self, acked_type: int, dst: int = C.ADDR_MASTER, src: int = 1, seq: int = 0
    ) -> None:
        super().__init__(dst, src, seq)
        self.acked_type = acked_type

    def validate(self) -> None:
        super().validate()
        _u8(self.acked_type, "acked_type")

    def pack(self, buf: bytearray, off: int) -> int:
        buf[off] = self.acked_type
        return L.ACK_LEN

    @classmethod
    def unpack(cls, buf, off: int, n: int, dst: int, src: int, seq: int) -> "Ack":
        return cls(buf[off], dst, src, seq)


class Nak(Message):
    TYPE = C.T_NAK
    NAME = "Nak"
    FIELDS = ("rejected_type", "error")

    def __init__(
        self,
        rejected_type: int,
        error: int,
        dst: int = C.ADDR_MASTER,
        src: int = 1,
        seq: int = 0,
    ) -> None:
        super().__init__(dst, src, seq)
        self.rejected_type = rejected_type
        self.error = error

    def validate(self) -> None:
        super().validate()
        _u8(self.rejected_type, "rejected_type")
        _check(C.E_BAD_VERSION <= self.error <= C.E_NOT_SUPPORTED, "error code 1..8")

    def pack(self, buf: bytearray, off: int) -> int:
        buf[off] = self.rejected_type
        buf[off + 1] = self.error
        return L.NAK_LEN

    @classmethod
    def unpack(cls, buf, off: int, n: int, dst: int, src: int, seq: int) -> "Nak":
        msg = cls(buf[off], buf[off + 1], dst, src, seq)
        msg.validate()
        return msg


MESSAGE_CLASSES = (
    Poll,
    Sync,
    Report,
    Telemetry,
    Status,
    GetInfo,
    Info,
    ConfigGet,
    ConfigValue,
    ConfigSet,
    Identify,
    Discover,
    DiscoverReply,
    Mute,
    Assign,
    Ack,
    Nak,
)
BY_TYPE = {cls.TYPE: cls for cls in MESSAGE_CLASSES}
BY_NAME = {cls.NAME: cls for cls in MESSAGE_CLASSES}


def encode(message: Message) -> bytes:
    """Validate ``message`` and return its frame as sent on the wire (delimiter included)."""
    message.validate()
    writer = FrameWriter(message.src)
    n = message.pack(writer.raw, C.HEADER_LEN)
    return bytes(writer.wire[: writer.seal(message.dst, message.TYPE, message.seq, n)])


def message_from_reader(reader: FrameReader) -> Message:
    """Build the message of a frame that ``reader.decode()`` accepted."""
    cls = BY_TYPE.get(reader.mtype)
    if cls is None:
        raise UnknownTypeError("unknown message type")
    message = cls.unpack(
        reader.raw, C.HEADER_LEN, reader.payload_len, reader.dst, reader.src, reader.seq
    )
    if not cls.VALID_UNPACKED:
        message.validate()
    return message


def decode(wire: bytes) -> Message:
    """Decode exactly one frame (leading/trailing 0x00 delimiters optional)."""
    data = bytes(wire)
    start = 0
    end = len(data)
    while start < end and data[start] == 0:
        start += 1
    while end > start and data[end - 1] == 0:
        end -= 1
    if end == start:
        raise LengthError("no frame")
    if end - start >= C.MAX_WIRE:
        raise LengthError("frame longer than the maximum")
    reader = FrameReader()
    body = data[start:end] + b"\x00"
    if body.find(b"\x00") != end - start:
        raise LengthError("more than one frame")
    reader.feed(body, 0, len(body))
    reader.decode()
    return message_from_reader(reader)
