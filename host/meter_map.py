"""Main meter register maps (``host/meter_maps/<profile>.toml``) and their one parser.

Two users: the meter reader (``host.meter``) reads the ``[[input]]`` registers of the
configured profile, and the meter simulator of the virtual PDU serves exactly the same
registers (input and holding); a parameter's ``name`` is the contract between the two.

Every parameter is an IEEE-754 float32 in two registers. ``address`` is the 0-based protocol
address on the wire, ``register`` the 1-based number the manufacturer's manual prints.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

MAPS_DIR = Path(__file__).resolve().parent / "meter_maps"
DEFAULT_PROFILE = "sdm630"
# Eastron advises reading at most 40 parameters (80 registers) per request (SDM630 manual,
# and the shipped map says so); the Modbus limit of 125 would be refused by the meter.
DEFAULT_MAX_REGISTERS_PER_REQUEST = 80
DEFAULT_BAUD = 9600
DEFAULT_DEVICE_ID = 1


class MeterProfileError(Exception):
    """A register-map profile file is missing or malformed."""


@dataclass(frozen=True)
class MeterRegister:
    """One float32 parameter (two registers) of the meter."""

    address: int
    name: str
    unit: str = ""
    register: int = 0
    description: str = ""


@dataclass(frozen=True)
class MeterProfile:
    model: str
    input: tuple[MeterRegister, ...]
    holding: tuple[MeterRegister, ...]
    max_registers_per_request: int = DEFAULT_MAX_REGISTERS_PER_REQUEST
    default_device_id: int = DEFAULT_DEVICE_ID
    default_baud: int = DEFAULT_BAUD

    @property
    def registers(self) -> tuple[MeterRegister, ...]:
        """The measurements the reader polls (the input registers)."""
        return self.input

    def input_by_name(self) -> dict[str, MeterRegister]:
        return {spec.name: spec for spec in self.input}

    def blocks(self, gap: int = 0) -> list[tuple[int, int, tuple[MeterRegister, ...]]]:
        """(start address, register count, registers) runs, each one FC04 request."""
        regs = sorted(self.input, key=lambda r: r.address)
        out: list[tuple[int, int, tuple[MeterRegister, ...]]] = []
        run: list[MeterRegister] = []
        for reg in regs:
            if run and (
                reg.address - (run[-1].address + 2) > gap
                or reg.address + 2 - run[0].address > self.max_registers_per_request
            ):
                out.append((run[0].address, run[-1].address + 2 - run[0].address, tuple(run)))
                run = []
            run.append(reg)
        if run:
            out.append((run[0].address, run[-1].address + 2 - run[0].address, tuple(run)))
        return out


def profile_names(directory: Path = MAPS_DIR) -> tuple[str, ...]:
    """The shipped profiles (file stems), sorted."""
    return tuple(sorted(p.stem for p in directory.glob("*.toml")))


def _parse_registers(raw: object, table: str) -> tuple[MeterRegister, ...]:
    if not isinstance(raw, list):
        raise MeterProfileError(f"[[{table}]] must be an array of tables")
    specs: list[MeterRegister] = []
    for entry in raw:  # pyright: ignore[reportUnknownVariableType]
        if not isinstance(entry, dict):
            raise MeterProfileError(f"[[{table}]] entries must be tables")
        try:
            spec = MeterRegister(
                address=int(entry["address"]),
                name=str(entry["name"]),
                unit=str(entry.get("unit", "")),  # pyright: ignore[reportUnknownArgumentType]
                register=int(entry.get("register", 0)),  # pyright: ignore[reportUnknownArgumentType]
                description=str(entry.get("description", "")),  # pyright: ignore[reportUnknownArgumentType]
            )
        except KeyError as exc:
            raise MeterProfileError(f"[[{table}]] entry {entry!r} lacks {exc}") from exc
        except (TypeError, ValueError) as exc:
            raise MeterProfileError(f"[[{table}]] entry {entry!r}: {exc}") from exc
        specs.append(spec)
    used: dict[int, str] = {}
    for spec in specs:
        for reg in (spec.address, spec.address + 1):
            if reg in used:
                raise MeterProfileError(f"{spec.name} overlaps {used[reg]} at register {reg:#06x}")
            used[reg] = spec.name
    if len({spec.name for spec in specs}) != len(specs):
        raise MeterProfileError(f"duplicate names in [[{table}]]")
    return tuple(sorted(specs, key=lambda spec: spec.address))


def load_meter_map(path: str | os.PathLike[str]) -> MeterProfile:
    """Load and validate a meter map (TOML: ``[meter]``, ``[[input]]``, ``[[holding]]``)."""
    name = Path(path).name
    try:
        with open(path, "rb") as file:
            doc = tomllib.load(file)
    except tomllib.TOMLDecodeError as exc:
        raise MeterProfileError(f"{name}: {exc}") from None
    meter = doc.get("meter")
    if not isinstance(meter, dict) or "model" not in meter or "input" not in doc:
        raise MeterProfileError(f"{name}: malformed profile (needs [meter] model and [[input]])")
    try:
        return MeterProfile(
            model=str(meter["model"]),  # pyright: ignore[reportUnknownArgumentType]
            input=_parse_registers(doc["input"], "input"),
            holding=_parse_registers(doc.get("holding", []), "holding"),
            max_registers_per_request=int(
                meter.get("max_registers_per_request", DEFAULT_MAX_REGISTERS_PER_REQUEST)  # pyright: ignore[reportUnknownArgumentType]
            ),
            default_device_id=int(meter.get("default_device_id", DEFAULT_DEVICE_ID)),  # pyright: ignore[reportUnknownArgumentType]
            default_baud=int(meter.get("default_baud", DEFAULT_BAUD)),  # pyright: ignore[reportUnknownArgumentType]
        )
    except MeterProfileError as exc:
        raise MeterProfileError(f"{name}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise MeterProfileError(f"{name}: malformed profile ({exc})") from None


def load_profile(name: str = DEFAULT_PROFILE, directory: Path = MAPS_DIR) -> MeterProfile:
    """The profile ``name`` of ``directory`` (the shipped maps by default)."""
    path = directory / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(profile_names(directory))
        raise MeterProfileError(f"meter.profile '{name}': no such profile (known: {known})")
    return load_meter_map(path)
