"""Board management messages: GET_INFO/INFO, CONFIG_GET/CONFIG_VALUE/CONFIG_SET, IDENTIFY,
ACK and NAK (what a board answers besides the report cycle)."""

import struct

from protocol import layouts as L
from protocol.consts import (
    ADDR_FIRST_BOARD,
    ADDR_LAST_BOARD,
    ADDR_MASTER,
    CHANNELS,
    GROUP_LETTERS,
    K_ADDRESS,
    K_CAL_GAIN,
    K_CURVE,
    K_GROUP,
    K_MAINS_HZ,
    K_NOISE_FLOOR,
    K_RATING,
    MAX_CURVE_POINTS,
    T_ACK,
    T_CONFIG_GET,
    T_CONFIG_SET,
    T_CONFIG_VALUE,
    T_GET_INFO,
    T_IDENTIFY,
    T_INFO,
    T_NAK,
)
from protocol.errors import ConfigKeyError, FieldError, LengthError
from protocol.schema import Message, message


@message
class GetInfo(Message):
    TYPE = T_GET_INFO
    NAME = "GetInfo"
    LAYOUT = L.GET_INFO
    SRC = ADDR_MASTER


@message
class Info(Message):
    TYPE = T_INFO
    NAME = "Info"
    LAYOUT = L.INFO
    DST = ADDR_MASTER
    fw_version: tuple
    protocol_version: int
    board_type: int
    uid: bytes
    group: str
    channels: int
    config_digest: int
    flags: int

    def convert(self) -> None:
        super().convert()
        self.fw_version = tuple(self.fw_version)


# Config values: key -> (struct format or None for the curve, lowest, highest).
_CONFIG_SCALARS = {
    K_GROUP: ("<B", ord(GROUP_LETTERS[0]), ord(GROUP_LETTERS[-1])),
    K_ADDRESS: ("<B", ADDR_FIRST_BOARD, ADDR_LAST_BOARD),
    K_MAINS_HZ: ("<B", 50, 60),
    K_CAL_GAIN: ("<I", 500000, 2000000),
    K_RATING: ("<H", 100, 6300),
    K_NOISE_FLOOR: ("<H", 0, 2000),
}
_CURVE_POINT = "<HII"  # percent of rating, t_min ms, t_max ms
_CURVE_POINT_LEN = 10


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise FieldError(what)


def _u32(v, what: str) -> None:
    _check(isinstance(v, int) and 0 <= v <= 0xFFFFFFFF, what + " must be 0..2**32-1")


def check_config_value(key: int, index: int, value: object) -> None:
    _check(isinstance(index, int) and 0 <= index <= 0xFF, "index must be 0..255")
    if key == K_CURVE:
        _check(isinstance(value, list), "curve must be a list of (percent, tmin_ms, tmax_ms)")
        assert isinstance(value, list)
        _check(2 <= len(value) <= MAX_CURVE_POINTS, "curve must have 2..10 points")
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
    if key == K_GROUP:
        _check(isinstance(value, str) and len(value) == 1, "group is one letter A..F")
        assert isinstance(value, str)
        _check(value in GROUP_LETTERS, "group must be A..F")
        return
    _check(isinstance(value, int) and spec[1] <= value <= spec[2], "config value out of range")
    if key == K_MAINS_HZ:
        _check(value in (50, 60), "mains_hz is 50 or 60")
    if key == K_CAL_GAIN:
        _check(index < CHANNELS, "calibration index is a channel 0..11")


@message
class ConfigGet(Message):
    TYPE = T_CONFIG_GET
    NAME = "ConfigGet"
    LAYOUT = L.CONFIG_GET
    DEFAULTS = {"index": 0}
    SRC = ADDR_MASTER
    key: int
    index: int


@message
class ConfigValue(Message):
    """A config value: the answer to CONFIG_GET (and the body of CONFIG_SET)."""

    TYPE = T_CONFIG_VALUE
    NAME = "ConfigValue"
    LAYOUT = L.CONFIG_VALUE
    DST = ADDR_MASTER
    key: int
    index: int
    value: object

    def convert(self) -> None:
        if isinstance(self.value, list):
            self.value = [tuple(p) for p in self.value]

    def check(self) -> None:
        check_config_value(self.key, self.index, self.value)

    def pack(self, buf: bytearray, off: int) -> int:
        key = self.key
        value = self.value
        buf[off] = key
        buf[off + 1] = self.index
        o = off + L.CONFIG_HEAD_LEN
        if key == K_CURVE:
            assert isinstance(value, list)
            buf[o] = len(value)
            o += 1
            for pct, tmin, tmax in value:
                struct.pack_into(_CURVE_POINT, buf, o, pct, tmin, tmax)
                o += _CURVE_POINT_LEN
            return o - off
        fmt = _CONFIG_SCALARS[key][0]
        struct.pack_into(fmt, buf, o, ord(value) if isinstance(value, str) else value)
        return L.CONFIG_HEAD_LEN + struct.calcsize(fmt)

    @classmethod
    def unpack(cls, buf, off: int, n: int, dst: int, src: int, seq: int) -> "ConfigValue":
        key = buf[off]
        index = buf[off + 1]
        o = off + L.CONFIG_HEAD_LEN
        if key == K_CURVE:
            count = buf[o]
            if n != L.CONFIG_HEAD_LEN + 1 + _CURVE_POINT_LEN * count:
                raise LengthError("curve length does not match its point count")
            points = []
            for k in range(count):
                points.append(struct.unpack_from(_CURVE_POINT, buf, o + 1 + _CURVE_POINT_LEN * k))
            value: object = points
        else:
            spec = _CONFIG_SCALARS.get(key)
            if spec is None:
                raise ConfigKeyError("unknown config key " + str(key))
            if n != L.CONFIG_HEAD_LEN + struct.calcsize(spec[0]):
                raise LengthError("config value length does not match its key")
            raw = struct.unpack_from(spec[0], buf, o)[0]
            value = chr(raw) if key == K_GROUP and spec[1] <= raw <= spec[2] else raw
        msg = cls(key, index, value, dst, src, seq)
        msg.validate()
        return msg


@message
class ConfigSet(ConfigValue):
    TYPE = T_CONFIG_SET
    NAME = "ConfigSet"
    DST = 1
    SRC = ADDR_MASTER


@message
class Identify(Message):
    """Blink the board's LEDs for ``seconds`` (0 stops)."""

    TYPE = T_IDENTIFY
    NAME = "Identify"
    LAYOUT = L.IDENTIFY
    SRC = ADDR_MASTER
    seconds: int


@message
class Ack(Message):
    TYPE = T_ACK
    NAME = "Ack"
    LAYOUT = L.ACK
    DST = ADDR_MASTER
    acked_type: int


@message
class Nak(Message):
    TYPE = T_NAK
    NAME = "Nak"
    LAYOUT = L.NAK
    DST = ADDR_MASTER
    rejected_type: int
    error: int
