"""``smartpdu console PORT``: the serial debug console to one board.

The firmware runs a command interpreter on its USB serial console while it keeps measuring
(``firmware/debug.py``: status, currents, raw, cal, noise, address, group, identify, errors,
info). This terminal adds what a person at a laptop on a stage wants: line editing and a
command history kept between sessions (readline), the board's output shown as it arrives,
and a clear message when the port is missing or the board goes away.

Local commands start with a colon: ``:quit`` (or Ctrl-D / Ctrl-C) leaves, ``:help``.
Ctrl-C never interrupts the firmware: that would stop the board's measurements.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import time
from pathlib import Path

import serial

from host.transport import TransportError, open_serial
from protocol.consts import BUS_BAUD

HISTORY = Path(os.environ.get("SMARTPDU_HISTORY", Path.home() / ".smartpdu_console_history"))
LOCAL_HELP = """local commands: :quit  :help   (board commands: type help)"""


def _reader(port: serial.Serial, out, stop: threading.Event) -> None:
    """Copy the board's output to the terminal until stopped or the port goes away."""
    while not stop.is_set():
        try:
            data = port.read(port.in_waiting or 1)
        except (serial.SerialException, OSError):
            out.write("\n[board disconnected]\n")
            out.flush()
            stop.set()
            return
        if data:
            out.write(data.decode(errors="replace").replace("\r\n", "\n"))
            out.flush()
        else:
            time.sleep(0.02)


def run_console(port_name: str, baud: int = BUS_BAUD, stdin=None, out=None) -> int:
    stdin = stdin or sys.stdin
    out = out or sys.stdout
    try:
        port = open_serial(port_name, baud, what="console")
    except TransportError as exc:
        print(f"smartpdu console: {exc}", file=sys.stderr)
        return 2
    port.timeout = 0.1
    interactive = stdin.isatty()
    readline = None
    if interactive:
        with contextlib.suppress(ImportError):
            import readline as _readline

            readline = _readline
            with contextlib.suppress(OSError):
                readline.read_history_file(HISTORY)
            readline.set_history_length(1000)
    stop = threading.Event()
    reader = threading.Thread(target=_reader, args=(port, out, stop), daemon=True)
    reader.start()
    out.write(f"smartPDU console on {port_name} ({LOCAL_HELP})\n")
    port.write(b"\n")  # ask for a fresh prompt
    try:
        while not stop.is_set():
            try:
                line = input() if interactive else stdin.readline()
            except (EOFError, KeyboardInterrupt):
                break
            if not interactive and line == "":
                break
            line = line.strip()
            if line in (":quit", ":q", ":exit"):
                break
            if line == ":help":
                out.write(LOCAL_HELP + "\n")
                continue
            try:
                port.write(line.encode() + b"\n")
            except (serial.SerialException, OSError):
                out.write("[board disconnected]\n")
                break
    finally:
        stop.set()
        reader.join(1)
        port.close()
        if readline is not None:
            with contextlib.suppress(OSError):
                readline.write_history_file(HISTORY)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("port", help="the board's USB serial port, e.g. /dev/ttyACM0")
    parser.add_argument("--baud", type=int, default=BUS_BAUD)


def run(args: argparse.Namespace) -> int:
    return run_console(args.port, args.baud)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smartpdu console", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
