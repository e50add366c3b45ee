"""Message objects made from the layout tables of ``protocol.layouts``: one generic
constructor, range check, packer and unpacker for every message, ``encode`` and ``decode``.

A message class names its type and its table; ``@message`` derives the rest (field names,
struct format, checks) once, at import, and registers the class for ``message_from_reader``.
Only the classes of the family modules a program imports are registered: a board imports
``protocol.admin`` and ``protocol.discovery`` (what it answers), the host ``protocol.messages``
(every message). This path allocates (it builds objects): the board's per-cycle frames use
``layouts.pack_*`` with a ``framing.FrameWriter`` instead.
"""

try:
    from micropython import const  # pyright: ignore[reportMissingImports, reportAssignmentType]
except ImportError:  # CPython (the aggregator)

    def const(expr: int) -> int:
        return expr


import struct

from protocol.consts import HEADER_LEN, MAX_WIRE
from protocol.errors import FieldError, LengthError, UnknownTypeError
from protocol.framing import FrameReader, FrameWriter
from protocol.layouts import count_of, entry_format, size_of, struct_format

# How a field's value is held and checked (from its code in the table).
_INT = const(0)  # int in low..high (or ``also``)
_SEQ = const(1)  # ``count`` ints, each in low..high (or ``also``)
_BYTES = const(2)  # bytes of length ``count``
_CHAR = const(3)  # "" or one character whose code is in low..high
_FLAG = const(4)  # bool
_TAIL = const(5)  # variable tail: checked by the class

BY_TYPE: dict = {}
BY_NAME: dict = {}


def _kind(code: str) -> int:
    if "*" in code:
        return _TAIL
    if code == "c":
        return _CHAR
    if code == "?":
        return _FLAG
    if code[-1] == "s":
        return _BYTES
    return _SEQ if count_of(code) > 1 else _INT


def _spec(field) -> tuple:
    # (name, kind, values, low, high, also, struct values it takes in FORMAT)
    code = field[1]
    kind = _kind(code)
    count = int(code[:-1]) if kind == _BYTES else count_of(code)
    raw = size_of(code) if "u" in code else (0 if kind == _TAIL else count)
    if kind == _BYTES:
        raw = 1
    also = field[4] if len(field) > 4 else field[2]
    return (field[0], kind, count, field[2], field[3], also, raw)


def message(cls):
    """Class decorator: derive FIELDS, SPECS, FORMAT and SIZE from ``cls.LAYOUT`` and register
    ``cls`` by type and name."""
    layout = cls.LAYOUT
    specs = tuple(_spec(f) for f in layout)
    cls.SPECS = specs
    if "FIELDS" not in cls.__dict__:
        cls.FIELDS = tuple(s[0] for s in specs)
    cls.FORMAT = struct_format(layout)
    cls.SIZE = sum(size_of(f[1]) for f in layout)
    # Every field one struct value: the unpacked tuple is the field values.
    cls.SCALAR = all(s[1] == _INT and s[6] == 1 for s in specs)
    BY_TYPE[cls.TYPE] = cls
    BY_NAME[cls.NAME] = cls
    return cls


def _int_in(v, low: int, high: int, also: int, what: str) -> None:
    if not isinstance(v, int) or not (low <= v <= high or v == also):
        raise FieldError(what + " must be " + str(low) + ".." + str(high))


def _char_in(v, low: int, high: int) -> bool:
    return isinstance(v, str) and len(v) == 1 and low <= ord(v) <= high


class Message:
    """Header fields plus the payload fields of LAYOUT (FIELDS, in wire order).

    Build one with the field values in FIELDS order (positional or by name), then ``dst``,
    ``src`` and ``seq``; DEFAULTS gives trailing fields that may be left out.
    """

    TYPE = 0
    NAME = ""
    LAYOUT: tuple = ()
    FIELDS: tuple = ()
    SPECS: tuple = ()
    FORMAT = ""
    SIZE = 0
    SCALAR = True
    DEFAULTS: dict = {}
    DST = 1  # header defaults: the direction the message usually goes
    SRC = 0
    # True when every field ``unpack`` can produce is valid (the host skips the check on the
    # hundreds of REPORTs a second).
    VALID_UNPACKED = False

    dst: int
    src: int
    seq: int

    def __init__(self, *args, **kwargs) -> None:
        names = self.FIELDS
        given = len(args)
        if given > len(names) + 3:
            raise TypeError(self.NAME + ": too many arguments")
        for k in range(len(names)):
            name = names[k]
            if k < given:
                value = args[k]
            elif name in kwargs:
                value = kwargs.pop(name)
            elif name in self.DEFAULTS:
                value = self.DEFAULTS[name]
            else:
                raise TypeError(self.NAME + ": missing " + name)
            setattr(self, name, value)
        k = len(names)
        self.dst = args[k] if given > k else kwargs.pop("dst", self.DST)
        self.src = args[k + 1] if given > k + 1 else kwargs.pop("src", self.SRC)
        self.seq = args[k + 2] if given > k + 2 else kwargs.pop("seq", 0)
        if kwargs:
            raise TypeError(self.NAME + ": unexpected " + ", ".join(kwargs))
        self.convert()

    def convert(self) -> None:
        """Normalise field values to the types ``unpack`` makes (lists, bytes, bools)."""
        for name, kind, _count, _low, _high, _also, _raw in self.SPECS:
            if kind == _SEQ:
                setattr(self, name, list(getattr(self, name)))
            elif kind == _BYTES:
                setattr(self, name, bytes(getattr(self, name)))
            elif kind == _FLAG:
                setattr(self, name, bool(getattr(self, name)))

    def fields(self) -> dict:
        return {name: getattr(self, name) for name in self.FIELDS}

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and isinstance(other, Message)
            and (self.dst, self.src, self.seq) == (other.dst, other.src, other.seq)
            and self.fields() == other.fields()
        )

    def __repr__(self) -> str:
        inner = ", ".join(k + "=" + repr(v) for k, v in self.fields().items())
        return "%s(dst=%d, src=%d, seq=%d, %s)" % (self.NAME, self.dst, self.src, self.seq, inner)

    def validate(self) -> None:
        """Raise FieldError unless every field is within its range in LAYOUT."""
        _int_in(self.dst, 0, 0xFF, 0, "dst")
        _int_in(self.src, 0, 0xFF, 0, "src")
        _int_in(self.seq, 0, 0xFF, 0, "seq")
        for name, kind, count, low, high, also, _raw in self.SPECS:
            v = getattr(self, name)
            if kind == _INT:
                _int_in(v, low, high, also, name)
            elif kind == _SEQ:
                if len(v) != count:
                    raise FieldError(name + " must have " + str(count) + " values")
                for x in v:
                    _int_in(x, low, high, also, name)
            elif kind == _BYTES:
                if not isinstance(v, (bytes, bytearray)) or len(v) != count:
                    raise FieldError(name + " must be " + str(count) + " bytes")
            elif kind == _CHAR and v != "" and not _char_in(v, low, high):
                raise FieldError(name + " must be one letter " + chr(low) + ".." + chr(high))
        self.check()

    def check(self) -> None:
        """Checks across fields (a class adds its own)."""

    def pack(self, buf: bytearray, off: int) -> int:
        """Write the payload at ``buf[off:]``; returns its length."""
        if self.SCALAR:
            flat = [getattr(self, name) for name in self.FIELDS]
        else:
            flat = []
            for name, kind, _count, _low, _high, _also, _raw in self.SPECS:
                v = getattr(self, name)
                if kind == _SEQ:
                    flat.extend(v)
                elif kind == _CHAR:
                    flat.append(ord(v) if v else 0)
                elif kind == _FLAG:
                    flat.append(1 if v else 0)
                else:
                    flat.append(v)
        struct.pack_into(self.FORMAT, buf, off, *flat)
        return self.SIZE

    @classmethod
    def unpack(cls, buf, off: int, n: int, dst: int, src: int, seq: int) -> "Message":
        """The message of the payload ``buf[off:off + n]``; raises FieldError for a field
        out of range."""
        values = struct.unpack_from(cls.FORMAT, buf, off)
        msg = object.__new__(cls)
        msg.dst = dst
        msg.src = src
        msg.seq = seq
        if cls.SCALAR:
            for name, v in zip(cls.FIELDS, values):
                setattr(msg, name, v)
        else:
            for spec, v in zip(cls.SPECS, split(cls, values)):
                setattr(msg, spec[0], v)
            msg.convert()
        if not cls.VALID_UNPACKED:
            msg.validate()
        return msg


def made(cls, values, dst: int, src: int, seq: int):
    """A ``cls`` message of field values already in their types (FIELDS order), unchecked:
    an unpacker's fast way past ``__init__``."""
    msg = object.__new__(cls)
    for name, v in zip(cls.FIELDS, values):
        setattr(msg, name, v)
    msg.dst = dst
    msg.src = src
    msg.seq = seq
    return msg


def split(cls, values) -> list:
    """The values of ``struct.unpack_from(cls.FORMAT, ...)`` per field of ``cls.LAYOUT``: a
    list for a sequence (the raw bytes for packed bits), "" or a letter for ``c``, a bool
    for ``?``."""
    out = []
    k = 0
    for name, kind, _count, _low, _high, _also, raw in cls.SPECS:
        if raw != 1 or kind == _SEQ:
            out.append(list(values[k : k + raw]))
            k += raw
            continue
        v = values[k]
        k += 1
        if kind == _CHAR:
            v = chr(v) if v else ""
        elif kind == _FLAG:
            if v > 1:
                raise FieldError(name + " flag must be 0 or 1")
            v = v == 1
        out.append(v)
    return out


def tail_entries(cls, n: int) -> int:
    """Entries in the variable tail of a ``cls`` payload of ``n`` bytes (LengthError if they
    are not whole)."""
    entry = struct.calcsize(entry_format(cls.LAYOUT[-1][1]))
    extra = n - cls.SIZE
    if extra % entry:
        raise LengthError(cls.NAME + " tail is not a whole number of entries")
    return extra // entry


def encode(msg: Message) -> bytes:
    """Validate ``msg`` and return its frame as sent on the wire (delimiter included)."""
    msg.validate()
    writer = FrameWriter(msg.src)
    n = msg.pack(writer.raw, HEADER_LEN)
    return bytes(writer.wire[: writer.seal(msg.dst, msg.TYPE, msg.seq, n)])


def message_from_reader(reader: FrameReader) -> Message:
    """Build the message of a frame that ``reader.decode()`` accepted (a type whose class
    this program did not import raises UnknownTypeError)."""
    cls = BY_TYPE.get(reader.mtype)
    if cls is None:
        raise UnknownTypeError("unknown message type")
    return cls.unpack(
        reader.raw, HEADER_LEN, reader.payload_len, reader.dst, reader.src, reader.seq
    )


def decode(wire: bytes) -> Message:
    """Decode exactly one frame (leading/trailing 0x00 delimiters optional)."""
    data = bytes(wire)
    start = 0
    end = len(data)
    while start < end and data[start] == 0:
        start += 1
    while end > start and data[end - 1] == 0:
        end -= 1
    if end == start:
        raise LengthError("no frame")
    if end - start >= MAX_WIRE:
        raise LengthError("frame longer than the maximum")
    reader = FrameReader()
    body = data[start:end] + b"\x00"
    if body.find(b"\x00") != end - start:
        raise LengthError("more than one frame")
    reader.feed(body, 0, len(body))
    reader.decode()
    return message_from_reader(reader)
