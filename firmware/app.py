"""The group-board application (and the mains status node): one asyncio program.

Tasks, each restarted if it raises (the error is logged, counted and flagged in TELEMETRY):

- ``sample``  ADC blocks -> RMS engine -> overload classifier -> ``Measurements``
- ``bus``     RS-485 bytes -> ``BusSlave``; scheduled answers go out at their slot time
- ``panel``   buttons -> selection; LEDs and LOAD CURRENT display from the measurements
- ``console`` debug commands typed on the USB serial console (``firmware.debug``, imported
  at the first command: a board nobody talks to does not keep the interpreter in RAM)
- ``watchdog`` feeds the hardware watchdog only while every other task is alive (a stalled
  task is reported once on the console; the WDT then resets the board)

``firmware.debug``'s ``fault`` command makes a task crash, stall or spin, to see the
supervisor and the watchdog at work on a running board (``tests/firmware/test_supervisor.py``).

``main(board_name)`` is what ``/main.py`` on a board calls; the sim board runs the same code
on the MicroPython unix port.
"""

import asyncio
import json
import sys
import time
from array import array
from binascii import hexlify, unhexlify

from firmware.config import ConfigStore
from firmware.measurements import Measurements
from firmware.slave import FW_VERSION, BusSlave
from protocol import consts as C
from protocol.errors import FieldError
from protocol.layouts import pack_status

_WDT_TIMEOUT_MS = 5000
_TASK_STALL_MS = 2000  # a task that has not checked in for this long is hung
_RESTART_PAUSE_MS = 200


class TaskHealth:
    """Per-task heartbeats and crash counts, read by the watchdog task and the console."""

    def __init__(self, names, watched: int) -> None:
        self.names = names
        self.watched = watched  # the first ``watched`` tasks must beat (the console waits)
        self.beats: list = [0] * len(names)
        self.crashes = [0] * len(names)
        self.last_error = ""
        # Longest stretch (µs) each task held the core between two awaits, since the console
        # last read it (``errors``): who keeps the others waiting.
        self.run_us = array("i", bytes(4 * len(names)))

    def beat(self, index: int) -> None:
        self.beats[index] = time.ticks_ms()

    def ran(self, index: int, since) -> None:
        """Task ``index`` yields now after holding the core since ``ticks_us`` ``since``."""
        d = time.ticks_diff(time.ticks_us(), since)
        if d > self.run_us[index]:
            self.run_us[index] = d

    def stalled(self, now) -> int:
        """Index of a task that has not beaten for too long, or -1."""
        for i in range(self.watched):
            if time.ticks_diff(now, self.beats[i]) > _TASK_STALL_MS:
                return i
        return -1


def uid_bytes(uid: str) -> bytes:
    """8-byte unique id from the board's id string (flash id hex on a Pico; a name on sim)."""
    try:
        raw = unhexlify(uid)
        if len(raw) == C.UID_LEN:
            return raw
    except ValueError:
        pass
    import hashlib

    return hashlib.sha256(uid.encode()).digest()[: C.UID_LEN]


def _curve_rows(curve):
    # The config keeps the manual's "100 % hold" row; the classifier wants trip rows only.
    return tuple((p, lo, hi) for p, lo, hi in curve if hi > 0)


def info_line(board, slave) -> str:
    cfg = slave.config
    return "smartPDU-INFO " + json.dumps(
        {
            "fw": "%d.%d.%d" % FW_VERSION,
            "board": board.name,
            "role": board.role,
            "group": cfg.group,
            "address": cfg.address,
            "uid": hexlify(slave.uid).decode(),
            "digest": cfg.digest(),
            "config": "defaults" if slave.store.fallback else "ok",
        }
    )


class GroupBoardApp:
    """A group board: 12 supervised outputs."""

    TASKS = ("sample", "bus", "panel", "console")

    def __init__(self, board) -> None:
        from firmware.overload import OverloadClassifier
        from firmware.panel import FrontPanel
        from firmware.rms import RmsEngine

        self.board = board
        self.store = ConfigStore(board.config_dir)
        cfg = self.store.load()
        if not cfg.group and board.group:
            # Sim boards get their group from the command line; a wrong one is reported and
            # ignored (it would make every INFO answer invalid).
            try:
                cfg.set(C.K_GROUP, 0, board.group)
            except FieldError:
                print("smartPDU: ignoring group %r (A..F)" % board.group)
        self.config = cfg
        self.measurements = m = Measurements()
        if self.store.fallback:
            m.flags |= C.F_CONFIG_DEFAULTS
        if board.wdt.caused_reset():
            m.flags |= C.F_WATCHDOG_RESET  # until the next reset
            print("smartPDU: the watchdog reset the board")
        self.engine = RmsEngine(mains_mhz=cfg.mains_hz * 1000, floor_ma=cfg.noise_floor_ma)
        self.classifier = OverloadClassifier(
            rating_ma=cfg.rating_ca * 10, curve=_curve_rows(cfg.curve)
        )
        self.panel = FrontPanel(board.leds, board.display, cfg.group)
        board_type = C.BOARD_SIM if board.name == "sim" else C.BOARD_PICO_MCP3208
        self.slave = BusSlave(
            uid_bytes(board.uid),
            board_type,
            cfg,
            self.store,
            measurements=m,
            on_config=self.apply_config,
            on_identify=self.identify,
            panel=self.panel,  # its selection goes into every REPORT
        )
        self.health = TaskHealth(self.TASKS, 3)
        self.apply_config(cfg)
        self.raw_block = None  # last ADC block, for the console's raw samples
        self.loadsim = None
        if board.name == "sim":
            from firmware.loadsim import LoadSim

            # 256-point waveform tables: 6.7 KB instead of 26.6 KB of RAM
            self.loadsim = LoadSim(
                mains_mhz=cfg.mains_hz * 1000, seed=uid_bytes(board.uid)[0], table_bits=8
            )
            board.adc.generator = self.loadsim
            board.panel.on_load = self.on_load

    # -- configuration ------------------------------------------------------------------
    def apply_config(self, cfg) -> None:
        for ch in range(C.CHANNELS):
            self.engine.set_gain(ch, cfg.cal_gain_ppm[ch])
        self.classifier.configure(cfg.rating_ca * 10, _curve_rows(cfg.curve))
        self.panel.group = cfg.group
        if self.slave.sync_freq_centihz == 0:
            self.engine.set_mains(cfg.mains_hz * 1000)
        if not self.store.fallback:
            self.measurements.flags &= ~C.F_CONFIG_DEFAULTS

    def identify(self, seconds: int) -> None:
        self.panel.identify(seconds, time.ticks_ms())
        if seconds:
            self.measurements.flags |= C.F_IDENTIFY
        else:
            self.measurements.flags &= ~C.F_IDENTIFY

    def info(self) -> str:
        return info_line(self.board, self.slave)

    def on_load(self, load) -> None:
        """Sim only: a load change from the virtual PDU (``{"ch": 1..12, "kind", "amps"}``)."""
        from firmware.loadsim import KINDS

        sim = self.loadsim
        if sim is None:
            return
        if "mains_hz" in load:
            sim.set_mains(int(float(load["mains_hz"]) * 1000))
        if "ch" not in load:
            return
        ch = int(load["ch"]) - 1
        kind = load.get("kind", "resistive")
        if not 0 <= ch < C.CHANNELS or kind not in KINDS:
            raise ValueError("load: ch 1..12 and kind in " + ",".join(KINDS))
        options = {}
        for key in ("angle", "rise_us", "inrush", "inrush_ms"):
            if key in load:
                options[key] = load[key]
        sim.set_load(ch, KINDS.index(kind), int(float(load.get("amps", 0)) * 1000), **options)

    # -- tasks --------------------------------------------------------------------------
    async def sample(self) -> None:
        adc = self.board.adc
        engine = self.engine
        classifier = self.classifier
        m = self.measurements
        health = self.health
        adc.start()
        per_block = adc.samples_per_block
        while True:
            buf = await adc.block()
            t0 = time.ticks_us()
            self.raw_block = buf
            pos = 0
            while pos < per_block:
                pos = engine.feed(buf, pos, per_block)
                if engine.cycle_done:
                    classifier.update(engine.period_us, engine.cycle_ua)
                    self._publish(engine, classifier, m)
                    if pos < per_block:
                        # A cycle's close is the costly part: let the bus task in before
                        # the rest of the block (a slot may be due); the block stays valid
                        # for one block period.
                        health.ran(0, t0)
                        await asyncio.sleep_ms(0)
                        t0 = time.ticks_us()
            health.beat(0)
            health.ran(0, t0)

    def _publish(self, engine, classifier, m) -> None:
        # Per mains cycle: copy the engine's and classifier's outputs into the wire-ready
        # buffers. Integer maths only; nothing allocated.
        # The reading is the engine's report_ua: the 3 s aggregate while the load is steady
        # (a flicker included), the 200 ms window after a load step (firmware/rms.py).
        report_ua = engine.report_ua
        crest = engine.crest_x100
        clipped = engine.clipped
        states = classifier.state
        ttt = classifier.time_to_trip_ds
        any_clip = 0
        for ch in range(C.CHANNELS):
            ca = (report_ua[ch] + 5000) // 10000
            m.centiamps[ch] = ca if ca < 0xFFFF else 0xFFFE
            c = crest[ch] // 10
            m.crest_x10[ch] = c if c < 256 else 255
            s = states[ch]
            if clipped[ch]:
                s |= C.STATE_CLIP
                any_clip = 1
            m.states[ch] = s
            m.ttt_ds[ch] = ttt[ch]
        m.windows = (m.windows + 1) & 0xFFFF
        m.freq_centihz = engine.freq_mhz // 10
        if any_clip:
            m.flags |= C.F_CLIPPING
        else:
            m.flags &= ~C.F_CLIPPING
        if engine.ref_ok:
            m.flags &= ~C.F_NO_VREF
        else:
            m.flags |= C.F_NO_VREF

    async def bus(self) -> None:
        await run_bus(self.board, self.slave, self.health, 1, self._on_sync_freq)

    def _on_sync_freq(self, freq_centihz: int) -> None:
        # Boards without a voltage reference time their cycles from the meter's frequency.
        if freq_centihz and not self.engine.ref_ok:
            self.engine.set_mains(freq_centihz * 10)

    async def panel_task(self) -> None:
        from firmware.drivers.buttons import PRESS, event_index, event_kind

        buttons = self.board.buttons
        panel = self.panel
        m = self.measurements
        while True:
            t0 = time.ticks_us()
            now = time.ticks_ms()
            buttons.poll(now)
            while True:
                event = buttons.pop()
                if event < 0:
                    break
                if event_kind(event) == PRESS:
                    panel.press(event_index(event), now)
            panel.render(m.states, m.centiamps, now)
            self.health.beat(2)
            self.health.ran(2, t0)
            await asyncio.sleep_ms(10)

    async def lamp_test(self) -> None:
        # Boot lamp test, without blocking the other tasks.
        leds = self.board.leds
        for colour in ((160, 0, 0), (0, 160, 0), (0, 0, 160)):
            for ch in range(C.CHANNELS):
                leds.set(ch, colour[0], colour[1], colour[2])
            leds.write()
            await asyncio.sleep_ms(300)
        self.board.display.show("8.8.8.8.")
        await asyncio.sleep_ms(400)

    async def run(self) -> None:
        self.tasks = [asyncio.create_task(s.run()) for s in self.board.services or ()]
        await self.lamp_test()
        self.panel.lamp_test(sleep_ms=lambda ms: None)  # resets the LED bookkeeping
        print(info_line(self.board, self.slave))  # the banner says: up and measuring
        tasks = (self.sample, self.bus, self.panel_task, self.console)
        for index, task in enumerate(tasks):
            self.tasks.append(asyncio.create_task(supervise(self, index, task)))
        await watchdog(self.board, self.health, self.slave.uptime_s)

    async def console(self) -> None:
        await console(self)


async def console(app) -> None:
    """Read debug commands from the console (stdin) without stopping the other tasks."""
    reader = asyncio.StreamReader(sys.stdin)  # pyright: ignore[reportArgumentType]
    print("smartpdu> ", end="")
    while True:
        line = await reader.readline()
        if not line:
            if _exit_on_eof():
                # A virtual board whose supervisor died: leave no orphan process behind.
                sys.exit(0)
            # No console attached (stdin closed): nothing to read, ever.
            while True:
                await asyncio.sleep_ms(1000)
        from firmware import debug

        debug.attach(app)
        await debug.run_command(line.decode() if isinstance(line, bytes) else line)


def _exit_on_eof() -> bool:
    # Only the sim board has an environment; its supervisor sets this.
    try:
        import os

        return os.getenv("SMARTPDU_EXIT_ON_EOF") == "1"  # pyright: ignore[reportAttributeAccessIssue]
    except (ImportError, AttributeError):
        return False


async def run_bus(board, slave, health, index, on_sync_freq=None) -> None:
    """Receive into the slave and hand the UART what it schedules, to start at its time."""
    rs485 = board.rs485
    buf = rs485.rx_buf
    slave.char_ns = rs485.wire_time_us(1000)  # µs for 1000 characters = ns for one
    ahead = rs485.tx_lead_us
    last_freq = 0
    while True:
        t0 = time.ticks_us()
        n = rs485.poll()
        while n:
            slave.receive(buf, n, rs485.rx_end_us())
            n = rs485.poll()
        if on_sync_freq is not None and slave.sync_freq_centihz != last_freq:
            last_freq = slave.sync_freq_centihz
            on_sync_freq(last_freq)
        out = slave.due(time.ticks_us(), ahead)
        if out is not None:
            health.ran(index, t0)
            await rs485.send_at(out, slave.tx_at_us)
            health.beat(index)
            # The next slot may follow this frame back to back (one board on the bus): with
            # a timed start the frame is on its way now, so build the next one at once.
            continue
        health.beat(index)
        health.ran(index, t0)
        # Frames are handed over up to ``ahead`` µs early and the driver waits for the exact
        # start, so a millisecond's sleep here costs no slot and an idle bus no CPU.
        await asyncio.sleep_ms(1)


async def supervise(app, index: int, task) -> None:
    """Run ``task`` forever; log, count and flag a crash, then restart it."""
    health = app.health
    while True:
        try:
            await task()
        except Exception as exc:  # any crash restarts the task
            health.crashes[index] += 1
            health.last_error = "%s: %r" % (health.names[index], exc)
            sys.print_exception(exc)  # pyright: ignore[reportAttributeAccessIssue]
            print(
                "smartPDU: task %s crashed (%d), restarting"
                % (health.names[index], health.crashes[index])
            )
            m = getattr(app, "measurements", None)
            if m is not None:
                m.flags |= C.F_TASK_RESTARTED
        await asyncio.sleep_ms(_RESTART_PAUSE_MS)


async def watchdog(board, health, tick=None) -> None:
    """Feed the hardware watchdog only while every task keeps checking in; call ``tick``
    (the uptime counter) every round."""
    wdt = board.wdt
    now = time.ticks_ms()
    for i in range(len(health.beats)):
        health.beats[i] = now
    wdt.start(_WDT_TIMEOUT_MS)
    reported = -1
    while True:
        stalled = health.stalled(time.ticks_ms())
        if stalled < 0:
            wdt.feed()
            reported = -1
        elif stalled != reported:
            reported = stalled
            health.last_error = "task %s stalled" % health.names[stalled]
            print("smartPDU: task %s stalled: watchdog no longer fed" % health.names[stalled])
        if tick is not None:
            tick()
        await asyncio.sleep_ms(500)


class StatusNodeApp:
    """The mains status node: MCCB contacts, Emergency Stop, loss of Neutral, temperature.

    The trip cause is latched when the MCCB's alarm contact closes: Emergency Stop if its
    contact is (or was within ``_CAUSE_WINDOW_MS``) active, loss of Neutral if the relay
    operated, else overload (the breaker's own release). It is kept as the cause of the last
    trip (with ``trip_count`` and the time since it), so the aggregator reads it even after a
    short trip and after the breaker was closed again.
    """

    TASKS = ("inputs", "bus", "console")
    _CAUSE_WINDOW_MS = 500

    def __init__(self, board) -> None:
        self.board = board
        self.store = ConfigStore(board.config_dir)
        self.config = self.store.load()
        board_type = C.BOARD_MAINS_STATUS_SIM if board.name == "sim" else C.BOARD_MAINS_STATUS
        self.slave = BusSlave(
            uid_bytes(board.uid), board_type, self.config, self.store, status=self
        )
        self.health = TaskHealth(self.TASKS, 2)
        if board.wdt.caused_reset():
            print("smartPDU: the watchdog reset the board")
        self.inputs = 0
        self.cause = C.CAUSE_NONE
        self.trip_count = 0
        self.trip_s = 0  # uptime (s) of the last trip
        self.temperature = 250
        # ticks_ms of the last sample with E-stop / Neutral loss active; None once older
        # than the cause window (a stamp must not live to see ticks_ms wrap: 2**30 ms)
        self._estop_ms = None
        self._neutral_ms = None

    def pack(self, buf, off: int) -> int:
        """STATUS payload (called by the slave when it answers a POLL)."""
        uptime = self.slave.uptime_s()
        since = 0xFFFF
        if self.trip_count:
            since = min(uptime - self.trip_s, 0xFFFF)
        rx_errors = min(self.slave.counters.rx_errors, 0xFFFF)
        return pack_status(
            buf, off, self.inputs, self.cause, self.temperature, uptime,
            rx_errors, self.trip_count & 0xFFFF, since,
        )  # fmt: skip

    def _sample_inputs(self, now) -> None:
        status = self.board.status
        status.poll(now)
        while status.pop() >= 0:
            pass  # levels are what matter; events only keep the ring empty
        inputs = 0
        if status.breaker_closed():
            inputs |= C.IN_BREAKER_CLOSED
        tripped = status.tripped()
        if tripped:
            inputs |= C.IN_BREAKER_TRIPPED
        window = self._CAUSE_WINDOW_MS
        if status.estop():
            inputs |= C.IN_ESTOP
            self._estop_ms = now
        elif self._estop_ms is not None and time.ticks_diff(now, self._estop_ms) > window:
            self._estop_ms = None
        if status.neutral_lost():
            inputs |= C.IN_NEUTRAL_LOST
            self._neutral_ms = now
        elif self._neutral_ms is not None and time.ticks_diff(now, self._neutral_ms) > window:
            self._neutral_ms = None
        if tripped and not self.inputs & C.IN_BREAKER_TRIPPED:
            self.trip_count += 1
            self.trip_s = self.slave.uptime_s()
            if self._estop_ms is not None:
                self.cause = C.CAUSE_ESTOP
            elif self._neutral_ms is not None:
                self.cause = C.CAUSE_NEUTRAL_LOST
            else:
                self.cause = C.CAUSE_OVERLOAD
        self.inputs = inputs

    async def inputs_task(self) -> None:
        temperature = self.board.temperature
        tick = 0
        while True:
            now = time.ticks_ms()
            self._sample_inputs(now)
            tick += 1
            if tick % 100 == 0:
                self.temperature = temperature.read_c10()
            self.health.beat(0)
            await asyncio.sleep_ms(5)

    async def bus(self) -> None:
        await run_bus(self.board, self.slave, self.health, 1)

    async def console(self) -> None:
        await console(self)

    def info(self) -> str:
        return info_line(self.board, self.slave)

    async def run(self) -> None:
        print(info_line(self.board, self.slave))
        self.tasks = [asyncio.create_task(s.run()) for s in self.board.services or ()]
        for index, task in enumerate((self.inputs_task, self.bus, self.console)):
            self.tasks.append(asyncio.create_task(supervise(self, index, task)))
        await watchdog(self.board, self.health, self.slave.uptime_s)


def build_board(board_name: str, argv=None):
    module = __import__("boards." + board_name, None, None, ["build"])
    if argv is not None:
        return module.build(argv)
    return module.build()


def main(board_name: str = "sim", argv=None) -> None:
    """Entry point: ``/main.py`` runs ``from firmware.app import main; main("<board>")``."""
    board = build_board(board_name, argv)
    app = GroupBoardApp(board) if board.role == "group" else StatusNodeApp(board)
    try:
        asyncio.run(app.run())
    except KeyboardInterrupt:
        # Ctrl-C from the USB console (or mpremote before flashing): hand the running
        # watchdog to a timer, or the RP2040 would reset under the engineer's hands; the
        # debug functions work on this app at the REPL.
        board.wdt.hand_over_to_repl()
        from firmware import debug

        debug.attach(app)
        raise
    finally:
        asyncio.new_event_loop()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "sim", sys.argv[2:])
