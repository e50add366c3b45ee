"""Passive RS-485 bus monitor: decodes every frame on the line, live or from a recording.

Live::

    busmon PORT [--baud 115200] [--capture FILE] [--stats-every N] [--duration S] [--hex]

``PORT`` is a serial port (pyserial: ``/dev/ttyUSB0``, a ``/dev/pts/N`` of the virtual bus, any
pyserial URL) or ``unix:PATH``, a listen-only connection to the virtual bus's UNIX socket.
Offline::

    busmon --replay FILE [--stats-every N] [--hex]

One line per frame: ``time  src→dst  Type  seq  fields`` (``M`` is the master, ``**`` broadcast,
``??`` a board without address); a bad frame shows its error (COBS, CRC, length, version, type,
field), its bytes, and the header when its CRC was good (so its sender is known). With a tty on
stdout, errors are red and types coloured. Statistics per board (frames, types, errors, last
seen) print every ``--stats-every`` seconds and on exit.

Capture format (``--capture``), JSON lines, UTF-8:

* line 1, the header: ``{"busmon": 1, "port": "...", "baud": 115200, "started": <epoch s>}``
* every other line, one read from the port: ``{"t": <epoch s, float>, "hex": "<bytes>"}``

``--replay`` decodes a capture with its recorded times, so timing and statistics read as they
were on site. Library use: ``decode_stream(chunks)`` takes ``(t, bytes)`` pairs and yields
``DecodedFrame`` / ``BadFrame``; ``read_capture(path)`` yields the pairs of a capture file;
``BusStats`` counts; ``render(item)`` formats one line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Protocol, cast

from protocol import consts as C
from protocol.consts import BUS_BAUD
from protocol.errors import FrameError
from protocol.framing import FrameReader
from protocol.messages import BY_TYPE, Message, message_from_reader

CAPTURE_VERSION = 1
_MAX_SHOWN = 300  # bytes of a bad frame kept for display

# Error names shown for each FrameError subclass (and the end of a recording mid-frame).
ERROR_NAMES = {
    "CobsError": "COBS",
    "LengthError": "LENGTH",
    "CrcError": "CRC",
    "VersionError": "VERSION",
    "UnknownTypeError": "TYPE",
    "FieldError": "FIELD",
    "ConfigKeyError": "CONFIG-KEY",
    "Incomplete": "INCOMPLETE",
}


@dataclass(frozen=True)
class DecodedFrame:
    """A good frame: ``t`` when its delimiter arrived, ``t_start`` its first byte."""

    t: float
    t_start: float
    wire: bytes  # stuffed bytes and the delimiter
    message: Message

    @property
    def src(self) -> int:
        return self.message.src

    @property
    def dst(self) -> int:
        return self.message.dst

    @property
    def type_name(self) -> str:
        return self.message.NAME


@dataclass(frozen=True)
class BadFrame:
    """Bytes between two delimiters that are not a valid frame.

    ``error`` is the exception class name (``CrcError``, ``CobsError``, ``LengthError``,
    ``VersionError``, ``UnknownTypeError``, ``FieldError``, or ``Incomplete`` for bytes left
    when a recording ends). When the CRC was good the header is real: ``src``, ``dst``,
    ``mtype`` and ``seq`` are set; otherwise they are None.
    """

    t: float
    t_start: float
    wire: bytes  # at most _MAX_SHOWN bytes of it
    length: int  # bytes on the wire, delimiter included
    error: str
    detail: str
    src: int | None = None
    dst: int | None = None
    mtype: int | None = None
    seq: int | None = None

    @property
    def kind(self) -> str:
        return ERROR_NAMES.get(self.error, self.error)


Decoded = DecodedFrame | BadFrame


class StreamDecoder:
    """Incremental form of ``decode_stream``: ``feed(t, data)`` returns what completed."""

    def __init__(self) -> None:
        self._reader = FrameReader()
        self._pending = bytearray()  # shown bytes of the frame being collected
        self._length = 0  # its length on the wire so far (leading delimiters not counted)
        self._t_start = 0.0
        self._t = 0.0

    def feed(self, t: float, chunk: bytes) -> list[Decoded]:
        reader = self._reader
        done: list[Decoded] = []
        data = bytes(chunk)
        self._t = t
        i = 0
        n = len(data)
        while i < n:
            j = reader.feed(data, i, n)
            part = data[i:j]
            i = j
            if not self._length:
                part = part.lstrip(b"\x00")
                if part:
                    self._t_start = t
            self._length += len(part)
            room = _MAX_SHOWN - len(self._pending)
            if room > 0:
                self._pending += part[:room]
            if reader.ready:
                wire = bytes(self._pending)
                done.append(_decode_one(reader, t, self._t_start, wire, self._length))
                self._pending.clear()
                self._length = 0
        return done

    def finish(self) -> list[Decoded]:
        """The end of the stream: bytes without a delimiter are an ``Incomplete`` frame."""
        if not self._length:
            return []
        item = BadFrame(
            self._t, self._t_start, bytes(self._pending), self._length, "Incomplete",
            "no delimiter at the end",
        )  # fmt: skip
        self._pending.clear()
        self._length = 0
        self._reader.reset()
        return [item]


def decode_stream(chunks: Iterable[tuple[float, bytes]]) -> Iterator[Decoded]:
    """Decode ``(timestamp, bytes)`` chunks as they were read from the line, in order.

    Every good frame yields a ``DecodedFrame``; every run of bytes up to a delimiter that is not
    a valid frame yields one ``BadFrame`` (empty frames, 0x00 0x00, are legal padding and yield
    nothing). Bytes left without a delimiter at the end yield a ``BadFrame("Incomplete")``.
    """
    decoder = StreamDecoder()
    for t, chunk in chunks:
        yield from decoder.feed(t, chunk)
    yield from decoder.finish()


def _decode_one(reader: FrameReader, t: float, t_start: float, wire: bytes, length: int) -> Decoded:
    try:
        reader.decode()
        message = message_from_reader(reader)
    except FrameError as exc:
        header: dict[str, int] = {}
        if reader.crc_ok:
            header = {"src": reader.src, "dst": reader.dst, "mtype": reader.mtype}
            header["seq"] = reader.seq
        detail = str(exc.args[0]) if exc.args else ""
        return BadFrame(t, t_start, wire, length, type(exc).__name__, detail, **header)
    return DecodedFrame(t, t_start, wire, message)


# --------------------------------------------------------------------------- capture files


class CaptureWriter:
    """Writes a capture: the header line, then one JSON line per chunk read."""

    def __init__(self, path: str | os.PathLike[str], port: str, baud: int) -> None:
        self._file: IO[str] = open(path, "w", encoding="utf-8")  # noqa: SIM115
        header = {"busmon": CAPTURE_VERSION, "port": port, "baud": baud, "started": time.time()}
        self._file.write(json.dumps(header) + "\n")
        self._last_flush = time.monotonic()

    def write(self, t: float, data: bytes) -> None:
        self._file.write(f'{{"t": {t:.6f}, "hex": "{data.hex()}"}}\n')
        now = time.monotonic()
        if now - self._last_flush > 0.5:
            self._file.flush()
            self._last_flush = now

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CaptureFormatError(ValueError):
    """The file is not a busmon capture (the message says which line and why)."""


def read_capture_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        first = handle.readline()
    try:
        header = json.loads(first)
    except ValueError:
        raise CaptureFormatError(f"{path}: line 1 is not JSON") from None
    if not isinstance(header, dict) or header.get("busmon") != CAPTURE_VERSION:
        raise CaptureFormatError(f"{path}: not a busmon capture (version {CAPTURE_VERSION})")
    return header


def read_capture(path: str | os.PathLike[str]) -> Iterator[tuple[float, bytes]]:
    """The ``(t, bytes)`` chunks of a capture file, in recorded order."""
    read_capture_header(path)
    with open(path, encoding="utf-8") as handle:
        handle.readline()
        for number, line in enumerate(handle, start=2):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                yield float(record["t"]), bytes.fromhex(record["hex"])
            except (ValueError, KeyError, TypeError):
                # A capture cut by a crash may end in half a line; anything else is damage.
                if not line.endswith("\n"):
                    return
                raise CaptureFormatError(f"{path}: line {number} is not a chunk record") from None


# --------------------------------------------------------------------------- statistics


@dataclass
class BoardStats:
    """What one sender (address) put on the bus."""

    address: int
    frames: int = 0
    errors: int = 0  # bad frames whose CRC was good (so the sender is known)
    types: Counter[str] = field(default_factory=Counter)
    first_seen: float = 0.0
    last_seen: float = 0.0


@dataclass
class BusStats:
    """Counters over a stream of ``Decoded`` items."""

    frames: int = 0
    bad: int = 0
    bytes: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # bad frames by error name
    unattributed: int = 0  # bad frames whose sender cannot be trusted (COBS/CRC/length)
    boards: dict[int, BoardStats] = field(default_factory=dict)
    first: float | None = None
    last: float | None = None

    def _board(self, address: int, t: float) -> BoardStats:
        board = self.boards.get(address)
        if board is None:
            board = self.boards[address] = BoardStats(address, first_seen=t)
        board.last_seen = t
        return board

    def add(self, item: Decoded) -> None:
        if self.first is None:
            self.first = item.t_start
        self.last = item.t
        if isinstance(item, DecodedFrame):
            self.frames += 1
            self.bytes += len(item.wire)
            board = self._board(item.src, item.t)
            board.frames += 1
            board.types[item.type_name] += 1
            return
        self.bad += 1
        self.bytes += item.length
        self.errors[item.error] += 1
        if item.src is None:
            self.unattributed += 1
        else:
            self._board(item.src, item.t).errors += 1

    def render(self, now: float | None = None) -> str:
        """A small table: one line per sender, then the error counts."""
        now = self.last if now is None else now
        span = (self.last or 0.0) - (self.first or 0.0)
        lines = [
            f"-- bus: {self.frames} frames, {self.bad} bad, {self.bytes} bytes"
            + (f" in {span:.1f} s" if span > 0 else "")
        ]
        lines.append(f"   {'sender':>8} {'frames':>8} {'errors':>7} {'last seen':>10}  types")
        for address in sorted(self.boards):
            b = self.boards[address]
            ago = f"{(now or b.last_seen) - b.last_seen:.1f}s ago"
            kinds = " ".join(f"{name}:{count}" for name, count in sorted(b.types.items()))
            label = address_label(address)
            lines.append(f"   {label:>8} {b.frames:>8} {b.errors:>7} {ago:>10}  {kinds}")
        if self.bad:
            kinds = " ".join(
                f"{ERROR_NAMES.get(name, name)}:{count}"
                for name, count in sorted(self.errors.items())
            )
            lines.append(f"   bad frames: {kinds} (sender unknown: {self.unattributed})")
        return "\n".join(lines)


# --------------------------------------------------------------------------- rendering


def address_label(address: int) -> str:
    if address == C.ADDR_MASTER:
        return "M"
    if address == C.ADDR_BROADCAST:
        return "**"
    if address == C.ADDR_UNASSIGNED:
        return "??"
    return str(address)


_STATE_CHARS = "-oSXT"  # OFF, OK, SLIGHT, SERIOUS, TRIPPED (TELEMETRY states)
_ALARM_CHARS = "oSXT"  # REPORT alarm codes: normal, SLIGHT, SERIOUS, TRIPPED
_TYPE_COLOURS = {
    C.T_POLL: "36",
    C.T_SYNC: "36",
    C.T_REPORT: "32",
    C.T_TELEMETRY: "32",
    C.T_STATUS: "32",
    C.T_NAK: "33",
}


def _names(prefix: str) -> dict[int, str]:
    """Constant names of protocol.consts by value, e.g. ``K_CAL_GAIN`` -> ``{4: "cal_gain"}``."""
    return {
        value: name[len(prefix) :].lower()
        for name, value in vars(C).items()
        if name.startswith(prefix) and isinstance(value, int)
    }


_CONFIG_KEYS = _names("K_")
_NAK_CODES = _names("E_")
_BOARD_TYPES = _names("BOARD_")


def _amps(centiamps: int) -> str:
    if centiamps == 0:
        return "0"
    if centiamps in (C.CENTIAMPS_INVALID, C.REPORT_OVER_RANGE):
        return "!"
    return f"{centiamps / 100:.2f}".rstrip("0").rstrip(".")


def _render_value(name: str, value: object, message: Message) -> str | None:
    """Compact text for one field; None hides it (e.g. no clipped channel)."""
    if name == "centiamps" and isinstance(value, list):
        return "A=[" + " ".join(_amps(v) for v in value) + "]"
    if name == "states" and isinstance(value, list):
        return "st=" + "".join(_STATE_CHARS[v] if 0 <= v < 5 else "?" for v in value)
    if name == "alarms" and isinstance(value, list):
        return "al=" + "".join(_ALARM_CHARS[v] if 0 <= v < 4 else "?" for v in value)
    if name == "clipped" and isinstance(value, list):
        chans = [str(ch) for ch, on in enumerate(value) if on]
        return "clip=" + ",".join(chans) if chans else None
    if name == "crest_x10" and isinstance(value, list):
        return "crest=[" + " ".join(f"{v / 10:g}" for v in value) + "]"
    if name.startswith("freq") and isinstance(value, int):
        return f"{name.removesuffix('_centihz')}={value / 100:.2f}Hz"
    if name == "time_to_trip_ds" and isinstance(value, dict):
        if not value:
            return None
        return "ttt={" + ",".join(f"{ch}:{v / 10:g}s" for ch, v in sorted(value.items())) + "}"
    if name in ("flags", "inputs") and isinstance(value, int):
        return f"{name}=0x{value:02x}"
    if name in ("want", "acked_type", "rejected_type") and isinstance(value, int):
        cls = BY_TYPE.get(value)
        return f"{name}={cls.NAME if cls else hex(value)}"
    if name.endswith("_mask") and isinstance(value, int):
        return f"{name}=0x{value:x}"
    if name == "key" and isinstance(value, int):
        return f"key={_CONFIG_KEYS.get(value, str(value))}"
    if name == "error" and isinstance(value, int):
        return f"error={_NAK_CODES.get(value, str(value))}"
    if name == "board_type" and isinstance(value, int):
        return f"board={_BOARD_TYPES.get(value, str(value))}"
    if name == "config_digest" and isinstance(value, int):
        return f"digest={value:08x}"
    if isinstance(value, (bytes, bytearray)):
        return f"{name}={bytes(value).hex()}"
    if isinstance(value, tuple) and name == "fw_version":
        return "fw=" + ".".join(str(v) for v in value)
    if isinstance(value, list):
        return f"{name}=[" + " ".join(str(v) for v in value) + "]"
    if isinstance(value, str):
        return f"{name}={value!r}"
    return f"{name}={value}"


def render_fields(message: Message) -> str:
    parts = []
    for name, value in message.fields().items():
        text = _render_value(name, value, message)
        if text is not None:
            parts.append(text)
    return " ".join(parts)


def _clock(t: float) -> str:
    """Local wall-clock time to the microsecond (the resolution of a capture)."""
    seconds, micros = divmod(round(t * 1_000_000), 1_000_000)
    return time.strftime("%H:%M:%S", time.localtime(seconds)) + f".{micros:06d}"


def render(item: Decoded, *, colour: bool = False, show_hex: bool = False) -> str:
    """One line for a frame or a bad frame."""

    def paint(code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if colour else text

    stamp = _clock(item.t)
    if isinstance(item, DecodedFrame):
        m = item.message
        route = f"{address_label(m.src):>3}→{address_label(m.dst):<3}"
        name = paint(_TYPE_COLOURS.get(m.TYPE, "1"), f"{m.NAME:<13}")
        line = f"{stamp} {route} {name} #{m.seq:<3} {render_fields(m)}"
        if show_hex:
            line += f"  [{item.wire.hex(' ')}]"
        return line
    route = "   →   "
    if item.src is not None and item.dst is not None:
        route = f"{address_label(item.src):>3}→{address_label(item.dst):<3}"
    label = paint("1;31", f"BAD {item.kind:<9}")
    what = item.detail
    if item.mtype is not None:
        cls = BY_TYPE.get(item.mtype)
        what += f" (type {cls.NAME if cls else hex(item.mtype)}, seq {item.seq})"
    shown = item.wire.hex(" ")
    if item.length > len(item.wire):
        shown += f" …(+{item.length - len(item.wire)} bytes)"
    return f"{stamp} {route} {label} {what}: {paint('31', shown)} ({item.length} bytes)"


# --------------------------------------------------------------------------- live monitor


class ByteSource(Protocol):
    def read_chunk(self) -> bytes: ...  # b"" after a short quiet time

    def close(self) -> None: ...


class SerialSource:
    """A serial port through pyserial (``/dev/tty*``, ``/dev/pts/N``, pyserial URLs)."""

    def __init__(self, port: str, baud: int) -> None:
        import serial

        self._port = serial.serial_for_url(port, baudrate=baud, timeout=0.1)

    def read_chunk(self) -> bytes:
        waiting = self._port.in_waiting
        return bytes(self._port.read(waiting or 1))

    def close(self) -> None:
        self._port.close()


class UnixBusSource:
    """A listen-only connection to the virtual bus's UNIX socket (``unix:PATH``)."""

    def __init__(self, path: str, name: str = "busmon") -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.connect(path)
        self._sock.sendall(f"@vbus {name} listen\n".encode())
        self._sock.settimeout(0.1)

    def read_chunk(self) -> bytes:
        try:
            data = self._sock.recv(4096)
        except TimeoutError:
            return b""
        if not data:
            raise ConnectionError("the bus closed the connection")
        return data

    def close(self) -> None:
        self._sock.close()


def open_source(port: str, baud: int) -> ByteSource:
    if port.startswith("unix:"):
        return UnixBusSource(port[len("unix:") :])
    return SerialSource(port, baud)


def live_chunks(
    source: ByteSource,
    *,
    capture: CaptureWriter | None = None,
    duration: float | None = None,
    clock: Callable[[], float] = time.time,
) -> Iterator[tuple[float, bytes]]:
    """Timestamped chunks from ``source`` (recorded to ``capture``), for ``duration`` seconds.

    A quiet line yields ``(now, b"")`` about every 0.1 s, so a consumer keeps its clock.
    """
    end = None if duration is None else time.monotonic() + duration
    while end is None or time.monotonic() < end:
        data = source.read_chunk()
        t = round(clock(), 6)  # the resolution of a capture: replay renders the same
        if data and capture is not None:
            capture.write(t, data)
        yield t, data


@dataclass
class MonitorOptions:
    colour: bool = False
    show_hex: bool = False
    stats_every: float = 0.0  # seconds (of recorded time in a replay); 0 = only at the end
    quiet: bool = False  # statistics only


def monitor(
    chunks: Iterable[tuple[float, bytes]], out: IO[str], options: MonitorOptions
) -> BusStats:
    """Decode, print and count; statistics every ``stats_every`` s and at the end."""
    stats = BusStats()
    decoder = StreamDecoder()
    next_stats: float | None = None

    def show(items: list[Decoded]) -> None:
        for item in items:
            stats.add(item)
            if not options.quiet:
                out.write(render(item, colour=options.colour, show_hex=options.show_hex) + "\n")

    try:
        for t, data in chunks:
            show(decoder.feed(t, data))
            if options.stats_every > 0:
                if next_stats is None:
                    next_stats = t + options.stats_every
                elif t >= next_stats:
                    out.write(stats.render(t) + "\n")
                    next_stats = t + options.stats_every
            out.flush()
    except KeyboardInterrupt:
        pass
    show(decoder.finish())
    out.write(stats.render() + "\n")
    out.flush()
    return stats


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The busmon options, for ``busmon`` itself and for ``smartpdu busmon``."""
    parser.add_argument("port", nargs="?", help="serial port, pyserial URL or unix:SOCKET")
    parser.add_argument("--baud", type=int, default=BUS_BAUD, help=f"baud rate ({BUS_BAUD})")
    parser.add_argument("--capture", metavar="FILE", help="record the raw byte stream (JSONL)")
    parser.add_argument("--replay", metavar="FILE", help="decode a recording instead of a port")
    parser.add_argument(
        "--stats-every", type=float, default=0.0, metavar="S", help="print statistics every S s"
    )
    parser.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    parser.add_argument("--hex", action="store_true", help="show the wire bytes of good frames")
    parser.add_argument("--quiet", action="store_true", help="statistics only")
    parser.add_argument(
        "--colour",
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="ANSI colours (auto: when stdout is a terminal)",
    )


def run(args: argparse.Namespace, out: IO[str] | None = None) -> int:
    """Run with parsed ``add_arguments`` options; returns the exit status."""
    if out is None:
        out = cast(IO[str], sys.stdout)
    colour = args.colour == "always" or (args.colour == "auto" and out.isatty())
    options = MonitorOptions(
        colour=colour, show_hex=args.hex, stats_every=args.stats_every, quiet=args.quiet
    )
    if args.replay:
        if args.port or args.capture:
            print("busmon: --replay reads a file: give no port and no --capture", file=sys.stderr)
            return 2
        try:
            header = read_capture_header(args.replay)
            out.write(f"-- replay of {args.replay} (port {header.get('port')})\n")
            monitor(read_capture(args.replay), out, options)
        except (OSError, CaptureFormatError) as exc:
            print(f"busmon: {exc}", file=sys.stderr)
            return 1
        return 0
    if not args.port:
        print("busmon: give a PORT or --replay FILE", file=sys.stderr)
        return 2
    try:
        source = open_source(args.port, args.baud)
    except (OSError, ValueError) as exc:
        print(f"busmon: cannot open {args.port}: {exc}", file=sys.stderr)
        return 1
    capture = CaptureWriter(args.capture, args.port, args.baud) if args.capture else None
    try:
        with contextlib.ExitStack() as stack:
            stack.callback(source.close)
            if capture is not None:
                stack.callback(capture.close)
            chunks = live_chunks(source, capture=capture, duration=args.duration)
            monitor(chunks, out, options)
    except (OSError, ConnectionError) as exc:
        print(f"busmon: {args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="busmon", description="passive RS-485 bus monitor")
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except BrokenPipeError:  # busmon ... | head
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "BadFrame",
    "BoardStats",
    "BusStats",
    "CaptureWriter",
    "Decoded",
    "DecodedFrame",
    "add_arguments",
    "decode_stream",
    "main",
    "read_capture",
    "render",
    "run",
]
