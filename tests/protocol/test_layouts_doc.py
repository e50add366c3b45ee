"""The tables of ``protocol/tables.py`` are the one declaration of the wire format: the
lengths and offsets in ``layouts.py``, the field specs of every message class and PROTOCOL.md's
payload tables are generated from them (``python -m protocol.gen``) and must be up to date."""

from __future__ import annotations

import struct

from protocol import consts as C
from protocol import gen
from protocol import layouts as L
from protocol import tables as T
from protocol.messages import MESSAGE_CLASSES, Status


def test_generated_code_and_document_match_the_declarations() -> None:
    stale = [str(path) for path, (old, new) in gen.outputs().items() if old != new]
    assert not stale, "run: python -m protocol.gen"


def test_an_edited_document_table_is_noticed() -> None:
    current = gen.DOC.read_text(encoding="utf-8")
    stale = current.replace("| 13 | 2 | lead_us |", "| 13 | 2 | lead_time |", 1)
    assert stale != current
    assert gen.render(stale) == current


def test_an_edited_generated_block_is_noticed() -> None:
    path = gen.HERE / "cycle.py"
    current = path.read_text(encoding="utf-8")
    stale = current.replace('FORMAT = "<HHHBIBBH"', 'FORMAT = "<HHHBIBHH"', 1)
    assert stale != current
    assert gen.render_source(stale) == current


def test_every_message_class_and_table_is_generated_and_documented() -> None:
    current = gen.DOC.read_text(encoding="utf-8")
    by_type = dict(T.LAYOUTS)
    for cls in MESSAGE_CLASSES:
        layout = by_type[cls.TYPE]
        assert T.struct_format(layout) == cls.FORMAT, cls.NAME
        assert T.fixed_len(layout) == cls.SIZE, cls.NAME
        names = [n for n in dir(T) if getattr(T, n) is layout]
        assert names, cls.NAME
        if layout:
            assert any(f"<!-- layout {n} -->" in current for n in names), cls.NAME


def test_lengths_come_from_the_tables() -> None:
    for mtype, layout in T.LAYOUTS:
        assert (L.PAYLOAD_MIN[mtype], L.PAYLOAD_MAX[mtype]) == T.payload_limits(layout)
    assert sum(1 for k in range(256) if L.PAYLOAD_MIN[k] != 0xFF) == len(T.LAYOUTS)
    assert struct.calcsize(L.STATUS_FORMAT) == L.STATUS_LEN
    assert L.TM_OVERLOADS == L.TELEMETRY_FIXED_LEN
    most = L.TELEMETRY_FIXED_LEN + C.CHANNELS * L.TELEMETRY_OVERLOAD_LEN
    assert L.PAYLOAD_MAX[C.T_TELEMETRY] == most


def test_board_status_packer_and_message_agree() -> None:
    fields = (0x15, 3, -123, 86_400, 7, 2, 65535)
    board = bytearray(L.STATUS_LEN)
    assert L.pack_status(board, 0, *fields) == L.STATUS_LEN
    host = bytearray(L.STATUS_LEN)
    Status(*fields).pack(host, 0)
    assert board == host
