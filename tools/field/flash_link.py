"""``smartpdu flash``'s connection to one board: mpremote's serial transport in the raw REPL
(identity, frozen modules, hashes, files, the boot line after a reset) and what a flash did."""

from __future__ import annotations

import ast
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from protocol.consts import BUS_BAUD
from tools.field.flash_build import FlashError, MpyFormat

INFO_PREFIX = "smartPDU-INFO "
_CHUNK = 512  # bytes per raw-REPL write when uploading

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


def no_progress(stage: str, done: int, total: int, detail: str) -> None:
    pass


class BoardLink:
    """mpremote's serial transport with the few operations flashing needs."""

    def __init__(self, port: str) -> None:
        from mpremote.transport import TransportError
        from mpremote.transport_serial import SerialTransport

        self.port = port
        self._errors: tuple[type[BaseException], ...] = (TransportError, OSError)
        try:
            self.transport = SerialTransport(port, baudrate=BUS_BAUD)
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
                    f"board output:\n{output_tail(seen)}"
                )
        raise FlashError(
            f"{self.port}: no {INFO_PREFIX.strip()} line within {timeout:g} s after reset; "
            f"board output:\n{output_tail(seen)}"
        )


def output_tail(data: bytes | bytearray, lines: int = 15) -> str:
    text = bytes(data).decode("utf-8", "replace").replace("\r", "")
    return "\n".join("  | " + line for line in text.splitlines()[-lines:])


def fw_text(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return ".".join(str(v) for v in cast(Sequence[object], value))
    return str(value)
