"""Plain JSON types from snapshots and events, for the web API, the live view and storage."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from enum import Enum, StrEnum
from pathlib import PurePath
from typing import Any


def to_jsonable(value: object) -> Any:
    """Dataclasses become objects, enums their value, tuples lists, non-finite floats null,
    bytes hex."""
    if isinstance(value, Enum):
        return value.value if isinstance(value, StrEnum) else value.name.lower()
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        items = value.items()  # pyright: ignore[reportUnknownVariableType]
        return {str(k): to_jsonable(v) for k, v in items}  # pyright: ignore[reportUnknownArgumentType]
    if isinstance(value, tuple | list | frozenset | set):
        return [to_jsonable(v) for v in value]  # pyright: ignore[reportUnknownVariableType]
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, PurePath):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")
