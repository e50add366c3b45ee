"""Golden test vectors (vectors.json beside this file), loadable on both runtimes.

Each good vector names a message class, its header and fields, and the exact wire bytes;
each bad vector gives wire bytes and the FrameError subclass a decoder must raise.
"""

import json
from binascii import hexlify, unhexlify

from protocol import errors
from protocol.messages import BY_NAME, Message

_BYTES_FIELDS = ("uid", "uid_lo", "uid_hi")


def fields_from_json(fields: dict) -> dict:
    out = {}
    for key, value in fields.items():
        if key in _BYTES_FIELDS:
            value = unhexlify(value)
        elif key == "fw_version":
            value = tuple(value)
        elif key == "time_to_trip_ds":
            value = {int(k): v for k, v in value.items()}
        elif key == "value" and isinstance(value, list):
            value = [tuple(p) for p in value]
        out[key] = value
    return out


def fields_to_json(fields: dict) -> dict:
    out = {}
    for key, value in fields.items():
        if isinstance(value, (bytes, bytearray)):
            value = hexlify(bytes(value)).decode()
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, dict):
            value = {str(k): v for k, v in sorted(value.items())}
        elif isinstance(value, list):
            value = [list(v) if isinstance(v, tuple) else v for v in value]
        out[key] = value
    return out


def message_from_vector(vector: dict) -> Message:
    cls = BY_NAME[vector["message"]]
    header = vector["header"]
    kwargs = fields_from_json(vector["fields"])
    kwargs["dst"] = header["dst"]
    kwargs["src"] = header["src"]
    kwargs["seq"] = header["seq"]
    return cls(**kwargs)


def error_class(name: str) -> type:
    cls = getattr(errors, name)
    if not issubclass(cls, errors.FrameError):
        raise ValueError(name + " is not a FrameError")
    return cls


def load(path: str) -> dict:
    with open(path) as handle:
        return json.load(handle)
