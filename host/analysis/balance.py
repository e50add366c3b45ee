"""Phase-balance advice: how unequal L1/L2/L3 are, the neutral current that follows, and
which move of one load to a free output of its own group (on another phase) helps most.

Pure functions of plain values (no unit state, no I/O), so the web layer, a CLI or a test
can call them. The neutral current is the phasor sum of the three phase currents 120° apart,
assuming resistive loads (unity power factor, no harmonics): real loads with a power factor
below 1 or with triplen harmonics (LED drivers, dimmers) give a different, often larger,
neutral current, which only the meter measures. Advice only: nothing here switches power (R7).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from host.domain import PHASES, Phase

FREE_BELOW_A = 0.05  # an output drawing less than this carries no load (a free output)
MIN_GAIN_A = 0.1  # a move must lower the neutral current by at least this to be advised
MAX_MOVES = 5  # advised moves listed, best first
ASSUMPTION = (
    "resistive loads (unity power factor, no harmonics), phases 120° apart: the neutral "
    "current is the phasor sum of the phase currents"
)


@dataclass(frozen=True)
class Output:
    """One output as the advice sees it."""

    id: str  # "B7"
    group: str
    phase: Phase
    current_a: float | None  # None: no live measurement (never moved, never a target)
    label: str = ""
    board_online: bool = True  # the group's board is present and reporting
    tripped: bool = False  # its breaker is tripped: not a free output


@dataclass(frozen=True)
class Move:
    channel: str  # the loaded output whose plug is moved
    to: str  # the free output it goes to
    group: str
    from_phase: Phase
    to_phase: Phase
    current_a: float
    label: str
    phases_after_a: tuple[float, float, float]
    neutral_after_a: float
    imbalance_after_pct: float
    also_free: tuple[str, ...] = ()  # other free outputs of that group on the same phase

    def to_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "to": self.to,
            "group": self.group,
            "from_phase": self.from_phase,
            "to_phase": self.to_phase,
            "current_a": self.current_a,
            "label": self.label,
            "phases_after_a": dict(zip(PHASES, self.phases_after_a, strict=True)),
            "neutral_after_a": self.neutral_after_a,
            "imbalance_after_pct": self.imbalance_after_pct,
            "also_free": list(self.also_free),
        }


@dataclass(frozen=True)
class BalanceAdvice:
    phases_a: tuple[float, float, float]  # L1, L2, L3: sums of the live outputs
    neutral_a: float  # computed (ASSUMPTION)
    imbalance_pct: float  # largest deviation from the mean, % of the mean
    spread_a: float  # highest minus lowest phase
    groups: dict[str, tuple[float, float, float]]  # per group, L1..L3
    moves: tuple[Move, ...] = ()
    free_outputs: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "phases_a": dict(zip(PHASES, self.phases_a, strict=True)),
            "neutral_a": self.neutral_a,
            "imbalance_pct": self.imbalance_pct,
            "spread_a": self.spread_a,
            "groups": {g: dict(zip(PHASES, v, strict=True)) for g, v in self.groups.items()},
            "moves": [m.to_dict() for m in self.moves],
            "free_outputs": self.free_outputs,
            "assumption": ASSUMPTION,
            "notes": list(self.notes),
        }


def neutral_current(l1: float, l2: float, l3: float) -> float:
    """|I1 + I2·e^(-j120°) + I3·e^(+j120°)| for in-phase (resistive) loads."""
    square = l1 * l1 + l2 * l2 + l3 * l3 - l1 * l2 - l2 * l3 - l3 * l1
    return math.sqrt(max(0.0, square))


def imbalance_pct(l1: float, l2: float, l3: float) -> float:
    """Largest deviation from the mean phase current, in % of the mean (0 when idle)."""
    mean = (l1 + l2 + l3) / 3.0
    if mean <= 1e-9:
        return 0.0
    return 100.0 * max(abs(x - mean) for x in (l1, l2, l3)) / mean


def _sums(outputs: Iterable[Output]) -> tuple[list[float], dict[str, list[float]]]:
    total = [0.0, 0.0, 0.0]
    groups: dict[str, list[float]] = {}
    for out in outputs:
        per_group = groups.setdefault(out.group, [0.0, 0.0, 0.0])
        if out.current_a is None or not out.board_online:
            continue
        index = PHASES.index(out.phase)
        total[index] += out.current_a
        per_group[index] += out.current_a
    return total, groups


def is_free(out: Output) -> bool:
    """A target for a plug: measured, idle, not tripped, on a board that is present."""
    return (
        out.board_online
        and out.current_a is not None
        and out.current_a < FREE_BELOW_A
        and not out.tripped
    )


def _triple(values: Sequence[float]) -> tuple[float, float, float]:
    return (values[0], values[1], values[2])


def _candidates(outputs: Sequence[Output], total: Sequence[float]) -> list[Move]:
    free: dict[tuple[str, Phase], list[str]] = {}
    for out in outputs:
        if is_free(out):
            free.setdefault((out.group, out.phase), []).append(out.id)
    moves: list[Move] = []
    for out in outputs:
        amps = out.current_a
        if amps is None or amps < FREE_BELOW_A or not out.board_online:
            continue
        for phase in PHASES:
            targets = free.get((out.group, phase))
            if phase == out.phase or not targets:
                continue
            after = list(total)
            after[PHASES.index(out.phase)] -= amps
            after[PHASES.index(phase)] += amps
            moves.append(
                Move(
                    channel=out.id,
                    to=targets[0],
                    group=out.group,
                    from_phase=out.phase,
                    to_phase=phase,
                    current_a=amps,
                    label=out.label,
                    phases_after_a=_triple(after),
                    neutral_after_a=neutral_current(*after),
                    imbalance_after_pct=imbalance_pct(*after),
                    also_free=tuple(targets[1:]),
                )
            )
    return moves


def advise(outputs: Sequence[Output], *, max_moves: int = MAX_MOVES) -> BalanceAdvice:
    """The balance now and the single moves that lower the neutral current most (best
    first; ties: the lower highest phase, then the smaller load to carry)."""
    total, groups = _sums(outputs)
    neutral = neutral_current(*total)
    moves = [m for m in _candidates(outputs, total) if neutral - m.neutral_after_a >= MIN_GAIN_A]
    moves.sort(key=lambda m: (m.neutral_after_a, max(m.phases_after_a), m.current_a, m.channel))
    notes: list[str] = []
    offline = sorted({o.group for o in outputs if not o.board_online})
    if offline:
        notes.append(f"group(s) {', '.join(offline)}: board not present, left out")
    free_count = sum(1 for o in outputs if is_free(o))
    if not moves and neutral >= MIN_GAIN_A:
        notes.append(
            "no single move to a free output of the same group lowers the neutral current"
            if free_count
            else "no free output to move a load to"
        )
    return BalanceAdvice(
        phases_a=_triple(total),
        neutral_a=neutral,
        imbalance_pct=imbalance_pct(*total),
        spread_a=max(total) - min(total),
        groups={g: _triple(v) for g, v in sorted(groups.items())},
        moves=tuple(moves[:max_moves]),
        free_outputs=free_count,
        notes=tuple(notes),
    )
