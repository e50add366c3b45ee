"""Property tests: every message type round-trips over its whole field ranges; arbitrary and
corrupted bytes only ever raise the protocol's own FrameError."""

from __future__ import annotations

import contextlib
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import consts as C
from protocol import layouts as L
from protocol.errors import FrameError
from protocol.framing import FrameReader
from protocol.messages import (
    Ack,
    Assign,
    ConfigGet,
    ConfigSet,
    ConfigValue,
    Discover,
    DiscoverReply,
    GetInfo,
    Identify,
    Info,
    Message,
    Mute,
    Nak,
    Poll,
    Report,
    Status,
    Sync,
    Telemetry,
    decode,
    encode,
    message_from_reader,
)
from tools.bench.protocol_bench import corrupt as corrupt_body

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
board = st.integers(C.ADDR_FIRST_BOARD, C.ADDR_LAST_BOARD)
uid = st.binary(min_size=8, max_size=8)
group = st.sampled_from(["", *C.GROUP_LETTERS])
twelve = lambda s: st.lists(s, min_size=12, max_size=12)  # noqa: E731
header = st.fixed_dictionaries({"dst": u8, "src": u8, "seq": u8})


@st.composite
def telemetry(draw: st.DrawFn) -> Telemetry:
    states = draw(twelve(st.integers(C.ST_OFF, C.ST_TRIPPED)))
    ttt = {ch: draw(u16) for ch, s in enumerate(states) if s in (C.ST_SLIGHT, C.ST_SERIOUS)}
    return Telemetry(
        draw(u8),
        draw(twelve(u16)),
        states,
        draw(twelve(st.booleans())),
        draw(twelve(u8)),
        draw(u32),
        draw(u16),
        draw(u16),
        draw(u16),
        ttt,
        **draw(header),
    )


@st.composite
def sync(draw: st.DrawFn) -> Sync:
    first = draw(board)
    room = min(32, C.ADDR_LAST_BOARD - first + 1)
    mask = draw(st.integers(0, (1 << room) - 1))
    detail = draw(st.one_of(st.just(0), board))
    return Sync(
        draw(u16),
        draw(st.one_of(st.just(0), st.integers(4000, 7000))),
        draw(st.integers(1, 0xFFFF)),
        first,
        mask,
        detail,
        draw(st.integers(1, 255)),
        draw(u16),
        **draw(header),
    )


@st.composite
def curve(draw: st.DrawFn) -> list[tuple[int, int, int]]:
    percents = sorted(draw(st.sets(st.integers(100, 5000), min_size=2, max_size=10)))
    points = []
    for pct in percents:
        tmin = draw(u32)
        points.append((pct, tmin, draw(st.integers(tmin, 0xFFFFFFFF))))
    return points


config_value = st.one_of(
    st.tuples(st.just(C.K_GROUP), st.just(0), st.sampled_from(list(C.GROUP_LETTERS))),
    st.tuples(st.just(C.K_ADDRESS), st.just(0), board),
    st.tuples(st.just(C.K_MAINS_HZ), st.just(0), st.sampled_from([50, 60])),
    st.tuples(st.just(C.K_CAL_GAIN), st.integers(0, 11), st.integers(500_000, 2_000_000)),
    st.tuples(st.just(C.K_RATING), st.just(0), st.integers(100, 6300)),
    st.tuples(st.just(C.K_NOISE_FLOOR), st.just(0), st.integers(0, 2000)),
    st.tuples(st.just(C.K_CURVE), st.just(0), curve()),
)


@st.composite
def uid_range(draw: st.DrawFn) -> tuple[bytes, bytes]:
    a, b = sorted([draw(uid), draw(uid)])
    return a, b


messages = st.one_of(
    st.builds(
        Poll, st.sampled_from([C.T_REPORT, C.T_TELEMETRY, C.T_STATUS]), dst=u8, src=u8, seq=u8
    ),
    sync(),
    st.builds(
        Report,
        # Only values a REPORT carries exactly (50 mA steps above 20.47 A) read back equal.
        twelve(st.integers(0, L.REPORT_CODE_OVER).map(L.report_centiamps)),
        twelve(st.integers(0, 3)),
        st.integers(-1, C.CHANNELS - 1),
        dst=u8,
        src=u8,
        seq=u8,
    ),
    telemetry(),
    st.builds(
        Status,
        st.integers(0, 0x1F),
        st.integers(0, 4),
        st.integers(-32768, 32767),
        u32,
        u16,
        u16,
        u16,
        dst=u8,
        src=u8,
        seq=u8,
    ),
    st.builds(GetInfo, dst=u8, src=u8, seq=u8),
    st.builds(
        Info,
        st.tuples(u8, u8, u8),
        u8,
        st.integers(1, 4),
        uid,
        group,
        st.integers(0, 12),
        u32,
        u8,
        dst=u8,
        src=u8,
        seq=u8,
    ),
    st.builds(ConfigGet, u8, u8, dst=u8, src=u8, seq=u8),
    config_value.flatmap(
        lambda kiv: st.builds(ConfigValue, st.just(kiv[0]), st.just(kiv[1]), st.just(kiv[2]))
    ),
    config_value.flatmap(
        lambda kiv: st.builds(ConfigSet, st.just(kiv[0]), st.just(kiv[1]), st.just(kiv[2]), seq=u8)
    ),
    st.builds(Identify, u8, dst=u8, src=u8, seq=u8),
    uid_range().flatmap(lambda r: st.builds(Discover, st.just(r[0]), st.just(r[1]), seq=u8)),
    st.builds(DiscoverReply, uid, u8, st.integers(1, 4), dst=u8, src=u8, seq=u8),
    st.builds(Mute, uid, st.booleans(), dst=u8, src=u8, seq=u8),
    st.builds(Assign, uid, board, group, dst=u8, src=u8, seq=u8),
    st.builds(Ack, u8, dst=u8, src=u8, seq=u8),
    st.builds(Nak, u8, st.integers(1, 8), dst=u8, src=u8, seq=u8),
)


@settings(max_examples=1500, deadline=None)
@given(messages)
def test_round_trip_every_type(message: Message) -> None:
    wire = encode(message)
    assert wire.endswith(b"\x00") and b"\x00" not in wire[:-1]
    assert len(wire) <= C.MAX_WIRE
    assert decode(wire) == message


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_frame_error(data: bytes) -> None:
    with contextlib.suppress(FrameError):
        decode(data)


@settings(max_examples=500, deadline=None)
@given(st.lists(messages, min_size=1, max_size=5), st.binary(max_size=40))
def test_stream_reader_resynchronises_after_garbage(batch: list[Message], junk: bytes) -> None:
    stream = junk + b"\x00" + b"".join(encode(m) for m in batch)
    reader = FrameReader()
    got: list[Message] = []
    i = 0
    while i < len(stream):
        i = reader.feed(stream, i, len(stream))
        if reader.ready:
            try:
                reader.decode()
                got.append(message_from_reader(reader))
            except FrameError:
                pass
    assert got[-len(batch) :] == batch


def corrupt(wire: bytes, rng: random.Random) -> bytes:
    """One random corruption of a frame (the benchmark's own), delimiter re-added."""
    return bytes(corrupt_body(bytearray(wire[:-1]), rng)) + b"\x00"


def sample_frames() -> list[bytes]:
    from protocol.vectors import load, message_from_vector

    doc = load(str(__import__("pathlib").Path(C.__file__).parent / "vectors.json"))
    return [encode(message_from_vector(v)) for v in doc["good"]]


def test_corrupted_frames_never_accepted() -> None:
    rng = random.Random(20261123)
    frames = sample_frames()
    accepted_corrupt = 0
    runs = 20_000
    for _ in range(runs):
        wire = rng.choice(frames)
        bad = corrupt(wire, rng)
        if bad == wire:
            continue
        for part in bad.split(b"\x00"):
            if not part:
                continue
            try:
                decoded = encode(decode(part))
            except FrameError:
                continue
            if decoded != wire:
                accepted_corrupt += 1
    assert accepted_corrupt == 0


@given(st.integers(0, 0xFFFF))
def test_report_code_is_within_half_a_step(centiamps: int) -> None:
    # 10 mA steps up to 20.47 A, 50 mA steps to 122.78 A, then the over-range code.
    code = L.report_code(centiamps)
    assert 0 <= code <= L.REPORT_CODE_OVER
    back = L.report_centiamps(code)
    if centiamps < L.REPORT_FINE_CODES:
        assert back == centiamps
    elif centiamps <= C.REPORT_MAX_CENTIAMPS:
        assert abs(back - centiamps) <= 2
    else:
        assert code == L.REPORT_CODE_OVER and back == C.REPORT_OVER_RANGE


@given(
    twelve(st.integers(0, 0xFFFF)),
    twelve(st.integers(C.ST_OFF, C.ST_TRIPPED)),
    st.integers(-3, 20),
)
def test_board_packer_and_message_agree_on_report(
    centiamps: list[int], states: list[int], selected: int
) -> None:
    # The board's allocation-free packer and the host's decoder: same bytes, same selection;
    # anything that is not a channel goes out as "none".
    buf = bytearray(C.HEADER_LEN + L.REPORT_LEN)
    assert L.pack_report(buf, C.HEADER_LEN, centiamps, states, selected) == L.REPORT_LEN
    report = Report.unpack(buf, C.HEADER_LEN, L.REPORT_LEN, 0, 1, 0)
    assert report.selected == (selected if 0 <= selected < C.CHANNELS else -1)
    report.validate()
    again = bytearray(C.HEADER_LEN + L.REPORT_LEN)
    report.pack(again, C.HEADER_LEN)
    assert again == buf


@given(st.integers(0, 0xFF))
def test_report_panel_byte_reserved_bits_and_codes_read_as_valid(panel: int) -> None:
    # Bits 4-7 are reserved (ignored); nibble 12..15 means no selection. Every byte decodes
    # to a valid REPORT, so the host can skip validate() on REPORTs (VALID_UNPACKED).
    buf = bytearray(C.HEADER_LEN + L.REPORT_LEN)
    buf[C.HEADER_LEN + L.REPORT_PANEL] = panel
    report = Report.unpack(buf, C.HEADER_LEN, L.REPORT_LEN, 0, 1, 0)
    report.validate()
    nibble = panel & 0x0F
    assert report.selected == (nibble if nibble < C.CHANNELS else -1)
