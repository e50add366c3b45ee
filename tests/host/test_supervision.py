"""Channel supervision (R12): dwell before a warning, hysteresis before it clears, and the
unit's warning triangle."""

from __future__ import annotations

import pytest

from host.supervision import (
    ChannelSupervisor,
    SupervisionSet,
    SupervisionSettings,
    SupervisionStatus,
    validate_supervision_range,
)

RANGE = SupervisionSettings(enabled=True, min_a=2.0, max_a=10.0, dwell_s=5.0, hysteresis_a=0.5)


def feed(supervisor: ChannelSupervisor, samples: list[tuple[float, float | None]]) -> list[str]:
    """Feed (time, current) samples; returns the transitions as 'raised:above_max@t'."""
    out: list[str] = []
    for t, amps in samples:
        for tr in supervisor.observe(amps, t):
            out.append(f"{'raised' if tr.raised else 'cleared'}:{tr.status.value}@{tr.at:g}")
    return out


def test_validate_range() -> None:
    assert validate_supervision_range(0, 63) == (0.0, 63.0)
    assert validate_supervision_range(5, 5) == (5.0, 5.0)
    for lo, hi, message in (
        (-1, 5, "minimum current must be between 0 and 63 A, not -1 A"),
        (0, 64, "maximum current must be between 0 and 63 A, not 64 A"),
        (10, 5, "the minimum (10 A) is above the maximum (5 A)"),
        (float("nan"), 5, "minimum current must be a finite number"),
    ):
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            validate_supervision_range(lo, hi)
    with pytest.raises(ValueError, match="must be a number"):
        validate_supervision_range(True, 5)  # a bool is not a current
    with pytest.raises(ValueError, match="dwell time"):
        SupervisionSettings(True, 0, 10, dwell_s=-1).validated()


def test_an_entered_hysteresis_must_fit_the_range() -> None:
    with pytest.raises(ValueError, match=r"larger than the range 5-5.2 A; make it at most 0.2 A"):
        SupervisionSettings(True, 5.0, 5.2, hysteresis_a=0.5).validated_entry()
    assert SupervisionSettings(True, 5.0, 5.5, hysteresis_a=0.5).validated_entry()


def test_unsupervised_channel_never_warns() -> None:
    supervisor = ChannelSupervisor("A1")
    assert supervisor.status is SupervisionStatus.UNSUPERVISED
    assert feed(supervisor, [(t, 50.0) for t in range(100)]) == []


def test_warning_needs_the_dwell_time() -> None:
    supervisor = ChannelSupervisor("A1", RANGE)
    assert supervisor.status is SupervisionStatus.OK
    # 4 s above max, then back: a motor start, no warning.
    assert feed(supervisor, [(0, 12.0), (2, 12.0), (4, 12.0), (4.5, 9.0)]) == []
    assert supervisor.state().out_of_range_since is None
    # Out of range for the whole dwell: raised once, at the moment the dwell is over.
    events = feed(supervisor, [(10, 12.0), (12, 12.0), (14.9, 12.0), (15, 12.0), (16, 12.0)])
    assert events == ["raised:above_max@15"]
    state = supervisor.state()
    assert state.warning and state.status is SupervisionStatus.ABOVE_MAX
    assert state.since == 10  # the excursion started at 10


def test_below_minimum_catches_a_lost_load() -> None:
    supervisor = ChannelSupervisor("B3", RANGE)
    events = feed(supervisor, [(0, 5.0), (1, 0.0), (3, 0.0), (6, 0.0)])
    assert events == ["raised:below_min@6"]
    assert supervisor.status is SupervisionStatus.BELOW_MIN


def test_clearing_needs_the_hysteresis_margin() -> None:
    supervisor = ChannelSupervisor("A1", RANGE)
    feed(supervisor, [(0, 11.0), (5, 11.0)])
    assert supervisor.warning
    # Back under max, but not by the 0.5 A margin: stays up.
    assert feed(supervisor, [(6, 9.8), (7, 9.6), (8, 10.2)]) == []
    assert supervisor.warning
    assert feed(supervisor, [(9, 9.5)]) == ["cleared:above_max@9"]
    assert supervisor.status is SupervisionStatus.OK
    # The low side needs min + margin.
    feed(supervisor, [(10, 1.0), (15, 1.0)])
    assert supervisor.status is SupervisionStatus.BELOW_MIN
    assert feed(supervisor, [(16, 2.3)]) == []
    assert feed(supervisor, [(17, 2.5)]) == ["cleared:below_min@17"]


def test_a_narrow_range_can_still_clear() -> None:
    narrow = SupervisionSettings(True, 8.0, 8.4, dwell_s=0.0, hysteresis_a=1.0)
    supervisor = ChannelSupervisor("A1", narrow)
    assert feed(supervisor, [(0, 9.0)]) == ["raised:above_max@0"]
    assert feed(supervisor, [(1, 8.2)]) == ["cleared:above_max@1"]


def test_jump_across_the_range_names_the_new_side() -> None:
    supervisor = ChannelSupervisor("A1", RANGE)
    feed(supervisor, [(0, 12.0), (5, 12.0)])
    assert feed(supervisor, [(6, 0.5)]) == ["cleared:above_max@6", "raised:below_min@6"]


def test_missing_data_neither_raises_nor_clears() -> None:
    supervisor = ChannelSupervisor("A1", RANGE)
    # An excursion interrupted by missing data starts over.
    assert feed(supervisor, [(0, 12.0), (3, None), (4, 12.0), (8, 12.0)]) == []
    assert feed(supervisor, [(9, 12.0)]) == ["raised:above_max@9"]
    # An active warning is not cleared by silence.
    assert feed(supervisor, [(10, None), (100, None)]) == []
    assert supervisor.warning


def test_clock_stepped_back_restarts_the_dwell() -> None:
    supervisor = ChannelSupervisor("A1", RANGE)
    assert feed(supervisor, [(100, 12.0), (50, 12.0), (54, 12.0)]) == []
    assert feed(supervisor, [(55, 12.0)]) == ["raised:above_max@55"]


def test_new_settings_rejudge_an_active_warning() -> None:
    supervisor = ChannelSupervisor("A1", RANGE)
    feed(supervisor, [(0, 12.0), (5, 12.0)])
    wider = SupervisionSettings(True, 2.0, 20.0, 5.0, 0.5)
    transitions = supervisor.configure(wider, 6, current_a=12.0)
    assert [(t.raised, t.status) for t in transitions] == [(False, SupervisionStatus.ABOVE_MAX)]
    assert supervisor.status is SupervisionStatus.OK
    # Switching supervision off clears a warning and stops watching.
    feed(supervisor, [(7, 25.0), (12, 25.0)])
    assert supervisor.warning
    off = supervisor.configure(SupervisionSettings(False, 2.0, 20.0), 13)
    assert [(t.raised, t.reason) for t in off] == [(False, "supervision switched off")]
    assert supervisor.status is SupervisionStatus.UNSUPERVISED
    assert feed(supervisor, [(14, 50.0), (30, 50.0)]) == []


def test_warning_triangle_follows_any_channel() -> None:
    channels = [f"A{n}" for n in range(1, 13)]
    supervision = SupervisionSet(channels, {"A3": RANGE, "A7": RANGE})
    assert not supervision.warning_triangle
    supervision["A3"].observe(12.0, 0)
    supervision["A3"].observe(12.0, 5)
    supervision["A1"].observe(50.0, 5)  # unsupervised: no effect
    assert supervision.warning_triangle
    assert supervision.channels_in_warning() == ("A3",)
    supervision["A3"].observe(5.0, 6)
    assert not supervision.warning_triangle
    assert "A7" in supervision and "B1" not in supervision
