"""The unit's vocabulary: models and their groups, channel ids, phases, and the text rules
for user-entered labels. Config, unit state, web and peers all speak it; it imports nothing
of the host, so any of them can.

What the boards also know (group letters, channels per group) comes from the protocol's
constants, so the two ends of the bus cannot disagree.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

from protocol import consts as C

GROUP_LETTERS: str = C.GROUP_LETTERS  # every group a board can serve, in panel order
CHANNELS_PER_GROUP: int = C.CHANNELS  # outputs per group (one board measures twelve)
BUS_BAUD: int = C.BUS_BAUD  # the RS-485 bus's default line rate

# A model is named by its number of outputs: the smartPDU 48 has 4 groups of 12.
MODELS: tuple[int, ...] = (36, 48, 72)
MODEL_GROUPS: dict[int, str] = {
    model: GROUP_LETTERS[: model // CHANNELS_PER_GROUP] for model in MODELS
}
MAX_CHANNEL_RATING_A = 63.0  # the boards' rating setting goes up to 63 A (protocol K_RATING)
LABEL_MAX_CHARS = 32
UNIT_ID_PATTERN = re.compile(r"smartPDU[0-9A-Za-z]{6}")

Phase = Literal["L1", "L2", "L3"]
PHASES: tuple[Phase, Phase, Phase] = ("L1", "L2", "L3")

_CHANNEL_PATTERN = re.compile(rf"([{GROUP_LETTERS}{GROUP_LETTERS.lower()}])(\d{{1,2}})")


def channel_id(group: str, number: int) -> str:
    """'A1' … 'F12': the group letter and the 1-based output number on the front panel."""
    return f"{group}{number}"


def parse_channel_id(text: str, model: int | None = None) -> tuple[str, int]:
    """('B', 7) for 'B7'; ValueError naming the problem for anything else."""
    match = _CHANNEL_PATTERN.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"'{text}' is not a channel (a group letter and 1-12, e.g. 'B7')")
    group, number = match.group(1).upper(), int(match.group(2))
    if not 1 <= number <= CHANNELS_PER_GROUP:
        raise ValueError(f"'{text}': channels are numbered 1-{CHANNELS_PER_GROUP}")
    if model is not None and group not in MODEL_GROUPS[model]:
        raise ValueError(f"'{text}': the smartPDU {model} has groups {group_span(model)}")
    return group, number


def channel_ids(model: int) -> tuple[str, ...]:
    return tuple(
        channel_id(g, n) for g in MODEL_GROUPS[model] for n in range(1, CHANNELS_PER_GROUP + 1)
    )


def rotation_phase(number: int) -> Phase:
    """Default wiring: outputs rotate over the phases, 1 → L1, 2 → L2, 3 → L3, 4 → L1 …"""
    return PHASES[(number - 1) % 3]


def group_span(model: int) -> str:
    """'A-D' for the smartPDU 48."""
    groups = MODEL_GROUPS[model]
    return f"{groups[0]}-{groups[-1]}"


def validate_label(text: str, what: str = "a label") -> str:
    """A channel label or unit name: plain text, at most 32 printable characters.

    Returns the label normalised (NFC, surrounding spaces removed); "" clears a label.
    Raises ValueError with a message fit for the user that names ``what`` was entered.
    Labels are always shown as text, never as HTML; refusing control and format characters
    keeps them readable and keeps bidi overrides from disguising a label.
    """
    if not isinstance(text, str):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ValueError(f"{what} must be text")
    label = unicodedata.normalize("NFC", text).strip()
    for position, char in enumerate(label, start=1):
        category = unicodedata.category(char)
        if category.startswith("C") or category in ("Zl", "Zp"):
            raise ValueError(
                f"{what} cannot contain the control character U+{ord(char):04X} "
                f"(character {position})"
            )
    if len(label) > LABEL_MAX_CHARS:
        raise ValueError(
            f"{what} has at most {LABEL_MAX_CHARS} characters; this one has {len(label)}"
        )
    return label


def validate_unit_name(text: str) -> str:
    """The unit's name: the rules of a label, the messages about a name."""
    return validate_label(text, "a unit name")
