"""Phase-balance advice against a case worked out by hand."""

from __future__ import annotations

import cmath
import math

import pytest

from host.analysis.balance import FREE_BELOW_A, Output, advise, imbalance_pct, neutral_current
from host.domain import rotation_phase


def group(letter: str, amps: dict[int, float], *, online: bool = True) -> list[Output]:
    """Twelve outputs with the default rotation (1 → L1, 2 → L2, 3 → L3, 4 → L1 …)."""
    return [
        Output(f"{letter}{n}", letter, rotation_phase(n), amps.get(n, 0.0), f"load {n}", online)
        for n in range(1, 13)
    ]


def test_neutral_is_the_phasor_sum_of_in_phase_currents() -> None:
    for l1, l2, l3 in ((16.0, 4.0, 2.0), (10.0, 10.0, 10.0), (5.0, 0.0, 0.0), (0.0, 3.0, 7.5)):
        phasor = l1 + l2 * cmath.rect(1, -2 * math.pi / 3) + l3 * cmath.rect(1, 2 * math.pi / 3)
        assert neutral_current(l1, l2, l3) == pytest.approx(abs(phasor), abs=1e-9)
    assert neutral_current(10, 10, 10) == pytest.approx(0.0, abs=1e-9)
    assert imbalance_pct(0, 0, 0) == 0.0


def test_hand_computed_case() -> None:
    # Group A: A1 10 A and A4 6 A on L1, A2 4 A on L2, A3 2 A on L3; the rest free.
    # L1 16, L2 4, L3 2: N = sqrt(16² + 4² + 2² - 16·4 - 4·2 - 2·16) = sqrt(172) = 13.11 A;
    # mean 7.33 A, largest deviation 8.67 A = 118.2 %.
    # Moves that help: A4 → L3 (10, 4, 8: N = sqrt(28) = 5.29 A), A1 → L3 (6, 4, 12:
    # sqrt(52) = 7.21 A), A4 → L2 (10, 10, 2: 8 A), A1 → L2 (6, 14, 2: sqrt(112) = 10.58 A).
    # Group B's board is absent: its 20 A and its free outputs count for nothing.
    outputs = group("A", {1: 10.0, 4: 6.0, 2: 4.0, 3: 2.0}) + group("B", {1: 20.0}, online=False)
    advice = advise(outputs)
    assert advice.phases_a == pytest.approx((16.0, 4.0, 2.0))
    assert advice.neutral_a == pytest.approx(math.sqrt(172.0))
    assert advice.imbalance_pct == pytest.approx(100 * (16 - 22 / 3) / (22 / 3))
    assert advice.spread_a == pytest.approx(14.0)
    best = advice.moves[0]
    assert (best.channel, best.from_phase, best.to_phase) == ("A4", "L1", "L3")
    assert best.to == "A6" and best.also_free == ("A9", "A12")  # A3 is in use
    assert best.neutral_after_a == pytest.approx(math.sqrt(28.0))
    assert best.phases_after_a == pytest.approx((10.0, 4.0, 8.0))
    assert best.imbalance_after_pct == pytest.approx(100 * (22 / 3 - 4) / (22 / 3))  # L2 lowest
    ranked = [(m.channel, m.to_phase, round(m.neutral_after_a, 2)) for m in advice.moves]
    assert ranked == [("A4", "L3", 5.29), ("A1", "L3", 7.21), ("A4", "L2", 8.0),
                      ("A1", "L2", 10.58)]  # fmt: skip
    assert all(m.group == "A" for m in advice.moves)
    assert any("B" in note for note in advice.notes)
    data = advice.to_dict()
    assert data["phases_a"] == {"L1": 16.0, "L2": 4.0, "L3": 2.0}
    assert "resistive" in data["assumption"]


def test_no_move_without_a_free_output_of_the_same_group() -> None:
    # A full group on L1-heavy loads, a free group C: loads never move across groups.
    full = {n: (8.0 if rotation_phase(n) == "L1" else 1.0) for n in range(1, 13)}
    advice = advise(group("A", full) + group("C", {}))
    assert advice.moves == ()
    assert advice.neutral_a > 10
    assert any("no free output" in note or "no single move" in note for note in advice.notes)


def test_unmeasured_and_tripped_outputs_are_neither_loads_nor_targets() -> None:
    outputs = group("A", {1: 10.0, 4: 10.0})
    outputs[2] = Output("A3", "A", "L3", None)  # no live value
    outputs[5] = Output("A6", "A", "L3", 0.0, tripped=True)
    advice = advise(outputs)
    assert advice.phases_a == pytest.approx((20.0, 0.0, 0.0))
    to_l3 = [m for m in advice.moves if m.to_phase == "L3"]
    assert to_l3 and to_l3[0].to == "A9"
    assert FREE_BELOW_A < 0.1


def test_balanced_unit_needs_no_move() -> None:
    advice = advise(group("A", {1: 5.0, 2: 5.0, 3: 5.0}))
    assert advice.neutral_a == pytest.approx(0.0, abs=1e-9) and advice.moves == ()
    assert advice.notes == ()
