"""Debug commands for the engineer at the serial console.

While the firmware runs, type commands on the board's USB serial console (``smartpdu
console PORT`` gives history and line editing); the same functions can be called from the
REPL after Ctrl-C (``import firmware.debug as d; d.status()``). The application imports this
module at the first command typed, so it costs no RAM on a board nobody talks to.

The commands are listed in ``HELP`` below (``help`` prints it).
"""

import asyncio
import time

from protocol import consts as C

HELP = """\
    help                 this list
    status               one line per channel: current, state, crest factor, time to trip
    currents             live currents, one line per window, until a key is pressed
    raw CH [N]           the last N raw ADC samples of channel CH (1..12, 13 = VREF)
    cal CH AMPS          calibrate channel CH against a reference current in amperes
    noise                learn the ADC noise of every channel (all outputs unloaded!)
    address N            set the bus address (1..239)
    group L              set the group letter (A..F)
    identify [S]         blink all LEDs for S seconds (default 10)
    errors               bus and task error counters, watchdog feeds
    info                 firmware, board, group, address, uid, config digest
    heap                 heap in use and free after a garbage collection
    fault TASK [MODE]    test the supervisor: TASK crashes once (MODE crash), stops
                         (stall: sample only, the ADC stops delivering) or spins
                         without yielding (spin: the watchdog resets the board)
"""

_app = None
_STATE_NAMES = ("off", "ok", "SLIGHT", "SERIOUS", "TRIPPED")


class DebugError(Exception):
    """A console command that cannot be carried out; the message says why."""


def attach(app) -> None:
    global _app
    _app = app


def _require_app():
    if _app is None:
        raise DebugError("firmware not started")
    return _app


def _amps(centiamps: int) -> str:
    if centiamps == 0xFFFF:
        return "   over"
    return "%4d.%02d" % (centiamps // 100, centiamps % 100)


def info() -> str:
    line = _require_app().info()
    print(line)
    return line


def heap() -> tuple:
    """Bytes of heap in use and free after a full garbage collection."""
    import gc

    t0 = time.ticks_us()
    gc.collect()
    took = time.ticks_diff(time.ticks_us(), t0)
    used = gc.mem_alloc()  # pyright: ignore[reportAttributeAccessIssue]
    free = gc.mem_free()  # pyright: ignore[reportAttributeAccessIssue]
    print("heap: used %d free %d  collect %d us" % (used, free, took))
    return used, free


# Where a fault enters each task: the driver call its loop makes (board attribute, method).
_FAULT_POINTS = {
    "sample": ("adc", "block"),
    "bus": ("rs485", "poll"),
    "panel": ("buttons", "poll"),
    "inputs": ("status", "poll"),
}


class InjectedFault(Exception):
    """Raised by ``fault``: a task crash made on purpose."""


def fault(task: str, mode: str = "crash") -> None:
    """Make ``task`` fail through its driver, as a hardware fault would.

    ``crash``: the next driver call raises once (the supervisor logs and counts it and
    restarts the task); ``stall``: the ADC stops delivering (``sample`` only: the task waits
    forever, the rest runs on and the watchdog is no longer fed); ``spin``: the driver call
    never returns nor yields (everything stops; the watchdog resets the board). The driver's
    own method is replaced on the instance, so the tasks' code is untouched.
    """
    app = _require_app()
    point = _FAULT_POINTS.get(task)
    if point is None or task not in app.TASKS:
        raise DebugError("task is one of " + ", ".join(t for t in app.TASKS if t in _FAULT_POINTS))
    driver = getattr(app.board, point[0])
    name = point[1]
    if mode == "crash":

        def crash(*args):
            delattr(driver, name)  # one shot: the driver's own method from now on
            raise InjectedFault("injected fault in " + task)

        setattr(driver, name, crash)
    elif mode == "stall" and task == "sample":

        async def stall(*args):
            await asyncio.Event().wait()

        setattr(driver, name, stall)
    elif mode == "spin":

        def spin(*args):
            while True:
                pass

        setattr(driver, name, spin)
    else:
        raise DebugError("mode is crash, spin, or stall (sample only)")
    print("fault armed: %s %s" % (task, mode))


def status() -> None:
    """Channel table of a group board, or the inputs of a status node."""
    app = _require_app()
    m = getattr(app, "measurements", None)
    if m is None:
        print(
            "inputs 0x%02x  cause %d  trips %d  temperature %d.%d C"
            % (app.inputs, app.cause, app.trip_count, app.temperature // 10, app.temperature % 10)
        )
        return
    cfg = app.config
    print(
        "group %s  address %d  %d.%02d Hz  rating %d.%02d A  windows %d"
        % (
            cfg.group or "-",
            cfg.address,
            m.freq_centihz // 100,
            m.freq_centihz % 100,
            cfg.rating_ca // 100,
            cfg.rating_ca % 100,
            m.windows,
        )
    )
    print(" ch       A  state    crest  trip in   gain ppm")
    for ch in range(C.CHANNELS):
        s = m.states[ch]
        ttt = m.ttt_ds[ch]
        trip = (
            "      -"
            if ttt == 0xFFFF or (s & 7) < C.ST_SLIGHT
            else "%5d.%ds"
            % (
                ttt // 10,
                ttt % 10,
            )
        )
        print(
            "%3d %s  %-7s %s %2d.%d  %s  %8d"
            % (
                ch + 1,
                _amps(m.centiamps[ch]),
                _STATE_NAMES[s & 7],
                "clip" if s & C.STATE_CLIP else "    ",
                m.crest_x10[ch] // 10,
                m.crest_x10[ch] % 10,
                trip,
                cfg.cal_gain_ppm[ch],
            )
        )


def currents_line() -> str:
    m = _require_app().measurements
    return " ".join(_amps(m.centiamps[ch]).strip() for ch in range(C.CHANNELS))


def raw(channel: int, n: int = 32) -> list:
    """The last ``n`` raw ADC codes of ``channel`` (1..12 CTs, 13 the voltage reference)."""
    app = _require_app()
    block = app.raw_block
    if block is None:
        raise DebugError("no samples yet")
    if not 1 <= channel <= 13:
        raise DebugError("channel is 1..12, or 13 for the voltage reference")
    stride = 13
    count = len(block) // stride
    n = min(n, count)
    values = [block[(count - n + k) * stride + channel - 1] for k in range(n)]
    print(" ".join(str(v) for v in values))
    return values


async def calibrate_async(channel: int, amps: float, windows: int = 50, drive: bool = False):
    """Set channel ``channel``'s gain so it reads ``amps`` (a reference meter's reading).

    Averages the mean square of ``windows`` windows at the present gain, then scales the gain
    by reference / measured. ``drive`` samples here (REPL use, firmware stopped).
    """
    app = _require_app()
    if not 1 <= channel <= C.CHANNELS:
        raise DebugError("channel is 1..12")
    if not 0.5 <= amps <= 63:
        raise DebugError("reference current must be 0.5..63 A for a usable calibration")
    ch = channel - 1
    engine = app.engine
    total_sq = 0  # sum of (mA)^2: a Python int, allowed to grow here (not a hot path)
    seen = 0
    last = engine.cycles
    while seen < windows:
        if drive:
            buf = await app.board.adc.block()
            pos = 0
            n = app.board.adc.samples_per_block
            while pos < n:
                pos = engine.feed(buf, pos, n)
        else:
            await asyncio.sleep_ms(5)
        if engine.cycles != last:
            last = engine.cycles
            ma = engine.rms_ua[ch] // 1000
            total_sq += ma * ma
            seen += 1
    measured_ma = isqrt(total_sq // seen)
    if measured_ma < 100:
        raise DebugError(
            "channel %d reads %d mA: is the reference load on it?" % (channel, measured_ma)
        )
    old = app.config.cal_gain_ppm[ch]
    new = (old * int(amps * 1000) + measured_ma // 2) // measured_ma
    app.config.set(C.K_CAL_GAIN, ch, new)
    app.store.save(app.config)
    app.apply_config(app.config)
    print(
        "channel %d: read %d mA, reference %d mA: gain %d -> %d ppm (saved)"
        % (channel, measured_ma, int(amps * 1000), old, new)
    )
    return new


def calibrate(channel: int, amps: float, windows: int = 50):
    """REPL form of ``cal``: runs its own sampling (the firmware is stopped at the REPL)."""
    app = _require_app()
    app.board.adc.start()
    return asyncio.run(calibrate_async(channel, amps, windows, drive=True))


def isqrt(n: int) -> int:
    if n < 2:
        return n
    x = n
    y = (x + 1) // 2
    while y < x:
        x = y
        y = (x + n // x) // 2
    return x


def set_address(address: int) -> None:
    app = _require_app()
    app.config.set(C.K_ADDRESS, 0, address)
    app.slave.writer.src = address
    app.store.save(app.config)
    print("address %d (saved)" % address)


def set_group(letter: str) -> None:
    app = _require_app()
    app.config.set(C.K_GROUP, 0, letter.upper())
    app.store.save(app.config)
    if hasattr(app, "apply_config"):
        app.apply_config(app.config)
    print("group %s (saved)" % letter.upper())


def error_lines() -> list:
    """The ``errors`` report, one string per line (the per-read maxima start again)."""
    app = _require_app()
    c = app.slave.counters
    rs485 = app.board.rs485
    lines = [
        "bus: frames %d  rx errors %d  naks %d  tx %d  overruns %d  late slots %d"
        % (c.rx_frames, c.rx_errors, c.naks, c.tx_frames, rs485.overruns, c.late_slots)
    ]
    timed = getattr(rs485, "_timed_tx", None)
    if timed is not None:
        lines.append("tx: late starts %d  slow ends %d" % (timed.late_starts, timed.slow_ends))
    h = app.health
    run_us = h.run_us
    for i in range(len(h.names)):
        # the longest stretch the task held the core without yielding since the last read
        lines.append(
            "task %-8s crashes %d  longest run %d us" % (h.names[i], h.crashes[i], run_us[i])
        )
        run_us[i] = 0
    if h.last_error:
        lines.append("last error: " + h.last_error)
    adc = getattr(app.board, "adc", None)
    if adc is not None:
        behind = getattr(adc, "behind", None)
        lines.append(
            "adc: blocks %d  overruns %d  samples/block %d  most behind %d%s"
            % (
                adc.blocks,
                adc.overruns,
                adc.samples_per_block,
                getattr(adc, "most_behind", 0),
                "" if behind is None else "  since last %d" % behind,
            )
        )
        if behind is not None:
            adc.behind = 0
    lines.append("watchdog: feeds %d" % app.board.wdt.feeds)
    return lines


def errors() -> None:
    for line in error_lines():
        print(line)


def _ran(t0) -> None:
    # The console held the core since ticks_us t0 (the task's longest run, see errors).
    app = _app
    if app is not None and "console" in app.TASKS:
        app.health.ran(app.TASKS.index("console"), t0)


async def _print_lines(lines) -> None:
    # One line at a time, yielding between them: the USB CDC's transmit FIFO holds 256
    # bytes and print() waits, holding the core, while the host empties a fuller one.
    for line in lines:
        t0 = time.ticks_us()
        print(line)
        _ran(t0)
        await asyncio.sleep_ms(1)


async def run_command(line: str) -> None:
    """Parse and run one console line; errors are printed, never raised."""
    t0 = time.ticks_us()
    words = line.split()
    if not words:
        return
    cmd = words[0].lower()
    args = words[1:]
    try:
        if cmd in ("help", "?"):
            print(HELP)
        elif cmd == "status":
            status()
        elif cmd == "currents":
            for _ in range(int(args[0]) if args else 10):
                print(currents_line())
                await asyncio.sleep_ms(200)
        elif cmd == "raw":
            raw(int(args[0]), int(args[1]) if len(args) > 1 else 32)
        elif cmd == "cal":
            await calibrate_async(int(args[0]), float(args[1]))
        elif cmd == "noise":
            app = _require_app()
            app.engine.calibrate_noise()
            while app.engine.calibrating:
                await asyncio.sleep_ms(50)
            print("noise learned")
        elif cmd == "address":
            set_address(int(args[0]))
        elif cmd == "group":
            set_group(args[0])
        elif cmd == "identify":
            app = _require_app()
            app.identify(int(args[0]) if args else 10)
            print("identify")
        elif cmd == "errors":
            lines = error_lines()
            _ran(t0)
            await _print_lines(lines)
            t0 = time.ticks_us()
        elif cmd == "info":
            info()
        elif cmd == "heap":
            heap()
        elif cmd == "fault":
            fault(args[0].lower(), args[1].lower() if len(args) > 1 else "crash")
        else:
            print("unknown command %r: type help" % cmd)
    except (IndexError, ValueError) as exc:
        print("bad arguments for %s (%s): type help" % (cmd, exc))
    except DebugError as exc:
        print("error: %s" % exc)
    except Exception as exc:  # the console must survive any command
        print("error: %r" % exc)
    print("smartpdu> ", end="")
    _ran(t0)  # (a command that awaits, like currents, counts its whole time)
