"""Virtual USB board: MicroPython's unix port behind a pseudo-terminal, behaving like the USB
serial REPL of a real board, so that ``mpremote``, pyserial and ``tools/field/flash.py`` work on it
unchanged.

What a program that opens the port (``VirtualUsbBoard.port``, a ``/dev/pts/N`` path) sees:

* the **friendly REPL** (``>>>``, Ctrl-E paste mode) and the **raw REPL** (Ctrl-A, ``raw REPL;
  CTRL-B to exit``, Ctrl-D executes and answers ``OK`` … ``\\x04`` … ``\\x04>``, raw-paste mode
  ``\\x05A\\x01`` with flow control): these are MicroPython's own REPLs, not imitations;
* **Ctrl-D soft reset** (on an empty line, in either REPL) answers ``MPY: soft reboot`` and starts a
  fresh interpreter, which runs ``boot.py`` and then, if the friendly REPL was active,
  ``main.py``, and comes back in the REPL that was active (mpremote's ``enter_raw_repl`` relies on
  this). ``sys.exit()`` in ``main.py`` or at the REPL also soft-resets, as on a board;
* **Ctrl-C** interrupts running code (``main.py``, a REPL command, a raw-REPL ``exec``) with
  ``KeyboardInterrupt``; code that disabled it with ``micropython.kbd_intr(-1)`` reads 0x03 as
  data, as on a board;
* **the flash** is a sandbox directory: the interpreter's VFS root ``/`` is that directory
  (``vfs.VfsPosix(sandbox)`` mounted at ``/``), its cwd is ``/`` and ``sys.path`` is
  ``['', '.frozen', '/lib']`` as on an RP2040, so ``open('/config.json')``, ``os.listdir('/lib')``,
  ``os.stat``, ``os.remove``, ``os.mkdir``, ``hashlib.sha256`` and ``import`` from ``/lib`` act on
  the sandbox only (mpremote's ``fs cp``/``ls``/``rm``/``mkdir``/``sha256sum`` included).
  Sockets are not confined (a sim board reaches the virtual RS-485 bus through the UNIX socket
  its environment names, ``SMARTPDU_BUS`` for ``boards/sim.py``: every environment variable
  given to the board, and the supervisor's own, pass through);
* **a closed port** (no program has it open) drops the board's output, as a board's USB serial
  does while the host has not opened it; ``transcript`` keeps the last 256 KB regardless.

How: a CPython supervisor thread owns the master side of the port's pty (``port``) and relays
bytes to and from a second pty on which the ``micropython`` command runs (``-i -c <boot driver>``,
the driver mounts the sandbox, runs boot.py/main.py, then MicroPython's REPL takes over). The
unix port ends its process on a soft reset; the supervisor notices, prints the reboot line and
starts a new one. Ctrl-C becomes a SIGINT when the interpreter has its handler installed (it
does while it executes code, unless ``kbd_intr(-1)``); otherwise the byte is passed on, as
MicroPython reads it then. After such an interrupt, further input is held until the REPL prompt
is back (at most 0.3 s), so that what a tool types next reaches the REPL, not the dying program.

Command line::

    python -m tools.field.usbboard SANDBOX_DIR [--link PATH] [--env NAME=VALUE ...]

prints one JSON line ``{"port": "/dev/pts/N", "link": ..., "sandbox": ..., "pid": ...}`` and runs
until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import termios
import threading
import time
import tty
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

SOFT_REBOOT = b"MPY: soft reboot\r\n"
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
FRIENDLY_BANNER = b'Type "help()" for more information.'
# Printed by the boot driver when MicroPython runs (before that, the process is a CPython host
# starting up, whose own SIGINT handler must not get a Ctrl-C) and when boot.py/main.py are
# done; the supervisor removes both from the output.
_STARTED_MARK = b"\x1b]usbboard-started\x07"
_BOOTED_MARK = b"\x1b]usbboard-booted\x07"
# Output kept for diagnostics (``VirtualUsbBoard.transcript``) and output waiting for a reader.
_TRANSCRIPT_MAX = 256 * 1024
_BACKLOG_MAX = 64 * 1024
# How long input stays held after a Ctrl-C interrupt when no prompt comes back.
_HOLD_TIMEOUT_S = 0.3
_SIGINT_MASK = 1 << (signal.SIGINT - 1)

# Boot driver run by ``micropython -i -c``. It deletes what it defines, so the REPL starts with
# clean globals except for what boot.py/main.py define (as on a board).
_DRIVER = """\
class _UsbBoardFlash:
    # VfsPosix confined to the sandbox; ilistdir also gives sizes, as a board's littlefs does.
    def __init__(self, root):
        import vfs
        self.v = v = vfs.VfsPosix(root)
        for name in ('chdir', 'getcwd', 'mkdir', 'remove', 'rename', 'rmdir', 'stat',
                     'statvfs', 'open'):
            setattr(self, name, getattr(v, name))
    def mount(self, readonly, mkfs):
        pass
    def umount(self):
        pass
    def ilistdir(self, path):
        v = self.v
        base = path if path.endswith('/') else (path + '/' if path else '')
        for entry in v.ilistdir(path):
            size = 0
            if entry[1] == 0x8000:
                try:
                    size = v.stat(base + entry[0])[6]
                except OSError:
                    pass
            yield (entry[0], entry[1], entry[2], size)
def _usbboard_boot(root, files, started, mark):
    import micropython, os, sys, vfs
    micropython.kbd_intr(-1)
    sys.stdout.write(started)
    vfs.umount('/')
    vfs.mount(_UsbBoardFlash(root), '/')
    os.chdir('/')
    sys.path[:] = ['', '.frozen', '/lib']
    g = globals()
    for name in files:
        try:
            os.stat(name)
        except OSError:
            continue
        try:
            with open(name) as f:
                code = compile(f.read(), name, 'exec')
            micropython.kbd_intr(3)
            exec(code, g)
            micropython.kbd_intr(-1)
        except SystemExit:
            raise
        except BaseException as e:
            micropython.kbd_intr(-1)
            sys.print_exception(e)
    sys.stdout.write(mark)
_usbboard_boot({root!r}, {files!r}, {started!r}, {mark!r})
del _usbboard_boot, _UsbBoardFlash
"""

_CTRL_C = 0x03
_FRIENDLY_PROMPTS = (b">>> ", b"... ", b"=== ")


def micropython_command() -> str:
    """The ``micropython`` command beside this interpreter, else the one on PATH."""
    beside = Path(sys.executable).parent / "micropython"
    if beside.exists():
        return str(beside)
    found = shutil.which("micropython")
    if found is None:
        raise FileNotFoundError("the micropython command is missing (pip install the unix port)")
    return found


def _raw_fd(fd: int) -> None:
    """Raw mode: no echo, no line editing, no signals, no output processing, 8 bits."""
    tty.setraw(fd, termios.TCSANOW)
    attrs = termios.tcgetattr(fd)
    attrs[1] &= ~termios.OPOST  # setraw clears it already; keep it explicit
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


def _sigint_caught(pid: int) -> bool:
    """True when process ``pid`` has a SIGINT handler installed (MicroPython executing code)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) & _SIGINT_MASK)
    except (OSError, ValueError):
        pass
    return False


class VirtualUsbBoard:
    """One virtual board: ``start()``, open ``port`` with mpremote/pyserial, ``stop()``.

    ``sandbox`` is the board's flash (created if missing). ``env`` adds environment variables
    for the interpreter (on top of this process's environment). ``link``, if given, becomes a
    symlink to the port (a stable name such as ``/tmp/board-a``). ``heapsize`` is passed as
    ``-X heapsize=`` (an RP2040 has ~200 KB of heap; None keeps the unix port's default).
    """

    def __init__(
        self,
        sandbox: str | os.PathLike[str],
        *,
        env: Mapping[str, str] | None = None,
        link: str | os.PathLike[str] | None = None,
        heapsize: str | None = None,
        micropython: str | None = None,
    ) -> None:
        self.sandbox = Path(sandbox).resolve()
        self.env = dict(env or {})
        self.link = Path(link) if link is not None else None
        self.heapsize = heapsize
        self.micropython = micropython or micropython_command()
        self.boots = 0  # interpreters started (1 after start, +1 per soft/hard reset)
        self.soft_resets = 0
        self._port = ""
        self._master = -1  # host side of the port
        self._connected = False  # a program has the port open (a host with the port open)
        self._hup_poll = select.poll()
        self._child: subprocess.Popen[bytes] | None = None
        self._child_fd = -1  # master side of the interpreter's terminal
        self._stop_r, self._stop_w = -1, -1
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopping = False
        self._hard_reset_requested = False
        # REPL state as seen from the interpreter's output.
        self._raw_mode = False
        self._tail = b""  # last output bytes of the interpreter, to spot prompts and banners
        self._booting = True  # before the driver's booted mark
        self._started = False  # the driver's started mark was seen: MicroPython runs
        self._enter_raw_after_boot = False  # a soft reset from the raw REPL: come back raw
        self._swallow = False  # hide the friendly banner while re-entering the raw REPL
        # Input from the host waiting for the interpreter, and the hold after a Ctrl-C.
        self._pending = bytearray()
        self._hold_until = 0.0  # monotonic; 0 = not holding
        self._mark_buf = b""  # output that may be the start of a driver mark
        self._swallow_buf = b""
        self._backlog = bytearray()
        self._transcript = bytearray()
        self._restart_times: list[float] = []

    # ------------------------------------------------------------------ public API

    @property
    def port(self) -> str:
        """Path of the serial port (``/dev/pts/N``) to give mpremote or pyserial."""
        if not self._port:
            raise RuntimeError("the virtual board is not started")
        return self._port

    @property
    def pid(self) -> int | None:
        """Process id of the running interpreter (changes at every reset)."""
        child = self._child
        return child.pid if child is not None else None

    @property
    def transcript(self) -> bytes:
        """The last 256 KB the board sent on its port (for test diagnostics)."""
        with self._lock:
            return bytes(self._transcript)

    def start(self) -> VirtualUsbBoard:
        if self._thread is not None:
            raise RuntimeError("already started")
        self.sandbox.mkdir(parents=True, exist_ok=True)
        self._master, slave = os.openpty()
        _raw_fd(slave)
        self._port = os.ttyname(slave)
        # The supervisor does not keep the port's slave open: while no program has it open the
        # master reports a hang-up, which is how the board knows nobody listens (a board's USB
        # serial drops output while the host has not opened the port).
        os.close(slave)
        os.set_blocking(self._master, False)
        self._hup_poll.register(self._master, select.POLLIN)
        self._stop_r, self._stop_w = os.pipe()
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()
            self.link.symlink_to(self._port)
        self._spawn(run_main=True)
        self._thread = threading.Thread(target=self._relay, name="usbboard", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the interpreter and close the port."""
        if self._thread is None:
            return
        self._stopping = True
        with contextlib.suppress(OSError):
            os.write(self._stop_w, b"x")
        self._thread.join(timeout=10)
        self._thread = None
        self._kill_child()
        for fd in (self._master, self._stop_r, self._stop_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._master = self._stop_r = self._stop_w = -1
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                if self.link.is_symlink():
                    self.link.unlink()

    def hard_reset(self) -> None:
        """Power-cycle the board: a new interpreter in the friendly REPL, main.py runs."""
        self._hard_reset_requested = True
        with contextlib.suppress(OSError):
            os.write(self._stop_w, b"r")

    def __enter__(self) -> VirtualUsbBoard:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ interpreter

    def _spawn(self, run_main: bool) -> None:
        files = ["boot.py", "main.py"] if run_main else ["boot.py"]
        code = _DRIVER.format(
            root=str(self.sandbox),
            files=files,
            started=_STARTED_MARK.decode("ascii"),
            mark=_BOOTED_MARK.decode("ascii"),
        )
        command = [self.micropython]
        if self.heapsize:
            command += ["-X", f"heapsize={self.heapsize}"]
        command += ["-i", "-c", code]
        env = dict(os.environ)
        env.update(self.env)
        env.pop("MICROPYINSPECT", None)
        master, slave = os.openpty()
        _raw_fd(slave)
        try:
            self._child = subprocess.Popen(
                command,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                cwd=str(self.sandbox),
                env=env,
                close_fds=True,
                start_new_session=True,  # the supervisor's Ctrl-C is not the board's
            )
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self._child_fd = master
        self._tail = b""
        self._booting = True
        self._started = False
        self._enter_raw_after_boot = not run_main
        self._swallow = False
        self._mark_buf = b""
        self._swallow_buf = b""
        self._raw_mode = False
        self._hold_until = 0.0
        self.boots += 1

    def _kill_child(self) -> None:
        child = self._child
        if child is not None and child.poll() is None:
            child.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5)
        self._child = None
        if self._child_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._child_fd)
        self._child_fd = -1

    def _restart(self, reason: str) -> None:
        """The interpreter ended (soft reset) or a hard reset was asked for: start a new one."""
        raw = self._raw_mode and reason == "soft"
        self._kill_child()
        if self._stopping:
            return
        now = time.monotonic()
        self._restart_times = [t for t in self._restart_times if now - t < 2.0] + [now]
        if len(self._restart_times) > 5:  # a boot loop (main.py calling sys.exit()): breathe
            time.sleep(0.5)
        if reason == "soft":
            self.soft_resets += 1
            self._emit(SOFT_REBOOT)
        self._spawn(run_main=not raw)

    # ------------------------------------------------------------------ relay

    def _emit(self, data: bytes) -> None:
        """Queue ``data`` for the host (dropped while the port is closed or not read)."""
        with self._lock:
            self._transcript += data
            if len(self._transcript) > _TRANSCRIPT_MAX:
                del self._transcript[: len(self._transcript) - _TRANSCRIPT_MAX]
        if not self._connected:
            return
        self._backlog += data
        if len(self._backlog) > _BACKLOG_MAX:
            del self._backlog[: len(self._backlog) - _BACKLOG_MAX]

    def _at_prompt(self) -> bool:
        tail = self._tail
        if tail.endswith(_FRIENDLY_PROMPTS):
            return True
        return self._raw_mode and (tail.endswith(b"\x04>") or tail.endswith(b"\r\n>"))

    def _scan_mark(self, data: bytes, mark: bytes) -> tuple[bytes, bool, bytes]:
        """Find ``mark`` in the output stream: (output before it, found, output after it).

        A mark can be split across reads: a tail that may start one is held back.
        """
        buffered = self._mark_buf + data
        at = buffered.find(mark)
        if at >= 0:
            self._mark_buf = b""
            return buffered[:at], True, buffered[at + len(mark) :]
        keep = 0
        for n in range(min(len(mark) - 1, len(buffered)), 0, -1):
            if buffered.endswith(mark[:n]):
                keep = n
                break
        self._mark_buf = buffered[len(buffered) - keep :]
        return buffered[: len(buffered) - keep], False, b""

    def _from_child(self, data: bytes) -> None:
        self._tail = (self._tail + data)[-128:]
        if self._booting:
            if not self._started:
                before, self._started, data = self._scan_mark(data, _STARTED_MARK)
                self._emit(before)
                if not self._started:
                    return
            before, found, data = self._scan_mark(data, _BOOTED_MARK)
            self._emit(before)
            if not found:
                return
            self._booting = False
            if self._enter_raw_after_boot:
                self._swallow = True
                self._swallow_buf = b""
        if self._swallow:
            buffered = self._swallow_buf + data
            if not self._raw_mode:
                if buffered.endswith(_FRIENDLY_PROMPTS[0]):
                    os.write(self._child_fd, b"\x01")
                    self._raw_mode = True
                self._swallow_buf = buffered[-len(RAW_BANNER) :]
                return
            at = buffered.find(RAW_BANNER)
            if at < 0:
                self._swallow_buf = buffered[-len(RAW_BANNER) :]
                return
            self._swallow = False
            data = buffered[at:]
        self._track_mode(data)
        self._emit(data)

    def _track_mode(self, data: bytes) -> None:
        window = self._tail
        raw_at = window.rfind(RAW_BANNER)
        friendly_at = window.rfind(FRIENDLY_BANNER)
        if raw_at >= 0 or friendly_at >= 0:
            self._raw_mode = raw_at > friendly_at

    def _input_ready(self) -> bool:
        if (self._booting and self._enter_raw_after_boot) or self._swallow:
            return False
        if self._hold_until:
            if self._at_prompt() or time.monotonic() >= self._hold_until:
                self._hold_until = 0.0
            else:
                return False
        return True

    def _to_child(self) -> None:
        """Write pending host input; a Ctrl-C interrupts running code with SIGINT."""
        child = self._child
        if child is None or self._child_fd < 0:
            return
        data = self._pending
        cut = data.find(_CTRL_C)
        if cut < 0:
            del data[: self._write_child(bytes(data))]
            return
        if cut:
            written = self._write_child(bytes(data[:cut]))
            del data[:written]
            if written < cut:
                return
        if self._started and _sigint_caught(child.pid):
            # Code is running with its Ctrl-C handler: interrupt it like a board's USB IRQ.
            del data[:1]
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGINT)
            self._hold_until = time.monotonic() + _HOLD_TIMEOUT_S
            self._tail = b""
        else:
            del data[: self._write_child(b"\x03")]

    def _write_child(self, chunk: bytes) -> int:
        try:
            return os.write(self._child_fd, chunk)
        except BlockingIOError:
            return 0
        except OSError:
            return len(chunk)  # the interpreter is gone; its exit is handled on read

    def _port_open(self) -> bool:
        """True when some program has the port open (no hang-up on the master)."""
        return not any(ev & select.POLLHUP for _, ev in self._hup_poll.poll(0))

    def _disconnected(self) -> None:
        self._connected = False
        self._backlog.clear()

    def _relay(self) -> None:
        while not self._stopping:
            if not self._connected and self._port_open():
                self._connected = True
            rlist = [self._stop_r]
            wlist: list[int] = []
            if self._connected:
                rlist.append(self._master)
                if self._backlog:
                    wlist.append(self._master)
            if self._child_fd >= 0:
                rlist.append(self._child_fd)
            ready_for_input = self._pending and self._input_ready()
            if ready_for_input and self._child_fd >= 0:
                wlist.append(self._child_fd)
            timeout = 1.0
            if not self._connected or (self._pending and not ready_for_input):
                timeout = 0.02
            try:
                readable, writable, _ = select.select(rlist, wlist, [], timeout)
            except OSError:
                break
            if self._stop_r in readable:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._stop_r, 64)
                if self._stopping:
                    break
                if self._hard_reset_requested:
                    self._hard_reset_requested = False
                    self._restart("hard")
                    continue
            if self._child_fd >= 0 and self._child_fd in readable:
                try:
                    data = os.read(self._child_fd, 4096)
                except BlockingIOError:
                    data = None
                except OSError:  # EIO: the interpreter closed its terminal (it ended)
                    data = b""
                if data == b"":
                    self._restart("soft")
                    continue
                if data:
                    self._from_child(data)
            if self._master in readable:
                try:
                    data = os.read(self._master, 4096)
                except BlockingIOError:
                    data = b""
                except OSError:  # EIO: the last program closed the port
                    data = b""
                    self._disconnected()
                if data:
                    self._pending += data
            if self._master in writable and self._backlog:
                try:
                    del self._backlog[: os.write(self._master, self._backlog)]
                except BlockingIOError:
                    pass
                except OSError:
                    self._disconnected()
            if self._pending and self._input_ready() and self._child_fd >= 0:
                self._to_child()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="usbboard", description="a virtual board: MicroPython's REPL on a pseudo-terminal"
    )
    parser.add_argument("sandbox", help="directory acting as the board's flash (created)")
    parser.add_argument("--link", help="make this path a symlink to the port")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="environment variable"
    )
    parser.add_argument("--heapsize", help="MicroPython heap size, e.g. 256K")
    args = parser.parse_args(argv)
    env: dict[str, str] = {}
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--env wants NAME=VALUE, got {item!r}")
        env[name] = value
    board = VirtualUsbBoard(args.sandbox, env=env, link=args.link, heapsize=args.heapsize)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    with board:
        info = {
            "port": board.port,
            "link": str(board.link) if board.link else None,
            "sandbox": str(board.sandbox),
            "pid": os.getpid(),
        }
        print(json.dumps(info), flush=True)
        done.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
