"""Fake ``rp2`` for the MicroPython unix port (tests only): PIO assembler, PIO emulator, DMA.

- :func:`asm_pio` assembles the same ``@asm_pio`` program text as the real module into
  16-bit instruction words, encoded per the RP2040 datasheet (section 3.4).
- :class:`StateMachine` executes those words cycle by cycle against the GPIO bank of the fake
  ``machine`` module: side-set at the start of an instruction, then delay cycles; IN/OUT/
  SET/MOV/JMP/PUSH/PULL with shift counters, thresholds and FIFOs. Inputs are read before
  this cycle's outputs change; device models react to output changes after the cycle.
- :class:`DMA` moves words between a state machine's RX FIFO (paced by its DREQ), memory
  (through ``uctypes``) and the DMA channels' own trigger registers, with ring wrap,
  chaining, reload of TRANS_COUNT and completion IRQs.

:func:`run` advances every active state machine and DMA channel by a number of PIO cycles.
"""

import machine
import uctypes

_MASK = 0xFFFFFFFF


class PIOASMError(Exception):
    pass


class PIO:
    IN_LOW = 0
    IN_HIGH = 1
    OUT_LOW = 2
    OUT_HIGH = 3
    SHIFT_LEFT = 0
    SHIFT_RIGHT = 1
    JOIN_NONE = 0
    JOIN_TX = 1
    JOIN_RX = 2
    IRQ_SM0 = 0x100

    def __init__(self, id):
        self.id = id

    def remove_program(self, program=None):
        pass


class _Emit:
    def __init__(
        self,
        *,
        out_init=None,
        set_init=None,
        sideset_init=None,
        side_pindir=False,
        in_shiftdir=0,
        out_shiftdir=0,
        autopush=False,
        autopull=False,
        push_thresh=32,
        pull_thresh=32,
        fifo_join=0,
    ):
        self.labels = {}
        self.words = []
        self.config = {
            "out_init": out_init,
            "set_init": set_init,
            "sideset_init": sideset_init,
            "in_shiftdir": in_shiftdir,
            "out_shiftdir": out_shiftdir,
            "autopush": autopush,
            "autopull": autopull,
            "push_thresh": push_thresh,
            "pull_thresh": pull_thresh,
            "fifo_join": fifo_join,
        }
        if sideset_init is None:
            self.side_bits = 0
        elif isinstance(sideset_init, int):
            self.side_bits = 1
        else:
            self.side_bits = len(sideset_init)
        self.side_opt = False
        self.wrap_target_at = 0
        self.wrap_at = None

    def start(self, pass_):
        if pass_ == 1:
            if self.wrap_at is None:
                self.wrap_at = self.count - 1
            if self.side_bits and self.sides != self.count:
                self.side_opt = True
        self.pass_ = pass_
        self.count = 0
        self.sides = 0

    def _field_bits(self):
        return self.side_bits + (1 if self.side_opt else 0)

    def delay(self, n):
        if self.pass_ == 1:
            if n >= 1 << (5 - self._field_bits()) or n < 0:
                raise PIOASMError("delay too large")
            self.words[-1] |= n << 8
        return self

    def __getitem__(self, n):
        return self.delay(n)

    def side(self, value):
        self.sides += 1
        if self.pass_ == 1:
            bits = self._field_bits()
            if value >= 1 << self.side_bits:
                raise PIOASMError("side-set value too large")
            self.words[-1] |= value << (13 - bits)
            if self.side_opt:
                self.words[-1] |= 1 << 12
        return self

    def label(self, name):
        if self.pass_ == 0:
            if name in self.labels:
                raise PIOASMError("duplicate label")
            self.labels[name] = self.count

    def wrap_target(self):
        self.wrap_target_at = self.count

    def wrap(self):
        self.wrap_at = self.count - 1

    def word(self, value, target=None):
        self.count += 1
        if self.pass_ == 1:
            if target is not None:
                value |= self.labels[target]
            self.words.append(value)
        return self

    def nop(self):
        return self.word(0xA042)

    def jmp(self, cond, target=None):
        if target is None:
            return self.word(0x0000, cond)
        return self.word(cond << 5, target)

    def wait(self, polarity, src, index):
        return self.word(0x2000 | polarity << 7 | src << 5 | index)

    def in_(self, src, n):
        return self.word(0x4000 | src << 5 | (n & 31))

    def out(self, dest, n):
        if dest == 8:
            dest = 7
        return self.word(0x6000 | dest << 5 | (n & 31))

    def push(self, value=0, value2=0):
        value |= value2
        if not value & 1:
            value |= 0x20
        return self.word(0x8000 | (value & 0x60))

    def pull(self, value=0, value2=0):
        value |= value2
        if not value & 1:
            value |= 0x20
        return self.word(0x8080 | (value & 0x60))

    def mov(self, dest, src):
        if dest == 8:
            dest = 4
        return self.word(0xA000 | dest << 5 | src)

    def set(self, dest, data):
        return self.word(0xE000 | dest << 5 | data)


_NAMES = {
    "gpio": 0,
    "pins": 0,
    "x": 1,
    "y": 2,
    "null": 3,
    "pindirs": 4,
    "pc": 5,
    "status": 5,
    "isr": 6,
    "osr": 7,
    "exec": 8,
    "invert": lambda v: v | 0x08,
    "reverse": lambda v: v | 0x10,
    "not_x": 1,
    "x_dec": 2,
    "not_y": 3,
    "y_dec": 4,
    "x_not_y": 5,
    "pin": 6,
    "not_osre": 7,
    "noblock": 0x01,
    "block": 0x21,
    "iffull": 0x40,
    "ifempty": 0x40,
    "clear": 0x40,
}


def asm_pio(**kw):
    def assemble(f):
        emit = _Emit(**kw)
        g = f.__globals__
        saved = g.copy()
        g.clear()
        g.update(_NAMES)
        for name in ("wrap_target", "wrap", "label", "word", "nop", "jmp", "wait", "in_"):
            g[name] = getattr(emit, name)
        for name in ("out", "push", "pull", "mov", "set"):
            g[name] = getattr(emit, name)
        try:
            emit.start(0)
            f()
            emit.start(1)
            f()
        finally:
            g.clear()
            g.update(saved)
        program = dict(emit.config)
        program["words"] = emit.words
        program["wrap_target"] = emit.wrap_target_at
        program["wrap"] = emit.wrap_at
        program["side_bits"] = emit.side_bits
        program["side_opt"] = emit.side_opt
        return program

    return assemble


machines = {}
channels = {}
_PIO_RXF = (0x50200020, 0x50300020)
_DMA_BASE = 0x50000000


def _count(init):
    if init is None:
        return 0
    if isinstance(init, int):
        return 1
    return len(init)


def _inits(init):
    if init is None:
        return ()
    if isinstance(init, int):
        return (init,)
    return tuple(init)


class StateMachine:
    def __init__(self, id, program=None, freq=-1, **kw):
        self.id = id
        machines[id] = self
        self.freq = freq
        self.program = program
        p = program
        self.words = p["words"]
        self.wrap_target = p["wrap_target"]
        self.wrap = p["wrap"]
        self.side_bits = p["side_bits"]
        self.side_opt = p["side_opt"]
        self.in_left = p["in_shiftdir"] == PIO.SHIFT_LEFT
        self.out_left = p["out_shiftdir"] == PIO.SHIFT_LEFT
        self.push_thresh = p["push_thresh"] or 32
        self.pull_thresh = p["pull_thresh"] or 32
        self.autopush = p["autopush"]
        self.autopull = p["autopull"]
        self.rx_depth = 8 if p["fifo_join"] == PIO.JOIN_RX else 4
        self.in_base = kw.get("in_base").id if kw.get("in_base") is not None else 0
        self.out_base = kw.get("out_base").id if kw.get("out_base") is not None else 0
        self.set_base = kw.get("set_base").id if kw.get("set_base") is not None else 0
        side = kw.get("sideset_base")
        self.side_base = side.id if side is not None else 0
        self.out_count = _count(p["out_init"])
        self.set_count = _count(p["set_init"])
        for base, init in (
            (self.out_base, p["out_init"]),
            (self.set_base, p["set_init"]),
            (self.side_base, p["sideset_init"]),
        ):
            for i, state in enumerate(_inits(init)):
                machine.dirs[base + i] = machine.Pin.OUT if state >= 2 else machine.Pin.IN
                if state >= 2:
                    machine.levels[base + i] = state - 2
        self.pc = 0
        self.x = 0
        self.y = 0
        self.isr = 0
        self.isr_count = 0
        self.osr = 0
        self.osr_count = 32
        self.rx = []
        self.tx = []
        self.delay = 0
        self.cycles = 0
        self.stalls = 0
        self.running = False

    def active(self, value=None):
        if value is None:
            return self.running
        self.running = bool(value)
        return None

    def put(self, value, shift=0):
        if isinstance(value, int):
            self.tx.append((value << shift) & _MASK)
        else:
            for v in value:
                self.tx.append((v << shift) & _MASK)

    def get(self, buf=None, shift=0):
        return self.rx.pop(0) >> shift

    def rx_fifo(self):
        return len(self.rx)

    def _pins_in(self, n):
        value = 0
        levels = machine.levels
        for i in range(n):
            if levels.get(self.in_base + i, 0):
                value |= 1 << i
        return value

    def _write_pins(self, base, count, value, changed):
        levels = machine.levels
        for i in range(count):
            level = (value >> i) & 1
            if levels.get(base + i) != level:
                levels[base + i] = level
                changed.append(base + i)

    def step(self):
        """Run one PIO cycle."""
        self.cycles += 1
        if self.delay:
            self.delay -= 1
            return
        word = self.words[self.pc]
        field = (word >> 8) & 31
        bits = self.side_bits + (1 if self.side_opt else 0)
        changed = []
        side_value = None
        if bits:
            side_raw = field >> (5 - bits)
            if self.side_opt:
                if side_raw >> self.side_bits:
                    side_value = side_raw & ((1 << self.side_bits) - 1)
            else:
                side_value = side_raw
        delay = field & ((1 << (5 - bits)) - 1)
        stalled, jumped = self._execute(word, changed)
        if side_value is not None:
            self._write_pins(self.side_base, self.side_bits, side_value, changed)
        for gpio in changed:
            machine._changed(gpio)
        if stalled:
            self.stalls += 1
            return
        if jumped is not None:
            self.pc = jumped
        elif self.pc == self.wrap:
            self.pc = self.wrap_target
        else:
            self.pc += 1
        self.delay = delay

    def _source(self, src, n_pins=32):
        if src == 0:
            return self._pins_in(n_pins)
        if src == 1:
            return self.x
        if src == 2:
            return self.y
        if src == 3:
            return 0
        if src == 6:
            return self.isr
        if src == 7:
            return self.osr
        raise NotImplementedError(f"source {src}")

    def _execute(self, word, changed):
        op = word >> 13
        a = (word >> 5) & 7
        b = word & 31
        if op == 0:  # JMP
            taken = False
            if a == 0:
                taken = True
            elif a == 1:
                taken = self.x == 0
            elif a == 2:
                taken = self.x != 0
                self.x = (self.x - 1) & _MASK
            elif a == 3:
                taken = self.y == 0
            elif a == 4:
                taken = self.y != 0
                self.y = (self.y - 1) & _MASK
            elif a == 5:
                taken = self.x != self.y
            elif a == 7:
                taken = self.osr_count < self.pull_thresh
            else:
                raise NotImplementedError("jmp pin")
            return False, (b if taken else None)
        if op == 2:  # IN
            n = b or 32
            data = self._source(a, n) & ((1 << n) - 1)
            if self.in_left:
                self.isr = ((self.isr << n) | data) & _MASK if n < 32 else data
            else:
                self.isr = ((self.isr >> n) | (data << (32 - n))) & _MASK if n < 32 else data
            self.isr_count = min(32, self.isr_count + n)
            if self.autopush and self.isr_count >= self.push_thresh:
                if len(self.rx) >= self.rx_depth:
                    return True, None
                self.rx.append(self.isr)
                self.isr = 0
                self.isr_count = 0
            return False, None
        if op == 3:  # OUT
            n = b or 32
            if self.autopull and self.osr_count >= self.pull_thresh:
                if not self.tx:
                    return True, None
                self.osr = self.tx.pop(0)
                self.osr_count = 0
            if self.out_left:
                data = self.osr >> (32 - n)
                self.osr = (self.osr << n) & _MASK if n < 32 else 0
            else:
                data = self.osr & ((1 << n) - 1)
                self.osr = self.osr >> n if n < 32 else 0
            self.osr_count = min(32, self.osr_count + n)
            if a == 0:
                self._write_pins(self.out_base, self.out_count, data, changed)
            elif a == 1:
                self.x = data
            elif a == 2:
                self.y = data
            elif a == 3:
                pass
            elif a == 5:
                return False, data
            elif a == 6:
                self.isr = data
                self.isr_count = n
            else:
                raise NotImplementedError(f"out dest {a}")
            return False, None
        if op == 4:  # PUSH / PULL
            if_flag = word & 0x40
            blocking = word & 0x20
            if not word & 0x80:
                if if_flag and self.isr_count < self.push_thresh:
                    return False, None
                if len(self.rx) >= self.rx_depth:
                    if blocking:
                        return True, None
                else:
                    self.rx.append(self.isr)
                self.isr = 0
                self.isr_count = 0
                return False, None
            if if_flag and self.osr_count < self.pull_thresh:
                return False, None
            if not self.tx:
                if blocking:
                    return True, None
                self.osr = self.x
            else:
                self.osr = self.tx.pop(0)
            self.osr_count = 0
            return False, None
        if op == 5:  # MOV
            src = word & 7
            operation = (word >> 3) & 3
            value = self._source(src)
            if operation == 1:
                value = ~value & _MASK
            elif operation == 2:
                r = 0
                for i in range(32):
                    if value >> i & 1:
                        r |= 1 << (31 - i)
                value = r
            if a == 0:
                self._write_pins(self.out_base, self.out_count, value, changed)
            elif a == 1:
                self.x = value
            elif a == 2:
                self.y = value
            elif a == 5:
                return False, value & 31
            elif a == 6:
                self.isr = value
                self.isr_count = 0
            elif a == 7:
                self.osr = value
                self.osr_count = 0
            else:
                raise NotImplementedError(f"mov dest {a}")
            return False, None
        if op == 7:  # SET
            if a == 0:
                self._write_pins(self.set_base, self.set_count, b, changed)
            elif a == 1:
                self.x = b
            elif a == 2:
                self.y = b
            elif a == 4:
                pass
            else:
                raise NotImplementedError(f"set dest {a}")
            return False, None
        raise NotImplementedError(f"opcode {op}")


# -- DMA -------------------------------------------------------------------------------

_CTRL_FIELDS = (
    ("enable", 0, 1),
    ("high_pri", 1, 1),
    ("size", 2, 2),
    ("inc_read", 4, 1),
    ("inc_write", 5, 1),
    ("ring_size", 6, 4),
    ("ring_sel", 10, 1),
    ("chain_to", 11, 4),
    ("treq_sel", 15, 6),
    ("irq_quiet", 21, 1),
    ("bswap", 22, 1),
    ("sniff_en", 23, 1),
)


def _address(obj):
    if isinstance(obj, int):
        return obj
    return uctypes.addressof(obj)


class DMA:
    def __init__(self):
        n = 0
        while n in channels:
            n += 1
        self.channel = n
        channels[n] = self
        self.read = 0
        self.write = 0
        self.count = 0
        self.reload = 0
        self.ctrl = 0
        self.busy = False
        self.handler = None
        self.hard = False
        self.transfers = 0
        self.irqs = 0

    def pack_ctrl(self, default=None, **kw):
        values = {
            "enable": 1,
            "size": 2,
            "inc_read": 1,
            "inc_write": 1,
            "chain_to": self.channel,
            "treq_sel": 0x3F,
            "irq_quiet": 1,
        }
        for key, value in kw.items():
            values[key] = int(value)
        ctrl = 0
        for name, shift, width in _CTRL_FIELDS:
            ctrl |= (values.get(name, 0) & ((1 << width) - 1)) << shift
        return ctrl

    @staticmethod
    def unpack_ctrl(ctrl):
        return {name: (ctrl >> shift) & ((1 << width) - 1) for name, shift, width in _CTRL_FIELDS}

    def config(self, read=None, write=None, count=None, ctrl=None, trigger=False):
        if read is not None:
            self.read = _address(read)
        if write is not None:
            self.write = _address(write)
        if count is not None:
            self.reload = count
            self.count = count
        if ctrl is not None:
            self.ctrl = ctrl
        if trigger:
            self._trigger()

    def irq(self, handler=None, hard=False):
        self.handler = handler
        self.hard = hard

    def active(self, value=None):
        if value is None:
            return self.busy
        if not value:
            self.busy = False
        else:
            self._trigger()
        return None

    def close(self):
        self.busy = False
        channels.pop(self.channel, None)

    def _trigger(self):
        self.count = self.reload
        self.busy = self.count > 0

    def _field(self, name):
        return DMA.unpack_ctrl(self.ctrl)[name]

    def _step(self):
        """Do at most one transfer if paced and possible; return True if one happened."""
        if not self.busy:
            return False
        f = DMA.unpack_ctrl(self.ctrl)
        treq = f["treq_sel"]
        size = 1 << f["size"]
        value = None
        if treq != 0x3F:
            sm = machines[(treq & 3) + (4 if treq >= 8 else 0)]
            rxf = _PIO_RXF[sm.id >> 2] + 4 * (sm.id & 3)
            if not 4 <= (treq & 7) <= 7 or self.read != rxf:
                raise AssertionError(f"DREQ {treq} does not pace a read of {self.read:x}")
            if not sm.rx:
                return False
            value = sm.rx.pop(0) & ((1 << (8 * size)) - 1)
        else:
            raw = uctypes.bytearray_at(self.read, size)
            value = int.from_bytes(bytes(raw), "little")
        if self.write >= _DMA_BASE and self.write < _DMA_BASE + 0x1000:
            channel = (self.write - _DMA_BASE) // 0x40
            register = (self.write - _DMA_BASE) % 0x40
            target = channels[channel]
            if register != 0x2C:
                raise NotImplementedError(f"DMA register {register:x}")
            # Addresses are 32-bit on the RP2040; on a 64-bit host the table holds the low
            # half of a heap address, and the heap shares the table's high half.
            target.write = (value & _MASK) | (self.read & ~_MASK)
            target._trigger()
        else:
            uctypes.bytearray_at(self.write, size)[:] = value.to_bytes(size, "little")
        self.transfers += 1
        if f["inc_read"]:
            self.read = self._advance(self.read, size, f, False)
        if f["inc_write"]:
            self.write = self._advance(self.write, size, f, True)
        self.count -= 1
        if self.count == 0:
            self.busy = False
            if f["chain_to"] != self.channel:
                # The chained channel starts at once; a permanent-paced one (a control
                # channel) is done long before the CPU gets to the completion IRQ.
                chained = channels[f["chain_to"]]
                chained._trigger()
                while chained.busy and chained._field("treq_sel") == 0x3F:
                    chained._step()
            if not f["irq_quiet"] and self.handler is not None:
                self.irqs += 1
                self.handler(self)
        return True

    @staticmethod
    def _advance(addr, size, f, is_write):
        ring = f["ring_size"]
        if ring and bool(f["ring_sel"]) == is_write:
            mask = (1 << ring) - 1
            return (addr & ~mask) | ((addr + size) & mask)
        return addr + size


def run(cycles):
    """Advance every running state machine ``cycles`` PIO cycles, DMA serviced every cycle."""
    sms = [sm for sm in machines.values() if sm.running]
    for _ in range(cycles):
        for sm in sms:
            sm.step()
        for _ in range(4):
            moved = False
            for dma in list(channels.values()):
                if dma._step():
                    moved = True
            if not moved:
                break


def reset():
    machines.clear()
    channels.clear()
