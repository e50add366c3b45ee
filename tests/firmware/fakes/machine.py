"""Fake ``machine`` for the MicroPython unix port (tests only).

A GPIO bank shared by :class:`Pin` objects and the fake PIO in ``rp2.py``: ``levels[n]`` is
the level of GPIO n, ``drivers`` are device models told about every output change so they
can answer (e.g. an MCP3208 driving DOUT), ``log`` records ``(gpio, level)`` writes made
through :class:`Pin` when ``logging`` is on.
"""

levels = {}
dirs = {}
pulls = {}
drivers = []
log = []
logging = [False]


def reset():
    levels.clear()
    dirs.clear()
    pulls.clear()
    drivers.clear()
    log.clear()
    logging[0] = False
    mem32.clear()


def drive(gpio, level):
    """An external device drives ``gpio``."""
    levels[gpio] = level


def _changed(gpio):
    for device in drivers:
        device.changed(gpio)


class Pin:
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    ALT = 3
    PULL_UP = 1
    PULL_DOWN = 2
    ALT_UART = 2
    ALT_SPI = 1
    IRQ_FALLING = 4
    IRQ_RISING = 8

    def __init__(self, id, mode=-1, pull=-1, *, value=None, alt=-1):
        self.id = id
        self.mode = mode
        self.alt = alt
        if mode != -1:
            dirs[id] = mode
        if pull != -1:
            pulls[id] = pull
            if id not in levels:
                levels[id] = 1 if pull == Pin.PULL_UP else 0
        if value is not None:
            self.value(value)
        elif id not in levels:
            levels[id] = 0

    def init(self, mode=-1, pull=-1, *, value=None, alt=-1):
        self.__init__(self.id, mode, pull, value=value, alt=alt)

    def value(self, v=None):
        if v is None:
            return levels.get(self.id, 0)
        v = 1 if v else 0
        if logging[0]:
            log.append((self.id, v))
        if levels.get(self.id) != v:
            levels[self.id] = v
            _changed(self.id)
        return None

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def __call__(self, v=None):
        return self.value(v)


class UART:
    IRQ_RXIDLE = 64

    def __init__(self, id, baudrate=9600, **kw):
        self.id = id
        self.baudrate = baudrate
        self.kw = kw
        self.written = bytearray()
        self.rx = bytearray()
        self.irq_handler = None
        self.irq_trigger = 0
        self.irq_hard = False

    def irq(self, handler=None, trigger=0, hard=False):
        self.irq_handler = handler
        self.irq_trigger = trigger
        self.irq_hard = hard

    def write(self, buf):
        self.written.extend(buf)
        return len(buf)

    def any(self):
        return len(self.rx)

    def readinto(self, buf, nbytes=None):
        n = min(len(buf), len(self.rx))
        if nbytes is not None:
            n = min(n, nbytes)
        if not n:
            return None
        buf[:n] = self.rx[:n]
        self.rx = self.rx[n:]
        return n

    def flush(self):
        pass

    def txdone(self):
        return True


class ADC:
    values = {}

    def __init__(self, id):
        self.id = id

    def read_u16(self):
        return ADC.values.get(self.id, 0)


class WDT:
    instances = []

    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
        self.feeds = 0
        WDT.instances.append(self)

    def feed(self):
        self.feeds += 1


class _Mem32(dict):
    def __getitem__(self, addr):
        return self.get(addr, 0)


mem32 = _Mem32()


def unique_id():
    return b"\xe6\x61\x38\x52\x83\x42\x2a\x2f"


def freq():
    return 125_000_000


irq_disabled = 0  # disable_irq() calls not yet matched by enable_irq()


def disable_irq():
    global irq_disabled
    irq_disabled += 1
    return 1


def enable_irq(state=1):
    global irq_disabled
    irq_disabled -= 1
