"""The sim board's front panel: LEDs, LOAD CURRENT display, buttons, status inputs and
temperature, as the drivers set them (through :class:`SimLedOutput`, :class:`SimDisplayWire`
and the pins; one module, not one each: every module costs the sim board's heap ~0.5 KB) and
as JSON (the state and heartbeat lines, the client
commands; wire format in ``panel_server``, which serves them on a UNIX-domain socket)."""

import asyncio
import json
from array import array

from micropython import const

from firmware.drivers.sim.panel_server import PanelServer
from firmware.drivers.sim.pins import SimButtonPin, SimPin

_LINE_SIZE = const(512)  # a state line of 12 LEDs all white, 12 buttons down: ~420 B (grows)


class SimLedOutput:
    """WS2812 output that shows the frame on the panel (words as in ``ws2812.pack``):
    ``firmware.drivers.ws2812.Ws2812`` writes to it instead of a PIO state machine."""

    def __init__(self, panel):
        self._panel = panel

    def write(self, words):
        self._panel.set_leds(words)


class SimDisplayWire:
    """TM1637 wire that shows the display on the panel: ``firmware.drivers.tm1637.Display``
    writes to it instead of clocking the segments out."""

    def __init__(self, panel):
        self._panel = panel

    def write(self, segments, level, on, text=None):
        self._panel.set_display(segments, level, on, text)
        return True


class SimPanel:
    """The board's front panel; with a ``path``, served there on a UNIX-domain socket
    (:class:`~firmware.drivers.sim.panel_server.PanelServer`)."""

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
        self.dirty = True  # changed since the last state line went out
        # The state line is written into _line without allocating (wire format: see
        # panel_server); the pieces that change rarely are encoded when they change.
        self._line = bytearray(_LINE_SIZE)
        self._n = 0
        self._head = b""  # '{"uid": ..., "group": ..., ' of _head_of and _head_group
        self._head_of = None
        self._head_group = None
        self._display_json = b'""'
        self._input_keys = [json.dumps(name).encode() + b": " for name in self.input_names]
        self._server = PanelServer(self, path, self._line) if path else None

    # -- driver side ------------------------------------------------------------------

    def set_leds(self, words):
        leds = self.leds
        for i in range(min(len(words), len(leds))):
            if leds[i] != words[i]:
                leds[i] = words[i]
                self.dirty = True

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
            self.dirty = True

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
        self.dirty = True

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
        self.dirty = True
        return None

    def handle_line(self, line):
        """Apply one client line (JSON bytes); return the reply dict or None. A line that is
        not understood is counted in :attr:`errors` and answered with ``{"error": ...}``."""
        try:
            return self.handle(json.loads(line))
        except (ValueError, TypeError, KeyError) as exc:
            self.errors += 1
            return {"error": str(exc) or "bad message"}

    # -- socket -----------------------------------------------------------------------

    @property
    def clients(self):
        server = self._server
        return server.clients if server is not None else 0

    def poll(self):
        """Serve the socket once (``PanelServer.poll``); nothing without a socket."""
        server = self._server
        if server is not None:
            server.poll()

    async def run(self, period_ms=10):
        """Serve forever (start as an asyncio task)."""
        while True:
            self.poll()
            await asyncio.sleep_ms(period_ms)

    def close(self):
        server = self._server
        if server is not None:
            self._server = None
            server.close()
