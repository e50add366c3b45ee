"""Board configuration on flash: one JSON file, validated on load, written atomically.

A missing or corrupt file never stops the board: it runs on safe defaults and says so
(``fallback`` -> F_CONFIG_DEFAULTS in INFO and TELEMETRY). Saving writes a temporary file and
renames it over the old one, so a power cut leaves either the old or the new file, never half.
"""

import json
import os

from protocol import consts as C
from protocol.admin import check_config_value
from protocol.crc import crc32
from protocol.errors import FieldError

FILE_NAME = "config.json"

# Sensata/Airpax "62 medium" delay for the 16 A magnetic-hydraulic RCBO:
# (percent of rating, minimum trip ms, maximum trip ms).
DEFAULT_CURVE = [
    (100, 0, 0),
    (125, 10000, 120000),
    (150, 6000, 60000),
    (200, 2000, 20000),
    (400, 200, 3000),
    (600, 20, 2000),
    (1000, 10, 250),
]


class ConfigError(Exception):
    """The config file cannot be used; the message says which field and why."""


class BoardConfig:
    """Everything a user or the aggregator can set on a group board."""

    def __init__(self) -> None:
        self.group = ""  # '' until assigned
        self.address = C.ADDR_UNASSIGNED
        self.mains_hz = 50
        self.cal_gain_ppm = [1000000] * C.CHANNELS
        self.rating_ca = 1600
        self.curve = list(DEFAULT_CURVE)
        self.noise_floor_ma = 40

    def set(self, key: int, index: int, value) -> None:
        """Apply one validated CONFIG_SET value (raises the protocol's FieldError)."""
        check_config_value(key, index, value)
        if key == C.K_GROUP:
            self.group = value
        elif key == C.K_ADDRESS:
            self.address = value
        elif key == C.K_MAINS_HZ:
            self.mains_hz = value
        elif key == C.K_CAL_GAIN:
            self.cal_gain_ppm[index] = value
        elif key == C.K_RATING:
            self.rating_ca = value
        elif key == C.K_CURVE:
            self.curve = [tuple(p) for p in value]
        elif key == C.K_NOISE_FLOOR:
            self.noise_floor_ma = value

    def get(self, key: int, index: int):
        if key == C.K_GROUP:
            return self.group or "A"
        if key == C.K_ADDRESS:
            return self.address if self.address <= C.ADDR_LAST_BOARD else 0
        if key == C.K_MAINS_HZ:
            return self.mains_hz
        if key == C.K_CAL_GAIN:
            if index >= C.CHANNELS:
                raise FieldError("calibration index is a channel 0..11")
            return self.cal_gain_ppm[index]
        if key == C.K_RATING:
            return self.rating_ca
        if key == C.K_CURVE:
            return list(self.curve)
        if key == C.K_NOISE_FLOOR:
            return self.noise_floor_ma
        from protocol.errors import ConfigKeyError

        raise ConfigKeyError("unknown config key " + str(key))

    def to_json(self) -> str:
        """Canonical JSON (fixed key order on every runtime), so the digest is stable."""
        curve = ",".join("[%d,%d,%d]" % tuple(p) for p in self.curve)
        gains = ",".join(str(g) for g in self.cal_gain_ppm)
        return (
            '{"address":%d,"cal_gain_ppm":[%s],"curve":[%s],"group":%s,"mains_hz":%d,'
            '"noise_floor_ma":%d,"rating_ca":%d}'
            % (
                self.address,
                gains,
                curve,
                json.dumps(self.group),
                self.mains_hz,
                self.noise_floor_ma,
                self.rating_ca,
            )
        )

    def digest(self) -> int:
        return crc32(self.to_json().encode()) & 0xFFFFFFFF

    @classmethod
    def from_json(cls, text: str) -> "BoardConfig":
        """Parse and validate; raises ConfigError naming the first bad field."""
        try:
            data = json.loads(text)
        except ValueError:
            raise ConfigError("config file is not valid JSON") from None
        if not isinstance(data, dict):
            raise ConfigError("config file must hold a JSON object")
        cfg = cls()
        known = ("address", "cal_gain_ppm", "curve", "group", "mains_hz", "noise_floor_ma",
                 "rating_ca")  # fmt: skip
        for name in data:
            if name not in known:
                raise ConfigError("unknown config field '" + str(name) + "'")
        try:
            if "group" in data and data["group"] != "":
                cfg.set(C.K_GROUP, 0, data["group"])
            if "address" in data and data["address"] != C.ADDR_UNASSIGNED:
                cfg.set(C.K_ADDRESS, 0, data["address"])
            if "mains_hz" in data:
                cfg.set(C.K_MAINS_HZ, 0, data["mains_hz"])
            if "cal_gain_ppm" in data:
                gains = data["cal_gain_ppm"]
                if not isinstance(gains, list) or len(gains) != C.CHANNELS:
                    raise ConfigError("cal_gain_ppm must list 12 gains")
                for ch in range(C.CHANNELS):
                    cfg.set(C.K_CAL_GAIN, ch, gains[ch])
            if "rating_ca" in data:
                cfg.set(C.K_RATING, 0, data["rating_ca"])
            if "curve" in data:
                cfg.set(C.K_CURVE, 0, [tuple(p) for p in data["curve"]])
            if "noise_floor_ma" in data:
                cfg.set(C.K_NOISE_FLOOR, 0, data["noise_floor_ma"])
        except FieldError as exc:
            raise ConfigError("config field: " + str(exc)) from None
        except (TypeError, ValueError):
            raise ConfigError("config field has the wrong type") from None
        return cfg


class ConfigStore:
    """The config file in ``directory`` (flash root on a board, a sandbox dir in sim)."""

    def __init__(self, directory: str) -> None:
        self.path = directory.rstrip("/") + "/" + FILE_NAME
        self.fallback = False  # True when running on defaults because the file was bad
        self.problem = ""  # why, for the debug console

    def load(self) -> BoardConfig:
        try:
            with open(self.path) as handle:
                text = handle.read()
        except OSError:
            self.fallback = True
            self.problem = "no config file: using defaults"
            return BoardConfig()
        try:
            cfg = BoardConfig.from_json(text)
        except ConfigError as exc:
            self.fallback = True
            self.problem = str(exc) + ": using defaults"
            return BoardConfig()
        self.fallback = False
        self.problem = ""
        return cfg

    def save(self, cfg: BoardConfig) -> None:
        """Atomic replace: write ``.tmp``, then rename over the file (raises OSError)."""
        tmp = self.path + ".tmp"
        with open(tmp, "w") as handle:
            handle.write(cfg.to_json())
        try:
            os.sync()  # type: ignore[attr-defined]  # rp2/esp32 have it; flush before rename
        except AttributeError:
            pass
        os.rename(tmp, self.path)
        self.fallback = False
        self.problem = ""
