"""Regenerate protocol/vectors.json. Run only on a deliberate wire-format change: the file
is the golden reference both runtimes are tested against."""

from __future__ import annotations

import json
from pathlib import Path

from protocol import consts as C
from protocol.crc import crc32
from protocol.framing import cobs_encode_into
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
    encode,
)
from protocol.vectors import fields_to_json

OUT = Path(__file__).resolve().parent.parent / "protocol" / "vectors.json"

DEFAULT_CURVE = [
    (100, 0, 0),
    (125, 10_000, 120_000),
    (150, 6_000, 60_000),
    (200, 2_000, 20_000),
    (400, 200, 3_000),
    (600, 20, 2_000),
    (1000, 10, 250),
]


_UID = bytes.fromhex("e6614c311b4a2f21")


def good_messages() -> list[tuple[str, Message]]:
    return _cycle_messages() + _admin_messages()


def _cycle_messages() -> list[tuple[str, Message]]:
    """The bus cycle's messages: polls, SYNC, REPORT, TELEMETRY, the status node's STATUS."""
    return [
        ("poll_report", Poll(C.T_REPORT, dst=3, seq=1)),
        ("poll_telemetry", Poll(C.T_TELEMETRY, dst=0xEF, seq=255)),
        ("sync", Sync(4242, 5000, 2980, 1, 0b1111_1111, 5, 8, 4000, seq=17)),
        ("sync_no_freq", Sync(0, 0, 1, 1, 0, 0)),
        ("sync_wide_mask", Sync(65535, 6000, 65535, 1, 0xFFFFFFFF, 0, 255, 65535, seq=255)),
        ("report_idle", Report([0] * 12, [0] * 12, src=2, seq=9)),
        (
            "report_mixed",
            Report(
                [1734, 0, 2403, 16383, 5, 1600, 0, 0, 820, 1, 12278, 2047],
                [1, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0, 0],
                8,
                src=4,
                seq=200,
            ),
        ),
        (
            "report_selected_last",
            Report([0] * 11 + [730], [0] * 12, 11, src=3, seq=1),
        ),
        (
            "telemetry_ok",
            Telemetry(
                0,
                [732, 1240, 35, 0, 0, 1600, 999, 1, 65534, 420, 77, 8],
                [1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1],
                [False] * 8 + [True] + [False] * 3,
                [14, 31, 14, 0, 0, 14, 20, 14, 14, 15, 14, 14],
                86_400,
                3,
                65_535,
                5003,
                {},
                src=1,
                seq=42,
            ),
        ),
        (
            "telemetry_overloads",
            Telemetry(
                C.F_CONFIG_DEFAULTS | C.F_NO_VREF,
                [1700, 2400, 0, 0, 0, 0, 0, 0, 0, 0, 0, 65535],
                [2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                [False] * 11 + [True],
                [14, 14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                0xFFFFFFFF,
                65_535,
                0,
                6000,
                {0: 6543, 1: 107},
                src=6,
                seq=0,
            ),
        ),
        (
            "status_estop",
            Status(C.IN_ESTOP | C.IN_BREAKER_TRIPPED, C.CAUSE_ESTOP, 412, 3600, 0, 2, 5, src=9),
        ),
        ("status_cold", Status(C.IN_BREAKER_CLOSED, C.CAUSE_NONE, -105, 1, 65535, 0, 65535)),
    ]


def _admin_messages() -> list[tuple[str, Message]]:
    """Identity, configuration and discovery messages."""
    uid = _UID
    return [
        ("get_info", GetInfo(dst=2, seq=3)),
        ("info", Info((1, 0, 0), 1, C.BOARD_PICO_MCP3208, uid, "B", 12, 0x1234ABCD, 0, src=2)),
        ("info_unset", Info((0, 9, 1), 1, C.BOARD_SIM, uid, "", 12, 0, C.F_CONFIG_DEFAULTS)),
        ("config_get_cal", ConfigGet(C.K_CAL_GAIN, 11, dst=2)),
        ("config_value_group", ConfigValue(C.K_GROUP, 0, "C", src=2)),
        ("config_value_curve", ConfigValue(C.K_CURVE, 0, DEFAULT_CURVE, src=2)),
        ("config_set_cal", ConfigSet(C.K_CAL_GAIN, 3, 1_003_500, dst=2, seq=77)),
        ("config_set_rating", ConfigSet(C.K_RATING, 0, 1600, dst=2)),
        ("config_set_mains", ConfigSet(C.K_MAINS_HZ, 0, 60, dst=2)),
        ("config_set_noise", ConfigSet(C.K_NOISE_FLOOR, 0, 40, dst=2)),
        ("config_set_address", ConfigSet(C.K_ADDRESS, 0, 7, dst=2)),
        ("identify", Identify(10, dst=5)),
        ("discover_all", Discover(seq=1)),
        ("discover_branch", Discover(bytes(8), bytes.fromhex("7fffffffffffffff"), seq=2)),
        ("discover_reply", DiscoverReply(uid, C.ADDR_UNASSIGNED, C.BOARD_SIM, seq=2)),
        ("mute", Mute(uid, True, seq=3)),
        ("assign", Assign(uid, 4, "D", seq=4)),
        ("ack", Ack(C.T_CONFIG_SET, src=4, seq=4)),
        ("nak", Nak(C.T_CONFIG_SET, C.E_BAD_VALUE, src=4, seq=5)),
    ]


def _raw_frame(raw: bytes, fix_crc: bool = True) -> bytes:
    body = bytearray(raw)
    if fix_crc:
        body += crc32(bytes(body)).to_bytes(4, "little")
    out = bytearray(len(body) + 2)
    n = cobs_encode_into(body, len(body), out)
    return bytes(out[:n]) + b"\x00"


def bad_frames() -> list[tuple[str, bytes, str]]:
    good = encode(Poll(C.T_REPORT, dst=3, seq=1))
    flipped = bytearray(good)
    flipped[2] ^= 0x04
    return [
        ("crc_bit_flip", bytes(flipped), "CrcError"),
        ("truncated", good[:5] + b"\x00", "CobsError"),
        ("too_short", _raw_frame(b"\x01\x03\x00"), "LengthError"),
        ("bad_cobs_code", b"\x09\x01\x02\x00", "CobsError"),
        ("version_2", _raw_frame(b"\x02\x03\x00\x01\x01\x10"), "VersionError"),
        ("unknown_type", _raw_frame(b"\x01\x03\x00\x66\x01"), "UnknownTypeError"),
        ("poll_too_long", _raw_frame(b"\x01\x03\x00\x01\x01\x10\x10"), "LengthError"),
        ("poll_bad_want", _raw_frame(b"\x01\x03\x00\x01\x01\x99"), "FieldError"),
        ("config_unknown_key", _raw_frame(b"\x01\x02\x00\x32\x01\x63\x00\x01"), "ConfigKeyError"),
        ("telemetry_bad_state",
         _raw_frame(bytes([1, 0, 1, 0x11, 0]) + bytes(25) + b"\x07" + bytes(27)), "FieldError"),
        ("report_21_bytes", _raw_frame(bytes([1, 0, 3, 0x10, 1]) + bytes(21)), "LengthError"),
        ("oversized", b"\x01" * 300 + b"\x00", "LengthError"),
    ]  # fmt: skip


def main() -> None:
    good = []
    for name, message in good_messages():
        good.append(
            {
                "name": name,
                "message": message.NAME,
                "header": {"dst": message.dst, "src": message.src, "seq": message.seq},
                "fields": fields_to_json(message.fields()),
                "wire": encode(message).hex(),
            }
        )
    bad = [{"name": n, "wire": w.hex(), "error": e} for n, w, e in bad_frames()]
    document = {
        "protocol_version": C.VERSION,
        "crc32": [
            {"data": d.hex(), "crc": crc32(d)} for d in (b"", b"123456789", bytes(range(256)))
        ],
        "good": good,
        "bad": bad,
    }
    OUT.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(good)} good and {len(bad)} bad vectors to {OUT}")


if __name__ == "__main__":
    main()
