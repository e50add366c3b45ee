"""Unix-port counterparts of the board drivers: the same interfaces, simulated hardware.

Used by ``boards/sim.py`` so the real firmware runs on the MicroPython unix port:

- :class:`SimUart` - the RS-485 UART as a UNIX-domain stream socket to the virtual bus
  (the board connects as a client, as a ``timed`` endpoint: the bus stamps what it delivers
  with the line time its last byte ended, and :meth:`SimUart.write_at` starts a frame at a
  given line time - the sim's counterparts of the RP2040's RX-idle interrupt timestamp and
  timer-started transmit, see ``firmware/drivers/rs485.py``). Non-blocking,
  ``readinto`` returns None when empty like ``machine.UART``; ``txdone()`` stays False for
  the frame's wire time at the configured baud rate, so :class:`~firmware.drivers.rs485.Rs485`
  holds DE exactly as long as on the board. ``select.poll`` / ``asyncio.StreamReader`` wait
  on the socket itself (``ioctl`` hands out its file descriptor).
- :class:`SimPanel` - LEDs, LOAD CURRENT display, buttons, status inputs and temperature,
  observable and drivable from other processes through a UNIX-domain socket on which the
  board listens, speaking JSON lines (wire format below).
- :class:`SimAdc` - the acquisition interface of :class:`~firmware.drivers.mcp3208.Mcp3208Stream`
  (``start``/``stop``/``poll``/``block``/``read_channel``) fed by a generator object with
  ``fill(buf, start, count)`` (``firmware.loadsim.LoadSim``) at the real sample rate.
- :class:`SimWatchdog` (ends the process when not fed in time, as a WDT resets the board),
  :class:`SimPin`, :func:`ensure_dir` (the "flash" config directory).

Panel wire format (UTF-8 JSON, one object per line, ``\\n`` terminated)
-----------------------------------------------------------------------
Board -> client, on connect and whenever something changed (at most every
``min_interval_ms``), the whole panel::

    {"uid": "sim-A", "group": "A", "leds": [[r, g, b], ... 12], "display": " 7.3",
     "segments": [0, 0, 135, 79], "brightness": 4, "display_on": true,
     "pressed": [3], "inputs": {"breaker": 1, "alarm": 0, "estop": 0, "neutral": 0},
     "temperature": 25.0}

(``leds`` are the colours on the wire after brightness scaling; ``inputs`` / ``temperature``
only on boards that have them). Every ``heartbeat_ms``: ``{"hb": <ticks_ms>, "wdt": <feeds>}``
(a supervisor that stops seeing ``wdt`` advance plays the watchdog and restarts the board).

Client -> board::

    {"press": 3}                    click monitor button 3 (1-based, as printed), held 120 ms
    {"press": 3, "hold_ms": 1500}   long press
    {"down": 3} / {"up": 3}         hold / release explicitly
    {"input": "estop", "value": 1}  status input active (1) / inactive (0)
    {"temperature": 41.5}           internal temperature, degrees C
    {"load": {...}}                 handed unchanged to the board's load handler (``on_load``)
    {"get": "state"}                send the state line now

A line that is not understood is answered with ``{"error": "<reason>"}``.
"""

import asyncio
import errno
import io
import json
import os
import select
import socket
import struct
from array import array
from time import sleep_ms, sleep_us, ticks_add, ticks_diff, ticks_ms, ticks_us

from micropython import const

_MP_STREAM_POLL = const(3)
_MP_STREAM_GET_FILENO = const(10)
_POLLIN = const(0x0001)
_POLLOUT = const(0x0004)
_MIDSCALE = const(2048)
_MAX_CATCH_UP = const(8)  # blocks the sim ADC generates in one go before it resyncs
_MAX_BACKLOG = const(65536)
_LINE_SIZE = const(512)  # a state line of 12 LEDs all white, 12 buttons down: ~420 B (grows)
_RECORD_HEAD = const(10)  # timed bus records: u16 length, u64 time in µs
# ticks_us() on the unix port is CLOCK_MONOTONIC µs modulo the ticks period: 2**62 on a 64-bit
# port (the same number in practice), 2**30 on a 32-bit port (it wraps every 17.9 min).
_TICKS_MASK = ticks_add(0, -1)  # pyright: ignore[reportArgumentType]  # period - 1
_TICKS_MASK_8 = _TICKS_MASK >> 8
_AF_UNIX = socket.AF_UNIX  # pyright: ignore[reportAttributeAccessIssue]
_SOCK_STREAM = socket.SOCK_STREAM  # pyright: ignore[reportAttributeAccessIssue]


class SimBusError(Exception):
    """The virtual bus socket is unreachable or was closed."""


def unix_address(path):
    """``struct sockaddr_un`` for ``path`` (the unix port's sockets take raw addresses)."""
    return struct.pack("H", _AF_UNIX) + path.encode() + b"\x00"


def ensure_dir(path):
    """Create ``path`` and its parents if missing; return it (the sim board's "flash")."""
    parts = path.split("/")
    current = "/" if path.startswith("/") else ""
    for part in parts:
        if not part:
            continue
        current = current + part if current in ("", "/") else current + "/" + part
        try:
            os.mkdir(current)
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                raise
    return path


class SimPin:
    """A settable pin: ``value()`` / ``value(v)``, like ``machine.Pin`` for drivers."""

    def __init__(self, value=0):
        self._value = value
        self.changes = 0

    def value(self, v=None):
        if v is None:
            return self._value
        v = 1 if v else 0
        if v != self._value:
            self._value = v
            self.changes += 1
        return None

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class SimButtonPin:
    """An active-low button contact pressed from the panel (held down until a deadline)."""

    def __init__(self):
        self.down = False
        self._release_ms = 0
        self._timed = False

    def press(self, hold_ms):
        self._release_ms = ticks_add(ticks_ms(), hold_ms)
        self._timed = True

    def value(self, v=None):
        if self.down:
            return 0
        if self._timed:
            if ticks_diff(self._release_ms, ticks_ms()) > 0:
                return 0
            self._timed = False
        return 1


class SimUart(io.IOBase):
    """The RS-485 UART as a client of the virtual bus's UNIX-domain stream socket.

    ``path`` None gives a detached UART (writes are counted and dropped, nothing arrives).
    ``name`` is announced to the bus (``@vbus <name> timed``) so the bus can unplug this
    board by name, as a person pulls one board's connector. A named UART is a timed
    endpoint (records ``u16 length, u64 time_us, data`` both ways, see ``tools/vbus.py``):
    :attr:`rx_end_us` is the ``ticks_us`` at which the last byte :meth:`readinto` returned
    ended on the line, and :meth:`write_at` starts a frame at a chosen ``ticks_us``.

    The records carry CLOCK_MONOTONIC µs, ``ticks_us`` is the same clock modulo the ticks
    period (which wraps every 17.9 min on a 32-bit port): a received time becomes ticks by
    its low bits (no big-int arithmetic); a ticks time to send becomes monotonic µs from the
    newest received record, kept as an anchor (its u64 time and its ticks), as
    ``anchor + ticks_diff(at, anchor ticks)``. Before any record arrived there is no anchor
    and a timed write starts at once.
    """

    def __init__(
        self, path=None, *, baud=115200, bits_per_char=10, connect_timeout_ms=10000, name=None
    ):
        self.path = path
        self.name = name
        self.baud = baud
        self._bits = bits_per_char
        self._char_ns = (bits_per_char * 1_000_000_000 + baud // 2) // baud
        self.timed = bool(name)
        self._sock = None
        self._poller = select.poll()
        self._tx_end_us = ticks_us()
        self.tx_bytes = 0
        self.rx_bytes = 0
        self.rx_end_us = ticks_us()
        # Timed records: what the socket gave and the demultiplexer has not handed out yet.
        self._raw = bytearray(1024)
        self._raw_pos = 0
        self._raw_len = 0
        self._head = bytearray(_RECORD_HEAD)
        self._head_n = 0
        self._head_tx = bytearray(_RECORD_HEAD)
        self._rec_left = 0  # data bytes of the current record not yet handed out
        self._rec_end_us = 0  # ticks_us of the current record's end
        self._anchor = bytearray(8)  # u64 line time of the newest record received, LE
        self._anchor_ticks = 0  # the same time in ticks_us
        self._anchored = False
        if path:
            self._connect(path, connect_timeout_ms)

    def _connect(self, path, timeout_ms):
        start = ticks_ms()
        address = unix_address(path)
        while True:
            sock = socket.socket(_AF_UNIX, _SOCK_STREAM)
            try:
                sock.connect(address)
                break
            except OSError as exc:
                sock.close()
                if ticks_diff(ticks_ms(), start) >= timeout_ms:
                    raise SimBusError("virtual bus not reachable at " + path) from exc
                sleep_ms(50)
        if self.name:
            sock.write(b"@vbus " + self.name.encode() + (b" timed\n" if self.timed else b"\n"))
        sock.setblocking(False)
        self._sock = sock
        self._poller.register(sock, select.POLLIN)

    def fileno(self):
        return self._sock.fileno() if self._sock is not None else -1

    def any(self):
        """1 when bytes are waiting, else 0 (allowed by ``machine.UART.any()``'s contract)."""
        if self._sock is None:
            return 0
        if self._raw_pos < self._raw_len and (self._rec_left or not self.timed):
            return 1
        for _, event in self._poller.ipoll(0):
            if event & (select.POLLIN | select.POLLHUP | select.POLLERR):
                return 1
        return 0

    def _sock_readinto(self, buf):
        sock = self._sock
        if sock is None:
            return None
        try:
            n = sock.readinto(buf)
        except OSError as exc:
            if exc.errno == errno.EAGAIN:
                return None
            raise SimBusError("virtual bus read failed") from exc
        if n is None:
            return None
        if n == 0:
            self.close()
            raise SimBusError("virtual bus closed the connection")
        return n

    def readinto(self, buf, nbytes=None):
        """Read what is waiting (up to ``nbytes``/``len(buf)``); None if nothing.

        Timed: at most one record (bytes that followed each other on the line), so
        :attr:`rx_end_us` is the end of the last byte returned.
        """
        if self._sock is None:
            return None
        limit = len(buf) if nbytes is None or nbytes > len(buf) else nbytes
        if not self.timed:
            if limit < len(buf):
                buf = memoryview(buf)[:limit]
            n = self._sock_readinto(buf)
            if n:
                self.rx_bytes += n
                self.rx_end_us = ticks_us()
            return n
        got = 0
        raw = self._raw
        head = self._head
        while got < limit:
            if self._raw_pos >= self._raw_len:
                if self._sock is None:
                    break
                n = self._sock_readinto(raw)
                if not n:
                    break
                self._raw_pos = 0
                self._raw_len = n
            pos = self._raw_pos
            if self._rec_left == 0:
                # Record head: u16 length, u64 line time of the record's last byte (µs).
                head[self._head_n] = raw[pos]
                self._raw_pos = pos + 1
                self._head_n += 1
                if self._head_n == _RECORD_HEAD:
                    self._head_n = 0
                    self._rec_left = head[0] | head[1] << 8
                    # ticks = the time's low bits (masked before each shift: no big int)
                    t = 0
                    anchor = self._anchor
                    for k in range(9, 1, -1):
                        t = (t & _TICKS_MASK_8) << 8 | head[k]
                        anchor[k - 2] = head[k]
                    self._rec_end_us = t
                    self._anchor_ticks = t
                    self._anchored = True
                continue
            take = self._raw_len - pos
            if take > self._rec_left:
                take = self._rec_left
            if take > limit - got:
                take = limit - got
            for k in range(take):
                buf[got + k] = raw[pos + k]
            got += take
            self._raw_pos = pos + take
            self._rec_left -= take
            late_us = (self._rec_left * self._char_ns) // 1000
            self.rx_end_us = ticks_add(self._rec_end_us, -late_us)  # pyright: ignore[reportArgumentType]
            if self._rec_left == 0:
                break  # one run of back-to-back bytes per read: rx_end_us is exact for it
        if not got:
            return None
        self.rx_bytes += got
        return got

    def read(self, nbytes=-1):
        buf = bytearray(nbytes if nbytes > 0 else 512)
        n = self.readinto(buf)
        if not n:
            return None
        return bytes(buf[:n])

    def write(self, buf):
        """Queue ``buf`` for the wire at once; the UART counts as busy for its wire time."""
        return self.write_at(buf, 0)

    def write_at(self, buf, at_us):
        """Queue ``buf`` to start on the line at ``ticks_us`` ``at_us`` (0: at once, behind
        what is still going out)."""
        n = len(buf)
        now = ticks_us()
        start = self._tx_end_us if ticks_diff(self._tx_end_us, now) > 0 else now
        if at_us and ticks_diff(at_us, start) > 0:
            start = at_us
        self._tx_end_us = ticks_add(start, (n * self._char_ns + 999) // 1000)
        self.tx_bytes += n
        sock = self._sock
        if sock is None:
            return n
        if self.timed:
            head = self._head_tx
            head[0] = n & 0xFF
            head[1] = n >> 8
            t = self.line_time_us(at_us) if at_us else 0
            for k in range(2, _RECORD_HEAD):
                head[k] = t & 0xFF
                t >>= 8
            self._send_all(head)
        self._send_all(buf)
        return n

    def line_time_us(self, at_us):
        """The bus's line time (CLOCK_MONOTONIC µs) of ``ticks_us`` ``at_us``, anchored on
        the newest received record (valid within half a ticks period of it: 8.9 min on a
        32-bit port); 0 (at once) without one."""
        if not self._anchored:
            return 0
        t = int.from_bytes(self._anchor, "little") + ticks_diff(at_us, self._anchor_ticks)
        return t if t > 0 else 0

    def _send_all(self, buf):
        sock = self._sock
        if sock is None:
            return
        n = len(buf)
        mv = memoryview(buf)
        sent = 0
        deadline = ticks_add(ticks_ms(), 1000)
        while sent < n:
            try:
                k = sock.write(mv[sent:])
            except OSError as exc:
                if exc.errno != errno.EAGAIN:
                    raise SimBusError("virtual bus write failed") from exc
                k = None
            if k:
                sent += k
            elif ticks_diff(deadline, ticks_ms()) <= 0:
                raise SimBusError("virtual bus not reading")
            else:
                sleep_ms(1)

    def txdone(self):
        """True once the last written character would have left the shift register."""
        return ticks_diff(ticks_us(), self._tx_end_us) >= 0

    def flush(self):
        """Block until :meth:`txdone`."""
        while True:
            left = ticks_diff(self._tx_end_us, ticks_us())
            if left <= 0:
                return
            sleep_us(left if left < 1000 else 1000)

    def ioctl(self, req, arg):
        if req == _MP_STREAM_GET_FILENO:
            return self.fileno()
        if req == _MP_STREAM_POLL:
            ready = 0
            if arg & _POLLIN and self.any():
                ready |= _POLLIN
            if arg & _POLLOUT:
                ready |= _POLLOUT
            return ready
        return -1

    def close(self):
        sock = self._sock
        if sock is not None:
            self._sock = None
            try:
                self._poller.unregister(sock)
            except (OSError, KeyError):
                pass
            sock.close()


class SimLedOutput:
    """WS2812 output that shows the frame on the panel (words as in ``ws2812.pack``)."""

    def __init__(self, panel):
        self._panel = panel

    def write(self, words):
        self._panel.set_leds(words)


class SimDisplayWire:
    """TM1637 wire that shows the display on the panel."""

    def __init__(self, panel):
        self._panel = panel

    def write(self, segments, level, on, text=None):
        self._panel.set_display(segments, level, on, text)
        return True


class _Client:
    def __init__(self, sock):
        self.sock = sock
        self.inbuf = bytearray()
        self.outbuf = bytearray()


class SimPanel:
    """The board's front panel, served on a UNIX-domain socket (see module doc)."""

    def __init__(
        self,
        path=None,
        *,
        uid="",
        group="",
        n_leds=12,
        n_buttons=12,
        inputs=(),
        hold_ms=120,
        min_interval_ms=20,
        heartbeat_ms=1000,
    ):
        self.path = path
        self.uid = uid
        self.group = group
        self.hold_ms = hold_ms
        self.min_interval_ms = min_interval_ms
        self.heartbeat_ms = heartbeat_ms
        self.leds = array("I", bytes(4 * n_leds))
        self.segments = bytearray(4)
        self.display = ""
        self.brightness = 0
        self.display_on = True
        self.button_pins = [SimButtonPin() for _ in range(n_buttons)]
        self.input_names = tuple(inputs)
        # Status contacts are active low, like the opto-coupler inputs on the board.
        self.input_pins = [SimPin(1) for _ in self.input_names]
        self.temperature = None  # a SimTemperature on boards that have the sensor
        self.on_load = None  # callable(load_message) wired by the application
        self.wdt = None  # a SimWatchdog, reported in the heartbeat
        self.messages = 0
        self.errors = 0
        self._clients = []
        self._server = None
        self._server_poll = select.poll()
        self._dirty = True
        self._sent_ms = ticks_ms()
        self._hb_ms = ticks_ms()
        self._chunk = bytearray(256)  # client commands are short JSON lines
        # The state line is written into _line without allocating (module doc: wire format);
        # the pieces that change rarely are encoded when they change.
        self._line = bytearray(_LINE_SIZE)
        self._n = 0
        self._head = b""  # '{"uid": ..., "group": ..., ' of _head_of and _head_group
        self._head_of = None
        self._head_group = None
        self._display_json = b'""'
        self._input_keys = [json.dumps(name).encode() + b": " for name in self.input_names]
        if path:
            self._listen(path)

    # -- driver side ------------------------------------------------------------------

    def set_leds(self, words):
        leds = self.leds
        for i in range(min(len(words), len(leds))):
            if leds[i] != words[i]:
                leds[i] = words[i]
                self._dirty = True

    def set_display(self, segments, level, on, text):
        if text is None:
            text = ""
        changed = text != self.display or level != self.brightness or on != self.display_on
        for i in range(4):
            if self.segments[i] != segments[i]:
                self.segments[i] = segments[i]
                changed = True
        if text != self.display:
            self._display_json = json.dumps(text).encode()
        self.display = text
        self.brightness = level
        self.display_on = on
        if changed:
            self._dirty = True

    def led_output(self):
        return SimLedOutput(self)

    def display_wire(self):
        return SimDisplayWire(self)

    # -- state ------------------------------------------------------------------------

    def state(self):
        """The panel as a dict (what the state line carries)."""
        leds = []
        for word in self.leds:
            leds.append([(word >> 8) & 0xFF, (word >> 16) & 0xFF, word & 0xFF])
        pressed = []
        for i in range(len(self.button_pins)):
            if self.button_pins[i].value() == 0:
                pressed.append(i + 1)
        state = {
            "uid": self.uid,
            "group": self.group,
            "leds": leds,
            "display": self.display,
            "segments": list(self.segments),
            "brightness": self.brightness,
            "display_on": self.display_on,
            "pressed": pressed,
        }
        if self.input_names:
            inputs = {}
            for i in range(len(self.input_names)):
                inputs[self.input_names[i]] = 1 if self.input_pins[i].value() == 0 else 0
            state["inputs"] = inputs
        if self.temperature is not None:
            state["temperature"] = self.temperature.read_c10() / 10
        return state

    def _put(self, piece):
        n = self._n
        end = n + len(piece)
        self._line[n:end] = piece
        self._n = end

    def _put_int(self, v):
        line = self._line
        n = self._n
        if v < 0:
            line[n] = 0x2D  # "-"
            n += 1
            v = -v
        start = n
        while True:
            line[n] = 0x30 + v % 10
            n += 1
            v //= 10
            if not v:
                break
        i = start
        j = n - 1
        while i < j:  # digits were written backwards
            line[i], line[j] = line[j], line[i]
            i += 1
            j -= 1
        self._n = n

    def state_line(self):
        """Write the state line (``state()`` as JSON, newline-terminated) into the line
        buffer without allocating; return its length."""
        if self._head_of is not self.uid or self._head_group is not self.group:
            self._head_of = self.uid
            self._head_group = self.group
            self._head = b'{"uid": %s, "group": %s, ' % (
                json.dumps(self.uid).encode(),
                json.dumps(self.group).encode(),
            )
        self._n = 0
        self._put(self._head)
        self._put(b'"leds": [')
        leds = self.leds
        for i in range(len(leds)):
            word = leds[i]
            self._put(b", [" if i else b"[")
            self._put_int((word >> 8) & 0xFF)
            self._put(b", ")
            self._put_int((word >> 16) & 0xFF)
            self._put(b", ")
            self._put_int(word & 0xFF)
            self._put(b"]")
        self._put(b'], "display": ')
        self._put(self._display_json)
        self._put(b', "segments": [')
        for i in range(4):
            if i:
                self._put(b", ")
            self._put_int(self.segments[i])
        self._put(b'], "brightness": ')
        self._put_int(self.brightness)
        self._put(b', "display_on": true' if self.display_on else b', "display_on": false')
        self._put(b', "pressed": [')
        first = True
        for i in range(len(self.button_pins)):
            if self.button_pins[i].value() == 0:
                if not first:
                    self._put(b", ")
                self._put_int(i + 1)
                first = False
        self._put(b"]")
        if self.input_names:
            self._put(b', "inputs": {')
            for i in range(len(self.input_names)):
                if i:
                    self._put(b", ")
                self._put(self._input_keys[i])
                self._put(b"1" if self.input_pins[i].value() == 0 else b"0")
            self._put(b"}")
        if self.temperature is not None:
            c10 = self.temperature.read_c10()
            self._put(b', "temperature": ')
            if c10 < 0:
                self._put(b"-")
                c10 = -c10
            self._put_int(c10 // 10)
            self._put(b".")
            self._put_int(c10 % 10)
        self._put(b"}\n")
        return self._n

    def heartbeat_line(self, now):
        """``{"hb": <ticks_ms>, "wdt": <feeds>}`` into the line buffer; return its length."""
        self._n = 0
        self._put(b'{"hb": ')
        self._put_int(now)
        self._put(b', "wdt": ')
        wdt = self.wdt
        self._put_int(wdt.feeds if wdt is not None else 0)
        self._put(b"}\n")
        return self._n

    def mark_dirty(self):
        self._dirty = True

    # -- commands ---------------------------------------------------------------------

    def _button(self, number):
        if not isinstance(number, int) or not 1 <= number <= len(self.button_pins):
            raise ValueError("button must be 1..%d" % len(self.button_pins))
        return self.button_pins[number - 1]

    def handle(self, msg):
        """Apply one client message (a dict); return a reply dict or None."""
        if not isinstance(msg, dict):
            raise ValueError("message must be a JSON object")
        self.messages += 1
        if "press" in msg:
            hold = msg.get("hold_ms", self.hold_ms)
            if not isinstance(hold, int) or hold <= 0:
                raise ValueError("hold_ms must be a positive integer")
            self._button(msg["press"]).press(hold)
        elif "down" in msg:
            self._button(msg["down"]).down = True
        elif "up" in msg:
            pin = self._button(msg["up"])
            pin.down = False
            pin.press(0)
        elif "input" in msg:
            name = msg["input"]
            if name not in self.input_names:
                raise ValueError("unknown input %r" % (name,))
            self.input_pins[self.input_names.index(name)].value(0 if msg.get("value") else 1)
        elif "temperature" in msg:
            if self.temperature is None:
                raise ValueError("this board has no temperature sensor")
            self.temperature.c10 = round(float(msg["temperature"]) * 10)
        elif "load" in msg:
            handler = self.on_load
            if handler is None:
                raise ValueError("no load handler on this board")
            handler(msg["load"])
        elif msg.get("get") == "state":
            return self.state()
        else:
            raise ValueError("unknown message")
        self._dirty = True
        return None

    # -- socket server ----------------------------------------------------------------

    def _listen(self, path):
        try:
            os.remove(path)
        except OSError:
            pass
        server = socket.socket(_AF_UNIX, _SOCK_STREAM)
        server.bind(unix_address(path))
        server.listen(4)
        server.setblocking(False)
        self._server = server
        self._server_poll.register(server, select.POLLIN)

    @property
    def clients(self):
        return len(self._clients)

    def _send(self, client, obj):
        client.outbuf.extend(json.dumps(obj).encode())
        client.outbuf.extend(b"\n")

    def _write(self, client, n):
        # The first n bytes of the line buffer to one client: straight to its socket when
        # nothing is queued (no allocation), the rest queued for _flush
        line = self._line
        if not client.outbuf:
            try:
                sent = client.sock.write(line, 0, n) or 0
            except OSError:
                self._drop(client)
                return
            if sent == n:
                return
        else:
            sent = 0
        if len(client.outbuf) > _MAX_BACKLOG:
            self._drop(client)
            return
        client.outbuf.extend(memoryview(line)[sent:n])

    def _broadcast_line(self, n):
        clients = self._clients
        i = len(clients)
        while i:  # backwards: a client dropped on the way does not shift the rest
            i -= 1
            self._write(clients[i], n)

    def _drop(self, client):
        if client in self._clients:
            self._clients.remove(client)
        try:
            client.sock.close()
        except OSError:
            pass

    def _accept(self):
        server = self._server
        if server is None:
            return
        ready = False
        for _ in self._server_poll.ipoll(0):
            ready = True  # a client is waiting: accept() will not raise EAGAIN
        if not ready:
            return
        try:
            sock, _ = server.accept()
        except OSError as exc:
            if exc.errno == errno.EAGAIN:
                return
            raise
        sock.setblocking(False)
        client = _Client(sock)
        self._clients.append(client)
        self._send(client, self.state())

    def _receive(self, client):
        chunk = self._chunk
        while True:
            try:
                n = client.sock.readinto(chunk)
            except OSError as exc:
                if exc.errno == errno.EAGAIN:
                    n = None
                else:
                    self._drop(client)
                    return
            if n is None:
                break
            if n == 0:
                self._drop(client)
                return
            client.inbuf.extend(memoryview(chunk)[:n])
        while client.inbuf:
            end = client.inbuf.find(b"\n")
            if end < 0:
                if len(client.inbuf) > _MAX_BACKLOG:
                    self._drop(client)
                return
            line = bytes(client.inbuf[:end])
            client.inbuf = client.inbuf[end + 1 :]
            if not line.strip():
                continue
            try:
                reply = self.handle(json.loads(line))
            except (ValueError, TypeError, KeyError) as exc:
                self.errors += 1
                reply = {"error": str(exc) or "bad message"}
            if reply is not None:
                self._send(client, reply)

    def _flush(self, client):
        while client.outbuf:
            try:
                n = client.sock.write(client.outbuf)
            except OSError as exc:
                if exc.errno == errno.EAGAIN:
                    n = None
                else:
                    self._drop(client)
                    return
            if not n:
                if len(client.outbuf) > _MAX_BACKLOG:
                    self._drop(client)
                return
            client.outbuf = client.outbuf[n:]

    def poll(self):
        """Serve the socket once: accept, read commands, push state / heartbeat. Non-blocking;
        allocates nothing while no client sends and no output is queued."""
        if self._server is None:
            return
        self._accept()
        clients = self._clients
        i = len(clients)
        while i:
            i -= 1
            self._receive(clients[i])
        now = ticks_ms()
        if self._dirty and ticks_diff(now, self._sent_ms) >= self.min_interval_ms:
            self._dirty = False
            self._sent_ms = now
            if clients:
                self._broadcast_line(self.state_line())
        if ticks_diff(now, self._hb_ms) >= self.heartbeat_ms:
            self._hb_ms = now
            if clients:
                self._broadcast_line(self.heartbeat_line(now))
        i = len(clients)
        while i:
            i -= 1
            if i < len(clients) and clients[i].outbuf:
                self._flush(clients[i])

    async def run(self, period_ms=10):
        """Serve forever (start as an asyncio task)."""
        while True:
            self.poll()
            await asyncio.sleep_ms(period_ms)

    def close(self):
        for client in list(self._clients):
            self._drop(client)
        if self._server is not None:
            self._server.close()
            self._server = None
            try:
                os.remove(self.path)
            except OSError:
                pass


class SimAdc:
    """Simulated acquisition with the :class:`~firmware.drivers.mcp3208.Mcp3208Stream` API.

    ``generator``: object with ``fill(buf, start, count)`` writing ``count`` interleaved
    instants of ``channels`` values into ``buf`` (an ``array('H')``) from instant ``start``
    on (``firmware.loadsim.LoadSim``); None fills mid-scale (no current). Blocks become due
    by the wall clock, one instant every ``sample_period_ns``.
    """

    def __init__(
        self, generator=None, *, samples_per_block=64, sample_period_ns=312_500, channels=13
    ):
        self.generator = generator
        self.samples_per_block = samples_per_block
        self.sample_period_ns = sample_period_ns
        self.sample_rate = (1_000_000_000 + sample_period_ns // 2) // sample_period_ns
        self.channels = channels
        n = samples_per_block * channels
        self._n = n
        self._halves = (array("H", bytes(2 * n)), array("H", bytes(2 * n)))
        self._period_num = samples_per_block * sample_period_ns  # block period = num / 1000 us
        self._frac = 0
        self._next_us = ticks_us()
        self._fill = 0  # half the next block goes into
        self._ready = -1  # half holding the newest undelivered block
        self._last = -1  # half holding the newest produced block
        self.flag = asyncio.ThreadSafeFlag()
        self.blocks = 0  # blocks produced
        self.delivered = 0
        self.overruns = 0
        self.running = False

    def start(self):
        if self.running:
            return
        self.running = True
        self._frac = 0
        self._next_us = ticks_us()
        self._advance()

    def stop(self):
        self.running = False

    def _advance(self):
        whole, self._frac = divmod(self._frac + self._period_num, 1000)
        self._next_us = ticks_add(self._next_us, whole)

    def _produce(self):
        buf = self._halves[self._fill]
        generator = self.generator
        if generator is None:
            for i in range(self._n):
                buf[i] = _MIDSCALE
        else:
            generator.fill(buf, 0, self.samples_per_block)
        if self._ready >= 0:
            self.overruns += 1  # the previous block was never taken
        self._ready = self._fill
        self._last = self._fill
        self._fill ^= 1
        self.blocks += 1

    def _due(self):
        made = 0
        while ticks_diff(ticks_us(), self._next_us) >= 0:
            if made >= _MAX_CATCH_UP:
                # Far behind (process stopped?): skip ahead instead of generating backlog.
                self._next_us = ticks_us()
                self._frac = 0
                self._advance()
                break
            self._produce()
            self._advance()
            made += 1
        return made

    def poll(self):
        """The newest completed block (``array('H')``) if one is waiting, else None."""
        if not self.running:
            return None
        self._due()
        ready = self._ready
        if ready < 0:
            return None
        self._ready = -1
        self.delivered += 1
        return self._halves[ready]

    async def block(self):
        """Wait for and return the next block (due by the wall clock)."""
        if not self.running:
            raise ValueError("acquisition not started")
        while True:
            buf = self.poll()
            if buf is not None:
                return buf
            wait_us = ticks_diff(self._next_us, ticks_us())
            await asyncio.sleep_ms(wait_us // 1000 + 1 if wait_us > 0 else 0)

    def read_channel(self, index):
        """Latest value of logical channel ``index`` (0..channels-1)."""
        if not 0 <= index < self.channels:
            raise ValueError("channel out of range")
        if self._last < 0:
            return _MIDSCALE
        return self._halves[self._last][self._n - self.channels + index]


class SimWatchdog:
    """Watchdog stand-in that resets the sim board as the RP2040's ``machine.WDT`` would.

    The WDT is hardware: it keeps counting whatever the firmware's event loop does, so
    :meth:`start` launches a thread that checks every 50 ms. If :meth:`feed` was not called
    within ``timeout_ms`` it prints ``smartPDU: WATCHDOG RESET ...`` and ends the process with
    SIGKILL (after a reset nothing of the firmware runs: no ``finally``, no cleanup). A
    supervisor (``tools.usbboard``) then starts the board again as a power-on would. Tests read
    the message and the exit status (-9). :meth:`hand_over_to_repl` (Ctrl-C) stops the check,
    as the board's timer then feeds. ``reset=False`` only records expiry (:meth:`expired`).
    ``marker``: a file written before the reset, so the next start's :meth:`caused_reset`
    knows (the RP2040 keeps the reset cause in a register).
    """

    CHECK_MS = 50

    def __init__(self, reset=True, marker=None):
        self.marker = marker
        self.timeout_ms = 0
        self.feeds = 0
        self.started = False
        self.reset = reset
        self._stopped = False
        self._fed_ms = ticks_ms()

    def start(self, timeout_ms=5000):
        if self.started:
            return
        self.started = True
        self.timeout_ms = timeout_ms
        self._fed_ms = ticks_ms()
        if self.reset:
            import _thread

            _thread.start_new_thread(self._watch, ())

    def feed(self):
        self._fed_ms = ticks_ms()
        self.feeds += 1

    def caused_reset(self):
        """True (once) if the previous run of this board ended in a watchdog reset."""
        if self.marker is None:
            return False
        try:
            os.remove(self.marker)
        except OSError:
            return False
        return True

    def hand_over_to_repl(self, period_ms=1000):
        self._stopped = True  # the engineer at the REPL now answers for the board

    def expired(self):
        """True if started and not fed within the timeout (what a real WDT would reset on)."""
        return (
            self.started
            and not self._stopped
            and ticks_diff(ticks_ms(), self._fed_ms) > self.timeout_ms
        )

    def _watch(self):
        while not self._stopped:
            sleep_ms(self.CHECK_MS)
            if self.expired():
                print(
                    "smartPDU: WATCHDOG RESET: not fed for %d ms (timeout %d ms, %d feeds)"
                    % (ticks_diff(ticks_ms(), self._fed_ms), self.timeout_ms, self.feeds)
                )
                if self.marker is not None:
                    try:
                        with open(self.marker, "w") as f:
                            f.write("watchdog\n")
                    except OSError:
                        pass
                # The unix port has no os.kill/_exit; the shell's parent is this process.
                os.system("kill -KILL $PPID")
                return
