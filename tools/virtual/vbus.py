"""Virtual RS-485 bus: one half-duplex medium joining pseudo-terminals and UNIX sockets.

The bus is the *line*, not a byte pipe.  Every byte an endpoint writes occupies the line for
``bits_per_char / baud`` seconds (10 bits for 8N1: start + 8 data + stop), scheduled on absolute
time from the moment the endpoint's transmitter becomes free, so a long transfer never drifts.
A byte reaches every other plugged endpoint when its stop bit ends (bytes that are due together
are delivered in one batch: the event loop wakes about once a millisecond).

Endpoints
---------
* **Pseudo-terminals** (``add_pty_endpoint``): for the master (the Pi's serial port) and bus
  monitors.  The bus keeps the pty pair open and puts it in raw mode; programs open the slave
  path (``/dev/pts/N``) with pyserial like a real port.  The baud rate they set is ignored, as
  the line speed belongs to the bus.
* **UNIX stream socket** (``socket_path``): for virtual boards (the MicroPython unix port has no
  termios).  Each connection is one transceiver.  Convention: the connection *may* start with
  one hello line ``@vbus <name>[ echo][ listen][ timed]\\n`` (name: ``[A-Za-z0-9_.-]{1,32}``);
  every other byte is raw line data, or, with ``timed``, records (below).  Without a hello
  the endpoint is called ``sockN``.  Line data for a new connection is held until its first
  byte (hello or data) says which form it wants (a timed board must never get raw bytes
  before its records), however late that byte comes: a listener that never writes says so
  with ``@vbus <name> listen``.
  The bus writes nothing but line data (or records) to a socket.  A newer connection with the
  same name replaces the older one (a board that restarted); bytes a board wrote before
  closing still go out.
  MicroPython's unix port wants the raw ``sockaddr_un``::

      s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
      s.connect(struct.pack("<H", socket.AF_UNIX) + path.encode() + b"\\0")
      s.send(b"@vbus group-a\\n")

* **Timed sockets** (hello flag ``timed``) model a UART with a receive timestamp and a timed
  transmit start, as a board that schedules TDMA slots from the end of a SYNC uses (on the
  RP2040: the RX-idle interrupt and a timer-started transmit).  Both directions carry records
  ``u16 length, u64 time_us (little-endian), data``; ``time_us`` is CLOCK_MONOTONIC in µs (the
  clock of ``time.monotonic()`` here and of ``time.ticks_us()`` on MicroPython's 64-bit unix
  port).  From the bus: the line time at which the record's last byte ended.  To the bus:
  the line time at which the data starts (0, or a time already past: at once).  The
  transmitter still sends one thing at a time: a start time that falls inside its own earlier
  transmission waits for it to end.

Physics
-------
* A transceiver does not hear itself (RE high while DE is high) unless ``echo`` is set.
* Two transmissions overlapping in time **collide**: every overlapping byte of both is garbled
  (XOR with a random non-zero byte) at all receivers and counted; a collision never yields a
  clean frame.
* Faults on the line: bit-error rate (each data bit inverted with probability ``ber``), dropped
  bytes (probability ``drop``), noise bursts (random bytes on the line, colliding with traffic),
  and endpoints unplugged / plugged back (an unplugged endpoint neither sends nor receives;
  bytes it was sending are cut off).
* Back-pressure: when an endpoint has more than a few KB waiting for the line (at least 0.2 s
  of line time), the bus stops reading it (its writes block, like a full UART buffer); a
  receiver that does not read loses bytes once its kernel buffer is full (counted as overruns).

Run as a process::

    python -m tools.virtual.vbus --baud 115200 --pty master --pty monitor,listen \\
        --socket /tmp/bus.sock [--control /tmp/bus.ctl] [--ber 1e-5] [--drop 0] [--seed 1]

prints one JSON line ``{"pid", "baud", "socket", "control", "pty": {name: path}}`` on stdout
and runs until SIGINT/SIGTERM.  The control socket speaks JSON lines (see
``VirtualBus.handle_control``; ``control_request`` is a client helper).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import math
import os
import random
import stat
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from protocol.consts import BUS_BAUD
from tools.virtual.bus_endpoints import (
    HELLO_PREFIX,
    LATE_READ_S,
    NAME_RE,
    TX_HIGH_WATER,
    TX_LOW_WATER,
    TX_SLACK_S,
    BusStats,
    Endpoint,
    EndpointStats,
    Faults,
    PtyEndpoint,
    Segment,
    SocketEndpoint,
    VirtualBusError,
)

# Control helpers, imported from here by the meter simulator, the virtual PDU and the tests.
from tools.virtual.control import control_request, serve_until_signal, start_control_server

__all__ = [
    "HELLO_PREFIX",
    "BusStats",
    "EndpointStats",
    "Faults",
    "VirtualBus",
    "VirtualBusError",
    "control_request",
    "main",
    "serve_until_signal",
    "start_control_server",
]


class VirtualBus:
    """A half-duplex RS-485 line at ``baud`` joining pty and UNIX-socket endpoints.

    ``await start()`` opens the socket (unless ``serve_socket`` is false: a pty-only link) and
    starts the line; ``add_pty_endpoint`` may be called before or after.  ``seed`` makes
    collisions, bit errors, drops and noise reproducible.
    """

    def __init__(
        self,
        baud: int = BUS_BAUD,
        *,
        bits_per_char: int = 10,
        socket_path: str | os.PathLike[str] | None = None,
        serve_socket: bool = True,
        faults: Faults | None = None,
        seed: int | None = None,
    ) -> None:
        if baud <= 0 or bits_per_char <= 0:
            raise VirtualBusError("baud and bits_per_char must be positive")
        self.baud = baud
        self.bits_per_char = bits_per_char
        self.byte_time = bits_per_char / baud
        self._low_water = max(TX_LOW_WATER, round(TX_SLACK_S / self.byte_time))
        self._high_water = max(TX_HIGH_WATER, 4 * self._low_water)
        self._socket_path = Path(socket_path) if socket_path is not None else None
        self._serve_socket = serve_socket
        self._own_tmpdir: str | None = None
        self._faults = faults or Faults()
        self._rng = random.Random(seed)
        self._endpoints: dict[str, Endpoint] = {}
        self._unplugged: set[str] = set()
        self._segments: list[Segment] = []
        self._recent: list[Segment] = []  # finished, still within reach of a late timed start
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = math.inf
        self._server: asyncio.AbstractServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._socket_count = 0
        # Geometric skips: how many bits / bytes pass before the next bit error / drop.
        self._bits_to_error = self._skip(self._faults.ber)
        self._bytes_to_drop = self._skip(self._faults.drop)
        self._line_bytes = 0
        self._collisions = 0
        self._collided_bytes = 0
        self._bit_errors = 0
        self._corrupted_bytes = 0
        self._dropped_bytes = 0
        self._noise_bytes = 0

    # ------------------------------------------------------------------ life cycle

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise VirtualBusError("the bus is not started")
        return self._loop

    @property
    def running(self) -> bool:
        return self._loop is not None

    @property
    def socket_path(self) -> str:
        """Path of the UNIX socket virtual boards connect to."""
        if self._socket_path is None:
            self._own_tmpdir = tempfile.mkdtemp(prefix="vbus-")
            self._socket_path = Path(self._own_tmpdir) / "bus.sock"
        return str(self._socket_path)

    async def start(self) -> None:
        if self._loop is not None:
            raise VirtualBusError("the bus is already started")
        self._loop = asyncio.get_running_loop()
        if self._serve_socket:
            path = self.socket_path
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISSOCK(os.stat(path).st_mode):
                    os.unlink(path)  # stale socket of a bus that died
            self._server = await self._loop.create_unix_server(self._new_socket_endpoint, path=path)
        for endpoint in self._endpoints.values():
            if isinstance(endpoint, PtyEndpoint):
                endpoint.attach()

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._segments.clear()
        self._recent.clear()
        if self._server is not None:
            self._server.close()
        for endpoint in list(self._endpoints.values()):
            endpoint.close()
        self._endpoints.clear()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        if self._socket_path is not None and self._serve_socket:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._socket_path)
        if self._own_tmpdir is not None:
            with contextlib.suppress(OSError):
                os.rmdir(self._own_tmpdir)
            self._own_tmpdir = None
            self._socket_path = None
        self._loop = None

    async def __aenter__(self) -> VirtualBus:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ endpoints

    def add_pty_endpoint(self, name: str, *, echo: bool = False, listen_only: bool = False) -> str:
        """Add a pseudo-terminal endpoint; returns the device path programs open."""
        self._check_new_name(name)
        endpoint = PtyEndpoint(self, name, echo=echo, listen_only=listen_only)
        self._endpoints[name] = endpoint
        if self._loop is not None:
            endpoint.attach()
        return endpoint.path

    def pty_path(self, name: str) -> str:
        endpoint = self._endpoints.get(name)
        if not isinstance(endpoint, PtyEndpoint):
            raise KeyError(name)
        return endpoint.path

    @property
    def pty_paths(self) -> dict[str, str]:
        return {
            name: ep.path for name, ep in self._endpoints.items() if isinstance(ep, PtyEndpoint)
        }

    def endpoint_names(self) -> list[str]:
        return list(self._endpoints)

    def unplug(self, name: str) -> None:
        """Disconnect ``name`` from the line (it may connect later: the state is kept by name).

        Bytes it is transmitting are cut off; it neither sends nor receives until ``plug``.
        """
        self._unplugged.add(name)
        endpoint = self._endpoints.get(name)
        if endpoint is not None:
            self._cut(endpoint)

    def plug(self, name: str) -> None:
        self._unplugged.discard(name)

    def is_plugged(self, name: str) -> bool:
        return name not in self._unplugged

    # ------------------------------------------------------------------ faults and stats

    @property
    def faults(self) -> Faults:
        return self._faults

    def set_faults(self, *, ber: float | None = None, drop: float | None = None) -> Faults:
        """Change line faults at run time; arguments left out keep their value."""
        changes: dict[str, float] = {}
        if ber is not None:
            changes["ber"] = ber
        if drop is not None:
            changes["drop"] = drop
        self._faults = dataclasses.replace(self._faults, **changes)
        self._bits_to_error = self._skip(self._faults.ber)
        self._bytes_to_drop = self._skip(self._faults.drop)
        return self._faults

    def noise_burst(self, duration: float) -> int:
        """Put random bytes on the line for ``duration`` seconds from now (they collide with
        whatever else is sent meanwhile).  Returns the number of noise bytes."""
        count = max(1, round(duration / self.byte_time))
        now = self.loop.time()
        data = bytearray(self._rng.randbytes(count))
        self._schedule(Segment(None, now, now + count * self.byte_time, data))
        self._noise_bytes += count
        return count

    def stats(self) -> BusStats:
        return BusStats(
            baud=self.baud,
            bits_per_char=self.bits_per_char,
            line_bytes=self._line_bytes,
            collisions=self._collisions,
            collided_bytes=self._collided_bytes,
            bit_errors=self._bit_errors,
            corrupted_bytes=self._corrupted_bytes,
            dropped_bytes=self._dropped_bytes,
            noise_bytes=self._noise_bytes,
            endpoints=tuple(ep.snapshot() for ep in self._endpoints.values()),
        )

    def handle_control(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Runtime control, one request → one reply (used by the control socket).

        ``{"op": "unplug"|"plug", "name": N}``, ``{"op": "faults", "ber": x, "drop": y}``,
        ``{"op": "noise", "duration": s}``, ``{"op": "stats"}``.
        """
        op = request.get("op")
        try:
            if op == "unplug":
                self.unplug(str(request["name"]))
            elif op == "plug":
                self.plug(str(request["name"]))
            elif op == "faults":
                ber, drop = request.get("ber"), request.get("drop")
                faults = self.set_faults(
                    ber=None if ber is None else float(ber),
                    drop=None if drop is None else float(drop),
                )
                return {"ok": True, "faults": dataclasses.asdict(faults)}
            elif op == "noise":
                return {"ok": True, "noise_bytes": self.noise_burst(float(request["duration"]))}
            elif op == "stats":
                return {"ok": True, "stats": dataclasses.asdict(self.stats())}
            else:
                return {"ok": False, "error": f"unknown op {op!r}"}
        except (KeyError, TypeError, ValueError, VirtualBusError) as exc:
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        return {"ok": True}

    # ------------------------------------------------------------------ internals: endpoints

    def _check_new_name(self, name: str) -> None:
        if not NAME_RE.match(name):
            raise VirtualBusError(f"bad endpoint name {name!r}")
        if name in self._endpoints:
            raise VirtualBusError(f"endpoint {name!r} already exists")

    def _new_socket_endpoint(self) -> SocketEndpoint:
        self._socket_count += 1
        return SocketEndpoint(self, f"sock{self._socket_count}")

    def _register(self, endpoint: Endpoint) -> None:
        self._endpoints[endpoint.name] = endpoint

    def _unregister(self, endpoint: Endpoint) -> None:
        # Bytes it already handed over still go out, as from a UART FIFO: a board that writes
        # and exits is heard.  (Unplugging, by contrast, cuts them off.)
        if self._endpoints.get(endpoint.name) is endpoint:
            del self._endpoints[endpoint.name]

    def _rename(self, endpoint: SocketEndpoint, name: str) -> None:
        old = self._endpoints.get(name)
        if old is endpoint:
            return
        if old is not None:
            if not isinstance(old, SocketEndpoint):
                endpoint._reject(f"name {name!r} belongs to a pty endpoint")
                return
            old.close()  # the same board connecting again: the newest connection wins
        if self._endpoints.get(endpoint.name) is endpoint:
            del self._endpoints[endpoint.name]
        endpoint.name = name
        self._endpoints[name] = endpoint

    def _cut(self, endpoint: Endpoint) -> None:
        """Remove what ``endpoint`` had not finished sending (it was unplugged)."""
        kept = [seg for seg in self._segments if seg.source is not endpoint]
        if len(kept) != len(self._segments):
            self._segments = kept
            endpoint.backlog = 0
            endpoint.tx_free_at = 0.0
            endpoint.resume_reading()

    # ------------------------------------------------------------------ internals: the line

    def _on_tx(self, endpoint: Endpoint, data: bytes, at: float = 0.0) -> None:
        """Bytes written by an endpoint: schedule them on the line behind its earlier bytes,
        not before ``at`` (a timed transmit start, loop time)."""
        if self._loop is None or endpoint.closed or not data:
            return
        if endpoint.listen_only or endpoint.name in self._unplugged:
            endpoint.discarded_bytes += len(data)
            return
        endpoint.tx_bytes += len(data)
        now = self._loop.time()
        if now - LATE_READ_S <= at:
            # A timed start the bus reads late (this process was descheduled) still happens
            # at its time on the line: the board handed the frame over before it (it checks),
            # so the simulator's own lateness must not turn into collisions.
            start = max(at, endpoint.tx_free_at)
        else:
            start = max(now, endpoint.tx_free_at)
        segment = Segment(endpoint, start, start + len(data) * self.byte_time, bytearray(data))
        endpoint.tx_free_at = segment.end
        endpoint.backlog += len(data)
        if endpoint.backlog > self._high_water:
            endpoint.pause_reading()
        self._schedule(segment)

    def _schedule(self, segment: Segment) -> None:
        # Every transmission that overlaps this one is already scheduled or recently finished:
        # a byte is scheduled no earlier than the moment the bus reads it (a timed start up to
        # LATE_READ_S before), and a later one starts later still. Bytes already delivered
        # stay as they were; the newcomer's overlapping bytes are garbled.
        for other in (*self._segments, *self._recent):
            if other.source is not segment.source:
                self._collide(segment, other)
        self._segments.append(segment)
        self._arm_timer()

    def _collide(self, a: Segment, b: Segment) -> None:
        lo, hi = max(a.start, b.start), min(a.end, b.end)
        if hi - lo < 0.05 * self.byte_time:
            return  # back to back (float rounding), not overlapping
        self._collisions += 1
        bt = self.byte_time
        for seg in (a, b):
            first = max(seg.sent, int((lo - seg.start) / bt))
            last = min(len(seg.data), math.ceil((hi - seg.start) / bt - 1e-9))
            if seg.garbled is None:
                seg.garbled = bytearray(len(seg.data))
            for i in range(first, last):
                if not seg.garbled[i]:
                    seg.garbled[i] = 1
                    seg.data[i] ^= self._rng.randrange(1, 256)
                    self._collided_bytes += 1

    def _arm_timer(self) -> None:
        if not self._segments or self._loop is None:
            return
        bt = self.byte_time
        due = min(seg.start + (seg.sent + 1) * bt for seg in self._segments)
        if self._timer is not None:
            if self._timer_when <= due:
                return
            self._timer.cancel()
        self._timer_when = due
        self._timer = self._loop.call_at(due, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_when = math.inf
        self._deliver_due()
        self._arm_timer()

    def _deliver_due(self) -> None:
        """Hand every byte whose stop bit has ended to the receivers, in one batch."""
        now = self.loop.time()
        bt = self.byte_time
        chunks: list[tuple[float, Endpoint | None, bytearray]] = []
        finished: list[Segment] = []
        for seg in self._segments:
            done = min(len(seg.data), int((now - seg.start) / bt + 1e-9))
            if done > seg.sent:
                chunk_start = seg.start + seg.sent * bt
                chunks.append((chunk_start, seg.source, seg.data[seg.sent : done]))
                if seg.source is not None:
                    seg.source.backlog -= done - seg.sent
                    if seg.source.backlog < self._low_water:
                        seg.source.resume_reading()
                seg.sent = done
            if seg.sent >= len(seg.data):
                finished.append(seg)
        if finished:
            self._segments = [seg for seg in self._segments if seg not in finished]
            self._recent.extend(finished)
        if self._recent:
            self._recent = [seg for seg in self._recent if seg.end > now - LATE_READ_S]
        if not chunks:
            return
        chunks.sort(key=lambda chunk: chunk[0])
        outgoing: dict[Endpoint, list[tuple[bytes, float]]] = {}
        receivers = [ep for name, ep in self._endpoints.items() if name not in self._unplugged]
        for chunk_start, source, raw in chunks:
            self._line_bytes += len(raw)
            end = chunk_start + len(raw) * bt  # when the chunk's last byte ended
            data = self._line_faults(raw)
            if not data:
                continue
            for receiver in receivers:
                if receiver is not source or receiver.echo:
                    outgoing.setdefault(receiver, []).append((data, end))
        for receiver, parts in outgoing.items():
            receiver.deliver(parts)

    def _line_faults(self, data: bytearray) -> bytes:
        faults = self._faults
        if faults.drop > 0.0:
            n = len(data)
            skip = self._bytes_to_drop  # index of the next dropped byte in this chunk
            if skip < n:
                kept = bytearray()
                pos = 0
                while skip < n:
                    kept += data[pos:skip]
                    self._dropped_bytes += 1
                    pos = skip + 1
                    skip = pos + self._skip(faults.drop)
                kept += data[pos:]
                data = kept
            self._bytes_to_drop = skip - n
        if faults.ber > 0.0:
            nbits = len(data) * 8
            pos = self._bits_to_error
            last_byte = -1
            while pos < nbits:
                data[pos >> 3] ^= 1 << (pos & 7)
                self._bit_errors += 1
                if pos >> 3 != last_byte:
                    last_byte = pos >> 3
                    self._corrupted_bytes += 1
                pos += 1 + self._skip(faults.ber)
            self._bits_to_error = pos - nbits
        return bytes(data)

    def _skip(self, probability: float) -> int:
        """Number of trials before the next event of ``probability`` (geometric draw)."""
        if probability <= 0.0:
            return sys.maxsize
        if probability >= 1.0:
            return 0
        return int(math.log1p(-self._rng.random()) / math.log1p(-probability))


# ---------------------------------------------------------------------- process entry point


def _parse_pty_spec(spec: str) -> tuple[str, bool, bool]:
    name, *flags = spec.split(",")
    unknown = set(flags) - {"echo", "listen"}
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown pty flag(s) {sorted(unknown)} in {spec!r}")
    return name, "echo" in flags, "listen" in flags


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.virtual.vbus",
        description="Virtual RS-485 bus (see module docstring).",
    )
    parser.add_argument("--baud", type=int, default=BUS_BAUD)
    parser.add_argument("--bits-per-char", type=int, default=10, help="10 for 8N1, 11 for 8E1")
    parser.add_argument(
        "--pty",
        action="append",
        default=[],
        type=_parse_pty_spec,
        metavar="NAME[,echo][,listen]",
        help="add a pseudo-terminal endpoint (repeatable)",
    )
    parser.add_argument("--socket", help="UNIX socket for virtual boards (default: a temp path)")
    parser.add_argument("--control", help="UNIX socket for JSON-lines runtime control")
    parser.add_argument("--ber", type=float, default=0.0, help="bit-error rate")
    parser.add_argument("--drop", type=float, default=0.0, help="byte drop probability")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


async def _amain(args: argparse.Namespace) -> int:
    bus = VirtualBus(
        args.baud,
        bits_per_char=args.bits_per_char,
        socket_path=args.socket,
        faults=Faults(ber=args.ber, drop=args.drop),
        seed=args.seed,
    )
    for name, echo, listen in args.pty:
        bus.add_pty_endpoint(name, echo=echo, listen_only=listen)
    return await serve_until_signal(
        bus,
        args.control,
        lambda: {
            "pid": os.getpid(),
            "baud": bus.baud,
            "socket": bus.socket_path,
            "control": args.control,
            "pty": bus.pty_paths,
        },
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    return asyncio.run(_amain(args))


if __name__ == "__main__":
    raise SystemExit(main())
