"""Reading one TOML table: typed getters that name the key path and the problem in one
line, and refuse unknown keys with a suggestion."""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast


class Invalid(Exception):
    """A problem with one key; load_config turns it into the one-line ConfigError."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


class UnknownKey(Exception):
    def __init__(self, key: str, suggestion: str | None) -> None:
        super().__init__(key)
        self.key = key
        self.suggestion = suggestion


REQUIRED: Any = object()
T = TypeVar("T")


def shown(value: object) -> str:
    """A value as the user wrote it in TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return str(value)


def num(value: float) -> str:
    """1000000, 0.95, 1.5: never 1e+06."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def switch_steps(steps: Sequence[float], off: bool = False) -> str:
    shown = ", ".join(num(s) for s in steps)
    return f'"off", {shown}' if off else shown


def _suggest(key: str, known: Sequence[str], full: Callable[[str], str]) -> str | None:
    """The known key the user probably meant: same letters in another case, else close."""
    for candidate in known:
        if candidate.lower() == key.lower():
            return full(candidate)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return full(close[0]) if close else None


class Table:
    """One TOML table being read: typed getters that record which keys were used, so that
    unknown keys are refused (with a suggestion) before any value is looked at."""

    def __init__(self, data: object, path: str, known: Sequence[str]) -> None:
        if not isinstance(data, dict):
            raise Invalid(path, f"expected a table [{path}], got {shown(data)}")
        self.data = cast(dict[str, object], data)
        self.path = path
        for key in self.data:
            if key not in known:
                raise UnknownKey(self._key(key), _suggest(key, known, self._key))

    def _key(self, key: str) -> str:
        return f"{self.path}.{key}"

    def has(self, key: str) -> bool:
        return key in self.data

    def _raw(self, key: str, default: object, missing: str = "") -> object:
        if key in self.data:
            return self.data[key]
        if default is REQUIRED:
            raise Invalid(self._key(key), f"missing{': ' + missing if missing else ''}")
        return default

    def integer(self, key: str, default: int, lo: int | None = None, hi: int | None = None) -> int:
        value = self._raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(self._key(key), f"expected an integer, got {shown(value)}")
        self._check_range(key, value, lo, hi)
        return value

    def number(
        self, key: str, default: float, lo: float | None = None, hi: float | None = None
    ) -> float:
        value = self._raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Invalid(self._key(key), f"expected a number, got {shown(value)}")
        if not math.isfinite(value):
            raise Invalid(self._key(key), f"expected a finite number, got {shown(value)}")
        self._check_range(key, value, lo, hi)
        return float(value)

    def _check_range(self, key: str, value: float, lo: float | None, hi: float | None) -> None:
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            if lo is not None and hi is not None:
                span = f"{num(lo)}…{num(hi)}"
            elif lo is not None:
                span = f"at least {num(lo)}"
            else:
                span = f"at most {num(hi or 0)}"
            raise Invalid(self._key(key), f"{num(value)} is out of range ({span})")

    def boolean(self, key: str, default: bool) -> bool:
        value = self._raw(key, default)
        if not isinstance(value, bool):
            raise Invalid(self._key(key), f"expected true or false, got {shown(value)}")
        return value

    def text(
        self,
        key: str,
        default: str,
        check: Callable[[str], str] | None = None,
        missing: str = "",
    ) -> str:
        value = self._raw(key, default, missing)
        if not isinstance(value, str):
            raise Invalid(self._key(key), f"expected a string, got {shown(value)}")
        if check is not None and key in self.data:
            try:
                return check(value)
            except ValueError as exc:
                raise Invalid(self._key(key), str(exc)) from None
        return value

    def choice(self, key: str, default: T, choices: Sequence[T]) -> T:
        value = self._raw(key, default)
        if value not in choices or isinstance(value, bool):
            options = ", ".join(shown(c) for c in choices)
            raise Invalid(self._key(key), f"{shown(value)} is not one of {options}")
        return cast(T, value)

    def step(
        self, key: str, default: float | None, steps: Sequence[float], off: bool = False
    ) -> float | None:
        """A breaker DIP-switch position: one of ``steps`` (or "off" where there is OFF)."""
        value = self._raw(key, "off" if default is None else default)
        if off and isinstance(value, str) and value.lower() == "off":
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            expected = 'a multiple or "off"' if off else "a number"
            raise Invalid(self._key(key), f"expected {expected}, got {shown(value)}")
        for s in steps:
            if math.isclose(value, s, abs_tol=1e-9):
                return s
        raise Invalid(
            self._key(key),
            f"{num(value)} is not a position of the switch (choose {switch_steps(steps, off)})",
        )

    def string_list(self, key: str, default: Sequence[str]) -> tuple[str, ...]:
        value = self._raw(key, list(default))
        if not isinstance(value, list) or not all(
            isinstance(v, str) for v in cast(list[object], value)
        ):
            raise Invalid(self._key(key), f"expected an array of strings, got {shown(value)}")
        return tuple(cast(list[str], value))

    def path_value(self, key: str, default: Path | None, base: Path) -> Path | None:
        if key not in self.data:
            return default
        text = self.text(key, "")
        if not text:
            raise Invalid(self._key(key), "expected a path, got an empty string")
        path = Path(text).expanduser()
        return path if path.is_absolute() else base / path
