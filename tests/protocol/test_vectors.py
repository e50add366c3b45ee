"""Golden vectors: the same file passes on CPython and on the MicroPython unix port."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import pytest

from protocol import crc
from protocol.errors import FrameError
from protocol.messages import decode, encode
from protocol.vectors import error_class, message_from_vector
from tests.mpy import run_micropython

VECTORS = json.loads((Path(__file__).parents[2] / "protocol" / "vectors.json").read_text())


@pytest.mark.parametrize("vector", VECTORS["good"], ids=lambda v: v["name"])
def test_cpython_good_vector(vector: dict) -> None:
    message = message_from_vector(vector)
    wire = bytes.fromhex(vector["wire"])
    assert encode(message) == wire
    assert decode(wire) == message


@pytest.mark.parametrize("vector", VECTORS["bad"], ids=lambda v: v["name"])
def test_cpython_bad_vector(vector: dict) -> None:
    expected = error_class(vector["error"])
    with pytest.raises(FrameError) as caught:
        decode(bytes.fromhex(vector["wire"]))
    assert type(caught.value) is expected


@pytest.mark.parametrize("case", VECTORS["crc32"], ids=lambda c: f"{len(c['data']) // 2}B")
def test_cpython_crcmod_matches_zlib_and_vectors(case: dict) -> None:
    data = bytes.fromhex(case["data"])
    assert crc.crc32(data) == zlib.crc32(data) == case["crc"]


MICROPYTHON_VECTOR_CHECK = r"""
import sys
from binascii import unhexlify
from protocol import crc
from protocol.errors import FrameError
from protocol.messages import decode, encode
from protocol.vectors import error_class, load, message_from_vector

doc = load("protocol/vectors.json")
assert sys.implementation.name == "micropython"
for case in doc["crc32"]:
    data = unhexlify(case["data"])
    assert crc.crc32(data) == case["crc"], ("binascii", case)
    raw = bytearray(data) + bytearray(4)
    crc.crc32_put(raw, len(data))
    assert raw[len(data):] == case["crc"].to_bytes(4, "little"), ("viper", case)
    assert crc.crc32_check(raw, len(raw))
good = 0
for v in doc["good"]:
    m = message_from_vector(v)
    wire = unhexlify(v["wire"])
    assert encode(m) == wire, ("encode", v["name"], encode(m))
    assert decode(wire) == m, ("decode", v["name"], decode(wire))
    good += 1
bad = 0
for v in doc["bad"]:
    try:
        decode(unhexlify(v["wire"]))
    except FrameError as exc:
        assert type(exc) is error_class(v["error"]), (v["name"], exc)
        bad += 1
    else:
        raise AssertionError("accepted bad vector " + v["name"])
print("micropython", good, bad)
"""


def test_micropython_vectors() -> None:
    out = run_micropython(MICROPYTHON_VECTOR_CHECK)
    runtime, good, bad = out.split()
    assert runtime == "micropython"
    assert int(good) == len(VECTORS["good"])
    assert int(bad) == len(VECTORS["bad"])


def test_vector_generator_reproduces_the_golden_file(tmp_path: Path, monkeypatch) -> None:
    # The messages' default headers and field order are part of what the generator relies on.
    from tools import make_vectors

    monkeypatch.setattr(make_vectors, "OUT", tmp_path / "vectors.json")
    make_vectors.main()
    golden = Path(__file__).parents[2] / "protocol" / "vectors.json"
    assert (tmp_path / "vectors.json").read_text() == golden.read_text()
